"""Recording while training: evaluation episodes played into a dataset and a video after each evaluation."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from rlpipe.agent import Agent
from rlpipe.envs.atari import action_names, frame_shape, make_atari_env, protocol
from rlpipe.keys import OBSERVATION_KEY
from rlpipe.record.dataset import ACTIONS_FILE, DatasetWriter, check_output_dir, with_epsilon
from rlpipe.record.video import record_video

_log = logging.getLogger("rlpipe")


RECORD_SEED_OFFSET = 2_000_000  # the recording env of a training run is seeded apart from its training and eval envs


class TrainingRecorder:
    """Evaluation episodes recorded while training (the ``record`` section of ``conf/config.yaml``; Atari games).

    After each evaluation, :meth:`record` plays more episodes with the evaluation policy (the Q-network as it is
    now, greedy or at ``eval.epsilon``) in an env of its own: ``record.episodes`` of them are added to a dataset
    (the ``rlpipe.record dataset`` layout, under ``record.output_dir``, default ``<run>/data/``; each episode names
    its ``training_step``), and one is written as ``<run>/videos/eval_step_<N>.mp4``, which the caller hands to
    the logger. A run resumed in place continues its recording; any other run refuses a directory holding one.

    Args:
        record_cfg: the ``record`` section.
        env_cfg: the run's ``env`` section.
        run_dir: the run directory.
        seed: the run's seed (the recording env's is derived from it).
        epsilon: the evaluation's probability of a random action.
        evaluations_planned: the evaluations of the whole run (the validation split is drawn over their episodes).
        resumed_at_step: the step a resumed run continues from (its later recorded episodes are dropped), or None.
    """

    def __init__(
        self,
        record_cfg: DictConfig,
        env_cfg: DictConfig,
        run_dir: Path,
        *,
        seed: int,
        epsilon: float,
        evaluations_planned: int,
        resumed_at_step: int | None,
    ) -> None:
        self.env = make_atari_env(env_cfg, num_envs=1, seed=seed + RECORD_SEED_OFFSET, with_screen=record_cfg.video)
        self.observation_shape = self.env.full_observation_spec_unbatched[OBSERVATION_KEY].shape
        self.n_actions = self.env.full_action_spec_unbatched["action"].space.n
        self.epsilon = epsilon
        self.rng = np.random.default_rng(seed + RECORD_SEED_OFFSET)
        self.max_steps = record_cfg.max_steps_per_episode
        self.episodes = record_cfg.episodes if record_cfg.dataset else 0
        self.video_dir = run_dir / "videos" if record_cfg.video else None
        self.off = False
        self.dataset = None
        if record_cfg.dataset:
            output_dir = run_dir / "data" if record_cfg.output_dir is None else Path(record_cfg.output_dir)
            metadata = {"agent": "training", "checkpoint": None, "run_dir": str(run_dir.resolve()), "epsilon": epsilon,
                        "seed": seed + RECORD_SEED_OFFSET, "protocol": protocol(env_cfg),
                        "frame_shape": list(frame_shape(env_cfg))}
            self.dataset = DatasetWriter(
                output_dir, action_names=action_names(self.env), metadata=metadata,
                episodes_planned=evaluations_planned * self.episodes, validation_fraction=record_cfg.validation_fraction,
                seed=seed, continue_after_step=resumed_at_step)

    def record(self, q_network: torch.nn.Module, *, step: int, on_video: Callable[[Path], None] | None = None) -> None:
        """Records this evaluation's episodes and hands the video written, if any, to ``on_video`` (the loggers).
        A recording that cannot be written (a full disk, there or in a logger's copy) is switched off with a
        warning: the training run goes on."""
        if self.off:
            return
        try:
            video = self._record(q_network, step=step)
            if video is not None and on_video is not None:
                on_video(video)
        except OSError as err:
            self.off = True
            _log.warning("step %s: cannot write the recording (%s); recording is off for the rest of the run", f"{step:,}", err)

    def _record(self, q_network: torch.nn.Module, *, step: int) -> Path | None:
        agent = Agent(q_network, observation_shape=self.observation_shape, n_actions=self.n_actions,
                      device=next(q_network.parameters()).device)
        policy = with_epsilon(agent.act, n_actions=self.n_actions, epsilon=self.epsilon, rng=self.rng)
        for _ in range(self.episodes):
            self.dataset.record_episode(self.env, policy, max_steps=self.max_steps, training_step=step)
        if self.video_dir is None:
            return None
        path = self.video_dir / f"eval_step_{step}.mp4"
        record_video(self.env, policy, path=path, max_steps=self.max_steps)
        return path

    def close(self) -> None:
        """Closes the recording env."""
        self.env.close()


def make_training_recorder(
    record_cfg: DictConfig, env_cfg: DictConfig, run_dir: Path, *, seed: int, epsilon: float, evaluations_planned: int,
    resumed_at_step: int | None,
) -> TrainingRecorder | None:
    """The run's :class:`TrainingRecorder`, or None when ``record.dataset`` and ``record.video`` are both off.

    Args:
        record_cfg: the ``record`` section.
        env_cfg: the run's ``env`` section.
        run_dir: the run directory.
        seed: the run's seed.
        epsilon: the evaluation's probability of a random action.
        evaluations_planned: the evaluations of the whole run (the validation split is drawn over their episodes).
        resumed_at_step: the step a resumed run continues from, or None for a new run.
    """
    if not (record_cfg.dataset or record_cfg.video):
        return None
    if record_cfg.dataset:
        output_dir = run_dir / "data" if record_cfg.output_dir is None else Path(record_cfg.output_dir)
        stored = output_dir / ACTIONS_FILE
        own = stored.is_file() and json.loads(stored.read_text()).get("run_dir") == str(run_dir.resolve())
        if not (own and resumed_at_step is not None):  # only a run resumed in place continues its own recording
            check_output_dir(output_dir, key="record.output_dir")
            resumed_at_step = None
    return TrainingRecorder(record_cfg, env_cfg, run_dir, seed=seed, epsilon=epsilon, evaluations_planned=evaluations_planned,
                            resumed_at_step=resumed_at_step)
