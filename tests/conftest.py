"""Shared fixtures: composed configs, the real CLI in a subprocess, small env/network builders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from rlpipe.config import validate
from rlpipe.runtime import quiet_libraries

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = REPO / "conf"

quiet_libraries()


def compose_config(overrides: Sequence[str] = (), *, config_name: str = "config", check: bool = True) -> DictConfig:
    """The configuration the CLI would run with these overrides (validated unless ``check`` is False)."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name, overrides=list(overrides))
    return validate(cfg) if check else cfg


@pytest.fixture
def config() -> Callable[..., DictConfig]:
    return compose_config


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    def json_lines(self) -> list[dict]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.startswith("{")]


def run_module(module: str, *args: str, timeout: float = 600) -> CliResult:
    """Runs ``python -m <module> <args>`` from the repository root, as a user would."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", WANDB_SILENT="true")
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def cli() -> Callable[..., CliResult]:
    return run_module


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)
