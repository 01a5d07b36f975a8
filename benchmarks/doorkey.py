"""DoorKey: success of skills (options) against primitive actions, for about the same wall time.

1. ``env=doorkey`` (DoorKey-8x8, five masked skills) with its default configuration (20,000 decisions, evaluation
   over 100 greedy episodes every 5,000 decisions and at the end), once per seed.
2. ``env=doorkey_primitive`` (MiniGrid's primitive actions, same observation and learner) on 5x5 and 8x8, given
   ``--primitive-steps`` agent steps (several times the skills runs' wall time, so the table shows success at the
   same wall time and what more time buys), evaluated every
   ``--primitive-eval-steps`` over 20 greedy episodes (failed episodes run to MiniGrid's time limit, so 100 would
   dominate the wall time).

Every run is the real CLI in a process of its own, one at a time; figures come from each run's ``summary.json``.

    python benchmarks/doorkey.py [--seeds 0 1 2] [--primitive-steps 200000] [--primitive-eval-steps 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_common import REPO, save


def train(*overrides: str) -> dict:
    run_dir = Path(tempfile.mkdtemp(prefix="rlpipe-bench-doorkey-"))
    proc = subprocess.run(
        [sys.executable, "-m", "rlpipe.train", *overrides, f"hydra.run.dir={run_dir}"],
        cwd=REPO, capture_output=True, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(overrides)} failed:\n{proc.stderr[-3000:]}")
    return json.loads((run_dir / "summary.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--primitive-steps", type=int, default=200_000)
    parser.add_argument("--primitive-eval-steps", type=int, default=10_000)
    args = parser.parse_args()

    skills = []
    print("| run | seed | success at 5k / 10k / 15k / 20k decisions (100 greedy episodes) | return | "
          "decisions / episode | primitive steps / episode | wall s |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: |")
    for seed in args.seeds:
        s = train("env=doorkey", f"train.seed={seed}")
        skills.append(s)
        curve = " / ".join(f"{e['eval/success_rate']:.2f}" for e in s["evaluations"])
        print(f"| skills 8x8 | {seed} | {curve} | {s['eval/return_mean']:.2f} | {s['eval/length_mean']:.1f} | "
              f"{s['eval/primitive_steps_mean']:.1f} | {s['wall_seconds']:.0f} |", flush=True)
    skills_wall_s = max(s["wall_seconds"] for s in skills)

    primitive = {}
    print("\n| run | agent steps | success (20 greedy episodes) | wall s |\n| --- | ---: | ---: | ---: |")
    for size in (5, 8):
        p = train("env=doorkey_primitive", f"env.size={size}", "train.seed=0", f"train.total_steps={args.primitive_steps}",
                  f"eval.interval_steps={args.primitive_eval_steps}", "eval.episodes=20")
        primitive[f"{size}x{size}"] = p
        for evaluation in p["evaluations"]:
            within = " (within the skills' wall time)" if evaluation["wall_seconds"] <= skills_wall_s else ""
            print(f"| primitive {size}x{size} | {evaluation['step']} | {evaluation['eval/success_rate']:.2f} | "
                  f"{evaluation['wall_seconds']:.0f}{within} |", flush=True)
    save("doorkey", {"skills": skills, "skills_wall_seconds_max": skills_wall_s, "primitive": primitive,
                     "primitive_steps": args.primitive_steps})


if __name__ == "__main__":
    main()
