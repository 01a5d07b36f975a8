"""Process-level setup shared by the entry points: device choice, seeding, library log levels, stop signals."""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import sys
import threading
import warnings
from pathlib import Path
from types import FrameType
from typing import Any, Literal

import numpy as np
import torch

from rlpipe.config import ConfigError

_log = logging.getLogger("rlpipe")


def pick_device(name: str, *, key: str = "train.device") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then the CPU; any other name is used as given, if this machine has it
    (:class:`~rlpipe.config.ConfigError` naming ``key`` otherwise)."""
    if name != "auto":
        device = torch.device(name)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"{key}={name} is unavailable: this machine has no CUDA device; use {key}=auto or cpu")
        if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
            raise ConfigError(f"{key}={name} is unavailable: this machine has {torch.cuda.device_count()} CUDA device(s)")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise ConfigError(f"{key}={name} is unavailable: this machine has no Apple MPS device; use {key}=auto or cpu")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_precision(name: Literal["auto", "fp32", "bf16"], device: torch.device) -> torch.dtype:
    """The dtype the Q-network computes in (``train.precision``); the weights, TD targets and loss stay fp32.

    ``auto`` picks bf16 only where it was measured to pay: CPUs with AMX tiles (on a 2-core CPU with AVX512-BF16 but
    no AMX, bf16 autocast made the Nature-CNN update slower than fp32: see docs/results/learner-throughput.md). On a
    GPU it stays fp32 until ``benchmarks/gpu_check.py`` has measured bf16 against fp32 at rlpipe's batch sizes (32 and
    128 stacks of 8 frames; at such sizes the update is launch-bound, not arithmetic-bound). ``bf16`` asks for it
    wherever the hardware can run it at all, and falls back to fp32 with a warning where it cannot.
    """
    if name == "fp32":
        return torch.float32
    if device.type == "cuda":
        with torch.cuda.device(device):  # emulated bf16 (pre-Ampere GPUs) runs, but does not pay
            fast, runs = False, torch.cuda.is_bf16_supported()  # (not measured on a GPU yet: see above)
    elif device.type == "cpu":
        fast = torch.cpu._is_amx_tile_supported()
        runs = fast or torch.cpu._is_avx512_bf16_supported()
    else:
        fast = runs = False
    if name == "auto":
        chosen = torch.bfloat16 if fast else torch.float32
        _log.info("train.precision=auto: %s on %s", "bf16" if fast else "fp32", _describe(device))
        return chosen
    if not runs:
        _log.warning("train.precision=bf16 is not supported on %s: falling back to fp32", _describe(device))
        return torch.float32
    return torch.bfloat16


def _describe(device: torch.device) -> str:
    if device.type != "cpu":
        return str(device)
    capability = "AMX" if torch.cpu._is_amx_tile_supported() else torch.backends.cpu.get_cpu_capability()
    bf16 = "with" if torch.cpu._is_avx512_bf16_supported() else "without"
    return f"this CPU ({capability}, {bf16} AVX512-BF16)"


def seed_everything(seed: int) -> None:
    """Seeds python, numpy (TorchRL's prioritized sampler draws from it) and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def quiet_libraries() -> None:
    """Silences library chatter that says nothing about the run.

    - TorchRL logs every storage allocation at INFO: keep its warnings only.
    - tensordict 0.14 reads a Dynamo setting that torch 2.14 deprecated (a FutureWarning on every compile).
    - Inductor notes that the CUDA wheel of torch finds no CUDA runtime when it compiles for the CPU.
    """
    import torchrl  # noqa: F401  (torchrl sets its logger's level when first imported)

    logging.getLogger("torchrl").setLevel(logging.WARNING)
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*inline_inbuilt_nn_modules is deprecated", category=FutureWarning)


class StopSignals:
    """SIGINT (Ctrl-C) and SIGTERM (a cluster's preemption) as a request to stop cleanly.

    Inside the ``with`` block the first signal only sets :attr:`received`: the training loop finishes its step,
    writes ``last.pt`` and ``summary.json`` and exits with ``128 + signal``. A second signal exits at once (the last
    periodic checkpoint, written atomically, stands). Handlers are installed only in the main thread (Python
    allows no other); elsewhere the block changes nothing.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: signal.Signals | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            self._previous = {signum: signal.signal(signum, self._handle) for signum in self.SIGNALS}
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.received is not None:
            sys.stderr.write(f"\nrlpipe: {name} again: exiting now; the last periodic checkpoint stands\n")
            sys.stderr.flush()
            os._exit(128 + signum)
        self.received = signal.Signals(signum)
        sys.stderr.write(f"\nrlpipe: {name}: stopping after this step to write last.pt and summary.json "
                         f"({name} again exits at once)\n")
        sys.stderr.flush()


def check_command_line(prog: str, config_name: str, argv: list[str], *, run_dir_key: str | None = "hydra.run.dir") -> None:
    """Composes the configuration once before Hydra does, so that Hydra's own errors (an unknown config group
    option or key, a malformed override) and an uncreatable run directory stop the command with one line instead
    of Hydra's several. Hydra's own modes (``--multirun``, ``--help``, ``--cfg``, ...) are left to Hydra.

    Args:
        prog: the command's name, the prefix of the message.
        config_name: the primary config in ``conf/``.
        argv: the command line's arguments (``sys.argv[1:]``).
        run_dir_key: the override that names the run directory (checked, and whether it exists remembered for
            :func:`run_dir_existed`); None for a command without one.
    """
    named = [arg.split("=", 1)[1] for arg in argv if run_dir_key and arg.startswith(run_dir_key + "=")]
    run_dir = None
    if named and "${" not in named[-1]:  # (a directory Hydra names by interpolation is Hydra's to check)
        run_dir = Path(named[-1]).absolute()  # the last one wins, as in Hydra
        try:
            _RUN_DIRS_BEFORE[str(run_dir)] = run_dir.exists()
        except OSError:
            _RUN_DIRS_BEFORE[str(run_dir)] = True  # cannot tell: treat it as the user's
    if any(arg.startswith("-") for arg in argv):
        return
    from hydra import compose, initialize_config_dir  # the entry points import Hydra anyway

    overrides = [arg for arg in argv if not arg.startswith("hydra.")]
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            compose(config_name, overrides=overrides)
    except Exception as err:  # Hydra's composition and override-parsing errors (the detail is often the cause)
        text = str(err) if err.__cause__ is None or str(err.__cause__) in str(err) else f"{err}\n{err.__cause__}"
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        lines = [line for line in lines if not line.startswith(("full_key:", "object_type=", "Set the environment"))]
        unparsable = _first_unparsable(overrides)
        prefix = f"cannot parse the override {unparsable!r}: " if unparsable else ""
        raise SystemExit(f"{prog}: {prefix}{' '.join(lines)}") from None
    if run_dir is not None:
        try:
            check_creatable(run_dir)
        except OSError as err:
            raise SystemExit(f"{prog}: {run_dir_key}={named[-1]}: cannot create the run directory ({err.strerror})") from None


_RUN_DIRS_BEFORE: dict[str, bool] = {}  # run directories named on the command line: did they exist before it?


def run_dir_existed(run_dir: Path) -> bool:
    """Whether ``run_dir`` existed before this command (as far as :func:`check_command_line` saw; a directory it did
    not see counts as new, like Hydra's timestamped default)."""
    return _RUN_DIRS_BEFORE.get(str(run_dir.absolute()), False)


def _first_unparsable(overrides: list[str]) -> str | None:
    """The first override Hydra's grammar rejects (its own message does not say which), if any."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for override in overrides:
        try:
            parser.parse_override(override)
        except Exception:
            return override
    return None


def check_creatable(directory: Path) -> None:
    """Raises ``OSError`` if ``directory`` cannot be created; leaves nothing behind (what it made, it removes)."""
    missing = [d for d in (directory, *directory.parents) if not d.exists()]  # (OSError if a parent is unreadable)
    made = []
    try:
        for d in reversed(missing):
            d.mkdir()
            made.append(d)
    finally:
        for d in reversed(made):
            d.rmdir()


CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Writes ``path`` (and its parent directories) through a temporary file, so that a reader never sees half
    of it (``summary.json``, a recording's ``actions.json``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(payload, indent=1))
    temporary.replace(path)
