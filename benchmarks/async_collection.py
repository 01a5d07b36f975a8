"""Asynchronous collection against the synchronous collector, while learning: agent steps per second of whole
training runs (``python -m rlpipe.train``), and the policy lag of ``collector=async``.

For each env (``--envs``), the same run four ways (``--variants``), one after the other:

- ``sync``: the default collector, torch at its default threads (one per core);
- ``sync, 1 thread``: the default collector, ``train.num_threads=1``;
- ``async, 1 worker``: ``collector=async collector.num_workers=1`` and the learner at ``train.num_threads=1``: the
  worker steps the env and acts on one core while the learner learns on the other;
- ``ray, 1 worker``: the same with the worker as an actor of a local Ray instance the run starts
  (``collector=ray``), which adds Ray's object store and its own processes (GCS server, raylet) to the machine.

Each run makes ``--steps`` agent steps after its random prefill, at the preset's update ratio, with no stop at
solve and one evaluation game at its end; the figure is the median of its logged ``time/steps_per_s`` windows after
the first learning window (the compile) and before the last (the evaluation). ``--learn`` adds CartPole to its
solve threshold (the preset, stop at solve) with each collector.

    python benchmarks/async_collection.py [--envs cartpole breakout] [--steps 8000 2000] [--variants ...] [--learn]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_common import REPO, cpu_info, save

VARIANTS = {
    "sync": ["collector=sync"],
    "sync, 1 thread": ["collector=sync", "train.num_threads=1"],
    "async, 1 worker": ["collector=async", "collector.num_workers=1", "train.num_threads=1"],
    "ray, 1 worker": ["collector=ray", "collector.num_workers=1", "train.num_threads=1"],
}
ENVS = {  # the preset and its prefill and log window for the measurement
    "cartpole": ["env=cartpole", "train.init_random_steps=1000", "train.log_interval_steps=1000"],
    "breakout": ["env=breakout", "exploration=temperature", "train.init_random_steps=1000", "train.log_interval_steps=250",
                 "buffer.capacity=100000"],
}


def _series(run_dir: Path, name: str) -> list[tuple[int, float]]:
    path = run_dir / "logs" / "csv" / "scalars" / f"{name}.csv"
    if not path.is_file():
        return []
    return [(int(step), float(value)) for step, value in (line.split(",") for line in path.read_text().split()[1:])]


def train(overrides: list[str], run_dir: Path) -> dict:
    command = [sys.executable, "-m", "rlpipe.train", *overrides, f"hydra.run.dir={run_dir}"]
    started = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"summary": summary, "wall_seconds_process": wall, "command": " ".join(["python -m rlpipe.train", *overrides])}


def throughput(env: str, variant: str, steps: int, directory: Path) -> dict:
    prefill = 1000
    overrides = [*ENVS[env], *VARIANTS[variant], f"train.total_steps={prefill + steps}", "train.stop_on_solve=false",
                 "eval.episodes=1", f"eval.interval_steps={prefill + steps}", f"checkpoint.interval_steps={prefill + steps}"]
    run_dir = directory / f"{env}-{variant.replace(', ', '-').replace(' ', '_')}"
    result = train(overrides, run_dir)
    windows = _series(run_dir, "time/steps_per_s")
    learning = [rate for step, rate in windows if step > prefill][1:-1]  # after the compile's window, before the evaluation's
    updates = [rate for step, rate in _series(run_dir, "time/updates_per_s") if step > prefill][1:-1]
    lag = [value for step, value in _series(run_dir, "collector/policy_lag_updates") if step > prefill]
    lag_max = [value for step, value in _series(run_dir, "collector/policy_lag_updates_max") if step > prefill]
    return {
        "command": result["command"],
        "steps_per_s": statistics.median(learning),
        "steps_per_s_windows": learning,
        "updates_per_s": statistics.median(updates) if updates else None,
        "policy_lag_updates": statistics.median(lag) if lag else None,
        "policy_lag_updates_max": max(lag_max) if lag_max else None,
        "wall_seconds_process": result["wall_seconds_process"],
    }


def learning(variant: str, directory: Path) -> dict:
    run_dir = directory / f"learn-{variant.replace(', ', '-').replace(' ', '_')}"
    result = train(["env=cartpole", *VARIANTS[variant]], run_dir)
    summary = result["summary"]
    return {"command": result["command"], "solved": summary["solved"], "solved_at_step": summary["solved_at_step"],
            "solved_at_seconds": summary["solved_at_seconds"], "eval/return_mean": summary["eval/return_mean"],
            "steps": summary["steps"], "wall_seconds_process": result["wall_seconds_process"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--envs", nargs="+", default=["cartpole", "breakout"], choices=sorted(ENVS))
    parser.add_argument("--steps", nargs="+", type=int, default=[8000, 2000], help="agent steps after the prefill, per env")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--learn", action="store_true", help="also CartPole to its solve threshold with each collector")
    parser.add_argument("--name", default="async_collection")
    args = parser.parse_args()
    print(cpu_info())
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="rlpipe-async-") as tmp:
        for env, steps in zip(args.envs, args.steps):
            for variant in args.variants:
                results[f"{env}: {variant}"] = throughput(env, variant, steps, Path(tmp))
                print(f"{env}: {variant}: {results[f'{env}: {variant}']['steps_per_s']:.1f} steps/s", flush=True)
        learned = {}
        if args.learn:
            for variant in ("sync", "async, 1 worker", "ray, 1 worker"):
                learned[f"cartpole: {variant}"] = learning(variant, Path(tmp))
                print(f"learn cartpole: {variant}: {learned[f'cartpole: {variant}']}", flush=True)
    save(args.name, {"steps": dict(zip(args.envs, args.steps)), "results": results, "learning": learned})


if __name__ == "__main__":
    main()
