"""Environment factories.

``make_env(env_cfg, ...)`` dispatches on ``env_cfg.kind`` to the factory of one environment family. Every
environment it returns is a TorchRL env whose data carry these keys:

- ``"observation"``: what the Q-network reads;
- ``("next", "episode_reward")``: the return of the episode so far (``RewardSum``);
- ``("next", "step_count")``: agent steps in the episode so far (``StepCounter``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from omegaconf import DictConfig
from torchrl.envs import EnvBase

from rlpipe.envs.classic import make_classic_env

OBSERVATION_KEY = "observation"
EPISODE_RETURN_KEY = "episode_reward"
EPISODE_LENGTH_KEY = "step_count"

_FACTORIES: dict[str, Callable[..., EnvBase]] = {
    "classic": make_classic_env,
}


def make_env(env_cfg: DictConfig, *, num_envs: int = 1, seed: int | None = None, device: torch.device | str = "cpu") -> EnvBase:
    """Builds the environment named by ``env_cfg``.

    Args:
        env_cfg: the ``env`` config section.
        num_envs: environments stepped side by side. 1 gives an env of batch size ``[]``; more give a vectorized
            env of batch size ``[num_envs]``.
        seed: seeds the environment(s); sub-environment ``i`` of a vectorized env gets ``seed + i``.
        device: where the env's tensors live.
    """
    return _FACTORIES[env_cfg.kind](env_cfg, num_envs=num_envs, seed=seed, device=device)


__all__ = ["EPISODE_LENGTH_KEY", "EPISODE_RETURN_KEY", "OBSERVATION_KEY", "make_env"]
