# Every target runs inside .venv/, which the first target that needs it creates.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Extra Hydra overrides for `make train`, e.g. make train ARGS="env=lunarlander train.seed=3"
ARGS ?=

.PHONY: venv train test test-slow lint bench bench-breakout bench-ablation clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[test]"
	$(PY) -c "import torchrl._torchrl"  # the prioritized sampler's compiled extension must load
	touch $(STAMP)

venv: $(STAMP)

train: $(STAMP)
	$(PY) -m rlpipe.train $(ARGS)

# The default suite (CI): everything not marked slow, including a learning-to-threshold run.
test: $(STAMP)
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

# ruff (installed into .venv/ from the package index as a test dependency) over the package, tests and benchmarks.
lint: $(STAMP)
	$(VENV)/bin/ruff check rlpipe tests benchmarks

test-slow: $(STAMP)
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) benchmarks/learner_throughput.py
	$(PY) benchmarks/collector_throughput.py
	$(PY) benchmarks/time_to_solve.py --env cartpole --seeds 0 1 2 --cold-cache
	$(PY) benchmarks/time_to_solve.py --env lunarlander --seeds 0 1 2
	$(PY) benchmarks/learner_throughput.py --env breakout --rounds 3 --updates 16 --buffer-size 20000 --batch-sizes 32
	$(PY) benchmarks/learner_throughput.py --env breakout --rounds 3 --updates 8 --buffer-size 20000 --batch-sizes 128 \
	  --variants rlpipe:prioritized:4:compiled:auto rlpipe:prioritized:4:compiled:bf16 plain:bf16 plain:compiled
	$(PY) benchmarks/replay_memory.py
	$(PY) benchmarks/replay_memory.py --storage memmap
	$(PY) benchmarks/atari_collection.py
	$(PY) benchmarks/atari_env.py --rounds 5
	$(PY) benchmarks/doorkey.py
	$(PY) benchmarks/reliability.py --trials 20
	$(PY) benchmarks/recording.py --episodes 5
	$(PY) benchmarks/scale_out.py

# The target-network ablation (README, "Experiments"): 9 CartPole runs, 2 at a time, then its plots and table.
bench-ablation: $(STAMP)
	$(PY) -m rlpipe.train --multirun experiment=ablation_target_update launcher=local \
	  hydra.sweep.dir=outputs/multirun/ablation_target_update/bench
	$(PY) -m rlpipe.plot outputs/multirun/ablation_target_update/bench

# The Breakout learning runs (README, "Breakout: learning on 2 CPU cores"): an hour each, one after the other, then
# the curves. Several hours: run it in the background (nohup make bench-breakout &); each run is resumable.
BREAKOUT_SEEDS ?= 0 1 2
bench-breakout: $(STAMP)
	for seed in $(BREAKOUT_SEEDS); do \
	  $(PY) -m rlpipe.train env=breakout exploration=temperature train.seed=$$seed train.stop_on_solve=true \
	    train.time_limit_minutes=60 hydra.run.dir=outputs/breakout_cpu/temperature_seed$$seed || exit 1; \
	done
	$(PY) benchmarks/breakout_runs.py $(foreach s,$(BREAKOUT_SEEDS),temperature_seed$(s)=outputs/breakout_cpu/temperature_seed$(s))

clean:
	rm -rf $(VENV) .pytest_cache
