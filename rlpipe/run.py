"""A training run, built in one step: every piece made from its config section, a checkpoint restored, the run
directory written, and the duties the loop calls (``rlpipe/train.py`` holds the loop).

:func:`build_run` turns a validated configuration (and, on resume, a loaded checkpoint) into a :class:`Run`: the
training, evaluation and greedy-game envs, the agents (:func:`make_agents`: one learner, or RND's two), the
exploration module and the acting policy, the replay memory and its beta schedule, the collector, the training-time
recorder, the loggers, the counters, the stage clock, the metric window and the progress bar. The loop then calls,
once per collect, :meth:`Run.count`, :meth:`Run.schedules`, :meth:`Run.learn` (:func:`learning_phase`) and, when
they come round, :meth:`Run.evaluate`, :meth:`Run.checkpoint` and :meth:`Run.log`; :meth:`Run.finish` writes the
summary. Everything the loop reads from the configuration is copied out here, once.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictSequential
from torchrl.collectors import Collector
from torchrl.data import Composite
from torchrl.envs import EnvBase
from torchrl.modules import QValueActor
from tqdm import tqdm

from rlpipe.async_collect import WorkerCollection, make_worker_collection, policy_lag
from rlpipe.checkpoint import Counters, restore_checkpoint, save_checkpoint
from rlpipe.collect import make_collector
from rlpipe.envs import action_mask_key, episode_stats, make_env, score_key, transition_keys
from rlpipe.envs.atari import fixed_start
from rlpipe.evaluate import EvalResult, evaluate_policy, evaluation_protocol
from rlpipe.exploration import Exploration, make_exploration
from rlpipe.keys import EPISODE_LENGTH_KEY, EPISODE_RETURN_KEY, INDEX_KEY, PRIORITY_WEIGHT_KEY
from rlpipe.learner import Agents, PhaseResult, make_learner
from rlpipe.loggers import Loggers, MetricWindow, StageClock, check_logger, make_logger
from rlpipe.models import make_q_network
from rlpipe.record import TrainingRecorder, make_training_recorder
from rlpipe.replay import frames_written_at_most, make_beta_schedule, make_replay_buffer, make_replay_scratch, replay_device
from rlpipe.rnd import make_rnd_learner
from rlpipe.rundir import EVALUATIONS_FILE, append_line, first_solved, inherit, solved_when, summary, write_lines
from rlpipe.runtime import StopSignals, pick_device, resolve_precision, seed_everything, write_json

_log = logging.getLogger("rlpipe")
EVAL_SEED_OFFSET = 1_000_000  # evaluation environments are seeded apart from the training environment

# exploration.kind -> the builder of its agents; any other kind trains one agent (rlpipe.learner.make_learner)
AGENT_BUILDERS: dict[str, Callable[..., Agents]] = {"rnd": make_rnd_learner}


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


def make_agents(
    train_cfg: DictConfig, exploration_cfg: DictConfig, make_network: Callable[[], QValueActor], *, transition_keys: tuple,
    observation_spec: Composite, num_envs: int, device: torch.device, total_updates: int,
) -> Agents:
    """The agent(s) the run trains: one :class:`~rlpipe.learner.Learner`, or the builder ``exploration.kind`` names
    in :data:`AGENT_BUILDERS` (``rnd``: two agents and RND). ``agents.q_network`` is the agent that is evaluated.

    Args:
        train_cfg: the ``train`` section.
        exploration_cfg: the ``exploration`` section.
        make_network: builds a Q-network for the env (called once per agent).
        transition_keys: what a stored transition of the env holds (``rlpipe.envs.transition_keys``).
        observation_spec: the env's unbatched observations.
        num_envs: environments stepped side by side.
        device: where the networks live.
        total_updates: the gradient updates of the whole run.
    """
    build = AGENT_BUILDERS.get(exploration_cfg.kind)
    if build is None:
        return make_learner(train_cfg, make_network, transition_keys=transition_keys, device=device, total_updates=total_updates)
    return build(train_cfg, exploration_cfg, make_network, transition_keys=transition_keys, observation_spec=observation_spec,
                 num_envs=num_envs, device=device, total_updates=total_updates)


@dataclass(frozen=True)
class Learned:
    """One learning phase: its sampled block (``[K * B]``), what the agents reported, and the priorities written
    back (``[K * B]`` on the CPU; None with uniform replay)."""

    block: TensorDict
    result: PhaseResult
    priorities: torch.Tensor | None


class NonFiniteLoss(RuntimeError):
    """A learning phase's loss became NaN or infinite (``value``: the first such loss)."""

    def __init__(self, value: float) -> None:
        super().__init__(f"the loss became {value}")
        self.value = value


def learning_phase(
    replay: Any, agents: Agents, *, n_updates: int, batch_size: int, prioritized: bool, clock: StageClock | None = None
) -> Learned:
    """One learning phase, as training runs it and the learner benchmark measures it: one draw of ``n_updates``
    minibatches of ``batch_size`` (one prioritized draw amortizes the sampler's fixed cost; it samples with the
    priorities written after the previous phase), the agents' gradient updates on them, the finite check (it waits
    for the updates to finish on a GPU), and the new priorities written back.

    Raises:
        NonFiniteLoss: a loss of the phase is NaN or infinite (no priority is written then).
    """
    clock = clock or StageClock()
    with clock("replay"):
        block = replay.sample(n_updates * batch_size)  # [K * B]
    with clock("learner"):
        result = agents.learn(block)  # K gradient steps, target updates, schedule steps
        # The host waits for the device once per phase, at its end: the losses (for the finite check) and the new
        # priorities (for the CPU sum tree) come back in one copy.
        n_losses = result.losses.numel()
        host = torch.cat([result.losses.float(), result.priorities.float()] if prioritized else [result.losses.float()]).cpu()
    losses = host[:n_losses]
    if not bool(torch.isfinite(losses).all()):
        raise NonFiniteLoss(losses[~torch.isfinite(losses)][0].item())
    priorities = None
    if prioritized:
        priorities = host[n_losses:]  # [K * B] |TD error|
        with clock("replay"):
            replay.update_priority(block.get(INDEX_KEY), priorities)
    return Learned(block=block, result=result, priorities=priorities)


@dataclass
class Ending:
    """Why the run may stop after this collect: its step budget, its time limit, a solve (with
    ``train.stop_on_solve``), or a signal (SIGINT / SIGTERM: checkpoint and stop without evaluating)."""

    finishing: bool
    interrupted: bool
    out_of_time: bool


@dataclass(frozen=True)
class Settings:
    """The configuration values the loop reads, copied out once when the run is built."""

    total_steps: int  # agent steps of the whole run
    num_envs: int  # envs stepped side by side (1 for an unbatched env)
    time_limit_s: float | None  # wall seconds after which the run stops, or None
    batch_size: int  # transitions per gradient update
    updates_per_step: float  # gradient updates per agent step
    prioritized: bool  # prioritized replay (priorities written back, beta annealed)
    learning_starts: int  # the agent step from which the run learns (after the random prefill)
    solved_when: dict[str, float]  # evaluation means and their thresholds that count as solved
    stop_on_solve: bool  # stop at the first solved evaluation
    eval_interval: int  # agent steps between evaluations
    eval_epsilon: float  # the evaluation's probability of a random action
    protocol: str  # the evaluation protocol's name (rlpipe.evaluate.evaluation_protocol)
    checkpoint_interval: int  # agent steps between writes of last.pt
    log_interval: int  # agent steps between metric logs
    save_buffer: bool  # store the replay buffer beside last.pt
    score_key: str  # the game score's key: unshaped where the env shapes the training reward
    episode_stats: dict[str, tuple[str, str]]  # the env's own per-episode statistics (DoorKey's success, ...)


@dataclass(eq=False)
class Run:
    """Every piece of a training run, its loop state, and the duties the loop calls; made by :func:`build_run`.

    The loop uses ``collector`` (it yields ``[num_envs, steps]`` batches), ``agents`` (``observe``), ``replay``
    (``extend``), ``clock`` (the stage timer) and ``progress`` (the progress bar) directly.
    """

    cfg: DictConfig
    run_dir: Path
    settings: Settings
    # the pieces
    env: EnvBase
    eval_env: EnvBase
    greedy_env: EnvBase | None
    agents: Agents
    exploration: Exploration
    replay: Any  # FrameReplay, or TorchRL's replay buffer
    beta_schedule: Callable[[int], float]
    collector: Collector | WorkerCollection  # collector=sync | async | ray (workers: rlpipe.async_collect)
    recorder: TrainingRecorder | None
    logger: Loggers
    pieces: dict[str, Any]  # what a checkpoint stores, by name
    stop: StopSignals
    device: torch.device
    checkpoint_dir: Path
    clock: StageClock
    progress: tqdm
    # the loop's state
    counters: Counters
    window: MetricWindow
    wall_before: float  # a resumed run's training wall seconds before this process
    started: float  # time.perf_counter() when this process's command started
    next_eval: int
    next_checkpoint: int
    next_log: int
    exploration_value: float
    solved_at: dict[str, float] | None
    update_credit: float = 0.0  # fractional gradient updates carried to the next learning phase
    last_eval: EvalResult | None = None
    block: TensorDict | None = None  # the latest learning phase's minibatches (for the Q-value diagnostic)
    last_ending: Ending = field(default_factory=lambda: Ending(finishing=False, interrupted=False, out_of_time=False))

    # ---- the loop's steps

    def steps_left(self, batch: TensorDictBase) -> TensorDictBase:
        """The batch, cut to the steps left when the last collect overshoots ``train.total_steps``."""
        if batch.numel() > self.settings.total_steps - self.counters.step:
            batch = batch[..., : (self.settings.total_steps - self.counters.step) // self.settings.num_envs]
        return batch

    def count(self, batch: TensorDictBase) -> None:
        """Counts the collect's agent steps and the episodes that ended in it (their return, score and length)."""
        lag = policy_lag(batch, self.counters.updates)  # collector=async / ray: how old the acting weights were
        if lag is not None:
            self.window.record_policy_lag(lag)
        batch = batch.reshape(-1)  # [steps_per_collect] transitions
        self.counters.step += batch.numel()
        done = batch.get(("next", "done")).reshape(-1)
        if done.any():
            returns = batch.get(("next", EPISODE_RETURN_KEY)).reshape(-1)[done].tolist()
            scores = batch.get(("next", self.settings.score_key)).reshape(-1)[done].tolist()
            lengths = batch.get(("next", EPISODE_LENGTH_KEY)).reshape(-1)[done].tolist()
            extras = {name: batch.get(key).reshape(-1)[done].float().tolist() for name, key in self.settings.episode_stats.items()}
            self.window.record_episodes(returns, scores, lengths, extras)
            self.counters.episodes += len(returns)

    def schedules(self) -> None:
        """Sets every schedule for the run's counters: exploration (epsilon or temperature), the agents' own (RND's
        alpha), PER's beta."""
        self.exploration_value = self.exploration.update(step=self.counters.step, episodes=self.counters.episodes)
        self.agents.schedule(self.counters.step)
        if self.settings.prioritized:
            self.replay.sampler.beta = self.beta_schedule(self.counters.step)

    def updates_due(self, steps: int) -> int:
        """Gradient updates for a collect of ``steps`` agent steps (``train.updates_per_step``; fractions carry over;
        none before learning starts)."""
        if self.counters.step < self.settings.learning_starts:
            return 0
        self.update_credit += steps * self.settings.updates_per_step
        n_updates = int(self.update_credit)
        self.update_credit -= n_updates
        return n_updates

    def learn(self, n_updates: int) -> None:
        """One learning phase (:func:`learning_phase`), counted, its losses and priorities kept for the next log."""
        try:
            learned = learning_phase(self.replay, self.agents, n_updates=n_updates, batch_size=self.settings.batch_size,
                                     prioritized=self.settings.prioritized, clock=self.clock)
        except NonFiniteLoss as err:
            self.counters.updates += n_updates
            raise TrainingDiverged(f"{err} at update {self.counters.updates} (step {self.counters.step}); the last "
                                   f"checkpoint in {self.checkpoint_dir} is from before it") from None
        self.counters.updates += n_updates
        self.block = learned.block  # (the Q-value diagnostic reads the latest phase's sample)
        if learned.priorities is not None:
            self.window.record_priorities(learned.priorities, learned.block.get(PRIORITY_WEIGHT_KEY))
        self.window.record_updates(learned.result.losses, learned.result.grad_norms)

    def share_weights(self) -> None:
        """``collector=async`` / ``ray``: sends the learner's weights to the collection workers once
        ``collector.sync_interval_updates`` updates have passed (the in-process collector acts with them live)."""
        if isinstance(self.collector, WorkerCollection):
            self.collector.sync_weights(self.counters.updates)

    # ---- periodic duties

    def ending(self) -> Ending:
        """Whether the run ends after this collect, and why (checked after every collect)."""
        out_of_time = self.settings.time_limit_s is not None and self.elapsed() >= self.settings.time_limit_s
        # (a run resumed after it was solved, with stop_on_solve, evaluates once more and stops)
        finishing = self.counters.step >= self.settings.total_steps or out_of_time or (self.settings.stop_on_solve and self.solved_at is not None)
        interrupted = self.stop.received is not None and not finishing
        self.last_ending = Ending(finishing=finishing, interrupted=interrupted, out_of_time=out_of_time)
        return self.last_ending

    def evaluation_due(self, ending: Ending) -> bool:
        return (self.counters.step >= self.next_eval or ending.finishing) and not ending.interrupted

    def stopping(self, ending: Ending) -> bool:
        """The run stops after this collect (an evaluation may just have solved the task)."""
        return ending.finishing or ending.interrupted or (self.settings.stop_on_solve and self.solved_at is not None)

    def checkpoint_due(self, stopping: bool) -> bool:
        return self.counters.step >= self.next_checkpoint or stopping

    def log_due(self, stopping: bool) -> bool:
        return self.counters.step >= self.next_log or stopping

    def evaluate(self) -> None:
        """Plays the protocol's games (and the greedy game), appends the evaluation to ``evaluations.jsonl`` and the
        loggers, records gameplay if asked, keeps ``best.pt``, notes a solve and rewrites ``summary.json``."""
        counters, q_network = self.counters, self.agents.q_network
        with self.clock("eval"):
            self.last_eval = evaluate_policy(self.eval_env, q_network, device=self.device, epsilon=self.settings.eval_epsilon)
            eval_metrics = self.last_eval.as_metrics()
            if self.greedy_env is not None:
                greedy = evaluate_policy(self.greedy_env, q_network, device=self.device, epsilon=0.0)
                eval_metrics |= {"eval/greedy_return": greedy.return_mean, "eval/greedy_length": greedy.length_mean}
        counters.evaluations.append({"step": counters.step, "wall_seconds": self.elapsed(), **eval_metrics,
                                     "eval/protocol": self.settings.protocol, "eval/epsilon": self.settings.eval_epsilon})
        append_line(self.run_dir / EVALUATIONS_FILE, counters.evaluations[-1])  # (a killed run's curve survives it)
        self.logger.log_metrics(eval_metrics, step=counters.step)
        if self.recorder is not None:  # record.dataset / record.video: more episodes with the evaluation policy
            with self.clock("record"):
                self.recorder.record(q_network, step=counters.step,
                                     on_video=lambda path: self.logger.log_video("eval/video", path, step=counters.step))
        _log.info("step %s: evaluation %.2f +- %.2f over %d episodes (%.1f wall minutes)", f"{counters.step:,}",
                  self.last_eval.return_mean, self.last_eval.return_std, self.cfg.eval.episodes, self.elapsed() / 60)
        if self.last_eval.return_mean > counters.best_eval_return:
            counters.best_eval_return = self.last_eval.return_mean
            with self.clock("checkpoint"):
                self._save("best.pt", with_buffer=False)
        if self.solved_at is None:
            self.solved_at = first_solved(counters.evaluations[-1:], self.settings.solved_when)
        self.next_eval = _next_multiple(counters.step, self.settings.eval_interval)
        counters.wall_seconds = self.elapsed()
        write_json(self.run_dir / "summary.json", summary(self.cfg, self.run_dir, counters, self.last_eval, finished=False))

    def checkpoint(self) -> None:
        """Writes ``last.pt`` (with the replay buffer unless ``checkpoint.save_buffer`` is off)."""
        with self.clock("checkpoint"):
            path = self._save("last.pt", with_buffer=self.settings.save_buffer)
        _log.info("step %s: wrote %s%s", f"{self.counters.step:,}", path, " and its replay buffer" if self.settings.save_buffer else "")
        self.next_checkpoint = _next_multiple(self.counters.step, self.settings.checkpoint_interval)

    def log(self) -> None:
        """The window's metrics to the loggers (training, time budget, exploration, agents, buffer), and the
        progress bar's, under the loggers' names."""
        counters = self.counters
        steps_in_window = counters.step - self.window.start_step
        metrics = self.window.flush(step=counters.step, updates=counters.updates)
        metrics |= self.clock.flush(steps=steps_in_window)
        metrics |= {
            f"train/{self.exploration.name}": self.exploration_value,
            **self.agents.metrics(self.block),  # train/lr, train/q_mean (RND: explore/*, rnd/*)
            "buffer/size": len(self.replay),
        }
        if self.settings.prioritized:
            metrics["buffer/beta"] = self.replay.sampler.beta
        self.logger.log_metrics(metrics, step=counters.step)
        self.progress.set_postfix({  # the logger's names (episode/reward: the last 20 training episodes)
            "episode/reward": f"{self.window.recent_return:.1f}",
            f"train/{self.exploration.name}": f"{self.exploration_value:.3f}",
            "train/loss": f"{metrics.get('train/loss', float('nan')):.4f}",
            "eval/return_mean": f"{self.last_eval.return_mean:.1f}" if self.last_eval else "-",
            **{name: f"{metrics[name]:.3f}" for name in self.agents.progress_names},  # RND: combined reward, alpha
        })
        self.next_log = _next_multiple(counters.step, self.settings.log_interval)

    def finish(self) -> dict[str, Any]:
        """Closes the collector and envs, writes the final ``summary.json`` and tells the loggers; returns the summary."""
        self.progress.close()
        self.collector.shutdown()
        self.eval_env.close()
        if self.greedy_env is not None:
            self.greedy_env.close()
        counters, ending = self.counters, self.last_ending
        counters.wall_seconds = self.elapsed()
        stopped_by = _stop_reason(self.stop, interrupted=ending.interrupted, complete=counters.step >= self.settings.total_steps,
                                  out_of_time=ending.out_of_time)
        result = summary(self.cfg, self.run_dir, counters, self.last_eval, finished=not ending.interrupted, stopped_by=stopped_by)
        write_json(self.run_dir / "summary.json", result)
        _log.info("stopped by %s at step %s after %.1f wall seconds", result["stopped_by"], f"{counters.step:,}", counters.wall_seconds)
        self.logger.log_metrics({"summary/wall_seconds": result["wall_seconds"]}, step=counters.step)
        self.logger.log_checkpoints([Path(path) for path in result["checkpoints"].values() if path])
        return result

    # ---- helpers

    def elapsed(self) -> float:
        """Wall seconds of training so far, earlier processes of a resumed run included."""
        return self.wall_before + time.perf_counter() - self.started

    def _save(self, name: str, *, with_buffer: bool) -> Path:
        self.counters.wall_seconds = self.elapsed()
        path = self.checkpoint_dir / name
        save_checkpoint(path, config=self.cfg, counters=self.counters, pieces=self.pieces,
                        replay_buffer=self.replay if with_buffer else None)
        return path


def build_run(
    cfg: DictConfig, run_dir: Path, resume_from: dict[str, Any] | None, *, stop: StopSignals, cleanup: ExitStack,
    started: float, group: str | None,
) -> Run:
    """Builds every piece of the run from its config section (network sizes from the env's specs), restores the
    checkpoint ``resume_from`` (a resumed run), and only then writes the run directory: a rejected configuration or
    checkpoint leaves nothing behind, and a resumed run's files stay as they were until it trains.

    Args:
        cfg: the validated configuration (a resumed run's: :func:`rlpipe.resume.resumed_config`).
        run_dir: where the run's files go.
        resume_from: the loaded checkpoint of a resumed run, or None.
        stop: the SIGINT/SIGTERM handlers the loop checks after every collect.
        cleanup: what the run leaves to clean up (its memory-mapped replay, the recorder, the loggers) goes here.
        started: ``time.perf_counter()`` when the command started (the run's clock counts from it).
        group: the W&B group of the run (the runs of one sweep share it).
    """
    if cfg.train.num_threads is not None:
        torch.set_num_threads(cfg.train.num_threads)
    device = pick_device(cfg.train.device)
    precision = resolve_precision(cfg.train.precision, device)
    seed_everything(cfg.train.seed)
    check_logger(cfg.logger)

    collecting_here = cfg.collector.kind == "sync"  # collector=async: worker processes step their own envs, this one gives the specs
    env = make_env(cfg.env, num_envs=cfg.env.num_envs, seed=cfg.train.seed, parallel=collecting_here)  # (env.parallel: workers)
    eval_env = make_env(cfg.env, num_envs=cfg.eval.episodes, seed=cfg.train.seed + EVAL_SEED_OFFSET)
    # eval.greedy_game (Atari): one greedy game from a fixed start besides the protocol's games
    greedy_env = make_env(fixed_start(cfg.env), seed=cfg.train.seed + EVAL_SEED_OFFSET) if cfg.eval.greedy_game else None
    total_updates = math.ceil((cfg.train.total_steps - cfg.train.init_random_steps) * cfg.train.updates_per_step)
    # One agent, or with exploration=rnd two (q_network is the exploitation agent; the exploration agent acts, or both
    # do: exploration.exploit_acting_share)
    agents = make_agents(
        cfg.train, cfg.exploration, lambda: make_q_network(cfg.model, env, device, precision=precision),
        transition_keys=transition_keys(env), observation_spec=env.full_observation_spec_unbatched,
        num_envs=env.batch_size.numel(), device=device, total_updates=total_updates,
    )
    exploration: Exploration = make_exploration(
        cfg.exploration, env.full_action_spec_unbatched["action"], device, action_mask_key=action_mask_key(env)
    )
    policy = TensorDictSequential(agents.acting_network, exploration.module)
    scratch = make_replay_scratch(cfg.buffer, run_dir)  # the run's own directory for memory-mapped replay, if any
    if scratch is not None:
        cleanup.callback(scratch.remove)
    replay = make_replay_buffer(cfg.buffer, cfg.env, env, n_step=cfg.train.n_step, gamma=cfg.train.gamma, scratch=scratch,
                                extra_keys=agents.stored_keys, device=replay_device(cfg.buffer, cfg.env, device),
                                max_frames=frames_written_at_most(cfg.train.total_steps))
    beta_schedule = make_beta_schedule(cfg.buffer, total_steps=cfg.train.total_steps)
    pieces = {**agents.pieces(), "exploration": exploration.module}  # what a checkpoint stores, by name
    counters, buffer_restored = Counters(), False
    if resume_from is not None:
        counters, buffer_restored = restore_checkpoint(resume_from, pieces=pieces, replay_buffer=replay)
        if agents.lr_scheduler is None:  # a constant rate: the optimizer's state brought the stored one, this run's applies
            agents.set_lr(cfg.train.lr)
    # record.dataset / record.video (checks its output directory; a resumed run's recording continues)
    recorder: TrainingRecorder | None = make_training_recorder(
        cfg.record, cfg.env, run_dir, seed=cfg.train.seed, epsilon=cfg.eval.epsilon,
        evaluations_planned=math.ceil(cfg.train.total_steps / cfg.eval.interval_steps),
        resumed_at_step=counters.step if resume_from is not None else None)
    if recorder is not None:
        cleanup.callback(recorder.close)

    # Only now, with every piece built and restored, does the run write into its directory.
    if scratch is not None:
        scratch.keep = cfg.buffer.keep_memmap_files  # (a rejected run's replay files go in any case)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    write_lines(run_dir / EVALUATIONS_FILE, counters.evaluations)  # a resumed run's, as of its checkpoint
    logger = make_logger(cfg.logger, run_dir, run_name=run_dir.name, config=cfg, group=group)
    cleanup.callback(logger.close)
    checkpoint_dir = run_dir / "checkpoints"
    if resume_from is not None:
        inherit(Path(cfg.resume).parent / "best.pt", checkpoint_dir / "best.pt")  # the run's best so far
    _log.info("training %s for %s agent steps in %s%s", cfg.env.id, f"{cfg.train.total_steps:,}", run_dir,
              f", resumed from {cfg.resume} at step {counters.step:,}" if resume_from is not None else "")

    # Random prefill in whole collects (the collector rounds up); a restored buffer needs none.
    random_steps = 0 if buffer_restored else _round_up(cfg.train.init_random_steps, cfg.train.steps_per_collect)
    clock = StageClock()  # where the wall time goes: env, acting, replay, learner, eval, checkpoint (time/*)
    collector: Collector | WorkerCollection
    if collecting_here:
        collector = make_collector(env, policy, steps_per_collect=cfg.train.steps_per_collect, device=device, random_steps=random_steps)
        clock.time_module(policy, "acting")  # the collector calls the policy: time it through forward hooks
    else:  # (time/env is then the wait for the workers' round; they act in their own processes)
        collector = make_worker_collection(cfg, agents.acting_network, exploration.module, random_steps=random_steps,
                                          updates=counters.updates)
        cleanup.callback(collector.shutdown)  # the workers stop on an exception too
        env.close()
    goal = solved_when(cfg.env)
    return Run(
        cfg=cfg, run_dir=run_dir,
        settings=Settings(
            total_steps=cfg.train.total_steps,
            num_envs=env.batch_size.numel(),
            time_limit_s=None if cfg.train.time_limit_minutes is None else 60.0 * cfg.train.time_limit_minutes,
            batch_size=cfg.train.batch_size,
            updates_per_step=cfg.train.updates_per_step,
            prioritized=cfg.buffer.kind == "prioritized",
            learning_starts=counters.step + random_steps,
            solved_when=goal,
            stop_on_solve=cfg.train.stop_on_solve and bool(goal),
            eval_interval=cfg.eval.interval_steps,
            eval_epsilon=cfg.eval.epsilon,
            protocol=evaluation_protocol(cfg.env, epsilon=cfg.eval.epsilon, episodes=cfg.eval.episodes)["name"],
            checkpoint_interval=cfg.checkpoint.interval_steps,
            log_interval=cfg.train.log_interval_steps,
            save_buffer=cfg.checkpoint.save_buffer,
            score_key=score_key(env),
            episode_stats=episode_stats(env),
        ),
        env=env, eval_env=eval_env, greedy_env=greedy_env, agents=agents, exploration=exploration, replay=replay,
        beta_schedule=beta_schedule, collector=collector, recorder=recorder, logger=logger, pieces=pieces, stop=stop,
        device=device, checkpoint_dir=checkpoint_dir, clock=clock,
        progress=tqdm(total=cfg.train.total_steps, initial=counters.step, unit="step", dynamic_ncols=True, mininterval=1.0),
        counters=counters,
        window=MetricWindow(step=counters.step, updates=counters.updates),
        wall_before=counters.wall_seconds,  # a resumed run's clock continues from its checkpoint
        started=started,
        next_eval=_next_multiple(counters.step, cfg.eval.interval_steps),
        next_checkpoint=_next_multiple(counters.step, cfg.checkpoint.interval_steps),
        next_log=_next_multiple(counters.step, cfg.train.log_interval_steps),
        exploration_value=exploration.update(step=counters.step, episodes=counters.episodes),
        solved_at=first_solved(counters.evaluations, goal),
    )


def _round_up(value: int, multiple: int) -> int:
    return math.ceil(value / multiple) * multiple


def _next_multiple(step: int, interval: int) -> int:
    """The first multiple of ``interval`` strictly after ``step``."""
    return (step // interval + 1) * interval


def _stop_reason(stop: StopSignals, *, interrupted: bool, complete: bool, out_of_time: bool) -> str:
    if interrupted:
        return stop.received.name
    return "total_steps" if complete else "time_limit" if out_of_time else "solved"
