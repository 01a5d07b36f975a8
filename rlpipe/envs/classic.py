"""Classic-control and Box2D tasks (CartPole, LunarLander) as TorchRL environments."""

from __future__ import annotations

import gymnasium as gym
import torch
from omegaconf import DictConfig
from torchrl.data import Categorical
from torchrl.envs import Compose, DoubleToFloat, GymEnv, GymWrapper, RewardSum, StepCounter, TransformedEnv

from rlpipe.config import ConfigError


def make_classic_env(env_cfg: DictConfig, *, num_envs: int, seed: int | None, device: torch.device | str) -> TransformedEnv:
    """A gymnasium task with integer (categorical) actions, episode-return and episode-length tracking.

    One environment is a plain ``GymEnv``. Several are one gymnasium vector env with autoreset disabled: TorchRL
    then resets finished sub-environments itself (partial resets), so the last transition of every episode keeps
    its true next observation. ``SyncVectorEnv`` steps them in turn in this process; with ``env.parallel``,
    ``AsyncVectorEnv`` steps each in a worker process of its own (docs/results/scale-out.md says when that pays).
    """
    try:
        if num_envs == 1:
            base = GymEnv(env_cfg.id, categorical_action_encoding=True, device=device)
        else:
            vector_env = gym.make_vec(
                env_cfg.id,
                num_envs=num_envs,
                vectorization_mode="async" if env_cfg.get("parallel", False) else "sync",
                vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.DISABLED},
            )
            base = GymWrapper(vector_env, categorical_action_encoding=True, device=device)
    except gym.error.Error as err:
        raise ConfigError(f"env.id={env_cfg.id!r} is invalid: {err}") from None
    action_spec = base.full_action_spec_unbatched["action"]
    if type(action_spec) is not Categorical:  # continuous (Bounded) or multi-discrete actions
        base.close()
        kind = "continuous" if action_spec.dtype.is_floating_point else type(action_spec).__name__
        raise ConfigError(f"env.id={env_cfg.id!r} has {kind} actions: DQN needs one discrete action "
                          f"(a gymnasium Discrete space), e.g. CartPole-v1, Acrobot-v1, LunarLander-v3")

    transforms = [StepCounter(), RewardSum()]
    if base.observation_spec["observation"].dtype == torch.float64:
        transforms.insert(0, DoubleToFloat())
    env = TransformedEnv(base, Compose(*transforms))
    if seed is not None:
        env.set_seed(seed)
    return env
