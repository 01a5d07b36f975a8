"""Runs that stop, resume and fail like a trusted tool (issue 9): one regression test per reported case.

Data safety (memory-mapped replay, damaged buffers), interruption (SIGINT, SIGTERM, SIGKILL), resume semantics
(overrides, a complete run, the summary of a resumed run, the exact step budget) and one-line errors.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from conftest import REPO, compose_config, run_module, start_module
from rlpipe.checkpoint import load_checkpoint
from rlpipe.config import ConfigError
from rlpipe.resume import resumed_config
from rlpipe.replay import SCRATCH_MARKER

SHORT = ["train.total_steps=600", "train.init_random_steps=200", "eval.interval_steps=300", "eval.episodes=3",
         "checkpoint.interval_steps=300", "train.log_interval_steps=100", "train.compile=false",
         "train.steps_per_collect=64"]
LONG = ["train.total_steps=1000000", "train.stop_on_solve=false", "train.init_random_steps=200", "eval.interval_steps=500", "eval.episodes=2",
        "checkpoint.interval_steps=500", "train.compile=false", "train.steps_per_collect=64"]


def _train(run_dir: Path, *overrides: str, cwd: Path = REPO):
    result = run_module("rlpipe.train", *SHORT, *overrides, f"hydra.run.dir={run_dir}", cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _one_line_error(result) -> str:
    assert result.returncode not in (0, None), result.stdout[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-3000:]
    return lines[0]


@pytest.fixture(scope="module")
def base_run(tmp_path_factory) -> Path:
    """A finished 600-step CartPole run (checkpoints every 300 steps, replay buffer stored)."""
    run_dir = tmp_path_factory.mktemp("base") / "run"
    _train(run_dir)
    return run_dir


# ------------------------------------------------------------------------------------------------ data safety


def test_memmap_dir_keeps_what_the_run_did_not_create(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "precious.txt").write_text("a file the run must not touch")
    _train(tmp_path / "run", "buffer.storage=memmap", f"buffer.memmap_dir={shared}")
    assert (shared / "precious.txt").read_text() == "a file the run must not touch"
    assert sorted(p.name for p in shared.iterdir()) == ["precious.txt"]  # the run's own directory is gone too

    _train(tmp_path / "kept", "buffer.storage=memmap", f"buffer.memmap_dir={shared}", "buffer.keep_memmap_files=true")
    (scratch,) = shared.glob("rlpipe-replay-kept-*")
    assert (scratch / SCRATCH_MARKER).is_file() and list(scratch.rglob("*.memmap"))


def test_memmap_default_lives_in_the_run_directory_and_is_removed(tmp_path):
    _train(tmp_path / "kept", "buffer.storage=memmap", "buffer.keep_memmap_files=true")
    (kept,) = list((tmp_path / "kept").glob("rlpipe-replay-*"))  # memmap_dir null: inside the run directory
    assert list(kept.rglob("*.memmap"))  # the replay was written there, not in memory or elsewhere
    _train(tmp_path / "run", "buffer.storage=memmap")
    assert not list((tmp_path / "run").glob("rlpipe-replay-*"))
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["finished"] and summary["steps"] == 600


def test_truncated_replay_buffer_is_refused_and_left_untouched(base_run, tmp_path):
    last = load_checkpoint(base_run / "checkpoints" / "last.pt")
    buffer_dir = base_run / "checkpoints" / last["replay_buffer"]
    victim = max(buffer_dir.rglob("*.memmap"), key=lambda p: p.stat().st_size)
    backup = victim.read_bytes()
    try:
        victim.write_bytes(b"")
        before = victim.stat()
        result = run_module("rlpipe.train", f"resume={base_run / 'checkpoints' / 'last.pt'}", "train.total_steps=1200",
                            f"hydra.run.dir={tmp_path / 'resumed'}")
        line = _one_line_error(result)
        assert "the replay buffer is damaged" in line and f"{victim.relative_to(buffer_dir)} has 0 bytes" in line
        after = victim.stat()
        assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)  # never written into
        assert not (tmp_path / "resumed").exists()
    finally:
        victim.write_bytes(backup)


# ------------------------------------------------------------------------------------------------ interruption


def _start_long_run(run_dir: Path):
    process = start_module("rlpipe.train", *LONG, f"hydra.run.dir={run_dir}")
    deadline = time.monotonic() + 120
    while not (run_dir / "checkpoints" / "last.pt").is_file():  # the loop is running: a checkpoint was written
        assert process.poll() is None, process.stderr.read()[-3000:]
        assert time.monotonic() < deadline, "the run wrote no checkpoint within 120 s"
        time.sleep(0.2)
    return process


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_sigint_and_sigterm_write_last_checkpoint_and_an_interrupted_summary(tmp_path, signum):
    run_dir = tmp_path / "run"
    process = _start_long_run(run_dir)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, stderr[-3000:]
    assert "Traceback" not in stderr
    assert f"stopped by {signum.name} at step" in stdout
    assert f"Resume with: python -m rlpipe.train resume={run_dir / 'checkpoints' / 'last.pt'}" in stdout
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["interrupted"] and summary["stopped_by"] == signum.name and not summary["finished"]
    last = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert last["counters"]["step"] == summary["steps"] > 500  # the checkpoint holds the step the run stopped at
    assert (run_dir / "checkpoints" / last["replay_buffer"]).is_dir()


def test_a_second_signal_exits_at_once(monkeypatch):
    from rlpipe import runtime

    exits = []
    monkeypatch.setattr(runtime.os, "_exit", exits.append)
    previous = signal.getsignal(signal.SIGINT)
    with runtime.StopSignals() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)  # Python runs the handler between bytecodes
        assert stop.received == signal.SIGINT and exits == []
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)
        assert exits == [128 + signal.SIGINT]
    assert signal.getsignal(signal.SIGINT) is previous  # restored


def test_after_sigkill_the_periodic_checkpoint_is_intact_and_resumes(tmp_path):
    run_dir = tmp_path / "run"
    process = _start_long_run(run_dir)
    time.sleep(1.0)
    process.kill()
    process.communicate(timeout=60)
    last = load_checkpoint(run_dir / "checkpoints" / "last.pt")  # complete: written to a temporary name, renamed
    step = last["counters"]["step"]
    assert step >= 500
    summary = json.loads((run_dir / "summary.json").read_text())  # the evaluations so far, a whole file
    assert summary["evaluations"] and not summary["finished"]
    killed_curve = [json.loads(line) for line in (run_dir / "evaluations.jsonl").read_text().splitlines()]  # whole lines
    assert killed_curve[: len(summary["evaluations"])] == summary["evaluations"]
    result = run_module("rlpipe.train", f"resume={run_dir / 'checkpoints' / 'last.pt'}", f"train.total_steps={step + 256}",
                        cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    resumed = json.loads((run_dir / "summary.json").read_text())  # a resumed run continues in its own directory
    assert resumed["finished"] and resumed["steps"] == step + 256
    curve = [json.loads(line) for line in (run_dir / "evaluations.jsonl").read_text().splitlines()]
    assert curve == resumed["evaluations"]  # evaluations after the checkpoint were dropped and played again, once
    assert len({e["step"] for e in curve}) == len(curve) and curve[: len(last["counters"]["evaluations"])] == last["counters"]["evaluations"]


# ------------------------------------------------------------------------------------------------ resume semantics


def test_resume_applies_an_allowed_override(base_run, tmp_path):
    result = run_module("rlpipe.train", f"resume={base_run / 'checkpoints' / 'last.pt'}", "train.total_steps=704",
                        "train.lr=0.01", f"hydra.run.dir={tmp_path / 'resumed'}")
    assert result.returncode == 0, result.stderr[-3000:]
    last = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")
    assert [float(group["lr"]) for group in last["optimizer"]["param_groups"]] == [pytest.approx(0.01)]  # used, not only recorded
    assert OmegaConf.load(tmp_path / "resumed" / "config.yaml").train.lr == 0.01
    assert last["config"]["train"]["lr"] == 0.01 and last["counters"]["step"] == 704


@pytest.mark.parametrize("override,message", [
    ("train.seed=5", "cannot change train.seed=5 (the checkpoint has 0: the random-number states come from the checkpoint)"),
    ("buffer=uniform", "cannot change buffer.kind='uniform' (the checkpoint has 'prioritized'"),
    ("model.hidden_sizes=[64]", "cannot change model.hidden_sizes=[64] (the checkpoint has [256, 256]"),
])
def test_resume_refuses_an_override_it_cannot_apply(base_run, tmp_path, override, message):
    result = run_module("rlpipe.train", f"resume={base_run / 'checkpoints' / 'last.pt'}", "train.total_steps=1200",
                        override, f"hydra.run.dir={tmp_path / 'resumed'}")
    assert message in _one_line_error(result)
    assert not (tmp_path / "resumed").exists()


def test_resume_without_overrides_takes_the_checkpoint_configuration():
    stored = OmegaConf.to_container(compose_config(["env=lunarlander", "train.batch_size=48", "logger=tensorboard"]))
    cfg = resumed_config(stored, compose_config(["resume=x.pt"]), ["resume=x.pt"])
    assert (cfg.env.id, cfg.train.batch_size, cfg.resume) == ("LunarLander-v3", 48, "x.pt")
    assert (cfg.logger.tensorboard, cfg.logger.csv) == ({}, None)
    overrides = ["logger=[csv,wandb]", "train.total_steps=9000"]
    cfg = resumed_config(stored, compose_config(overrides), overrides)
    assert (cfg.train.total_steps, cfg.env.id, cfg.logger.tensorboard, cfg.logger.csv) == (9000, "LunarLander-v3", None, {})
    assert cfg.logger.wandb.mode == "offline"


def test_checkpoints_from_before_several_loggers_still_load():
    stored = OmegaConf.to_container(compose_config(["logger=wandb"]))
    stored["logger"] = {"kind": "wandb", "mode": "offline", "project": "old"}  # how such checkpoints stored it
    cfg = resumed_config(stored, compose_config(["resume=x.pt"]), ["resume=x.pt"])
    assert (cfg.logger.wandb.project, cfg.logger.wandb.mode, cfg.logger.csv) == ("old", "offline", None)


def test_resume_refuses_a_new_length_for_a_learning_rate_schedule():
    stored = OmegaConf.to_container(compose_config(["train.lr_schedule=linear"]))
    with pytest.raises(ConfigError, match="cannot change train.total_steps=9000 .* linear learning-rate schedule"):
        resumed_config(stored, compose_config(["train.total_steps=9000"]), ["train.total_steps=9000"])


def test_resuming_a_complete_run_stops_at_once(base_run, tmp_path):
    last = base_run / "checkpoints" / "last.pt"
    before = last.stat().st_mtime_ns
    result = run_module("rlpipe.train", f"resume={last}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "the run is complete (step 600 of train.total_steps=600)" in result.stdout
    assert last.stat().st_mtime_ns == before
    assert not [p for p in tmp_path.rglob("*") if p.name != "outputs"]  # nothing left behind (Hydra's outputs/ at most)


def test_a_resumed_run_continues_in_its_own_directory(tmp_path):
    run_dir = tmp_path / "run"
    _train(run_dir)
    result = run_module("rlpipe.train", f"resume={run_dir / 'checkpoints' / 'last.pt'}", "train.total_steps=704", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not list((tmp_path / "outputs").rglob("*"))  # Hydra's new directory was not left behind
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 704 and summary["finished"]
    assert "resumed from" in (run_dir / "train.log").read_text()


def test_resumed_summary_describes_the_whole_run_and_names_existing_files(base_run, tmp_path):
    before = json.loads((base_run / "summary.json").read_text())
    resumed_dir = tmp_path / "resumed"
    result = run_module("rlpipe.train", f"resume={base_run / 'checkpoints' / 'last.pt'}", "train.total_steps=704",
                        f"hydra.run.dir={resumed_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((resumed_dir / "summary.json").read_text())
    assert all(Path(path).is_file() for path in summary["checkpoints"].values())
    assert summary["evaluations"][: len(before["evaluations"])] == before["evaluations"]
    assert summary["wall_seconds"] > before["wall_seconds"] and summary["eval/best_return_mean"] >= before["eval/best_return_mean"]


def test_runs_stop_at_total_steps_exactly(base_run):
    summary = json.loads((base_run / "summary.json").read_text())  # 600 steps in collects of 64
    assert summary["steps"] == 600 and summary["stopped_by"] == "total_steps"
    assert load_checkpoint(base_run / "checkpoints" / "last.pt")["counters"]["step"] == 600


# ------------------------------------------------------------------------------------------------ one clear line


@pytest.mark.parametrize("args,env,message", [
    (["train.device=cuda"], {}, "invalid configuration: train.device=cuda is unavailable: this machine has no CUDA device"),
    (["train.device=mps"], {}, "invalid configuration: train.device=mps is unavailable"),
    (["env.id=Pendulum-v1"], {}, "env.id='Pendulum-v1' has continuous actions: DQN needs one discrete action"),
    (["logger=wandb", "logger.wandb.mode=online"], {"WANDB_API_KEY": "", "NETRC": "/nonexistent/netrc"},
     "logger.wandb.mode=online needs a W&B API key"),
])
def test_unusable_settings_fail_with_one_line_and_leave_no_run_directory(tmp_path, args, env, message):
    if "cuda" in args[0] and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    result = run_module("rlpipe.train", *args, f"hydra.run.dir={tmp_path / 'run'}", env=env, timeout=120)
    assert message in _one_line_error(result)
    assert not (tmp_path / "run").exists()


def test_unreadable_checkpoints_say_what_they_are(tmp_path, base_run):
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint\n")
    noise = tmp_path / "noise.pt"
    noise.write_bytes(os.urandom(4096))
    cases = {
        text: f"{text}: not an rlpipe checkpoint (not a file written by torch.save",
        noise: f"{noise}: not an rlpipe checkpoint (not a file written by torch.save",
        base_run: f"{base_run}: is a directory; expected a checkpoint file such as <run>/checkpoints/last.pt "
                  f"(did you mean {base_run / 'checkpoints' / 'last.pt'}?)",
    }
    for path, message in cases.items():
        result = run_module("rlpipe.evaluate", f"checkpoint={path}", timeout=120)
        assert message in _one_line_error(result)


def test_doorkey_counts_full_success_as_solved():
    from rlpipe.rundir import first_solved as _first_solved, solved_when as _solved_when

    when = _solved_when(compose_config(["env=doorkey"]).env)
    assert when == {"eval/success_rate": 1.0}
    evaluations = [{"step": 5000, "eval/return_mean": 2.1, "eval/success_rate": 0.9}, {"step": 10000, "eval/return_mean": 2.4, "eval/success_rate": 1.0}]
    assert _first_solved(evaluations, when)["step"] == 10000
    assert _first_solved(evaluations, _solved_when(compose_config().env)) is None  # CartPole: a return of 475


def test_eighteen_successes_in_twenty_reach_a_ninety_percent_threshold():
    from rlpipe.evaluate import EvalResult
    from rlpipe.rundir import first_solved as _first_solved

    result = EvalResult(returns=torch.full((20,), 0.7), lengths=torch.full((20,), 50),
                        extras={"success": torch.tensor([True] * 18 + [False] * 2)})
    metrics = result.as_metrics()
    assert metrics["eval/success_rate"] >= 0.9  # (18/20 in float32 is 0.89999998)
    assert _first_solved([{"step": 10000, **metrics}], {"eval/success_rate": 0.9})["step"] == 10000


def test_run_directory_has_a_log_and_no_empty_video_folder(base_run):
    log = (base_run / "train.log").read_text()
    assert "training CartPole-v1 for 600 agent steps" in log and "step 600: evaluation" in log
    assert "stopped by total_steps at step 600" in log
    assert not (base_run / "logs" / "csv" / "videos").exists()


def test_agent_steps_its_own_preprocessed_environment_and_names_shapes_plainly(base_run):
    from rlpipe.agent import Agent

    agent = Agent.load(base_run / "checkpoints" / "best.pt")
    env = agent.make_env(seed=0)
    td = env.reset()
    for _ in range(5):
        td["action"] = torch.tensor(agent.act(td["observation"]))
        td = env.step(td)["next"]
    assert td["observation"].shape == (4,)
    env.close()
    with pytest.raises(ValueError, match=r"observation has shape \[3\], expected \[4\] or \[B, 4\]$"):
        agent.act(torch.zeros(3))


def test_another_classic_id_names_its_run_and_threshold_after_itself():
    cfg = compose_config(["env.id=Acrobot-v1"])
    assert (cfg.env.name, cfg.env.solved_return) == ("acrobot", -100.0)  # gymnasium's reward_threshold
    cfg = compose_config()
    assert (cfg.env.name, cfg.env.solved_return) == ("cartpole", 475.0)
    cfg = compose_config(["env=lunarlander"])
    assert (cfg.env.name, cfg.env.solved_return) == ("lunarlander", 200.0)


def test_total_steps_must_split_evenly_across_envs(tmp_path):
    from rlpipe.train import train

    with pytest.raises(ConfigError, match="train.total_steps=1001 is invalid: expected a multiple of env.num_envs=4"):
        train(compose_config(["env=breakout", "train.total_steps=1001", "train.init_random_steps=100"], check=False), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_resume_from_best_gets_a_new_directory(base_run):
    """best.pt is older than last.pt: continuing in place would overwrite the later state, so it gets a new one."""
    from rlpipe.rundir import _run_dir_of

    assert _run_dir_of(base_run / "checkpoints" / "best.pt") is None
    assert _run_dir_of(base_run / "checkpoints" / "last.pt") == base_run.resolve()
