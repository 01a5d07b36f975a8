"""Process-level setup shared by the entry points: device choice, seeding, library log levels."""

from __future__ import annotations

import logging
import random

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
    """TorchRL logs every storage allocation at INFO; keep its warnings only."""
    import torchrl  # noqa: F401  (torchrl sets its logger's level when first imported)

    logging.getLogger("torchrl").setLevel(logging.WARNING)
