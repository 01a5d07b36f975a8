"""Learning to threshold with the default configuration of each env preset.

CartPole (about a minute on two CPU cores) and DoorKey with skills (about two and a half minutes) run in the default
suite; the other seeds and LunarLander are ``slow`` (``make test-slow``).
"""

from __future__ import annotations

import json

import pytest

from conftest import run_module


def _train(run_dir, *overrides):
    result = run_module("rlpipe.train", *overrides, f"hydra.run.dir={run_dir}", timeout=3600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((run_dir / "summary.json").read_text())


def test_cartpole_default_config_solves_within_50k_steps(tmp_path):
    summary = _train(tmp_path, "train.seed=0")
    assert summary["solved"], summary["evaluations"]
    assert summary["solved_at_step"] <= 50_000
    assert summary["eval/episodes"] == 20 and summary["eval/return_mean"] >= 475
    # the saved agent holds up on 20 fresh episodes
    result = run_module("rlpipe.evaluate", f"checkpoint={tmp_path / 'checkpoints' / 'best.pt'}", "eval.episodes=20", "eval.seed=123")
    assert result.returncode == 0, result.stderr
    assert result.json_lines()[-1]["eval/return_mean"] >= 475


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_cartpole_solves_on_other_seeds(tmp_path, seed):
    summary = _train(tmp_path, f"train.seed={seed}")
    assert summary["solved"] and summary["solved_at_step"] <= 50_000, summary["evaluations"]


@pytest.mark.slow
def test_lunarlander_reaches_200_within_200k_steps(tmp_path):
    summary = _train(tmp_path, "env=lunarlander", "train.seed=0")
    assert summary["solved"] and summary["solved_at_step"] <= 200_000, summary["evaluations"]


def test_doorkey_skills_reach_99_percent_success_within_20k_decisions(tmp_path):
    # The target with the default configuration, seed 0, judged on 100 greedy episodes at the end. Every measured
    # 20k-decision run reached 1.00 (docs/results/doorkey.md and docs/lab-notes/2026-11-22-doorkey-target-copies.md),
    # but the curve before that varies with seed and thread count, so only the end is asserted, and only the end is
    # evaluated: evaluations draw nothing from training's generators (this run's 3,350 training episodes are the
    # benchmark's, evaluated every 5,000 decisions), and seed 0's failing early ones (100 episodes of 100 decisions
    # each) cost as much as a quarter of the run.
    summary = _train(tmp_path, "env=doorkey", "train.seed=0", "eval.interval_steps=20000")
    assert summary["steps"] <= 20_000 + 4 and summary["eval/episodes"] == 100
    assert summary["eval/success_rate"] >= 0.99, summary["evaluations"]
    assert 3 <= summary["eval/length_mean"] <= 10  # GetKey, OpenDoor, GoToGoal (+ the odd detour)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_doorkey_skills_reach_99_percent_on_other_seeds(tmp_path, seed):
    summary = _train(tmp_path, "env=doorkey", f"train.seed={seed}")
    assert summary["eval/success_rate"] >= 0.99, summary["evaluations"]
