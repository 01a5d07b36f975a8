"""``python -m rlpipe.train``: deep Q-learning (double DQN, prioritized replay) composed by Hydra from ``conf/``.

The whole algorithm is the loop in :func:`loop`, read top to bottom::

    collect -> store -> count -> schedules -> learn (sample, update, priorities) -> evaluate / checkpoint / log

:func:`rlpipe.run.build_run` builds every piece before it; ``rlpipe.rundir`` says where the run's files go.

Examples::

    python -m rlpipe.train                                   # CartPole-v1, the default experiment
    python -m rlpipe.train env=lunarlander
    python -m rlpipe.train env=cartpole train.seed=3 train.total_steps=20000
    python -m rlpipe.train --multirun train.seed=0,1,2
    python -m rlpipe.train resume=outputs/.../checkpoints/last.pt   # continues in that run's directory

SIGINT (Ctrl-C) or SIGTERM stops the run after its current step with ``last.pt`` and ``summary.json`` written
(exit code 130 / 143); a second one exits at once.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack, nullcontext
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from rlpipe.async_collect import WorkerDied
from rlpipe.checkpoint import CheckpointError, check_stored_buffer, load_checkpoint
from rlpipe.config import ConfigError, validate
from rlpipe.resume import resumed_config
from rlpipe.run import Run, TrainingDiverged, build_run
from rlpipe.rundir import RunDirectory
from rlpipe.runtime import StopSignals, check_command_line, quiet_libraries


class RunComplete(Exception):
    """A resumed run had already reached ``train.total_steps``: there is nothing to train."""


def loop(run: Run) -> None:
    """Trains until the run ends: one collect of ``train.steps_per_collect`` agent steps per iteration."""
    agents, replay, clock = run.agents, run.replay, run.clock
    clock.next_collect()
    for batch in run.collector:  # collect: [num_envs, steps] (or [steps] for one env)
        clock.collected()  # (the collect's env time; the policy's forward passes count as acting)
        batch = run.steps_left(batch)  # the last collect keeps exactly the steps left
        with clock("learner"):
            agents.observe(batch)  # RND: its statistics, and flags it writes for the replay (nothing for one agent)
        with clock("replay"):
            replay.extend(batch)  # store the transitions: what the loss reads
        run.count(batch)  # agent steps, and the episodes that ended: return, game score, length
        run.schedules()  # exploration (epsilon or temperature), RND's alpha, PER's beta: functions of the counters
        n_updates = run.updates_due(batch.numel())  # train.updates_per_step (none during the random prefill)
        if n_updates:
            run.learn(n_updates)  # one draw of n_updates minibatches, the gradient updates, new priorities
            run.share_weights()  # collector=async: the workers get the learner's weights every sync interval
        ending = run.ending()  # the step budget, the time limit, a solve, or a signal
        if run.evaluation_due(ending):
            run.evaluate()  # the protocol's games: evaluations.jsonl, best.pt, solved, summary.json
        stopping = run.stopping(ending)  # (the evaluation may just have solved the task)
        if run.checkpoint_due(stopping):
            run.checkpoint()  # last.pt with the replay buffer
        if run.log_due(stopping):
            run.log()  # the window's metrics to the loggers and the progress bar
        run.progress.update(batch.numel())
        if stopping:
            break
        clock.next_collect()


def train(
    cfg: DictConfig, run_dir: Path, *, overrides: Sequence[str] = (), stop: StopSignals | None = None, group: str | None = None
) -> dict[str, Any]:
    """Trains a DQN agent as ``cfg`` says; writes config, logs, checkpoints and ``summary.json`` into ``run_dir``
    and returns the summary.

    With ``cfg.resume``, the run continues from that checkpoint with the checkpoint's configuration; ``overrides``
    (the command line's) change what a resumed run may change and are refused otherwise
    (:func:`rlpipe.resume.resumed_config`). Nothing is written before the configuration, the checkpoint and its
    replay buffer have been checked.

    Args:
        cfg: the composed configuration (validated here).
        run_dir: where the run's files go.
        overrides: the command line's overrides (Hydra's ``key=value`` / ``group=option`` strings).
        stop: SIGINT/SIGTERM handlers already installed by the caller; by default installed here for the run.
        group: the W&B group of the run (the runs of one sweep share it).
    """
    started = time.perf_counter()
    quiet_libraries()
    resume_from = None
    if cfg.get("resume"):
        resume_from = load_checkpoint(cfg.resume)
        cfg = resumed_config(resume_from["config"], cfg, list(overrides))  # validated
        check_stored_buffer(resume_from)
        reached = resume_from["counters"]["step"]
        if reached >= cfg.train.total_steps:
            raise RunComplete(f"{cfg.resume}: the run is complete (step {reached:,} of train.total_steps="
                              f"{cfg.train.total_steps:,}); raise train.total_steps to train further")
    else:
        cfg = validate(cfg)
    # Whatever the run leaves to clean up (its memory-mapped replay) is cleaned up at the end, exceptions included.
    with (StopSignals() if stop is None else nullcontext(stop)) as stop, ExitStack() as cleanup:
        run = build_run(cfg, run_dir, resume_from, stop=stop, cleanup=cleanup, started=started, group=group)
        loop(run)
        return run.finish()


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    hydra_cfg = HydraConfig.get()
    directory = RunDirectory.for_command(
        Path(hydra_cfg.runtime.output_dir),  # Hydra made it (with .hydra/ and train.log) before this call
        named=any(o.startswith("hydra.run.dir=") for o in hydra_cfg.overrides.hydra),
        resume=cfg.get("resume"), single_run=hydra_cfg.mode == RunMode.RUN,
    )
    # A sweep's runs form one W&B group, named after the sweep directory (its date and time, or its experiment).
    group = "-".join(Path(hydra_cfg.sweep.dir).parts[-2:]) if hydra_cfg.mode == RunMode.MULTIRUN else None
    if group is not None and cfg.record.dataset and cfg.record.output_dir is not None:
        directory.discard()
        raise SystemExit(f"rlpipe.train: invalid configuration: record.output_dir={cfg.record.output_dir} would be shared by "
                         f"every run of the sweep; leave it null (each run records into <run>/data)")
    # SIGINT/SIGTERM stop the run cleanly from here on (the loop checks them after every collect).
    with StopSignals() as stop:
        try:
            summary = train(cfg, directory.path, overrides=list(hydra_cfg.overrides.task), stop=stop, group=group)
        except RunComplete as done:
            directory.discard()
            print(f"rlpipe.train: {done}")
            return None
        except ConfigError as err:
            directory.discard()
            raise SystemExit(f"rlpipe.train: invalid configuration: {err}") from None
        except (CheckpointError, TrainingDiverged) as err:
            directory.discard()
            raise SystemExit(f"rlpipe.train: {err}") from None
        except WorkerDied as err:
            raise SystemExit(f"rlpipe.train: {err}; the run's last checkpoint stands (resume=<run>/checkpoints/last.pt)") from None
    _report(summary)
    return summary["eval/return_mean"]  # what a sweeper optimizes (hydra/sweeper=optuna)


def _report(summary: dict[str, Any]) -> None:
    """The command's last lines: the run directory, the final evaluation and the summary as one JSON line (or, after
    a signal, how to resume), then the exit code of an interrupted run."""
    if summary["interrupted"]:
        signum = signal.Signals[summary["stopped_by"]]
        print(f"rlpipe.train: stopped by {signum.name} at step {summary['steps']:,}; last.pt and summary.json written. "
              f"Resume with: python -m rlpipe.train resume={summary['checkpoints']['last']}")
        raise SystemExit(128 + signum.value)
    solved = f"; solved at step {summary['solved_at_step']} after {summary['solved_at_seconds']:.1f} s" if summary["solved"] else ""
    print(f"run directory: {summary['run_dir']}")
    success = f", success rate {summary['eval/success_rate']:.2f}" if "eval/success_rate" in summary else ""
    print(
        f"final evaluation: {summary['eval/return_mean']:.1f} +- {summary['eval/return_std']:.1f} over "
        f"{summary['eval/episodes']} episodes{success} at step {summary['steps']}{solved} "
        f"(protocol {summary['eval/protocol']['name']}, epsilon {summary['eval/epsilon']:g})"
    )
    print(json.dumps({key: value for key, value in summary.items() if key != "evaluations"}))


if __name__ == "__main__":
    check_command_line("rlpipe.train", "config", sys.argv[1:], run_dir_key="hydra.run.dir")
    main()
