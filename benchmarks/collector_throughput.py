"""Collection throughput: environment steps per second of rlpipe's collector versus a plain gymnasium loop.

Both sides act with the same Q-network (the env preset's MLP) through epsilon-greedy at epsilon 0.05, one
forward pass per step, on the CPU, in the same process, interleaved over several rounds (medians reported):

- **plain gymnasium**: ``env.step`` in a Python loop; observation -> tensor -> network -> argmax (a gymnasium
  ``SyncVectorEnv`` and batched forward passes for several environments);
- **rlpipe**: TorchRL's ``Collector`` as ``rlpipe/train.py`` builds it (``rlpipe.collect.make_collector``) (``GymEnv`` + ``StepCounter`` +
  ``RewardSum``, policy ``TensorDictSequential(QValueActor, EGreedyModule)``, ``steps_per_collect`` steps per batch);
  "+ replay" also stores each batch in the prioritized buffer as the training loop does.

    python benchmarks/collector_throughput.py [--env cartpole] [--num-envs 1 4 8] [--rounds 5] [--steps 4096]
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np
import torch
from tensordict.nn import TensorDictSequential

from bench_common import compose_config, interleaved_medians, paired_ratio, rate, save
from rlpipe.collect import make_collector
from rlpipe.envs import make_env
from rlpipe.exploration import make_exploration
from rlpipe.models import make_q_network
from rlpipe.replay import make_replay_buffer

EPSILON = 0.05


def plain_loop(env_id: str, num_envs: int, net: torch.nn.Module, n_actions: int, steps_per_call: int):
    env = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="sync") if num_envs > 1 else gym.make(env_id)
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    state = {"obs": obs}

    @torch.no_grad()
    def collect() -> None:
        for _ in range(steps_per_call // num_envs):
            q = net(torch.as_tensor(state["obs"], dtype=torch.float32))
            action = q.argmax(-1).numpy()
            explore = rng.random(action.shape) < EPSILON
            action = np.where(explore, rng.integers(0, n_actions, action.shape), action)
            obs, _, terminated, truncated, _ = env.step(action if num_envs > 1 else int(action))
            if num_envs == 1 and (terminated or truncated):
                obs, _ = env.reset()
            state["obs"] = obs

    return collect


def rlpipe_collector(cfg, num_envs: int, *, with_replay: bool):
    env = make_env(cfg.env, num_envs=num_envs, seed=0)
    device = torch.device("cpu")
    q_network = make_q_network(cfg.model, env, device)
    exploration = make_exploration(cfg.exploration, env.full_action_spec_unbatched["action"], device)
    exploration.module.eps.fill_(EPSILON)
    collector = make_collector(env, TensorDictSequential(q_network, exploration.module),
                               steps_per_collect=cfg.train.steps_per_collect, device=device)
    batches = iter(collector)
    replay = make_replay_buffer(cfg.buffer, cfg.env, env) if with_replay else None

    def collect() -> None:
        batch = next(batches)
        if replay is not None:
            replay.extend(batch)  # as rlpipe/train.py: the buffer keeps the transition keys

    return collect, q_network


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="cartpole")
    parser.add_argument("--num-envs", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=4096, help="timed steps per contender per round")
    args = parser.parse_args()

    contenders = {}
    for num_envs in args.num_envs:
        cfg = compose_config([f"env={args.env}", f"env.num_envs={num_envs}", "train.steps_per_collect=256"])
        collect, q_network = rlpipe_collector(cfg, num_envs, with_replay=False)
        collect_and_store, _ = rlpipe_collector(cfg, num_envs, with_replay=True)
        n_actions = q_network.spec["action"].space.n
        plain = plain_loop(cfg.env.id, num_envs, q_network.module[0].module, n_actions, steps_per_call=256)
        calls = max(1, args.steps // 256)
        contenders[f"plain gymnasium, {num_envs} env"] = lambda plain=plain, calls=calls: 256 * rate(plain, calls=calls, warmup=1)
        contenders[f"rlpipe Collector, {num_envs} env"] = lambda c=collect, calls=calls: 256 * rate(c, calls=calls, warmup=1)
        contenders[f"rlpipe Collector + replay, {num_envs} env"] = lambda c=collect_and_store, calls=calls: 256 * rate(c, calls=calls, warmup=1)

    results = interleaved_medians(contenders, rounds=args.rounds)
    print(f"\nCollection throughput, {args.env}, epsilon-greedy ({EPSILON}) with the preset's MLP; median env steps/s "
          f"over {args.rounds} interleaved rounds, and the median of the per-round ratios")
    print("| collector | envs | steps/s | vs plain gymnasium |\n| --- | ---: | ---: | ---: |")
    for num_envs in args.num_envs:
        baseline = results[f"plain gymnasium, {num_envs} env"]["rates"]
        for kind in ("plain gymnasium", "rlpipe Collector", "rlpipe Collector + replay"):
            stats = results[f"{kind}, {num_envs} env"]
            stats["ratio"] = paired_ratio(stats["rates"], baseline)
            print(f"| {kind} | {num_envs} | {stats['median']:.0f} | {stats['ratio']:.2f} |")
    save(f"collector_throughput_{args.env}", {"env": args.env, "epsilon": EPSILON, "results": results})


if __name__ == "__main__":
    main()
