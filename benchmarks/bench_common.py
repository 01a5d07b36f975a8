"""Helpers shared by the benchmark scripts (run them as ``python benchmarks/<name>.py``)."""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
sys.path.insert(0, str(REPO))

from rlpipe.checkpoint import current_names as current_eval_names  # noqa: E402
from rlpipe.config import validate  # noqa: E402
from rlpipe.runtime import quiet_libraries  # noqa: E402

quiet_libraries()


def compose_config(overrides: Sequence[str] = ()) -> DictConfig:
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return validate(compose("config", overrides=list(overrides)))


def rate(fn: Callable[[], object], *, calls: int, warmup: int = 10) -> float:
    """Calls per second of ``fn`` over ``calls`` calls, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return calls / (time.perf_counter() - start)


def interleaved_medians(contenders: dict[str, Callable[[], float]], rounds: int) -> dict[str, dict[str, float]]:
    """Runs each contender once per round, in turn, and reports the median (and spread) of its rates.

    Interleaving keeps slow drifts of a shared machine from favouring whichever contender ran first. Each
    contender's per-round rates are kept (``rates``) so that callers can form paired ratios round by round.
    """
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, measure in contenders.items():
            samples[name].append(measure())
    return {
        name: {"median": statistics.median(v), "min": min(v), "max": max(v), "rates": v}
        for name, v in samples.items()
    }


def paired_ratio(numerator: list[float], denominator: list[float]) -> float:
    """Median over rounds of numerator/denominator measured back to back: robust to the machine's drift."""
    return statistics.median(n / d for n, d in zip(numerator, denominator))


def cpu_info() -> dict[str, object]:
    """The CPU model and the vector extensions that set torch's CPU speed (the project's machines differ by 2x)."""
    model, flags = platform.processor() or platform.machine(), set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model in ("", platform.machine(), platform.processor()):
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    return {"cpu_model": model, "avx2": "avx2" in flags, "avx512f": "avx512f" in flags, "amx": bool({"amx_tile", "amx_bf16"} & flags)}


def machine() -> dict[str, object]:
    return {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
        **cpu_info(),
    }


def versions() -> dict[str, str]:
    """The versions of the libraries that set what a figure measures."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("torch", "torchrl", "tensordict", "gymnasium", "ale-py", "numpy"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            pass
    return found


def commit() -> str:
    """The checkout's commit, with ``-dirty`` when the code that measures differs from it (the package, its
    configuration, the benchmark scripts; results and documentation do not count)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    code = ["rlpipe", "conf", "benchmarks", ":(exclude)benchmarks/results", "pyproject.toml", "docs/gen"]
    return head + ("-dirty" if git("status", "--porcelain", "--untracked-files=no", "--", *code) else "")


_LEGACY_SUMMARY_KEYS = {"eval/return_mean": "eval_return_mean", "eval/return_std": "eval_return_std",
                        "eval/length_mean": "eval_length_mean", "eval/best_return_mean": "best_eval_return_mean",
                        "eval/success_rate": "eval_success_rate", "eval/primitive_steps_mean": "eval_primitive_steps_mean",
                        # rlpipe.evaluate's output line
                        "eval/returns": "returns"}


def current_names(summary: dict) -> dict:
    """A run's ``summary.json`` with every quantity under its logger name (``eval/return_mean``): runs written
    before the names were unified (the Breakout runs measured for the README) spelled them ``eval_return_mean``,
    ``best_eval_return_mean`` and, per evaluation (and in ``rlpipe.evaluate``'s line), ``return_mean``."""
    summary = dict(summary)
    for name, legacy in _LEGACY_SUMMARY_KEYS.items():
        if legacy in summary:
            summary[name] = summary.pop(legacy)
    if "return_mean" in summary:  # rlpipe.evaluate's line
        summary = current_eval_names(summary, keep=("checkpoint", "env", "step"))
    summary["evaluations"] = [current_eval_names(e) for e in summary.get("evaluations", [])]
    return summary


def save(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"benchmark": name, "command": " ".join(["python", *sys.argv]), "commit": commit(),
               "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "machine": machine(),
               "versions": versions(), **payload}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {path.relative_to(REPO)}")
    return path
