"""Sweeps and dashboards (issue 11): launcher presets and their thread counts, experiment presets, a real parallel
sweep with several loggers (W&B grouped, checkpoints as an artifact), and an Optuna search toward the final
evaluation."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir

from conftest import CONF_DIR, compose_config, run_module

TINY = ["train.total_steps=400", "train.init_random_steps=200", "eval.interval_steps=200", "eval.episodes=2",
        "train.compile=false", "train.log_interval_steps=100"]


def _with_hydra(overrides: list[str]):
    """The whole configuration, Hydra's section included (launcher and sweeper), as a multirun composes it."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=overrides, return_hydra_config=True)


@pytest.mark.parametrize("launcher,target,threads_key", [
    ("local", "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs"),
    ("slurm", "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher", "cpus_per_task"),
    ("ray", "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher", "ray.remote.num_cpus"),
])
def test_launcher_presets_compose_and_set_each_jobs_threads(launcher, target, threads_key):
    cfg = _with_hydra([f"launcher={launcher}"])
    assert cfg.hydra.launcher._target_ == target
    value = cfg.hydra.launcher
    for part in threads_key.split("."):
        value = value[part]
    if launcher == "local":  # jobs at once x threads each = the 2 cores of this machine
        assert value * cfg.train.num_threads == 2
    else:  # the cores a cluster job reserves are the threads it runs
        assert value == cfg.train.num_threads
    assert compose_config([f"launcher={launcher}"]).train.num_threads == cfg.train.num_threads  # (validated)


def test_experiment_presets():
    ablation = _with_hydra(["experiment=ablation_target_update"])
    assert dict(ablation.hydra.sweeper.params) == {"train.target_update_steps": "1,100,1000", "train.seed": "0,1,2"}
    assert (ablation.env.name, ablation.train.stop_on_solve) == ("cartpole", False)
    for exploration in ("egreedy", "temperature"):
        preset = compose_config([f"experiment=breakout_{exploration}"])
        explicit = compose_config(["env=breakout", f"exploration={exploration}", "train.stop_on_solve=true",
                                   "train.time_limit_minutes=60"])
        assert preset == explicit  # the tuned schedule of the pair included
    doorkey = compose_config(["experiment=doorkey_rnd"])  # the benchmark's command line (benchmarks/doorkey_rnd.py)
    assert doorkey == compose_config([
        "env=doorkey_primitive", "exploration=rnd", "env.view=egocentric", "exploration.episodic_novelty=true",
        "exploration.explorer_episodic=false", "exploration.exploit_acting_share=0.25", "train.n_step=5",
        "train.steps_per_collect=8", "train.total_steps=300000", "eval.episodes=20", "eval.interval_steps=10000"])
    assert doorkey.exploration.novelty_input == "agent_state"  # the pair's tuned preset included
    search = _with_hydra(["experiment=search_cartpole"])
    assert search.hydra.sweeper._target_ == "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    assert search.hydra.sweeper.direction == "maximize" and "train.lr" in search.hydra.sweeper.params


def _wandb_records(run_dir: Path) -> bytes:
    (records,) = list((run_dir / "logs" / "wandb").glob("offline-run-*/run-*.wandb"))
    return records.read_bytes()


def test_parallel_sweep_with_two_loggers_groups_wandb_runs_and_uploads_checkpoints(tmp_path):
    result = run_module("rlpipe.train", "--multirun", "launcher=local", "train.seed=0,1", "logger=[csv,wandb]", *TINY,
                        f"hydra.sweep.dir={tmp_path / 'sweep'}", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = sorted((tmp_path / "sweep").glob("*_*"))
    assert len(runs) == 2
    for run_dir in runs:
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert config["train"]["num_threads"] == 1
        assert (config["logger"]["csv"], config["logger"]["tensorboard"], config["logger"]["wandb"]["mode"]) == ({}, None, "offline")
        assert (run_dir / "logs" / "csv" / "scalars" / "eval" / "return_mean.csv").is_file()
        records = _wandb_records(run_dir)
        run_id = next((run_dir / "logs" / "wandb").glob("offline-run-*")).name.rsplit("-", 1)[1]
        assert b"tmp" in records and f"{tmp_path.name}-sweep".encode() in records  # the group: the sweep directory
        assert f"run-{run_id}-checkpoints".encode() in records and b"best.pt" in records and b"last.pt" in records
        evaluations = [json.loads(line) for line in (run_dir / "evaluations.jsonl").read_text().splitlines()]
        assert len(evaluations) == 2 and evaluations[-1]["step"] == 400  # (evaluated after the collect that passed 200)

    # The sweep's plots and table, from these recorded runs (rlpipe.plot).
    plotted = run_module("rlpipe.plot", str(tmp_path / "sweep"), timeout=300)
    assert plotted.returncode == 0, plotted.stderr[-2000:]
    for name in ("episode_return", "loss", "exploration", "q_values", "eval_return"):
        assert (tmp_path / "sweep" / "plots" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    (row,) = list(csv.DictReader((tmp_path / "sweep" / "plots" / "results.csv").open()))
    finals = [json.loads((run_dir / "summary.json").read_text())["eval/return_mean"] for run_dir in runs]
    assert int(row["seeds"]) == 2 and float(row["final_return_mean"]) == pytest.approx(sum(finals) / 2)
    assert float(row["final_return_std"]) == pytest.approx(statistics.stdev(finals))


def test_optuna_search_maximizes_the_final_evaluation(tmp_path):
    result = run_module("rlpipe.train", "--multirun", "experiment=search_cartpole", "hydra.sweeper.n_trials=2", *TINY,
                        f"hydra.sweep.dir={tmp_path}", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    finals = [json.loads(p.read_text())["eval/return_mean"] for p in sorted(tmp_path.glob("*/summary.json"))]
    assert len(finals) == 2
    best = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(max(finals)) and set(best["best_params"]) == {
        "train.lr", "train.target_update_steps", "train.batch_size"}


def test_a_sweep_refuses_one_recording_directory_for_every_run(tmp_path):
    result = run_module("rlpipe.train", "--multirun", "env=breakout", "record.dataset=true", f"record.output_dir={tmp_path / 'shared'}",
                        "train.seed=0,1", f"hydra.sweep.dir={tmp_path / 'sweep'}", timeout=300)
    assert result.returncode != 0 and not (tmp_path / "shared").exists()
    assert f"record.output_dir={tmp_path / 'shared'} would be shared by every run of the sweep" in result.stderr
