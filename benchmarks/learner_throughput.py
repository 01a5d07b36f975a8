"""Learner throughput: gradient updates per second of rlpipe's learning phase versus a plain PyTorch update.

Both sides update the same network (the env preset's model: a 256x256 MLP for CartPole and LunarLander, the
Nature CNN on 8-frame stacks for Breakout) on batches of the same size,
in the same process, interleaved over several rounds; medians are reported. Each rlpipe variant runs in a process
of its own, with its own plain-PyTorch baseline, as a training run would.

- **plain PyTorch**: the textbook double-DQN update (as in CleanRL's ``dqn.py``): uniform indices into preallocated
  tensors (for pixels: tensors of stacks), three forward passes, Huber loss, backward, gradient-norm clipping, Adam.
- **rlpipe**: exactly what ``rlpipe/train.py`` does in a learning phase of K updates: one draw of K minibatches from
  the preset's replay memory (TorchRL's buffer, or ``FrameReplay`` rebuilding stacks from single frames), then ``rlpipe.learner.Learner.learn``, the call training makes: per minibatch ``GradientUpdate`` (TorchRL
  ``DQNLoss`` with ``double_dqn=True``, backward, clipping and fused Adam, compiled) and a ``HardUpdate`` step,
  then one priority write.

K is the preset's updates per learning phase (``steps_per_collect * updates_per_step``: 128 for CartPole) and, as
the worst case, 1.

For Breakout (``--env breakout``) the question is how fast this CPU can run a Nature-CNN update at all, so the
contenders are, at each of ``--batch-sizes`` (32 and 128), against the same plain fp32 update:

- rlpipe's learning phase as the preset trains (``FrameReplay``, 3-step targets, compiled loss, ``train.precision``
  auto), and with ``train.precision=bf16``, uniform replay, or no compile;
- the plain update with one lever each: bf16 autocast (targets and loss fp32), ``channels_last`` tensors,
  ``torch.compile`` of the loss, both, one online forward over ``[s; s']`` instead of two, and 1 torch thread
  instead of 2.

    python benchmarks/learner_throughput.py [--env cartpole] [--rounds 15] [--updates 256]
    python benchmarks/learner_throughput.py --env breakout --rounds 3 --updates 24 --buffer-size 20000
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys

import torch
import torch.nn.functional as F
from tensordict import TensorDict
from torch import nn

from bench_common import compose_config, interleaved_medians, paired_ratio, rate, save
from rlpipe.envs import make_env, transition_keys
from rlpipe.run import learning_phase, make_agents
from rlpipe.models import ACTIVATIONS, BytesToUnit, make_q_network
from rlpipe.replay import make_replay_buffer, replay_device
from rlpipe.runtime import pick_device, resolve_precision


def random_transitions(n: int, observation_shape: torch.Size, n_actions: int) -> TensorDict:
    terminated = torch.rand(n, 1) < 0.05
    if len(observation_shape) == 1:
        observation, next_observation = torch.randn(n, *observation_shape), torch.randn(n, *observation_shape)
    else:
        observation = torch.randint(0, 256, (n, *observation_shape), dtype=torch.uint8)
        next_observation = torch.randint(0, 256, (n, *observation_shape), dtype=torch.uint8)
    return TensorDict(
        {
            "observation": observation,
            "action": torch.randint(0, n_actions, (n,)),
            ("next", "observation"): next_observation,
            ("next", "reward"): torch.randn(n, 1),
            ("next", "done"): terminated.clone(),
            ("next", "terminated"): terminated,
        },
        batch_size=[n],
    )


def synthetic_frames(n: int, observation_shape: torch.Size, n_actions: int) -> TensorDict:
    """n consecutive transitions of random frames in stacks, as a collector yields them (episodes of 1,000 steps)."""
    stack, *frame = observation_shape  # [N, H, W], or [N, H, W, 3] in colour
    frames = torch.randint(0, 256, (n + stack, *frame), dtype=torch.uint8)
    stacks = frames.unfold(0, stack, 1).movedim(-1, 1)  # [n + 1, N, H, W(, 3)] views
    step = (torch.arange(n) % 1_000).unsqueeze(-1)
    done = step == 999
    return TensorDict(
        {
            "observation": stacks[:n], "action": torch.randint(0, n_actions, (n,)), "step_count": step,
            ("next", "observation"): stacks[1 : n + 1], ("next", "reward"): torch.randn(n, 1), ("next", "done"): done,
            ("next", "terminated"): done.clone(), ("next", "end-of-life"): done.clone(), ("next", "step_count"): step + 1,
        },
        batch_size=[n],
    )


def plain_network(cfg, observation_shape: torch.Size, n_actions: int) -> nn.Module:
    """The preset's Q-network written directly in PyTorch."""
    activation = ACTIVATIONS[cfg.model.activation]
    if cfg.model.kind == "mlp":
        sizes = [observation_shape[-1], *cfg.model.hidden_sizes]
        layers: list[nn.Module] = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(fan_in, fan_out), activation()]
        return nn.Sequential(*layers, nn.Linear(sizes[-1], n_actions))
    layers = [BytesToUnit()]
    channels = [observation_shape[-3], *cfg.model.channels]
    for fan_in, fan_out, kernel, stride in zip(channels[:-1], channels[1:], cfg.model.kernel_sizes, cfg.model.strides):
        layers += [nn.Conv2d(fan_in, fan_out, kernel, stride), activation()]
    layers.append(nn.Flatten())
    n_features = nn.Sequential(*layers)(torch.zeros(1, *observation_shape, dtype=torch.uint8)).shape[-1]
    return nn.Sequential(*layers, nn.Linear(n_features, cfg.model.hidden_size), activation(), nn.Linear(cfg.model.hidden_size, n_actions))


PLAIN_LEVERS = ("bf16", "channels_last", "compiled", "joint", "threads1")


def plain_pytorch_update(data: TensorDict, cfg, observation_shape: torch.Size, n_actions: int, *, levers: frozenset[str] = frozenset()):
    """A hand-written double-DQN update of the same network, reading preallocated tensors.

    ``levers`` (``PLAIN_LEVERS``) change one thing each: ``bf16`` runs the three forward passes under bf16 autocast
    (the target and the loss in fp32), ``channels_last`` stores network and inputs channels-last, ``compiled``
    compiles the loss (forward passes, target, Huber), ``joint`` runs the online network once over ``[s; s']``
    instead of twice, ``threads1`` runs the update on 1 torch thread instead of 2.
    """
    q_net = plain_network(cfg, observation_shape, n_actions)
    memory_format = torch.channels_last if "channels_last" in levers else torch.contiguous_format
    q_net = q_net.to(memory_format=memory_format)
    target_net = copy.deepcopy(q_net)
    optimizer = torch.optim.Adam(q_net.parameters(), lr=cfg.train.lr)
    obs, actions = data["observation"], data["action"]
    next_obs, rewards = data["next", "observation"], data["next", "reward"]
    terminated = data["next", "terminated"].float()
    n, batch_size, gamma, max_norm = len(data), cfg.train.batch_size, cfg.train.gamma, cfg.train.max_grad_norm
    pixels = obs.dim() == 4
    counter = {"updates": 0}

    def loss_of(o, a, o2, r, term):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled="bf16" in levers):
            if "joint" in levers:
                q_both = q_net(torch.cat([o, o2]))  # [2B, A]: one online pass; s' rows only give the argmax
                q_all, next_online = q_both[: len(o)], q_both[len(o):].detach()
            else:
                q_all = q_net(o)
                with torch.no_grad():
                    next_online = q_net(o2)
            with torch.no_grad():
                next_target = target_net(o2)
        next_q = next_target.float().gather(-1, next_online.argmax(-1, keepdim=True))
        target = r + gamma * (1.0 - term) * next_q  # fp32
        return F.smooth_l1_loss(q_all.float().gather(-1, a.unsqueeze(-1)), target)

    loss_fn = torch.compile(loss_of, dynamic=False) if "compiled" in levers else loss_of

    def update() -> None:
        idx = torch.randint(0, n, (batch_size,))
        o, o2 = obs[idx], next_obs[idx]
        if pixels:
            o, o2 = o.contiguous(memory_format=memory_format), o2.contiguous(memory_format=memory_format)
        loss = loss_fn(o, actions[idx], o2, rewards[idx], terminated[idx])
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(q_net.parameters(), max_norm)
        optimizer.step()
        counter["updates"] += 1
        if counter["updates"] % cfg.train.target_update_steps == 0:
            target_net.load_state_dict(q_net.state_dict())

    return update


def on_threads(threads: int | None, fn):
    """``fn`` run with ``threads`` torch threads (restored after), or as it is: set once per timed round, since
    resizing the OpenMP pool on every update would cost more than the update."""
    if threads is None:
        return fn

    def wrapped():
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return fn()
        finally:
            torch.set_num_threads(before)

    return wrapped


def rlpipe_phase(data: TensorDict, overrides: list[str], *, updates_per_phase: int, observe_steps: int = 0):
    """One learning phase of rlpipe/train.py, built with the same factories from the same configuration; with
    ``observe_steps``, preceded by the learner's look at a collect of that many transitions (RND's statistics)."""
    cfg = compose_config([*overrides, "env.num_envs=1"])  # one stream: the synthetic data is one trajectory
    env = make_env(cfg.env)
    device = pick_device(cfg.train.device)  # (the CPU here; a GPU in benchmarks/gpu_check.py)
    precision = resolve_precision(cfg.train.precision, device)
    learner = make_agents(cfg.train, cfg.exploration, lambda: make_q_network(cfg.model, env, device, precision=precision),
                           transition_keys=transition_keys(env), observation_spec=env.full_observation_spec_unbatched,
                           num_envs=1, device=device, total_updates=1_000_000)
    novelty_key = getattr(learner, "novelty_key", ("next", "observation"))  # RND's input (DoorKey: the agent state)
    if novelty_key not in data.keys(include_nested=True):  # an entry beyond the observation: random values of its spec
        spec = env.full_observation_spec_unbatched[novelty_key[-1]]
        data = data.clone()
        data.set(novelty_key[-1], spec.rand(data.batch_size))
        data.set(novelty_key, spec.rand(data.batch_size))
    collect = data[:observe_steps] if observe_steps else None
    replay = make_replay_buffer(cfg.buffer, cfg.env, env, n_step=cfg.train.n_step, gamma=cfg.train.gamma,
                                extra_keys=learner.stored_keys, device=replay_device(cfg.buffer, cfg.env, device),
                                max_frames=2 * len(data))  # (the frames it will hold: a large ring need not fit whole)
    if cfg.env.kind != "atari":  # (Atari: nothing to store, and RND's statistics of every frame would take ~0.5 GB)
        learner.observe(data)  # as train.py, before storing: what the learner stores with a transition (RND's flags)
    replay.extend(data)
    batch_size, prioritized = cfg.train.batch_size, cfg.buffer.kind == "prioritized"

    def phase():  # rlpipe/train.py's learning phase itself: one draw, the updates, the finite check, priorities
        if collect is not None:
            learner.observe(collect)
        return learning_phase(replay, learner, n_updates=updates_per_phase, batch_size=batch_size, prioritized=prioritized)

    phase()  # the first call compiles
    return phase


def measure_variant(args: argparse.Namespace) -> dict:
    """Plain PyTorch against one rlpipe variant or one plain-PyTorch lever, interleaved in this process.

    Variants: ``rlpipe:<buffer>:<K>:<compiled|compiled_step|eager>:<precision>``, or ``plain:<lever>[+<lever>]`` (``PLAIN_LEVERS``).
    """
    base = [f"env={args.env}"] + ([f"train.batch_size={args.batch_size}"] if args.batch_size else [])
    cfg = compose_config(base)
    if not cfg.env.get("grayscale", True):
        raise SystemExit("learner_throughput.py measures grayscale presets; colour frames: python benchmarks/atari_rgb.py")
    env = make_env(cfg.env, num_envs=1)
    observation_shape = env.full_observation_spec_unbatched["observation"].shape
    n_actions = env.full_action_spec_unbatched["action"].space.n
    kind, *spec = args.variant.split(":")
    if cfg.env.kind == "atari":  # stacked frames: the frame memory gets consecutive frames, plain PyTorch stacks
        data = synthetic_frames(args.buffer_size, observation_shape, n_actions)
        plain_data = random_transitions(min(args.buffer_size, 10_000), observation_shape, n_actions)
    else:
        data = plain_data = random_transitions(args.buffer_size, observation_shape, n_actions)
    plain = plain_pytorch_update(plain_data, cfg, observation_shape, n_actions)
    if kind == "plain":
        levers = frozenset(spec[0].split("+"))
        contender = plain_pytorch_update(plain_data, cfg, observation_shape, n_actions, levers=levers)
        contender()  # a compiled lever compiles here
        k, described = 1, {"levers": sorted(levers)}
        threads = 1 if "threads1" in levers else None
    else:
        buffer, k, mode, precision = spec[0], int(spec[1]), spec[2], spec[3] if len(spec) > 3 else "auto"
        compiled = mode in ("compiled", "compiled_step")  # compiled: the loss; compiled_step: clipping and Adam too
        overrides = [*base, f"buffer={buffer}", f"train.compile={compiled}", f"train.compile_step={mode == 'compiled_step'}",
                     f"train.precision={precision}"]
        contender = rlpipe_phase(data, overrides, updates_per_phase=k)
        threads = None
        described = {"buffer": buffer, "updates_per_phase": k, "mode": mode, "precision": precision,
                     "precision_used": str(resolve_precision(precision, torch.device("cpu"))).removeprefix("torch.")}
    results = interleaved_medians(
        {
            "plain": lambda: rate(plain, calls=args.updates),
            "rlpipe": on_threads(threads, lambda: k * rate(contender, calls=max(1, args.updates // k), warmup=0)),
        },
        rounds=args.rounds,
    )
    return {"variant": args.variant, "batch_size": cfg.train.batch_size, **described, **results,
            "ratio": paired_ratio(results["rlpipe"]["rates"], results["plain"]["rates"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="cartpole")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--updates", type=int, default=256, help="timed updates per contender per round")
    parser.add_argument("--buffer-size", type=int, default=50_000)
    parser.add_argument("--batch-sizes", type=int, nargs="+", help="Breakout: the batch sizes to measure (32 128)")
    parser.add_argument("--batch-size", type=int, help=argparse.SUPPRESS)  # one variant's batch size (the full run)
    parser.add_argument("--variants", nargs="+", help="measure only these variants (default: all for the env)")
    parser.add_argument("--name", help="the results file's name (default: learner_throughput_<env>[_batch<B>...])")
    parser.add_argument("--variant", help="rlpipe:buffer:K:compiled|compiled_step|eager[:precision] or plain:lever[+lever]; measure only this one")
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(measure_variant(args)))
        return

    cfg = compose_config([f"env={args.env}"])
    preset_k = int(cfg.train.steps_per_collect * cfg.train.updates_per_step)
    if cfg.env.kind == "atari":
        batch_sizes = args.batch_sizes or [32, 128]
        variants = [f"rlpipe:prioritized:{preset_k}:compiled:auto", f"rlpipe:prioritized:{preset_k}:compiled:bf16",
                    f"rlpipe:uniform:{preset_k}:compiled:auto", f"rlpipe:prioritized:{preset_k}:eager:auto",
                    *(f"plain:{lever}" for lever in PLAIN_LEVERS), "plain:compiled+bf16", "plain:compiled+channels_last"]
    else:
        batch_sizes = [None]
        variants = [f"rlpipe:{buffer}:{k}:compiled" for k in sorted({preset_k, 1}, reverse=True) for buffer in ("prioritized", "uniform")]
        variants.append(f"rlpipe:prioritized:{preset_k}:eager")
    variants = args.variants or variants
    # One process per variant, as in training: several compiled updates in one process share Dynamo's cache
    # entries and slow each other down.
    results = []
    for batch_size in batch_sizes:
        for variant in variants:
            command = [sys.executable, __file__, "--variant", variant, "--env", args.env, "--rounds", str(args.rounds),
                       "--updates", str(args.updates), "--buffer-size", str(args.buffer_size)]
            if batch_size:
                command += ["--batch-size", str(batch_size)]
            proc = subprocess.run(command, capture_output=True, text=True, check=True)
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"measured {variant} (batch {results[-1]['batch_size']}): ratio {results[-1]['ratio']:.2f}", flush=True)

    model = f"MLP {list(cfg.model.hidden_sizes)}" if cfg.model.kind == "mlp" else "Nature CNN on 8-frame stacks"
    print(f"\nLearner throughput, {args.env}: {model}; {args.rounds} interleaved rounds of {args.updates} updates per "
          f"contender; medians, and the median of the per-round ratios to the plain fp32 update")
    print("| contender | batch | K (updates per phase) | updates/s | plain fp32 updates/s | ratio |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        if "levers" in r:
            name = "plain PyTorch + " + " + ".join(r["levers"])
        else:
            precision = f", {r['precision_used']}" if "precision_used" in r else ""
            mode = {"compiled": "compiled", "compiled_step": "compiled with its optimizer step (train.compile_step=true)"}.get(
                r["mode"], "eager (train.compile=false)")
            name = f"rlpipe, {r['buffer']} replay, {mode}{precision}"
        print(f"| {name} | {r['batch_size']} | {r.get('updates_per_phase', 1)} | {r['rlpipe']['median']:.1f} | "
              f"{r['plain']['median']:.1f} | {r['ratio']:.2f} |")
    suffix = "".join(f"_batch{b}" for b in args.batch_sizes) if args.batch_sizes else ""
    save(args.name or f"learner_throughput_{args.env}{suffix}", {
        "env": args.env, "model": model, "batch_sizes": [b or cfg.train.batch_size for b in batch_sizes],
        "preset_updates_per_phase": preset_k, "results": results,
    })


if __name__ == "__main__":
    main()
