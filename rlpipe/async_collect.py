"""Asynchronous collection: workers step the envs while the learner learns (``collector=async``: worker processes
on this machine; ``collector=ray``: Ray actors, on this machine or a cluster).

The pattern of Ape-X (Horgan et al. 2018, https://arxiv.org/abs/1803.00933) on TorchRL's ``MultiAsyncCollector``:
``N`` worker processes, each with its own envs and its own copy of the acting policy, collect while the main process
stores, learns, evaluates and checkpoints; the learner's weights reach the workers every
``collector.sync_interval_updates`` gradient updates. The replay memory, the sum tree and the learner stay in the
main process, unchanged.

**Rounds, not a free-for-all.** :class:`AsyncCollection` yields one *round*: one batch from every worker, in worker
order, ``[N * E, T]`` for ``E`` envs per worker. The replay memory then sees each env as one unbroken stream (the
frame replay's stacks and the n-step windows need that), and the training loop is the synchronous one. A worker
starts its next batch as soon as its last one is taken, so collection overlaps learning, and each worker is at most
one batch ahead of the learner: the replay ratio (``train.updates_per_step``) stays exact, and whichever side is
slower sets the pace (the other waits; ``time/env`` is the learner's wait for a round).

**What each transition carries.** ``policy_version``: the learner's update count when its acting weights were sent
(:class:`VersionTag`); the loop logs ``collector/policy_lag_updates``, how many updates behind the learner a round's
actions were. ``worker``: the worker that collected it (:class:`WorkerTag`, an env transform, so random-prefill
steps carry it too).

**Exploration per worker** (``collector.worker_exploration``): ``schedule`` sends the run's own epsilon or
temperature with the weights (every worker explores as a synchronous run does); ``apex`` gives worker ``i`` of ``N``
the fixed epsilon ``0.4 ** (1 + 7 * i / (N - 1))`` (Ape-X; 0.4 for one worker), or, with Boltzmann exploration, a
temperature log-spaced from ``temperature_init`` (worker 0) to ``temperature_final`` (the last).

What is lost against the synchronous collector: bit-exact reproducibility (which weights a worker acts with depends
on timing).

:class:`RayCollection` runs the same rounds with the workers as Ray actors (TorchRL's ``RayCollector``).
"""

from __future__ import annotations

import os
import queue
import re
import signal
from collections.abc import Iterator
from functools import partial
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase, TensorDictSequential
from torchrl.collectors import MultiAsyncCollector
from torchrl.data import Composite, Unbounded
from torchrl.envs import EnvBase, TransformedEnv
from torchrl.envs.transforms import Transform
from torchrl.weight_update import SharedMemWeightSyncScheme

from rlpipe.envs import action_mask_key, make_env
from rlpipe.exploration import make_exploration
from rlpipe.models import make_q_network

POLICY_VERSION_KEY = "policy_version"  # the learner's update count when the acting weights were sent
WORKER_KEY = "worker"  # the worker that collected the transition


class WorkerDied(RuntimeError):
    """A collection worker process ended while the run was training."""


class VersionTag(TensorDictModuleBase):
    """Writes the version of the acting weights (``policy_version`` ``[B]``, int64) beside each action: the learner's
    update count when they were sent. A buffer, so it travels with the weights."""

    def __init__(self) -> None:
        super().__init__()
        self.in_keys, self.out_keys = [], [POLICY_VERSION_KEY]
        self.register_buffer("version", torch.zeros((), dtype=torch.int64))

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        return tensordict.set(POLICY_VERSION_KEY, self.version.expand(tensordict.batch_size).clone())


class WorkerTag(Transform):
    """Writes the worker's index (``worker``, int64) into every step of its env, the random prefill's too.

    Hand-written: neither ``MultiAsyncCollector`` nor the batches it yields say which worker collected them.
    """

    def __init__(self, worker: int) -> None:
        super().__init__(in_keys=[], out_keys=[WORKER_KEY])
        self.worker = worker

    def _tag(self, tensordict: TensorDictBase) -> TensorDictBase:
        return tensordict.set(WORKER_KEY, torch.full(tensordict.batch_size, self.worker, dtype=torch.int64))

    def _call(self, next_tensordict: TensorDictBase) -> TensorDictBase:
        return self._tag(next_tensordict)

    def _reset(self, tensordict: TensorDictBase, tensordict_reset: TensorDictBase) -> TensorDictBase:
        return self._tag(tensordict_reset)

    def transform_observation_spec(self, observation_spec: Composite) -> Composite:
        observation_spec[WORKER_KEY] = Unbounded(shape=observation_spec.shape, dtype=torch.int64, device=observation_spec.device)
        return observation_spec


def apex_epsilon(worker: int, num_workers: int, *, base: float = 0.4, alpha: float = 7.0) -> float:
    """Ape-X's fixed epsilon of worker ``i`` of ``N``: ``base ** (1 + alpha * i / (N - 1))`` (``base`` for one)."""
    return base if num_workers == 1 else base ** (1 + alpha * worker / (num_workers - 1))


def apex_temperature(worker: int, num_workers: int, *, hottest: float, coldest: float) -> float:
    """The Boltzmann counterpart: temperatures log-spaced from ``hottest`` (worker 0) to ``coldest`` (the last)."""
    return hottest if num_workers == 1 else hottest * (coldest / hottest) ** (worker / (num_workers - 1))


def worker_exploration_value(exploration_cfg: DictConfig, worker: int, num_workers: int) -> float:
    """Worker ``worker``'s fixed epsilon or temperature under ``collector.worker_exploration=apex``."""
    if exploration_cfg.kind == "temperature":
        return apex_temperature(worker, num_workers, hottest=exploration_cfg.temperature_init,
                                coldest=exploration_cfg.temperature_final)
    return apex_epsilon(worker, num_workers)


# ---- what runs in a worker process (module-level: spawned workers import them)


def ignore_stop_signals() -> None:
    """Workers leave SIGINT/SIGTERM to the main process, which stops them after writing ``last.pt``
    (a terminal's Ctrl-C reaches the whole process group)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def make_worker_env(env_cfg: dict[str, Any], *, worker: int, num_envs: int, seed: int) -> EnvBase:
    """Worker ``worker``'s envs (``num_envs``, stepped in the worker), tagged with its index."""
    return TransformedEnv(make_env(OmegaConf.create(env_cfg), num_envs=num_envs, seed=seed), WorkerTag(worker))


def make_worker_policy(cfg: dict[str, Any], *, worker: int, num_workers: int, seed: int) -> TensorDictSequential:
    """Worker ``worker``'s acting policy: its own Q-network (weights from the learner), exploration and version tag."""
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    cfg = OmegaConf.create(cfg)
    specs_env = make_env(cfg.env, num_envs=1)  # (the network and the exploration are sized from its specs)
    q_network = make_q_network(cfg.model, specs_env, torch.device("cpu"))
    exploration = make_exploration(cfg.exploration, specs_env.full_action_spec_unbatched["action"], torch.device("cpu"),
                                   action_mask_key=action_mask_key(specs_env))
    specs_env.close()
    if cfg.collector.worker_exploration == "apex":
        value = worker_exploration_value(cfg.exploration, worker, num_workers)
        (exploration.module.temperature if cfg.exploration.kind == "temperature" else exploration.module.eps).fill_(value)
    return TensorDictSequential(q_network, exploration.module, VersionTag())


# ---- the main process's side


class _RoundGate:
    """One worker's pipe from the main process, holding back its requests for a next batch until the round it
    collected for is complete.

    TorchRL's iterator asks a worker for its next batch as soon as it takes the last one: a fast worker would run
    rounds ahead of a slow one (and rounds need one batch from each, in order). Through this gate, worker ``w``'s
    ``k``-th request (from 0) goes out only once round ``k - 1`` is complete; every other message passes. Wraps the
    pipe ``MultiAsyncCollector`` keeps in ``pipes`` (torchrl 0.14; a test pins it).
    """

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe
        self.sent = 0  # requests for a batch sent so far
        self.allowed = 1  # requests that may have been sent: rounds complete + 1
        self.held: Any = None

    def send(self, message: Any) -> None:
        if isinstance(message, tuple) and message[-1] in ("continue", "continue_random"):
            if self.sent >= self.allowed:
                self.held = message
                return
            self.sent += 1
        self.pipe.send(message)

    def allow(self, requests: int, *, random: bool) -> None:
        """Round ``requests - 1`` is complete: the held request, if any, goes out, asking for a random batch or not
        as of now (TorchRL decided when it took the worker's last batch, before the round was complete)."""
        self.allowed = requests
        if self.held is not None and self.sent < self.allowed:
            held, self.held = self.held, None
            self.send((held[0], "continue_random" if random else "continue"))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.pipe, name)


class _WorkerQueues(MultiAsyncCollector):
    """TorchRL's ``MultiAsyncCollector`` with a queue slot per worker.

    Its own queue holds one batch: a worker whose batch finds it full for a second collects again and drops the
    batch it had (``torchrl/collectors/_runner.py``), which would leave a hole in that env's stream whenever the
    learner is busy (an evaluation, a checkpoint). Each worker has at most one batch in flight here (the
    :class:`_RoundGate`), so with a slot each, none is ever dropped. (A private property of torchrl 0.14: a test
    pins it.)
    """

    @property
    def _queue_len(self) -> int:
        return self.num_workers


class WorkerCollection:
    """What both backends share: the learner's side of the acting policy, and when and what a weight sync sends.

    Args:
        policy: ``TensorDictSequential(acting network, exploration module, VersionTag())``: the workers' policies
            have its structure; what :meth:`sync_weights` sends is read from it.
        num_workers: worker processes.
        envs_per_worker: envs each worker steps.
        sync_interval_updates: gradient updates between two weight syncs.
        sync_exploration: send the exploration module's value with the weights (``worker_exploration=schedule``).
    """

    def __init__(self, policy: TensorDictSequential, *, num_workers: int, envs_per_worker: int, sync_interval_updates: int,
                 sync_exploration: bool) -> None:
        self.policy = policy
        self.num_workers, self.envs_per_worker = num_workers, envs_per_worker
        self.sync_interval_updates = sync_interval_updates
        self.sync_exploration = sync_exploration
        self.next_sync = 0

    def sync_weights(self, updates: int, *, force: bool = False) -> None:
        """Sends the learner's weights (and the version ``updates``) to every worker, when ``sync_interval_updates``
        have passed since the last sync (or ``force``)."""
        if not force and updates < self.next_sync:
            return
        self.policy[-1].version.fill_(updates)
        weights = TensorDict.from_module(self.policy)
        if not self.sync_exploration:  # (apex: each worker keeps its own epsilon or temperature)
            weights = weights.exclude(("module", "1"))
        self._send(weights.detach().to("cpu"))
        self.next_sync = updates + self.sync_interval_updates

    def _send(self, weights: TensorDictBase) -> None:
        raise NotImplementedError

    def _round(self, batches: list[TensorDictBase]) -> TensorDictBase:
        """One batch per worker, in worker order, as ``[N * E, T]``."""
        return torch.cat([batch if self.envs_per_worker > 1 else batch.unsqueeze(0) for batch in batches], dim=0)


class AsyncCollection(WorkerCollection):
    """``collector=async``: the rounds of ``N`` worker processes (see the module docstring).

    Args (besides :class:`WorkerCollection`'s):
        cfg: the run's validated configuration (resolved and sent to the workers).
        steps_per_collect: agent steps of a round, all workers together.
        random_steps: agent steps of uniform random actions first (whole rounds).
        seed: the run's seed (worker ``i``'s envs get ``seed + i * envs_per_worker`` onwards).
        main_threads: the main process's torch threads (TorchRL would otherwise set cores minus workers).
        updates: the learner's update count now (a resumed run's): the version of the weights sent first.
    """

    def __init__(
        self, cfg: DictConfig, policy: TensorDictSequential, *, num_workers: int, envs_per_worker: int, steps_per_collect: int,
        random_steps: int, seed: int, sync_interval_updates: int, sync_exploration: bool, main_threads: int, updates: int = 0,
    ) -> None:
        super().__init__(policy, num_workers=num_workers, envs_per_worker=envs_per_worker,
                         sync_interval_updates=sync_interval_updates, sync_exploration=sync_exploration)
        resolved = OmegaConf.to_container(cfg, resolve=True)
        # TorchRL also calls each policy factory here, in the main process (to size the shared weight buffers): what
        # make_worker_policy sets for a worker (one thread, its own seed) must not stay set for the learner.
        rng_state = torch.get_rng_state()
        self._scheme = SharedMemWeightSyncScheme(sync=False)
        self.collector = _WorkerQueues(
            [partial(make_worker_env, resolved["env"], worker=i, num_envs=envs_per_worker, seed=seed + i * envs_per_worker)
             for i in range(num_workers)],
            policy_factory=[partial(make_worker_policy, resolved, worker=i, num_workers=num_workers, seed=seed + 7919 * (i + 1))
                            for i in range(num_workers)],
            weight_sync_schemes={"policy": self._scheme},
            frames_per_batch=steps_per_collect // num_workers,
            total_frames=-1,
            init_random_frames=random_steps,
            device="cpu",
            storing_device="cpu",
            num_threads=main_threads,
            num_sub_threads=1,
            init_fn=ignore_stop_signals,
            auto_register_policy_transforms=False,
        )
        torch.set_rng_state(rng_state)  # (a resumed run's restored state, the learner's draws)
        torch.set_num_threads(main_threads)
        self._pids = [process.pid for process in self.collector.procs]
        self._gates = [_RoundGate(pipe) for pipe in self.collector.pipes]
        self.collector.pipes = self._gates
        self.rounds = 0
        self.sync_weights(updates, force=True)

    def _send(self, weights: TensorDictBase) -> None:
        self.collector.update_policy_weights_(weights)  # (SharedMemWeightSyncScheme: a copy into each worker's buffer)
        # Each worker acknowledges each sync; with sync=False TorchRL never reads them, and a full pipe would block a
        # worker's exit. (Waiting for them instead, sync=True, would hang on a dead worker: TorchRL waits without a
        # timeout.) A private queue of torchrl 0.14's scheme: a test pins it.
        for acks in self._scheme._ack_queues.values():
            while True:
                try:
                    acks.get_nowait()
                except queue.Empty:
                    break

    def __iter__(self) -> Iterator[TensorDictBase]:
        """Rounds ``[N * E, T]`` (``[N, T]`` for one env per worker), streams in worker order."""
        pending: dict[int, TensorDictBase] = {}
        batches = iter(self.collector)
        while True:
            try:
                batch = next(batches)
            except (RuntimeError, ValueError) as err:  # TorchRL's "At least one process failed"
                raise WorkerDied(self._death(err)) from None
            worker = int(batch.get(WORKER_KEY).reshape(-1)[0])
            if worker in pending:
                raise RuntimeError(f"worker {worker} sent two batches in round {self.rounds}")  # (the gate prevents it)
            pending[worker] = batch
            if len(pending) == self.num_workers:
                self.rounds += 1
                random = self.collector._should_use_random_frames()  # (the prefill's whole rounds)
                for gate in self._gates:  # every worker may start its next round's batch
                    gate.allow(self.rounds + 1, random=random)
                yield self._round([pending.pop(i) for i in range(self.num_workers)])

    def _death(self, err: Exception) -> str:
        # TorchRL names the first dead worker and its exit code, then stops the others; where one of them is busy
        # (it ignores SIGTERM) TorchRL's own clean-up raises a ValueError instead, and the dead one is the one gone.
        found = re.search(r"worker (\d+) \(exit code (-?\d+)\)", str(err))
        if found is not None:
            index, code = int(found[1]), int(found[2])
            how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
            return f"collection worker {index} of {self.num_workers} ended ({how})"
        gone = [index for index, pid in enumerate(self._pids) if not _running(pid)]
        if gone:
            return f"collection worker {gone[0]} of {self.num_workers} ended (killed, or it failed: see above)"
        return f"a collection worker failed: {err}"

    def shutdown(self) -> None:
        self.collector.shutdown(raise_on_error=False)


class RayCollection(WorkerCollection):
    """``collector=ray``: the same rounds with the workers as Ray actors (TorchRL's ``RayCollector``), on this
    machine or across a Ray cluster.

    Each actor holds a TorchRL ``Collector`` over its envs and its policy. The rounds are asked for here, one
    ``next`` per actor, the next round requested before this one is yielded (TorchRL's own asynchronous iterator
    asks an actor again only after its batch has been used, and does not say whose batch it is). Weights go out
    through Ray's object store to each actor's ``policy.load_state_dict`` (hand-written: TorchRL's default Ray
    weight scheme opens a ``torch.distributed`` gloo group between the driver and the actors, which needs open ports
    between the machines).

    Args (besides :class:`AsyncCollection`'s):
        address: the Ray cluster to join; None starts a local instance for the run (and stops it at the end).
        cpus_per_worker: CPUs Ray reserves for each actor.
    """

    def __init__(
        self, cfg: DictConfig, policy: TensorDictSequential, *, num_workers: int, envs_per_worker: int, steps_per_collect: int,
        random_steps: int, seed: int, sync_interval_updates: int, sync_exploration: bool, address: str | None,
        cpus_per_worker: float, updates: int = 0,
    ) -> None:
        super().__init__(policy, num_workers=num_workers, envs_per_worker=envs_per_worker,
                         sync_interval_updates=sync_interval_updates, sync_exploration=sync_exploration)
        ray = import_ray()
        from torchrl.collectors import Collector
        from torchrl.collectors.distributed import RayCollector

        self._ray = ray
        self._owns_ray = not ray.is_initialized()  # (under launcher=ray the sweep's Ray is already up)
        if self._owns_ray:
            handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
            # "local": a new instance; None would join whatever RAY_ADDRESS or a stale /tmp/ray session names.
            ray.init(address="local" if address is None else address, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
            for signum, handler in handlers.items():  # the run's clean stop, not Ray's
                signal.signal(signum, handler)
        resolved = OmegaConf.to_container(cfg, resolve=True)
        self.collector = RayCollector(  # (it calls the policy factories in the actors only, unlike MultiAsyncCollector)
            [partial(make_worker_env, resolved["env"], worker=i, num_envs=envs_per_worker, seed=seed + i * envs_per_worker)
             for i in range(num_workers)],
            policy_factory=[partial(make_worker_policy, resolved, worker=i, num_workers=num_workers, seed=seed + 7919 * (i + 1))
                            for i in range(num_workers)],
            frames_per_batch=steps_per_collect // num_workers,  # (per actor when not sync)
            total_frames=-1,
            init_random_frames=random_steps,  # (split between the actors by TorchRL)
            device="cpu",
            storing_device="cpu",
            collector_class=Collector,
            # (one dict per actor: TorchRL writes each actor's policy factory into its own)
            collector_kwargs=[{"auto_register_policy_transforms": False} for _ in range(num_workers)],
            remote_configs=[{"num_cpus": cpus_per_worker, "num_gpus": 0} for _ in range(num_workers)],
            num_collectors=num_workers,
            sync=False,
            weight_sync_schemes={},  # (weights go out through :meth:`_send`)
        )
        self.actors = list(self.collector.remote_collectors)
        self._loads: list[Any] = []
        self.sync_weights(updates, force=True)
        self._check_loads()

    def _send(self, weights: TensorDictBase) -> None:
        # An actor runs its calls in order: the load waits for the batch it is collecting, and applies from the next
        # one; the learner does not wait for it (the loads are checked at the next round).
        state = self._ray.put(dict(weights.flatten_keys(".").items()))  # a state dict: one copy in the object store
        self._loads += [actor.cascade_execute.remote("policy.load_state_dict", state, strict=False) for actor in self.actors]

    def _check_loads(self) -> None:
        done, self._loads = self._loads, []
        try:
            results = self._ray.get(done)
        except self._ray.exceptions.RayError as err:
            raise WorkerDied(f"a collection worker (a Ray actor) ended: {type(err).__name__}") from None
        for result in results:
            if result.unexpected_keys:  # (strict=False is for the exploration value apex keeps; nothing else may miss)
                raise RuntimeError(f"the workers' policy has no {result.unexpected_keys[0]}")

    def __iter__(self) -> Iterator[TensorDictBase]:
        """Rounds ``[N * E, T]``, streams in worker order."""
        requests = [actor.next.remote() for actor in self.actors]
        while True:
            batches = []
            for index, request in enumerate(requests):
                try:
                    batches.append(self._ray.get(request))
                except self._ray.exceptions.RayError as err:  # RayActorError: the actor (or its node) died
                    raise WorkerDied(f"collection worker {index} of {self.num_workers} (a Ray actor) ended: "
                                     f"{type(err).__name__}") from None
            self._check_loads()
            requests = [actor.next.remote() for actor in self.actors]  # the next round collects while this one is learned from
            yield self._round(batches)

    def shutdown(self) -> None:
        self.collector.shutdown(shutdown_ray=False)
        if self._owns_ray and self._ray.is_initialized():
            self._ray.shutdown()


def import_ray() -> Any:
    """Ray, or a :class:`~rlpipe.config.ConfigError` that says how to install it."""
    try:
        import ray
    except ImportError:
        from rlpipe.config import ConfigError

        raise ConfigError("collector=ray needs Ray, which is not installed: pip install -e '.[cluster]'") from None
    return ray


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists and has not exited (a zombie has)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        try:
            os.kill(pid, 0)  # (no /proc: macOS)
        except ProcessLookupError:
            return False
        return True


def make_worker_collection(
    cfg: DictConfig, acting_network: TensorDictModuleBase, exploration_module: TensorDictModuleBase, *, random_steps: int,
    updates: int = 0,
) -> WorkerCollection:
    """``collector=async`` (worker processes) or ``collector=ray`` (Ray actors) for the run ``cfg``: its workers, acting with ``acting_network``'s weights (and, with
    ``worker_exploration=schedule``, ``exploration_module``'s value), sent every ``sync_interval_updates``."""
    policy = TensorDictSequential(acting_network, exploration_module, VersionTag())
    num_workers = cfg.collector.num_workers
    common = dict(num_workers=num_workers, envs_per_worker=cfg.env.num_envs // num_workers,
                  steps_per_collect=cfg.train.steps_per_collect, random_steps=random_steps, seed=cfg.train.seed,
                  sync_interval_updates=cfg.collector.sync_interval_updates,
                  sync_exploration=cfg.collector.worker_exploration == "schedule", updates=updates)
    if cfg.collector.kind == "ray":
        return RayCollection(cfg, policy, address=cfg.collector.address, cpus_per_worker=cfg.collector.cpus_per_worker, **common)
    return AsyncCollection(cfg, policy, main_threads=cfg.train.num_threads or torch.get_num_threads(), **common)


def policy_lag(batch: TensorDictBase, updates: int) -> torch.Tensor | None:
    """How many gradient updates behind ``updates`` each of the round's actions was, ``[steps]``; None without
    versions (the in-process collector)."""
    if POLICY_VERSION_KEY not in batch.keys():
        return None
    return updates - batch.get(POLICY_VERSION_KEY).reshape(-1)


__all__ = ["AsyncCollection", "RayCollection", "VersionTag", "WorkerCollection", "WorkerTag", "WorkerDied", "apex_epsilon",
           "apex_temperature", "make_worker_collection", "policy_lag"]
