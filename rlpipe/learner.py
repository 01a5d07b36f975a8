"""The learner: double-DQN loss, optimizer, learning-rate schedule, target-network updates and the gradient step,
as one object (:class:`Learner`) that training runs and the learner benchmark measures.

Shape legend: ``K`` updates in a learning phase, ``B`` batch, ``O`` observation features, ``A`` actions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from omegaconf import DictConfig
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, LRScheduler
from torchrl.modules import QValueActor
from torchrl.objectives import DQNLoss, HardUpdate, SoftUpdate, ValueEstimators

from rlpipe.config import ConfigError
from rlpipe.keys import PRIORITY_WEIGHT_KEY, REWARD_KEY, STEPS_TO_NEXT_OBS_KEY, TERMINATED_KEY, TRANSITION_KEYS


def make_loss(
    train_cfg: DictConfig, q_network: QValueActor, *, reward_key: tuple[str, str] = REWARD_KEY,
    terminated_key: tuple[str, str] = TERMINATED_KEY,
) -> DQNLoss:
    """TorchRL's ``DQNLoss`` in its double-DQN form (van Hasselt et al. 2016, https://arxiv.org/abs/1509.06461).

    The online network picks the next action and the target network values it::

        y = r + gamma * (1 - terminated) * Q_target(s', argmax_a Q_online(s', a))
        loss = sum_i w_i * distance(Q_online(s_i, a_i), y_i) / sum_i w_i

    where ``w_i`` are PER's importance weights (all 1 with uniform replay). Only ``terminated`` stops the
    bootstrap: an episode cut by a time limit (``truncated``) still bootstraps from its last state. ``r`` is read
    from ``reward_key`` (``("next", "reward")``, the env's; RND's exploration agent reads its combined reward) and
    ``terminated`` from ``terminated_key`` (RND's non-episodic exploration agent reads a flag that is never set).
    """
    loss = DQNLoss(q_network, loss_function=train_cfg.loss, delay_value=True, double_dqn=True)
    loss.set_keys(reward=reward_key[-1], terminated=terminated_key[-1])  # DQNLoss reads ("next", <reward>), ...
    device = next(q_network.parameters()).device
    loss.make_value_estimator(ValueEstimators.TD0, gamma=train_cfg.gamma, device=device)  # its gamma buffer beside the network
    return loss


def make_optimizer(
    train_cfg: DictConfig, loss_module: DQNLoss, device: torch.device, *, compile_step: bool = False, capturable: bool = False
) -> torch.optim.Adam:
    """Adam over the online Q-network's parameters (the target network's are buffers and never optimized).

    The learning rate is a tensor so that a schedule changes it in place and never recompiles the update; on a GPU
    it lives there, where a captured update reads it (a CPU tensor would be baked into a CUDA graph as a constant).
    Fused Adam (one kernel for every parameter) where the device has one, unless the optimizer step is compiled
    (``compile_step``, see :func:`resolve_compile_step`: Dynamo does not trace the fused kernel, it fuses the
    foreach step itself); ``capturable`` (step counters on the device) for an update captured in a CUDA graph.
    """
    optimizer = torch.optim.Adam(
        loss_module.parameters(),
        lr=torch.tensor(train_cfg.lr, device=device if device.type == "cuda" else "cpu"),
        eps=train_cfg.adam_eps,
        fused=device.type in ("cpu", "cuda") and not compile_step,
        capturable=capturable,
    )
    optimizer.register_load_state_dict_post_hook(_KeepBuiltSettings(optimizer))
    return optimizer


@dataclass(frozen=True)
class AdamStepScale:
    """How much of Adam's step its epsilon leaves (Kingma and Ba 2015, https://arxiv.org/abs/1412.6980).

    Adam moves each element by ``lr * m_hat / (sqrt(v_hat) + eps)``; where the gradient's running scale
    ``sqrt(v_hat)`` is small against ``eps``, the step shrinks to about ``lr * m_hat / eps``. A DQN's gradients are
    small where its TD errors are (sparse rewards, a Huber loss), so an epsilon chosen for another loss can set the
    effective learning rate of most of the network. Both shares are weighted by each element's undamped step
    ``|m_hat| / sqrt(v_hat)``: an element whose gradient has stopped (a ReLU that no longer fires) has a vanishing
    ``m_hat`` and counts for nothing, however small its ``v_hat`` has decayed.
    """

    fraction: float  # sum |m_hat| / (sqrt(v_hat) + eps) over sum |m_hat| / sqrt(v_hat): the step's size against its undamped size (1: undamped)
    below_eps: float  # share of the undamped step on elements where sqrt(v_hat) < eps (their step is less than half its undamped size)
    elements: int  # elements with a gradient history (v > 0)
    no_gradient: int  # elements with v = 0: no gradient yet, or none for so long that v has decayed to 0 in float32


@torch.no_grad()
def adam_step_scale(optimizer_state: dict[str, Any], *, indices: list[int] | None = None) -> AdamStepScale:
    """:class:`AdamStepScale` of an Adam ``state_dict()`` (live, or a checkpoint's ``"optimizer"``), over the
    parameters numbered ``indices`` in it (all by default); the shares are NaN before the first step."""
    damped, undamped, below, elements, no_gradient = 0.0, 0.0, 0.0, 0, 0
    for group in optimizer_state["param_groups"]:
        (beta1, beta2), eps = group["betas"], group["eps"]
        for index in group["params"]:
            state = optimizer_state["state"].get(index, {})
            if (indices is not None and index not in indices) or "exp_avg_sq" not in state:
                continue
            step, seen = float(state["step"]), state["exp_avg_sq"] > 0
            scale = (state["exp_avg_sq"].float()[seen] / (1 - beta2 ** step)).sqrt()  # sqrt(v_hat) [N]
            momentum = state["exp_avg"].float()[seen].abs() / (1 - beta1 ** step)  # |m_hat| [N]
            full = momentum / scale  # the undamped step per unit of learning rate [N]
            damped += (momentum / (scale + eps)).sum().item()
            undamped += full.sum().item()
            below += full[scale < eps].sum().item()
            elements += scale.numel()
            no_gradient += seen.numel() - scale.numel()
    share = (lambda part: part / undamped) if undamped > 0 else (lambda part: float("nan"))
    return AdamStepScale(fraction=share(damped), below_eps=share(below), elements=elements, no_gradient=no_gradient)


class _KeepBuiltSettings:
    """After ``Optimizer.load_state_dict``: the settings this run built, not the checkpoint's.

    torch restores each parameter group whole, so a checkpoint would bring back the writing run's ``fused``,
    ``capturable`` and ``foreach`` (a GPU run's capturable Adam on a CPU, or a CPU run's on a GPU whose updates are
    captured) and a new learning-rate tensor on the CPU (a captured update would keep reading the old one). This
    hook puts back the built settings and the built learning-rate tensor, filled with the checkpoint's rate, and
    moves Adam's step counters where those settings want them.
    """

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.built = [{key: group[key] for key in ("lr", "fused", "capturable", "foreach")} for group in optimizer.param_groups]

    def __call__(self, optimizer: torch.optim.Optimizer) -> None:
        for group, built in zip(optimizer.param_groups, self.built, strict=True):
            built["lr"].fill_(float(group["lr"]))  # (a host read at load time only)
            group.update(built)
            on_device = bool(group["fused"] or group["capturable"])
            for parameter in group["params"]:
                state = optimizer.state.get(parameter, {})
                if "step" in state:
                    state["step"] = state["step"].to(parameter.device if on_device else "cpu", torch.float32)


def resolve_compile_step(train_cfg: DictConfig, device: torch.device) -> bool:
    """Whether gradient clipping and the Adam step are compiled too (``train.compile_step``; with ``train.compile``).

    ``auto`` compiles them on a GPU, where the eager step is a dozen small kernel launches per update (TorchRL's DQN
    example compiles its whole update the same way; not measured on a GPU here yet: ``benchmarks/gpu_check.py``),
    and not on a CPU, where the compiled step was measured slower than fused Adam (docs/design/devices.md).
    """
    if not train_cfg.compile:
        return False
    if train_cfg.compile_step == "auto":
        return device.type == "cuda"
    return bool(train_cfg.compile_step)


def make_lr_scheduler(train_cfg: DictConfig, optimizer: torch.optim.Optimizer, *, total_updates: int) -> LRScheduler | None:
    """A learning-rate schedule over ``total_updates`` gradient updates; ``None`` for a constant rate."""
    if train_cfg.lr_schedule == "constant":
        return None
    if train_cfg.lr_schedule == "linear":
        return LinearLR(optimizer, start_factor=1.0, end_factor=train_cfg.lr_final / train_cfg.lr, total_iters=total_updates)
    return CosineAnnealingLR(optimizer, T_max=total_updates, eta_min=train_cfg.lr_final)


def make_target_updater(train_cfg: DictConfig, loss_module: DQNLoss) -> HardUpdate | SoftUpdate:
    """Hard copies every ``target_update_steps`` gradient updates, or Polyak averaging after every update."""
    if train_cfg.target_update == "hard":
        # HardUpdate copies on the call after its counter reaches the interval, i.e. every interval + 1 calls.
        return HardUpdate(loss_module, value_network_update_interval=train_cfg.target_update_steps - 1)
    return SoftUpdate(loss_module, tau=train_cfg.target_tau)


def make_gradient_update(
    train_cfg: DictConfig,
    loss_module: DQNLoss,
    optimizer: torch.optim.Optimizer,
    *,
    transition_keys: tuple,
    device: torch.device,
) -> GradientUpdate:
    """The gradient step as ``train.py`` runs it (and the learner benchmark measures it).

    Args:
        train_cfg: the ``train`` config section (clipping, compile, compile_step, cudagraphs, n-step).
        loss_module, optimizer: from :func:`make_loss` and :func:`make_optimizer`.
        transition_keys: what a stored transition of the env holds (``rlpipe.envs.transition_keys``).
        device: where the learner's parameters live.
    """
    if train_cfg.n_step > 1:  # n-step transitions carry the steps they span: TD(0) bootstraps with gamma ** steps
        transition_keys = transition_keys + (STEPS_TO_NEXT_OBS_KEY,)
    if train_cfg.cudagraphs and device.type != "cuda":
        raise ConfigError(f"train.cudagraphs=true needs a CUDA device, and the learner runs on {device}: set train.device=cuda "
                          f"on a GPU machine, or train.cudagraphs=false")
    return GradientUpdate(
        loss_module,
        optimizer,
        max_grad_norm=train_cfg.max_grad_norm,
        compile=train_cfg.compile,
        compile_step=resolve_compile_step(train_cfg, device),
        cudagraphs=train_cfg.cudagraphs,
        device=device,
        transition_keys=transition_keys,
    )


@dataclass(frozen=True)
class UpdateResult:
    """What one gradient update reports, as device tensors (reading them forces no host sync)."""

    loss: torch.Tensor  # []
    priority: torch.Tensor  # [B] |TD error|, the new PER priority of each sampled transition
    grad_norm: torch.Tensor  # [] global L2 norm of the gradient before clipping


class GradientUpdate:
    """One double-DQN gradient step on a sampled batch: loss -> backward -> clip -> Adam step.

    With ``compile``, ``torch.compile`` builds one graph for the loss: the ``DQNLoss`` forward, whose backward
    AOTAutograd compiles too. The sampled tensors go in as plain tensors and the TensorDict that ``DQNLoss`` reads
    is rebuilt inside the graph, where it costs nothing. ``loss.backward()`` stays outside (Dynamo does not trace
    it). With ``compile_step`` as well, gradient clipping and the Adam step are a second graph (PyTorch's compiled
    optimizer: the per-parameter updates fused into a few kernels), the rest of "the whole update compiled" as
    TorchRL's DQN example compiles it; on a CPU it was measured slower than fused Adam, so ``auto`` takes it on GPUs
    only. This brings ``DQNLoss`` to the speed of a hand-written PyTorch update (``benchmarks/learner_throughput.py``).

    With ``cudagraphs``, each update (loss, backward, clipping, Adam) replays one captured CUDA graph
    (:class:`CapturedUpdate`): one launch instead of about a hundred.

    Args:
        loss_module: the ``DQNLoss``; its online parameters are updated in place.
        optimizer: the optimizer over those parameters (capturable, its learning rate on the GPU, for ``cudagraphs``).
        max_grad_norm: the global gradient norm is clipped to this value.
        compile: compile the loss graph (the first call compiles).
        device: where the learner's parameters live; sampled tensors are moved there.
        transition_keys: what a sampled transition holds (``rlpipe.envs.transition_keys``): ``TRANSITION_KEYS``,
            plus the action masks of state and next state for masked envs.
        compile_step: compile gradient clipping and the optimizer step too.
        cudagraphs: capture the update in a CUDA graph after a few eager calls (CUDA only).
    """

    def __init__(
        self,
        loss_module: DQNLoss,
        optimizer: torch.optim.Optimizer,
        *,
        max_grad_norm: float,
        compile: bool,
        device: torch.device,
        transition_keys: tuple = TRANSITION_KEYS,
        compile_step: bool = False,
        cudagraphs: bool = False,
    ) -> None:
        self.loss_module = loss_module
        self.transition_keys = transition_keys
        self.optimizer = optimizer
        self.max_grad_norm = max_grad_norm
        self.device = device
        self._parameters = [p for group in optimizer.param_groups for p in group["params"]]
        loss_module.in_keys  # DQNLoss fills in_keys on first use; doing it now spares a recompile at update 2
        self._loss = torch.compile(self._eager_loss, dynamic=False) if compile else self._eager_loss
        self._step = torch.compile(self._eager_step, dynamic=False) if compile_step else self._eager_step
        self._update = CapturedUpdate(self._eager_update) if cudagraphs else self._eager_update
        # Sampled tensors in host memory cross to a GPU from pinned memory, without a host wait.
        self._pin = device.type == "cuda"

    def __call__(self, batch: TensorDict) -> UpdateResult:
        """Updates the online network on ``batch`` (``transition_keys``, plus PER weights when prioritized)."""
        tensors = [self._to_device(batch.get(key)) for key in self.transition_keys]
        weight = batch.get(PRIORITY_WEIGHT_KEY, None)
        if weight is not None:
            weight = self._to_device(weight)
        loss, priority, grad_norm = self._update(weight, *tensors)
        return UpdateResult(loss=loss, priority=priority, grad_norm=grad_norm)

    def _to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        if self._pin and tensor.device.type == "cpu":
            tensor = tensor.pin_memory()
        return tensor.to(self.device, non_blocking=True)

    def _eager_update(self, weight: torch.Tensor | None, *tensors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The loss ``[]``, the new priorities ``[B]`` and the gradient norm ``[]`` of one update on a batch."""
        loss, priority = self._loss(weight, *tensors)
        loss.backward()
        grad_norm = self._step()
        self.optimizer.zero_grad(set_to_none=False)  # the gradients keep their memory (a captured graph's addresses)
        return loss.detach(), priority, grad_norm.detach()

    def _eager_step(self) -> torch.Tensor:
        """Clips the gradient's global L2 norm and steps the optimizer; returns the norm before clipping ``[]``."""
        grad_norm = torch.nn.utils.clip_grad_norm_(self._parameters, self.max_grad_norm)
        self.optimizer.step()
        return grad_norm

    def _eager_loss(self, weight: torch.Tensor | None, *tensors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss ``[]`` and the new priorities ``[B]`` of a batch.

        Args:
            weight: ``[B]`` PER importance weights, or None.
            tensors: one per ``transition_keys``: observation ``[B, *O]``, action ``[B]``, next observation
                ``[B, *O]``, reward, done and terminated ``[B, 1]``, then the masks ``[B, A]`` if any.
        """
        batch = TensorDict(dict(zip(self.transition_keys, tensors)), batch_size=tensors[1].shape[:1])
        if weight is not None:
            batch.set(PRIORITY_WEIGHT_KEY, weight)
        loss = self.loss_module(batch)["loss"]
        squared_td_error = batch.get(self.loss_module.tensor_keys.priority)  # [B, 1], written by DQNLoss
        priority = squared_td_error.reshape(-1).sqrt()  # [B] |delta|: see rlpipe.replay for why not delta^2
        return loss, priority


class CapturedUpdate:
    """A gradient update replayed from one CUDA graph (PyTorch's whole-network capture:
    https://pytorch.org/docs/stable/notes/cuda.html#whole-network-capture).

    The first ``warmup_calls`` calls run eagerly on a side stream (autograd and the optimizer set up their state
    there, and ``torch.compile`` compiles); the next call copies its inputs into static tensors, captures the update
    and replays it; every later call copies its inputs into those tensors and replays. Every call is exactly one
    update on its own batch. Outputs are cloned: a replay overwrites the graph's outputs, and a learning phase keeps
    the losses and priorities of all its updates. What changes between updates must change in place at fixed
    addresses: the learning rate is a GPU tensor that the schedule fills, Adam is capturable, the target network
    is copied into in place (TorchRL's ``HardUpdate``), the gradients are zeroed, never freed.

    Hand-written rather than ``tensordict.nn.CudaGraphModule`` (which TorchRL's examples use): that module calls
    ``torch.cuda.synchronize()`` before every replay, a host wait per update where rlpipe allows one per learning
    phase. Runs on CUDA only; not yet run on a GPU (``benchmarks/gpu_check.py`` runs it first).
    """

    def __init__(self, update: Callable[..., tuple[torch.Tensor, ...]], *, warmup_calls: int = 3) -> None:
        self.update = update
        self.warmup_calls = warmup_calls
        self.calls = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self._static_inputs: list[torch.Tensor | None] = []
        self._static_outputs: tuple[torch.Tensor, ...] = ()

    def __call__(self, *inputs: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        self.calls += 1
        if self._static_inputs:  # the graph reads what it captured: the same inputs present (PER weights or none)
            assert [t is None for t in inputs] == [t is None for t in self._static_inputs], "inputs differ from the captured ones"
        if self.calls <= self.warmup_calls:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                outputs = self.update(*inputs)
            torch.cuda.current_stream().wait_stream(side)
            return outputs
        if self.graph is None:
            self._static_inputs = [None if t is None else t.clone() for t in inputs]
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self._static_outputs = self.update(*self._static_inputs)
            self.graph = graph  # (only once captured: a failed capture is not replayed)
        else:
            for static, new in zip(self._static_inputs, inputs, strict=True):
                if static is not None:
                    static.copy_(new, non_blocking=True)
        self.graph.replay()
        return tuple(output.clone() for output in self._static_outputs)


class TargetUpdaterState:
    """Exposes ``HardUpdate``'s count of updates since its last copy to checkpoints (TorchRL keeps it as a plain
    attribute); a ``SoftUpdate`` has no such state."""

    def __init__(self, updater: HardUpdate | SoftUpdate) -> None:
        self.updater = updater

    def state_dict(self) -> dict[str, int]:
        return {"counter": getattr(self.updater, "counter", 0)}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        if hasattr(self.updater, "counter"):
            self.updater.counter = int(state_dict["counter"])


@dataclass(frozen=True)
class PhaseResult:
    """What a learning phase of ``K`` gradient updates reports, as device tensors (reading them forces no sync)."""

    losses: torch.Tensor  # [K]
    priorities: torch.Tensor  # [K * B] |TD error| of each sampled transition, in the order sampled
    grad_norms: torch.Tensor  # [K] global L2 norm of each update's gradient before clipping


class Learner:
    """One agent's learning: the double-DQN loss, Adam, the learning-rate schedule, the target updates and the
    gradient step, with the stateful pieces a checkpoint stores.

    ``rlpipe/train.py`` runs :meth:`learn` once per learning phase, and ``benchmarks/learner_throughput.py``
    measures the same call; a second agent learning from the same minibatches is a second instance
    (``rlpipe.rnd.RNDLearner`` holds two, behind this same interface).

    Args:
        train_cfg: the ``train`` config section.
        q_network: the online Q-network (updated in place).
        transition_keys: what a stored transition of the env holds (``rlpipe.envs.transition_keys``).
        device: where the learner's parameters live.
        total_updates: the gradient updates of the whole run (the length of a learning-rate schedule).
        reward_key: the reward this learner learns from, in place of the transition's ``("next", "reward")``
            (``rlpipe.keys.TRANSITION_FIELDS``); the other fields are read as stored.
        terminated_key: the flag that stops this learner's bootstrap, in place of ``("next", "terminated")``
            (RND's non-episodic exploration agent reads a flag its caller sets to all False).
    """

    def __init__(
        self,
        train_cfg: DictConfig,
        q_network: QValueActor,
        *,
        transition_keys: tuple,
        device: torch.device,
        total_updates: int,
        reward_key: tuple[str, str] = REWARD_KEY,
        terminated_key: tuple[str, str] = TERMINATED_KEY,
    ) -> None:
        self.q_network = q_network
        self.terminated_key = terminated_key
        own = {REWARD_KEY: reward_key, TERMINATED_KEY: terminated_key}
        transition_keys = tuple(own.get(key, key) for key in transition_keys)
        self.loss_module = make_loss(train_cfg, q_network, reward_key=reward_key, terminated_key=terminated_key)
        self.optimizer = make_optimizer(train_cfg, self.loss_module, device, compile_step=resolve_compile_step(train_cfg, device),
                                        capturable=train_cfg.cudagraphs and device.type == "cuda")
        self.lr_scheduler = make_lr_scheduler(train_cfg, self.optimizer, total_updates=total_updates)
        self.target_updater = make_target_updater(train_cfg, self.loss_module)
        self.gradient_update = make_gradient_update(train_cfg, self.loss_module, self.optimizer,
                                                    transition_keys=transition_keys, device=device)
        self.batch_size = train_cfg.batch_size

    progress_names: tuple[str, ...] = ()  # metrics the progress bar shows beyond the loop's own (RND: alpha, ...)
    stored_keys: tuple = ()  # what the replay stores beyond the env's transition keys (RND: its input, its flags)

    @property
    def acting_network(self) -> QValueActor:
        """The Q-network the collector's policy acts with (this agent's own)."""
        return self.q_network

    def observe(self, batch: TensorDictBase) -> None:
        """Sees each collect's transitions before they are stored; a single agent keeps nothing of them (RND keeps
        statistics and may write :attr:`stored_keys` into ``batch``)."""

    def schedule(self, step: int) -> None:
        """Sets schedules kept by the learner for the agent-step counter; a single agent has none beyond the
        learning-rate schedule, which steps with the updates."""

    def learn(self, block: TensorDict) -> PhaseResult:
        """One gradient update per minibatch of ``block`` (``[K * B]`` sampled transitions, split into ``K``
        minibatches of ``B``), each followed by the target update and the learning-rate schedule's step."""
        results = []
        for minibatch in block.split(self.batch_size):  # [B] each
            results.append(self.gradient_update(minibatch))
            self.target_updater.step()
            if self.lr_scheduler is not None:
                self.lr_scheduler.step()
        return PhaseResult(losses=torch.stack([r.loss for r in results]), priorities=torch.cat([r.priority for r in results]),
                           grad_norms=torch.stack([r.grad_norm for r in results]))

    @property
    def lr(self) -> float:
        """The learning rate now."""
        return float(self.optimizer.param_groups[0]["lr"])

    def set_lr(self, lr: float) -> None:
        """Sets every parameter group's learning rate (a tensor, changed in place: a compiled update keeps its graph)."""
        for group in self.optimizer.param_groups:
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(lr)
            else:
                group["lr"] = lr

    @torch.no_grad()
    def q_mean(self, block: TensorDictBase) -> float:
        """Mean of ``max_a Q(s, a)`` over sampled states (Mnih et al. 2015 track the same quantity)."""
        device = next(self.q_network.parameters()).device
        states = block.select(*self.q_network.in_keys).to(device)  # the observation, and the action mask if any
        return self.q_network(states).get("chosen_action_value").mean().item()

    def metrics(self, block: TensorDictBase | None) -> dict[str, float]:
        """The learning rate, the mean greedy Q-value over ``block``, the latest phase's sample (NaN before any),
        and the share of Adam's step that its epsilon leaves (:class:`AdamStepScale`; NaN before the first update)."""
        return {"train/lr": self.lr, "train/q_mean": self.q_mean(block) if block is not None else float("nan"),
                "train/adam_step_fraction": adam_step_scale(self.optimizer.state_dict()).fraction}

    def pieces(self) -> dict[str, Any]:
        """The learner's stateful pieces, by the names checkpoints store them under."""
        return {
            "q_network": self.q_network,
            "target_network": self.loss_module.target_value_network_params,
            "optimizer": self.optimizer,
            "lr_scheduler": self.lr_scheduler,
            "target_updater": TargetUpdaterState(self.target_updater),
        }


class Agents(Protocol):
    """What the training loop needs of the agent(s) it trains: :class:`Learner` is one agent; ``rlpipe.rnd.RNDLearner``
    is two agents and RND behind the same interface. ``rlpipe.run`` picks the builder by ``exploration.kind``."""

    q_network: QValueActor  # the agent that is evaluated, recorded and checkpointed as best.pt
    lr_scheduler: LRScheduler | None  # its learning-rate schedule (None: constant)
    stored_keys: tuple  # what the replay stores beyond the env's transition keys
    progress_names: tuple[str, ...]  # metrics the progress bar shows beyond the loop's own

    @property
    def acting_network(self) -> TensorDictModuleBase: ...  # what the collector's policy acts with

    def observe(self, batch: TensorDictBase) -> None: ...  # each collect, before it is stored

    def schedule(self, step: int) -> None: ...  # schedules kept by the agents, at the agent-step counter

    def learn(self, block: TensorDict) -> PhaseResult: ...  # one learning phase on a sampled block

    def metrics(self, block: TensorDictBase | None) -> dict[str, float]: ...  # logged every log interval

    def pieces(self) -> dict[str, Any]: ...  # the stateful pieces a checkpoint stores, by name

    def set_lr(self, lr: float) -> None: ...  # a resumed run's constant learning rate


def make_learner(
    train_cfg: DictConfig, make_network: Callable[[], QValueActor], *, transition_keys: tuple, device: torch.device,
    total_updates: int,
) -> Learner:
    """One agent learning from the env's reward (``exploration`` other than ``rnd``).

    Args:
        train_cfg: the ``train`` section.
        make_network: builds the agent's Q-network for the env.
        transition_keys: what a stored transition of the env holds (``rlpipe.envs.transition_keys``).
        device: where the network lives.
        total_updates: the gradient updates of the whole run.
    """
    return Learner(train_cfg, make_network(), transition_keys=transition_keys, device=device, total_updates=total_updates)
