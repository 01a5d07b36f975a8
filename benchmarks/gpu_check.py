"""The GPU check: on one CUDA GPU, in at most about 8 minutes, what the CPU-only tests cannot show.

    python benchmarks/gpu_check.py               # on a machine with a GPU; writes benchmarks/results/gpu_check.json
    python benchmarks/gpu_check.py --dry-run     # anywhere: prints the plan as one JSON line and runs nothing

Steps, each timed and recorded:

1. **device tests**: ``pytest tests/test_devices.py`` (the device paths proven on a CPU, now with CUDA present);
2. **training**: a Breakout segment of the CPU preset on ``train.device=cuda`` (``--steps`` agent steps after a
   short random prefill), with ``torch.cuda.set_sync_debug_mode("warn")`` around every learning phase so that each
   host synchronisation inside one is reported; prints agent steps/s, updates/s, peak GPU memory and the run's own
   time split (``time/*``), and counts the synchronisation warnings;
3. **update**: the learning phase alone at batch 32 and 128, medians of interleaved rounds, for the ways the
   update can run on a GPU: the default (``train.compile_step=auto``: the loss and the optimizer step compiled),
   the loss compiled alone (the CPU default), each update replayed from a CUDA graph (``train.cudagraphs=true``),
   and bf16 autocast: the measurements that ``train.precision=auto`` and ``train.compile_step=auto`` wait for.
   Each variant's loss after its rounds is recorded beside its rate (a captured update that stopped learning
   would show there).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

from bench_common import REPO, compose_config, save

STEPS = ("device_tests", "training", "update")


def device_tests() -> dict[str, object]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "tests/test_devices.py"], cwd=REPO, capture_output=True, text=True)
    return {"returncode": done.returncode, "seconds": round(time.perf_counter() - started, 1), "tail": done.stdout.strip().splitlines()[-3:]}


def training(steps: int) -> dict[str, object]:
    """A short Breakout run on the GPU, every learning phase under the sync debug mode."""
    from rlpipe import run as run_module
    from rlpipe.train import train

    phase = run_module.learning_phase
    caught: list[str] = []

    def watched(*args, **kwargs):
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as records:
                warnings.simplefilter("always")
                result = phase(*args, **kwargs)
            caught.extend(str(record.message).splitlines()[0] for record in records)
            return result
        finally:
            torch.cuda.set_sync_debug_mode("default")

    run_module.learning_phase = watched
    cfg = compose_config(["env=breakout", "train.device=cuda", f"train.total_steps={steps + 4_000}", "train.init_random_steps=4000",
                          "eval.interval_steps=100000000", "checkpoint.save_buffer=false", "checkpoint.interval_steps=100000000",
                          f"train.log_interval_steps={max(steps // 4, 16)}", "eval.greedy_game=false", "buffer.capacity=100000"])
    torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        summary = train(cfg, Path(scratch))
        seconds = time.perf_counter() - started
        split = {}
        for path in sorted((Path(scratch) / "logs" / "csv" / "scalars" / "time").glob("*_fraction.csv")):
            rows = path.read_text().split()[1:]
            split[path.name.removesuffix("_fraction.csv")] = float(rows[-1].split(",")[1]) if rows else None
        steps_per_s = [float(row.split(",")[1]) for row in (Path(scratch) / "logs/csv/scalars/time/steps_per_s.csv").read_text().split()[1:]]
        updates_per_s = [float(row.split(",")[1]) for row in (Path(scratch) / "logs/csv/scalars/time/updates_per_s.csv").read_text().split()[1:]]
    run_module.learning_phase = phase
    return {"agent_steps": summary["steps"], "updates": summary["updates"], "seconds": round(seconds, 1),
            "steps_per_s_last_window": steps_per_s[-1] if steps_per_s else None,
            "updates_per_s_last_window": updates_per_s[-1] if updates_per_s else None,
            "peak_gpu_memory_gb": torch.cuda.max_memory_allocated() / 1e9, "time_split_last_window": split,
            "syncs_inside_learning_phases": len(caught), "sync_examples": sorted(set(caught))[:5]}


# train overrides of each way to run the update (the default is the preset's own on a GPU)
UPDATE_VARIANTS = {
    "default": [],
    "loss_compiled_only": ["train.compile_step=false"],
    "cudagraphs": ["train.cudagraphs=true"],
    "bf16": ["train.precision=bf16"],
}


def update(rounds: int) -> dict[str, object]:
    """The learning phase alone, each of ``UPDATE_VARIANTS``, at batch 32 and 128 (the learner benchmark's own phase)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from learner_throughput import rlpipe_phase, synthetic_frames

    cfg = compose_config(["env=breakout"])
    results = {}
    for batch in (32, 128):
        data = synthetic_frames(20_000, torch.Size([cfg.env.frame_stack, 84, 84]), 4)
        phases = {name: rlpipe_phase(data, ["env=breakout", "train.device=cuda", f"train.batch_size={batch}", *overrides],
                                     updates_per_phase=4) for name, overrides in UPDATE_VARIANTS.items()}
        rates: dict[str, list[float]] = {name: [] for name in phases}
        losses: dict[str, float] = {}
        for _ in range(rounds):
            for name, phase in phases.items():
                torch.cuda.synchronize()
                started = time.perf_counter()
                for _ in range(8):
                    learned = phase()
                torch.cuda.synchronize()
                rates[name].append(32 / (time.perf_counter() - started))  # updates/s (8 phases of 4)
                losses[name] = float(learned.result.losses.mean())
        results[f"batch{batch}"] = {name: {"updates_per_s": statistics.median(values), "last_phase_loss": losses[name]}
                                    for name, values in rates.items()}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8_000, help="learning agent steps of the training segment")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    plan = {"cuda_available": cuda, "device": torch.cuda.get_device_name(0) if cuda else None, "steps": list(STEPS),
            "training_steps": args.steps, "update_variants": UPDATE_VARIANTS}
    if args.dry_run or not cuda:
        if not cuda and not args.dry_run:
            raise SystemExit("gpu_check: no CUDA device here (torch.cuda.is_available() is False); run it on a GPU machine")
        print(json.dumps(plan))
        return
    result = {"plan": plan, "device_tests": device_tests()}
    print(json.dumps({"device_tests": result["device_tests"]}), flush=True)
    result["training"] = training(args.steps)
    print(json.dumps({"training": result["training"]}), flush=True)
    result["update"] = update(args.rounds)
    print(json.dumps({"update": result["update"]}), flush=True)
    save("gpu_check", result)


if __name__ == "__main__":
    main()
