"""``collector=async``: worker processes collect while the learner learns (rlpipe.async_collect).

Invariants rather than exact results (an asynchronous run is not bit-reproducible): every env's stream arrives whole
and in order through weight syncs and a busy learner, the acting weights' versions and lag, the replay ratio, a clean
stop that leaves no worker behind, resume, a dead worker as one line, and the configuration's refusals.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import torch
from torchrl.collectors import MultiAsyncCollector

from conftest import compose_config, start_module
from rlpipe.async_collect import (POLICY_VERSION_KEY, WORKER_KEY, _RoundGate, _WorkerQueues, apex_epsilon, apex_temperature,
                                  make_worker_collection)
from rlpipe.checkpoint import load_checkpoint
from rlpipe.config import ConfigError
from rlpipe.envs import make_env
from rlpipe.exploration import make_exploration
from rlpipe.models import make_q_network

FAST = ["collector=async", "train.compile=false", "train.num_threads=1", "train.init_random_steps=256",
        "eval.episodes=3", "eval.interval_steps=1024", "checkpoint.interval_steps=512", "train.log_interval_steps=256"]


def test_apex_exploration_spans_its_published_range():
    assert apex_epsilon(0, 1) == 0.4
    assert apex_epsilon(0, 8) == pytest.approx(0.4) and apex_epsilon(7, 8) == pytest.approx(0.4 ** 8)
    values = [apex_epsilon(i, 8) for i in range(8)]
    assert values == sorted(values, reverse=True)
    assert apex_temperature(0, 3, hottest=1.0, coldest=0.01) == 1.0
    assert apex_temperature(1, 3, hottest=1.0, coldest=0.01) == pytest.approx(0.1)
    assert apex_temperature(2, 3, hottest=1.0, coldest=0.01) == pytest.approx(0.01)


class _Pipe:
    def __init__(self) -> None:
        self.sent: list = []

    def send(self, message) -> None:
        self.sent.append(message)


def test_the_round_gate_holds_a_workers_next_request_until_its_round_is_complete():
    gate = _RoundGate(_Pipe())
    gate.send((None, "continue_random"))  # the first request (round 0) goes out
    gate.send((0, "continue"))  # the worker's round-0 batch was taken: its round-1 request waits
    gate.send((None, "close"))  # anything else passes
    assert gate.pipe.sent == [(None, "continue_random"), (None, "close")]
    gate.allow(2, random=True)  # round 0 is complete, and the prefill goes on: the request says so now
    assert gate.pipe.sent[-1] == (0, "continue_random") and gate.held is None
    gate.send((0, "continue"))
    assert len(gate.pipe.sent) == 3  # held again until round 1 is complete


def test_the_torchrl_internals_the_rounds_rely_on():
    """torchrl 0.14's MultiAsyncCollector: a queue sized by ``_queue_len`` (one slot by default) and the workers' pipes
    in ``pipes``, through which its iterator asks for each next batch."""
    assert MultiAsyncCollector._queue_len.fget(None) == 1
    assert isinstance(_WorkerQueues._queue_len, property)
    assert callable(MultiAsyncCollector._should_use_random_frames)  # (the gate asks it at a round's end)
    from torchrl.weight_update import SharedMemWeightSyncScheme

    assert isinstance(SharedMemWeightSyncScheme(sync=False)._ack_queues, dict)  # (drained after each sync)
    import inspect

    source = inspect.getsource(MultiAsyncCollector.iterator)
    assert "self.pipes[idx].send((idx, msg))" in source and "ctx.Queue(self._queue_len)" in inspect.getsource(
        _WorkerQueues.__mro__[2]._run_processes)


def test_every_stream_arrives_whole_and_in_order_through_syncs_and_a_busy_learner():
    cfg = compose_config(["collector=async", "collector.num_workers=2", "env.num_envs=2", "train.steps_per_collect=16"])
    env = make_env(cfg.env, num_envs=2)
    q_network = make_q_network(cfg.model, env, torch.device("cpu"))
    exploration = make_exploration(cfg.exploration, env.full_action_spec_unbatched["action"], torch.device("cpu"))
    threads, rng_state = torch.get_num_threads(), torch.get_rng_state()
    collection = make_worker_collection(cfg, q_network, exploration.module, random_steps=32)
    # TorchRL builds the workers' policies in this process too: the learner's threads and random state stay its own
    assert torch.get_num_threads() == threads and torch.equal(torch.get_rng_state(), rng_state)
    try:
        previous, versions = None, []
        for round_index, batch in enumerate(collection):
            assert batch.shape == (2, 8)  # [workers * envs, steps]
            assert batch.get(WORKER_KEY)[:, 0].tolist() == [0, 1]
            inside = (batch["next", "observation"][:, :-1] == batch["observation"][:, 1:]).all(-1) | batch["next", "done"][:, :-1, 0]
            assert inside.all()
            if previous is not None:  # each env's next step follows its last one (or its episode ended)
                across = (previous["next", "observation"][:, -1] == batch["observation"][:, 0]).all(-1) | previous["next", "done"][:, -1, 0]
                assert across.all(), f"a hole in the stream before round {round_index}"
            versions.append(batch.get(POLICY_VERSION_KEY)[:, 0])
            previous = batch
            collection.sync_weights(10 * (round_index + 1))  # (interval 100: a sync every 10 rounds)
            if round_index % 20 == 5:  # (rounds 5 and 25)
                time.sleep(1.5)  # longer than TorchRL's queue timeout: a one-slot queue dropped batches here
            if round_index == 40:
                break
    finally:
        collection.shutdown()
    versions = torch.stack(versions)  # [rounds, workers]
    assert (versions[1:] >= versions[:-1]).all()  # the acting weights never go back in time
    assert int(versions.max()) >= 300 and set(versions.unique().tolist()) <= {0, *range(100, 500, 100)}


def _processes() -> dict[int, tuple[int, str]]:
    """Every process on the machine: ``{pid: (parent pid, command line)}``, read from ``/proc``."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        found[int(entry.name)] = (int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:"))), cmdline)
    return found


def _children(pid: int) -> list[int]:
    """The spawned worker processes of ``pid`` (multiprocessing's spawn_main children)."""
    return [child for child, (parent, cmdline) in _processes().items() if parent == pid and "spawn_main" in cmdline]


def _descendants(pid: int) -> dict[int, str]:
    """Every process under ``pid`` (a local Ray instance's GCS server, raylet and actor workers among them), with its
    command line (Ray titles an actor's worker ``ray::<ActorClass>...``)."""
    processes, found, frontier = _processes(), {}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, (its_parent, cmdline) in processes.items():
            if its_parent == parent and child not in found:
                found[child] = cmdline
                frontier.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("State:"))
    except (OSError, StopIteration):
        return False
    return "Z" not in state  # (a zombie has exited)


def _resume_until_it_checkpoints(run_dir: Path, *, after_step: int, timeout_s: float):
    """Resumes the run from its ``last.pt`` and returns its process once it has written a newer one (it trains on)."""
    process = start_module("rlpipe.train", f"resume={run_dir / 'checkpoints' / 'last.pt'}")
    deadline = time.monotonic() + timeout_s
    while load_checkpoint(run_dir / "checkpoints" / "last.pt")["counters"]["step"] <= after_step:
        assert process.poll() is None, process.stderr.read()[-3000:]
        assert time.monotonic() < deadline, f"the resumed run wrote no checkpoint within {timeout_s} s"
        time.sleep(0.5)
    return process


def _start(run_dir: Path, *overrides: str):
    process = start_module("rlpipe.train", *FAST, "train.total_steps=1000000", "train.stop_on_solve=false", *overrides,
                           f"hydra.run.dir={run_dir}")
    deadline = time.monotonic() + 180
    while not (run_dir / "checkpoints" / "last.pt").is_file():
        assert process.poll() is None, process.stderr.read()[-3000:]
        assert time.monotonic() < deadline, "the run wrote no checkpoint within 180 s"
        time.sleep(0.2)
    workers = _children(process.pid)
    assert len(workers) == 2, workers
    return process, workers


def test_sigint_stops_the_workers_at_the_ratio_then_a_resumed_run_ends_in_one_line_when_a_worker_dies(tmp_path):
    run_dir = tmp_path / "run"
    process, workers = _start(run_dir, "collector.num_workers=2", "env.num_envs=2")
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr and "stopped by SIGINT at step" in stdout
    deadline = time.monotonic() + 15
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in workers), "a collection worker outlived the run"
    last = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    stopped_at = last["counters"]["step"]
    assert (run_dir / "checkpoints" / last["replay_buffer"]).is_dir()
    # The learner made exactly train.updates_per_step updates (CartPole: 0.5) per agent step of every round from the
    # one that completed the 256-step prefill on, as a synchronous run does.
    assert last["counters"]["updates"] == stopped_at // 2
    lag = (run_dir / "logs" / "csv" / "scalars" / "collector" / "policy_lag_updates_max.csv").read_text().split()[1:]
    lags = [float(line.split(",")[1]) for line in lag]
    # A round is collected during the learning phase before it (128 updates) and the weights go out every 100:
    # the acting weights are at most 2 phases old.
    assert lags and max(lags) <= 256

    # Resumed, the run trains on (a newer last.pt), and then one of its workers is killed.
    process = _resume_until_it_checkpoints(run_dir, after_step=stopped_at, timeout_s=180)
    workers = _children(process.pid)
    os.kill(workers[1], signal.SIGKILL)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 1
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = [line[line.index("rlpipe.train:"):] for line in stderr.splitlines() if "rlpipe.train:" in line]  # (after the bar's \r)
    assert len(lines) == 1 and "collection worker" in lines[0] and "ended" in lines[0], stderr[-2000:]
    assert "last checkpoint stands" in lines[0]
    deadline = time.monotonic() + 15
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in workers)


@pytest.mark.parametrize("overrides, message", [
    (["collector=async", "collector.num_workers=3", "env.num_envs=2", "train.steps_per_collect=64"], "expected a divisor of env.num_envs"),
    (["collector=async", "exploration=rnd", "env=doorkey_primitive"], "collector=async is invalid with exploration=rnd"),
    (["collector=async", "env.parallel=true"], "env.parallel=true is invalid with collector=async"),
    (["collector=async", "collector.worker_exploration=fixed"], "collector.worker_exploration='fixed' is invalid"),
])
def test_the_configuration_refuses_what_async_collection_cannot_do(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        compose_config(overrides)


def test_a_dead_ray_actor_is_one_line_naming_it():
    """How ``collector=ray`` reports an actor that died (RayActorError, from a round's batch or a weight load), as
    ``WorkerDied``, which ``rlpipe.train`` prints as one line (the path the async test above takes). The driver's Ray
    is a stand-in that fails where a dead actor would, in the default suite and for a load as well as a round; the
    slow test below kills a real actor on a local Ray instance."""
    from types import SimpleNamespace

    pytest.importorskip("ray")
    from ray.exceptions import ActorDiedError

    from rlpipe.async_collect import RayCollection, WorkerDied

    def get(request):  # (ray.get of a list raises where any of its tasks failed)
        if isinstance(request, list):
            return [get(one) for one in request]
        if request in ("next from actor 1", "load on actor 1"):
            raise ActorDiedError()  # what Ray raises for an actor that died (a RayActorError)
        return request

    actors = [SimpleNamespace(next=SimpleNamespace(remote=lambda i=i: f"next from actor {i}")) for i in range(2)]
    collection = object.__new__(RayCollection)  # only what the rounds read: no Ray instance is started
    collection._ray = SimpleNamespace(get=get, exceptions=__import__("ray").exceptions)
    collection.actors, collection.num_workers, collection._loads = actors, 2, []
    with pytest.raises(WorkerDied, match=r"^collection worker 1 of 2 \(a Ray actor\) ended: ActorDiedError$"):
        next(iter(collection))
    collection._loads = ["load on actor 0", "load on actor 1"]
    with pytest.raises(WorkerDied, match=r"^a collection worker \(a Ray actor\) ended: ActorDiedError$"):
        collection._check_loads()


@pytest.mark.slow  # starts a local Ray instance three times (minutes on 2 cores): `make test-slow`
def test_ray_collection_trains_resumes_and_ends_in_one_line_when_an_actor_is_killed(tmp_path):
    """``collector=ray`` on a local Ray instance the run starts itself (``collector.address=null``) and stops: SIGINT
    stops it at the exact replay ratio; resumed, it trains on; then one of its actors is killed (SIGKILL, as an
    out-of-memory kill or a lost node ends it), and the run ends in one line and leaves no Ray process behind; resumed
    from its last checkpoint, it ends normally."""
    pytest.importorskip("ray")
    run_dir = tmp_path / "run"
    process = start_module("rlpipe.train", *FAST, "collector=ray", "collector.num_workers=2", "env.num_envs=2",
                           "train.total_steps=1000000", "train.stop_on_solve=false", f"hydra.run.dir={run_dir}")
    deadline = time.monotonic() + 900  # (Ray starts its workers at nice 15: slow on a busy machine)
    while not (run_dir / "checkpoints" / "last.pt").is_file():
        assert process.poll() is None, process.stderr.read()[-3000:]
        assert time.monotonic() < deadline, "the run wrote no checkpoint within 900 s"
        time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr and "stopped by SIGINT at step" in stdout
    last = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    stopped_at = last["counters"]["step"]
    assert last["counters"]["updates"] == stopped_at // 2  # the replay ratio, exact
    lags = [float(line.split(",")[1]) for line in
            (run_dir / "logs" / "csv" / "scalars" / "collector" / "policy_lag_updates_max.csv").read_text().split()[1:]]
    # A load queues behind the batch an actor is collecting: the weights act from the round after next at the latest.
    assert lags and max(lags) <= 3 * 128 + 100
    import ray

    assert not ray.is_initialized()

    # Resumed, the run trains on (a newer last.pt); then one of its two actors is killed.
    process = _resume_until_it_checkpoints(run_dir, after_step=stopped_at, timeout_s=900)
    ray_processes = _descendants(process.pid)
    actors = [pid for pid, cmdline in ray_processes.items() if cmdline.startswith("ray::Collector")]
    assert len(actors) == 2, ray_processes  # (TorchRL's RayCollector makes each actor a torchrl Collector)
    os.kill(actors[1], signal.SIGKILL)
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 1, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = [line[line.index("rlpipe.train:"):] for line in stderr.splitlines() if "rlpipe.train:" in line]  # (after the bar's \r)
    assert len(lines) == 1 and "(a Ray actor) ended" in lines[0] and "last checkpoint stands" in lines[0], stderr[-2000:]
    deadline = time.monotonic() + 60  # (the raylet and GCS stop with the run's Ray instance)
    while any(_alive(pid) for pid in ray_processes) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not [cmdline for pid, cmdline in ray_processes.items() if _alive(pid)], "a Ray process outlived the run"

    # The last checkpoint stands: resumed from it, the run ends normally.
    last = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    result = start_module("rlpipe.train", f"resume={run_dir / 'checkpoints' / 'last.pt'}",
                          f"train.total_steps={last['counters']['step'] + 512}")
    stdout, stderr = result.communicate(timeout=900)
    assert result.returncode == 0, stderr[-3000:]
    assert '"finished": true' in stdout
