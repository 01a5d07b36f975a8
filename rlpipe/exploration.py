"""Exploration: a TensorDictModule placed after the Q-network, and the schedule that drives it.

The collector's policy is ``TensorDictSequential(q_network, exploration_module)``; evaluation uses the Q-network
alone (greedy). Every schedule is a pure function of the agent-step counter, so a resumed run continues exactly
where the checkpoint stopped without any state of its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from omegaconf import DictConfig
from tensordict.nn import TensorDictModuleBase
from torchrl.data import TensorSpec
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


@dataclass
class Exploration:
    """The exploration module of the collector's policy and the schedule that sets its parameter."""

    module: TensorDictModuleBase
    schedule: EpsilonSchedule

    def update(self, step: int) -> float:
        """Sets the module's parameter for agent step ``step`` and returns it (for logging)."""
        value = self.schedule(step)
        self.module.eps.fill_(value)
        return value

    name: str = "epsilon"  # the scheduled parameter's metric name, train/<name>
    label: str = "eps"  # its progress-bar label


def make_exploration(exploration_cfg: DictConfig, action_spec: TensorSpec, device: torch.device) -> Exploration:
    """Epsilon-greedy exploration (Mnih et al. 2015, https://www.nature.com/articles/nature14236).

    Args:
        exploration_cfg: the ``exploration`` config section.
        action_spec: the unbatched action spec; random actions are drawn from it.
        device: where the module's buffers live (the policy's device).
    """
    schedule = EpsilonSchedule(
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
        device=device,
    )
    exploration = Exploration(module=module, schedule=schedule)
    exploration.update(0)
    return exploration
