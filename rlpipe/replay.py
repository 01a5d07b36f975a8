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
import os
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig
from tensordict import TensorDictBase
from torchrl.data import LazyMemmapStorage, LazyTensorStorage, TensorDictPrioritizedReplayBuffer, TensorDictReplayBuffer
from torchrl.envs import EnvBase
from torchrl.envs.transforms import MultiStepTransform

from rlpipe.config import ConfigError
from rlpipe.envs import terminal_key, transition_keys
from rlpipe.frame_replay import FrameReplay
from rlpipe.keys import OBSERVATION_KEY, REWARD_KEY, STEPS_TO_NEXT_OBS_KEY


CPU = torch.device("cpu")
SCRATCH_MARKER = ".rlpipe-replay-scratch"  # names a directory an rlpipe run created for its memory-mapped replay


class ReplayScratch:
    """A directory this run creates for its memory-mapped replay (``buffer.storage=memmap``), and removes at the end.

    A run deletes only what it created: the directory is new (``rlpipe-replay-<run>-<random>`` inside
    ``buffer.memmap_dir``, or inside the run directory when that is null), carries a marker file naming the owning
    process and its host, and :meth:`remove` deletes nothing that lacks the marker. ``buffer.memmap_dir`` itself and anything
    else in it are never touched, except the marked directories of rlpipe runs on this host whose process no longer
    exists (killed before they could clean up), which the next run there removes.

    Args:
        parent: where to create the directory (made if missing).
        run_name: the run directory's name, part of the scratch directory's name.
    """

    def __init__(self, parent: Path, *, run_name: str) -> None:
        parent.mkdir(parents=True, exist_ok=True)
        _remove_orphans(parent)
        self.path = Path(tempfile.mkdtemp(prefix=f"rlpipe-replay-{run_name}-", dir=parent))
        (self.path / SCRATCH_MARKER).write_text(_owner())  # the owner: an rlpipe run's process, on this host
        self.keep = False  # the run sets buffer.keep_memmap_files here once it trains: a rejected run's files go

    def remove(self) -> None:
        """Deletes the directory and its memory-mapped files, unless told to keep them (or it is not ours)."""
        marker = self.path / SCRATCH_MARKER
        if not marker.is_file():
            return
        if self.keep:
            marker.write_text("kept\n")  # no owner any more: later runs leave it alone
        else:
            shutil.rmtree(self.path, ignore_errors=True)


def _remove_orphans(parent: Path) -> None:
    """Removes the replay directories of rlpipe runs that were killed (SIGKILL, a power cut) before they could:
    marked ones whose owning process is gone. Kept ones (``keep_memmap_files``) have no owner and stay."""
    host = socket.gethostname()
    for candidate in parent.glob("rlpipe-replay-*"):
        marker = candidate / SCRATCH_MARKER
        owner_host, _, pid = (marker.read_text().strip() if marker.is_file() else "").rpartition(" ")
        # Only this host can tell whether a process id is alive (memmap_dir may be shared storage).
        if owner_host == host and pid.isdigit() and not _process_alive(int(pid)):
            shutil.rmtree(candidate, ignore_errors=True)


def _owner() -> str:
    return f"{socket.gethostname()} {os.getpid()}\n"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        pass
    return True


def make_replay_scratch(buffer_cfg: DictConfig, run_dir: Path) -> ReplayScratch | None:
    """The run's own directory for memory-mapped replay storage; ``None`` for in-memory storage."""
    if buffer_cfg.storage != "memmap":
        return None
    parent = Path(buffer_cfg.memmap_dir) if buffer_cfg.memmap_dir is not None else run_dir
    try:
        return ReplayScratch(parent, run_name=run_dir.name)
    except OSError as err:
        raise ConfigError(f"buffer.memmap_dir={parent}: cannot create the replay directory there ({err.strerror})") from None


def replay_device(buffer_cfg: DictConfig, env_cfg: DictConfig, train_device: torch.device) -> torch.device:
    """Where the stored transitions live (``buffer.device``).

    ``auto`` puts a frame replay's frame ring (Atari) beside the learner: a GPU run's learning phase then gathers
    its 8-frame stacks on the GPU (about 58 MB per phase of 4 x 32 at 3-step returns) and only indices cross the
    bus. Other envs' transitions are a few floats each and stay in host memory: on a device, TorchRL hands back the
    sampled indices there, and writing priorities into the CPU sum tree would wait for the device once more per
    phase. Memory-mapped storage is host memory. The sum tree runs on the CPU in every case: the published TorchRL
    wheel has no CUDA sum tree.
    """
    if buffer_cfg.device != "auto":
        return torch.device(buffer_cfg.device)
    if buffer_cfg.storage == "memmap" or env_cfg.kind != "atari":
        return CPU
    return train_device


def available_memory_bytes() -> int | None:
    """Host memory this process can have now without swapping: the kernel's ``MemAvailable``, or less where a
    cgroup (a container, a Slurm job's ``--mem``) caps the process; None where unknown."""
    found = []
    try:
        with open("/proc/meminfo") as meminfo:
            found += [int(line.split()[1]) * 1024 for line in meminfo if line.startswith("MemAvailable:")]
    except OSError:
        pass
    try:  # cgroup v2: the limit less what the group uses already ("max": no limit)
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            found.append(int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def check_frame_ring_fits(capacity: int, frame_shape: tuple[int, ...], *, memmap_dir: str | None, device: torch.device,
                          max_frames: int | None = None) -> None:
    """Refuses, before the run starts, a frame ring that cannot fit where it is kept: its pages are touched only as
    frames arrive, so a ring larger than the memory (or than the disk under memory-mapped files) would end the run
    hours in, killed for memory or by a full disk. Only the frames the run can write count (``max_frames``; a short
    run with a large ring touches little of it). A ring on a GPU is not checked here."""
    frames = capacity if max_frames is None else min(capacity, max_frames)
    ring_bytes = frames * int(torch.Size(frame_shape).numel())
    if memmap_dir is not None:
        free = shutil.disk_usage(memmap_dir).free
        where = f"the disk under {memmap_dir} has {free / 1e9:.1f} GB free"
    elif device.type == "cpu":
        free = available_memory_bytes()
        where = "" if free is None else f"this machine has {free / 1e9:.1f} GB of memory available"
    else:
        return
    if free is not None and ring_bytes > free:
        shape = "x".join(map(str, frame_shape))
        raise ConfigError(f"buffer.capacity={capacity:,} frames of {shape} bytes take {ring_bytes / 1e9:.1f} GB, and {where}: "
                          f"keep the frames on a disk that holds them (buffer.storage=memmap buffer.memmap_dir=DIR), or "
                          f"start a run with a lower buffer.capacity")


def frames_written_at_most(total_steps: int) -> int:
    """Frames a frame replay can receive in a run of ``total_steps`` agent steps: one per step, plus the final frame
    of each episode (an episode takes at least one step)."""
    return 2 * total_steps


def make_replay_buffer(
    buffer_cfg: DictConfig,
    env_cfg: DictConfig,
    env: EnvBase,
    *,
    n_step: int = 1,
    gamma: float = 0.99,
    scratch: ReplayScratch | None = None,
    extra_keys: tuple = (),
    device: torch.device = torch.device("cpu"),
    max_frames: int | None = None,
) -> TensorDictReplayBuffer | FrameReplay:
    """The replay memory for ``env``: a :class:`~rlpipe.frame_replay.FrameReplay` for frame-stacked pixel
    observations, TorchRL's prioritized or uniform buffer otherwise.

    Either takes whole collector batches in ``extend`` (``[num_envs, steps]``) and keeps only what the learner
    reads. Neither has a default batch size: the training loop asks for a learning phase's minibatches at once.

    Args:
        buffer_cfg: the ``buffer`` config section.
        env_cfg: the ``env`` config section (its kind and terminal convention).
        env: the training env; the frame layout and the number of streams come from its specs and batch size.
        n_step: n-step returns (``train.n_step``; Sutton 1988, as in Rainbow): a stored transition's reward is the
            discounted sum over up to ``n_step`` agent steps, its next observation the one after them, and
            ``steps_to_next_obs`` how many they were (fewer where the episode ends first).
        gamma: the discount of that sum (``train.gamma``).
            Each collect must hold more than ``n_step`` steps per env (the configuration checks).
        scratch: the run's directory for memory-mapped storage (:func:`make_replay_scratch`); ``None`` keeps the
            memory in RAM.
        extra_keys: stored beside the env's transition keys (the learner's ``stored_keys``); the frame replay
            stores none (the configuration refuses them there).
        device: where the stored transitions live (:func:`replay_device`): the frame ring of a frame replay, the
            whole storage otherwise. Sampled minibatches come out there; the sum tree stays on the CPU.
        max_frames: the most frames the run can write (:func:`frames_written_at_most`): a frame ring that cannot hold
            that many (or all of its capacity, if fewer) where it is kept is refused (:func:`check_frame_ring_fits`).
    """
    prioritized = buffer_cfg.kind == "prioritized"
    memmap_dir = None if scratch is None else str(scratch.path)
    if env_cfg.kind == "atari":
        if extra_keys:
            raise ValueError(f"the frame replay stores its declared fields only, not {extra_keys}")
        stack = env.full_observation_spec_unbatched[OBSERVATION_KEY].shape  # [N, H, W], or [N, H, W, 3] in colour
        check_frame_ring_fits(buffer_cfg.capacity, tuple(stack[1:]), memmap_dir=memmap_dir, device=device, max_frames=max_frames)
        return FrameReplay(
            capacity=buffer_cfg.capacity,
            num_streams=env.batch_size.numel(),
            frame_shape=tuple(stack[1:]),
            frame_stack=stack[0],
            alpha=buffer_cfg.alpha if prioritized else 0.0,
            beta=buffer_cfg.beta_init if prioritized else 0.0,
            priority_eps=buffer_cfg.priority_eps if prioritized else 1.0,
            n_step=n_step,
            gamma=gamma,
            terminal_key=terminal_key(env_cfg),
            memmap_dir=memmap_dir,
            device=device,
        )
    if memmap_dir is None:
        storage = LazyTensorStorage(buffer_cfg.capacity, device=device)
    else:
        storage = LazyMemmapStorage(buffer_cfg.capacity, scratch_dir=memmap_dir)
    if prioritized:
        replay: TensorDictReplayBuffer = TensorDictPrioritizedReplayBuffer(
            alpha=buffer_cfg.alpha, beta=buffer_cfg.beta_init, eps=buffer_cfg.priority_eps, storage=storage,
            sampler_device=CPU,  # left to itself, TorchRL picks a CUDA tree for CUDA storage (not in the published wheel)
        )
    else:
        replay = TensorDictReplayBuffer(storage=storage)
    keys = transition_keys(env) + tuple(extra_keys)
    n_step_returns = None
    if n_step > 1:
        # TorchRL's transform keeps each env's last n_step steps until the steps after them arrive. Its done_keys
        # would keep step t's values; with none named, "done" and "terminated" (the TD target's terminal) are read
        # at the window's end, with the next observation, as in the frame replay. It is applied per env inside this
        # one function: as a buffer transform of its own it ran after the flattening and mixed the envs' streams
        # (torchrl 0.14).
        n_step_returns = MultiStepTransform(n_step, gamma, reward_keys=[REWARD_KEY[-1]], done_keys=[])
        keys += (STEPS_TO_NEXT_OBS_KEY,)
    replay.append_transform(functools.partial(_flat_transitions, keys=keys, n_step_returns=n_step_returns), invert=True)  # on extend
    return replay


def _flat_transitions(batch: TensorDictBase, *, keys: tuple, n_step_returns: MultiStepTransform | None) -> TensorDictBase:
    """A collector batch ``[num_envs, steps]`` (or ``[steps]``) as stored transitions ``[num_envs * steps]`` of
    ``keys``; with n-step returns, the transitions whose ``n_step`` following steps have been collected."""
    if n_step_returns is not None:
        batch = n_step_returns.inv(batch)  # [E, T]: the previous collect's last n_step steps, and T - n_step new ones
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
