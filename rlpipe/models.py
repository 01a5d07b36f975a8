"""Q-networks, sized from the environment's specs.

Shape legend: ``B`` batch, ``O`` observation features, ``A`` actions.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn
from torchrl.envs import EnvBase
from torchrl.modules import MLP, QValueActor
from torchrl.modules.models import DuelingMlpDQNet

from rlpipe.envs import OBSERVATION_KEY

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
}


def make_q_network(model_cfg: DictConfig, env: EnvBase, device: torch.device) -> QValueActor:
    """A ``QValueActor`` mapping ``observation [B, O]`` to ``action_value [B, A]`` and the greedy ``action [B]``.

    The plain network is an MLP ``O -> hidden_sizes -> A``. With ``model_cfg.dueling`` the last hidden layer
    feeds a value stream and an advantage stream, ``Q = V + A - mean(A)`` (Wang et al. 2016,
    https://arxiv.org/abs/1511.06581), using TorchRL's ``DuelingMlpDQNet``.

    Args:
        model_cfg: the ``model`` config section.
        env: any env of the task; only its (unbatched) specs are read.
        device: where the parameters live.
    """
    observation_spec = env.full_observation_spec_unbatched[OBSERVATION_KEY]
    action_spec = env.full_action_spec_unbatched["action"]
    n_observations = observation_spec.shape[-1]
    n_actions = action_spec.space.n
    hidden = list(model_cfg.hidden_sizes)
    activation = ACTIVATIONS[model_cfg.activation]

    if model_cfg.dueling:
        net: nn.Module = DuelingMlpDQNet(
            n_actions,
            mlp_kwargs_feature={
                "in_features": n_observations,
                "num_cells": hidden[:-1],
                "out_features": hidden[-1],
                "activation_class": activation,
                "activate_last_layer": True,
            },
            mlp_kwargs_output={"in_features": hidden[-1], "depth": 0},
        )
    else:
        net = MLP(in_features=n_observations, out_features=n_actions, num_cells=hidden, activation_class=activation)
    actor = QValueActor(net, in_keys=[OBSERVATION_KEY], spec=action_spec).to(device)

    with torch.no_grad():  # a dummy forward pass confirms the sizes before training starts
        probe = observation_spec.zero().unsqueeze(0).to(device)  # [1, O]
        q_values = net(probe)  # [1, A]
    assert q_values.shape == (1, n_actions), f"Q-network output {tuple(q_values.shape)} != (1, {n_actions})"
    return actor
