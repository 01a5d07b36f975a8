"""Process-level setup shared by the entry points: device choice, seeding, library log levels."""

from __future__ import annotations

import logging
import random
import warnings
from typing import Literal

import numpy as np
import torch

_log = logging.getLogger("rlpipe")


def pick_device(name: str) -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then the CPU; any other name is used as given."""
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_precision(name: Literal["auto", "fp32", "bf16"], device: torch.device) -> torch.dtype:
    """The dtype the Q-network computes in (``train.precision``); the weights, TD targets and loss stay fp32.

    ``auto`` picks bf16 only where it is known to pay: CUDA devices with bf16, and CPUs with AMX tiles (on a 2-core
    CPU with AVX512-BF16 but no AMX, bf16 autocast made the Nature-CNN update slower than fp32: see the README's
    learner benchmark). ``bf16`` asks for it wherever the hardware can run it at all, and falls back to fp32 with a
    warning where it cannot.
    """
    if name == "fp32":
        return torch.float32
    if device.type == "cuda":
        with torch.cuda.device(device):  # emulated bf16 (pre-Ampere GPUs) runs, but does not pay
            fast, runs = torch.cuda.is_bf16_supported(including_emulation=False), torch.cuda.is_bf16_supported()
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
