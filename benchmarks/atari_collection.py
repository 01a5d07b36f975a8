"""Atari collection throughput: agent steps per second of rlpipe's collector versus a plain ALE loop.

Every contender steps ``ALE/Breakout-v5`` with frame-skip 4 and no sticky actions (one agent step = 4 emulator
frames), on the CPU, in the same process, interleaved over several rounds (medians, and medians of per-round
ratios, are reported):

- **plain ALE loop**: ``gymnasium.make("ALE/Breakout-v5", frameskip=4)``, ``env.step(random action)`` in a Python
  loop, ``reset`` at game over; no preprocessing. This is the baseline the target (at least 0.5 with one env) is
  stated against. Two envs: a gymnasium ``SyncVectorEnv`` (``AsyncVectorEnv`` was slower on 2 cores).
- **plain ALE + preprocessing + Nature CNN**: the same loop doing by hand what rlpipe's policy and transforms do:
  torch resize to 84x84, grayscale, an 8-frame stack, one Nature-CNN forward pass and a softmax draw per step.
- **rlpipe, random actions**: TorchRL's ``Collector`` over rlpipe's full Breakout env (``GymEnv`` +
  NOOP/FIRE reset, resize, grayscale, 8-frame stack, end-of-life, step counter, score, reward shaping) acting
  with TorchRL's ``RandomPolicy``, as during the random prefill. Two envs: ``SerialEnv`` (the default), and
  ``ParallelEnv`` (``env.parallel=true``, one process per env) for comparison.
- **rlpipe, Nature CNN + Boltzmann**: the same collector acting with the training policy
  (``QValueActor`` over the Nature CNN, then ``BoltzmannModule``), as after the prefill.

    python benchmarks/atari_collection.py [--num-envs 1 2] [--rounds 5] [--steps 1024]
"""

from __future__ import annotations

import argparse
from collections import deque

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from tensordict.nn import TensorDictSequential
from torchrl.collectors import Collector
from torchrl.envs.utils import RandomPolicy

from bench_common import compose_config, interleaved_medians, paired_ratio, rate, save
from rlpipe.collect import make_collector
from rlpipe.envs import make_env
from rlpipe.exploration import make_exploration
from rlpipe.models import make_q_network

STEPS_PER_CALL = 128
COLLECTORS: list[Collector] = []  # shut down at the end: a ParallelEnv left running keeps the process from exiting


def plain_ale_loop(env_id: str, num_envs: int):
    """Random actions through bare gymnasium ALE envs: the cost of emulation alone."""
    kwargs = {"frameskip": 4, "repeat_action_probability": 0.0}
    env = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="sync", **kwargs)  # autoresets
    env.reset(seed=0)
    env.action_space.seed(0)

    def collect() -> None:
        for _ in range(STEPS_PER_CALL // num_envs):
            env.step(env.action_space.sample())

    return collect


def plain_ale_with_network(env_id: str, num_envs: int, net: torch.nn.Module, frame_stack: int, screen: int):
    """The plain loop plus hand-written preprocessing and the same network: the work rlpipe's policy adds."""
    kwargs = {"frameskip": 4, "repeat_action_probability": 0.0}
    env = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="sync", **kwargs)
    weights = torch.tensor([0.2989, 0.587, 0.114]).view(1, 3, 1, 1)

    def preprocess(pixels: np.ndarray) -> torch.Tensor:  # [N, 210, 160, 3] -> [N, 84, 84] uint8
        image = torch.from_numpy(pixels).permute(0, 3, 1, 2)
        image = F.interpolate(image, size=(screen, screen), mode="bilinear", antialias=True, align_corners=False)
        return (image.float() * weights).sum(1).to(torch.uint8)

    obs, _ = env.reset(seed=0)
    frames = deque([preprocess(obs)] * frame_stack, maxlen=frame_stack)

    @torch.no_grad()
    def collect() -> None:
        for _ in range(STEPS_PER_CALL // num_envs):
            q = net(torch.stack(list(frames), dim=1))  # [N, frame_stack, 84, 84] uint8 -> [N, n_actions]
            action = torch.distributions.Categorical(logits=q).sample().numpy()
            obs, *_ = env.step(action)
            frames.append(preprocess(obs))

    return collect


def rlpipe_collector(cfg, num_envs: int, *, random_actions: bool):
    env = make_env(cfg.env, num_envs=num_envs, seed=0, parallel=True)  # (env.parallel: ParallelEnv)
    device = torch.device("cpu")
    q_network = make_q_network(cfg.model, env, device)
    if random_actions:
        policy = RandomPolicy(env.full_action_spec)
    else:
        exploration = make_exploration(cfg.exploration, env.full_action_spec_unbatched["action"], device)
        policy = TensorDictSequential(q_network, exploration.module)
    collector = make_collector(env, policy, steps_per_collect=STEPS_PER_CALL, device=device)
    COLLECTORS.append(collector)
    batches = iter(collector)
    return (lambda: next(batches)), q_network


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-envs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=1024, help="timed agent steps per contender per round")
    args = parser.parse_args()
    calls = max(1, args.steps // STEPS_PER_CALL)

    contenders = {}
    for num_envs in args.num_envs:
        cfg = compose_config(["env=breakout", f"env.num_envs={num_envs}", f"train.steps_per_collect={STEPS_PER_CALL}"])
        random_collect, q_network = rlpipe_collector(cfg, num_envs, random_actions=True)
        policy_collect, _ = rlpipe_collector(cfg, num_envs, random_actions=False)
        plain = plain_ale_loop(cfg.env.id, num_envs)
        plain_net = plain_ale_with_network(
            cfg.env.id, num_envs, q_network.module[0].module, cfg.env.frame_stack, cfg.env.screen_size
        )
        parallel = []
        if num_envs > 1:
            cfg_parallel = compose_config(
                ["env=breakout", f"env.num_envs={num_envs}", "env.backend=gym", "env.maxpool=false", "env.parallel=true",
                 f"train.steps_per_collect={STEPS_PER_CALL}"]
            )
            parallel = [("rlpipe, random actions, ParallelEnv", rlpipe_collector(cfg_parallel, num_envs, random_actions=True)[0])]
        for name, fn in [
            ("plain ALE loop", plain),
            ("plain ALE + preprocessing + Nature CNN", plain_net),
            ("rlpipe, random actions", random_collect),
            ("rlpipe, Nature CNN + Boltzmann", policy_collect),
            *parallel,
        ]:
            contenders[f"{name}, {num_envs} env"] = lambda fn=fn: STEPS_PER_CALL * rate(fn, calls=calls, warmup=1)

    results = interleaved_medians(contenders, rounds=args.rounds)
    print(f"\nAtari collection, Breakout, frame-skip 4, sticky actions 0.0; median agent steps/s over {args.rounds} "
          f"interleaved rounds, and medians of per-round ratios ({torch.get_num_threads()} torch threads)")
    print("| loop | envs | steps/s | vs plain ALE loop | vs plain + same work |\n| --- | ---: | ---: | ---: | ---: |")
    for num_envs in args.num_envs:
        plain = results[f"plain ALE loop, {num_envs} env"]["rates"]
        plain_net = results[f"plain ALE + preprocessing + Nature CNN, {num_envs} env"]["rates"]
        for name, same_work in [
            ("plain ALE loop", None),
            ("plain ALE + preprocessing + Nature CNN", None),
            ("rlpipe, random actions", None),
            ("rlpipe, Nature CNN + Boltzmann", plain_net),
            *([("rlpipe, random actions, ParallelEnv", None)] if num_envs > 1 else []),
        ]:
            stats = results[f"{name}, {num_envs} env"]
            stats["ratio_vs_plain"] = paired_ratio(stats["rates"], plain)
            same = ""
            if same_work is not None:
                stats["ratio_vs_plain_same_work"] = paired_ratio(stats["rates"], same_work)
                same = f"{stats['ratio_vs_plain_same_work']:.2f}"
            print(f"| {name} | {num_envs} | {stats['median']:.0f} | {stats['ratio_vs_plain']:.2f} | {same} |")
    for collector in COLLECTORS:
        collector.shutdown()
    save("atari_collection_breakout", {"env": "ALE/Breakout-v5", "frame_skip": 4, "results": results})


if __name__ == "__main__":
    main()
