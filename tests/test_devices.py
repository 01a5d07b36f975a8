"""Device paths proven on a CPU: every piece built where the run asks (the ``meta`` device stands in for a GPU), a
checkpoint from a GPU machine loads and resumes on a CPU-only one, and a learning phase's host synchronisations
are counted (each one stalls a GPU's queue)."""

from __future__ import annotations

import json

import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictSequential
from torch.overrides import TorchFunctionMode

from conftest import compose_config

from rlpipe.config import ConfigError, validate
from rlpipe.checkpoint import Counters, load_checkpoint, restore_checkpoint, save_checkpoint
from rlpipe.envs import action_mask_key, make_env, transition_keys
from rlpipe.exploration import make_exploration
from rlpipe.models import make_q_network
from rlpipe.keys import INDEX_KEY, PRIORITY_WEIGHT_KEY
from rlpipe.replay import make_replay_buffer, replay_device
from rlpipe.run import learning_phase, make_agents
from rlpipe.runtime import seed_everything

META = torch.device("meta")
CPU = torch.device("cpu")

# TorchRL's target updaters ask ``is_set_to`` of each parameter, which has no meta kernel: a test-only stand-in
# (on meta no two tensors share storage).
_LIBRARY = torch.library.Library("aten", "IMPL")
_LIBRARY.impl("is_set_to", lambda self, other: False, "Meta")

PRESETS = {
    "cartpole": [],
    "breakout_temperature": ["env=breakout", "exploration=temperature"],
    "doorkey_skills": ["env=doorkey"],  # action masks
    "doorkey_rnd": ["experiment=doorkey_rnd"],  # two agents acting in turn (SharedActing), RND's networks
}


def _build(overrides: list[str], device: torch.device):
    cfg = compose_config([*overrides, "buffer.capacity=5000", "train.compile=false"])
    env = make_env(cfg.env, num_envs=cfg.env.num_envs, seed=0)
    agents = make_agents(cfg.train, cfg.exploration, lambda: make_q_network(cfg.model, env, device),
                         transition_keys=transition_keys(env), observation_spec=env.full_observation_spec_unbatched,
                         num_envs=env.batch_size.numel(), device=device, total_updates=100)
    exploration = make_exploration(cfg.exploration, env.full_action_spec_unbatched["action"], device,
                                   action_mask_key=action_mask_key(env))
    return cfg, env, agents, exploration


@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_parameter_and_buffer_is_built_on_the_runs_device(preset):
    """What TorchRL's Collector checks before it acts: if any parameter or buffer of the policy sits elsewhere than
    the policy device, it acts through a copy, and whatever the run writes into the original afterwards (epsilon,
    temperature, which agent plays) never reaches the actions."""
    cfg, env, agents, exploration = _build(PRESETS[preset], META)
    policy = TensorDictSequential(agents.acting_network, exploration.module)
    elsewhere = {key: tensor.device for key, tensor in TensorDict.from_module(policy).items(True, True) if tensor.device != META}
    assert not elsewhere, elsewhere
    for name, piece in agents.pieces().items():  # what a checkpoint stores and the learner updates
        if isinstance(piece, torch.nn.Module):
            elsewhere = {key: t.device for key, t in TensorDict.from_module(piece).items(True, True) if t.device != META}
            assert not elsewhere, (name, elsewhere)
    env.close()


def test_a_checkpoint_from_a_gpu_machine_loads_and_resumes_on_a_cpu(tmp_path, monkeypatch):
    """A checkpoint written on an 8-GPU machine: its tensors are tagged ``cuda:0`` and its RNG states hold 8 CUDA
    states. On a CPU-only machine it loads (tensors mapped to the CPU), restores into CPU pieces and sets the CPU RNG."""
    cfg, env, agents, exploration = _build([], CPU)
    pieces = {**agents.pieces(), "exploration": exploration.module}
    path = tmp_path / "last.pt"
    with monkeypatch.context() as patch:  # write as a GPU machine would: every storage tagged cuda:0, 8 CUDA RNG states
        patch.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        patch.setattr(torch.cuda, "is_available", lambda: True)
        patch.setattr(torch.cuda, "get_rng_state_all", lambda: [torch.get_rng_state().clone() for _ in range(8)])
        save_checkpoint(path, config=cfg, counters=Counters(step=1234), pieces=pieces)
    with pytest.raises(RuntimeError, match="CUDA"):  # what a plain torch.load does with it here
        torch.load(path, weights_only=True)
    payload = load_checkpoint(path)
    assert len(payload["rng"]["cuda"]) == 8
    torch.manual_seed(99)
    _, fresh_agents, fresh_exploration = _build([], CPU)[1:]
    counters, _ = restore_checkpoint(payload, pieces={**fresh_agents.pieces(), "exploration": fresh_exploration.module})
    assert counters.step == 1234
    for mine, theirs in zip(fresh_agents.q_network.parameters(), agents.q_network.parameters()):
        assert mine.device == CPU and torch.equal(mine, theirs)
    env.close()


def test_a_resume_on_fewer_gpus_restores_the_states_of_the_gpus_it_has(monkeypatch):
    """torch's set_rng_state_all would raise IndexError on a machine with fewer GPUs than the writer had."""
    from rlpipe import checkpoint

    state = checkpoint._rng_state()
    state["cuda"] = [torch.get_rng_state().clone() for _ in range(8)]
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: restored.append(device))
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: pytest.fail("set_rng_state_all fails on fewer GPUs"))
    checkpoint._set_rng_state(state)
    assert restored == [0, 1]


class _HostSyncs(TorchFunctionMode):
    """Counts the calls that make the host wait for the learner's device, on tensors of that device (``meta`` here:
    it stands in for a GPU, and holds no data, so each such call is answered with zeros instead): ``item``,
    ``bool``, ``float``, ``int``, ``tolist``, ``numpy``, and copies to the CPU (``cpu``, ``to("cpu")``)."""

    NAMES = {"item", "__bool__", "__float__", "__int__", "tolist", "cpu", "numpy", "to"}

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        tensor = args[0] if args and isinstance(args[0], torch.Tensor) else None
        if name in self.NAMES and tensor is not None and tensor.device == META:
            target = kwargs.get("device", args[1] if len(args) > 1 else None)
            to_cpu = isinstance(target, (str, torch.device)) and torch.device(target).type == "cpu"
            if name != "to" or to_cpu:
                self.calls.append(name)
                shape, dtype = tensor.shape, tensor.dtype
                return {"__bool__": True, "item": 0.0, "__float__": 0.0, "__int__": 0, "tolist": torch.zeros(shape).tolist(),
                        "numpy": torch.zeros(shape).numpy()}.get(name, torch.zeros(shape, dtype=dtype))
        return func(*args, **kwargs)


@pytest.mark.parametrize("preset", list(PRESETS))
def test_a_learning_phase_waits_for_the_device_once(preset):
    """One learning phase (four updates here) on a GPU-like device makes the host wait once, at its end, whatever
    its length: one copy brings back the losses (the finite check) and the new priorities (the CPU sum tree). None
    sits inside an update; RND's two agents and its predictor combine their rewards on the device and add none."""
    cfg, env, agents, _ = _build(PRESETS[preset], META)
    replay = make_replay_buffer(cfg.buffer, cfg.env, env, n_step=cfg.train.n_step, gamma=cfg.train.gamma, extra_keys=agents.stored_keys,
                                device=replay_device(cfg.buffer, cfg.env, META))  # the frame ring beside the learner
    torch.manual_seed(0)
    rollout = env.rollout(200 // max(env.batch_size.numel(), 1), break_when_any_done=False)
    with _HostSyncs():  # (RND's observe reads its rewards back: counted in the test below)
        agents.observe(rollout)
    replay.extend(rollout)
    with _HostSyncs() as syncs:
        learned = learning_phase(replay, agents, n_updates=4, batch_size=cfg.train.batch_size, prioritized=True)
    assert syncs.calls == ["cpu"], syncs.calls
    assert learned.result.losses.device == META and learned.block.batch_size == (4 * cfg.train.batch_size,)
    env.close()


def test_rnd_waits_for_the_device_once_per_collect():
    """RND's ``observe`` (once per collect) brings the collect's intrinsic rewards to the host for the combined
    training return, and nothing else: its statistics branch on the device, ``alpha`` has a host copy, and the
    acting share drawn is read at log time."""
    cfg, env, agents, _ = _build(PRESETS["doorkey_rnd"], META)
    torch.manual_seed(0)
    rollout = env.rollout(50 // max(env.batch_size.numel(), 1), break_when_any_done=False)
    for _ in range(2):  # the first collect sets RND's statistics, the later ones move them
        with _HostSyncs() as syncs:
            agents.observe(rollout.clone())
            agents.schedule(1000)
        assert syncs.calls == ["cpu"], syncs.calls
    env.close()


def test_the_loss_keeps_its_discount_beside_the_network():
    """TorchRL's value estimator makes its gamma buffer on the default device unless told: on a GPU run, a CPU
    tensor inside every compiled update."""
    cfg, _, agents, _ = _build(PRESETS["cartpole"], META)
    elsewhere = {name: buffer.device for name, buffer in agents.loss_module.named_buffers() if buffer.device != META}
    assert not elsewhere, elsewhere


class _CudaStorage:
    """What TorchRL's prioritized sampler reads of a storage to pick its tree's device: this one reports CUDA."""

    device = torch.device("cuda", 0)


@pytest.mark.parametrize("preset", ["cartpole", "breakout_temperature"])
def test_the_replay_lives_on_the_runs_device_and_its_sum_tree_on_the_cpu(preset):
    """``buffer.device``: a GPU run's stored transitions (the frame ring for pixels) sit beside the learner, so a
    learning phase's stacks are gathered there; the sum tree stays on the CPU even when the storage reports CUDA
    (left to itself, TorchRL's sampler switches to a CUDA tree, which its published wheel lacks, and fails)."""
    cfg, env, _, _ = _build(PRESETS[preset], META)
    replay = make_replay_buffer(cfg.buffer, cfg.env, env, n_step=cfg.train.n_step, gamma=cfg.train.gamma, device=META)
    torch.manual_seed(0)
    replay.extend(env.rollout(200 // max(env.batch_size.numel(), 1), break_when_any_done=False))
    block = replay.sample(4 * cfg.train.batch_size)
    assert block.get("observation").device == META and block.get(("next", "observation")).device == META
    if cfg.env.kind == "atari":  # the frame replay's indices stay where its sum tree reads them back: no wait
        assert block.get(PRIORITY_WEIGHT_KEY).device == CPU and block.get(INDEX_KEY).device == CPU
    sampler = replay.sampler
    sampler._maybe_init_from_storage(_CudaStorage())  # what TorchRL does when it meets the storage
    assert sampler.device == CPU and type(sampler._sum_tree).__name__ == "SumSegmentTreeFp32"
    env.close()


@pytest.mark.parametrize(("overrides", "device"), [
    (["env=breakout"], "meta"),  # auto: the frame ring beside the learner
    (["env=breakout", "buffer.device=cpu"], "cpu"),
    (["env=breakout", "buffer.storage=memmap"], "cpu"),  # memory-mapped files are host memory
    ([], "cpu"),  # a few floats per transition: host memory, where the sampled indices meet the CPU sum tree
    (["buffer.device=cuda:1"], "cuda:1"),  # asked for: any storage
])
def test_buffer_device_auto_puts_the_frame_ring_beside_the_learner(overrides, device):
    cfg = compose_config(overrides)
    assert replay_device(cfg.buffer, cfg.env, META) == torch.device(device)


def test_memory_mapped_replay_on_a_gpu_is_refused_with_one_line():
    with pytest.raises(ConfigError, match="buffer.device=cuda is invalid with buffer.storage=memmap"):
        validate(compose_config(["buffer.storage=memmap", "buffer.device=cuda"]))


def _cartpole_agents(overrides: list[str], total_updates: int = 100):
    cfg = compose_config(["buffer.capacity=5000", *overrides])
    env = make_env(cfg.env, num_envs=cfg.env.num_envs, seed=0)
    torch.manual_seed(0)
    agents = make_agents(cfg.train, cfg.exploration, lambda: make_q_network(cfg.model, env, CPU),
                         transition_keys=transition_keys(env), observation_spec=env.full_observation_spec_unbatched,
                         num_envs=env.batch_size.numel(), device=CPU, total_updates=total_updates)
    replay = make_replay_buffer(cfg.buffer, cfg.env, env, n_step=cfg.train.n_step, gamma=cfg.train.gamma)
    replay.extend(env.rollout(300 // max(env.batch_size.numel(), 1), break_when_any_done=False))
    env.close()
    return cfg, agents, replay


@pytest.mark.parametrize("compile_step", [False, True], ids=["loss", "loss_and_step"])
def test_the_compiled_update_compiles_once_without_graph_breaks(compile_step):
    """``train.compile`` (and ``train.compile_step``): Dynamo traces the loss (and the clipping and Adam step) in
    the first update and replays them for every update after, through learning-rate changes (a tensor changed in
    place), target copies and new minibatches: every recompile or graph break would be a stall at each update on a
    GPU (and one more kernel launch group)."""
    from torch._dynamo.utils import counters

    cfg, agents, replay = _cartpole_agents(["train.compile=true", f"train.compile_step={compile_step}",
                                            "train.target_update_steps=3"])
    torch._dynamo.reset()
    counters.clear()
    for phase in range(3):
        if phase == 1:
            first = dict(counters["stats"]), dict(counters["graph_break"])
            counters.clear()
        agents.set_lr(cfg.train.lr / (phase + 1))
        learning_phase(replay, agents, n_updates=4, batch_size=cfg.train.batch_size, prioritized=True)
    assert not counters["stats"].get("unique_graphs") and not counters["graph_break"], (dict(counters["stats"]), first)
    if not compile_step:  # the loss: one graph, whole
        assert first[0]["unique_graphs"] == 1 and not first[1], first
    else:  # at steady state the step breaks only where torch.optim breaks on purpose (no_grad: pytorch#104053)
        explained = torch._dynamo.explain(agents.gradient_update._eager_step)()
        reasons = [str(reason.reason) for reason in explained.break_reasons]
        assert explained.graph_break_count <= 2 and all("User-inserted graph break" in r for r in reasons), reasons


def test_the_compiled_optimizer_step_updates_as_fused_adam_does():
    """``train.compile_step=true`` (the GPU default) against the CPU default (fused Adam, eager clipping): the same
    weights after 12 updates on the same minibatches, up to float rounding."""
    weights = {}
    for compile_step in (False, True):
        cfg, agents, replay = _cartpole_agents(["train.compile=true", f"train.compile_step={compile_step}", "train.lr=0.01"])
        assert agents.optimizer.defaults["fused"] is (not compile_step)
        seed_everything(1)  # the same minibatches (TorchRL's prioritized sampler draws from numpy)
        for _ in range(3):
            learning_phase(replay, agents, n_updates=4, batch_size=cfg.train.batch_size, prioritized=True)
        weights[compile_step] = {k: v.clone() for k, v in agents.q_network.state_dict().items()}
    initial = _cartpole_agents(["train.compile=false"])[1].q_network.state_dict()
    assert all(not torch.equal(fused, initial[key]) for key, fused in weights[False].items())  # it learned
    apart = torch.cat([(fused - weights[True][key]).abs().flatten() for key, fused in weights[False].items()])
    # Adam divides by sqrt(v): where a gradient is near zero, rounding can flip a step's sign (about 1 weight in 10^4
    # here); a step moves a weight by at most about lr, 12 steps in all.
    assert (apart > 1e-5).float().mean() < 1e-3 and apart.max() <= 12 * 0.01, apart.max()


def test_a_resumed_optimizer_keeps_the_settings_and_learning_rate_tensor_it_was_built_with():
    """A checkpoint's Adam groups carry the writing run's settings (a GPU run's capturable, compiled step) and a new
    learning-rate tensor: loading keeps this run's own, with the checkpoint's rate in its learning-rate tensor."""
    cfg, agents, replay = _cartpole_agents(["train.compile=false", "train.lr=0.01"])
    learning_phase(replay, agents, n_updates=2, batch_size=cfg.train.batch_size, prioritized=True)
    written = agents.optimizer.state_dict()
    written["param_groups"][0].update(capturable=True, fused=False, lr=torch.tensor(0.005))  # as a GPU run would write it
    _, resumed, _ = _cartpole_agents(["train.compile=false"])
    built_lr = resumed.optimizer.param_groups[0]["lr"]
    resumed.optimizer.load_state_dict(written)
    group = resumed.optimizer.param_groups[0]
    assert group["lr"] is built_lr and float(built_lr) == pytest.approx(0.005) and resumed.lr == pytest.approx(0.005)
    assert group["fused"] is True and group["capturable"] is False
    steps = [state["step"] for state in resumed.optimizer.state.values()]
    assert steps and all(step.device == CPU and float(step) == 2 for step in steps)
    learning_phase(replay, resumed, n_updates=2, batch_size=cfg.train.batch_size, prioritized=True)  # and steps on


def test_cuda_graphs_are_refused_without_a_cuda_device():
    with pytest.raises(ConfigError, match="train.cudagraphs=true is invalid with train.device=cpu"):
        validate(compose_config(["train.cudagraphs=true", "train.device=cpu"]))
    with pytest.raises(ConfigError, match="train.cudagraphs=true needs a CUDA device"):  # train.device=auto, no GPU here
        _cartpole_agents(["train.cudagraphs=true", "train.device=auto"])


def test_evaluation_sends_the_actor_only_what_it_reads(monkeypatch):
    """Evaluation moves the actor's inputs to its device and brings back only the action, not the whole
    TensorDict with its frame stacks."""
    from rlpipe.evaluate import evaluate_policy

    cfg = compose_config(["env=breakout", "env.max_episode_steps=50", "eval.greedy_game=false"])
    env = make_env(cfg.env, num_envs=2, seed=0)
    q_network = make_q_network(cfg.model, env, CPU)
    seen = []
    original = TensorDict.to

    def spy(self, *args, **kwargs):
        seen.append(sorted(self.keys(True, True)))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(TensorDict, "to", spy)
    evaluate_policy(env, q_network, device=CPU, epsilon=0.05)
    assert seen and all(keys == ["observation"] for keys in seen), seen[:3]
    env.close()


def test_the_gpu_check_is_ready_and_says_it_needs_a_gpu():
    """benchmarks/gpu_check.py: on a machine without CUDA it stops at once with one line and writes nothing."""
    import subprocess
    import sys

    from conftest import REPO

    done = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--dry-run"], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    plan = json.loads(done.stdout.strip().splitlines()[-1])
    assert plan["cuda_available"] is False and {"device_tests", "training", "update"} <= set(plan["steps"])
    assert {"cudagraphs", "loss_compiled_only", "bf16"} <= set(plan["update_variants"])
