"""Time to solve: agent steps and wall seconds until the greedy evaluation mean reaches the env's solved return.

Runs the real CLI once per seed with the env preset's default configuration (``train.stop_on_solve`` ends a run
at its first evaluation at or above ``env.solved_return``), and reads ``summary.json``. Wall seconds count
everything from process start to that evaluation: imports, environment construction, ``torch.compile``,
collection, updates, and every evaluation so far. ``--cold-cache`` gives every run an empty compile cache
(``TORCHINDUCTOR_CACHE_DIR``), as on a fresh machine or in CI.

    python benchmarks/time_to_solve.py --env cartpole --seeds 0 1 2 [--cold-cache] [-- extra Hydra overrides]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_common import REPO, save


def run(env: str, seed: int, extra: list[str], *, cold_cache: bool) -> dict:
    run_dir = Path(tempfile.mkdtemp(prefix=f"rlpipe-bench-{env}-s{seed}-"))
    environment = dict(os.environ, PYTHONUNBUFFERED="1")
    if cold_cache:
        environment["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="rlpipe-bench-inductor-")
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "rlpipe.train", f"env={env}", f"train.seed={seed}", f"hydra.run.dir={run_dir}", *extra],
        cwd=REPO, capture_output=True, text=True, env=environment,
    )
    process_seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"seed {seed} failed:\n{proc.stderr[-3000:]}")
    summary = json.loads((run_dir / "summary.json").read_text())
    return {
        "seed": seed,
        "solved": summary["solved"],
        "solved_at_step": summary["solved_at_step"],
        "solved_at_seconds": summary["solved_at_seconds"],
        "eval/return_mean": summary["eval/return_mean"],
        "eval/best_return_mean": summary["eval/best_return_mean"],
        "steps": summary["steps"],
        "wall_seconds": summary["wall_seconds"],
        "process_seconds": process_seconds,
        "evaluations": summary["evaluations"],
        "run_dir": str(run_dir),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="cartpole")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--cold-cache", action="store_true", help="an empty torch.compile cache for every run")
    parser.add_argument("extra", nargs="*", help="extra Hydra overrides, after --")
    args = parser.parse_args()
    runs = []
    for seed in args.seeds:
        result = run(args.env, seed, args.extra, cold_cache=args.cold_cache)
        runs.append(result)
        print(f"seed {seed}: solved={result['solved']} at step {result['solved_at_step']}, "
              f"{result['solved_at_seconds'] and round(result['solved_at_seconds'], 1)} s "
              f"(process {result['process_seconds']:.1f} s)", flush=True)
    solved = [r for r in runs if r["solved"]]
    print("\n| seed | steps to solve | wall seconds to solve | process seconds |\n| --- | ---: | ---: | ---: |")
    for r in runs:
        steps = r["solved_at_step"] if r["solved"] else f"not solved (best {r['eval/best_return_mean']:.1f})"
        seconds = f"{r['solved_at_seconds']:.1f}" if r["solved"] else "-"
        print(f"| {r['seed']} | {steps} | {seconds} | {r['process_seconds']:.1f} |")
    if solved:
        print(f"| median | {statistics.median(r['solved_at_step'] for r in solved):.0f} | "
              f"{statistics.median(r['solved_at_seconds'] for r in solved):.1f} | |")
    save(f"time_to_solve_{args.env}", {"env": args.env, "overrides": args.extra, "cold_cache": args.cold_cache, "runs": runs})


if __name__ == "__main__":
    main()
