"""Golden runs: today's code trains bit for bit as the reference commit did.

A refactor of the training run must change nothing a user sees. These tests check out ``REFERENCE`` (the commit
before the training run was split into a build step and a short loop) into a temporary git worktree, run the same
short runs with its code and with today's, in separate processes on this machine, and compare every evaluation
line (wall times aside) and every tensor of the final checkpoint exactly. Comparing two runs made side by side
keeps the check independent of the CPU kind (float results differ between AVX2 and AVX-512 kernels).

Move ``REFERENCE`` forward only with a change that is meant to alter what training does, and say so in its commit.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch

from conftest import REPO, run_module

REFERENCE = "d5ccc9a"  # the last commit before rlpipe.run / the short loop (issue 25)

RUNS = {
    "cartpole": ["train.total_steps=2000", "train.init_random_steps=500", "eval.interval_steps=500", "eval.episodes=3",
                 "checkpoint.interval_steps=1000", "train.log_interval_steps=500"],
    # RND with two agents, the exploitation agent acting in a quarter of the collects, 5-step returns, DoorKey
    "doorkey_rnd": ["experiment=doorkey_rnd", "train.total_steps=800", "train.init_random_steps=400", "eval.interval_steps=300",
                    "eval.episodes=3", "checkpoint.interval_steps=400", "train.log_interval_steps=400", "train.compile=false"],
}


@pytest.fixture(scope="module")
def reference_checkout(tmp_path_factory) -> Path:
    present = subprocess.run(["git", "cat-file", "-e", f"{REFERENCE}^{{commit}}"], cwd=REPO, capture_output=True)
    if present.returncode != 0:
        pytest.fail(f"the reference commit {REFERENCE} is not in this clone (a shallow clone?): clone with full history")
    path = tmp_path_factory.mktemp("reference") / "rlpipe"
    subprocess.run(["git", "worktree", "add", "--detach", str(path), REFERENCE], cwd=REPO, check=True, capture_output=True)
    yield path
    subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=REPO, capture_output=True)


def _run(code: Path, run_dir: Path, overrides: list[str]) -> tuple[list[dict], dict]:
    """Trains with the code in ``code`` (a checkout whose ``rlpipe`` package comes first on the path)."""
    result = run_module("rlpipe.train", *overrides, "train.num_threads=1", f"hydra.run.dir={run_dir}", cwd=code,
                        env={"PYTHONPATH": str(code)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run_dir / "config.yaml").is_file()
    lines = [json.loads(line) for line in (run_dir / "evaluations.jsonl").read_text().splitlines()]
    checkpoint = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    return [{k: v for k, v in line.items() if k != "wall_seconds"} for line in lines], checkpoint


def _tensors(tree: object, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint (state dicts, optimizer states, RNG states), by its path."""
    if isinstance(tree, torch.Tensor):
        return {prefix: tree}
    if isinstance(tree, dict):
        return {k: v for key, value in tree.items() for k, v in _tensors(value, f"{prefix}/{key}").items()}
    if isinstance(tree, (list, tuple)):
        return {k: v for i, value in enumerate(tree) for k, v in _tensors(value, f"{prefix}/{i}").items()}
    return {}


@pytest.mark.parametrize("name", list(RUNS))
def test_training_is_bit_identical_to_the_reference(name, reference_checkout, tmp_path):
    old_lines, old = _run(reference_checkout, tmp_path / "reference", RUNS[name])
    new_lines, new = _run(REPO, tmp_path / "today", RUNS[name])
    assert len(new_lines) >= 3 and new_lines == old_lines
    old_tensors, new_tensors = _tensors({k: v for k, v in old.items() if k != "config"}), _tensors({k: v for k, v in new.items() if k != "config"})
    assert set(new_tensors) == set(old_tensors) and len(new_tensors) > 10
    different = [key for key in old_tensors if not torch.equal(old_tensors[key], new_tensors[key])]
    assert not different, different[:10]
    assert _timeless(new["counters"]) == _timeless(old["counters"])


def _timeless(counters: dict) -> dict:
    """The counters without wall times (of the run and of each evaluation)."""
    return {key: [{k: v for k, v in e.items() if k != "wall_seconds"} for e in value] if key == "evaluations" else value
            for key, value in counters.items() if key != "wall_seconds"}
