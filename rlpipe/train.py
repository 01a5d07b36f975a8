"""``python -m rlpipe.train``: deep Q-learning (double DQN, prioritized replay) composed by Hydra from ``conf/``.

The whole algorithm is the loop in :func:`train`, read top to bottom::

    collect -> store -> schedules -> sample -> update -> write priorities -> update target
            -> evaluate / checkpoint / log

Examples::

    python -m rlpipe.train                                   # CartPole-v1, the default experiment
    python -m rlpipe.train env=lunarlander
    python -m rlpipe.train env=cartpole train.seed=3 train.total_steps=20000
    python -m rlpipe.train --multirun train.seed=0,1,2
    python -m rlpipe.train resume=outputs/.../checkpoints/last.pt
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from tensordict import TensorDictBase
from tensordict.nn import TensorDictSequential
from torchrl.collectors import Collector
from torchrl.modules import QValueActor
from tqdm import tqdm

from rlpipe.checkpoint import CheckpointError, Counters, load_checkpoint, restore_checkpoint, save_checkpoint
from rlpipe.config import ConfigError, validate
from rlpipe.envs import action_mask_key, episode_stats, make_env, score_key, transition_keys
from rlpipe.evaluate import EvalResult, evaluate_policy
from rlpipe.exploration import make_exploration
from rlpipe.learner import (
    TargetUpdaterState,
    make_gradient_update,
    make_loss,
    make_lr_scheduler,
    make_optimizer,
    make_target_updater,
)
from rlpipe.loggers import MetricWindow, StageClock, make_logger
from rlpipe.models import make_q_network
from rlpipe.keys import EPISODE_LENGTH_KEY, EPISODE_RETURN_KEY, INDEX_KEY, PRIORITY_WEIGHT_KEY
from rlpipe.replay import make_beta_schedule, make_replay_buffer
from rlpipe.runtime import pick_device, quiet_libraries, resolve_precision, seed_everything

EVAL_SEED_OFFSET = 1_000_000  # evaluation environments are seeded apart from the training environment


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        summary = train(validate(cfg), run_dir)
    except ConfigError as err:
        raise SystemExit(f"rlpipe.train: invalid configuration: {err}") from None
    except (CheckpointError, TrainingDiverged) as err:
        raise SystemExit(f"rlpipe.train: {err}") from None
    solved = f"; solved at step {summary['solved_at_step']} after {summary['solved_at_seconds']:.1f} s" if summary["solved"] else ""
    print(f"run directory: {summary['run_dir']}")
    success = f", success rate {summary['eval_success_rate']:.2f}" if "eval_success_rate" in summary else ""
    print(
        f"final evaluation: {summary['eval_return_mean']:.1f} +- {summary['eval_return_std']:.1f} over "
        f"{summary['eval_episodes']} episodes{success} at step {summary['steps']}{solved}"
    )
    print(json.dumps({key: value for key, value in summary.items() if key != "evaluations"}))


def train(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Trains a DQN agent as ``cfg`` (validated) says; writes config, logs, checkpoints and ``summary.json`` into
    ``run_dir`` and returns the summary."""
    started = time.perf_counter()
    quiet_libraries()
    resume_from = load_checkpoint(cfg.resume) if cfg.resume else None
    if resume_from is not None:
        _check_resumable(resume_from, cfg)
    device = pick_device(cfg.train.device)
    precision = resolve_precision(cfg.train.precision, device)
    seed_everything(cfg.train.seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg))

    # ---- Build every piece from its config section; network sizes come from the env's specs.
    env = make_env(cfg.env, num_envs=cfg.env.num_envs, seed=cfg.train.seed)
    eval_env = make_env(cfg.env, num_envs=cfg.eval.episodes, seed=cfg.train.seed + EVAL_SEED_OFFSET)
    q_network = make_q_network(cfg.model, env, device, precision=precision)
    exploration = make_exploration(
        cfg.exploration, env.full_action_spec_unbatched["action"], device, action_mask_key=action_mask_key(env)
    )
    policy = TensorDictSequential(q_network, exploration.module)
    loss_module = make_loss(cfg.train, q_network)
    optimizer = make_optimizer(cfg.train, loss_module, device)
    total_updates = math.ceil((cfg.train.total_steps - cfg.train.init_random_steps) * cfg.train.updates_per_step)
    lr_scheduler = make_lr_scheduler(cfg.train, optimizer, total_updates=total_updates)
    target_updater = make_target_updater(cfg.train, loss_module)
    update = make_gradient_update(cfg.train, loss_module, optimizer, transition_keys=transition_keys(env), device=device)
    replay = make_replay_buffer(cfg.buffer, cfg.env, env, n_step=cfg.train.n_step, gamma=cfg.train.gamma)
    beta_schedule = make_beta_schedule(cfg.buffer, total_steps=cfg.train.total_steps)
    logger = make_logger(cfg.logger, run_dir, run_name=run_dir.name, config=cfg)
    checkpoint_dir = run_dir / "checkpoints"
    pieces = {
        "q_network": q_network,
        "target_network": loss_module.target_value_network_params,
        "optimizer": optimizer,
        "lr_scheduler": lr_scheduler,
        "exploration": exploration.module,
        "target_updater": TargetUpdaterState(target_updater),
    }
    counters, buffer_restored = Counters(), False
    if resume_from is not None:
        counters, buffer_restored = restore_checkpoint(resume_from, pieces=pieces, replay_buffer=replay)
    wall_before = counters.wall_seconds  # a resumed run's clock continues from its checkpoint

    def elapsed() -> float:
        """Wall seconds of training so far, earlier processes of a resumed run included."""
        return wall_before + time.perf_counter() - started

    # ---- Config values the loop reads, copied out once.
    total_steps = cfg.train.total_steps
    time_limit_s = None if cfg.train.time_limit_minutes is None else 60.0 * cfg.train.time_limit_minutes
    batch_size = cfg.train.batch_size
    updates_per_step = cfg.train.updates_per_step
    prioritized = cfg.buffer.kind == "prioritized"
    # Random prefill in whole collects (the collector rounds up); a restored buffer needs none.
    random_steps = 0 if buffer_restored else _round_up(cfg.train.init_random_steps, cfg.train.steps_per_collect)
    learning_starts = counters.step + random_steps
    solved_return = cfg.env.solved_return
    stop_on_solve = cfg.train.stop_on_solve and solved_return is not None
    eval_interval = cfg.eval.interval_steps
    eval_epsilon = cfg.eval.epsilon
    checkpoint_interval = cfg.checkpoint.interval_steps
    log_interval = cfg.train.log_interval_steps
    save_buffer = cfg.checkpoint.save_buffer

    collector = Collector(
        env,
        policy,
        frames_per_batch=cfg.train.steps_per_collect,
        total_frames=-1,  # the loop below decides when to stop
        init_random_frames=random_steps,
        policy_device=device,
        env_device=env.device,
        storing_device="cpu",
        track_traj_ids=False,
        auto_register_policy_transforms=False,  # the policy is not recurrent: it needs no extra env transforms
    )

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
    solved_at = _first_solved(evaluations, solved_return)
    window = MetricWindow(step=counters.step, updates=counters.updates)
    clock = StageClock()  # where the wall time goes: env, acting, replay, learner, eval, checkpoint (time/*)
    clock.time_module(policy, "acting")  # the collector calls the policy: time it through forward hooks
    progress = tqdm(total=total_steps, initial=counters.step, unit="step", dynamic_ncols=True, mininterval=1.0)

    collect_started, acting_before = time.perf_counter(), 0.0
    for batch in collector:
        # The collector stepped the env and called the policy since the previous iteration ended.
        clock.add("env", time.perf_counter() - collect_started - (clock.seconds("acting") - acting_before))

        # ---- Store the transitions (the buffer keeps what the loss reads); count steps and finished episodes.
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
                    results = []
                    for minibatch in block.split(batch_size):  # [B] each
                        results.append(update(minibatch))
                        target_updater.step()
                        if lr_scheduler is not None:
                            lr_scheduler.step()
                    losses = torch.stack([r.loss for r in results])  # [n_updates]
                    finite = bool(torch.isfinite(losses).all())  # waits for the updates to finish (GPU)
                counters.updates += n_updates
                if not finite:
                    raise TrainingDiverged(
                        f"the loss became {losses[~torch.isfinite(losses)][0].item()} at update {counters.updates} "
                        f"(step {counters.step}); the last checkpoint in {checkpoint_dir} is from before it"
                    )
                if prioritized:
                    priorities = torch.cat([r.priority for r in results]).cpu()  # [n_updates * B] |TD error|
                    with clock("replay"):
                        replay.update_priority(block.get(INDEX_KEY), priorities)
                    window.record_priorities(priorities, block.get(PRIORITY_WEIGHT_KEY))
                window.record_updates(losses, torch.stack([r.grad_norm for r in results]))

        # ---- Evaluate, checkpoint and log when their intervals come round (and evaluate once more at the end).
        out_of_time = time_limit_s is not None and elapsed() >= time_limit_s
        # (a run resumed after it was solved, with stop_on_solve, evaluates once more and stops)
        finishing = counters.step >= total_steps or out_of_time or (stop_on_solve and solved_at is not None)
        if counters.step >= next_eval or finishing:
            with clock("eval"):
                last_eval = evaluate_policy(eval_env, q_network, device=device, epsilon=eval_epsilon)
            evaluations.append({"step": counters.step, "return_mean": last_eval.return_mean, "return_std": last_eval.return_std,
                                "length_mean": last_eval.length_mean, **last_eval.extra_means(), "wall_seconds": elapsed()})
            logger.log_metrics(last_eval.as_metrics(), step=counters.step)
            if last_eval.return_mean > counters.best_eval_return:
                counters.best_eval_return = last_eval.return_mean
                with clock("checkpoint"):
                    checkpoint("best.pt", with_buffer=False)
            if solved_at is None and solved_return is not None and last_eval.return_mean >= solved_return:
                solved_at = evaluations[-1]
            next_eval = _next_multiple(counters.step, eval_interval)
            counters.wall_seconds = elapsed()
            _write_json(run_dir / "summary.json", _summary(cfg, run_dir, counters, last_eval, finished=False))
        stopping = finishing or (stop_on_solve and solved_at is not None)
        if counters.step >= next_checkpoint or stopping:
            with clock("checkpoint"):
                checkpoint("last.pt", with_buffer=save_buffer)
            next_checkpoint = _next_multiple(counters.step, checkpoint_interval)
        if counters.step >= next_log or stopping:
            steps_in_window = counters.step - window.start_step
            metrics = window.flush(step=counters.step, updates=counters.updates)
            metrics |= clock.flush(steps=steps_in_window)
            metrics |= {
                f"train/{exploration.name}": exploration_value,
                "train/lr": optimizer.param_groups[0]["lr"].item(),
                "train/q_mean": _mean_q(q_network, block) if block is not None else float("nan"),
                "buffer/size": len(replay),
            }
            if prioritized:
                metrics["buffer/beta"] = replay.sampler.beta
            logger.log_metrics(metrics, step=counters.step)
            progress.set_postfix(
                reward=f"{window.recent_return:.1f}",
                **{exploration.label: f"{exploration_value:.3f}"},
                loss=f"{metrics.get('train/loss', float('nan')):.4f}",
                eval=f"{last_eval.return_mean:.1f}" if last_eval else "-",
            )
            next_log = _next_multiple(counters.step, log_interval)
        progress.update(min(batch.numel(), total_steps - progress.n))  # the last collect may overshoot
        if stopping:
            break
        collect_started, acting_before = time.perf_counter(), clock.seconds("acting")

    progress.close()
    collector.shutdown()
    eval_env.close()
    assert last_eval is not None
    counters.wall_seconds = elapsed()
    summary = _summary(cfg, run_dir, counters, last_eval, finished=True)
    _write_json(run_dir / "summary.json", summary)
    logger.log_metrics({"summary/wall_seconds": summary["wall_seconds"]}, step=counters.step)
    return summary


def _summary(cfg: DictConfig, run_dir: Path, counters: Counters, last_eval: EvalResult, *, finished: bool) -> dict[str, Any]:
    """``summary.json``: the run's counters, its latest evaluation, when it first reached ``env.solved_return``,
    and every evaluation (step, return, wall seconds since the run started, resumed runs included)."""
    solved_return = cfg.env.solved_return
    solved_at = _first_solved(counters.evaluations, solved_return)
    checkpoint_dir = run_dir / "checkpoints"
    return {
        "env": cfg.env.id,
        "seed": cfg.train.seed,
        "finished": finished,  # False while the run is going (summary.json is rewritten after every evaluation)
        "steps": counters.step,
        "updates": counters.updates,
        "episodes": counters.episodes,
        "eval_return_mean": last_eval.return_mean,
        "eval_return_std": last_eval.return_std,
        "eval_episodes": cfg.eval.episodes,
        "eval_length_mean": last_eval.length_mean,
        **{f"eval_{name}": value for name, value in last_eval.extra_means().items()},
        "best_eval_return_mean": counters.best_eval_return,
        "solved_return": solved_return,
        "solved": solved_at is not None,
        "solved_at_step": solved_at["step"] if solved_at else None,
        "solved_at_seconds": solved_at["wall_seconds"] if solved_at else None,
        "wall_seconds": counters.wall_seconds,
        "resumed_from": cfg.resume,
        "run_dir": str(run_dir),
        "checkpoints": {"best": str(checkpoint_dir / "best.pt"), "last": str(checkpoint_dir / "last.pt")},
        "evaluations": counters.evaluations,
    }


def _first_solved(evaluations: list[dict[str, float]], solved_return: float | None) -> dict[str, float] | None:
    """The first evaluation whose mean reached ``solved_return``, if any."""
    if solved_return is None:
        return None
    return next((e for e in evaluations if e["return_mean"] >= solved_return), None)


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    """Writes ``path`` through a temporary file, so that a reader never sees half of it."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(payload, indent=2))
    temporary.replace(path)


def _round_up(value: int, multiple: int) -> int:
    return math.ceil(value / multiple) * multiple


def _next_multiple(step: int, interval: int) -> int:
    """The first multiple of ``interval`` strictly after ``step``."""
    return (step // interval + 1) * interval


@torch.no_grad()
def _mean_q(q_network: QValueActor, block: TensorDictBase) -> float:
    """Mean of ``max_a Q(s, a)`` over the latest sampled states (Mnih et al. 2015 track the same quantity)."""
    device = next(q_network.parameters()).device
    states = block.select(*q_network.in_keys).to(device)  # the observation, and the action mask if any
    return q_network(states).get("chosen_action_value").mean().item()


def _check_resumable(payload: dict[str, Any], cfg: DictConfig) -> None:
    """A resumed run is configured on the command line like the original one; its task and network must match."""
    stored = payload["config"]
    if stored["env"]["id"] != cfg.env.id:
        raise CheckpointError(
            f"{payload['path']}: trained on {stored['env']['id']}, but this run is configured for {cfg.env.id}; "
            f"resume with the original overrides (env=...)"
        )
    if stored["model"] != OmegaConf.to_container(cfg.model):
        raise CheckpointError(
            f"{payload['path']}: trained with model {stored['model']}, but this run has {OmegaConf.to_container(cfg.model)}; "
            f"resume with the original model overrides"
        )


if __name__ == "__main__":
    main()
