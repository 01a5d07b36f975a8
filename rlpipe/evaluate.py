"""Evaluation: greedy, or at a small epsilon under a published protocol (Atari).

``evaluate_policy`` is what training calls; ``python -m rlpipe.evaluate checkpoint=PATH eval.episodes=30`` loads a
checkpoint, rebuilds its environment and Q-network from the configuration stored in it, plays at the run's own
``eval.epsilon`` (unless given) and prints one JSON line, with the protocol it played under::

    {"checkpoint": ..., "env": "ALE/Breakout-v5", "step": 250000, "eval/episodes": 30, "eval/epsilon": 0.05,
     "eval/protocol": {"name": "noop_starts", ...}, "eval/return_mean": 21.4, ...}

Every quantity has one name, the logger's (``eval/return_mean``), in the progress bar, the logs, ``summary.json``,
``evaluations.jsonl`` and this output.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from tensordict.nn import TensorDictModuleBase
from torchrl.envs import EnvBase
from torchrl.envs.utils import ExplorationType, set_exploration_type

from rlpipe.agent import Agent
from rlpipe.checkpoint import CheckpointError
from rlpipe.config import ConfigError
from rlpipe.envs import episode_stats, score_key
from rlpipe.envs.atari import protocol as atari_protocol
from rlpipe.keys import EPISODE_LENGTH_KEY
from rlpipe.runtime import check_command_line, pick_device, quiet_libraries, seed_everything


@dataclass(frozen=True)
class EvalResult:
    """Returns and lengths of the evaluation episodes, and the env's own statistics of each."""

    returns: torch.Tensor  # [episodes] game score (the unshaped return)
    lengths: torch.Tensor  # [episodes] agent steps (decisions, for skills)
    extras: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> [episodes] (rlpipe.envs.episode_stats)

    # Means in float64: 18 successes of 20 in float32 is 0.89999998, below a 0.9 threshold (env.solved_success_rate).

    @property
    def return_mean(self) -> float:
        return self.returns.double().mean().item()

    @property
    def return_std(self) -> float:
        return self.returns.double().std(unbiased=False).item()  # population std: defined for one episode too

    @property
    def length_mean(self) -> float:
        """Mean agent steps per episode (decisions, for skills)."""
        return self.lengths.double().mean().item()

    def extra_means(self) -> dict[str, float]:
        """Episode means of the env's statistics: ``success_rate``, ``primitive_steps_mean``, ..."""
        return {("success_rate" if name == "success" else f"{name}_mean"): v.double().mean().item() for name, v in self.extras.items()}

    def as_metrics(self) -> dict[str, float]:
        return {
            "eval/return_mean": self.return_mean,
            "eval/return_std": self.return_std,
            "eval/length_mean": self.length_mean,
            **{f"eval/{name}": value for name, value in self.extra_means().items()},
        }


def evaluation_protocol(env_cfg: DictConfig, *, epsilon: float, episodes: int) -> dict[str, Any]:
    """How an evaluation's games are played, as every summary, evaluations line and results file records it.

    ``name``: for Atari games ``noop_starts`` (no sticky actions, games started by up to ``noop_max`` NOOPs: the
    Nature DQN / CleanRL protocol at epsilon 0.05), ``sticky_actions`` (Machado et al. 2018) or ``fixed_start``
    (neither: with epsilon 0 every game of a deterministic Atari game is the same); for other tasks
    ``seeded_resets`` (each episode starts from its env's own seeded reset). Then the probability of a random action,
    the episodes per evaluation and, for Atari games, how the game is played (:func:`rlpipe.envs.atari.protocol`).
    """
    if env_cfg.kind != "atari":
        return {"name": "seeded_resets", "epsilon": epsilon, "episodes": episodes}
    name = ("sticky_actions" if env_cfg.repeat_action_probability > 0 else "noop_starts" if env_cfg.noop_max > 0 else "fixed_start")
    return {"name": name, "epsilon": epsilon, "episodes": episodes, **atari_protocol(env_cfg)}


@torch.no_grad()
def evaluate_policy(
    env: EnvBase, actor: TensorDictModuleBase, *, device: torch.device, epsilon: float = 0.0, max_steps: int = 1_000_000
) -> EvalResult:
    """Plays one episode in each sub-environment of ``env`` with ``actor`` (greedy) and returns their game scores.

    Every sub-environment contributes exactly its first episode. Taking the first N episodes to *finish* from a
    vectorized env instead would over-sample short episodes.

    Args:
        env: the evaluation env; its batch size is the number of episodes (``[]`` counts as one).
        actor: maps observations to actions; run under ``ExplorationType.DETERMINISTIC``.
        device: the actor's device; observations are moved there and actions back to the env's device.
        epsilon: the probability of replacing an action by one drawn uniformly from the env's action spec (valid
            actions only where the env masks them). Deterministic games (Breakout without sticky actions) play
            the same episode from every start under a greedy policy; Mnih et al. 2015 and CleanRL evaluate Atari
            agents at epsilon 0.05.
        max_steps: a bound on the batched steps, for environments without a time limit.
    """
    n_episodes = env.batch_size.numel()
    score = score_key(env)  # the game score: unshaped where the env shapes the training reward
    stats = episode_stats(env)
    returns = torch.zeros(n_episodes)
    lengths = torch.zeros(n_episodes, dtype=torch.long)
    extras = {name: torch.zeros(n_episodes) for name in stats}
    finished = torch.zeros(n_episodes, dtype=torch.bool)
    td = env.reset()
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        for _ in range(max_steps):
            # only what the actor reads crosses to its device, and only the action comes back (not the frame stack)
            action = actor(td.select(*actor.in_keys).to(device)).get("action").to(env.device)
            td.set("action", action)
            if epsilon > 0:
                explore = torch.rand(td.get("action").shape, device=env.device) < epsilon
                td.set("action", torch.where(explore, env.full_action_spec["action"].rand(), td.get("action")))
            td, td_next = env.step_and_maybe_reset(td)
            done = td.get(("next", "done")).reshape(n_episodes)
            newly_done = done & ~finished
            if newly_done.any():
                returns[newly_done] = td.get(("next", score)).reshape(n_episodes)[newly_done].float()
                lengths[newly_done] = td.get(("next", EPISODE_LENGTH_KEY)).reshape(n_episodes)[newly_done]
                for name, key in stats.items():
                    extras[name][newly_done] = td.get(key).reshape(n_episodes)[newly_done].float()
                finished |= done
                if finished.all():
                    return EvalResult(returns=returns, lengths=lengths, extras=extras)
            td = td_next
    raise RuntimeError(f"evaluation did not finish {n_episodes} episodes within {max_steps} steps")


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    quiet_libraries()
    if OmegaConf.is_missing(cfg, "checkpoint"):
        raise SystemExit("rlpipe.evaluate: name a checkpoint: python -m rlpipe.evaluate checkpoint=PATH")
    if cfg.eval.episodes < 1:
        raise SystemExit(f"rlpipe.evaluate: invalid configuration: eval.episodes={cfg.eval.episodes} is invalid: expected a number >= 1")
    if cfg.eval.epsilon is not None and not 0.0 <= cfg.eval.epsilon <= 1.0:
        raise SystemExit(f"rlpipe.evaluate: invalid configuration: eval.epsilon={cfg.eval.epsilon} is invalid: expected a number in [0.0, 1.0]")
    try:
        device = pick_device(cfg.device, key="device")
    except ConfigError as err:
        raise SystemExit(f"rlpipe.evaluate: invalid configuration: {err}") from None
    try:
        agent = Agent.load(cfg.checkpoint, device=device, agent=cfg.agent)  # the one way a checkpoint becomes a policy (as recording)
    except CheckpointError as err:
        raise SystemExit(f"rlpipe.evaluate: {err}") from None
    except ValueError as err:
        raise SystemExit(f"rlpipe.evaluate: invalid configuration: {err}") from None
    epsilon = agent.eval_epsilon if cfg.eval.epsilon is None else cfg.eval.epsilon  # the run's protocol by default
    seed_everything(cfg.eval.seed)
    env = agent.make_env(num_envs=cfg.eval.episodes, seed=cfg.eval.seed)
    result = evaluate_policy(env, agent.q_network, device=device, epsilon=epsilon)
    env.close()
    print(
        json.dumps(
            {
                "checkpoint": str(cfg.checkpoint),
                "env": agent.env_cfg.id,
                "agent": cfg.agent,
                "step": agent.checkpoint_step,
                "eval/episodes": cfg.eval.episodes,
                "eval/epsilon": epsilon,
                "eval/protocol": evaluation_protocol(agent.env_cfg, epsilon=epsilon, episodes=cfg.eval.episodes),
                **result.as_metrics(),
                "eval/returns": result.returns.tolist(),
                "eval/lengths": result.lengths.tolist(),
            }
        )
    )


if __name__ == "__main__":
    check_command_line("rlpipe.evaluate", "evaluate", sys.argv[1:], run_dir_key=None)
    main()
