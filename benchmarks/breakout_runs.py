"""Atari learning runs (Breakout, Pong, ...): game score against agent steps and wall minutes, from the runs'
``summary.json``, with the evaluation protocol each run used.

The runs themselves are long (an hour or more on 2 CPU cores) and go in the background, one at a time::

    nohup python -m rlpipe.train env=breakout exploration=temperature train.seed=0 train.stop_on_solve=true \\
        train.time_limit_minutes=60 hydra.run.dir=outputs/breakout_cpu/temperature_seed0 \\
        > outputs/breakout_cpu/temperature_seed0.log 2>&1 &

``summary.json`` is rewritten after every evaluation (``finished`` stays false until the run ends), so a run that is
still going or was cut shows its curve so far; ``resume=.../checkpoints/last.pt`` continues it, clock and curve
included. This script collects the curves into ``benchmarks/results/breakout_runs.json`` and plots them::

    python benchmarks/breakout_runs.py temperature_seed0=outputs/breakout_cpu/temperature_seed0 [LABEL=RUN_DIR ...] \
        [--from-results LABEL=benchmarks/results/NAME.json:RUN ...]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from omegaconf import OmegaConf  # noqa: E402

from bench_common import RESULTS, current_names, save  # noqa: E402
from rlpipe.config import validate  # noqa: E402
from rlpipe.evaluate import evaluation_protocol  # noqa: E402


def protocol_of(summary: dict, config: str) -> dict:
    """The run's evaluation protocol: its summary's, or for runs from before summaries named it, the one its stored
    configuration describes (rlpipe.evaluate.evaluation_protocol)."""
    if "eval/protocol" in summary:
        return summary["eval/protocol"]
    cfg = validate(OmegaConf.create(config))
    return evaluation_protocol(cfg.env, epsilon=cfg.eval.epsilon, episodes=cfg.eval.episodes)


def load_run(run_dir: Path) -> dict:
    summary = current_names(json.loads((run_dir / "summary.json").read_text()))
    config = (run_dir / "config.yaml").read_text() if (run_dir / "config.yaml").is_file() else ""
    return {
        "env": summary["env"],
        "protocol": protocol_of(summary, config),
        "run_dir": str(run_dir),
        "finished": summary.get("finished", True),
        "seed": summary["seed"],
        "steps": summary["steps"],
        "updates": summary["updates"],
        "wall_seconds": summary["wall_seconds"],
        "solved_return": summary["solved_return"],
        "solved_at_step": summary["solved_at_step"],
        "solved_at_seconds": summary["solved_at_seconds"],
        "eval/best_return_mean": summary["eval/best_return_mean"],
        "evaluations": [{key: e[key] for key in ("step", "eval/return_mean", "eval/return_std", "eval/length_mean", "wall_seconds",
                                                 "eval/greedy_return", "eval/greedy_length") if key in e}
                        for e in summary["evaluations"]],
        "config": config,
        "time_budget": time_budget(run_dir),
        "training": {name: [(step, value) for step, value in read_scalar(run_dir, name) if math.isfinite(value)]
                     for name in TRAINING_CURVES},
    }


# Logged every train.log_interval_steps agent steps; the learner's curves are kept for diagnosing a run from its results
# file once its directory is gone (values not yet defined, such as the Q-value before learning starts, are left out).
TRAINING_CURVES = ("episode/score", "train/loss", "train/grad_norm", "train/q_mean", "train/adam_step_fraction", "buffer/weight_max")


def read_scalar(run_dir: Path, name: str) -> list[tuple[int, float]]:
    """``(step, value)`` rows of one logged metric (the CSV logger's ``scalars/<name>.csv``); [] when not logged.

    A run resumed in place appends to its files from the step of its checkpoint, so a process killed after that
    checkpoint left rows that the resumed one rewrites: a row at or before an earlier row's step replaces them."""
    path = run_dir / "logs" / "csv" / "scalars" / f"{name}.csv"
    lines = path.read_text().split() if path.is_file() else []
    rows: list[tuple[int, float]] = []
    for line in lines:
        if line == "step,value":  # the header row (files written before it existed have none)
            continue
        step, value = line.split(",")
        while rows and rows[-1][0] >= int(float(step)):
            rows.pop()
        rows.append((int(float(step)), float(value)))
    return rows


STAGES = ("env", "acting", "replay", "learner", "eval", "checkpoint", "other")


def time_budget(run_dir: Path) -> dict[str, dict[str, float]]:
    """Where the run's wall time went, from its ``time/<stage>_ms_per_step`` logs: seconds, share of the total, and
    milliseconds per agent step of each stage over the whole run.

    A stage logs a row only for the windows in which it ran (evaluations and checkpoints every 50,000 steps, the
    others every log window), so each row covers the window since the previous log of *any* stage."""
    rows = {stage: dict(read_scalar(run_dir, f"time/{stage}_ms_per_step")) for stage in STAGES}
    boundaries = sorted({step for stage_rows in rows.values() for step in stage_rows})
    seconds = {stage: 0.0 for stage in STAGES}
    previous = 0
    for step in boundaries:
        for stage in STAGES:
            seconds[stage] += rows[stage].get(step, 0.0) * (step - previous) / 1e3
        previous = step
    total = sum(seconds.values()) or 1.0
    return {stage: {"seconds": spent, "fraction": spent / total, "ms_per_step": 1e3 * spent / max(previous, 1)}
            for stage, spent in seconds.items()}


def plot(runs: dict[str, dict], path: Path, title: str) -> None:
    figure, (by_steps, by_minutes, training) = plt.subplots(1, 3, figsize=(13, 3.8), sharey=True)
    for label, run in runs.items():
        evaluations = run["evaluations"]
        scores = [e["eval/return_mean"] for e in evaluations]
        suffix = "" if run["finished"] else " (cut)"
        line, = by_steps.plot([e["step"] / 1e3 for e in evaluations], scores, marker="o", markersize=3, label=label + suffix)
        greedy = [(e["step"] / 1e3, e["eval/greedy_return"]) for e in evaluations if "eval/greedy_return" in e]
        if greedy:  # the deterministic greedy game, dotted, in the run's colour
            by_steps.plot(*zip(*greedy), linestyle=":", linewidth=1, color=line.get_color(), label=f"{label}: greedy game")
        by_minutes.plot([e["wall_seconds"] / 60 for e in evaluations], scores, marker="o", markersize=3, label=label + suffix)
        episode_scores = run["training"]["episode/score"]
        training.plot([step / 1e3 for step, _ in episode_scores], [score for _, score in episode_scores], linewidth=1, label=label)
    training.set_title("training games (exploring), mean per log window", fontsize=9)
    training.set_xlabel("agent steps (thousands)")
    training.grid(alpha=0.3)
    bars = {run["solved_return"] for run in runs.values() if run["solved_return"] is not None}
    for axis, xlabel in ((by_steps, "agent steps (thousands)"), (by_minutes, "wall minutes on 2 CPU cores")):
        for bar in bars:
            axis.axhline(bar, color="grey", linestyle="--", linewidth=1)
        axis.set_xlabel(xlabel)
        axis.grid(alpha=0.3)
    by_minutes.axvline(60, color="grey", linestyle=":", linewidth=1)
    names = {run["protocol"]["name"] + (f", epsilon {run['protocol']['epsilon']:g}" if run["protocol"]["epsilon"] else ", greedy")
             for run in runs.values()}
    by_steps.set_ylabel(f"evaluation game score ({'; '.join(sorted(names))})", fontsize=8)
    by_steps.set_ylim(bottom=0)
    by_steps.legend(fontsize=8)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="LABEL=RUN_DIR")
    parser.add_argument("--name", default="breakout_runs",
                        help="results name: benchmarks/results/NAME.json and NAME.png (breakout_runs: breakout_curves.png)")
    parser.add_argument("--title", default="rlpipe DQN on Breakout (env=breakout CPU preset); dashed: the 20-point bar")
    parser.add_argument("--epsilon-eval", action="append", default=[], metavar="LABEL=JSON",
                        help="the JSON line that `python -m rlpipe.evaluate checkpoint=... eval.episodes=30` printed for a run's "
                             "checkpoint, saved to a file; added to the results")
    parser.add_argument("--from-results", action="append", default=[], metavar="LABEL=JSON:RUN",
                        help="a run recorded in an earlier results file (its run directory may be gone), drawn beside the "
                             "others: e.g. sync_seed0=benchmarks/results/breakout_protocol.json:temperature_seed0")
    args = parser.parse_args()
    runs = {}
    for item in args.runs:
        label, _, run_dir = item.partition("=")
        runs[label] = load_run(Path(run_dir))
    for item in args.from_results:
        label, _, source = item.partition("=")
        path, _, name = source.rpartition(":")
        recorded = json.loads(Path(path).read_text())
        runs[label] = {**recorded["runs"][name], "from_results": f"{path} ({recorded['commit']}, {recorded['date']})"}
    epsilon_evals = {}
    for item in args.epsilon_eval:
        label, _, path = item.partition("=")
        epsilon_evals[label] = current_names(json.loads(Path(path).read_text()))
    print("| run | game | protocol | finished | steps | wall min | first evaluation >= solved: step, wall min | best evaluation mean |")
    print("| --- | --- | --- | --- | ---: | ---: | --- | ---: |")
    for label, run in runs.items():
        solved = (f"{run['solved_at_step']:,}, {run['solved_at_seconds'] / 60:.1f}" if run["solved_at_step"] is not None else "not reached")
        protocol = f"{run['protocol']['name']}, epsilon {run['protocol']['epsilon']:g}, {run['protocol']['episodes']} games"
        print(f"| {label} | {run['env']} | {protocol} | {run['finished']} | {run['steps']:,} | {run['wall_seconds'] / 60:.1f} | "
              f"{solved} | {run['eval/best_return_mean']:.1f} |")
    print("\nEvaluations: step, protocol mean +- std (greedy game from a fixed start, where logged)")
    for label, run in runs.items():
        cells = [f"{e['step'] // 1000}k: {e['eval/return_mean']:.1f} +- {e['eval/return_std']:.1f}"
                 + (f" ({e['eval/greedy_return']:g})" if "eval/greedy_return" in e else "") for e in run["evaluations"]]
        print(f"- {label}: " + "; ".join(cells))
    print("\nTime budget over each run (share of wall time; ms per agent step): collection = env + acting")
    print("| run | " + " | ".join(STAGES) + " | collection |")
    print("| --- |" + " ---: |" * (len(STAGES) + 1))
    for label, run in runs.items():
        budget = run["time_budget"]
        cells = [f"{budget[s]['fraction']:.1%} ({budget[s]['ms_per_step']:.2f})" for s in STAGES]
        collection = budget["env"]["fraction"] + budget["acting"]["fraction"]
        print(f"| {label} | " + " | ".join(cells) + f" | {collection:.1%} |")
    if epsilon_evals:
        print("\nEvaluations of a checkpoint (rlpipe.evaluate)")
        print("| run | checkpoint step | mean +- std | games |")
        print("| --- | ---: | ---: | --- |")
        for label, result in epsilon_evals.items():
            games = ", ".join(f"{score:g}" for score in result["eval/returns"])
            print(f"| {label} | {result['step']:,} | {result['eval/return_mean']:.1f} +- {result['eval/return_std']:.1f} | {games} |")
    png = RESULTS / ("breakout_curves.png" if args.name == "breakout_runs" else f"{args.name}.png")
    plot(runs, png, args.title)
    print(f"wrote {png.relative_to(RESULTS.parents[1])}")
    # the bar the runs are judged against: their game's solved_return (Breakout 20, the original project's; Pong 18)
    bars = sorted({run["solved_return"] for run in runs.values() if run["solved_return"] is not None})
    save(args.name, {"bar": bars[0] if len(bars) == 1 else bars, "runs": runs, "epsilon_0.05_evaluations": epsilon_evals})


if __name__ == "__main__":
    main()
