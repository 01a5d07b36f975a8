"""Checkpoints: one file that names every stateful piece of a run.

A checkpoint is a ``torch.save`` dict, loaded back with ``torch.load(weights_only=True)`` (no pickled code runs):

- ``format``, ``version``: identify the file as an rlpipe checkpoint;
- ``config``: the resolved run configuration (the evaluator rebuilds the env and network from it);
- ``counters``: agent steps, gradient updates, episodes, best evaluation so far, training wall seconds so far,
  and every evaluation (so that a resumed run's curve and clock continue);
- ``rng``: torch, CUDA, numpy and python random states;
- one entry per stateful piece, under the name the training loop gives it (``q_network``, ``target_network``,
  ``optimizer``, ``lr_scheduler``, ``exploration``, ``target_updater``): each piece's ``state_dict()``;
- ``replay_buffer``: the name of a sibling directory written by TorchRL's ``ReplayBuffer.dumps`` (memory-mapped
  tensors and JSON, no pickle), or ``None``. Its ``manifest.json`` records every file's size: a damaged buffer (a
  truncated or missing file) is refused before anything reads it, and loading never writes into it.

Files are written to a temporary name and renamed, so a crash never leaves a half-written checkpoint behind.
Environments cannot be snapshotted: a resumed run starts new episodes.

A **released agent** (:func:`save_agent`, ``python -m rlpipe.export``) is the same kind of file with ``format``
``rlpipe-agent`` and only what playing needs: ``config``, ``counters`` (the step and the evaluations of the run it
came from) and ``q_network``; no optimizer, target network, replay or RNG states, so it evaluates and records but
does not resume training.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import zipfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torchrl.data import ReplayBuffer

FORMAT = "rlpipe-checkpoint"
AGENT_FORMAT = "rlpipe-agent"  # a released agent: one Q-network's weights and the configuration that rebuilds it
VERSION = 1
_REQUIRED_KEYS = {FORMAT: ("config", "counters", "rng"), AGENT_FORMAT: ("config", "counters", "q_network")}


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, truncated, or not an rlpipe checkpoint."""


class Stateful(Protocol):
    def state_dict(self) -> Mapping[str, Any]: ...

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> Any: ...


@dataclass
class Counters:
    """The run's progress counters."""

    step: int = 0  # agent steps collected
    updates: int = 0  # gradient updates done
    episodes: int = 0  # training episodes finished
    best_eval_return: float = float("-inf")  # best evaluation mean so far
    wall_seconds: float = 0.0  # wall time of training so far (a resumed run's clock continues from it)
    evaluations: list[dict[str, float]] = field(default_factory=list)  # every evaluation: step, wall_seconds, eval/return_mean, ...


def save_checkpoint(
    path: Path,
    *,
    config: DictConfig,
    counters: Counters,
    pieces: Mapping[str, Stateful | None],
    replay_buffer: ReplayBuffer | None = None,
) -> None:
    """Writes a checkpoint to ``path`` atomically; with ``replay_buffer``, dumps it beside the file first.

    Args:
        path: the checkpoint file (``.pt``).
        config: the resolved run configuration.
        counters: the run's counters.
        pieces: every stateful piece by name; ``None`` marks a piece this run does not have.
        replay_buffer: the buffer to store so that a resumed run continues exactly, or ``None``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer_dir = None
    if replay_buffer is not None:
        buffer_dir = f"{path.stem}-buffer-{counters.step}"
        _dump_buffer(replay_buffer, path.parent / buffer_dir)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": OmegaConf.to_container(config, resolve=True),
        "counters": asdict(counters),
        "rng": _rng_state(),
        "replay_buffer": buffer_dir,
        **{name: (None if piece is None else piece.state_dict()) for name, piece in pieces.items()},
    }
    temporary = path.with_name(path.name + ".tmp")
    torch.save(payload, temporary)
    os.replace(temporary, path)
    for stale in path.parent.glob(f"{path.stem}-buffer-*"):  # buffers no longer named by this checkpoint
        if stale.name != buffer_dir:
            shutil.rmtree(stale, ignore_errors=True)


def load_checkpoint(path: str | Path, *, agent_file_ok: bool = False) -> dict[str, Any]:
    """Reads and checks a checkpoint; raises :class:`CheckpointError` with a one-line reason.

    Args:
        path: a run's ``best.pt`` / ``last.pt``, or (with ``agent_file_ok``) a released agent file.
        agent_file_ok: accept a released agent (:func:`save_agent`): what evaluates and plays, not what resumes.
    """
    path = Path(path)
    if path.is_dir():
        inside = next((str(c) for c in (path / "checkpoints" / "last.pt", path / "last.pt") if c.is_file()), None)
        hint = f" (did you mean {inside}?)" if inside else ""
        raise CheckpointError(f"{path}: is a directory; expected a checkpoint file such as <run>/checkpoints/last.pt{hint}")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    with path.open("rb") as file:
        zip_archive = file.read(4) == b"PK\x03\x04"
    if not zip_archive:  # torch.save writes a zip archive; anything else (text, random bytes) is not a checkpoint
        raise CheckpointError(f"{path}: not an rlpipe checkpoint (not a file written by torch.save; "
                              f"checkpoints are <run>/checkpoints/last.pt or best.pt)")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path}: not a readable checkpoint: the file is truncated or damaged")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated archives, foreign pickles: all end here
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if "weights_only" in reason.lower() or "unpickl" in reason.lower():
            reason = "it holds Python objects other than tensors and plain data, which rlpipe never loads"
        raise CheckpointError(f"{path}: not a readable checkpoint: {reason[:160].rstrip('.')}") from None
    if not isinstance(payload, dict) or payload.get("format") not in _REQUIRED_KEYS:
        raise CheckpointError(f"{path}: not an rlpipe checkpoint")
    if payload["format"] == AGENT_FORMAT and not agent_file_ok:
        raise CheckpointError(f"{path}: a released agent (network weights only) evaluates and plays but cannot resume "
                              f"training; resume from a run's checkpoints/last.pt")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {payload.get('version')!r}, this rlpipe reads {VERSION}")
    missing = [key for key in _REQUIRED_KEYS[payload["format"]] if key not in payload]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    payload["path"] = str(path)
    return payload


def save_agent(path: Path, payload: Mapping[str, Any], *, piece: str = "q_network") -> None:
    """Writes the agent ``piece`` of a loaded checkpoint (:func:`load_checkpoint`) as a released agent file: its
    Q-network's weights, the run's configuration, and the step and evaluations it was trained to.

    Args:
        path: the file to write (``.pt``), atomically.
        payload: a run's checkpoint, as loaded.
        piece: which network (``q_network``; RND's exploration agent is ``explore/q_network``).
    """
    if payload.get(piece) is None:
        raise CheckpointError(f"{payload.get('path', 'checkpoint')}: has no {piece}")
    agent = {
        "format": AGENT_FORMAT,
        "version": VERSION,
        "config": payload["config"],
        "counters": {"step": payload["counters"]["step"], "evaluations": payload["counters"].get("evaluations", [])},
        "q_network": payload[piece],
        "source": {"checkpoint": str(payload.get("path")), "piece": piece},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    torch.save(agent, temporary)
    os.replace(temporary, path)


def restore_checkpoint(
    payload: Mapping[str, Any],
    *,
    pieces: Mapping[str, Stateful | None],
    replay_buffer: ReplayBuffer | None = None,
) -> tuple[Counters, bool]:
    """Loads every piece, the RNG states and (when stored) the replay buffer from a loaded checkpoint.

    Returns:
        The counters, and whether the replay buffer was restored.
    """
    path = payload["path"]
    for name, piece in pieces.items():
        if piece is None:
            continue
        if payload.get(name) is None:
            raise CheckpointError(f"{path}: checkpoint has no {name} (was it written by another configuration?)")
        try:
            piece.load_state_dict(payload[name])
        except (RuntimeError, KeyError, ValueError) as err:
            raise CheckpointError(f"{path}: cannot load {name}: {str(err).splitlines()[0][:160]}") from None
    _set_rng_state(payload["rng"])
    restored_buffer = False
    if replay_buffer is not None and payload.get("replay_buffer"):
        buffer_dir = Path(path).parent / payload["replay_buffer"]
        _load_buffer(replay_buffer, buffer_dir)
        restored_buffer = True
    counters = dict(payload["counters"])
    counters["evaluations"] = [current_names(e) for e in counters.get("evaluations", [])]
    return Counters(**counters), restored_buffer


def current_names(evaluation: dict[str, Any], *, keep: tuple[str, ...] = ("step", "wall_seconds")) -> dict[str, Any]:
    """An evaluation as written before every quantity took its logger name (``return_mean`` -> ``eval/return_mean``;
    checkpoints, ``summary.json`` and ``rlpipe.evaluate`` lines of that time); the ``keep`` keys stay as they are."""
    return {key if key in keep or "/" in key else f"eval/{key}": value for key, value in evaluation.items()}


def _dump_buffer(replay_buffer: ReplayBuffer, directory: Path) -> None:
    temporary = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(temporary, ignore_errors=True)
    replay_buffer.dumps(temporary)
    # TorchRL pickles its (here always empty) prefetch queue; drop it so that loading never unpickles.
    (temporary / "prefetch.pkl").unlink(missing_ok=True)
    sizes = {str(file.relative_to(temporary)): file.stat().st_size for file in sorted(temporary.rglob("*")) if file.is_file()}
    (temporary / MANIFEST).write_text(json.dumps(sizes, indent=0))
    shutil.rmtree(directory, ignore_errors=True)
    os.replace(temporary, directory)


MANIFEST = "manifest.json"  # a stored replay buffer's files and their sizes in bytes


def check_stored_buffer(payload: Mapping[str, Any]) -> None:
    """Raises :class:`CheckpointError` if the replay buffer a loaded checkpoint names is missing or damaged; lets a
    run refuse a checkpoint before it writes anything."""
    if payload.get("replay_buffer"):
        _check_buffer_dir(Path(payload["path"]).parent / payload["replay_buffer"])


def _check_buffer_dir(directory: Path) -> None:
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: the replay buffer named by the checkpoint is missing")
    if any(directory.rglob("*.pkl")):
        raise CheckpointError(f"{directory}: replay buffer holds pickle files; refusing to load them")
    # Memory-mapped files are opened at the size their metadata states, and one that is shorter would be grown
    # with zeros in place (writing into the checkpoint, and training on blank data): check every size first.
    damage = _buffer_damage(directory)
    if damage:
        raise CheckpointError(f"{directory}: the replay buffer is damaged ({damage}); resume from another checkpoint")


def _load_buffer(replay_buffer: ReplayBuffer, directory: Path) -> None:
    _check_buffer_dir(directory)
    try:
        replay_buffer.loads(directory)
    except Exception as err:
        raise CheckpointError(f"{directory}: cannot load the replay buffer ({str(err).splitlines()[0][:160]})") from None


def _buffer_damage(directory: Path) -> str | None:
    """What is wrong with a stored buffer's files, or None. Buffers written before the manifest existed are checked
    against the shapes in their tensordict ``meta.json`` files."""
    manifest = directory / MANIFEST
    if manifest.is_file():
        expected = {directory / name: size for name, size in json.loads(manifest.read_text()).items()}
    else:
        expected = {}
        for meta in directory.rglob("meta.json"):
            for name, entry in json.loads(meta.read_text()).items():
                if isinstance(entry, dict) and "shape" in entry and "dtype" in entry:
                    itemsize = torch.empty((), dtype=getattr(torch, entry["dtype"].removeprefix("torch."))).element_size()
                    expected[meta.parent / f"{name}.memmap"] = int(np.prod(entry["shape"])) * itemsize
    for path, size in expected.items():
        if not path.is_file():
            return f"{path.relative_to(directory)} is missing"
        actual = path.stat().st_size
        if actual != size:
            return f"{path.relative_to(directory)} has {actual:,} bytes, {size:,} were written"
    return None


def _rng_state() -> dict[str, Any]:
    name, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "position": position, "has_gauss": has_gauss, "cached_gaussian": cached_gaussian},
        "python": random.getstate(),
    }


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        # One state per GPU of the machine that wrote the checkpoint: restore those of the GPUs this machine has (a
        # run written on 8 GPUs resumes on 1; torch's set_rng_state_all would fail on the missing ones).
        for index, cuda_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, index)
    numpy_state = state["numpy"]
    keys = numpy_state["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, numpy_state["position"], numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
