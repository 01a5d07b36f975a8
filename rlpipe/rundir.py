"""The run directory: where a run's files go, and the files that tell its story.

Hydra makes a directory for every command (``outputs/<date>/<time>_<env>_seed<seed>/``, with ``.hydra/`` and
``train.log``) before ``rlpipe.train`` runs. :class:`RunDirectory` decides where the run writes instead: a run
resumed from its own ``last.pt`` continues in its directory; one resumed from another checkpoint gets a new
directory named after the checkpoint's env and seed; a rejected command leaves no directory behind. The run's
files: ``summary.json`` (:func:`summary`, rewritten after every evaluation) and ``evaluations.jsonl`` (one line per
evaluation, appended as it happens).
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from rlpipe.checkpoint import CheckpointError, Counters, load_checkpoint
from rlpipe.evaluate import EvalResult, evaluation_protocol
from rlpipe.runtime import run_dir_existed

EVALUATIONS_FILE = "evaluations.jsonl"  # one line per evaluation, appended as it happens


@dataclass(frozen=True)
class RunDirectory:
    """Where a run writes (``path``), and the directory Hydra made for the command (``hydra_dir``).

    Args:
        path: the run's directory.
        hydra_dir: the directory Hydra made (the same as ``path`` unless a resumed run continues elsewhere).
        named: the command line named the directory (``hydra.run.dir=...``): never Hydra's date layout.
    """

    path: Path
    hydra_dir: Path
    named: bool

    @classmethod
    def for_command(cls, hydra_dir: Path, *, named: bool, resume: str | None, single_run: bool) -> RunDirectory:
        """The run directory of this command: Hydra's, or, for a run resumed in a single run without a named
        directory, the checkpoint's run (from its ``last.pt``) or a directory named after the checkpoint."""
        path = hydra_dir
        if resume and single_run and not named:
            # A run resumed from its last.pt continues in place; from another checkpoint, in a new directory named
            # after the checkpoint's env and seed (Hydra's name took them from this command line's defaults).
            path = _run_dir_of(Path(resume)) or _renamed_for_checkpoint(hydra_dir, Path(resume))
            if path != hydra_dir:
                path.mkdir(parents=True, exist_ok=True)  # (the log file moves there at once)
                _move_log_files(hydra_dir, path)
                _remove_if_unused(hydra_dir, default_layout=True)
        return cls(path=path, hydra_dir=hydra_dir, named=named)

    def discard(self) -> None:
        """A rejected command leaves no run directory behind (nothing but Hydra's files is removed)."""
        _remove_if_unused(self.path, default_layout=not self.named)
        _remove_if_unused(self.hydra_dir, default_layout=not self.named)


def summary(
    cfg: DictConfig, run_dir: Path, counters: Counters, last_eval: EvalResult | None, *, finished: bool, stopped_by: str | None = None
) -> dict[str, Any]:
    """``summary.json``: the run's counters, its latest evaluation, when it first reached ``env.solved_return``,
    and every evaluation (step, return, wall seconds since the run started, resumed runs included).

    ``finished`` is false while the run is going (the file is rewritten after every evaluation) and after an
    interruption; ``stopped_by`` says what ended it: ``total_steps``, ``solved``, ``time_limit``, ``SIGINT`` or
    ``SIGTERM`` (``interrupted`` is true for the last two). Checkpoint paths are null until the file exists.
    """
    solved_at = first_solved(counters.evaluations, solved_when(cfg.env))
    checkpoint_dir = run_dir / "checkpoints"
    return {
        "env": cfg.env.id,
        "seed": cfg.train.seed,
        "finished": finished,
        "stopped_by": stopped_by,
        "interrupted": stopped_by in ("SIGINT", "SIGTERM"),
        "steps": counters.step,
        "total_steps": cfg.train.total_steps,
        "updates": counters.updates,
        "episodes": counters.episodes,
        "eval/episodes": cfg.eval.episodes,
        "eval/epsilon": cfg.eval.epsilon,
        "eval/protocol": evaluation_protocol(cfg.env, epsilon=cfg.eval.epsilon, episodes=cfg.eval.episodes),
        **({"eval/return_mean": None, "eval/return_std": None, "eval/length_mean": None} | (last_eval.as_metrics() if last_eval else {})),
        **{key: value for key, value in (counters.evaluations[-1] if counters.evaluations else {}).items() if key.startswith("eval/greedy_")},
        "eval/best_return_mean": counters.best_eval_return if math.isfinite(counters.best_eval_return) else None,
        "solved_return": cfg.env.solved_return,
        **({"solved_success_rate": cfg.env.solved_success_rate} if "solved_success_rate" in cfg.env else {}),
        "solved": solved_at is not None,
        "solved_at_step": solved_at["step"] if solved_at else None,
        "solved_at_seconds": solved_at["wall_seconds"] if solved_at else None,
        "wall_seconds": counters.wall_seconds,
        "resumed_from": cfg.resume,
        "run_dir": str(run_dir),
        "checkpoints": {name: str(path) if path.is_file() else None
                        for name, path in (("best", checkpoint_dir / "best.pt"), ("last", checkpoint_dir / "last.pt"))},
        "evaluations": counters.evaluations,
    }


def solved_when(env_cfg: DictConfig) -> dict[str, float]:
    """What counts as solved: evaluation means and their thresholds (``env.solved_return``, and
    ``env.solved_success_rate`` for tasks with a success flag); empty when the task sets none."""
    thresholds = {"eval/return_mean": env_cfg.solved_return, "eval/success_rate": env_cfg.get("solved_success_rate")}
    return {name: value for name, value in thresholds.items() if value is not None}


def first_solved(evaluations: list[dict[str, float]], solved_when: dict[str, float]) -> dict[str, float] | None:
    """The first evaluation that reached any of the ``solved_when`` thresholds, if any."""
    return next((e for e in evaluations if any(e.get(name, float("-inf")) >= value for name, value in solved_when.items())), None)


def write_lines(path: Path, entries: list[dict[str, Any]]) -> None:
    """Writes a JSON-lines file atomically."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text("".join(json.dumps(entry) + "\n" for entry in entries))
    temporary.replace(path)


def append_line(path: Path, entry: dict[str, Any]) -> None:
    """Appends ``entry`` to a JSON-lines file (one ``write`` of one line: a killed run leaves whole lines)."""
    with path.open("a") as file:
        file.write(json.dumps(entry) + "\n")


def inherit(source: Path, destination: Path) -> None:
    """Copies a resumed run's ``best.pt`` into a new run directory, so the summary names a file that exists."""
    if source.is_file() and not destination.exists():
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination)


def _run_dir_of(checkpoint: Path) -> Path | None:
    """The run directory of ``<run>/checkpoints/last.pt``: a run resumed from its latest state continues there.
    None for any other checkpoint (``best.pt`` is older than ``last.pt``: continuing in place would overwrite the
    later state and curve), which then gets a new run directory."""
    parent = checkpoint.resolve().parent
    return parent.parent if checkpoint.name == "last.pt" and parent.name == "checkpoints" and checkpoint.is_file() else None


def _renamed_for_checkpoint(hydra_dir: Path, checkpoint: Path) -> Path:
    """Hydra's default run directory (``<time>_<env>_seed<seed>``) renamed after the checkpoint's env and seed."""
    try:
        stored = load_checkpoint(checkpoint)["config"]
    except CheckpointError:
        return hydra_dir  # train() reports it
    stamp = hydra_dir.name.split("_", 1)[0]
    return hydra_dir.with_name(f"{stamp}_{stored['env']['name']}_seed{stored['train']['seed']}")


def _move_log_files(old: Path, new: Path) -> None:
    """Points Hydra's log file (``train.log``) at ``new`` (appending), away from the directory Hydra made."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).parent == old.resolve():
            handler.close()  # reopened on the next record, in append mode, at the new path
            handler.baseFilename, handler.mode = str(new.resolve() / Path(handler.baseFilename).name), "a"


def _remove_if_unused(run_dir: Path, *, default_layout: bool) -> None:
    """Removes what Hydra put into a run directory that the run never used (a rejected command's, or the one a
    resumed run left for its own): ``.hydra/`` and ``train.log``, then the directory if it is left empty and did not
    exist before the command, and, for Hydra's default layout, the ``outputs/<date>/`` directory above it if that is
    left empty. Nothing else is deleted."""
    if not run_dir.is_dir() or not {entry.name for entry in run_dir.iterdir()} <= {".hydra", "train.log"}:
        return
    shutil.rmtree(run_dir / ".hydra", ignore_errors=True)
    (run_dir / "train.log").unlink(missing_ok=True)
    if any(run_dir.iterdir()) or run_dir_existed(run_dir):
        return
    run_dir.rmdir()
    if default_layout and not any(run_dir.parent.iterdir()):
        run_dir.parent.rmdir()
