"""Replay buffers: TorchRL's prioritized (sum-tree) or uniform buffer over a preallocated tensor storage.

Only the keys the loss reads are stored (``rlpipe.envs.transition_keys``: ``TRANSITION_KEYS`` and action masks); the collector's bookkeeping keys
(episode return, step count, ...) are dropped as a batch is stored. Frame-stacked pixel observations go to
:class:`~rlpipe.frame_replay.FrameReplay`, which stores every frame once.

Priority convention (proportional PER, Schaul et al. 2016, https://arxiv.org/abs/1511.05952):
``p_i = |delta_i| + priority_eps`` and ``P(i) = p_i^alpha / sum_j p_j^alpha``. ``DQNLoss`` writes the *squared* TD
error as its priority; the learner takes its square root before writing it back, so ``alpha`` keeps the meaning
it has in the paper (with ``delta^2``, alpha = 0.6 would act like alpha = 1.2 on ``|delta|``). New transitions
enter with the largest priority seen so far. The importance weights ``w_i = (N * P(i))^-beta / max_j w_j`` come
back with every sample under ``PRIORITY_WEIGHT_KEY``; ``DQNLoss`` reduces with them as the weighted mean
``sum_i w_i * l_i / sum_i w_i``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from omegaconf import DictConfig
from tensordict import TensorDictBase
from torchrl.data import LazyMemmapStorage, LazyTensorStorage, TensorDictPrioritizedReplayBuffer, TensorDictReplayBuffer
from torchrl.envs import EnvBase

from rlpipe.envs import terminal_key, transition_keys
from rlpipe.frame_replay import FrameReplay, clear_memmap_dir
from rlpipe.keys import OBSERVATION_KEY


def make_replay_buffer(
    buffer_cfg: DictConfig, env_cfg: DictConfig, env: EnvBase, *, n_step: int = 1, gamma: float = 0.99
) -> TensorDictReplayBuffer | FrameReplay:
    """The replay memory for ``env``: a :class:`~rlpipe.frame_replay.FrameReplay` for frame-stacked pixel
    observations, TorchRL's prioritized or uniform buffer otherwise.

    Either takes whole collector batches in ``extend`` (``[num_envs, steps]``) and keeps only what the learner
    reads. Neither has a default batch size: the training loop asks for a learning phase's minibatches at once.

    Args:
        buffer_cfg: the ``buffer`` config section.
        env_cfg: the ``env`` config section (its kind and terminal convention).
        env: the training env; the frame layout and the number of streams come from its specs and batch size.
        n_step, gamma: n-step returns (``train.n_step``, ``train.gamma``); only the frame replay computes them
            (the configuration refuses ``n_step > 1`` elsewhere).
    """
    prioritized = buffer_cfg.kind == "prioritized"
    memmap_dir = buffer_cfg.memmap_dir if buffer_cfg.storage == "memmap" else None
    clear_memmap_dir(memmap_dir)
    if env_cfg.kind == "atari":
        frames = env.full_observation_spec_unbatched[OBSERVATION_KEY].shape  # [N, H, W]
        return FrameReplay(
            capacity=buffer_cfg.capacity,
            num_streams=env.batch_size.numel(),
            frame_shape=tuple(frames[-2:]),
            frame_stack=frames[-3],
            alpha=buffer_cfg.alpha if prioritized else 0.0,
            beta=buffer_cfg.beta_init if prioritized else 0.0,
            priority_eps=buffer_cfg.priority_eps if prioritized else 1.0,
            n_step=n_step,
            gamma=gamma,
            terminal_key=terminal_key(env_cfg),
            memmap_dir=memmap_dir,
        )
    storage = LazyTensorStorage(buffer_cfg.capacity) if memmap_dir is None else LazyMemmapStorage(buffer_cfg.capacity, scratch_dir=memmap_dir)
    if prioritized:
        replay: TensorDictReplayBuffer = TensorDictPrioritizedReplayBuffer(
            alpha=buffer_cfg.alpha, beta=buffer_cfg.beta_init, eps=buffer_cfg.priority_eps, storage=storage
        )
    else:
        replay = TensorDictReplayBuffer(storage=storage)
    replay.append_transform(functools.partial(_flat_transitions, keys=transition_keys(env)), invert=True)  # on extend
    return replay


def _flat_transitions(batch: TensorDictBase, *, keys: tuple) -> TensorDictBase:
    """A collector batch ``[num_envs, steps]`` as stored transitions ``[num_envs * steps]`` of ``keys``."""
    return batch.reshape(-1).select(*keys)


@dataclass(frozen=True)
class BetaSchedule:
    """PER's importance-sampling exponent, annealed linearly from ``beta_init`` to ``beta_final`` over training.

    A function of the agent-step counter (like the exploration schedules) rather than TorchRL's
    ``LinearScheduler``, which counts its own calls: resuming then needs no extra state.
    """

    beta_init: float
    beta_final: float
    total_steps: int

    def __call__(self, step: int) -> float:
        return self.beta_init + (self.beta_final - self.beta_init) * min(step / self.total_steps, 1.0)


def make_beta_schedule(buffer_cfg: DictConfig, *, total_steps: int) -> BetaSchedule | None:
    """The beta schedule of a prioritized buffer; ``None`` for a uniform one."""
    if buffer_cfg.kind != "prioritized":
        return None
    return BetaSchedule(beta_init=buffer_cfg.beta_init, beta_final=buffer_cfg.beta_final, total_steps=total_steps)
