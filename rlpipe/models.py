"""Q-networks, sized from the environment's specs.

Shape legend: ``B`` batch, ``O`` observation features, ``A`` actions, ``C`` input channels (stacked grayscale frames,
or ``3N`` for ``N`` stacked RGB frames), ``H``/``W`` frame size.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn
from torchrl.envs import EnvBase
from torchrl.modules import MLP, ConvNet, QValueActor
from torchrl.modules.models import DuelingCnnDQNet, DuelingMlpDQNet

from rlpipe.envs import action_mask_key
from rlpipe.keys import OBSERVATION_KEY

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
}


def make_q_network(
    model_cfg: DictConfig, env: EnvBase, device: torch.device, *, precision: torch.dtype = torch.float32
) -> QValueActor:
    """A ``QValueActor`` mapping ``observation`` to ``action_value [B, A]`` and the greedy ``action [B]``.

    Args:
        model_cfg: the ``model`` config section; ``kind`` picks :func:`make_mlp` or :func:`make_nature_cnn`.
        env: any env of the task; only its (unbatched) specs are read.
        device: where the parameters live.
        precision: the dtype the network computes in (``rlpipe.runtime.resolve_precision``); with bf16 the
            network runs under autocast and returns fp32 Q-values, so TD targets and the loss stay fp32.
    """
    observation_spec = env.full_observation_spec_unbatched[OBSERVATION_KEY]
    action_spec = env.full_action_spec_unbatched["action"]
    n_actions = action_spec.space.n
    factory = {"mlp": make_mlp, "nature_cnn": make_nature_cnn}[model_cfg.kind]
    net = factory(model_cfg, observation_shape=observation_spec.shape, n_actions=n_actions)
    # Mixed precision needs a body to autocast before the head: the sequential networks (the Nature CNN, the MLP)
    # have one; the dueling heads are single modules and stay fp32.
    if precision != torch.float32 and isinstance(net, nn.Sequential):
        net = AutocastSequential(*net, dtype=precision, device_type=device.type)
    # With an action mask, masked actions get the lowest float as Q-value before the argmax: the greedy action,
    # and the double-DQN target's argmax over next actions (DQNLoss runs this actor on the next state, with the
    # next state's mask), only consider valid actions. The chosen actions' values stay unmasked.
    actor = QValueActor(net, in_keys=[OBSERVATION_KEY], spec=action_spec, action_mask_key=action_mask_key(env)).to(device)

    with torch.no_grad():  # a dummy forward pass confirms the sizes before training starts
        probe = observation_spec.zero().unsqueeze(0).to(device)  # [1, *observation_shape]
        q_values = net(probe)  # [1, A]
    assert q_values.shape == (1, n_actions), f"Q-network output {tuple(q_values.shape)} != (1, {n_actions})"
    return actor


def make_mlp(model_cfg: DictConfig, *, observation_shape: torch.Size, n_actions: int) -> nn.Module:
    """An MLP ``O -> hidden_sizes -> A``; with ``model_cfg.dueling`` the last hidden layer feeds a value and an
    advantage stream, ``Q = V + A - mean(A)`` (Wang et al. 2016, https://arxiv.org/abs/1511.06581)."""
    n_observations = observation_shape[-1]
    hidden = list(model_cfg.hidden_sizes)
    activation = ACTIVATIONS[model_cfg.activation]
    if model_cfg.dueling:
        return DuelingMlpDQNet(
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
    return MLP(in_features=n_observations, out_features=n_actions, num_cells=hidden, activation_class=activation)


class AutocastSequential(nn.Sequential):
    """An ``nn.Sequential`` whose layers but the last compute under ``torch.autocast`` (mixed precision).

    Parameters stay fp32 (Adam updates them in fp32) and keep the names of the plain ``nn.Sequential`` they
    replace, so checkpoints load into either. Autocast runs the convolutions (or hidden layers) in ``dtype``; the
    last layer, the Q-value head (for the Nature CNN its whole MLP), runs in fp32 on fp32 features: bf16 keeps 8
    mantissa bits, so a Q-value near 100 would be rounded to 0.5. The TD target, the Huber loss and its weighted
    reduction are therefore fp32 too.
    """

    def __init__(self, *layers: nn.Module, dtype: torch.dtype, device_type: str) -> None:
        super().__init__(*layers)
        self.dtype, self.device_type = dtype, device_type

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        *body, head = self
        # cache_enabled=False: the cast weights are not kept past this forward (each weight is used once in it, so
        # the cache saves nothing), which a CUDA-graph capture of the update requires.
        with torch.autocast(self.device_type, dtype=self.dtype, cache_enabled=False):
            for layer in body:
                x = layer(x)
        return head(x.float())


class BytesToUnit(nn.Module):
    """uint8 pixels -> float in [0, 1], inside the network: collection and replay keep 1 byte per pixel."""

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixels.float().div_(255.0)


class ColourStackToChannels(nn.Module):
    """``[B, N, H, W, 3]`` stacks of RGB frames (the ALE's layout, which the replay stores) -> ``[B, 3N, H, W]``
    channels for the convolutions, frame-major: channels ``3i, 3i+1, 3i+2`` are frame ``i``'s red, green, blue."""

    def forward(self, stack: torch.Tensor) -> torch.Tensor:
        *batch, n, height, width, colours = stack.shape
        return stack.movedim(-1, -3).reshape(*batch, n * colours, height, width)


def make_nature_cnn(model_cfg: DictConfig, *, observation_shape: torch.Size, n_actions: int) -> nn.Module:
    """The Nature DQN network (Mnih et al. 2015): ``[B, C, H, W]`` uint8 -> 3 conv layers -> ``hidden_size`` -> ``A``.

    Stacks of RGB frames (``[B, N, H, W, 3]``) enter as ``C = 3N`` channels (:class:`ColourStackToChannels`). The
    kernels and strides are the config's at any frame size, so the flattened size of the conv features, which a
    dummy forward pass measures, grows with the frame: 3,136 for 84x84 inputs, 22,528 for the native 210x160 (the
    first linear layer then holds 11.5M of the network's weights). ``model.strides`` or ``env.screen_size`` shrink it.
    With ``model_cfg.dueling`` the head is TorchRL's ``DuelingCnnDQNet`` (value and advantage streams).
    """
    colour = len(observation_shape) == 4  # [N, H, W, 3]
    in_channels = observation_shape[0] * observation_shape[-1] if colour else observation_shape[-3]
    channel_shape = (in_channels, *observation_shape[1:3]) if colour else tuple(observation_shape)  # [C, H, W]
    to_channels = [ColourStackToChannels()] if colour else []
    activation = ACTIVATIONS[model_cfg.activation]
    cnn_kwargs = {
        "in_features": in_channels,
        "num_cells": list(model_cfg.channels),
        "kernel_sizes": list(model_cfg.kernel_sizes),
        "strides": list(model_cfg.strides),
        "activation_class": activation,
    }
    features = ConvNet(**cnn_kwargs)
    with torch.no_grad():
        n_features = features(torch.zeros(1, *channel_shape)).shape[-1]  # [1, F]
    mlp_kwargs = {"in_features": n_features, "num_cells": [model_cfg.hidden_size], "activation_class": activation}
    if model_cfg.dueling:
        head: nn.Module = DuelingCnnDQNet(n_actions, cnn_kwargs=cnn_kwargs, mlp_kwargs=mlp_kwargs)
        return nn.Sequential(*to_channels, BytesToUnit(), head)
    return nn.Sequential(*to_channels, BytesToUnit(), features, MLP(out_features=n_actions, **mlp_kwargs))
