"""Random Network Distillation (Burda et al. 2018, https://arxiv.org/abs/1810.12894) with two agents on one replay
buffer: ``exploration=rnd``.

- **RND** (:class:`RND`): a fixed, randomly initialised *target* network and a trained *predictor*; the intrinsic
  reward of a transition is the predictor's squared error on its next observation (novel observations are
  predicted badly). Both networks are orthogonally initialised; their input is the observation normalised by a
  running mean and standard deviation, per feature (per pixel for images: the newest frame of the stack, as in the
  paper) and clipped to +-5; the intrinsic reward is divided by a running standard deviation over recent steps of
  the (discounted, non-episodic) intrinsic return (``exploration.intrinsic_normalisation=return``, the paper's) or of
  the intrinsic reward itself (``reward``, the default: see ``conf/exploration/rnd.yaml`` for the measurement).
- **Novelty input** (``exploration.novelty_input``): the observation (the paper's), or where the env observes it
  apart, the *agent state* (DoorKey: the agent's cell, direction, carried key and task phase, without the walls,
  door and key positions). In a procedurally generated task the predictor's error on the whole observation is
  largest on the layout, drawn anew every episode and not chosen by the agent, so every step of a new episode,
  standing still included, earns about the same bonus (our reading of the benchmark, where the greedy
  exploration agent stood still: docs/lab-notes/2026-11-22-doorkey-rnd.md); on the agent state, novelty is where the agent
  has rarely been and what it has rarely done (key carried, door open).
- **Episodic restriction** (``exploration.episodic_novelty=true``; the "ERIR" of NovelD, Zhang et al. 2021,
  https://arxiv.org/abs/2110.05787): a transition earns its intrinsic reward only if its next observation is the
  first of its kind in the episode, so standing still earns nothing and only reaching an observation new to the
  episode does (another cell, direction, key or door state). The flag is a fact of the
  trajectory, not of the predictor, so it is computed at collection time and stored with the transition. It is
  computed on the novelty input, and counts exact repeats (DoorKey only: continuous states and frames almost never
  repeat).
- **Two agents** (:class:`RNDLearner`): the *exploration* agent learns from
  ``combined = (1 - alpha) * extrinsic + alpha * intrinsic`` and drives collection (with a small epsilon; see the
  exploitation agent's share of acting below); the *exploitation* agent learns from the extrinsic reward only.
  Both are :class:`rlpipe.learner.Learner` instances and learn from the same sampled minibatches every learning
  phase; ``alpha`` decays over training
  (:class:`AlphaSchedule`). Evaluation, ``best.pt`` and ``summary.json`` are the exploitation agent's.
- **Non-episodic exploration agent** (``exploration.explorer_episodic=false``): the exploration agent's TD target
  bootstraps through terminations, as the paper's intrinsic value does (its section 2.3 argues for a non-episodic
  intrinsic return), so ending an episode does not forfeit the intrinsic reward that would follow; with episodic
  novelty an episode's end otherwise cuts off the first-visit bonuses that continuing would have paid.
  The paper gives the intrinsic and extrinsic returns two value heads; here the exploration agent has one, on the
  combined reward, and its whole return is non-episodic. The next observation stored with a terminal transition is
  the episode's last, not the next episode's first, so the bootstrap is the network's value there (replay does not
  keep the reset observation beside the transition). The exploitation agent stays episodic.
- **The exploitation agent's share of acting** (``exploration.exploit_acting_share``, default 0: the exploration
  agent plays every step): each collect, each env is played by the exploitation agent with this probability
  (:class:`SharedActing`; same epsilon), otherwise by the exploration agent. A learner that never acts is never
  shown the outcome of the actions it prefers where the actor does not take them, so its greedy policy can keep
  overestimated actions, for example walking into a loop (the *tandem effect*: Ostrovski et al. 2021,
  https://arxiv.org/abs/2110.14020, and docs/results/doorkey-rnd.md for the measurement).

What comes from TorchRL and what does not:

- ``torchrl.envs.transforms.rnd.RunningMeanStd`` keeps the observation statistics, and
  ``torchrl.objectives.RNDLoss`` is the predictor's loss (with the paper's update fraction). The intrinsic
  return's statistics weigh recent steps (:class:`MovingMeanStd`, which says why).
- ``RNDTransform`` is not used: it writes the intrinsic reward at collection time, so with off-policy replay a
  transition would keep the stale reward of the predictor that saw it first; here intrinsic rewards come from the
  current predictor when a minibatch is sampled. It also keeps observation statistics over the last dimension
  only (per image column, not per pixel) and normalises by the reward's, not the return's, standard deviation.

Shape legend: ``E`` environments, ``T`` steps per collect, ``K`` updates per learning phase, ``B`` batch,
``O`` observation (``[D]`` vectors or ``[N, H, W]`` frame stacks).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torch import nn
from torchrl.data import Composite
from torchrl.envs.transforms.rnd import RunningMeanStd
from torchrl.modules import MLP, ConvNet, QValueActor
from torchrl.objectives import RNDLoss

from rlpipe.keys import AGENT_STATE_KEY, OBSERVATION_KEY, REWARD_KEY, TERMINATED_KEY
from rlpipe.learner import Learner, PhaseResult

# RND's own keys, beside the env's (rlpipe.keys)
COMBINED_REWARD_KEY = ("next", "combined_reward")  # (1 - alpha) * extrinsic + alpha * intrinsic, set at sampling time
INTRINSIC_REWARD_KEY = ("next", "intrinsic_reward")  # the predictor's normalised error on the next novelty input
FIRST_VISIT_KEY = ("next", "first_visit")  # (episodic_novelty) the next observation is new within its episode
NEVER_TERMINATED_KEY = ("next", "never_terminated")  # (explorer_episodic=false) all False, set at sampling time

NOVELTY_INPUTS = {"observation": OBSERVATION_KEY, "agent_state": AGENT_STATE_KEY}  # exploration.novelty_input -> key
_RND_INPUT_KEY = "rnd_input"  # the normalised next observation RNDLoss reads
EXPLORER_PREFIX = "explore/"  # the exploration agent's checkpoint entries and metrics: explore/q_network, explore/loss


@dataclass(frozen=True)
class AlphaSchedule:
    """The intrinsic reward's share ``alpha`` as a function of agent steps, from ``alpha_init`` to ``alpha_final``
    at ``decay_steps``: ``constant`` (``alpha_init`` throughout), ``linear``, or ``exponential``
    (``alpha_init * r**step``, both ends > 0)."""

    alpha_init: float
    alpha_final: float
    decay_steps: int
    shape: str

    def __call__(self, step: int) -> float:
        progress = min(step / self.decay_steps, 1.0)
        if self.shape == "constant":
            return self.alpha_init
        if self.shape == "linear":
            return self.alpha_init + (self.alpha_final - self.alpha_init) * progress
        return self.alpha_init * math.exp(progress * math.log(self.alpha_final / self.alpha_init))


class MovingMeanStd(nn.Module):
    """Mean and variance of a scalar stream, weighted toward its last ``horizon`` values (exponential moving
    statistics; each value's weight decays by ``1 - 1 / horizon`` per newer value).

    Hand-written because TorchRL's ``RunningMeanStd`` weighs all history equally: the predictor's error shrinks
    as it learns, so all-history statistics of the intrinsic return stay dominated by the first steps' large
    errors and the normalised reward sinks toward zero (measured on DoorKey-8x8: about 0.001 per step after 40,000
    steps, below what DQN's updates resolve next to a sparse extrinsic reward of about 0.5). Weighing recent
    steps alone did not cure it for the return (0.005 per step at 3,000 steps and falling: while the predictor
    learns, the return's drift dominates its spread), hence ``intrinsic_normalisation=reward`` by default.
    """

    def __init__(self, horizon: int) -> None:
        super().__init__()
        self.horizon = horizon
        self.register_buffer("mean", torch.tensor(0.0))
        self.register_buffer("var", torch.tensor(1.0))
        self.register_buffer("count", torch.tensor(0.0))  # values seen (0: the first batch sets the statistics)

    def update(self, values: torch.Tensor) -> None:
        values = values.float().reshape(-1)
        batch_mean, batch_var = values.mean(), values.var(unbiased=False)
        weight = 1.0 - (1.0 - 1.0 / self.horizon) ** values.numel()  # the batch's share of the new statistics
        delta = batch_mean - self.mean
        first = self.count == 0  # chosen on the device: a Python branch on it would wait for a GPU every collect
        self.var.copy_(torch.where(first, batch_var, (1 - weight) * (self.var + weight * delta**2) + weight * batch_var))
        self.mean.copy_(torch.where(first, batch_mean, self.mean + weight * delta))
        self.count.add_(values.numel())


class NewestFrame(nn.Module):
    """``[B, N, H, W]`` frame stack -> ``[B, 1, H, W]`` newest frame (RND reads one frame, as in the paper)."""

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return frames[..., -1:, :, :]


def _orthogonal(module: nn.Module) -> nn.Module:
    """Orthogonal weights (gain sqrt(2)) and zero biases for every linear and conv layer, as in the paper."""
    for layer in module.modules():
        if isinstance(layer, (nn.Linear, nn.Conv2d)):
            nn.init.orthogonal_(layer.weight, gain=math.sqrt(2))
            nn.init.zeros_(layer.bias)
    return module


def make_rnd_networks(exploration_cfg: DictConfig, observation_shape: torch.Size) -> tuple[nn.Module, nn.Module]:
    """The fixed target and the trained predictor: ``[B, *O']`` normalised input -> ``[B, F]`` features, for
    observations ``O`` (``O' = O`` for vectors, the newest frame ``[1, H, W]`` of a stack ``[N, H, W]``).

    Vectors (``O' = [D]``): target ``D -> hidden_sizes -> F``; the predictor has one more hidden layer (it must be
    able to fit the target). Frames (``O' = [1, H, W]``): the paper's networks, three conv layers (32 8x8/4,
    64 4x4/2, 64 3x3/1, leaky ReLU), then a linear layer for the target and three for the predictor.
    """
    features = exploration_cfg.rnd_feature_size
    if len(observation_shape) == 1:
        hidden = list(exploration_cfg.rnd_hidden_sizes)
        target = MLP(in_features=observation_shape[0], out_features=features, num_cells=hidden, activation_class=nn.ReLU)
        predictor = MLP(in_features=observation_shape[0], out_features=features, num_cells=hidden + hidden[-1:],
                        activation_class=nn.ReLU)
        return _orthogonal(target), _orthogonal(predictor)

    def conv() -> nn.Module:
        return ConvNet(in_features=1, num_cells=[32, 64, 64], kernel_sizes=[8, 4, 3], strides=[4, 2, 1],
                       activation_class=nn.LeakyReLU)

    with torch.no_grad():
        n_conv = conv()(torch.zeros(1, 1, *observation_shape[1:])).shape[-1]  # [1, C'] (3136 for 84x84)
    target = nn.Sequential(conv(), nn.Linear(n_conv, features))
    predictor = nn.Sequential(conv(), MLP(in_features=n_conv, out_features=features, num_cells=[512, 512], activation_class=nn.ReLU))
    return _orthogonal(target), _orthogonal(predictor)


class RND(nn.Module):
    """The target and predictor networks with their running statistics: the intrinsic reward of observations.

    Args:
        target, predictor: from :func:`make_rnd_networks`; the target is frozen here.
        observation_shape: ``O``, the novelty input's (the observation, or DoorKey's agent state; a frame stack
            ``[N, H, W]`` is read at its newest frame).
        num_envs: ``E``: one discounted intrinsic return is kept per environment.
        obs_clip: normalised observations are clipped to ``[-obs_clip, obs_clip]``.
        intrinsic_gamma: the discount of the intrinsic return whose standard deviation scales the reward.
        stats_horizon: the agent steps (per env) the scaling statistics weigh (:class:`MovingMeanStd`).
        normalise_by: ``return``: the reward is divided by the running std of the discounted intrinsic return (the
            paper's); ``reward``: by the running std of the intrinsic reward itself.
    """

    def __init__(
        self,
        target: nn.Module,
        predictor: nn.Module,
        *,
        observation_shape: torch.Size,
        num_envs: int,
        obs_clip: float,
        intrinsic_gamma: float,
        stats_horizon: int,
        normalise_by: str,
    ) -> None:
        super().__init__()
        self.target, self.predictor = target.requires_grad_(False), predictor
        self.frames = len(observation_shape) == 3
        self.input_shape = (1, *observation_shape[1:]) if self.frames else tuple(observation_shape)
        self.newest = NewestFrame() if self.frames else nn.Identity()
        self.obs_rms = RunningMeanStd(shape=self.input_shape)  # per feature / per pixel
        self.scale_stats = MovingMeanStd(horizon=stats_horizon * num_envs)  # of the intrinsic return, or reward
        self.normalise_by = normalise_by
        self.register_buffer("intrinsic_return", torch.zeros(num_envs))  # [E] running, never reset (non-episodic)
        self.register_buffer("alpha", torch.tensor(0.0))  # the intrinsic reward's share now (stored with the rest)
        self.obs_clip, self.intrinsic_gamma = obs_clip, intrinsic_gamma

    def normalised_input(self, observation: torch.Tensor) -> torch.Tensor:
        """``[*, *O]`` -> ``[*, *O']``: the newest frame (images), normalised per feature and clipped."""
        return self.obs_rms.normalize(self.newest(observation)).clamp(-self.obs_clip, self.obs_clip)

    @torch.no_grad()
    def error(self, inputs: torch.Tensor) -> torch.Tensor:
        """``[B, *O']`` normalised inputs -> ``[B]``: the predictor's mean squared error on the target's features."""
        return (self.predictor(inputs) - self.target(inputs)).pow(2).mean(-1)

    @torch.no_grad()
    def intrinsic_reward(self, observation: torch.Tensor) -> torch.Tensor:
        """``[B, *O]`` next observations -> ``[B, 1]``: their error over the running std (:attr:`scale`)."""
        return (self.error(self.normalised_input(observation)) / self.scale).unsqueeze(-1)

    @property
    def scale(self) -> torch.Tensor:
        """``[]`` what intrinsic rewards are divided by: the running std of the intrinsic return (or reward)."""
        return self.scale_stats.var.clamp_min(1e-8).sqrt()

    @torch.no_grad()
    def observe(self, next_observation: torch.Tensor) -> torch.Tensor:
        """Updates the statistics with a collect's next observations ``[E, T, *O]`` (in time order per env) and
        returns their intrinsic rewards ``[E, T]`` (for display; learning recomputes them at sampling time).

        The observation statistics come first, then each env's discounted intrinsic return
        ``R <- gamma * R + r`` step by step, whose values update the return statistics (the paper's
        ``RewardForwardFilter``: the intrinsic stream is not cut at episode ends).
        """
        envs, steps = next_observation.shape[:2]
        self.obs_rms.update(self.newest(next_observation).reshape(envs * steps, *self.input_shape))
        inputs = self.normalised_input(next_observation.reshape(envs * steps, *next_observation.shape[2:]))
        error = self.error(inputs).reshape(envs, steps)
        if self.normalise_by == "reward":
            self.scale_stats.update(error)
            return error / self.scale
        returns = []
        for t in range(steps):
            self.intrinsic_return.mul_(self.intrinsic_gamma).add_(error[:, t])
            returns.append(self.intrinsic_return.clone())
        self.scale_stats.update(torch.stack(returns))
        return error / self.scale


class SharedActing(TensorDictModuleBase):
    """The acting network of two agents: each env's steps are played by the exploration agent's Q-network, or by
    the exploitation agent's where :attr:`exploit_plays` is set (:meth:`RNDLearner.observe` draws it for each
    collect). Both write the same entries (``action``, ``action_value``, ``chosen_action_value``); the exploration
    module that follows in the collector's policy applies its epsilon to either.

    Args:
        explore: the exploration agent's Q-network.
        exploit: the exploitation agent's Q-network.
        num_envs: ``E``, environments stepped side by side.
    """

    def __init__(self, explore: QValueActor, exploit: QValueActor, *, num_envs: int) -> None:
        super().__init__()
        self.explore, self.exploit = explore, exploit
        self.in_keys = list(dict.fromkeys([*explore.in_keys, *exploit.in_keys]))
        self.out_keys = list(explore.out_keys)
        # On the agents' device: a policy whose every parameter and buffer sits on the collector's policy device is
        # used as it is; one buffer elsewhere makes TorchRL's Collector act through a copy, which never sees the draws.
        device = next(explore.parameters()).device
        self.register_buffer("exploit_plays", torch.zeros(num_envs, dtype=torch.bool, device=device), persistent=False)  # [E]

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        """``tensordict`` ``[*E]`` (``[]`` for one unbatched env): the acting agent's entries written into it."""
        plays = self.exploit_plays.reshape(tensordict.batch_size)  # [*E]
        if not plays.any():
            return self.explore(tensordict)
        if plays.all():
            return self.exploit(tensordict)
        explored, exploited = self.explore(tensordict.copy()), self.exploit(tensordict.copy())  # (shallow copies)
        for key in self.out_keys:
            theirs, mine = explored.get(key), exploited.get(key)  # [*E, ...]
            tensordict.set(key, torch.where(plays.reshape(*plays.shape, *[1] * (mine.ndim - plays.ndim)), mine, theirs))
        return tensordict


class RNDLearner:
    """Two agents learning from one replay buffer, and RND, behind the interface of one
    :class:`rlpipe.learner.Learner` (``learn``, ``pieces``, ``metrics``, ...), so ``rlpipe/train.py`` runs one loop.

    Per learning phase (:meth:`learn`): the current predictor gives every sampled transition its intrinsic reward;
    the combined reward is written beside the extrinsic one; the exploration agent learns from the combined
    reward and the exploitation agent from ``("next", "reward")``, on the same minibatches; then the predictor
    takes one step per minibatch. The new priorities are the larger of the two agents' ``|TD error|``: a
    transition either agent mispredicts is replayed more.

    Args:
        exploit: the exploitation agent (extrinsic reward; evaluated, stored under the single agent's names).
        explore: the exploration agent (``reward_key=COMBINED_REWARD_KEY``; its Q-network acts in the collector).
        rnd: the target, predictor and statistics.
        predictor_lr: Adam's learning rate for the predictor.
        update_fraction: the share of each minibatch the predictor learns from (the paper's 0.25).
        alpha: the schedule of the intrinsic reward's share.
        batch_size: ``B``, the minibatch size of the agents' updates.
        device: where the networks live.
        episodic_novelty: reward only the first visit of a next observation within its episode (the module
            docstring); :meth:`observe` then writes the flag as ``("next", "first_visit")`` for the replay to store.
        novelty_key: the observation entry RND reads (:data:`NOVELTY_INPUTS`); one other than the Q-network's
            observation is stored with each transition (:attr:`stored_keys`).
        exploit_acting_share: the probability that the exploitation agent plays an env's steps of a collect
            (:class:`SharedActing`); 0: the exploration agent plays every step.
    """

    progress_names = ("episode/combined_reward", "rnd/alpha")  # shown in the progress bar beside episode/reward

    def __init__(
        self,
        exploit: Learner,
        explore: Learner,
        rnd: RND,
        *,
        predictor_lr: float,
        update_fraction: float,
        alpha: AlphaSchedule,
        batch_size: int,
        device: torch.device,
        episodic_novelty: bool = False,
        novelty_key: str = OBSERVATION_KEY,
        exploit_acting_share: float = 0.0,
    ) -> None:
        self.exploit, self.explore, self.rnd = exploit, explore, rnd.to(device)
        self.episodic_novelty = episodic_novelty
        self.novelty_key = ("next", novelty_key)  # the next observation entry whose novelty is rewarded
        self.stored_keys = ((FIRST_VISIT_KEY,) if episodic_novelty else ()) + (
            (self.novelty_key,) if novelty_key != OBSERVATION_KEY else ())
        # [E] observations seen in each env's running episode (bytes of the tensor; not checkpointed: a resumed
        # run's episodes start afresh)
        self._seen: list[set[bytes]] = [set() for _ in range(rnd.intrinsic_return.numel())]
        self.predictor_loss = RNDLoss(rnd.predictor, rnd.target, update_fraction=update_fraction)
        self.predictor_loss.set_keys(observation=_RND_INPUT_KEY)
        self.predictor_optimizer = torch.optim.Adam(rnd.predictor.parameters(), lr=predictor_lr)
        self.alpha_schedule = alpha
        self.batch_size, self.device = batch_size, device
        self.q_network = exploit.q_network  # evaluated
        self.exploit_acting_share = exploit_acting_share
        self._shared_acting = (SharedActing(explore.q_network, exploit.q_network, num_envs=len(self._seen))
                               if exploit_acting_share > 0 else None)
        self.acting_network = explore.q_network if self._shared_acting is None else self._shared_acting  # acts in the collector
        self.lr_scheduler = exploit.lr_scheduler
        self._combined_return = torch.zeros(rnd.intrinsic_return.shape)  # [E] of the running episodes
        self._recent_combined: deque[float] = deque(maxlen=20)
        self._window: dict[str, list[torch.Tensor]] = {}
        self.schedule(0)
        # a restored checkpoint brings its alpha: the host copy follows (read once, at the restore)
        self.rnd.register_load_state_dict_post_hook(lambda module, keys: setattr(self, "_alpha", module.alpha.item()))

    def schedule(self, step: int) -> float:
        """Sets ``alpha`` for the run's agent-step counter; returns it."""
        value = self.alpha_schedule(step)
        self.rnd.alpha.fill_(value)
        # A host copy, rounded as the stored buffer: reading the buffer back would wait for a GPU twice per collect.
        self._alpha = torch.tensor(value, dtype=self.rnd.alpha.dtype).item()
        return value

    @property
    def alpha(self) -> float:
        return self._alpha

    def observe(self, batch: TensorDictBase) -> None:
        """A collect's transitions ``[E, T]`` (or ``[T]``), before they are stored: RND's statistics, the combined
        training return of the episodes that end in it, and (``episodic_novelty``) each transition's
        ``("next", "first_visit")`` flag, written into ``batch``; then (``exploit_acting_share > 0``) which agent
        plays each env's steps of the next collect."""
        flat = batch if batch.ndim == 2 else batch.unsqueeze(0)  # [E, T]
        intrinsic = self.rnd.observe(flat.get(self.novelty_key).to(self.device)).cpu()  # [E, T]
        extrinsic = flat.get(REWARD_KEY).reshape(intrinsic.shape).float()
        done = flat.get(("next", "done")).reshape(intrinsic.shape)
        if self.episodic_novelty:
            first_visit = self._first_visits(flat.get(self.novelty_key[-1]), flat.get(self.novelty_key), done)  # [E, T]
            batch.set(FIRST_VISIT_KEY, first_visit.reshape(*batch.shape, 1))
            intrinsic = intrinsic * first_visit
        combined = (1 - self.alpha) * extrinsic + self.alpha * intrinsic  # [E, T]
        for t in range(intrinsic.shape[1]):
            self._combined_return += combined[:, t]
            self._recent_combined.extend(self._combined_return[done[:, t]].tolist())
            self._combined_return[done[:, t]] = 0.0
        if self._shared_acting is not None:
            plays = self._shared_acting.exploit_plays
            self._window.setdefault("rnd/exploit_acting_share", []).append(plays.float())  # of the collect just made (read at log time)
            plays.copy_(torch.rand(plays.shape, device=plays.device) < self.exploit_acting_share)

    def _first_visits(self, observation: torch.Tensor, next_observation: torch.Tensor, done: torch.Tensor) -> torch.Tensor:
        """``[E, T, *O]`` observations and next observations, ``[E, T]`` done -> ``[E, T]`` bool: the next
        observation was not seen before in its episode (an episode's first observation counts as seen)."""
        # Hand-written: TorchRL has no per-episode visit set; exact repeats are what count (vector observations).
        if done.shape[0] != len(self._seen):
            raise ValueError(f"a collect of {done.shape[0]} envs, but the first-visit sets are kept for {len(self._seen)}")
        observation, next_observation = observation.cpu().numpy(), next_observation.cpu().numpy()  # once per collect
        first_visit = torch.zeros(done.shape, dtype=torch.bool)
        for e, seen in enumerate(self._seen):
            for t in range(done.shape[1]):
                if not seen:  # the episode's first step: its reset observation is visited
                    seen.add(observation[e, t].tobytes())
                key = next_observation[e, t].tobytes()
                first_visit[e, t] = key not in seen
                seen.add(key)
                if done[e, t]:
                    seen.clear()
        return first_visit

    def learn(self, block: TensorDict) -> PhaseResult:
        """One learning phase on ``block`` (``[K * B]`` sampled transitions): both agents, then the predictor.

        With n-step transitions (``train.n_step > 1``) the replay stores the next novelty input and first-visit
        flag of the window's last step, so the intrinsic term is the novelty of where the n steps led, not a sum
        over them (the intermediate steps' inputs are not stored)."""
        # The rewards are combined where the agents learn: only the extrinsic reward and the flags cross to a GPU
        # (non-blocking), and nothing comes back.
        block.clear_device_()  # the rewards written below stay on the learner's device (a CPU block would pull them back)
        extrinsic = block.get(REWARD_KEY).to(self.device, non_blocking=True)  # [K*B, 1]
        inputs = self.rnd.normalised_input(block.get(self.novelty_key).to(self.device))  # [K*B, *O'], once per phase
        intrinsic = (self.rnd.error(inputs) / self.rnd.scale).unsqueeze(-1)  # [K*B, 1]
        if self.episodic_novelty:  # [K*B, 1]: repeats within an episode earn nothing
            intrinsic = intrinsic * block.get(FIRST_VISIT_KEY).to(self.device, non_blocking=True)
        block.set(INTRINSIC_REWARD_KEY, intrinsic)
        block.set(COMBINED_REWARD_KEY, (1 - self.alpha) * extrinsic + self.alpha * intrinsic)
        if self.explore.terminated_key == NEVER_TERMINATED_KEY:  # exploration.explorer_episodic=false
            block.set(NEVER_TERMINATED_KEY, torch.zeros_like(block.get(TERMINATED_KEY), device=self.device))
        explored = self.explore.learn(block)
        exploited = self.exploit.learn(block)
        predictor_losses = []
        for minibatch_inputs in inputs.split(self.batch_size):  # [B, *O'] each, the agents' minibatches
            minibatch = TensorDict({_RND_INPUT_KEY: minibatch_inputs}, batch_size=minibatch_inputs.shape[:1])
            loss = self.predictor_loss(minibatch)["loss_predictor"]
            loss.backward()
            self.predictor_optimizer.step()
            self.predictor_optimizer.zero_grad(set_to_none=False)
            predictor_losses.append(loss.detach())
        for name, value in ((EXPLORER_PREFIX + "loss", explored.losses), (EXPLORER_PREFIX + "grad_norm", explored.grad_norms),
                            ("rnd/predictor_loss", torch.stack(predictor_losses)), ("rnd/intrinsic_mean", intrinsic.mean())):
            self._window.setdefault(name, []).append(value.reshape(-1))
        # The loop stops on a non-finite loss: an exploration agent that diverges reports its NaN/inf there too.
        losses = torch.where(torch.isfinite(explored.losses), exploited.losses, explored.losses)
        return PhaseResult(losses=losses, priorities=torch.maximum(exploited.priorities, explored.priorities),
                           grad_norms=exploited.grad_norms)

    @property
    def lr(self) -> float:
        return self.exploit.lr

    def set_lr(self, lr: float) -> None:
        self.exploit.set_lr(lr)
        self.explore.set_lr(lr)

    def metrics(self, block: TensorDictBase | None) -> dict[str, float]:
        """Since the previous call: the exploitation agent under the single agent's ``train/`` names, the
        exploration agent's under ``explore/``, RND's under ``rnd/`` (means over the window), and the recent
        episodes' combined training return."""
        window, self._window = self._window, {}
        recent = self._recent_combined
        return {
            **self.exploit.metrics(block),
            EXPLORER_PREFIX + "q_mean": self.explore.q_mean(block) if block is not None else float("nan"),
            **{name: torch.cat(values).mean().item() for name, values in window.items()},
            "rnd/alpha": self.alpha,
            "episode/combined_reward": sum(recent) / len(recent) if recent else float("nan"),
        }

    def pieces(self) -> dict[str, Any]:
        """The exploitation agent under the single agent's names (so ``Agent.load`` reads it as it reads any
        run's), the exploration agent's under ``explore/``, RND's networks, statistics and ``alpha``, and the
        predictor's optimizer."""
        return {
            **self.exploit.pieces(),
            **{EXPLORER_PREFIX + name: piece for name, piece in self.explore.pieces().items()},
            "rnd": self.rnd,
            "rnd/optimizer": self.predictor_optimizer,
        }


def make_rnd_learner(
    train_cfg: DictConfig, exploration_cfg: DictConfig, make_network: Callable[[], QValueActor], *, transition_keys: tuple,
    observation_spec: Composite, num_envs: int, device: torch.device, total_updates: int,
) -> RNDLearner:
    """Two agents and RND (``exploration=rnd``): the exploitation agent learns the env's reward and is evaluated as
    ``learner.q_network``; the exploration agent learns the combined reward and acts.

    Args:
        train_cfg: the ``train`` section.
        exploration_cfg: the ``exploration`` section (``kind: rnd``).
        make_network: builds a Q-network for the env: the exploitation agent's, then the exploration agent's.
        transition_keys: what a stored transition of the env holds (``rlpipe.envs.transition_keys``).
        observation_spec: the env's unbatched observations (RND's input: ``exploration.novelty_input``).
        num_envs: environments stepped side by side (one intrinsic return each).
        device: where the networks live.
        total_updates: the gradient updates of the whole run.
    """
    exploration = exploration_cfg
    learner = Learner(train_cfg, make_network(), transition_keys=transition_keys, device=device, total_updates=total_updates)
    explorer = Learner(train_cfg, make_network(), transition_keys=transition_keys, device=device,
                       total_updates=total_updates, reward_key=COMBINED_REWARD_KEY,
                       terminated_key=TERMINATED_KEY if exploration.explorer_episodic else NEVER_TERMINATED_KEY)
    novelty_key = NOVELTY_INPUTS[exploration.novelty_input]
    novelty_shape = observation_spec[novelty_key].shape  # O: what RND measures novelty on
    target, predictor = make_rnd_networks(exploration, novelty_shape)
    return RNDLearner(
        learner, explorer,
        RND(target, predictor, observation_shape=novelty_shape, num_envs=num_envs,
            obs_clip=exploration.obs_clip, intrinsic_gamma=exploration.intrinsic_gamma,
            stats_horizon=exploration.intrinsic_stats_steps, normalise_by=exploration.intrinsic_normalisation),
        episodic_novelty=exploration.episodic_novelty,
        novelty_key=novelty_key,
        exploit_acting_share=exploration.exploit_acting_share,
        predictor_lr=exploration.predictor_lr,
        update_fraction=exploration.update_fraction,
        alpha=AlphaSchedule(alpha_init=exploration.alpha_init, alpha_final=exploration.alpha_final,
                            decay_steps=exploration.alpha_decay_steps, shape=exploration.alpha_schedule),
        batch_size=train_cfg.batch_size,
        device=device,
    )
