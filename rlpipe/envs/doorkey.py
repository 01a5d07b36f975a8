"""MiniGrid DoorKey as TorchRL environments: driven by skills (options) with an action mask, or by primitive actions.

The gymnasium environments live in :mod:`rlpipe.envs.doorkey_skills`; this module wraps them for the pipeline:

- ``GymEnv("rlpipe/DoorKeySkills-v0" | "rlpipe/DoorKeyPrimitive-v0", size=...)``, with an info reader that
  turns the per-decision ``primitive_steps``, ``skill_success`` and ``goal_reached`` into keys of ``"next"``;
- several environments are a ``SerialEnv`` (they are cheap to step; processes would cost more than they save);
- TorchRL's ``ActionMask`` (skills only) updates the action spec's mask from ``"action_mask"`` after every step
  and reset, so ``env.rand_action()`` (the random prefill) draws valid skills only; exploration and the Q-network
  read the same mask;
- ``StepCounter`` (decisions per episode; truncation after ``env.max_decisions``), ``RewardSum`` into ``"episode_reward"``, and :class:`EpisodeTotal` of
  ``primitive_steps`` into ``"episode_primitive_steps"`` (primitive actions per episode).
"""

from __future__ import annotations

import functools

import torch
from omegaconf import DictConfig
from tensordict import TensorDictBase
from torchrl.data import Composite
from torchrl.envs import (
    ActionMask,
    Compose,
    EnvBase,
    GymEnv,
    RewardSum,
    SerialEnv,
    StepCounter,
    Transform,
    TransformedEnv,
)
from torchrl.envs.gym_like import default_info_dict_reader

from rlpipe.envs.doorkey_skills import PRIMITIVE_ENV_ID, SKILL_ENV_ID
from rlpipe.keys import ACTION_MASK_KEY, EPISODE_PRIMITIVE_STEPS_KEY, GOAL_REACHED_KEY

PRIMITIVE_STEPS_KEY = "primitive_steps"  # primitive actions spent by one decision
SKILL_SUCCESS_KEY = "skill_success"  # the decision's skill reached its effect


def make_doorkey_env(env_cfg: DictConfig, *, num_envs: int, seed: int | None, device: torch.device | str) -> EnvBase:
    """DoorKey-``env.size`` with skills (masked) or primitive actions, as ``env.id`` says; batch ``[]`` or ``[num_envs]``."""
    make_one = functools.partial(_make_one_doorkey_env, env_cfg, device=device)
    base = make_one() if num_envs == 1 else SerialEnv(num_envs, make_one)
    transforms = [BatchedActionMask(mask_key=ACTION_MASK_KEY)] if env_cfg.id == SKILL_ENV_ID else []
    transforms += [
        StepCounter(max_steps=env_cfg.max_decisions),  # truncates an episode after env.max_decisions decisions
        RewardSum(),
        EpisodeTotal(PRIMITIVE_STEPS_KEY, EPISODE_PRIMITIVE_STEPS_KEY),
    ]
    env = TransformedEnv(base, Compose(*transforms))
    if seed is not None:
        env.set_seed(seed)
    return env


class BatchedActionMask(ActionMask):
    """TorchRL's ``ActionMask``, correct under partial resets of a batched env.

    ``ActionMask`` sets the action spec's mask from the reset data after every reset. When only some
    sub-environments of a ``SerialEnv`` reset, the reset data of the others hold their *reset-time* mask, not
    their current one (measured: about 1 in 20 prefill actions of a 2-env DoorKey collector broke the mask), and
    the data passed to ``_reset`` carry only ``"_reset"``. So this keeps the latest mask of every sub-environment
    and restores it for the rows that did not reset. Subclassed because only this bookkeeping differs.
    """

    def __init__(self, **kwargs: str) -> None:
        super().__init__(**kwargs)
        self._latest_mask: torch.Tensor | None = None  # [*B, A] mask of each sub-env's current state

    def _call(self, next_tensordict: TensorDictBase) -> TensorDictBase:
        self._latest_mask = next_tensordict.get(self.in_keys[1]).clone()
        return super()._call(next_tensordict)

    def _reset(self, tensordict: TensorDictBase, tensordict_reset: TensorDictBase) -> TensorDictBase:
        reset = tensordict.get("_reset", None) if tensordict is not None else None
        if reset is not None and self._latest_mask is not None:
            fresh = tensordict_reset.get(self.in_keys[1])  # [*B, A]
            merged = torch.where(reset.reshape(*fresh.shape[:-1], 1), fresh, self._latest_mask)
            tensordict_reset.set(self.in_keys[1], merged)
        return super()._reset(tensordict, tensordict_reset)


class EpisodeTotal(Transform):
    """The running total over the episode of a per-step entry of ``"next"``, zeroed at reset.

    Hand-written because TorchRL's ``RewardSum`` accepts only keys of the reward spec, and ``primitive_steps``
    is an observation (read from ``info``).

    Args:
        in_key: the per-step entry (shape ``[*B]`` or ``[*B, 1]``).
        out_key: where the total is written (same shape and dtype).
    """

    def __init__(self, in_key: str, out_key: str) -> None:
        super().__init__(in_keys=[in_key], out_keys=[out_key])

    def _reset(self, tensordict: TensorDictBase, tensordict_reset: TensorDictBase) -> TensorDictBase:
        (in_key,), (out_key,) = self.in_keys, self.out_keys
        total = torch.zeros_like(tensordict_reset.get(in_key))
        reset = tensordict.get("_reset", None) if tensordict is not None else None
        previous = tensordict.get(out_key, None) if tensordict is not None else None
        if reset is not None and previous is not None:  # partial reset: keep the running sub-envs' totals
            total = torch.where(reset.reshape(total.shape), total, previous)
        return tensordict_reset.set(out_key, total)

    def _step(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase) -> TensorDictBase:
        (in_key,), (out_key,) = self.in_keys, self.out_keys
        return next_tensordict.set(out_key, tensordict.get(out_key) + next_tensordict.get(in_key))

    def transform_observation_spec(self, observation_spec: Composite) -> Composite:
        observation_spec[self.out_keys[0]] = observation_spec[self.in_keys[0]].clone()
        return observation_spec


def _make_one_doorkey_env(env_cfg: DictConfig, *, device: torch.device | str = "cpu") -> GymEnv:
    kwargs = {"size": env_cfg.size}
    if env_cfg.id == PRIMITIVE_ENV_ID:
        kwargs["view"] = env_cfg.get("view", "full")
    if env_cfg.id == SKILL_ENV_ID:
        kwargs |= {
            "max_skill_horizon": env_cfg.max_skill_horizon,
            "option_reward": env_cfg.option_reward,
            "decision_penalty": env_cfg.decision_penalty,
        }
    env = GymEnv(env_cfg.id, categorical_action_encoding=True, device=device, **kwargs)
    return env.set_info_dict_reader(default_info_dict_reader([PRIMITIVE_STEPS_KEY, SKILL_SUCCESS_KEY, GOAL_REACHED_KEY]))
