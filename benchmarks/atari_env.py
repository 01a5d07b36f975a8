"""Atari environment paths side by side: what an agent step costs, what max-pooling shows, and Breakout training speed.

Three parts, each measured in this one process (or its child runs) with nothing else running:

1. **env cost per agent step**, Breakout, random actions, frame skip 4, interleaved rounds (medians):

   - *bare ALE loop*: ``ale_py.ALEInterface`` with ALE's own frame skip of 4, ``act`` in a Python loop, one game,
     no preprocessing: the emulator's cost, the yardstick;
   - *gym backend*: ``env.backend=gym`` (TorchRL ``GymEnv`` + rlpipe's transforms in a ``SerialEnv``, the path of
     rlpipe before the ale_vector backend), stepped as the collector steps it (``step_and_maybe_reset``);
   - *GymWrapper(AtariVectorEnv)*: TorchRL's own wrapper of ale-py's vector env (``autoreset_mode=SAME_STEP``), same loop;
   - *EnvPool*: ``torchrl.envs.MultiThreadedEnv`` over EnvPool (``pip install envpool``), same loop; where TorchRL's
     wrapper cannot run (the reason is recorded), EnvPool's own ``step`` alone, numpy in and out;
   - *ale_vector*: rlpipe's ``env.backend=ale_vector`` (``AleVectorEnv``), same loop, with and without max-pooling;
   - *AtariVectorEnv.step*: ale-py's vector env alone, numpy in and out (no TorchRL).

   Every vector contender steps ``--num-envs`` games (4, the preset) on one C++ thread per core.
2. **max-pooling**: per game, the share of agent steps whose last emulator frame misses an object that flickers
   (drawn on alternate frames): what the max of the last two frames shows and the last frame alone does not.
3. **Breakout training** (``--train-steps``, 0 skips it): ``python -m rlpipe.train env=breakout exploration=temperature``
   with ``env.backend=gym env.maxpool=false`` against the preset's ``ale_vector``, alternately, ``--train-rounds``
   each; reported from the runs' own ``time/*`` logs over the learning windows (after the random prefill): agent
   steps/s and the share of wall time in env and acting.

    python benchmarks/atari_env.py [--rounds 5] [--steps 2000] [--train-steps 40000] [--train-rounds 2]
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import ale_py
import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from torchrl.envs import EnvBase, GymWrapper

from bench_common import REPO, compose_config, cpu_info, save
from rlpipe.envs import make_env
from rlpipe.envs.atari import rom_id


def bare_ale(steps: int) -> Callable[[], float]:
    ale = ale_py.ALEInterface()
    ale.setInt("random_seed", 0)
    ale.setInt("frame_skip", 4)
    ale.setFloat("repeat_action_probability", 0.0)
    ale.loadROM(ale_py.roms.get_rom_path("breakout"))
    actions = ale.getMinimalActionSet()
    rng = np.random.default_rng(0)

    def run() -> float:
        choices = rng.integers(len(actions), size=steps)
        start = time.perf_counter()
        for choice in choices:
            ale.act(actions[choice])
            if ale.game_over():
                ale.reset_game()
        return (time.perf_counter() - start) / steps

    return run


def torchrl_loop(env: EnvBase, steps: int) -> Callable[[], float]:
    """Random actions through ``step_and_maybe_reset``, as TorchRL's collector steps an env; seconds per agent step."""
    games = max(env.batch_size.numel(), 1)
    state = {"td": env.reset()}

    def run() -> float:
        td = state["td"]
        start = time.perf_counter()
        for _ in range(steps // games):
            td["action"] = env.action_spec.rand()
            _, td = env.step_and_maybe_reset(td)
        state["td"] = td
        return (time.perf_counter() - start) / (steps // games * games)

    return run


def vector_alone(num_envs: int, steps: int) -> Callable[[], float]:
    games = ale_py.vector_env.AtariVectorEnv("breakout", num_envs, stack_num=8, maxpool=True, reward_clipping=False,
                                             num_threads=min(num_envs, os.cpu_count() or 1))
    games.reset(seed=0)
    rng = np.random.default_rng(0)

    def run() -> float:
        start = time.perf_counter()
        for _ in range(steps // num_envs):
            games.step(rng.integers(4, size=num_envs))
        return (time.perf_counter() - start) / (steps // num_envs * num_envs)

    return run


def env_contenders(num_envs: int, steps: int) -> dict[str, Callable[[], float]]:
    vector = compose_config(["env=breakout", f"env.num_envs={num_envs}"]).env
    gym_cfg = compose_config(["env=breakout", f"env.num_envs={num_envs}", "env.backend=gym", "env.maxpool=false"]).env
    no_pool = compose_config(["env=breakout", f"env.num_envs={num_envs}", "env.maxpool=false"]).env
    wrapped = GymWrapper(ale_py.vector_env.AtariVectorEnv("breakout", num_envs, stack_num=8, reward_clipping=False,
                                                          autoreset_mode=AutoresetMode.SAME_STEP), categorical_action_encoding=True)
    contenders = {
        "bare ALE loop (1 game)": bare_ale(steps),
        "gym backend (GymEnv + transforms, SerialEnv)": torchrl_loop(make_env(gym_cfg, num_envs=num_envs, seed=0), steps),
        "GymWrapper(AtariVectorEnv)": torchrl_loop(wrapped, steps),
    }
    try:  # TorchRL's wrapper of EnvPool
        from torchrl.envs import MultiThreadedEnv

        envpool = MultiThreadedEnv(num_envs, "Breakout-v5", create_env_kwargs=ENVPOOL_KWARGS)
        contenders["EnvPool (TorchRL MultiThreadedEnv)"] = torchrl_loop(envpool, steps)
    except Exception as err:  # noqa: BLE001 (the reason is the result)
        NOT_RUN["EnvPool (TorchRL MultiThreadedEnv)"] = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
    contenders["ale_vector (rlpipe, max-pooled)"] = torchrl_loop(make_env(vector, num_envs=num_envs, seed=0), steps)
    contenders["ale_vector (rlpipe, no max-pooling)"] = torchrl_loop(make_env(no_pool, num_envs=num_envs, seed=0), steps)
    contenders["AtariVectorEnv.step alone (numpy)"] = vector_alone(num_envs, steps)
    try:
        contenders["EnvPool step alone (numpy)"] = envpool_alone(num_envs, steps)
    except ImportError as err:
        NOT_RUN["EnvPool step alone (numpy)"] = f"{err} (pip install envpool)"
    return contenders


ENVPOOL_KWARGS = {"stack_num": 8, "episodic_life": False, "reward_clip": False, "noop_max": 30, "repeat_action_probability": 0.0}
NOT_RUN: dict[str, str] = {}  # contender -> why it could not run here


def envpool_alone(num_envs: int, steps: int) -> Callable[[], float]:
    import envpool

    games = envpool.make("Breakout-v5", env_type="gymnasium", num_envs=num_envs, num_threads=min(num_envs, os.cpu_count() or 1),
                         seed=0, **ENVPOOL_KWARGS)
    games.reset()
    rng = np.random.default_rng(0)

    def run() -> float:
        start = time.perf_counter()
        for _ in range(steps // num_envs):
            games.step(rng.integers(4, size=num_envs))
        return (time.perf_counter() - start) / (steps // num_envs * num_envs)

    return run


def flicker_share(game: str, agent_steps: int) -> float:
    """Share of agent steps (4 emulator frames, random actions) whose last frame misses an object that flickers: at
    least ``FLICKER_PIXELS`` pixels that differ from the frame before and are back to that value in the frame after
    (on-off-on). Max-pooling the last two frames shows them; the last frame alone does not. A moving object leaves
    its pixels and does not come back within two frames, so it is not counted."""
    ale = ale_py.ALEInterface()
    ale.setInt("random_seed", 0)
    ale.setFloat("repeat_action_probability", 0.0)
    ale.loadROM(ale_py.roms.get_rom_path(rom_id(f"ALE/{game}-v5")))
    actions = ale.getMinimalActionSet()
    rng = np.random.default_rng(0)
    frames = []
    for _ in range(agent_steps):
        action = actions[rng.integers(len(actions))]
        for _ in range(4):
            ale.act(action)
            frames.append(ale.getScreenGrayscale().astype(np.int16))
        if ale.game_over():
            ale.reset_game()
            frames.append(None)  # no flicker test across a reset
    flickers, tested = 0, 0
    for t in range(4, len(frames) - 1, 4):  # the last emulator frame of each agent step
        before, now, after = frames[t - 1], frames[t], frames[t + 1]
        if before is None or now is None or after is None:
            continue
        tested += 1
        flickers += int(((before != now) & (after == before)).sum() >= FLICKER_PIXELS)
    return flickers / max(tested, 1)


FLICKER_PIXELS = 4


def training_run(backend: str, steps: int, log_interval: int, out: Path) -> dict[str, float]:
    """One short Breakout run; the means over its learning windows of steps/s and the wall-time shares."""
    overrides = ["env=breakout", "exploration=temperature", f"train.total_steps={steps}", "eval.interval_steps=100000000",
                 "checkpoint.interval_steps=100000000", "checkpoint.save_buffer=false", f"train.log_interval_steps={log_interval}",
                 f"hydra.run.dir={out}"]
    if backend == "gym":
        overrides += ["env.backend=gym", "env.maxpool=false"]
    subprocess.run([sys.executable, "-m", "rlpipe.train", *overrides], cwd=REPO, check=True, capture_output=True, stdin=subprocess.DEVNULL)
    time_dir = out / "logs" / "csv" / "scalars" / "time"
    prefill = compose_config(["env=breakout"]).train.init_random_steps

    def series(name: str) -> dict[int, float]:
        with (time_dir / f"{name}.csv").open() as file:
            return {int(row["step"]): float(row["value"]) for row in csv.DictReader(file)}

    learning = [step for step in series("steps_per_s") if step - log_interval >= prefill and step < steps]  # whole windows
    metrics = {"steps_per_s": series("steps_per_s"), "env_fraction": series("env_fraction"), "acting_fraction": series("acting_fraction"),
               "learner_fraction": series("learner_fraction"), "replay_fraction": series("replay_fraction"),
               "env_ms_per_step": series("env_ms_per_step"), "acting_ms_per_step": series("acting_ms_per_step")}
    return {name: statistics.mean(values[step] for step in learning) for name, values in metrics.items()} | {"windows": len(learning)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=2000, help="agent steps per contender per round")
    parser.add_argument("--num-envs", type=int, default=4)
    parser.add_argument("--flicker-games", nargs="*", default=["Breakout", "Pong", "SpaceInvaders", "Qbert", "Seaquest"])
    parser.add_argument("--flicker-steps", type=int, default=2000)
    parser.add_argument("--train-steps", type=int, default=40_000, help="agent steps of each training run (0: skip the training part)")
    parser.add_argument("--train-rounds", type=int, default=2)
    parser.add_argument("--train-log-interval", type=int, default=4_000)
    parser.add_argument("--name", default="atari_env")
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    print(f"CPU: {cpu_info()}")

    contenders = env_contenders(args.num_envs, args.steps)
    seconds: dict[str, list[float]] = {name: [] for name in contenders}
    for name, run in contenders.items():  # warm up: first resets, thread start
        run()
    for _ in range(args.rounds):
        for name, run in contenders.items():
            seconds[name].append(run())
    bare = statistics.median(seconds["bare ALE loop (1 game)"])
    env_rows = {name: {"us_per_agent_step": 1e6 * statistics.median(values), "x_bare_ale": statistics.median(values) / bare,
                       "us_per_agent_step_rounds": [1e6 * v for v in values]} for name, values in seconds.items()}
    print(f"\n| env ({args.num_envs} games, random actions) | us per agent step (median of {args.rounds}) | x bare ALE step |\n| --- | ---: | ---: |")
    for name, row in env_rows.items():
        print(f"| {name} | {row['us_per_agent_step']:.0f} | {row['x_bare_ale']:.2f} |")
    for name, why in NOT_RUN.items():
        print(f"| {name} | not run: {why} | |")

    flicker = {game: flicker_share(game, args.flicker_steps) for game in args.flicker_games}
    print("\n| game | agent steps whose last frame misses a flickering object (max-pooling shows it) |\n| --- | ---: |")
    for game, share in flicker.items():
        print(f"| {game} | {share:.1%} |")

    training: dict[str, list[dict[str, float]]] = {"gym": [], "ale_vector": []}
    if args.train_steps:
        with tempfile.TemporaryDirectory(prefix="rlpipe-atari-env-") as scratch:
            for round_ in range(args.train_rounds):
                for backend in training:
                    training[backend].append(training_run(backend, args.train_steps, args.train_log_interval, Path(scratch) / f"{backend}_{round_}"))
        summary = {backend: {key: statistics.median(run[key] for run in runs) for key in runs[0]} for backend, runs in training.items()}
        print("\n| Breakout training (learning windows) | agent steps/s | env share | acting share | env + acting | env ms/step | acting ms/step |\n"
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for backend, row in summary.items():
            print(f"| {backend} | {row['steps_per_s']:.1f} | {row['env_fraction']:.1%} | {row['acting_fraction']:.1%} | "
                  f"{row['env_fraction'] + row['acting_fraction']:.1%} | {row['env_ms_per_step']:.2f} | {row['acting_ms_per_step']:.2f} |")
        ratios = [new["steps_per_s"] / old["steps_per_s"] for new, old in zip(training["ale_vector"], training["gym"])]
        print(f"ale_vector / gym agent steps/s, per round: {', '.join(f'{r:.2f}' for r in ratios)}")
    save(args.name, {"num_envs": args.num_envs, "rounds": args.rounds, "steps": args.steps, "env": env_rows,
                     "not_run": NOT_RUN, "flicker_steps": args.flicker_steps,
                     "flicker_share": flicker, "train_steps": args.train_steps,
                     "training": training})


if __name__ == "__main__":
    main()
