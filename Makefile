# Every target runs inside .venv/, which the first target that needs it creates.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Extra Hydra overrides for `make train`, e.g. make train ARGS="env=lunarlander train.seed=3"
ARGS ?=

.PHONY: venv train test test-slow lint docs docs-generate docs-check bench bench-breakout bench-pong bench-doorkey-rnd bench-ablation clean

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

# ruff (installed into .venv/ from the package index as a test dependency) over the package, tests, benchmarks and docs/gen.
lint: $(STAMP)
	$(VENV)/bin/ruff check rlpipe tests benchmarks docs/gen

test-slow: $(STAMP)
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

# The documentation site (mkdocs-material, docs/): strict, so a broken link or anchor fails.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

# Pages generated from conf/, rlpipe/config.py and benchmarks/results/*.json (and README's generated blocks):
# docs-generate rewrites them, docs-check (CI) fails when one differs from what its script makes today.
docs-generate: $(STAMP)
	$(PY) docs/gen/config_reference.py
	$(PY) docs/gen/results_tables.py
	$(PY) docs/gen/readme.py

docs-check: $(STAMP)
	$(PY) docs/gen/config_reference.py --check
	$(PY) docs/gen/results_tables.py --check
	$(PY) docs/gen/readme.py --check

# Every benchmark of the results pages that takes minutes (the long learning runs have their own targets below).
bench: $(STAMP)
	$(PY) benchmarks/learner_throughput.py
	$(PY) benchmarks/learner_throughput.py --env lunarlander
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
	$(PY) benchmarks/atari_rgb.py --variants "breakout_rgb:env.screen_size=[105,80]"
	$(PY) benchmarks/rnd_cost.py --env breakout
	$(PY) benchmarks/doorkey.py
	$(PY) benchmarks/reliability.py --trials 20
	$(PY) benchmarks/recording.py --episodes 5
	$(if $(wildcard benchmarks/agents/breakout.pt),$(PY) benchmarks/recording.py --checkpoint benchmarks/agents/breakout.pt --episodes 5)
	$(PY) docs/gen/readme.py --run
	$(PY) benchmarks/scale_out.py

# Pong to 18 points (docs/results/pong-learning.md): one seed, 1M agent steps, evaluated under the protocol; hours on
# a CPU: run it in the background (nohup make bench-pong &); it resumes from its last.pt when started again.
PONG_DIR ?= outputs/pong/egreedy_seed0
bench-pong: $(STAMP)
	$(PY) -m rlpipe.train env=atari env.game=Pong train.seed=0 hydra.run.dir=$(PONG_DIR) \
	  $(if $(wildcard $(PONG_DIR)/checkpoints/last.pt),resume=$(PONG_DIR)/checkpoints/last.pt)
	$(PY) benchmarks/breakout_runs.py egreedy_seed0=$(PONG_DIR) --name pong_runs --title "rlpipe DQN on Pong (env=atari env.game=Pong); dashed: 18 points"

# DoorKey RND (docs/results/doorkey-rnd.md): the configuration that reached the target, 3 seeds side by side.
bench-doorkey-rnd: $(STAMP)
	$(PY) benchmarks/doorkey_rnd.py --modes rnd --jobs 3 --out outputs/bench/doorkey_rnd_exploit_acting --name doorkey_rnd_exploit_acting \
	  --override env.view=egocentric exploration.episodic_novelty=true exploration.explorer_episodic=false train.n_step=5 \
	  train.steps_per_collect=8 exploration.exploit_acting_share=0.25
	$(PY) benchmarks/doorkey_rnd.py --modes rnd --out outputs/bench/doorkey_rnd_exploit_acting --name doorkey_rnd_exploit_acting \
	  --report-only --final-eval 50

# The target-network ablation (docs/results/ablation.md): 9 CartPole runs, 2 at a time, then its plots and table.
bench-ablation: $(STAMP)
	$(PY) -m rlpipe.train --multirun experiment=ablation_target_update launcher=local \
	  hydra.sweep.dir=outputs/multirun/ablation_target_update/bench
	$(PY) -m rlpipe.plot outputs/multirun/ablation_target_update/bench

# Breakout trained long (docs/results/breakout-learning.md): the original command, one seed, 2M agent steps under
# the protocol; many hours on a CPU: run it in the background (nohup make bench-breakout &); started again, it resumes.
BREAKOUT_DIR ?= outputs/breakout_2m/temperature_seed0
bench-breakout: $(STAMP)
	$(PY) -m rlpipe.train env=breakout exploration=temperature train.seed=0 train.total_steps=2000000 hydra.run.dir=$(BREAKOUT_DIR) \
	  $(if $(wildcard $(BREAKOUT_DIR)/checkpoints/last.pt),resume=$(BREAKOUT_DIR)/checkpoints/last.pt)
	$(PY) benchmarks/breakout_runs.py temperature_seed0=$(BREAKOUT_DIR) --name breakout_2m \
	  --title "rlpipe DQN on Breakout (env=breakout exploration=temperature), noop_starts protocol; dashed: 20 points"

clean:
	rm -rf $(VENV) .pytest_cache
