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


def run_module(module: str, *args: str, timeout: float = 600, cwd: Path = REPO, env: dict[str, str] | None = None) -> CliResult:
    """Runs ``python -m <module> <args>`` (from the repository root unless ``cwd``), as a user would."""
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env=_cli_env(env),
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def start_module(module: str, *args: str, cwd: Path = REPO) -> subprocess.Popen:
    """Starts ``python -m <module> <args>`` in the background (output in ``.stdout``/``.stderr`` pipes)."""
    return subprocess.Popen([sys.executable, "-m", module, *args], cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_cli_env(None))


def _cli_env(extra: dict[str, str] | None) -> dict[str, str]:
    return dict(os.environ, PYTHONUNBUFFERED="1", WANDB_SILENT="true", **(extra or {}))


@pytest.fixture
def cli() -> Callable[..., CliResult]:
    return run_module


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)
