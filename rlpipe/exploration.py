"""Exploration: a TensorDictModule placed after the Q-network, and the schedule that drives it.

The collector's policy is ``TensorDictSequential(q_network, exploration_module)``; evaluation uses the Q-network
alone (greedy). Every schedule is a pure function of the run's counters (agent steps, episodes), so a resumed run
continues exactly where the checkpoint stopped without any state of its own.

Shape legend: ``B`` batch, ``A`` actions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from omegaconf import DictConfig
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torchrl.data import TensorSpec
from torchrl.envs.utils import ExplorationType, exploration_type
from torchrl.modules import EGreedyModule


@dataclass(frozen=True)
class EpsilonSchedule:
    """Epsilon as a function of agent steps; both shapes start at ``eps_init`` and reach ``eps_final`` at
    ``annealing_steps``.

    - ``linear``: ``eps_init + (eps_final - eps_init) * step / annealing_steps``.
    - ``exponential``: ``eps_init * r**step`` with ``r = (eps_final / eps_init) ** (1 / annealing_steps)``.

    TorchRL's ``EGreedyModule.step()`` anneals linearly by counting its own calls; computing epsilon from the
    step counter adds the exponential shape and makes resuming exact.
    """

    eps_init: float
    eps_final: float
    annealing_steps: int
    annealing: Literal["linear", "exponential"]

    def __call__(self, step: int) -> float:
        progress = min(step / self.annealing_steps, 1.0)
        if self.annealing == "linear":
            return self.eps_init + (self.eps_final - self.eps_init) * progress
        return self.eps_init * math.exp(progress * math.log(self.eps_final / self.eps_init))


@dataclass(frozen=True)
class TemperatureSchedule:
    """Boltzmann temperature as a function of finished episodes: ``T <- T * decay ** (1 / slowdown)`` after each
    episode, from ``temperature_init`` down to the floor ``temperature_final``."""

    temperature_init: float
    temperature_final: float
    decay_per_episode: float
    decay_slowdown: float

    def __call__(self, episodes: int) -> float:
        decayed = self.temperature_init * self.decay_per_episode ** (episodes / self.decay_slowdown)
        return max(decayed, self.temperature_final)


class BoltzmannModule(TensorDictModuleBase):
    """Boltzmann (softmax) exploration: samples ``action ~ softmax(action_value / temperature)``.

    Outside ``ExplorationType.RANDOM`` (evaluation runs under ``DETERMINISTIC``) it acts greedily. When the
    tensordict carries an action mask (``mask_key``, True = allowed), masked actions get probability 0.
    Hand-written: TorchRL has no Boltzmann exploration module.

    Args:
        temperature: the initial temperature (the schedule sets it as training goes).
        action_value_key: where the Q-values ``[B, A]`` are read.
        action_key: where the action ``[B]`` is written.
        mask_key: where an optional action mask ``[B, A]`` is read.
    """

    def __init__(
        self,
        *,
        temperature: float,
        action_value_key: str = "action_value",
        action_key: str = "action",
        mask_key: str = "action_mask",
    ) -> None:
        super().__init__()
        self.in_keys = [action_value_key]
        self.out_keys = [action_key]
        self.action_value_key, self.action_key, self.mask_key = action_value_key, action_key, mask_key
        self.register_buffer("temperature", torch.tensor(float(temperature)))

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        q_values = tensordict.get(self.action_value_key)  # [B, A]
        mask = tensordict.get(self.mask_key, None)  # [B, A] bool or None
        if mask is not None:
            q_values = q_values.masked_fill(~mask, float("-inf"))
        if exploration_type() in (ExplorationType.RANDOM, None):
            probabilities = torch.softmax(q_values / self.temperature, dim=-1)
            action = torch.multinomial(probabilities.reshape(-1, q_values.shape[-1]), 1).reshape(q_values.shape[:-1])
        else:
            action = q_values.argmax(-1)
        return tensordict.set(self.action_key, action)


@dataclass
class Exploration:
    """The exploration module of the collector's policy and the schedule that sets its parameter."""

    module: TensorDictModuleBase
    schedule: EpsilonSchedule | TemperatureSchedule
    name: str  # the scheduled parameter's metric name, train/<name>

    def update(self, *, step: int, episodes: int) -> float:
        """Sets the module's parameter for the run's counters and returns it (for logging)."""
        if isinstance(self.schedule, EpsilonSchedule):
            value = self.schedule(step)
            self.module.eps.fill_(value)
        else:
            value = self.schedule(episodes)
            self.module.temperature.fill_(value)
        return value


def make_exploration(
    exploration_cfg: DictConfig, action_spec: TensorSpec, device: torch.device, *, action_mask_key: str | None = None
) -> Exploration:
    """Epsilon-greedy (Mnih et al. 2015, https://www.nature.com/articles/nature14236) or Boltzmann exploration.

    With ``kind=rnd`` the module is epsilon-greedy on the exploration agent's Q-values (``rlpipe.rnd``: the
    intrinsic reward shapes those Q-values; epsilon only adds a little noise).

    Args:
        exploration_cfg: the ``exploration`` config section; ``kind`` is ``egreedy``, ``temperature`` or ``rnd``.
        action_spec: the unbatched action spec; epsilon-greedy draws random actions from it.
        device: where the module's buffers live (the policy's device).
        action_mask_key: the env's action-mask key, if any: random and Boltzmann actions are drawn among the
            valid actions only.
    """
    if exploration_cfg.kind == "temperature":
        temperature = TemperatureSchedule(
            temperature_init=exploration_cfg.temperature_init,
            temperature_final=exploration_cfg.temperature_final,
            decay_per_episode=exploration_cfg.decay_per_episode,
            decay_slowdown=exploration_cfg.decay_slowdown,
        )
        module: TensorDictModuleBase = BoltzmannModule(
            temperature=temperature(0), **({"mask_key": action_mask_key} if action_mask_key else {})
        ).to(device)
        exploration = Exploration(module=module, schedule=temperature, name="temperature")
    else:
        epsilon = EpsilonSchedule(
            eps_init=exploration_cfg.eps_init,
            eps_final=exploration_cfg.eps_final,
            annealing_steps=exploration_cfg.annealing_steps,
            annealing=exploration_cfg.annealing,
        )
        module = EGreedyModule(
            action_spec,
            eps_init=float(exploration_cfg.eps_init),
            eps_end=float(exploration_cfg.eps_final),
            annealing_num_steps=exploration_cfg.annealing_steps,
            action_mask_key=action_mask_key,
            device=device,
        )
        exploration = Exploration(module=module, schedule=epsilon, name="epsilon")
    exploration.update(step=0, episodes=0)
    return exploration
