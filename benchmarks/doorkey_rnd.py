"""Does RND explore? ``exploration=egreedy`` against ``exploration=rnd`` on DoorKey-8x8 with primitive actions.

``env=doorkey_primitive`` (MiniGrid's sparse reward: 0 until the goal) has kept epsilon-greedy DQN at 0% success
for 200,000 steps (``benchmarks/doorkey.py``). Each (mode, seed) is the real CLI in a process of its own, given
the same step budget; ``--jobs`` of them run side by side, each with ``train.num_threads=1`` (two jobs on the two
cores of the reference machine; never more jobs than cores). Evaluation: 20 greedy episodes of the exploitation
agent every ``--eval-steps``; a run stops at its first evaluation at ``--stop-at`` success (the target, 90%;
``--stop-at 0`` runs every budget to its end). Reported per run: the success rate over training, the first evaluation with any
success and the first at >= 90%, and the agent step of the first successful *training* episode (from the
``episode/success`` log, at ``train.log_interval_steps`` resolution). For RND runs, the coverage of each agent's
greedy policy at the run's latest checkpoint: over 5 episodes, the highest task phase reached (0 start, 1 key
carried, 2 door open, 3 goal) and the distinct cells the agent stood on.

A run whose ``summary.json`` says finished is not run again (the benchmark can be stopped and restarted); an
unfinished one resumes from its ``last.pt``. ``--report-only`` runs nothing and reports the runs as they stand
(unfinished ones up to their latest evaluation, marked as such).

``--final-eval N`` also plays each run's ``last.pt`` (exploitation agent, and for RND the exploration agent too) on N
new layouts, greedy and at epsilon 0.05 (Nature DQN's evaluation protocol).

    python benchmarks/doorkey_rnd.py [--modes egreedy rnd] [--seeds 0 1 2] [--steps 300000] [--out outputs/bench/doorkey_rnd]
        [--override exploration.episodic_novelty=true] [--name doorkey_rnd] [--final-eval 50]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from omegaconf import OmegaConf

from bench_common import REPO, save
from rlpipe.agent import Agent
from rlpipe.config import validate
from rlpipe.envs.doorkey_skills import NUM_PHASES
from rlpipe.evaluate import evaluate_policy
from rlpipe.keys import AGENT_STATE_KEY
from rlpipe.runtime import seed_everything

TARGET_SUCCESS = 0.9  # the target: the exploitation agent at >= 90% success within the budget, every seed


def run(mode: str, seed: int, *, steps: int, eval_steps: int, stop_at: float | None, out: Path,
        overrides: list[str]) -> dict:
    """Trains one (mode, seed) to completion (resuming an unfinished run) and returns its summary and log figures."""
    run_dir = out / f"{mode}_seed{seed}"
    summary_path = run_dir / "summary.json"
    if summary_path.is_file() and json.loads(summary_path.read_text())["finished"]:
        return collect(run_dir)
    last = run_dir / "checkpoints" / "last.pt"
    arguments = ([f"resume={last}"] if last.is_file() else
                 ["env=doorkey_primitive", f"exploration={mode}", f"train.seed={seed}", f"train.total_steps={steps}",
                  f"eval.interval_steps={eval_steps}", "eval.episodes=20", "train.log_interval_steps=1000",
                  "checkpoint.interval_steps=25000",
                  *([f"env.solved_success_rate={stop_at}"] if stop_at is not None else []), *overrides])
    started = time.perf_counter()
    with (out / f"{mode}_seed{seed}.log").open("a") as log:
        proc = subprocess.run(
            [sys.executable, "-m", "rlpipe.train", *arguments, "train.num_threads=1", f"hydra.run.dir={run_dir}"],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1"),
        )
    if proc.returncode != 0:
        raise SystemExit(f"{mode} seed {seed} failed (exit {proc.returncode}); see {out / f'{mode}_seed{seed}.log'}")
    print(f"{mode} seed {seed}: done in {time.perf_counter() - started:.0f} s", flush=True)
    return collect(run_dir)


def collect(run_dir: Path) -> dict:
    """A finished run's summary, with the first training-episode success read from its ``episode/success`` log."""
    summary = json.loads((run_dir / "summary.json").read_text())
    config = validate(OmegaConf.load(run_dir / "config.yaml"))  # the run's own variant, with defaults for keys it predates
    exploration, train = config.exploration, config.train
    first_training_success = None
    success_log = run_dir / "logs" / "csv" / "scalars" / "episode" / "success.csv"
    if success_log.is_file():
        with success_log.open() as file:
            first_training_success = next((int(float(row[0])) for row in csv.reader(file)
                                           if row and row[0] != "step" and float(row[1]) > 0), None)
    evaluations = summary["evaluations"] or [{"step": 0, "eval/success_rate": float("nan")}]
    return {
        "exploration": {key: exploration.get(key) for key in ("kind", "novelty_input", "episodic_novelty", "explorer_episodic",
                                                               "exploit_acting_share", "eps_final")},
        "learner": {key: train[key] for key in ("n_step", "steps_per_collect", "updates_per_step", "batch_size")},
        "view": config.env.view,
        "finished": summary["finished"],
        "steps_so_far": summary["steps"],
        "summary": summary,
        "first_training_success_step": first_training_success,
        "first_eval_success_step": next((e["step"] for e in evaluations if e["eval/success_rate"] > 0), None),
        "first_eval_target_step": next((e["step"] for e in evaluations if e["eval/success_rate"] >= TARGET_SUCCESS), None),
        "final_success_rate": evaluations[-1]["eval/success_rate"],
        "best_success_rate": max(e["eval/success_rate"] for e in evaluations),
    }


def coverage(checkpoint: Path, agent: str, *, episodes: int = 5) -> dict:
    """Greedy episodes of one agent of ``checkpoint``: the highest phase and the distinct cells per episode."""
    player = Agent.load(checkpoint, agent=agent)
    env = player.make_env(num_envs=1, seed=123)
    size = player.env_cfg.size
    phases, cells = [], []
    for _ in range(episodes):
        state, visited, phase = env.reset(), set(), 0
        while True:
            state["action"] = torch.as_tensor(player.act(state["observation"]))
            state = env.step(state)["next"]
            agent_state = state[AGENT_STATE_KEY].reshape(-1)  # [S*S cell one-hot | direction | key | phase]
            phase = max(phase, int(agent_state[-NUM_PHASES:].argmax()))
            visited.add(int(agent_state[: size * size].argmax()))
            if state["done"].any():
                break
        phases.append(phase)
        cells.append(len(visited))
    env.close()
    return {"checkpoint_step": player.checkpoint_step, "max_phase": phases, "distinct_cells": cells}


def final_evaluation(checkpoint: Path, *, episodes: int, epsilons: tuple[float, ...] = (0.0, 0.05),
                     agent: str = "exploitation") -> dict:
    """``agent`` of ``checkpoint`` (``rlpipe.agent.Agent.load``) over ``episodes`` fresh layouts (seeds 10,000 on,
    apart from the training evaluations'), greedy and at each other evaluation epsilon: ``{"eps_0.05": success
    rate, ...}``.

    Epsilon 0.05 is the Nature DQN and CleanRL evaluation protocol: in a deterministic env a greedy policy that
    walks into a loop repeats it until the time limit, which one random action in twenty breaks."""
    player = Agent.load(checkpoint, agent=agent)
    result = {"checkpoint_step": player.checkpoint_step, "episodes": episodes}
    for epsilon in epsilons:
        seed_everything(10_000)  # the random actions' draws
        env = player.make_env(num_envs=episodes, seed=10_000)
        outcome = evaluate_policy(env, player.q_network, device=torch.device("cpu"), epsilon=epsilon)
        result[f"eps_{epsilon:g}"] = outcome.extra_means()["success_rate"]
        env.close()
    return result


def describe(outcome: dict, episodes: int) -> str:
    """One line of a :func:`final_evaluation`."""
    return (f"at step {outcome['checkpoint_step']:,}, success over {episodes} new layouts: greedy {outcome['eps_0']:.2f}, "
            f"epsilon 0.05 {outcome['eps_0.05']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", nargs="+", default=["egreedy", "rnd"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=300_000)
    parser.add_argument("--eval-steps", type=int, default=10_000)
    parser.add_argument("--stop-at", type=float, default=TARGET_SUCCESS,
                        help="stop a run at its first evaluation with this success rate (0 runs the whole budget)")
    parser.add_argument("--report-only", action="store_true", help="run nothing; report the runs as they stand")
    parser.add_argument("--jobs", type=int, default=2, help="runs side by side, one torch thread each")
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "bench" / "doorkey_rnd")
    parser.add_argument("--override", nargs="*", default=[], metavar="KEY=VALUE",
                        help="more CLI overrides for new runs (a resumed run keeps its own), e.g. exploration.episodic_novelty=true")
    parser.add_argument("--name", default="doorkey_rnd", help="results file: benchmarks/results/<name>.json")
    parser.add_argument("--final-eval", type=int, default=0, metavar="EPISODES",
                        help="also evaluate each run's last.pt over this many new layouts, greedy and at epsilon 0.05")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    runs = [(mode, seed) for mode in args.modes for seed in args.seeds]
    if args.report_only:
        runs = [(mode, seed) for mode, seed in runs if (args.out / f"{mode}_seed{seed}" / "summary.json").is_file()]
        results = [collect(args.out / f"{mode}_seed{seed}") for mode, seed in runs]
    else:
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            results = list(pool.map(lambda ms: run(*ms, steps=args.steps, eval_steps=args.eval_steps,
                                                      stop_at=args.stop_at or None, out=args.out,
                                                      overrides=args.override), runs))

    print("\n| mode | seed | success over training (20 greedy episodes per evaluation) | first training success | "
          f"first eval success | first eval >= {TARGET_SUCCESS:.0%} | final | wall s |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    for (mode, seed), r in zip(runs, results):
        curve = " ".join(f"{e['eval/success_rate']:.2f}" for e in r["summary"]["evaluations"])
        unfinished = "" if r["finished"] else f" (unfinished: {r['steps_so_far']:,} steps so far)"
        print(f"| {mode}{unfinished} | {seed} | {curve} | {r['first_training_success_step']} | {r['first_eval_success_step']} | "
              f"{r['first_eval_target_step']} | {r['final_success_rate']:.2f} | {r['summary']['wall_seconds']:.0f} |")
    for (mode, seed), r in zip(runs, results):
        last = args.out / f"{mode}_seed{seed}" / "checkpoints" / "last.pt"
        if mode == "rnd" and last.is_file():
            r["coverage"] = {agent: coverage(last, agent) for agent in ("exploration", "exploitation")}
            print(f"{mode} seed {seed} greedy coverage at step {r['coverage']['exploration']['checkpoint_step']:,}: "
                  + "; ".join(f"{agent}: phases {c['max_phase']}, cells {c['distinct_cells']}" for agent, c in r["coverage"].items()))
        if args.final_eval and last.is_file():
            r["final_evaluation"] = final_evaluation(last, episodes=args.final_eval)
            if mode == "rnd":  # the agent that collected the data, played the same way
                r["final_evaluation"]["exploration_agent"] = final_evaluation(last, episodes=args.final_eval, agent="exploration")
            print(f"{mode} seed {seed}: {describe(r['final_evaluation'], args.final_eval)}", flush=True)
            if mode == "rnd":
                print(f"{mode} seed {seed} (exploration agent): "
                      f"{describe(r['final_evaluation']['exploration_agent'], args.final_eval)}", flush=True)
    previous = REPO / "benchmarks" / "results" / f"{args.name}.json"
    stored = json.loads(previous.read_text()).get("runs", {}) if previous.is_file() else {}
    stored |= {f"{mode}_seed{seed}": r for (mode, seed), r in zip(runs, results)}  # modes measured apart keep each other
    save(args.name, {"steps": args.steps, "eval_steps": args.eval_steps, "jobs": args.jobs, "overrides": args.override,
                     "runs": stored})


if __name__ == "__main__":
    main()
