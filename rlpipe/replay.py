"""Replay buffers: TorchRL's prioritized (sum-tree) or uniform buffer over a preallocated tensor storage.

Only the keys the loss reads are stored (:data:`TRANSITION_KEYS`); the collector's bookkeeping keys (episode
return, step count, trajectory ids, ...) are dropped before ``extend``.

Priority convention (proportional PER, Schaul et al. 2016, https://arxiv.org/abs/1511.05952):
``p_i = |delta_i| + priority_eps`` and ``P(i) = p_i^alpha / sum_j p_j^alpha``. ``DQNLoss`` writes the *squared* TD
error as its priority; the learner takes its square root before writing it back, so ``alpha`` keeps the meaning
it has in the paper (with ``delta^2``, alpha = 0.6 would act like alpha = 1.2 on ``|delta|``). New transitions
enter with the largest priority seen so far. The importance weights ``w_i = (N * P(i))^-beta / max_j w_j`` come
back with every sample under :data:`PRIORITY_WEIGHT_KEY`; ``DQNLoss`` reduces with them as the weighted mean
``sum_i w_i * l_i / sum_i w_i``.
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig
from torchrl.data import LazyTensorStorage, TensorDictPrioritizedReplayBuffer, TensorDictReplayBuffer

from rlpipe.envs import OBSERVATION_KEY

TRANSITION_KEYS = (
    OBSERVATION_KEY,
    "action",
    ("next", OBSERVATION_KEY),
    ("next", "reward"),
    ("next", "done"),
    ("next", "terminated"),
)
INDEX_KEY = "index"
PRIORITY_WEIGHT_KEY = "priority_weight"


def make_replay_buffer(buffer_cfg: DictConfig) -> TensorDictReplayBuffer:
    """A prioritized or uniform replay buffer of ``buffer_cfg.capacity`` transitions.

    It has no default batch size: the training loop asks for a whole learning phase's minibatches at once.
    """
    storage = LazyTensorStorage(buffer_cfg.capacity)
    if buffer_cfg.kind == "prioritized":
        return TensorDictPrioritizedReplayBuffer(
            alpha=buffer_cfg.alpha,
            beta=buffer_cfg.beta_init,
            eps=buffer_cfg.priority_eps,
            storage=storage,
        )
    return TensorDictReplayBuffer(storage=storage)


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
