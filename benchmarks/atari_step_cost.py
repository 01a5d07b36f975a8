"""Where an Atari agent step's time goes: a bare ALE step, TorchRL's ``GymEnv`` step, and rlpipe's full env.

Random actions, frame-skip 4, one env, ``env.rollout`` for the TorchRL envs (no collector, no policy network):

- **plain ALE**: ``gymnasium.make("ALE/Breakout-v5", frameskip=4).step`` in a Python loop;
- **TorchRL GymEnv**: ``GymEnv("ALE/Breakout-v5", frame_skip=4)``, no transforms;
- **rlpipe env**: the same plus rlpipe's Breakout transforms (reset protocol, resize, grayscale, 8-frame stack,
  end of life, step counter, score, shaping).

    python benchmarks/atari_step_cost.py [--steps 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import ale_py
import gymnasium as gym
from torchrl.envs import GymEnv

from bench_common import compose_config, save
from rlpipe.envs import make_env

gym.register_envs(ale_py)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    plain = gym.make("ALE/Breakout-v5", frameskip=4, repeat_action_probability=0.0)
    plain.reset(seed=0)
    raw = GymEnv("ALE/Breakout-v5", frame_skip=4, repeat_action_probability=0.0, categorical_action_encoding=True)
    full = make_env(compose_config(["env=breakout"]).env, seed=0)

    def plain_loop() -> None:
        for _ in range(args.steps):
            _, _, terminated, truncated, _ = plain.step(plain.action_space.sample())
            if terminated or truncated:
                plain.reset()

    contenders = {
        "plain ALE": plain_loop,
        "TorchRL GymEnv": lambda: raw.rollout(args.steps, break_when_any_done=False),
        "rlpipe env": lambda: full.rollout(args.steps, break_when_any_done=False),
    }
    us_per_step: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(args.rounds):
        for name, run in contenders.items():
            start = time.perf_counter()
            run()
            us_per_step[name].append((time.perf_counter() - start) / args.steps * 1e6)
    print("| env | us per agent step (median) | steps/s |\n| --- | ---: | ---: |")
    for name, values in us_per_step.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.0f} | {1e6 / median:.0f} |")
    save("atari_step_cost", {"steps": args.steps, "us_per_step": us_per_step})


if __name__ == "__main__":
    main()
