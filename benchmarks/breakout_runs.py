"""Breakout learning runs: game score against agent steps and wall minutes, from the runs' ``summary.json``.

The runs themselves are long (an hour or more on 2 CPU cores) and go in the background, one at a time::

    nohup python -m rlpipe.train env=breakout exploration=temperature train.seed=0 train.stop_on_solve=true \\
        train.time_limit_minutes=60 hydra.run.dir=outputs/breakout_cpu/temperature_seed0 \\
        > outputs/breakout_cpu/temperature_seed0.log 2>&1 &

``summary.json`` is rewritten after every evaluation (``finished`` stays false until the run ends), so a run that is
still going or was cut shows its curve so far; ``resume=.../checkpoints/last.pt`` continues it, clock and curve
included. This script collects the curves into ``benchmarks/results/breakout_runs.json`` and plots them::

    python benchmarks/breakout_runs.py temperature_seed0=outputs/breakout_cpu/temperature_seed0 [LABEL=RUN_DIR ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from bench_common import RESULTS, save  # noqa: E402

BAR = 20.0  # the original project's success criterion: a greedy evaluation mean game score of 20


def load_run(run_dir: Path) -> dict:
    summary = json.loads((run_dir / "summary.json").read_text())
    config = (run_dir / "config.yaml").read_text() if (run_dir / "config.yaml").is_file() else ""
    return {
        "run_dir": str(run_dir),
        "finished": summary.get("finished", True),
        "seed": summary["seed"],
        "steps": summary["steps"],
        "updates": summary["updates"],
        "wall_seconds": summary["wall_seconds"],
        "solved_return": summary["solved_return"],
        "solved_at_step": summary["solved_at_step"],
        "solved_at_seconds": summary["solved_at_seconds"],
        "best_eval_return_mean": summary["best_eval_return_mean"],
        "evaluations": [{key: e[key] for key in ("step", "return_mean", "return_std", "length_mean", "wall_seconds")}
                        for e in summary["evaluations"]],
        "config": config,
        "time_budget": time_budget(run_dir),
    }


STAGES = ("env", "acting", "replay", "learner", "eval", "checkpoint", "other")


def time_budget(run_dir: Path) -> dict[str, dict[str, float]]:
    """Where the run's wall time went, from its ``time/<stage>_ms_per_step`` logs: seconds, share of the total, and
    milliseconds per agent step of each stage over the whole run."""
    scalars = run_dir / "logs" / "csv" / "scalars" / "time"
    seconds: dict[str, float] = {}
    total_steps = 0
    for stage in STAGES:
        path = scalars / f"{stage}_ms_per_step.csv"
        rows = [tuple(map(float, line.split(","))) for line in path.read_text().split()] if path.is_file() else []
        previous, spent = 0.0, 0.0
        for step, ms_per_step in rows:
            spent += ms_per_step * (step - previous) / 1e3
            previous = step
        seconds[stage] = spent
        total_steps = max(total_steps, int(previous))
    total = sum(seconds.values()) or 1.0
    return {stage: {"seconds": spent, "fraction": spent / total, "ms_per_step": 1e3 * spent / max(total_steps, 1)}
            for stage, spent in seconds.items()}


def plot(runs: dict[str, dict], path: Path) -> None:
    figure, (by_steps, by_minutes) = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for label, run in runs.items():
        evaluations = run["evaluations"]
        scores = [e["return_mean"] for e in evaluations]
        suffix = "" if run["finished"] else " (cut)"
        by_steps.plot([e["step"] / 1e3 for e in evaluations], scores, marker="o", markersize=3, label=label + suffix)
        by_minutes.plot([e["wall_seconds"] / 60 for e in evaluations], scores, marker="o", markersize=3, label=label + suffix)
    for axis, xlabel in ((by_steps, "agent steps (thousands)"), (by_minutes, "wall minutes on 2 CPU cores")):
        axis.axhline(BAR, color="grey", linestyle="--", linewidth=1)
        axis.set_xlabel(xlabel)
        axis.grid(alpha=0.3)
    by_minutes.axvline(60, color="grey", linestyle=":", linewidth=1)
    by_steps.set_ylabel("greedy evaluation: game score")
    by_steps.set_ylim(bottom=0)
    by_steps.legend(fontsize=8)
    figure.suptitle("rlpipe DQN on Breakout (env=breakout CPU preset); dashed: the 20-point bar", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="LABEL=RUN_DIR")
    args = parser.parse_args()
    runs = {}
    for item in args.runs:
        label, _, run_dir = item.partition("=")
        runs[label] = load_run(Path(run_dir))
    print("| run | finished | steps | wall min | first evaluation >= 20: step, wall min | best evaluation mean |")
    print("| --- | --- | ---: | ---: | --- | ---: |")
    for label, run in runs.items():
        solved = (f"{run['solved_at_step']:,}, {run['solved_at_seconds'] / 60:.1f}" if run["solved_at_step"] is not None else "not reached")
        print(f"| {label} | {run['finished']} | {run['steps']:,} | {run['wall_seconds'] / 60:.1f} | {solved} | "
              f"{run['best_eval_return_mean']:.1f} |")
    print("\nTime budget over each run (share of wall time; ms per agent step): collection = env + acting")
    print("| run | " + " | ".join(STAGES) + " | collection |")
    print("| --- |" + " ---: |" * (len(STAGES) + 1))
    for label, run in runs.items():
        budget = run["time_budget"]
        cells = [f"{budget[s]['fraction']:.1%} ({budget[s]['ms_per_step']:.2f})" for s in STAGES]
        collection = budget["env"]["fraction"] + budget["acting"]["fraction"]
        print(f"| {label} | " + " | ".join(cells) + f" | {collection:.1%} |")
    png = RESULTS / "breakout_curves.png"
    plot(runs, png)
    print(f"wrote {png.relative_to(RESULTS.parents[1])}")
    save("breakout_runs", {"bar": BAR, "runs": runs})


if __name__ == "__main__":
    main()
