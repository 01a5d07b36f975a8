"""Environment factories.

``make_env(env_cfg, ...)`` dispatches on ``env_cfg.kind`` to the factory of one environment family. Every
environment it returns is a TorchRL env whose data carry the keys of :mod:`rlpipe.keys`: ``"observation"`` (what
the Q-network reads), ``("next", "episode_reward")`` (the training return of the episode so far) and
``("next", "step_count")`` (agent steps in the episode so far); Atari environments add ``"episode_score"`` (the
unshaped game score) and ``"end-of-life"``; DoorKey adds ``"action_mask"`` (skills), ``"goal_reached"`` and
``"episode_primitive_steps"``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from omegaconf import DictConfig, OmegaConf
from torchrl.envs import EnvBase

from rlpipe.envs.atari import make_atari_env
from rlpipe.envs.classic import make_classic_env
from rlpipe.envs.doorkey import make_doorkey_env
from rlpipe.keys import (
    ACTION_MASK_KEY,
    END_OF_LIFE_KEY,
    EPISODE_PRIMITIVE_STEPS_KEY,
    EPISODE_RETURN_KEY,
    EPISODE_SCORE_KEY,
    GOAL_REACHED_KEY,
    MASK_TRANSITION_KEYS,
    TRANSITION_KEYS,
)

_FACTORIES: dict[str, Callable[..., EnvBase]] = {
    "classic": make_classic_env,
    "atari": make_atari_env,
    "doorkey": make_doorkey_env,
}


def make_env(
    env_cfg: DictConfig, *, num_envs: int = 1, seed: int | None = None, device: torch.device | str = "cpu", parallel: bool = False
) -> EnvBase:
    """Builds the environment named by ``env_cfg``.

    Args:
        env_cfg: the ``env`` config section.
        num_envs: environments stepped side by side. 1 gives an env of batch size ``[]``; more give a vectorized
            env of batch size ``[num_envs]``.
        seed: seeds the environment(s); sub-environment ``i`` of a vectorized env gets ``seed + i``.
        device: where the env's tensors live.
        parallel: honour ``env.parallel`` (one worker process per env): the training env does; evaluation and
            recording envs (one per evaluation episode) step in this process whatever it says.
    """
    if not parallel and env_cfg.get("parallel", False):
        env_cfg = OmegaConf.merge(env_cfg, {"parallel": False})
    return _FACTORIES[env_cfg.kind](env_cfg, num_envs=num_envs, seed=seed, device=device)


def terminal_key(env_cfg: DictConfig) -> tuple[str, str]:
    """The collected key the learner treats as terminal: a lost life with episodic life, else ``terminated``."""
    return ("next", END_OF_LIFE_KEY) if env_cfg.get("episodic_life", False) else ("next", "terminated")


def score_key(env: EnvBase) -> str:
    """The key holding the episode's game score: unshaped when the env shapes its reward, else the return."""
    return EPISODE_SCORE_KEY if EPISODE_SCORE_KEY in env.observation_spec.keys() else EPISODE_RETURN_KEY


def action_mask_key(env: EnvBase) -> str | None:
    """The observation key of the env's action mask (``[A]`` bool, True = valid), or ``None`` if it has none."""
    return ACTION_MASK_KEY if ACTION_MASK_KEY in env.observation_spec.keys() else None


def transition_keys(env: EnvBase) -> tuple:
    """What a stored transition of ``env`` holds: :data:`rlpipe.keys.TRANSITION_KEYS`, and the action masks of the
    state and the next state where the env masks actions (the double-DQN target's argmax reads the next one)."""
    return TRANSITION_KEYS + (MASK_TRANSITION_KEYS if action_mask_key(env) else ())


def episode_stats(env: EnvBase) -> dict[str, tuple[str, str]]:
    """Per-episode statistics the env reports beyond return and length: metric name -> key read at the episode's
    last step (``success``: the episode ended on its goal; ``primitive_steps``: primitive actions it took)."""
    keys = env.observation_spec.keys()
    candidates = {"success": GOAL_REACHED_KEY, "primitive_steps": EPISODE_PRIMITIVE_STEPS_KEY}
    return {name: ("next", key) for name, key in candidates.items() if key in keys}
