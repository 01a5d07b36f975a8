"""Embedding a trained agent: load a checkpoint, then ask for greedy actions.

    from rlpipe.agent import Agent

    agent = Agent.load("outputs/.../checkpoints/best.pt")
    obs, info = env.reset(seed=0)                  # e.g. gymnasium.make("rlpipe/DoorKeySkills-v0")
    action = agent.act(obs["observation"], mask=obs["action_mask"])  # or simply agent.act(obs)

The Q-network is rebuilt from the configuration stored in the checkpoint (its sizes from the task's specs), so
nothing but the checkpoint file is needed.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tensordict import TensorDict
from torchrl.envs import EnvBase
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.modules import QValueActor

from rlpipe.checkpoint import AGENT_FORMAT, CheckpointError, load_checkpoint
from rlpipe.config import ConfigError, validate
from rlpipe.envs import make_env
from rlpipe.keys import ACTION_MASK_KEY, OBSERVATION_KEY
from rlpipe.models import make_q_network
from rlpipe.rnd import EXPLORER_PREFIX

ArrayLike = np.ndarray | torch.Tensor


AGENT_PIECES = {"exploitation": "q_network", "exploration": EXPLORER_PREFIX + "q_network"}  # agent -> its checkpoint entry


class Agent:
    """A trained Q-network acting greedily, with an optional action mask.

    Args:
        q_network: the ``QValueActor`` (with ``action_mask_key`` set if the task masks actions).
        observation_shape: the shape ``O`` of one observation.
        n_actions: the number of actions ``A``.
        device: where the network lives.
    """

    def __init__(self, q_network: QValueActor, *, observation_shape: torch.Size, n_actions: int, device: torch.device) -> None:
        self.q_network = q_network  # (its train/eval mode is the caller's: a training run's network acts here too)
        self.observation_shape = torch.Size(observation_shape)
        self.n_actions = n_actions
        self.reads_mask = ACTION_MASK_KEY in q_network.in_keys
        self.device = device
        self.env_cfg: DictConfig | None = None  # set by load(): the task's env section, for make_env()
        self.checkpoint_step: int | None = None  # set by load(): the agent steps the checkpoint was trained for
        self.eval_epsilon: float = 0.0  # set by load(): the run's evaluation epsilon (its protocol's)

    @classmethod
    def load(cls, checkpoint: str | Path, *, device: str | torch.device = "cpu", agent: str = "exploitation") -> Agent:
        """The agent saved in ``checkpoint`` (``best.pt`` or ``last.pt`` of a run, or a released agent written by
        ``python -m rlpipe.export``, which holds one agent); raises ``CheckpointError``
        (one line, naming the file) when it is missing, truncated, foreign, or its network does not load. The one
        way a checkpoint becomes a policy: ``rlpipe.evaluate`` and ``rlpipe.record`` load through it.

        ``agent``: ``exploitation`` (the default: a run's only agent, or with ``exploration=rnd`` the one that learns
        the extrinsic reward, evaluated during training) or ``exploration`` (RND's exploration agent)."""
        if agent not in AGENT_PIECES:
            raise ValueError(f"agent={agent!r}: expected one of {', '.join(AGENT_PIECES)}")
        payload = load_checkpoint(checkpoint, agent_file_ok=True)
        piece = "q_network" if payload["format"] == AGENT_FORMAT else AGENT_PIECES[agent]  # (a released agent holds one)
        if payload.get(piece) is None:
            raise CheckpointError(f"{checkpoint}: has no {agent} agent (only runs with exploration=rnd have two agents)")
        try:
            cfg = validate(OmegaConf.create(payload["config"]))
        except ConfigError as err:
            raise CheckpointError(f"{checkpoint}: stored configuration is invalid: {err}") from None
        device = torch.device(device)
        env = make_env(cfg.env)  # read for its specs only
        try:
            q_network = make_q_network(cfg.model, env, device)
            observation_shape = env.full_observation_spec_unbatched[OBSERVATION_KEY].shape
            n_actions = env.full_action_spec_unbatched["action"].space.n
        finally:
            env.close()
        try:
            q_network.load_state_dict(payload[piece])
        except (RuntimeError, KeyError, TypeError) as err:
            raise CheckpointError(f"{checkpoint}: cannot load {piece}: {str(err).splitlines()[0][:160]}") from None
        agent = cls(q_network.eval(), observation_shape=observation_shape, n_actions=n_actions, device=device)
        agent.env_cfg = cfg.env
        agent.checkpoint_step = payload["counters"]["step"]
        agent.eval_epsilon = cfg.eval.epsilon
        return agent

    def make_env(self, *, num_envs: int = 1, seed: int | None = None) -> EnvBase:
        """The environment the agent was trained in, preprocessing included (for Atari: grayscale, 84x84, frame
        skip, frame stack, NOOP/FIRE resets), as a TorchRL env: its observations are what :meth:`act` takes::

            env = agent.make_env(seed=0)
            td = env.reset()
            td["action"] = torch.tensor(agent.act(td["observation"]))
            td = env.step(td)["next"]

        Only for agents made by :meth:`load` (the configuration comes from the checkpoint).
        """
        if self.env_cfg is None:
            raise ValueError("this agent was not loaded from a checkpoint: it does not know its environment")
        return make_env(self.env_cfg, num_envs=num_envs, seed=seed)

    @torch.no_grad()
    def act(self, observation: ArrayLike | Mapping[str, ArrayLike], mask: ArrayLike | None = None) -> int | torch.Tensor:
        """The greedy action for one observation ``[*O]`` (an ``int``) or a batch ``[B, *O]`` (a ``[B]`` tensor).

        Args:
            observation: the observation, or the env's observation dict (its ``"observation"`` and, if present,
                ``"action_mask"`` are used).
            mask: ``[A]`` or ``[B, A]`` bool, True where an action is allowed; the best *allowed* action is
                returned. Without one, every action is allowed.
        """
        if isinstance(observation, Mapping):
            mask = observation.get(ACTION_MASK_KEY) if mask is None else mask
            observation = observation[OBSERVATION_KEY]
        obs = torch.as_tensor(np.asarray(observation) if not isinstance(observation, torch.Tensor) else observation)
        if obs.shape[-len(self.observation_shape) :] != self.observation_shape:
            expected = ", ".join(map(str, self.observation_shape))
            raise ValueError(f"observation has shape {list(obs.shape)}, expected [{expected}] or [B, {expected}]")
        single = obs.shape == self.observation_shape
        obs = obs.reshape(-1, *self.observation_shape).to(self.device)  # [B, *O]
        if obs.is_floating_point():
            obs = obs.float()
        if mask is None:
            mask_BA = torch.ones(obs.shape[0], self.n_actions, dtype=torch.bool, device=self.device)
        else:
            mask_BA = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask).to(self.device, torch.bool)
            mask_BA = mask_BA.reshape(-1, mask_BA.shape[-1])
            if mask_BA.shape != (obs.shape[0], self.n_actions):
                raise ValueError(f"mask has shape {tuple(mask_BA.shape)}, expected one entry per action ({self.n_actions}) per observation")
            if not mask_BA.any(-1).all():
                raise ValueError("mask allows no action")
        data = TensorDict({OBSERVATION_KEY: obs}, batch_size=obs.shape[:1])
        if self.reads_mask:
            data.set(ACTION_MASK_KEY, mask_BA)
        with set_exploration_type(ExplorationType.DETERMINISTIC):
            q_values = self.q_network(data).get("action_value")  # [B, A]
        action = q_values.masked_fill(~mask_BA, float("-inf")).argmax(-1)  # [B]
        return int(action[0]) if single else action.cpu()
