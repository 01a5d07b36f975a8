"""Smoke tests of the real entry points (``python -m rlpipe.train`` / ``rlpipe.evaluate``) with tiny overrides:
run directory contents, resume, evaluation, multirun, loggers, and the bad-input paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from rlpipe.checkpoint import load_checkpoint
from rlpipe.run import TrainingDiverged
from rlpipe.train import train

from conftest import compose_config, run_module

SHORT = ["train.total_steps=600", "train.init_random_steps=200", "eval.interval_steps=300", "eval.episodes=3",
         "checkpoint.interval_steps=300", "train.log_interval_steps=100", "train.compile=false"]


def _train(run_dir: Path, *overrides: str):
    result = run_module("rlpipe.train", *SHORT, *overrides, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory) -> Path:
    """One short CartPole run with the default (compiled) update, shared by the tests that read its outputs."""
    run_dir = tmp_path_factory.mktemp("cartpole")
    _train(run_dir, "train.compile=true", "train.steps_per_collect=64")
    return run_dir


def test_train_writes_the_run_directory(cartpole_run):
    summary = json.loads((cartpole_run / "summary.json").read_text())
    for key in ("steps", "eval/return_mean", "eval/return_std", "wall_seconds", "updates", "episodes"):
        assert key in summary
    assert summary["steps"] >= 600 and summary["updates"] > 0 and summary["wall_seconds"] > 0
    assert summary["eval/episodes"] == 3 and len(summary["evaluations"]) >= 2
    assert (cartpole_run / "checkpoints" / "best.pt").is_file()
    assert (cartpole_run / "checkpoints" / "last.pt").is_file()
    assert OmegaConf.load(cartpole_run / "config.yaml").train.total_steps == 600  # resolved config
    scalars = cartpole_run / "logs" / "csv" / "scalars"
    for metric in ("train/loss", "train/q_mean", "train/adam_step_fraction", "train/epsilon", "train/lr", "episode/reward", "episode/length",
                   "buffer/size", "buffer/beta", "buffer/priority_max", "buffer/weight_min", "eval/return_mean",
                   "eval/return_std", "time/steps_per_s", "time/updates_per_s"):
        header, *rows = (scalars / f"{metric}.csv").read_text().splitlines()
        assert header == "step,value" and rows, metric
        step, value = rows[-1].split(",")
        assert int(step) > 0 and value != "nan", metric
    fraction = float((scalars / "train/adam_step_fraction.csv").read_text().splitlines()[-1].split(",")[1])
    assert 0 < fraction <= 1  # the size of Adam's step against its undamped size


def test_one_name_per_quantity_in_logs_summary_and_evaluations(cartpole_run):
    """``eval/return_mean`` is spelled the same in the CSV log, summary.json, evaluations.jsonl and rlpipe.evaluate."""
    summary = json.loads((cartpole_run / "summary.json").read_text())
    lines = [json.loads(line) for line in (cartpole_run / "evaluations.jsonl").read_text().splitlines()]
    assert lines == summary["evaluations"]
    assert len(lines) == 2 and lines[-1]["step"] == 600  # (the first after the collect that passed 300)
    logged = (cartpole_run / "logs" / "csv" / "scalars" / "eval" / "return_mean.csv").read_text().splitlines()[1:]
    assert [float(row.split(",")[1]) for row in logged] == pytest.approx([e["eval/return_mean"] for e in lines])
    assert summary["eval/return_mean"] == lines[-1]["eval/return_mean"]
    assert {key for key in summary if "return_mean" in key} == {"eval/return_mean", "eval/best_return_mean"}
    evaluated = run_module("rlpipe.evaluate", f"checkpoint={cartpole_run / 'checkpoints' / 'last.pt'}", "eval.episodes=2")
    assert "eval/return_mean" in evaluated.json_lines()[-1]


def test_checkpoint_names_every_stateful_piece(cartpole_run):
    payload = load_checkpoint(cartpole_run / "checkpoints" / "last.pt")
    for piece in ("q_network", "target_network", "optimizer", "exploration", "target_updater", "rng", "counters", "config"):
        assert payload[piece] is not None, piece
    assert payload["lr_scheduler"] is None  # the default schedule is constant
    assert payload["counters"]["step"] >= 600
    assert payload["replay_buffer"] and (cartpole_run / "checkpoints" / payload["replay_buffer"]).is_dir()
    assert payload["config"]["env"]["id"] == "CartPole-v1"


def test_resume_continues_the_step_counter(cartpole_run, tmp_path):
    last = cartpole_run / "checkpoints" / "last.pt"
    before = load_checkpoint(last)["counters"]
    result = _train(tmp_path, "train.total_steps=1200", "train.compile=true", "train.steps_per_collect=64", f"resume={last}")
    assert result.json_lines()[-1]["resumed_from"] == str(last)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["steps"] >= 1200
    assert summary["updates"] > before["updates"]
    # the run's evaluations so far come back with the checkpoint; new ones continue from the resumed step
    assert summary["evaluations"][: len(before["evaluations"])] == before["evaluations"]
    first_new = summary["evaluations"][len(before["evaluations"])]["step"]
    assert before["step"] < first_new <= 1200
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["counters"]["episodes"] > before["episodes"]


def test_evaluate_cli_prints_one_json_line(cartpole_run):
    result = run_module("rlpipe.evaluate", f"checkpoint={cartpole_run / 'checkpoints' / 'best.pt'}", "eval.episodes=4")
    assert result.returncode == 0, result.stderr
    (line,) = result.json_lines()
    assert line["eval/episodes"] == 4 and len(line["eval/returns"]) == 4
    assert line["eval/return_mean"] == pytest.approx(sum(line["eval/returns"]) / 4)
    assert line["eval/return_std"] >= 0 and line["env"] == "CartPole-v1"


def test_a_released_agent_holds_weights_only_and_plays_through_both_entry_points(cartpole_run, tmp_path):
    """``rlpipe.export``: the agent file holds the Q-network, the configuration and the run's step and evaluations,
    nothing that only resuming needs; ``Agent.load`` and ``rlpipe.evaluate`` play it exactly as the checkpoint."""
    from rlpipe.agent import Agent

    best = cartpole_run / "checkpoints" / "best.pt"
    out = tmp_path / "agents" / "cartpole.pt"
    result = run_module("rlpipe.export", f"checkpoint={best}", f"out={out}")
    assert result.returncode == 0, result.stderr
    (line,) = result.json_lines()
    assert line["out"] == str(out) and line["bytes"] == out.stat().st_size and line["env"] == "CartPole-v1"
    payload = load_checkpoint(out, agent_file_ok=True)
    stored = load_checkpoint(best)
    assert set(payload) == {"format", "version", "config", "counters", "q_network", "source", "path"}
    assert all(torch.equal(payload["q_network"][k], stored["q_network"][k]) for k in stored["q_network"])
    assert payload["counters"]["step"] == line["step"] == stored["counters"]["step"]
    assert out.stat().st_size < best.stat().st_size / 2  # no optimizer moments, no target network, no RNG states

    observations = torch.randn(64, 4)
    assert torch.equal(Agent.load(out).act(observations), Agent.load(best).act(observations))
    played = [run_module("rlpipe.evaluate", f"checkpoint={path}", "eval.episodes=3").json_lines()[0] for path in (out, best)]
    assert played[0]["eval/returns"] == played[1]["eval/returns"] and played[0]["step"] == played[1]["step"]


def test_a_released_agent_does_not_resume_and_a_foreign_file_is_not_an_agent(cartpole_run, tmp_path):
    out = tmp_path / "agent.pt"
    assert run_module("rlpipe.export", f"checkpoint={cartpole_run / 'checkpoints' / 'best.pt'}", f"out={out}").returncode == 0
    result = run_module("rlpipe.train", f"resume={out}", f"hydra.run.dir={tmp_path / 'run'}", timeout=120)
    assert result.returncode != 0 and "a released agent (network weights only) evaluates and plays but cannot resume" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    foreign = tmp_path / "foreign.pt"
    torch.save({"model": torch.zeros(3)}, foreign)
    # (rlpipe.evaluate and rlpipe.train refuse the same file: test_foreign_and_truncated_checkpoints_fail_cleanly)
    result = run_module("rlpipe.export", f"checkpoint={foreign}", f"out={tmp_path / 'x.pt'}", timeout=120)
    assert result.returncode != 0 and f"{foreign}: not an rlpipe checkpoint" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "x.pt").exists()


def test_lunarlander_smoke(tmp_path):
    _train(tmp_path, "env=lunarlander", "train.total_steps=400", "model.dueling=true", "buffer=uniform", "logger=tensorboard")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["env"] == "LunarLander-v3" and summary["steps"] >= 400
    assert list((tmp_path / "logs" / "tensorboard").glob("events.out.tfevents.*"))


# The CPU preset (4 envs, 3-step targets, prioritized frame replay) with small sizes, batches of 8 among them; eager
# to save the compile time (the compiled update is covered by tests/test_precision.py and the CartPole runs).
# 960 steps: 240 per env, enough for the first (random) games to end.
BREAKOUT = ["env=breakout", "train.total_steps=960", "train.init_random_steps=480", "buffer.capacity=4000", "eval.greedy_game=false",
            "train.batch_size=8",
            "eval.episodes=1", "eval.interval_steps=480", "checkpoint.interval_steps=480",
            "train.log_interval_steps=160", "train.compile=false"]


def test_breakout_smoke_and_resume_with_the_frame_buffer(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    result = run_module("rlpipe.train", *BREAKOUT, f"hydra.run.dir={first}")
    assert result.returncode == 0, result.stderr[-3000:]
    config = OmegaConf.load(first / "config.yaml")
    assert (config.env.num_envs, config.train.n_step, config.checkpoint.save_buffer) == (4, 3, True)
    summary = json.loads((first / "summary.json").read_text())
    assert summary["env"] == "ALE/Breakout-v5" and summary["steps"] >= 960 and summary["updates"] > 0
    assert summary["finished"] and summary["eval/return_mean"] >= 0  # the game score, no shaping penalties
    scalars = first / "logs" / "csv" / "scalars"
    for metric in ("episode/score", "episode/reward", "train/temperature", "buffer/priority_max", "train/loss"):
        assert (scalars / f"{metric}.csv").read_text().strip(), metric
    # the time budget of the loop: every stage is timed, and the fractions account for the wall time
    last_window = {path.name.removesuffix("_fraction.csv"): dict(line.split(",") for line in path.read_text().split()[1:])
                   for path in (scalars / "time").glob("*_fraction.csv")}
    step = str(summary["steps"])  # the final log: its window holds an evaluation and a checkpoint too
    fractions = {stage: float(rows[step]) for stage, rows in last_window.items() if step in rows}
    assert {"env", "acting", "replay", "learner", "eval", "checkpoint", "other"} <= set(fractions), fractions
    assert all(value > 0 for name, value in fractions.items() if name != "other"), fractions
    assert 0.95 < sum(fractions.values()) < 1.05, fractions
    last = load_checkpoint(first / "checkpoints" / "last.pt")
    assert last["replay_buffer"] and (first / "checkpoints" / last["replay_buffer"] / "frame_replay.json").is_file()

    result = run_module("rlpipe.train", *BREAKOUT, "train.total_steps=1440", f"resume={first / 'checkpoints' / 'last.pt'}",
                        f"hydra.run.dir={second}")
    assert result.returncode == 0, result.stderr[-3000:]
    resumed = json.loads((second / "summary.json").read_text())
    assert resumed["steps"] >= 1440 and resumed["updates"] > summary["updates"]
    # the curve and the clock continue: the first run's evaluations come first, later ones are later in wall time
    assert resumed["evaluations"][: len(summary["evaluations"])] == summary["evaluations"]
    assert resumed["evaluations"][-1]["wall_seconds"] > summary["evaluations"][-1]["wall_seconds"]
    assert resumed["wall_seconds"] > summary["wall_seconds"]


def test_time_limit_stops_the_run_with_a_summary(tmp_path):
    _train(tmp_path, "train.total_steps=1000000", "train.time_limit_minutes=0.05", "eval.interval_steps=100000")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["finished"] and summary["steps"] < 1_000_000 and len(summary["evaluations"]) == 1
    assert 3.0 <= summary["wall_seconds"] < 60.0
    assert (tmp_path / "checkpoints" / "last.pt").is_file()


def test_wandb_logger_runs_offline(tmp_path):
    _train(tmp_path, "logger=wandb", "train.total_steps=300", "train.init_random_steps=100")
    assert list((tmp_path / "logs").rglob("offline-run-*"))


def test_multirun_sweeps_seeds(tmp_path):
    result = run_module(
        "rlpipe.train", "--multirun", "train.seed=0,1", *SHORT, "train.total_steps=300", "train.init_random_steps=100",
        f"hydra.sweep.dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summaries = sorted(tmp_path.glob("*/summary.json"))
    assert [json.loads(p.read_text())["seed"] for p in summaries] == [0, 1]


@pytest.mark.parametrize(
    "args,message",
    [
        (["env=atari5000"], "Could not find 'env/atari5000'"),
        (["train.lr=[1,"], "rlpipe.train: cannot parse the override 'train.lr=[1,': "),
        (["exploration=boltzmann"], "Could not find 'exploration/boltzmann'"),
        (["train.lr=-0.1"], "invalid configuration: train.lr=-0.1 is invalid: expected a number > 0"),
        (["train.batch_size=0"], "invalid configuration: train.batch_size=0 is invalid: expected a number >= 1"),
        (["train.gamma=1.01"], "invalid configuration: train.gamma=1.01 is invalid: expected a number in [0.0, 1.0]"),
        (["train.lr=fast"], "invalid configuration: train.lr: Value 'fast' of type 'str' could not be converted to Float"),
        (["train.batchsize=32"], "Key 'batchsize' is not in struct"),
        (["+train.batchsize=32"], "invalid configuration: unknown key train.batchsize: train accepts"),
        (["env.id=NoSuchEnv-v0"], "invalid configuration: env.id='NoSuchEnv-v0' is invalid"),
        (["resume=/no/such/checkpoint.pt"], "/no/such/checkpoint.pt: no such checkpoint file"),
    ],
)
def test_bad_input_fails_fast_without_traceback(args, message, tmp_path):
    result = run_module("rlpipe.train", *args, f"hydra.run.dir={tmp_path / 'run'}", timeout=120)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "run").exists()  # a rejected command leaves no run directory behind


def test_an_uncreatable_run_directory_is_one_line():
    result = run_module("rlpipe.train", "hydra.run.dir=/proc/rlpipe-run", timeout=120)
    assert result.returncode != 0
    assert "rlpipe.train: hydra.run.dir=/proc/rlpipe-run: cannot create the run directory" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_foreign_and_truncated_checkpoints_fail_cleanly(cartpole_run, tmp_path):
    foreign = tmp_path / "foreign.pt"
    torch.save({"model": torch.zeros(3)}, foreign)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes((cartpole_run / "checkpoints" / "last.pt").read_bytes()[:1000])
    for path, reason in ((foreign, "not an rlpipe checkpoint"), (truncated, "not a readable checkpoint")):
        for module, arg in (("rlpipe.train", f"resume={path}"), ("rlpipe.evaluate", f"checkpoint={path}")):
            result = run_module(module, arg, f"hydra.run.dir={tmp_path / 'run'}", timeout=120)
            assert result.returncode != 0
            assert f"{path}: {reason}" in result.stderr and "Traceback" not in result.stderr
            assert len(result.stderr.strip().splitlines()) == 1


def test_resume_with_another_env_is_refused(cartpole_run, tmp_path):
    result = run_module("rlpipe.train", "env=lunarlander", f"resume={cartpole_run / 'checkpoints' / 'last.pt'}",
                        f"hydra.run.dir={tmp_path / 'run'}", timeout=120)
    assert result.returncode != 0
    assert "cannot change env.id='LunarLander-v3' (the checkpoint has 'CartPole-v1'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


def test_non_finite_loss_stops_the_run_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    """Regression guard: a NaN must stop training before it reaches a checkpoint."""
    from rlpipe import learner

    real_loss = learner.GradientUpdate._eager_loss
    calls = {"n": 0}

    def poisoned_loss(self, *tensors):
        calls["n"] += 1
        loss, priority = real_loss(self, *tensors)
        return (loss * float("nan") if calls["n"] > 150 else loss), priority

    monkeypatch.setattr(learner.GradientUpdate, "_eager_loss", poisoned_loss)
    cfg = compose_config([*SHORT, "train.total_steps=2000", "checkpoint.interval_steps=256", "train.steps_per_collect=64"])
    with pytest.raises(TrainingDiverged, match="the loss became nan at update"):
        train(cfg, tmp_path)
    payload = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert payload["counters"]["updates"] <= 150
    assert all(torch.isfinite(t).all() for t in payload["q_network"].values())
