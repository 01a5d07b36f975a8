"""``python -m rlpipe.train``: deep Q-learning (double DQN, prioritized replay) composed by Hydra from ``conf/``.

The whole algorithm is the loop in :func:`train`, read top to bottom::

    collect -> store -> schedules -> sample -> update -> write priorities -> update target
            -> evaluate / checkpoint / log

Examples::

    python -m rlpipe.train                                   # CartPole-v1, the default experiment
    python -m rlpipe.train env=lunarlander
    python -m rlpipe.train env=cartpole train.seed=3 train.total_steps=20000
    python -m rlpipe.train --multirun train.seed=0,1,2
    python -m rlpipe.train resume=outputs/.../checkpoints/last.pt   # continues in that run's directory

SIGINT (Ctrl-C) or SIGTERM stops the run after its current step with ``last.pt`` and ``summary.json`` written
(exit code 130 / 143); a second one exits at once.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack, nullcontext
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from tensordict.nn import TensorDictSequential
from tqdm import tqdm

from rlpipe.checkpoint import (
    CheckpointError,
    Counters,
    check_stored_buffer,
    load_checkpoint,
    restore_checkpoint,
    save_checkpoint,
)
from rlpipe.collect import make_collector
from rlpipe.config import ConfigError, resumed_config, validate
from rlpipe.envs import action_mask_key, episode_stats, make_env, score_key, transition_keys
from rlpipe.envs.atari import fixed_start
from rlpipe.evaluate import EvalResult, evaluate_policy, evaluation_protocol
from rlpipe.exploration import make_exploration
from rlpipe.learner import make_learner
from rlpipe.loggers import MetricWindow, StageClock, check_logger, make_logger
from rlpipe.models import make_q_network
from rlpipe.record import make_training_recorder
from rlpipe.keys import EPISODE_LENGTH_KEY, EPISODE_RETURN_KEY, INDEX_KEY, PRIORITY_WEIGHT_KEY
from rlpipe.replay import make_beta_schedule, make_replay_buffer, make_replay_scratch
from rlpipe.runtime import (
    StopSignals,
    check_command_line,
    pick_device,
    quiet_libraries,
    resolve_precision,
    run_dir_existed,
    seed_everything,
    write_json,
)

_log = logging.getLogger("rlpipe")
EVAL_SEED_OFFSET = 1_000_000  # evaluation environments are seeded apart from the training environment
EVALUATIONS_FILE = "evaluations.jsonl"  # one line per evaluation, appended as it happens


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


class RunComplete(Exception):
    """A resumed run had already reached ``train.total_steps``: there is nothing to train."""


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    hydra_cfg = HydraConfig.get()
    hydra_dir = Path(hydra_cfg.runtime.output_dir)  # Hydra made it (with .hydra/ and train.log) before this call
    named_dir = any(o.startswith("hydra.run.dir=") for o in hydra_cfg.overrides.hydra)
    run_dir = hydra_dir
    if cfg.get("resume") and hydra_cfg.mode == RunMode.RUN and not named_dir:
        # A run resumed from its last.pt continues in place; from another checkpoint, in a new directory named
        # after the checkpoint's env and seed (Hydra's name took them from this command line's defaults).
        run_dir = _run_dir_of(Path(cfg.resume)) or _renamed_for_checkpoint(hydra_dir, Path(cfg.resume))
        if run_dir != hydra_dir:
            run_dir.mkdir(parents=True, exist_ok=True)  # (the log file moves there at once)
            _move_log_files(hydra_dir, run_dir)
            _remove_if_unused(hydra_dir, default_layout=True)

    def discard() -> None:  # a rejected command leaves no run directory behind
        _remove_if_unused(run_dir, default_layout=not named_dir)
        _remove_if_unused(hydra_dir, default_layout=not named_dir)

    # A sweep's runs form one W&B group, named after the sweep directory (its date and time, or its experiment).
    group = "-".join(Path(hydra_cfg.sweep.dir).parts[-2:]) if hydra_cfg.mode == RunMode.MULTIRUN else None
    if group is not None and cfg.record.dataset and cfg.record.output_dir is not None:
        discard()
        raise SystemExit(f"rlpipe.train: invalid configuration: record.output_dir={cfg.record.output_dir} would be shared by "
                         f"every run of the sweep; leave it null (each run records into <run>/data)")
    # SIGINT/SIGTERM stop the run cleanly from here on (train() checks them after every collect).
    with StopSignals() as stop:
        try:
            summary = train(cfg, run_dir, overrides=list(hydra_cfg.overrides.task), stop=stop, group=group)
        except RunComplete as done:
            discard()
            print(f"rlpipe.train: {done}")
            return None
        except ConfigError as err:
            discard()
            raise SystemExit(f"rlpipe.train: invalid configuration: {err}") from None
        except (CheckpointError, TrainingDiverged) as err:
            discard()
            raise SystemExit(f"rlpipe.train: {err}") from None
        if summary["interrupted"]:
            signum = signal.Signals[summary["stopped_by"]]
            print(f"rlpipe.train: stopped by {signum.name} at step {summary['steps']:,}; last.pt and summary.json written. "
                  f"Resume with: python -m rlpipe.train resume={summary['checkpoints']['last']}")
            raise SystemExit(128 + signum.value)
        solved = f"; solved at step {summary['solved_at_step']} after {summary['solved_at_seconds']:.1f} s" if summary["solved"] else ""
        print(f"run directory: {summary['run_dir']}")
        success = f", success rate {summary['eval/success_rate']:.2f}" if "eval/success_rate" in summary else ""
        print(
            f"final evaluation: {summary['eval/return_mean']:.1f} +- {summary['eval/return_std']:.1f} over "
            f"{summary['eval/episodes']} episodes{success} at step {summary['steps']}{solved} "
            f"(protocol {summary['eval/protocol']['name']}, epsilon {summary['eval/epsilon']:g})"
        )
        print(json.dumps({key: value for key, value in summary.items() if key != "evaluations"}))
    return summary["eval/return_mean"]  # what a sweeper optimizes (hydra/sweeper=optuna)


def train(
    cfg: DictConfig, run_dir: Path, *, overrides: Sequence[str] = (), stop: StopSignals | None = None, group: str | None = None
) -> dict[str, Any]:
    """Trains a DQN agent as ``cfg`` says; writes config, logs, checkpoints and ``summary.json`` into ``run_dir``
    and returns the summary.

    With ``cfg.resume``, the run continues from that checkpoint with the checkpoint's configuration; ``overrides``
    (the command line's) change what a resumed run may change and are refused otherwise
    (:func:`rlpipe.config.resumed_config`). Nothing is written before the configuration, the checkpoint and its
    replay buffer have been checked.

    Args:
        cfg: the composed configuration (validated here).
        run_dir: where the run's files go.
        overrides: the command line's overrides (Hydra's ``key=value`` / ``group=option`` strings).
        stop: SIGINT/SIGTERM handlers already installed by the caller; by default installed here for the run.
        group: the W&B group of the run (the runs of one sweep share it).
    """
    started = time.perf_counter()
    quiet_libraries()
    resume_from = None
    if cfg.get("resume"):
        resume_from = load_checkpoint(cfg.resume)
        cfg = resumed_config(resume_from["config"], cfg, list(overrides))  # validated
        check_stored_buffer(resume_from)
        reached = resume_from["counters"]["step"]
        if reached >= cfg.train.total_steps:
            raise RunComplete(f"{cfg.resume}: the run is complete (step {reached:,} of train.total_steps="
                              f"{cfg.train.total_steps:,}); raise train.total_steps to train further")
    else:
        cfg = validate(cfg)
    # Whatever the run leaves to clean up (its memory-mapped replay) is cleaned up at the end, exceptions included.
    with (StopSignals() if stop is None else nullcontext(stop)) as stop, ExitStack() as cleanup:
        return _train(cfg, run_dir, resume_from, stop=stop, cleanup=cleanup, started=started, group=group)


def _train(
    cfg: DictConfig,
    run_dir: Path,
    resume_from: dict[str, Any] | None,
    *,
    stop: StopSignals,
    cleanup: ExitStack,
    started: float,
    group: str | None,
) -> dict[str, Any]:
    """The body of :func:`train`: build every piece, then the loop."""
    if cfg.train.num_threads is not None:
        torch.set_num_threads(cfg.train.num_threads)
    device = pick_device(cfg.train.device)
    precision = resolve_precision(cfg.train.precision, device)
    seed_everything(cfg.train.seed)
    check_logger(cfg.logger)

    # ---- Build every piece from its config section; network sizes come from the env's specs.
    env = make_env(cfg.env, num_envs=cfg.env.num_envs, seed=cfg.train.seed, parallel=True)  # (env.parallel: workers)
    eval_env = make_env(cfg.env, num_envs=cfg.eval.episodes, seed=cfg.train.seed + EVAL_SEED_OFFSET)
    # eval.greedy_game (Atari): one greedy game from a fixed start besides the protocol's games
    greedy_env = make_env(fixed_start(cfg.env), seed=cfg.train.seed + EVAL_SEED_OFFSET) if cfg.eval.greedy_game else None
    total_updates = math.ceil((cfg.train.total_steps - cfg.train.init_random_steps) * cfg.train.updates_per_step)
    # One agent, or with exploration=rnd two (q_network is the exploitation agent; the exploration agent acts, or both
    # do: exploration.exploit_acting_share)
    learner = make_learner(
        cfg, lambda: make_q_network(cfg.model, env, device, precision=precision),
        transition_keys=transition_keys(env), observation_spec=env.full_observation_spec_unbatched,
        num_envs=env.batch_size.numel(), device=device, total_updates=total_updates,
    )
    q_network = learner.q_network  # evaluated, recorded, checkpointed as best.pt
    exploration = make_exploration(
        cfg.exploration, env.full_action_spec_unbatched["action"], device, action_mask_key=action_mask_key(env)
    )
    policy = TensorDictSequential(learner.acting_network, exploration.module)
    scratch = make_replay_scratch(cfg.buffer, run_dir)  # the run's own directory for memory-mapped replay, if any
    if scratch is not None:
        cleanup.callback(scratch.remove)
    replay = make_replay_buffer(cfg.buffer, cfg.env, env, n_step=cfg.train.n_step, gamma=cfg.train.gamma, scratch=scratch,
                                extra_keys=learner.stored_keys)
    beta_schedule = make_beta_schedule(cfg.buffer, total_steps=cfg.train.total_steps)
    checkpoint_dir = run_dir / "checkpoints"
    pieces = {**learner.pieces(), "exploration": exploration.module}  # what a checkpoint stores, by name
    counters, buffer_restored = Counters(), False
    if resume_from is not None:
        counters, buffer_restored = restore_checkpoint(resume_from, pieces=pieces, replay_buffer=replay)
        if learner.lr_scheduler is None:  # a constant rate: the optimizer's state brought the stored one, this run's applies
            learner.set_lr(cfg.train.lr)
    # record.dataset / record.video (checks its output directory; a resumed run's recording continues)
    recorder = make_training_recorder(cfg, run_dir, resumed_at_step=counters.step if resume_from is not None else None)
    if recorder is not None:
        cleanup.callback(recorder.close)
    # Only now, with every piece built and restored, does the run write into its directory: a rejected
    # configuration or checkpoint leaves nothing behind, and a resumed run's files stay as they were.
    if scratch is not None:
        scratch.keep = cfg.buffer.keep_memmap_files  # (a rejected run's replay files go in any case)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    _write_lines(run_dir / EVALUATIONS_FILE, counters.evaluations)  # a resumed run's, as of its checkpoint
    logger = make_logger(cfg.logger, run_dir, run_name=run_dir.name, config=cfg, group=group)
    cleanup.callback(logger.close)
    if resume_from is not None:
        _inherit(Path(cfg.resume).parent / "best.pt", checkpoint_dir / "best.pt")  # the run's best so far
    wall_before = counters.wall_seconds  # a resumed run's clock continues from its checkpoint
    _log.info("training %s for %s agent steps in %s%s", cfg.env.id, f"{cfg.train.total_steps:,}", run_dir,
              f", resumed from {cfg.resume} at step {counters.step:,}" if resume_from is not None else "")

    def elapsed() -> float:
        """Wall seconds of training so far, earlier processes of a resumed run included."""
        return wall_before + time.perf_counter() - started

    # ---- Config values the loop reads, copied out once.
    total_steps = cfg.train.total_steps
    num_envs = env.batch_size.numel()  # 1 for an unbatched env
    time_limit_s = None if cfg.train.time_limit_minutes is None else 60.0 * cfg.train.time_limit_minutes
    batch_size = cfg.train.batch_size
    updates_per_step = cfg.train.updates_per_step
    prioritized = cfg.buffer.kind == "prioritized"
    # Random prefill in whole collects (the collector rounds up); a restored buffer needs none.
    random_steps = 0 if buffer_restored else _round_up(cfg.train.init_random_steps, cfg.train.steps_per_collect)
    learning_starts = counters.step + random_steps
    solved_when = _solved_when(cfg.env)
    stop_on_solve = cfg.train.stop_on_solve and bool(solved_when)
    eval_interval = cfg.eval.interval_steps
    eval_epsilon = cfg.eval.epsilon
    protocol = evaluation_protocol(cfg.env, epsilon=eval_epsilon, episodes=cfg.eval.episodes)["name"]
    checkpoint_interval = cfg.checkpoint.interval_steps
    log_interval = cfg.train.log_interval_steps
    save_buffer = cfg.checkpoint.save_buffer

    collector = make_collector(env, policy, steps_per_collect=cfg.train.steps_per_collect, device=device, random_steps=random_steps)

    def checkpoint(name: str, *, with_buffer: bool) -> Path:
        counters.wall_seconds = elapsed()
        path = checkpoint_dir / name
        save_checkpoint(path, config=cfg, counters=counters, pieces=pieces, replay_buffer=replay if with_buffer else None)
        return path

    next_eval = _next_multiple(counters.step, eval_interval)
    next_checkpoint = _next_multiple(counters.step, checkpoint_interval)
    next_log = _next_multiple(counters.step, log_interval)
    update_credit = 0.0  # fractional gradient updates carried to the next learning phase
    exploration_value = exploration.update(step=counters.step, episodes=counters.episodes)
    score = score_key(env)  # the game score: unshaped where the env shapes the training reward
    stats = episode_stats(env)  # e.g. DoorKey's success and primitive steps per episode
    last_eval: EvalResult | None = None
    block = None  # the latest learning phase's minibatches (for the Q-value diagnostic)
    evaluations = counters.evaluations  # every evaluation of the run, restored with the counters on resume
    solved_at = _first_solved(evaluations, solved_when)
    window = MetricWindow(step=counters.step, updates=counters.updates)
    clock = StageClock()  # where the wall time goes: env, acting, replay, learner, eval, checkpoint (time/*)
    clock.time_module(policy, "acting")  # the collector calls the policy: time it through forward hooks
    progress = tqdm(total=total_steps, initial=counters.step, unit="step", dynamic_ncols=True, mininterval=1.0)

    collect_started, acting_before = time.perf_counter(), 0.0
    for batch in collector:  # [num_envs, steps] or [steps]
        # The collector stepped the env and called the policy since the previous iteration ended.
        clock.add("env", time.perf_counter() - collect_started - (clock.seconds("acting") - acting_before))
        if batch.numel() > total_steps - counters.step:  # the last collect overshoots: keep exactly the steps left
            batch = batch[..., : (total_steps - counters.step) // num_envs]

        # ---- Store the transitions (the buffer keeps what the loss reads); count steps and finished episodes.
        with clock("learner"):
            learner.observe(batch)  # RND: its statistics, and flags it writes for the replay (nothing for one agent)
        with clock("replay"):
            replay.extend(batch)  # [num_envs, steps] or [steps]
        batch = batch.reshape(-1)  # [steps_per_collect] transitions
        counters.step += batch.numel()
        done = batch.get(("next", "done")).reshape(-1)
        if done.any():
            returns = batch.get(("next", EPISODE_RETURN_KEY)).reshape(-1)[done].tolist()
            scores = batch.get(("next", score)).reshape(-1)[done].tolist()
            lengths = batch.get(("next", EPISODE_LENGTH_KEY)).reshape(-1)[done].tolist()
            extras = {name: batch.get(key).reshape(-1)[done].float().tolist() for name, key in stats.items()}
            window.record_episodes(returns, scores, lengths, extras)
            counters.episodes += len(returns)

        # ---- Schedules are functions of the run's counters.
        exploration_value = exploration.update(step=counters.step, episodes=counters.episodes)
        learner.schedule(counters.step)  # RND: alpha
        if prioritized:
            replay.sampler.beta = beta_schedule(counters.step)

        # ---- Learn. One prioritized draw serves all of this phase's updates: it amortizes the sampler's fixed
        # cost; the priorities it draws with are those written after the previous phase.
        if counters.step >= learning_starts:
            update_credit += batch.numel() * updates_per_step
            n_updates, update_credit = int(update_credit), update_credit - int(update_credit)
            if n_updates:
                with clock("replay"):
                    block = replay.sample(n_updates * batch_size)  # [n_updates * B]
                with clock("learner"):
                    learned = learner.learn(block)  # n_updates gradient steps, target updates, schedule steps
                    finite = bool(torch.isfinite(learned.losses).all())  # waits for the updates to finish (GPU)
                counters.updates += n_updates
                if not finite:
                    losses = learned.losses
                    raise TrainingDiverged(
                        f"the loss became {losses[~torch.isfinite(losses)][0].item()} at update {counters.updates} "
                        f"(step {counters.step}); the last checkpoint in {checkpoint_dir} is from before it"
                    )
                if prioritized:
                    priorities = learned.priorities.cpu()  # [n_updates * B] |TD error|
                    with clock("replay"):
                        replay.update_priority(block.get(INDEX_KEY), priorities)
                    window.record_priorities(priorities, block.get(PRIORITY_WEIGHT_KEY))
                window.record_updates(learned.losses, learned.grad_norms)

        # ---- Evaluate, checkpoint and log when their intervals come round (and evaluate once more at the end).
        out_of_time = time_limit_s is not None and elapsed() >= time_limit_s
        # (a run resumed after it was solved, with stop_on_solve, evaluates once more and stops)
        finishing = counters.step >= total_steps or out_of_time or (stop_on_solve and solved_at is not None)
        # SIGINT / SIGTERM: checkpoint and stop without evaluating (a run that reached its end finishes as usual)
        interrupted = stop.received is not None and not finishing
        if (counters.step >= next_eval or finishing) and not interrupted:
            with clock("eval"):
                last_eval = evaluate_policy(eval_env, q_network, device=device, epsilon=eval_epsilon)
                eval_metrics = last_eval.as_metrics()
                if greedy_env is not None:
                    greedy = evaluate_policy(greedy_env, q_network, device=device, epsilon=0.0)
                    eval_metrics |= {"eval/greedy_return": greedy.return_mean, "eval/greedy_length": greedy.length_mean}
            evaluations.append({"step": counters.step, "wall_seconds": elapsed(), **eval_metrics,
                                "eval/protocol": protocol, "eval/epsilon": eval_epsilon})
            _append_line(run_dir / EVALUATIONS_FILE, evaluations[-1])  # (a killed run's curve survives it)
            logger.log_metrics(eval_metrics, step=counters.step)
            if recorder is not None:  # record.dataset / record.video: more episodes with the evaluation policy
                with clock("record"):
                    recorder.record(q_network, step=counters.step,
                                    on_video=lambda path: logger.log_video("eval/video", path, step=counters.step))
            _log.info("step %s: evaluation %.2f +- %.2f over %d episodes (%.1f wall minutes)", f"{counters.step:,}",
                      last_eval.return_mean, last_eval.return_std, cfg.eval.episodes, elapsed() / 60)
            if last_eval.return_mean > counters.best_eval_return:
                counters.best_eval_return = last_eval.return_mean
                with clock("checkpoint"):
                    checkpoint("best.pt", with_buffer=False)
            if solved_at is None:
                solved_at = _first_solved(evaluations[-1:], solved_when)
            next_eval = _next_multiple(counters.step, eval_interval)
            counters.wall_seconds = elapsed()
            write_json(run_dir / "summary.json", _summary(cfg, run_dir, counters, last_eval, finished=False))
        stopping = finishing or interrupted or (stop_on_solve and solved_at is not None)
        if counters.step >= next_checkpoint or stopping:
            with clock("checkpoint"):
                path = checkpoint("last.pt", with_buffer=save_buffer)
            _log.info("step %s: wrote %s%s", f"{counters.step:,}", path, " and its replay buffer" if save_buffer else "")
            next_checkpoint = _next_multiple(counters.step, checkpoint_interval)
        if counters.step >= next_log or stopping:
            steps_in_window = counters.step - window.start_step
            metrics = window.flush(step=counters.step, updates=counters.updates)
            metrics |= clock.flush(steps=steps_in_window)
            metrics |= {
                f"train/{exploration.name}": exploration_value,
                **learner.metrics(block),  # train/lr, train/q_mean (RND: explore/*, rnd/*)
                "buffer/size": len(replay),
            }
            if prioritized:
                metrics["buffer/beta"] = replay.sampler.beta
            logger.log_metrics(metrics, step=counters.step)
            progress.set_postfix({  # the logger's names (episode/reward: the last 20 training episodes)
                "episode/reward": f"{window.recent_return:.1f}",
                f"train/{exploration.name}": f"{exploration_value:.3f}",
                "train/loss": f"{metrics.get('train/loss', float('nan')):.4f}",
                "eval/return_mean": f"{last_eval.return_mean:.1f}" if last_eval else "-",
                **{name: f"{metrics[name]:.3f}" for name in learner.progress_names},  # RND: combined reward, alpha
            })
            next_log = _next_multiple(counters.step, log_interval)
        progress.update(batch.numel())
        if stopping:
            break
        collect_started, acting_before = time.perf_counter(), clock.seconds("acting")

    progress.close()
    collector.shutdown()
    eval_env.close()
    if greedy_env is not None:
        greedy_env.close()
    counters.wall_seconds = elapsed()
    summary = _summary(cfg, run_dir, counters, last_eval, finished=not interrupted, stopped_by=_stop_reason(
        stop, interrupted=interrupted, complete=counters.step >= total_steps, out_of_time=out_of_time))
    write_json(run_dir / "summary.json", summary)
    _log.info("stopped by %s at step %s after %.1f wall seconds", summary["stopped_by"], f"{counters.step:,}", counters.wall_seconds)
    logger.log_metrics({"summary/wall_seconds": summary["wall_seconds"]}, step=counters.step)
    logger.log_checkpoints([Path(path) for path in summary["checkpoints"].values() if path])
    return summary


def _summary(
    cfg: DictConfig, run_dir: Path, counters: Counters, last_eval: EvalResult | None, *, finished: bool, stopped_by: str | None = None
) -> dict[str, Any]:
    """``summary.json``: the run's counters, its latest evaluation, when it first reached ``env.solved_return``,
    and every evaluation (step, return, wall seconds since the run started, resumed runs included).

    ``finished`` is false while the run is going (the file is rewritten after every evaluation) and after an
    interruption; ``stopped_by`` says what ended it: ``total_steps``, ``solved``, ``time_limit``, ``SIGINT`` or
    ``SIGTERM`` (``interrupted`` is true for the last two). Checkpoint paths are null until the file exists.
    """
    solved_at = _first_solved(counters.evaluations, _solved_when(cfg.env))
    checkpoint_dir = run_dir / "checkpoints"
    return {
        "env": cfg.env.id,
        "seed": cfg.train.seed,
        "finished": finished,
        "stopped_by": stopped_by,
        "interrupted": stopped_by in ("SIGINT", "SIGTERM"),
        "steps": counters.step,
        "total_steps": cfg.train.total_steps,
        "updates": counters.updates,
        "episodes": counters.episodes,
        "eval/episodes": cfg.eval.episodes,
        "eval/epsilon": cfg.eval.epsilon,
        "eval/protocol": evaluation_protocol(cfg.env, epsilon=cfg.eval.epsilon, episodes=cfg.eval.episodes),
        **({"eval/return_mean": None, "eval/return_std": None, "eval/length_mean": None} | (last_eval.as_metrics() if last_eval else {})),
        **{key: value for key, value in (counters.evaluations[-1] if counters.evaluations else {}).items() if key.startswith("eval/greedy_")},
        "eval/best_return_mean": counters.best_eval_return if math.isfinite(counters.best_eval_return) else None,
        "solved_return": cfg.env.solved_return,
        **({"solved_success_rate": cfg.env.solved_success_rate} if "solved_success_rate" in cfg.env else {}),
        "solved": solved_at is not None,
        "solved_at_step": solved_at["step"] if solved_at else None,
        "solved_at_seconds": solved_at["wall_seconds"] if solved_at else None,
        "wall_seconds": counters.wall_seconds,
        "resumed_from": cfg.resume,
        "run_dir": str(run_dir),
        "checkpoints": {name: str(path) if path.is_file() else None
                        for name, path in (("best", checkpoint_dir / "best.pt"), ("last", checkpoint_dir / "last.pt"))},
        "evaluations": counters.evaluations,
    }


def _write_lines(path: Path, entries: list[dict[str, Any]]) -> None:
    """Writes a JSON-lines file atomically."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text("".join(json.dumps(entry) + "\n" for entry in entries))
    temporary.replace(path)


def _append_line(path: Path, entry: dict[str, Any]) -> None:
    """Appends ``entry`` to a JSON-lines file (one ``write`` of one line: a killed run leaves whole lines)."""
    with path.open("a") as file:
        file.write(json.dumps(entry) + "\n")


def _solved_when(env_cfg: DictConfig) -> dict[str, float]:
    """What counts as solved: evaluation means and their thresholds (``env.solved_return``, and
    ``env.solved_success_rate`` for tasks with a success flag); empty when the task sets none."""
    thresholds = {"eval/return_mean": env_cfg.solved_return, "eval/success_rate": env_cfg.get("solved_success_rate")}
    return {name: value for name, value in thresholds.items() if value is not None}


def _first_solved(evaluations: list[dict[str, float]], solved_when: dict[str, float]) -> dict[str, float] | None:
    """The first evaluation that reached any of the ``solved_when`` thresholds, if any."""
    return next((e for e in evaluations if any(e.get(name, float("-inf")) >= value for name, value in solved_when.items())), None)


def _round_up(value: int, multiple: int) -> int:
    return math.ceil(value / multiple) * multiple


def _next_multiple(step: int, interval: int) -> int:
    """The first multiple of ``interval`` strictly after ``step``."""
    return (step // interval + 1) * interval


def _stop_reason(stop: StopSignals, *, interrupted: bool, complete: bool, out_of_time: bool) -> str:
    if interrupted:
        return stop.received.name
    return "total_steps" if complete else "time_limit" if out_of_time else "solved"


def _inherit(source: Path, destination: Path) -> None:
    """Copies a resumed run's ``best.pt`` into a new run directory, so the summary names a file that exists."""
    if source.is_file() and not destination.exists():
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination)


def _run_dir_of(checkpoint: Path) -> Path | None:
    """The run directory of ``<run>/checkpoints/last.pt``: a run resumed from its latest state continues there.
    None for any other checkpoint (``best.pt`` is older than ``last.pt``: continuing in place would overwrite the
    later state and curve), which then gets a new run directory."""
    parent = checkpoint.resolve().parent
    return parent.parent if checkpoint.name == "last.pt" and parent.name == "checkpoints" and checkpoint.is_file() else None


def _renamed_for_checkpoint(hydra_dir: Path, checkpoint: Path) -> Path:
    """Hydra's default run directory (``<time>_<env>_seed<seed>``) renamed after the checkpoint's env and seed."""
    try:
        stored = load_checkpoint(checkpoint)["config"]
    except CheckpointError:
        return hydra_dir  # train() reports it
    stamp = hydra_dir.name.split("_", 1)[0]
    return hydra_dir.with_name(f"{stamp}_{stored['env']['name']}_seed{stored['train']['seed']}")


def _move_log_files(old: Path, new: Path) -> None:
    """Points Hydra's log file (``train.log``) at ``new`` (appending), away from the directory Hydra made."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).parent == old.resolve():
            handler.close()  # reopened on the next record, in append mode, at the new path
            handler.baseFilename, handler.mode = str(new.resolve() / Path(handler.baseFilename).name), "a"


def _remove_if_unused(run_dir: Path, *, default_layout: bool) -> None:
    """Removes what Hydra put into a run directory that the run never used (a rejected command's, or the one a
    resumed run left for its own): ``.hydra/`` and ``train.log``, then the directory if it is left empty and did not
    exist before the command, and, for Hydra's default layout, the ``outputs/<date>/`` directory above it if that is
    left empty. Nothing else is deleted."""
    if not run_dir.is_dir() or not {entry.name for entry in run_dir.iterdir()} <= {".hydra", "train.log"}:
        return
    shutil.rmtree(run_dir / ".hydra", ignore_errors=True)
    (run_dir / "train.log").unlink(missing_ok=True)
    if any(run_dir.iterdir()) or run_dir_existed(run_dir):
        return
    run_dir.rmdir()
    if default_layout and not any(run_dir.parent.iterdir()):
        run_dir.parent.rmdir()


if __name__ == "__main__":
    check_command_line("rlpipe.train", "config", sys.argv[1:], run_dir_key="hydra.run.dir")
    main()
