"""Gameplay recording: exact frame/action datasets of Atari games, from a trained agent or a random one.

    python -m rlpipe.record dataset checkpoint=outputs/<run>/checkpoints/best.pt episodes=100
    python -m rlpipe.record dataset agent=random env_id=ALE/Pong-v5 episodes=20 output_dir=data/pong_random
    python -m rlpipe.record dataset agent=random episodes=3 dry_run=true      # plays, writes nothing
    python -m rlpipe.record video checkpoint=outputs/<run>/checkpoints/best.pt  # data/videos/trained_agent_1.mp4
    python -m rlpipe.record bulk checkpoint=PATH total_videos=20 percent_random=30 output_dir=bulk_videos

writes, under ``output_dir`` (default ``data/``)::

    raw_gameplay/episodes/episode_001/frame_00000.png ...   # one 84x84 grayscale PNG per agent step
    actions/actions.json                                    # per episode: actions, rewards, lives, score, split

Frame ``t`` of an episode is the newest frame of the observation on which action ``t`` was chosen (the agent saw
it, with the 7 frames before it); ``actions.json`` gives that action by index and by the game's name, the game
reward it earned (unshaped), and the lives left after it. Each episode is written under a temporary name and
renamed when complete, and ``actions.json`` is rewritten atomically after every episode: an interrupted recording
leaves its finished episodes readable and no half episode that looks complete. A seeded 10% of the episodes
(``validation_fraction``) form the validation split, named in the metadata. :class:`GameplayDataset` reads a
recording back as fixed-length sequences.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
import numpy as np
import torch
from omegaconf import DictConfig
from PIL import Image
from torch.utils.data import Dataset
from torchrl.envs import EnvBase
from torchrl.envs.utils import step_mdp

from rlpipe.agent import Agent
from rlpipe.checkpoint import CheckpointError
from rlpipe.config import ConfigError, validate
from rlpipe.envs.atari import action_names, lives, make_atari_env, protocol, screen_rgb
from rlpipe.keys import EPISODE_SCORE_KEY, OBSERVATION_KEY
from rlpipe.runtime import CONF_DIR, check_command_line, check_creatable, quiet_libraries, seed_everything, write_json

_log = logging.getLogger("rlpipe")
FORMAT = "rlpipe-gameplay"
VERSION = 1
MODES = ("dataset", "video", "bulk")
VIDEO_FPS = 30  # one video frame per agent step (4 emulator frames): 30 fps plays at twice the game's 60 Hz
TEXT_AREA_PX = 30  # below the 160x210 screen: 160x240, a multiple of 16 as H.264 wants
EPISODES_DIR = Path("raw_gameplay") / "episodes"
ACTIONS_FILE = Path("actions") / "actions.json"

Policy = Callable[[torch.Tensor], int]  # observation [N, H, W] uint8 -> action index


def record_dataset(
    env: EnvBase,
    policy: Policy,
    *,
    episodes: int,
    output_dir: Path | None,
    metadata: dict[str, Any],
    validation_fraction: float,
    seed: int,
    max_steps_per_episode: int,
) -> dict[str, Any]:
    """Plays ``episodes`` episodes of one (unbatched) Atari env with ``policy`` and writes them under ``output_dir``
    (nothing when it is None: a dry run). Returns the recording's metadata (what ``actions.json`` holds).

    Args:
        env: a preprocessed Atari env from :func:`rlpipe.envs.make_env` (``num_envs=1``).
        policy: the action for an observation ``[N, H, W]``.
        episodes: how many episodes to record.
        output_dir: the recording's root, or None to write nothing.
        metadata: what to record about the source (agent, checkpoint, seed, protocol).
        validation_fraction: the share of episodes in the validation split (drawn with ``seed``).
        seed: seeds the split.
        max_steps_per_episode: agent steps after which an episode is cut (``truncated`` in its entry).
    """
    writer = DatasetWriter(output_dir, action_names=action_names(env), metadata=metadata, episodes_planned=episodes,
                           validation_fraction=validation_fraction, seed=seed)
    for _ in range(episodes):
        writer.record_episode(env, policy, max_steps=max_steps_per_episode)
    return writer.recording


class DatasetWriter:
    """A recording on disk (or, with ``output_dir=None``, in memory only), one episode at a time.

    Each episode is played into ``episode_NNN.tmp/`` and renamed when complete; ``actions.json`` is rewritten
    atomically after every episode. The validation split is a seeded sample of ``round(validation_fraction *
    episodes_planned)`` episode numbers (episodes beyond the plan go to ``train``).

    Args:
        output_dir: the recording's root, or None to write nothing.
        action_names: the game's action names (``rlpipe.envs.atari.action_names``).
        metadata: what to record about the source (agent, checkpoint, seed, protocol).
        episodes_planned: how many episodes the split is drawn over.
        validation_fraction: the share of the planned episodes in the validation split.
        seed: seeds the split.
        continue_after_step: continue the recording already in ``output_dir``, which the caller has checked to be
            this very run's (a training run resumed in place): its plan and split stay, its episodes recorded at a
            training step up to this one are kept, later ones (recorded after the checkpoint the run resumes from,
            and played again now) and unlisted ones (a process killed between an episode and its listing) are
            removed.
    """

    def __init__(
        self,
        output_dir: Path | None,
        *,
        action_names: list[str],
        metadata: dict[str, Any],
        episodes_planned: int,
        validation_fraction: float,
        seed: int,
        continue_after_step: int | None = None,
    ) -> None:
        self.output_dir = output_dir
        self.action_names = action_names
        self._validation = set(random.Random(seed).sample(range(episodes_planned), round(validation_fraction * episodes_planned)))
        self.recording: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            **metadata,
            "action_names": action_names,
            "episodes_planned": episodes_planned,
            "split": {"seed": seed, "validation_fraction": validation_fraction,
                      "validation": [_episode_name(i) for i in sorted(self._validation)]},
            "episodes": [],
        }
        stored = None if output_dir is None else output_dir / ACTIONS_FILE
        if continue_after_step is not None and stored is not None and stored.is_file():
            before = json.loads(stored.read_text())  # the plan and split stay those the recording started with
            self.recording["episodes_planned"], self.recording["split"] = before["episodes_planned"], before["split"]
            self._validation = {int(name.rsplit("_", 1)[1]) - 1 for name in before["split"]["validation"]}
            kept = []
            for episode in before["episodes"]:
                if episode.get("training_step", 0) <= continue_after_step:
                    kept.append(episode)
                else:  # recorded after the checkpoint: this run plays that evaluation again
                    shutil.rmtree(output_dir / EPISODES_DIR / episode["name"], ignore_errors=True)
            self.recording["episodes"] = kept
            names = {episode["name"] for episode in kept}
            for directory in (output_dir / EPISODES_DIR).glob("episode_*"):  # this run's own episodes only
                if directory.name not in names:  # (a .tmp, or one renamed just before the process was killed)
                    shutil.rmtree(directory)
            write_json(stored, self.recording)

    def record_episode(self, env: EnvBase, policy: Policy, *, max_steps: int, **fields: Any) -> dict[str, Any]:
        """Plays one episode, writes it, and returns its entry in ``actions.json`` (``fields`` are added to it,
        e.g. the training step)."""
        index = len(self.recording["episodes"])
        name = _episode_name(index)
        temporary = None if self.output_dir is None else self.output_dir / EPISODES_DIR / f"{name}.tmp"
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)
            temporary.mkdir(parents=True)
        entry = _play_episode(env, policy, self.action_names, max_steps=max_steps,
                              on_step=_nothing if temporary is None else functools.partial(_save_frame, temporary))
        entry = {"name": name, "split": "validation" if index in self._validation else "train", **fields, **entry}
        self.recording["episodes"].append(entry)
        if self.output_dir is not None:
            temporary.rename(self.output_dir / EPISODES_DIR / name)  # complete: now it has its final name
            write_json(self.output_dir / ACTIONS_FILE, self.recording)
        return entry


def _save_frame(directory: Path, t: int, observation: torch.Tensor, action: int, score: float) -> None:
    """Frame ``t`` of a dataset: the newest frame of the stack the action was chosen on."""
    Image.fromarray(observation[-1].numpy()).save(directory / f"frame_{t:05d}.png")


def _nothing(*args: object) -> None:
    """A dry run writes no frame."""


def _play_episode(
    env: EnvBase, policy: Policy, names: list[str], *, max_steps: int, on_step: Callable[[int, torch.Tensor, int, float], None]
) -> dict[str, Any]:
    """One episode, the loop that datasets and videos share. Before each step, ``on_step(t, observation, action,
    score)`` sees the observation ``[N, H, W]`` on which action ``t`` was chosen (the game is still at that frame)
    and the game score so far; returns the actions, the unshaped game reward each earned and the lives after it."""
    td = env.reset()
    actions, rewards, lives_left = [], [], []
    score, done = 0.0, False
    for t in range(max_steps):
        observation = td.get(OBSERVATION_KEY)  # [N, H, W] uint8
        action = int(policy(observation))
        on_step(t, observation, action, score)
        td.set("action", torch.tensor(action))
        td = env.step(td)
        new_score = float(td.get(("next", EPISODE_SCORE_KEY)))  # the unshaped game score so far
        actions.append({"index": action, "name": names[action]})
        rewards.append(new_score - score)
        lives_left.append(lives(env))
        score = new_score
        done = bool(td.get(("next", "done")))
        td = step_mdp(td)
        if done:
            break
    return {"length": len(actions), "score": score, "truncated": not done, "actions": actions, "rewards": rewards,
            "lives": lives_left}


def record_video(env: EnvBase, policy: Policy, *, path: Path, max_steps: int, frames_dir: Path | None = None) -> dict[str, Any]:
    """Plays one episode and writes it as an MP4 (H.264, 30 fps): per agent step the game's colour screen at its
    native 160x210 (the frame on which the action was chosen) above a text area with the step number, the action's
    name and the game score before it. Written to a temporary name and renamed when complete.

    With ``frames_dir``, every step's colour screen (without the text area) is also written there as
    ``0.png``, ``1.png``, ... (the directory, too, appears only when complete).

    Returns:
        The episode's length (video frames), game score and action names.
    """
    import imageio.v2 as imageio  # imageio-ffmpeg's own ffmpeg binary writes the MP4

    names = action_names(env)
    temporary = path.with_name(path.stem + ".tmp.mp4")
    path.parent.mkdir(parents=True, exist_ok=True)
    frames_tmp = None if frames_dir is None else frames_dir.with_name(frames_dir.name + ".tmp")
    if frames_tmp is not None:
        shutil.rmtree(frames_tmp, ignore_errors=True)
        frames_tmp.mkdir(parents=True)
    with imageio.get_writer(temporary, fps=VIDEO_FPS, codec="libx264", macro_block_size=16, ffmpeg_log_level="error") as writer:

        def write_frame(t: int, observation: torch.Tensor, action: int, score: float) -> None:
            screen = screen_rgb(env)  # the colour screen behind the observation the action was chosen on
            writer.append_data(_annotated(screen, f"step {t:5d}  {names[action]:<9s} score {score:g}"))
            if frames_tmp is not None:
                Image.fromarray(screen).save(frames_tmp / f"{t}.png")

        episode = _play_episode(env, policy, names, max_steps=max_steps, on_step=write_frame)
    temporary.rename(path)
    if frames_tmp is not None:
        frames_tmp.rename(frames_dir)
    return {"path": str(path), "frames": episode["length"], "score": episode["score"], "truncated": episode["truncated"],
            "actions": [a["name"] for a in episode["actions"]]}


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
                        "frame_shape": [env_cfg.screen_size] * 2}
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


def make_training_recorder(cfg: DictConfig, run_dir: Path, *, resumed_at_step: int | None) -> TrainingRecorder | None:
    """The run's :class:`TrainingRecorder`, or None when ``record.dataset`` and ``record.video`` are both off."""
    if not (cfg.record.dataset or cfg.record.video):
        return None
    if cfg.record.dataset:
        output_dir = run_dir / "data" if cfg.record.output_dir is None else Path(cfg.record.output_dir)
        stored = output_dir / ACTIONS_FILE
        own = stored.is_file() and json.loads(stored.read_text()).get("run_dir") == str(run_dir.resolve())
        if not (own and resumed_at_step is not None):  # only a run resumed in place continues its own recording
            _check_output_dir(output_dir, key="record.output_dir")
            resumed_at_step = None
    return TrainingRecorder(cfg.record, cfg.env, run_dir, seed=cfg.train.seed, epsilon=cfg.eval.epsilon,
                            evaluations_planned=math.ceil(cfg.train.total_steps / cfg.eval.interval_steps),
                            resumed_at_step=resumed_at_step)


def with_epsilon(act: Policy, *, n_actions: int, epsilon: float, rng: np.random.Generator) -> Policy:
    """``act``, replaced by a uniformly random action with probability ``epsilon`` at each step."""
    if epsilon == 0.0:
        return lambda observation: int(act(observation))
    return lambda observation: int(rng.integers(n_actions)) if rng.random() < epsilon else int(act(observation))


def _annotated(screen: np.ndarray, text: str) -> np.ndarray:
    """``screen [210, 160, 3]`` above a black text area holding ``text``: ``[240, 160, 3]`` uint8."""
    from PIL import ImageDraw

    canvas = Image.new("RGB", (screen.shape[1], screen.shape[0] + TEXT_AREA_PX))
    canvas.paste(Image.fromarray(screen), (0, 0))
    ImageDraw.Draw(canvas).text((3, screen.shape[0] + 9), text, fill=(255, 255, 255))
    return np.asarray(canvas)


def _episode_name(index: int) -> str:
    return f"episode_{index + 1:03d}"


def _read_png(path: Path) -> np.ndarray:
    with Image.open(path) as image:  # (closes the file: a DataLoader reads many)
        return np.asarray(image)


class GameplayDataset(Dataset):
    """A recording read back as fixed-length sequences: ``(frames [L, H, W] uint8, actions [L] long, rewards [L])``
    where ``actions[t]`` was chosen on ``frames[t]``. Sequences never cross episodes.

    Args:
        root: the recording's ``output_dir``.
        sequence_length: ``L``, agent steps per item.
        split: ``train``, ``validation`` or ``all``.
        stride: steps between the starts of consecutive sequences of an episode (default: ``L``, no overlap).
    """

    def __init__(self, root: str | Path, *, sequence_length: int, split: str = "train", stride: int | None = None) -> None:
        self.root = Path(root)
        self.meta = json.loads((self.root / ACTIONS_FILE).read_text())
        self.sequence_length = sequence_length
        stride = stride or sequence_length
        self.episodes = [e for e in self.meta["episodes"] if split == "all" or e["split"] == split]
        self.items = [(e, start) for e in self.episodes for start in range(0, e["length"] - sequence_length + 1, stride)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        episode, start = self.items[index]
        steps = range(start, start + self.sequence_length)
        directory = self.root / EPISODES_DIR / episode["name"]
        frames = torch.from_numpy(np.stack([_read_png(directory / f"frame_{t:05d}.png") for t in steps]))
        actions = torch.tensor([episode["actions"][t]["index"] for t in steps])
        rewards = torch.tensor([episode["rewards"][t] for t in steps], dtype=torch.float32)
        return frames, actions, rewards


# ------------------------------------------------------------------------------------------------ command line


@hydra.main(version_base="1.3", config_path="../conf", config_name="record")
def main(cfg: DictConfig) -> None:
    quiet_libraries()
    try:
        _check(cfg)
        if cfg.mode == "bulk":  # bulk mixes both agents: the checkpoint's (when given) and a random one
            cfg.agent = "trained" if cfg.checkpoint is not None else "random"
        output_dir = None if cfg.dry_run else Path(cfg.output_dir)
        if output_dir is not None and cfg.mode == "dataset":
            _check_output_dir(output_dir)
        if output_dir is not None and cfg.mode in ("video", "bulk"):
            try:
                check_creatable(output_dir / "videos")
            except OSError as err:
                raise ConfigError(f"output_dir={output_dir} cannot be written ({err.strerror})") from None
        source = make_recording_source(cfg)
    except (CheckpointError, ConfigError) as err:
        raise SystemExit(f"rlpipe.record: {err}") from None
    env, env_cfg, policy = source.env, source.env_cfg, source.policy
    if cfg.mode in ("video", "bulk"):
        _videos(cfg, env, policy)
        return
    started = time.perf_counter()
    try:
        recording = record_dataset(
            env, policy, episodes=cfg.episodes, output_dir=output_dir, validation_fraction=cfg.validation_fraction,
            seed=cfg.seed, max_steps_per_episode=cfg.max_steps_per_episode,
            metadata={**source.metadata, "seed": cfg.seed, "protocol": protocol(env_cfg), "frame_shape": [env_cfg.screen_size] * 2},
        )
    except OSError as err:  # a full or vanished output directory
        raise SystemExit(f"rlpipe.record: cannot write the recording under {cfg.output_dir}: {err.strerror}") from None
    except KeyboardInterrupt:
        done = "" if output_dir is None else f"; the episodes finished so far are in {output_dir / ACTIONS_FILE}"
        print(f"rlpipe.record: interrupted{done}", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        env.close()
    seconds = time.perf_counter() - started
    steps = sum(e["length"] for e in recording["episodes"])
    print(json.dumps({"output_dir": None if output_dir is None else str(output_dir), "episodes": len(recording["episodes"]),
                      "agent_steps": steps, "seconds": round(seconds, 2), "steps_per_second": round(steps / seconds, 1),
                      "score_mean": float(np.mean([e["score"] for e in recording["episodes"]])),
                      "validation": recording["split"]["validation"]}))


def _videos(cfg: DictConfig, env: EnvBase, policy: Policy) -> None:
    """``rlpipe.record video``: ``episodes`` MP4 files, ``<output_dir>/videos/<agent>_agent_<n>.mp4``.
    ``rlpipe.record bulk``: ``total_videos`` of them in ``output_dir``, ``percent_random`` % by a random agent
    (``bulk_random_agent_<n>.mp4``) and the rest by the checkpoint's (``bulk_trained_agent_<n>.mp4``), each with a
    folder of the same name holding every frame (``0.png``, ...)."""
    jobs = [(cfg.agent, n, Path(cfg.output_dir) / "videos" / f"{cfg.agent}_agent_{n}.mp4") for n in range(1, cfg.episodes + 1)]
    policies = {cfg.agent: policy}
    if cfg.mode == "bulk":
        n_random = round(cfg.total_videos * cfg.percent_random / 100)
        jobs = [("random", n, Path(cfg.output_dir) / f"bulk_random_agent_{n}.mp4") for n in range(1, n_random + 1)]
        jobs += [("trained", n, Path(cfg.output_dir) / f"bulk_trained_agent_{n}.mp4") for n in range(1, cfg.total_videos - n_random + 1)]
        policies["random"] = random_policy(env, seed=cfg.seed)
    started, results = time.perf_counter(), []
    try:
        for agent, n, path in jobs:
            if cfg.dry_run:
                path = Path(tempfile.mkdtemp(prefix="rlpipe-dry-run-")) / path.name
            frames_dir = path.with_suffix("") if cfg.mode == "bulk" else None
            result = record_video(env, policies[agent], path=path, max_steps=cfg.max_steps_per_episode, frames_dir=frames_dir)
            if cfg.dry_run:
                shutil.rmtree(path.parent)
                result["path"] = None
            results.append({key: result[key] for key in ("path", "frames", "score", "truncated")})
    except OSError as err:
        raise SystemExit(f"rlpipe.record: cannot write the video under {cfg.output_dir}: {err.strerror}") from None
    finally:
        env.close()
    seconds = time.perf_counter() - started
    frames = sum(r["frames"] for r in results)
    print(json.dumps({"videos": results, "seconds": round(seconds, 2), "frames_per_second": round(frames / seconds, 1)}))


def _check(cfg: DictConfig) -> None:
    if cfg.agent not in ("trained", "random"):
        raise ConfigError(f"agent={cfg.agent!r} is invalid: expected one of trained, random")
    if cfg.episodes < 1:
        raise ConfigError(f"episodes={cfg.episodes} is invalid: expected a number >= 1")
    if not 0.0 <= cfg.validation_fraction < 1.0:
        raise ConfigError(f"validation_fraction={cfg.validation_fraction} is invalid: expected a number in [0, 1)")
    if cfg.mode == "bulk" and (cfg.total_videos < 1 or not 0 <= cfg.percent_random <= 100):
        raise ConfigError(f"total_videos={cfg.total_videos}, percent_random={cfg.percent_random} are invalid: "
                          f"expected total_videos >= 1 and percent_random in [0, 100]")
    if cfg.mode == "bulk" and cfg.percent_random < 100 and cfg.checkpoint is None:
        raise ConfigError("bulk mode with trained-agent videos (percent_random < 100) needs checkpoint=PATH")
    if cfg.max_steps_per_episode < 1:
        raise ConfigError(f"max_steps_per_episode={cfg.max_steps_per_episode} is invalid: expected a number >= 1")
    if not 0.0 <= cfg.epsilon <= 1.0:
        raise ConfigError(f"epsilon={cfg.epsilon} is invalid: expected a number in [0, 1]")


@dataclass
class RecordingSource:
    """What plays the recorded games: the game's env (``num_envs=1``, seeded), its env section, the policy, and
    what to record about them (agent, checkpoint, epsilon)."""

    env: EnvBase
    env_cfg: DictConfig
    policy: Policy
    metadata: dict[str, Any]


def make_recording_source(cfg: DictConfig) -> RecordingSource:
    """The env and policy of ``agent=trained`` (a checkpoint, loaded by :meth:`rlpipe.agent.Agent.load`) or
    ``agent=random``, seeded with ``cfg.seed``; ``cfg`` is ``conf/record.yaml``'s."""
    if cfg.agent == "trained":
        if cfg.checkpoint is None:
            raise ConfigError("agent=trained needs checkpoint=PATH (or agent=random)")
        agent = Agent.load(cfg.checkpoint)
        if agent.env_cfg.kind != "atari":
            raise ConfigError(f"{cfg.checkpoint}: trained on {agent.env_cfg.id}, not an Atari game: recording needs one")
        if cfg.env_id is not None and cfg.env_id != agent.env_cfg.id:
            raise ConfigError(f"{cfg.checkpoint}: trained on {agent.env_cfg.id}, not {cfg.env_id}")
        env_cfg = agent.env_cfg
        metadata = {"agent": "trained", "checkpoint": str(cfg.checkpoint), "epsilon": cfg.epsilon}
    else:  # the Atari preset's preprocessing and protocol (conf/env/atari.yaml), for any game
        agent, env_cfg = None, atari_preset(cfg.env_id or "ALE/Breakout-v5")
        metadata = {"agent": "random", "checkpoint": None, "epsilon": 1.0}
    seed_everything(cfg.seed)
    env = make_atari_env(env_cfg, num_envs=1, seed=cfg.seed, with_screen=cfg.mode in ("video", "bulk"))
    if agent is None:
        policy = random_policy(env, seed=cfg.seed)
    else:
        policy = with_epsilon(agent.act, n_actions=agent.n_actions, epsilon=float(cfg.epsilon), rng=np.random.default_rng(cfg.seed))
    return RecordingSource(env=env, env_cfg=env_cfg, policy=policy, metadata=metadata)


def atari_preset(env_id: str) -> DictConfig:
    """The ``env`` section of ``python -m rlpipe.train env=atari env.game=<game of env_id>`` (validated)."""
    if not (env_id.startswith("ALE/") and env_id.endswith("-v5")):
        raise ConfigError(f"env_id={env_id} is invalid: expected an ALE id, ALE/<Game>-v5 (python -m rlpipe.envs.atari lists the games)")
    overrides = ["env=atari", f"env.game={env_id.removeprefix('ALE/').removesuffix('-v5')}"]
    if GlobalHydra.instance().is_initialized():  # inside rlpipe.record's own Hydra app (its config directory is conf/ too)
        return validate(compose("config", overrides=overrides)).env
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return validate(compose("config", overrides=overrides)).env


def random_policy(env: EnvBase, *, seed: int) -> Policy:
    """Uniformly random actions of ``env``'s (discrete) action space, from a generator seeded with ``seed``."""
    rng, n_actions = np.random.default_rng(seed), env.full_action_spec_unbatched["action"].space.n
    return lambda observation: int(rng.integers(n_actions))


def _check_output_dir(output_dir: Path, *, key: str = "output_dir") -> None:
    """Refuses an output directory that holds a recording already (it would be mixed with this one) or cannot be
    written."""
    if (output_dir / ACTIONS_FILE).exists():
        raise ConfigError(f"{key}={output_dir} holds a recording already ({ACTIONS_FILE}); choose another {key}")
    try:
        check_creatable(output_dir / EPISODES_DIR)  # (creates nothing that stays: a rejected command leaves no files)
    except OSError as err:
        raise ConfigError(f"{key}={output_dir} cannot be written ({err.strerror})") from None


def _command_line(argv: list[str]) -> list[str]:
    """``rlpipe.record dataset key=value ...``: the first word is the mode (Hydra's ``mode=dataset``)."""
    if argv and "=" not in argv[0] and not argv[0].startswith("-"):
        if argv[0] not in MODES:
            raise SystemExit(f"rlpipe.record: unknown mode {argv[0]!r}: expected one of {', '.join(MODES)}")
        return [f"mode={argv[0]}", *argv[1:]]
    return argv


if __name__ == "__main__":
    sys.argv[1:] = _command_line(sys.argv[1:])
    check_command_line("rlpipe.record", "record", sys.argv[1:], run_dir_key=None)
    main()
