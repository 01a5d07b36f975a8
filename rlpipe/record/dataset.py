"""The gameplay dataset format: :class:`DatasetWriter` writes episodes, :class:`GameplayDataset` reads them back.

Layout under a recording's root::

    raw_gameplay/episodes/episode_001/frame_00000.png ...   # one PNG per agent step, as the agent saw it (84x84 grayscale; 210x160 RGB with env=breakout_rgb)
    raw_gameplay/episodes/episode_001/final.png             # the frame after the last action (where the episode ended)
    actions/actions.json                                    # per episode: actions, rewards, lives, score, split

Frame ``t`` of an episode is the newest frame of the observation on which action ``t`` was chosen (the agent saw
it, with the 7 frames before it); ``final.png`` is the newest frame of the observation the last action led to
(offline-RL formats such as Minari store it: ``rlpipe.record.minari_format``); ``actions.json`` gives that action by index and by the game's name, the game
reward it earned (unshaped), and the lives left after it. Each episode is written under a temporary name and
renamed when complete, and ``actions.json`` is rewritten atomically after every episode: an interrupted recording
leaves its finished episodes readable and no half episode that looks complete. A seeded 10% of the episodes
(``validation_fraction``) form the validation split, named in the metadata.
"""

from __future__ import annotations

import functools
import json
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchrl.envs import EnvBase
from torchrl.envs.utils import step_mdp

from rlpipe.config import ConfigError
from rlpipe.envs.atari import action_names, lives
from rlpipe.keys import EPISODE_SCORE_KEY, OBSERVATION_KEY
from rlpipe.runtime import check_creatable, write_json

FORMAT = "rlpipe-gameplay"
VERSION = 1
EPISODES_DIR = Path("raw_gameplay") / "episodes"
ACTIONS_FILE = Path("actions") / "actions.json"
FINAL_FRAME = "final.png"  # in each episode's directory (recordings made before it existed lack it)

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
        entry = play_episode(env, policy, self.action_names, max_steps=max_steps,
                              on_step=_nothing if temporary is None else functools.partial(_save_frame, temporary),
                              on_end=_nothing if temporary is None else functools.partial(_save_final_frame, temporary))
        entry = {"name": name, "split": "validation" if index in self._validation else "train", **fields, **entry}
        self.recording["episodes"].append(entry)
        if self.output_dir is not None:
            temporary.rename(self.output_dir / EPISODES_DIR / name)  # complete: now it has its final name
            write_json(self.output_dir / ACTIONS_FILE, self.recording)
        return entry


def _save_frame(directory: Path, t: int, observation: torch.Tensor, action: int, score: float) -> None:
    """Frame ``t`` of a dataset: the newest frame of the stack the action was chosen on."""
    Image.fromarray(observation[-1].numpy()).save(directory / f"frame_{t:05d}.png")


def _save_final_frame(directory: Path, observation: torch.Tensor) -> None:
    """The newest frame of the observation the episode's last action led to."""
    Image.fromarray(observation[-1].numpy()).save(directory / FINAL_FRAME)


def _nothing(*args: object) -> None:
    """A dry run writes no frame."""


def play_episode(
    env: EnvBase, policy: Policy, names: list[str], *, max_steps: int, on_step: Callable[[int, torch.Tensor, int, float], None],
    on_end: Callable[[torch.Tensor], None] = _nothing,
) -> dict[str, Any]:
    """One episode, the loop that datasets and videos share. Before each step, ``on_step(t, observation, action,
    score)`` sees the observation ``[N, H, W]`` on which action ``t`` was chosen (the game is still at that frame)
    and the game score so far; after the last step, ``on_end(observation)`` sees the observation it led to. Returns
    the actions, the unshaped game reward each earned and the lives after it."""
    td = env.reset()
    actions, rewards, lives_left = [], [], []
    score, done, cut = 0.0, False, False
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
        cut = bool(td.get(("next", "truncated")))  # the env's own episode cap (env.max_episode_steps), not the game's end
        td = step_mdp(td)
        if done:
            break
    on_end(td.get(OBSERVATION_KEY))
    return {"length": len(actions), "score": score, "truncated": not done or cut, "actions": actions, "rewards": rewards,
            "lives": lives_left}


def with_epsilon(act: Policy, *, n_actions: int, epsilon: float, rng: np.random.Generator) -> Policy:
    """``act``, replaced by a uniformly random action with probability ``epsilon`` at each step."""
    if epsilon == 0.0:
        return lambda observation: int(act(observation))
    return lambda observation: int(rng.integers(n_actions)) if rng.random() < epsilon else int(act(observation))


def _episode_name(index: int) -> str:
    return f"episode_{index + 1:03d}"


def _read_png(path: Path) -> np.ndarray:
    with Image.open(path) as image:  # (closes the file: a DataLoader reads many)
        return np.asarray(image)


class GameplayDataset(Dataset):
    """A recording read back as fixed-length sequences: ``(frames [L, H, W] uint8 (``[L, H, W, 3]`` RGB), actions [L] long, rewards [L])``
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


def random_policy(env: EnvBase, *, seed: int) -> Policy:
    """Uniformly random actions of ``env``'s (discrete) action space, from a generator seeded with ``seed``."""
    rng, n_actions = np.random.default_rng(seed), env.full_action_spec_unbatched["action"].space.n
    return lambda observation: int(rng.integers(n_actions))


def check_output_dir(output_dir: Path, *, key: str = "output_dir") -> None:
    """Refuses an output directory that holds a recording already (it would be mixed with this one) or cannot be
    written."""
    if (output_dir / ACTIONS_FILE).exists():
        raise ConfigError(f"{key}={output_dir} holds a recording already ({ACTIONS_FILE}); choose another {key}")
    try:
        check_creatable(output_dir / EPISODES_DIR)  # (creates nothing that stays: a rejected command leaves no files)
    except OSError as err:
        raise ConfigError(f"{key}={output_dir} cannot be written ({err.strerror})") from None
