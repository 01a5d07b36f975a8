"""Reliability: CartPole runs stopped at random points by SIGINT, SIGTERM or SIGKILL, then resumed to the end.

Each trial starts ``python -m rlpipe.train`` (a short CartPole run with checkpoints every 500 steps and the
replay buffer in memory-mapped files), stops it at a random moment after training has started (``train.log`` says
so) with a random signal, resumes it with
``resume=<run>/checkpoints/last.pt`` (only that: a resumed run takes the checkpoint's configuration and directory)
and checks that

- the stopped run exited as it should (130 / 143 with an interrupted summary, or -9 for SIGKILL; 0 when the signal
  came during its last step and it finished);
- its ``last.pt`` loads (or there is none yet, when the signal came before the first checkpoint: the trial then
  starts the run again);
- the resumed run finished at ``train.total_steps`` exactly, with a summary whose checkpoint paths exist and whose
  evaluations start with those of the stopped run;
- nothing outside the run directory changed (the working directory and a sentinel file beside the runs).

    python benchmarks/reliability.py [--trials 20] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_common import REPO, save

from rlpipe.checkpoint import CheckpointError, load_checkpoint

TOTAL_STEPS = 3000
RUN = [f"train.total_steps={TOTAL_STEPS}", "train.init_random_steps=500", "train.steps_per_collect=64",
       "eval.interval_steps=500", "eval.episodes=5", "checkpoint.interval_steps=500", "train.stop_on_solve=false",
       "buffer.storage=memmap"]
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)


def snapshot(directory: Path, skip: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``directory`` but ``skip`` with its size and modification time."""
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in directory.rglob("*")
            if p.is_file() and skip not in p.parents}


def trial(index: int, workdir: Path, rng: random.Random) -> dict:
    run_dir = workdir / f"run{index}"
    signum = rng.choice(SIGNALS)
    delay_s = rng.uniform(0.0, 7.5)  # after training started; training takes ~8-9 s on 2 cores
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    command = [sys.executable, "-m", "rlpipe.train", *RUN, f"train.seed={index}", f"hydra.run.dir={run_dir}"]
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=workdir, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env)
    log = run_dir / "train.log"
    while process.poll() is None and "training " not in (log.read_text() if log.is_file() else ""):
        time.sleep(0.1)  # "mid-run": the signal comes once the run has started training (docs/results/reliability.md)
    time.sleep(delay_s)
    stopped_early = process.poll() is None
    if stopped_early:
        process.send_signal(signum)
    _, stderr = process.communicate(timeout=300)
    record = {"trial": index, "signal": signum.name, "after_s": round(delay_s, 1), "signalled": stopped_early,
              "exit_code": process.returncode}
    problems = []
    expected_exit = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGKILL: -9}[signum] if stopped_early else 0
    summary_path = run_dir / "summary.json"
    finished_anyway = process.returncode == 0 and summary_path.is_file() and json.loads(summary_path.read_text())["finished"]
    if process.returncode != expected_exit and not finished_anyway:  # a signal in the last step: the run completes
        problems.append(f"exit code {process.returncode}, expected {expected_exit}: {stderr.strip()[-300:]}")
    if "Traceback" in stderr:
        problems.append("traceback on stderr")
    last = run_dir / "checkpoints" / "last.pt"
    evaluations_before = []
    try:
        payload = load_checkpoint(last) if last.exists() else None
        record["stopped_at_step"] = payload["counters"]["step"] if payload else None
        evaluations_before = payload["counters"]["evaluations"] if payload else []
    except CheckpointError as err:
        problems.append(f"last.pt unreadable: {err}")
        payload = None

    if payload is not None and payload["counters"]["step"] >= TOTAL_STEPS:
        resume = None  # it finished: resuming would only say so
    elif payload is not None:
        resume = [sys.executable, "-m", "rlpipe.train", f"resume={last}"]
    else:  # stopped before its first checkpoint: nothing to resume, start again
        resume = command
    result = subprocess.run(resume or [sys.executable, "-c", ""], cwd=workdir, stdin=subprocess.DEVNULL, capture_output=True,
                            text=True, env=env, timeout=600)
    record["wall_s"] = round(time.perf_counter() - started, 1)
    if result.returncode != 0:
        problems.append(f"resume exit code {result.returncode}: {result.stderr.strip()[-300:]}")
    else:
        summary = json.loads((run_dir / "summary.json").read_text())
        record["final_step"] = summary["steps"]
        if summary["steps"] != TOTAL_STEPS or not summary["finished"]:
            problems.append(f"finished={summary['finished']} at step {summary['steps']}, expected {TOTAL_STEPS}")
        if not all(path and Path(path).is_file() for path in summary["checkpoints"].values()):
            problems.append(f"summary names missing checkpoints: {summary['checkpoints']}")
        if summary["evaluations"][: len(evaluations_before)] != evaluations_before:
            problems.append("the resumed curve does not continue the stopped run's")
        try:
            final = load_checkpoint(run_dir / "checkpoints" / "last.pt")
            if final["counters"]["step"] != TOTAL_STEPS:
                problems.append(f"final last.pt at step {final['counters']['step']}")
        except CheckpointError as err:
            problems.append(f"final last.pt unreadable: {err}")
    record["problems"] = problems
    record["survived"] = not problems
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="rlpipe-reliability-") as temporary:
        root = Path(temporary)
        workdir = root / "work"
        workdir.mkdir()
        sentinel = root / "sentinel.txt"
        sentinel.write_text("must survive every trial\n")
        outside_before = snapshot(root, skip=workdir)
        repo_before = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True).stdout
        records = []
        for index in range(args.trials):
            record = trial(index, workdir, rng)
            records.append(record)
            status = "ok" if record["survived"] else "FAILED: " + "; ".join(record["problems"])
            print(f"trial {index:2d}: {record['signal']:7s} after {record['after_s']:4.1f} s "
                  f"(stopped at step {record.get('stopped_at_step')}) -> step {record.get('final_step')}: {status}", flush=True)
        # (resumes run here without hydra.run.dir: Hydra makes outputs/<date>/<time>/, which the run removes,
        # leaving at most an empty outputs/)
        stray = sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*")
                       if not p.relative_to(workdir).parts[0].startswith("run") and not (p.is_dir() and p.name == "outputs"))
        outside_changed = snapshot(root, skip=workdir) != outside_before or sentinel.read_text() != "must survive every trial\n"
        repo_changed = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True).stdout != repo_before
    survived = sum(r["survived"] for r in records)
    print(f"survived {survived}/{len(records)}; files outside the run directories changed: {outside_changed or repo_changed}; "
          f"stray entries in the working directory: {stray or 'none'}")
    save("reliability", {"trials": len(records), "survived": survived, "total_steps": TOTAL_STEPS, "run_overrides": RUN,
                         "outside_changed": outside_changed, "repository_changed": repo_changed, "stray_entries": stray,
                         "records": records})


if __name__ == "__main__":
    main()
