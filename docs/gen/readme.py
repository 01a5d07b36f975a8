"""README.md's generated blocks: the quickstart output, from a real run, and the headline result of each task,
from the results files. Never pasted by hand.

    python docs/gen/readme.py --run     # trains the default experiment (as `make train` does), stores its output in
                                        # benchmarks/results/quickstart.json, then writes the blocks
    python docs/gen/readme.py           # writes the blocks from the stored results
    python docs/gen/readme.py --check   # exit 1 if a block differs from what the stored results give

The blocks: README.md between ``<!-- quickstart:begin -->`` / ``<!-- quickstart:end -->`` (also written to
``docs/guide/quickstart-output.md`` for the getting-started page) and between ``<!-- headlines:begin -->`` /
``<!-- headlines:end -->``.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RESULT = REPO / "benchmarks" / "results" / "quickstart.json"
README = REPO / "README.md"
PAGE = REPO / "docs" / "guide" / "quickstart-output.md"
BEGIN, END = "<!-- quickstart:begin -->", "<!-- quickstart:end -->"
HEADLINES = ("<!-- headlines:begin -->", "<!-- headlines:end -->")
RESULTS = REPO / "benchmarks" / "results"
COMMAND = "python -m rlpipe.train"


def run() -> None:
    """Trains the default experiment once and stores its last lines with the run's provenance."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_common import save  # the results files' provenance: command, commit, date, machine

    with tempfile.TemporaryDirectory(prefix="rlpipe-quickstart-") as scratch:
        run_dir = Path(scratch) / "outputs" / "2026-01-01" / "00-00-00_cartpole_seed0"
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "rlpipe.train", f"hydra.run.dir={run_dir}"], cwd=REPO, capture_output=True,
                              text=True, check=True, stdin=subprocess.DEVNULL)
        seconds = time.perf_counter() - started
    lines = [line.replace(str(run_dir), "outputs/<date>/<time>_cartpole_seed0") for line in done.stdout.strip().splitlines()]
    save("quickstart", {"run_command": COMMAND, "process_seconds": round(seconds, 1), "output": lines[-3:]})


def block() -> str:
    """The Markdown block: the command, its last three lines (the JSON line shortened) and where they come from."""
    stored = json.loads(RESULT.read_text())
    directory, final, summary = stored["output"]
    fields = json.loads(summary)
    short = ", ".join(f'"{key}": {json.dumps(fields[key])}' for key in ("env", "seed", "steps", "updates", "episodes", "eval/return_mean"))
    when = stored["date"][:10]
    return (f"```\n$ {COMMAND}\n{directory}\n{final}\n{{{short}, ...}}\n```\n\n"
            f"(`python docs/gen/readme.py --run` on {when}, commit {stored['commit']}, a {stored['machine']['cpu_count']}-core "
            f"{stored['machine'].get('cpu_model', 'CPU')}: {stored['process_seconds']:.0f} s for the whole command, after `.venv/` existed.)\n")


def _load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _range(values: list[float], fmt: str = "{:,.0f}") -> str:
    low, high = min(values), max(values)
    return fmt.format(low) if low == high else f"{fmt.format(low)}-{fmt.format(high)}"


def _extent(run: dict) -> str:
    """How far a long run went: a run that has not finished was stopped there (it resumes from its last.pt)."""
    return f"{run['steps']:,} steps" if run.get("finished", True) else f"a run stopped at {run['steps']:,} of {_planned(run):,} steps"


def _planned(run: dict) -> int:
    import yaml

    return int(yaml.safe_load(run["config"])["train"]["total_steps"]) if run.get("config") else run["steps"]


def headlines() -> str:
    """One row per task: its command and headline figure, each from its results file, with the page that has more."""
    rows = []
    cartpole, lunar = _load("time_to_solve_cartpole"), _load("time_to_solve_lunarlander")
    if cartpole:
        runs = cartpole["runs"]
        rows.append(("CartPole-v1", "`python -m rlpipe.train`", f"solved (475) in {_range([r['solved_at_step'] for r in runs])} agent steps, "
                     f"{_range([r['solved_at_seconds'] for r in runs])} s from a cold compile cache ({len(runs)} seeds)", "results/time-to-solve.md"))
    if lunar:
        runs = lunar["runs"]
        rows.append(("LunarLander-v3", "`python -m rlpipe.train env=lunarlander`",
                     f"solved (200) in {_range([r['solved_at_step'] for r in runs])} agent steps ({len(runs)} seeds)", "results/time-to-solve.md"))
    protocol = _load("breakout_2m") or _load("breakout_protocol")  # the long run, once it has a results file
    if protocol:
        run = next(iter(protocol["runs"].values()))
        best = max(run["evaluations"], key=lambda e: e["eval/return_mean"])
        rows.append(("Atari Breakout", "`python -m rlpipe.train env=breakout exploration=temperature`",
                     f"{best['eval/return_mean']:.1f} +- {best['eval/return_std']:.1f} at {best['step']:,} agent steps "
                     f"({run['protocol']['name']}, epsilon {run['protocol']['epsilon']:g}, {run['protocol']['episodes']} games; "
                     f"{_extent(run)})", "results/breakout-learning.md"))
    pong = _load("pong_runs")
    if pong:
        run = next(iter(pong["runs"].values()))
        best = max(run["evaluations"], key=lambda e: e["eval/return_mean"])
        rows.append(("Atari Pong", "`python -m rlpipe.train env=atari env.game=Pong`",
                     f"{best['eval/return_mean']:.1f} +- {best['eval/return_std']:.1f} at {best['step']:,} agent steps "
                     f"({run['protocol']['name']}, epsilon {run['protocol']['epsilon']:g}; {_extent(run)})",
                     "results/pong-learning.md"))
    doorkey = _load("doorkey")
    if doorkey:
        runs = doorkey["skills"]
        rows.append(("MiniGrid DoorKey-8x8, skills", "`python -m rlpipe.train env=doorkey`",
                     f"success {_range([r['eval_success_rate'] for r in runs], '{:.2f}')} over 100 greedy episodes at "
                     f"{_range([r['steps'] for r in runs])} decisions, {_range([r['wall_seconds'] / 60 for r in runs], '{:.1f}')} min "
                     f"({len(runs)} seeds)", "results/doorkey.md"))
    rnd = _load("doorkey_rnd_exploit_acting")
    if rnd:
        steps = [run["first_eval_target_step"] for run in rnd["runs"].values() if run.get("first_eval_target_step")]
        rows.append(("DoorKey-8x8, primitive actions, RND", "`python -m rlpipe.train experiment=doorkey_rnd`",
                     f"90% greedy success first at {', '.join(f'{s:,}' for s in steps)} agent steps ({len(rnd['runs'])} seeds)",
                     "results/doorkey-rnd.md"))
    replay = _load("replay_memory_memory")
    if replay:
        rows.append(("Atari replay memory", "`buffer.capacity=1_000_000`",
                     f"{replay['capacity']:,} transitions of {replay['frame_stack']}-frame stacks in "
                     f"{replay['rss_gb_full'] * 2**30 / 1e9:.2f} GB resident", "results/replay-memory.md"))
    lines = ["| task | command | headline result | more |", "| --- | --- | --- | --- |"]
    lines += [f"| {task} | {command} | {figure} | [results](docs/{page}) |" for task, command, figure, page in rows]
    return "\n".join(lines) + "\n"


def _replace(text: str, markers: tuple[str, str], body: str) -> str:
    begin, end = markers
    if begin not in text or end not in text:
        raise SystemExit(f"README.md lacks the {begin} / {end} markers")
    return re.sub(re.escape(begin) + r".*?" + re.escape(end), lambda _: f"{begin}\n{body}{end}", text, flags=re.S)


def expected() -> dict[Path, str]:
    readme = _replace(_replace(README.read_text(), (BEGIN, END), block()), HEADLINES, headlines())
    page = f"<!-- Generated by python docs/gen/readme.py from benchmarks/results/quickstart.json; do not edit. -->\n{block()}"
    return {README: readme, PAGE: page}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--run", action="store_true", help="train once and store the output first")
    mode.add_argument("--check", action="store_true", help="compare the blocks with the stored output")
    args = parser.parse_args()
    if args.run:
        run()
    stale = 0
    for path, text in expected().items():
        current = path.read_text() if path.is_file() else ""
        if current == text:
            continue
        if args.check:
            stale += 1
            sys.stdout.writelines(difflib.unified_diff(current.splitlines(True), text.splitlines(True), str(path), "expected"))
        else:
            path.write_text(text)
    if stale:
        raise SystemExit("README / quickstart blocks are stale: run python docs/gen/readme.py")


if __name__ == "__main__":
    main()
