"""Process-level setup shared by the entry points: device choice, seeding, library log levels."""

from __future__ import annotations

import logging
import random
import warnings

import numpy as np
import torch


def pick_device(name: str) -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then the CPU; any other name is used as given."""
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


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
