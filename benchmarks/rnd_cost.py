"""The cost of RND per learning phase: updates per second with ``exploration=egreedy`` (one agent) and with
``exploration=rnd`` (two agents, the RND predictor, and the look at each collect that keeps RND's statistics).

Each mode is ``rlpipe/train.py``'s learning phase built by the package's factories (``benchmarks/learner_throughput.py``'s
``rlpipe_phase``: ``make_agents``, the preset's replay memory filled with synthetic transitions, one draw of K
minibatches per phase, ``learn``, one priority write), preceded by ``observe`` on a collect of the preset's
``train.steps_per_collect`` transitions. One process per mode (as in training: compiled updates in one process
share Dynamo's caches); the median of ``--rounds`` timings.

    python benchmarks/rnd_cost.py [--env breakout] [--rounds 5] [--updates 64] [--buffer-size 20000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

from bench_common import compose_config, rate, save
from learner_throughput import random_transitions, rlpipe_phase, synthetic_frames
from rlpipe.envs import make_env


def measure(args: argparse.Namespace) -> dict:
    cfg = compose_config([f"env={args.env}"])
    env = make_env(cfg.env, num_envs=1)
    observation_shape = env.full_observation_spec_unbatched["observation"].shape
    n_actions = env.full_action_spec_unbatched["action"].space.n
    env.close()
    make_data = synthetic_frames if cfg.env.kind == "atari" else random_transitions
    data = make_data(args.buffer_size, observation_shape, n_actions)
    k = int(cfg.train.steps_per_collect * cfg.train.updates_per_step)
    phase = rlpipe_phase(data, [f"env={args.env}", f"exploration={args.mode}"], updates_per_phase=k,
                         observe_steps=cfg.train.steps_per_collect)
    rates = [k * rate(phase, calls=max(1, args.updates // k), warmup=2) for _ in range(args.rounds)]
    return {"mode": args.mode, "updates_per_phase": k, "batch_size": cfg.train.batch_size,
            "steps_per_collect": cfg.train.steps_per_collect, "updates_per_s": statistics.median(rates), "rates": rates}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="breakout")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--updates", type=int, default=64, help="timed updates per round")
    parser.add_argument("--buffer-size", type=int, default=20_000)
    parser.add_argument("--mode", help=argparse.SUPPRESS)  # measure one mode in this process
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(measure(args)))
        return
    results = {}
    for mode in ("egreedy", "rnd"):
        command = [sys.executable, __file__, "--mode", mode, "--env", args.env, "--rounds", str(args.rounds),
                   "--updates", str(args.updates), "--buffer-size", str(args.buffer_size)]
        proc = subprocess.run(command, capture_output=True, text=True, check=True)
        results[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
    ratio = results["rnd"]["updates_per_s"] / results["egreedy"]["updates_per_s"]
    print(f"\nRND cost, {args.env} (K={results['rnd']['updates_per_phase']} updates of batch {results['rnd']['batch_size']} "
          f"per phase, observe on {results['rnd']['steps_per_collect']} transitions): medians of {args.rounds} rounds")
    print("| mode | updates/s | relative |\n| --- | ---: | ---: |")
    for mode, r in results.items():
        print(f"| {mode} | {r['updates_per_s']:.1f} | {r['updates_per_s'] / results['egreedy']['updates_per_s']:.2f} |")
    save(f"rnd_cost_{args.env}", {"env": args.env, "results": results, "rnd_over_egreedy": ratio})


if __name__ == "__main__":
    main()
