"""Full-colour native-resolution Atari (``env=breakout_rgb``) against the 84x84 grayscale preset, in one run.

Contenders: ``env=breakout`` (84x84 grayscale, frame skip 4, 8-frame stacks) and ``env=breakout_rgb`` (210x160 RGB,
frame skip 2, 8-frame stacks of 24 channels, the Nature CNN's flattened layer at 22,528 features), plus any
``--variants`` (a preset and overrides, e.g. a resize the user chooses: ``breakout_rgb:env.screen_size=[105,80]``).
For each, with rlpipe's own factories:

1. **env**: agent steps/s of the preset's 4 games with random actions (ale-py's C++ step and rlpipe's TensorDict);
   interleaved rounds, medians.
2. **replay**: a ``FrameReplay`` built from the preset's spec (``rlpipe.replay.make_replay_buffer``), filled past its
   capacity (``--replay-frames``) through ``extend`` with synthetic frames; the growth of the process's resident memory
   per stored frame (``VmRSS``) is the measured bytes per transition; the preset's ring and a 1M-frame ring are that
   figure times their capacity.
3. **learner**: milliseconds per gradient update at the preset's batch size: ``rlpipe.run.learning_phase`` (one
   draw of K=4 minibatches from the frame replay, the compiled double-DQN update, priorities), as training runs it;
   interleaved rounds, medians.
4. **training**: agent steps/s of ``python -m rlpipe.train`` itself while it learns (``time/steps_per_s`` of its
   log windows but the first learning window, which compiles, and the last, which holds the final evaluation), with
   evaluations and checkpoints off.

    python benchmarks/atari_rgb.py [--rounds 3] [--train-steps 1600] [--variants breakout_rgb:env.screen_size=[105,80]]
"""

from __future__ import annotations

import argparse
import csv
import gc
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from bench_common import REPO, compose_config, interleaved_medians, rate, save
from learner_throughput import rlpipe_phase, synthetic_frames
from rlpipe.envs import make_env
from rlpipe.replay import make_replay_buffer

CONTENDERS = ["breakout", "breakout_rgb"]
UPDATES_PER_PHASE = 4  # the presets' learning phase: 16 agent steps x 0.25 updates per step


def overrides_of(contender: str) -> list[str]:
    """``preset[:key=value[:key=value]]`` -> Hydra overrides."""
    preset, *extra = contender.split(":")
    return [f"env={preset}", *extra]


def rss_bytes() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("VmRSS")


def env_stepper(overrides: list[str]):
    """One call: 64 agent steps of the preset's games with random actions; returns the callable and the env."""
    cfg = compose_config(overrides)
    env = make_env(cfg.env, num_envs=cfg.env.num_envs, seed=0)
    td = env.reset()
    calls_per_round = 16  # batched steps per call: 16 x 4 games = 64 agent steps

    def steps() -> None:
        nonlocal td
        for _ in range(calls_per_round):
            td.set("action", env.action_spec.rand())
            _, td = env.step_and_maybe_reset(td)

    return steps, env, calls_per_round * cfg.env.num_envs


def replay_bytes(overrides: list[str], frames: int) -> dict:
    """Resident bytes per stored frame of the preset's frame replay, filled past a ``frames``-frame capacity."""
    cfg = compose_config([*overrides, f"buffer.capacity={frames}", "env.num_envs=1"])
    env = make_env(cfg.env, num_envs=1, seed=0)
    shape = env.full_observation_spec_unbatched["observation"].shape
    gc.collect()
    before = rss_bytes()
    replay = make_replay_buffer(cfg.buffer, cfg.env, env, n_step=cfg.train.n_step, gamma=cfg.train.gamma)
    chunk = 1_000
    for _ in range(frames // chunk + 1):  # one chunk past full: the ring has wrapped
        replay.extend(synthetic_frames(chunk, shape, 4))
    held = rss_bytes() - before
    per_frame = held / replay.capacity
    preset_capacity = compose_config(overrides).buffer.capacity
    result = {"observation_shape": list(shape), "frame_bytes": int(torch.Size(shape[1:]).numel()), "capacity": replay.capacity,
              "rss_bytes_held": held, "bytes_per_transition": per_frame, "preset_capacity": preset_capacity,
              "preset_ring_gb": per_frame * preset_capacity / 1e9, "ring_1m_gb": per_frame * 1e6 / 1e9}
    del replay
    env.close()
    gc.collect()
    return result


def training_rate(overrides: list[str], *, random_steps: int, learn_steps: int, window: int) -> dict:
    """Agent steps/s of ``rlpipe.train`` over its log windows after the first learning window."""
    with tempfile.TemporaryDirectory(prefix="rlpipe-rgb-bench-") as run_dir:
        args = [*overrides, f"train.total_steps={random_steps + learn_steps}", f"train.init_random_steps={random_steps}",
                f"train.log_interval_steps={window}", "eval.interval_steps=100000000", "eval.greedy_game=false",
                "checkpoint.interval_steps=100000000", "checkpoint.save_buffer=false", f"hydra.run.dir={run_dir}"]
        run = subprocess.run([sys.executable, "-m", "rlpipe.train", *args], cwd=REPO, stdin=subprocess.DEVNULL,
                             capture_output=True, text=True)
        if run.returncode != 0:
            raise SystemExit(f"rlpipe.train {' '.join(args)} failed:\n{run.stderr[-3000:]}")
        scalars = Path(run_dir) / "logs" / "csv" / "scalars" / "time"
        rows = {name: {int(r["step"]): float(r["value"]) for r in csv.DictReader((scalars / f"{name}.csv").open())}
                for name in ("steps_per_s", "updates_per_s", "learner_ms_per_step", "env_ms_per_step")}
    # the first learning window compiles; the last holds the final evaluation
    learning = [step for step in sorted(rows["steps_per_s"]) if random_steps + window < step < random_steps + learn_steps]
    mean = lambda name: sum(rows[name][s] for s in learning) / len(learning)  # noqa: E731
    return {"windows": learning, "steps_per_s": mean("steps_per_s"), "updates_per_s": mean("updates_per_s"),
            "learner_ms_per_step": mean("learner_ms_per_step"), "env_ms_per_step": mean("env_ms_per_step"),
            "steps_per_s_by_window": [rows["steps_per_s"][s] for s in learning]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--updates", type=int, default=8, help="timed updates per contender per round")
    parser.add_argument("--replay-frames", type=int, default=20_000, help="capacity of the replay filled to measure bytes")
    parser.add_argument("--train-random-steps", type=int, default=2_000)
    parser.add_argument("--train-steps", type=int, default=1_600, help="learning agent steps of each training run")
    parser.add_argument("--train-window", type=int, default=400, help="agent steps per log window of the training runs")
    parser.add_argument("--variants", nargs="*", default=[], help="more contenders: preset[:key=value...]")
    parser.add_argument("--skip-training", action="store_true", help="env, replay and learner only")
    args = parser.parse_args()
    contenders = CONTENDERS + args.variants

    results: dict[str, dict] = {c: {"overrides": overrides_of(c)} for c in contenders}
    for name in contenders:
        results[name]["replay"] = replay_bytes(overrides_of(name), args.replay_frames)
        print(name, "replay", {k: v for k, v in results[name]["replay"].items() if k != "observation_shape"}, flush=True)

    steppers = {name: env_stepper(overrides_of(name)) for name in contenders}
    env_rates = interleaved_medians({name: (lambda s=s: s[2] * rate(s[0], calls=4, warmup=1)) for name, s in steppers.items()},
                                    rounds=args.rounds)
    for name, (_, env, _) in steppers.items():
        env.close()
        results[name]["env_steps_per_s"] = env_rates[name]
        print(name, "env agent steps/s", round(env_rates[name]["median"]), flush=True)

    phases = {}
    for name in contenders:
        cfg = compose_config(overrides_of(name))
        shape = make_env(cfg.env).full_observation_spec_unbatched["observation"].shape
        phases[name] = rlpipe_phase(synthetic_frames(4_000, shape, 4), overrides_of(name), updates_per_phase=UPDATES_PER_PHASE)
        results[name]["batch_size"] = cfg.train.batch_size
    update_rates = interleaved_medians(
        {name: (lambda p=p: UPDATES_PER_PHASE * rate(p, calls=max(1, args.updates // UPDATES_PER_PHASE), warmup=0))
         for name, p in phases.items()}, rounds=args.rounds)
    for name in contenders:
        rates = update_rates[name]
        results[name]["learner"] = {**rates, "ms_per_update": 1e3 / rates["median"]}
        print(name, "ms per update", round(1e3 / rates["median"], 1), flush=True)
    del phases
    gc.collect()

    if not args.skip_training:
        for name in contenders:
            results[name]["training"] = training_rate(overrides_of(name), random_steps=args.train_random_steps,
                                                      learn_steps=args.train_steps, window=args.train_window)
            print(name, "training agent steps/s", round(results[name]["training"]["steps_per_s"], 1), flush=True)

    base = results[CONTENDERS[0]]
    print("\n| contender | frame | env steps/s | ms/update | train steps/s | bytes/transition | 1M ring GB |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for name, r in results.items():
        r["ratio_to_grayscale"] = {
            "ms_per_update": r["learner"]["ms_per_update"] / base["learner"]["ms_per_update"],
            "bytes_per_transition": r["replay"]["bytes_per_transition"] / base["replay"]["bytes_per_transition"],
            **({"training_steps_per_s": r["training"]["steps_per_s"] / base["training"]["steps_per_s"]} if "training" in r else {}),
        }
        train = f"{r['training']['steps_per_s']:.1f}" if "training" in r else "-"
        print(f"| {name} | {'x'.join(map(str, r['replay']['observation_shape']))} | {r['env_steps_per_s']['median']:.0f} | "
              f"{r['learner']['ms_per_update']:.1f} | {train} | {r['replay']['bytes_per_transition']:,.0f} | "
              f"{r['replay']['ring_1m_gb']:.1f} |")
    save("atari_rgb", {"contenders": results, "updates_per_phase": UPDATES_PER_PHASE, "rounds": args.rounds})


if __name__ == "__main__":
    main()
