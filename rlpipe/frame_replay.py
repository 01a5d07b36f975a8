"""Replay memory for frame-stacked pixel observations that stores every frame once.

Each transition's observation and next observation are stacks of the last ``N`` frames; storing them would take
``2 * N`` frames per transition (113 GB for a million 8-frame transitions of 84x84 pixels). Here each frame is
stored once and both stacks are rebuilt at sampling time, as in Dopamine: 7.07 GB for a million transitions.
TorchRL's own route (``CatFrames.make_rb_transform_and_sampler``) stores the newest frame of both the observation
and the next observation (twice this) and samples trajectory slices; this memory samples single transitions with
TorchRL's sum-tree ``PrioritizedSampler``.

Layout: ``num_streams`` rings of ``capacity // num_streams`` slots, one per environment of the collector, so that
an environment's frames stay consecutive. A stream's slot ``j`` holds:

- ``frame [H, W]`` uint8 (``[H, W, 3]`` in colour): the newest frame of observation ``s_t``;
- ``action``, ``reward``, ``terminated`` (the learner's terminal: a lost life with episodic life), ``done``: those
  of the transition ``s_t -> s_{t+1}``;
- ``episode_step``: the frame's index within its episode (0 for the reset frame, from TorchRL's ``StepCounter``);
- ``starts_transition``: False for the final frame of an episode, which only serves as the last next observation.

An episode with T transitions takes T + 1 slots. The observation at slot ``j`` is
``frame[j - min(k, episode_step[j])]`` for ``k = N-1, ..., 0``: consecutive slots of the episode, padded at its
start with its first frame, exactly as ``CatFrames(padding="same")`` built it; the next observation is the same
rule at slot ``j + 1``.

**n-step returns** (``n_step > 1``; Sutton 1988, as in Rainbow, Hessel et al. 2018,
https://arxiv.org/abs/1710.02298): the transition sampled at slot ``j`` covers the ``m <= n`` transitions
``j, ..., j + m - 1``, where ``m`` stops early at the first one that is terminal for the learner (a lost life with
episodic life) or ends the episode (``done``). It carries the discounted reward
``r_j + gamma * r_{j+1} + ... + gamma^(m-1) * r_{j+m-1}``, the terminal and done flags of its last transition, the
next observation at slot ``j + m`` and ``steps_to_next_obs = m``, which TorchRL's TD(0) estimator reads to
bootstrap with ``gamma^m``: ``y = R + gamma^m * (1 - terminated) * Q_target(s_{j+m}, argmax Q(s_{j+m}, .))``.
Hand-written because TorchRL's ``MultiStepTransform`` works on stored trajectories of full stacks, and this
memory stores single frames.

A slot can be sampled when it starts a transition, the slots of its n-step window have been written and continue
the same episode, and the oldest frame its observation needs has not been overwritten. All other slots have zero
sampling mass: their sum-tree entry is 0 and their min-tree entry +inf, so they are never drawn and do not change
the importance weights of the others. The sampler's other rules are TorchRL's (``rlpipe.replay`` documents the
priority convention): a transition enters with the largest priority seen so far.

Shape legend: ``E`` streams, ``S`` slots per stream, ``N`` stacked frames, ``H``/``W`` frame size (``...``: the 3
colour channels of an RGB frame, nothing for grayscale), ``B`` batch.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from tensordict import MemoryMappedTensor, TensorDict, TensorDictBase
from torchrl.data import PrioritizedSampler

from rlpipe.keys import EPISODE_LENGTH_KEY as EPISODE_STEP_KEY
from rlpipe.keys import INDEX_KEY, OBSERVATION_KEY, PRIORITY_WEIGHT_KEY, STEPS_TO_NEXT_OBS_KEY, TRANSITION_FIELDS


@dataclass(frozen=True)
class _CapacityProxy:
    """What TorchRL's sampler reads from a storage: every slot is a candidate, empty ones have zero mass."""

    capacity: int
    ndim: int = 1
    device: None = None

    def __len__(self) -> int:
        return self.capacity


class FrameReplay:
    """A frame-deduplicated replay memory with prioritized (or uniform) sampling of transitions.

    It offers what the training loop uses of a TorchRL replay buffer: ``extend(batch)``, ``sample(n)``,
    ``update_priority(index, priority)``, ``len()``, ``sampler.beta``, ``dumps``/``loads``.

    Args:
        capacity: frames kept in all (about one per transition).
        num_streams: environments whose transitions arrive side by side (the collector's ``[E, T]`` batches).
        frame_shape: one frame: ``(H, W)`` grayscale, ``(H, W, 3)`` RGB (``...`` below).
        frame_stack: ``N``, frames per observation.
        alpha: the priority exponent (``alpha=0, beta=0`` samples uniformly).
        beta: the importance-sampling exponent.
        priority_eps: added to every priority.
        n_step: transitions summed into one sampled transition (1: plain one-step transitions).
        gamma: the discount of the n-step reward sum (unused with ``n_step=1``).
        terminal_key: the collected key that the learner treats as terminal (``("next", "end-of-life")`` with
            episodic life).
        memmap_dir: keep the slots in memory-mapped files in this directory instead of RAM.
        device: where the frames live (the frame ring: 7.1 GB for a million 84x84 frames). Sampled observation
            stacks are gathered there, so that a GPU learner receives only indices and the small fields over the
            bus. The bookkeeping (episode steps, flags, rewards, actions) and the sum tree stay in host memory,
            where writing and sampling read them without waiting for the device.
    """

    def __init__(
        self,
        *,
        capacity: int,
        num_streams: int,
        frame_shape: tuple[int, ...],
        frame_stack: int,
        alpha: float,
        beta: float,
        priority_eps: float,
        n_step: int = 1,
        gamma: float = 0.99,
        terminal_key: tuple[str, str] = ("next", "terminated"),
        memmap_dir: str | None = None,
        device: torch.device = torch.device("cpu"),
    ) -> None:
        if capacity // num_streams <= 2 * (frame_stack + n_step):
            raise ValueError(f"capacity {capacity} is too small for {num_streams} streams of {frame_stack}-frame stacks")
        self.num_streams = num_streams
        self.slots_per_stream = capacity // num_streams
        self.frame_stack = frame_stack
        self.n_step = n_step
        self.gamma = gamma
        self.terminal_key = terminal_key
        self.memmap_dir = memmap_dir
        if memmap_dir is not None and device.type != "cpu":
            raise ValueError(f"memory-mapped frames live in host memory, not on {device}")
        self.device = device
        # TorchRL's C++ sum tree, on the CPU whatever the frames' device (its CUDA tree is not in the published wheel)
        self.sampler = PrioritizedSampler(max_capacity=self.capacity, alpha=alpha, beta=beta, eps=priority_eps, device="cpu")
        self._proxy = _CapacityProxy(self.capacity)
        self.slots = self._allocate(frame_shape)  # [E, S]
        self.written = torch.zeros(num_streams, dtype=torch.long)  # frames written to each stream, ever
        self.sampleable = torch.zeros(num_streams, self.slots_per_stream, dtype=torch.bool)

    @property
    def capacity(self) -> int:
        return self.num_streams * self.slots_per_stream

    def __len__(self) -> int:
        """Frames held."""
        return int(self.written.clamp(max=self.slots_per_stream).sum())

    def _allocate(self, frame_shape: tuple[int, ...]) -> TensorDict:
        shape = (self.num_streams, self.slots_per_stream)
        fields = {
            "frame": ((*shape, *frame_shape), torch.uint8),
            "action": (shape, torch.long),
            "reward": (shape, torch.float32),
            "terminated": (shape, torch.bool),
            "done": (shape, torch.bool),
            "episode_step": (shape, torch.int32),
            "starts_transition": (shape, torch.bool),
        }
        if self.memmap_dir is None:
            # Frames are read only once written: empty memory is not touched (nor resident) until then. The
            # bookkeeping fields start at zero (no slot starts a transition).
            # Only the frames leave host memory (made there directly: no 7 GB copy through the host).
            tensors = {
                name: torch.empty(size, dtype=dtype, device=self.device) if name == "frame" else torch.zeros(size, dtype=dtype)
                for name, (size, dtype) in fields.items()
            }
        else:
            directory = Path(self.memmap_dir)
            directory.mkdir(parents=True, exist_ok=True)
            tensors = {
                name: MemoryMappedTensor.empty(size, dtype=dtype, filename=str(directory / f"{name}.memmap"))
                for name, (size, dtype) in fields.items()
            }
        return TensorDict(tensors, batch_size=shape)

    # ------------------------------------------------------------------ writing

    def extend(self, batch: TensorDictBase) -> None:
        """Stores a collector batch: ``[E, T]`` transitions (``[T]`` for one stream), in collection order."""
        if batch.batch_dims == 1:
            batch = batch.unsqueeze(0)
        if batch.shape[0] != self.num_streams:
            raise ValueError(f"batch has {batch.shape[0]} streams, the replay memory {self.num_streams}")
        for stream in range(self.num_streams):
            self._extend_stream(stream, batch[stream])

    def _extend_stream(self, stream: int, batch: TensorDictBase) -> None:
        """Writes T transitions: one frame each, plus the final next frame of every episode that ends."""
        done = batch.get(("next", "done")).reshape(-1)  # [T]
        n_transitions = done.numel()
        # Row of each transition among the rows written: earlier episode ends add one final-frame row each.
        row = torch.arange(n_transitions) + torch.cumsum(done.long(), 0) - done.long()  # [T]
        n_rows = n_transitions + int(done.sum())
        rows = TensorDict(
            {
                "frame": torch.zeros(n_rows, *self.slots["frame"].shape[2:], dtype=torch.uint8),
                "action": torch.zeros(n_rows, dtype=torch.long),
                "reward": torch.zeros(n_rows),
                "terminated": torch.zeros(n_rows, dtype=torch.bool),
                "done": torch.zeros(n_rows, dtype=torch.bool),
                "episode_step": torch.zeros(n_rows, dtype=torch.int32),
                "starts_transition": torch.zeros(n_rows, dtype=torch.bool),
            },
            batch_size=[n_rows],
        )
        rows["frame"][row] = batch.get(OBSERVATION_KEY)[:, -1]  # newest frame of each observation
        rows["action"][row] = batch.get("action").reshape(-1)
        rows["reward"][row] = batch.get(("next", "reward")).reshape(-1)
        rows["terminated"][row] = batch.get(self.terminal_key).reshape(-1)
        rows["done"][row] = done
        rows["episode_step"][row] = batch.get(EPISODE_STEP_KEY).reshape(-1).int()
        rows["starts_transition"][row] = True
        final = row[done] + 1  # final frames of the episodes that ended
        rows["frame"][final] = batch.get(("next", OBSERVATION_KEY))[done][:, -1]
        rows["episode_step"][final] = batch.get(("next", EPISODE_STEP_KEY)).reshape(-1)[done].int()

        slots_per_stream = self.slots_per_stream
        first_write = int(self.written[stream])
        slot = (first_write + torch.arange(n_rows)) % slots_per_stream  # [n_rows]
        self.slots[stream][slot] = rows.exclude("frame")
        self.slots["frame"][stream, slot.to(self.device)] = rows["frame"].to(self.device, non_blocking=True)
        self.written[stream] += n_rows

        # Sampleability changes only near the write: the new slots, the n slots before them (their n-step
        # windows may now be complete) and, once the ring wraps, the slots after them (their oldest frames were
        # just overwritten).
        back = torch.arange(min(self.n_step, first_write), 0, -1)  # [<= n]
        before = (first_write - back) % slots_per_stream
        # A slot before the write that is sampleable already (its window ended early, at a terminal or an episode
        # end) keeps the priority the learner gave it; only newly complete windows enter at the largest priority.
        before = before[~self.sampleable[stream, before]]
        renewed = torch.cat([before, slot])
        self._set_sampleable(stream, renewed, self._can_sample(stream, renewed))
        if first_write + n_rows > slots_per_stream:
            after = (first_write + n_rows + torch.arange(self.frame_stack - 1)) % slots_per_stream
            self._exclude(stream, after[~self._can_sample(stream, after)])  # their history was overwritten

    def _write_number(self, stream: int, slot: torch.Tensor) -> torch.Tensor:
        """The index, among all frames ever written to ``stream``, of the frame now in ``slot``."""
        written = int(self.written[stream])
        return written - 1 - (written - 1 - slot) % self.slots_per_stream

    def _can_sample(self, stream: int, slot: torch.Tensor) -> torch.Tensor:
        """Whether the transition starting at ``slot`` can be rebuilt and sampled ([n] bool)."""
        slots = self.slots[stream]
        step = slots["episode_step"][slot].long()  # [n]
        number = self._write_number(stream, slot)
        oldest_needed = number - step.clamp(max=self.frame_stack - 1)
        ahead = (slot[:, None] + torch.arange(self.n_step)) % self.slots_per_stream  # [n, n_step]
        window = _window(slots, ahead)  # [n, n_step]: which transitions the n-step window covers
        length = window.sum(-1)  # [n] m
        next_slot = (slot + length) % self.slots_per_stream
        return (
            slots["starts_transition"][slot]
            & (number + length < self.written[stream])  # the window's next frame has been written...
            & (slots["episode_step"][next_slot].long() == step + length)  # ...and continues this episode
            & (oldest_needed >= self.written[stream] - self.slots_per_stream)  # the history is still there
        )

    def _set_sampleable(self, stream: int, slot: torch.Tensor, sampleable: torch.Tensor) -> None:
        """Gives the newly sampleable transitions the largest priority seen; takes the sampling mass of the others."""
        include = stream * self.slots_per_stream + slot[sampleable]
        if include.numel():
            self.sampler.update_priority(include, self.sampler.default_priority)
        self.sampleable[stream, slot[sampleable]] = True
        self._exclude(stream, slot[~sampleable])

    def _exclude(self, stream: int, slot: torch.Tensor) -> None:
        """Takes the sampling mass of the transitions starting at ``slot`` ([n]); they are not sampled again."""
        if slot.numel():
            index = stream * self.slots_per_stream + slot
            # TorchRL's update_priority writes (p + eps) ** alpha > 0; zero mass needs the trees themselves.
            self.sampler._sum_tree[index] = torch.zeros(index.numel())
            self.sampler._min_tree[index] = torch.full((index.numel(),), math.inf)
            self.sampleable[stream, slot] = False

    # ------------------------------------------------------------------ reading

    def sample(self, batch_size: int) -> TensorDict:
        """``batch_size`` transitions with ``TRANSITION_KEYS`` (observation stacks ``[B, N, H, W, ...]``), their global
        ``index`` and importance weights ``priority_weight``."""
        if not self.sampleable.any():
            raise RuntimeError("the replay memory holds no complete transition yet")
        index, info = self.sampler.sample(self._proxy, batch_size)  # [B]
        batch = self.transitions(index)
        batch.set(PRIORITY_WEIGHT_KEY, torch.as_tensor(info[PRIORITY_WEIGHT_KEY], dtype=torch.float32))
        return batch

    def transitions(self, index: torch.Tensor) -> TensorDict:
        """Rebuilds the (n-step) transitions starting at global slot ``index`` ([B]) from their frames."""
        index = index.long()
        stream, slot = index // self.slots_per_stream, index % self.slots_per_stream
        flat = self.slots.view(-1)  # [E * S]
        base = stream * self.slots_per_stream  # [B]
        step = flat["episode_step"][index].long()  # [B]
        ahead = base[:, None] + (slot[:, None] + torch.arange(self.n_step)) % self.slots_per_stream  # [B, n]
        window = _window(flat, ahead)  # [B, n] (all True for n = 1)
        length = window.sum(-1)  # [B] m
        last = ahead.gather(1, (length - 1)[:, None]).squeeze(1)  # [B] the window's last transition
        discount = self.gamma ** torch.arange(self.n_step, dtype=torch.float32)  # [n]
        reward = (flat["reward"][ahead] * discount * window).sum(-1)  # [B] sum_k gamma^k r_{j+k}
        offsets = torch.arange(self.frame_stack - 1, -1, -1)  # [N]: N-1, ..., 0 frames back
        back = torch.minimum(offsets[None, :], step[:, None])  # [B, N]
        back_next = torch.minimum(offsets[None, :], step[:, None] + length[:, None])  # [B, N]
        frames = flat["frame"]  # [E * S, H, W, ...], on self.device
        observation_slot = base[:, None] + (slot[:, None] - back) % self.slots_per_stream  # [B, N]
        next_slot = base[:, None] + (slot[:, None] + length[:, None] - back_next) % self.slots_per_stream  # [B, N]
        observation = frames[observation_slot.to(self.device, non_blocking=True)]  # [B, N, H, W, ...]
        next_observation = frames[next_slot.to(self.device, non_blocking=True)]  # [B, N, H, W, ...]
        batch = TensorDict(
            {
                TRANSITION_FIELDS["observation"]: observation,
                TRANSITION_FIELDS["action"]: flat["action"][index],
                TRANSITION_FIELDS["next_observation"]: next_observation,
                TRANSITION_FIELDS["reward"]: reward.unsqueeze(-1),
                TRANSITION_FIELDS["done"]: flat["done"][last].unsqueeze(-1),
                TRANSITION_FIELDS["terminated"]: flat["terminated"][last].unsqueeze(-1),
                INDEX_KEY: index,
            },
            batch_size=index.shape,
        )
        if self.n_step > 1:
            batch.set(STEPS_TO_NEXT_OBS_KEY, length.unsqueeze(-1))  # [B, 1]: TD(0) bootstraps with gamma ** m
        return batch

    def _filled_slots(self) -> int:
        """Slots per stream that hold data: all of them once any stream's ring has wrapped."""
        return int(self.written.max().clamp(max=self.slots_per_stream)) if self.written.numel() else 0

    def update_priority(self, index: torch.Tensor, priority: torch.Tensor) -> None:
        """New priorities for sampled transitions; a transition that can no longer be sampled keeps zero mass."""
        index = torch.as_tensor(index).long()
        keep = self.sampleable.view(-1)[index]
        self.sampler.update_priority(index[keep], torch.as_tensor(priority)[keep])

    # ------------------------------------------------------------------ checkpoints

    def dumps(self, path: str | Path) -> None:
        """Writes the memory under ``path``: slots as memory-mapped tensors, the sampler as TorchRL dumps it."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        filled = self._filled_slots()  # a memory not yet full is stored up to its last written slot
        stored = self.slots[:, :filled]
        if self.device.type != "cpu":
            stored = stored.to("cpu")  # the frames come back to host memory to be written
        stored.memmap(prefix=path / "slots", copy_existing=True)
        self.sampler.dumps(path / "sampler")
        meta = {
            "written": self.written.tolist(),
            "num_streams": self.num_streams,
            "slots_per_stream": self.slots_per_stream,
            "frame_stack": self.frame_stack,
            "n_step": self.n_step,
        }
        (path / "frame_replay.json").write_text(json.dumps(meta))

    def loads(self, path: str | Path) -> None:
        """Reads a memory written by :meth:`dumps` with the same layout."""
        path = Path(path)
        meta = json.loads((path / "frame_replay.json").read_text())
        layout = (meta["num_streams"], meta["slots_per_stream"], meta["frame_stack"], meta.get("n_step", 1))
        if layout != (self.num_streams, self.slots_per_stream, self.frame_stack, self.n_step):
            raise ValueError(f"stored layout (streams, slots, stack, n-step) {layout} differs from this memory's")
        self.written = torch.tensor(meta["written"], dtype=torch.long)
        self.slots[:, : self._filled_slots()].update_(TensorDict.load_memmap(path / "slots"))
        self.sampler.loads(path / "sampler")
        for stream in range(self.num_streams):
            all_slots = torch.arange(self.slots_per_stream)
            self.sampleable[stream] = self._can_sample(stream, all_slots)


def _window(slots: TensorDict, ahead: torch.Tensor) -> torch.Tensor:
    """Which transitions belong to n-step windows: ``ahead [B, n]`` are the slots ``j, j+1, ..., j+n-1`` of each
    window (in ``slots``); returns ``[B, n]`` bool. Slot ``j`` always does; a later one only while no earlier one
    in the window was terminal for the learner or ended the episode. Slots not yet written hold stale data:
    ``FrameReplay._can_sample`` rejects the windows that reach them."""
    ends = slots["terminated"][ahead] | slots["done"][ahead] | ~slots["starts_transition"][ahead]  # [B, n]
    return torch.cat([torch.ones_like(ends[:, :1]), ~ends[:, :-1].cummax(-1).values], -1)

