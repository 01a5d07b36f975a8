"""Scale-out on one machine: collection with 1 and 2 environment workers, and a 6-run sweep with the serial
launcher against the parallel one (``launcher=local``: Hydra's joblib launcher, 2 jobs x 1 torch thread).

- **Collection**: agent steps per second of ``rlpipe.collect.make_collector`` (the training collector, the env
  preset's Q-network acting epsilon-greedy) with one env, two envs stepped in turn in this process
  (``env.num_envs=2``, gymnasium ``SyncVectorEnv``), and two env worker processes (``env.parallel=true``,
  ``AsyncVectorEnv``); interleaved rounds, medians.
- **Sweep**: wall seconds of ``python -m rlpipe.train --multirun env=cartpole train.seed=0,1,2 train.lr=1e-3,5e-4``
  (6 runs of ``--sweep-steps`` agent steps each, no stop at solve: every run does the same work), serial, with
  ``launcher=local``, and with the joblib launcher at torch's default threads (2 jobs x 2 threads: oversubscribed).

    python benchmarks/scale_out.py [--sweep-steps 10000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from tensordict.nn import TensorDictSequential

from bench_common import REPO, compose_config, interleaved_medians, rate, save
from rlpipe.collect import make_collector
from rlpipe.envs import make_env
from rlpipe.exploration import make_exploration
from rlpipe.models import make_q_network

SWEEP = ["env=cartpole", "train.seed=0,1,2", "train.lr=1e-3,5e-4"]
LAUNCHERS = {
    "serial (Hydra's basic launcher, 2 threads per run)": [],
    "launcher=local (joblib, 2 jobs x 1 thread)": ["launcher=local"],
    "joblib, 2 jobs x 2 threads (no thread setting)": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
}


def collector_rate(env_overrides: list[str], steps: int):
    """Agent steps per second of the training collector for ``env_overrides`` (one call: ``steps`` steps)."""
    cfg = compose_config(env_overrides)
    env = make_env(cfg.env, num_envs=cfg.env.num_envs, seed=0, parallel=True)  # (env.parallel: worker processes)
    device = torch.device("cpu")
    q_network = make_q_network(cfg.model, env, device)
    exploration = make_exploration(cfg.exploration, env.full_action_spec_unbatched["action"], device)
    exploration.module.eps.fill_(0.05)
    collector = make_collector(env, TensorDictSequential(q_network, exploration.module), steps_per_collect=256, device=device)
    batches = iter(collector)
    return lambda: 256 * rate(lambda: next(batches), calls=steps // 256, warmup=2), collector


def sweep_seconds(extra: list[str], steps: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="rlpipe-scale-out-") as directory:
        command = [sys.executable, "-m", "rlpipe.train", "--multirun", *SWEEP, *extra, f"train.total_steps={steps}",
                   "train.stop_on_solve=false", f"hydra.sweep.dir={directory}"]
        started = time.perf_counter()
        subprocess.run(command, cwd=REPO, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seconds = time.perf_counter() - started
        summaries = [json.loads(p.read_text()) for p in Path(directory).glob("*/summary.json")]
    assert len(summaries) == 6 and all(s["steps"] == steps for s in summaries), "every run of the sweep finishes"
    return {"command": " ".join(command[1:-1]), "wall_seconds": seconds,
            "run_wall_seconds": sorted(s["wall_seconds"] for s in summaries)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep-steps", type=int, default=10_000, help="agent steps per run of the sweep")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=4096, help="timed agent steps per collector per round")
    args = parser.parse_args()

    collection = {}
    for env in ("cartpole", "lunarlander"):
        contenders, collectors = {}, []
        for label, overrides in (("1 env", []), ("2 envs, one process", ["env.num_envs=2"]),
                                 ("2 env worker processes", ["env.num_envs=2", "env.parallel=true"])):
            measure, collector = collector_rate([f"env={env}", *overrides], args.steps)
            contenders[label], collectors = measure, [*collectors, collector]
        collection[env] = interleaved_medians(contenders, rounds=args.rounds)
        for collector in collectors:
            collector.shutdown()
        print(f"\n{env}: agent steps/s of the training collector (median of {args.rounds} rounds)")
        for label, r in collection[env].items():
            print(f"| {label} | {r['median']:,.0f} | {r['min']:,.0f}-{r['max']:,.0f} |")

    sweeps = {label: sweep_seconds(extra, args.sweep_steps) for label, extra in LAUNCHERS.items()}
    serial = next(iter(sweeps.values()))["wall_seconds"]
    print(f"\n6-run CartPole sweep, {args.sweep_steps:,} agent steps per run")
    for label, r in sweeps.items():
        print(f"| {label} | {r['wall_seconds']:.0f} s | {r['wall_seconds'] / serial:.2f}x |")
    save("scale_out", {"collection": collection, "sweeps": sweeps, "sweep_steps": args.sweep_steps})


if __name__ == "__main__":
    main()
