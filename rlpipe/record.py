"""Gameplay recording: exact frame/action datasets of Atari games, from a trained agent or a random one.

    python -m rlpipe.record dataset checkpoint=outputs/<run>/checkpoints/best.pt episodes=100
    python -m rlpipe.record dataset agent=random env_id=ALE/Pong-v5 episodes=20 output_dir=data/pong_random
    python -m rlpipe.record dataset agent=random episodes=3 dry_run=true      # plays, writes nothing

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

import json
import random
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from torch.utils.data import Dataset
from torchrl.envs import EnvBase
from torchrl.envs.utils import step_mdp

from rlpipe.agent import Agent
from rlpipe.checkpoint import CheckpointError
from rlpipe.config import ConfigError
from rlpipe.envs import make_env
from rlpipe.envs.atari import action_names, lives, protocol
from rlpipe.keys import EPISODE_SCORE_KEY, OBSERVATION_KEY
from rlpipe.runtime import CONF_DIR, check_command_line, check_creatable, quiet_libraries, seed_everything

FORMAT = "rlpipe-gameplay"
VERSION = 1
MODES = ("dataset",)
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
    names = action_names(env)
    validation = set(random.Random(seed).sample(range(episodes), round(validation_fraction * episodes)))
    recording = {
        "format": FORMAT,
        "version": VERSION,
        **metadata,
        "action_names": names,
        "episodes_planned": episodes,
        "split": {"seed": seed, "validation_fraction": validation_fraction,
                  "validation": [_episode_name(i) for i in sorted(validation)]},
        "episodes": [],
    }
    for index in range(episodes):
        name = _episode_name(index)
        temporary = None if output_dir is None else output_dir / EPISODES_DIR / f"{name}.tmp"
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)
            temporary.mkdir(parents=True)
        entry = _play_episode(env, policy, names, frames_dir=temporary, max_steps=max_steps_per_episode)
        entry = {"name": name, "split": "validation" if index in validation else "train", **entry}
        recording["episodes"].append(entry)
        if output_dir is not None:
            temporary.rename(output_dir / EPISODES_DIR / name)  # complete: now it has its final name
            _write_json(output_dir / ACTIONS_FILE, recording)
    return recording


def _play_episode(env: EnvBase, policy: Policy, names: list[str], *, frames_dir: Path | None, max_steps: int) -> dict[str, Any]:
    """One episode: frame ``t`` (the newest of observation ``t``'s stack), action ``t``, and what it earned."""
    td = env.reset()
    actions, rewards, lives_left = [], [], []
    score = 0.0
    for t in range(max_steps):
        observation = td.get(OBSERVATION_KEY)  # [N, H, W] uint8
        if frames_dir is not None:
            Image.fromarray(observation[-1].numpy()).save(frames_dir / f"frame_{t:05d}.png")
        action = int(policy(observation))
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


def _episode_name(index: int) -> str:
    return f"episode_{index + 1:03d}"


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(payload, indent=1))
    temporary.replace(path)


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
        frames = torch.from_numpy(np.stack([np.asarray(Image.open(directory / f"frame_{t:05d}.png")) for t in steps]))
        actions = torch.tensor([episode["actions"][t]["index"] for t in steps])
        rewards = torch.tensor([episode["rewards"][t] for t in steps], dtype=torch.float32)
        return frames, actions, rewards


# ------------------------------------------------------------------------------------------------ command line


@hydra.main(version_base="1.3", config_path="../conf", config_name="record")
def main(cfg: DictConfig) -> None:
    quiet_libraries()
    try:
        _check(cfg)
        output_dir = None if cfg.dry_run else Path(cfg.output_dir)
        if output_dir is not None:
            _check_output_dir(output_dir)
        env_cfg, policy, source = make_recording_source(cfg)
        seed_everything(cfg.seed)
        env = make_env(env_cfg, num_envs=1, seed=cfg.seed)
    except (CheckpointError, ConfigError) as err:
        raise SystemExit(f"rlpipe.record: {err}") from None
    started = time.perf_counter()
    try:
        recording = record_dataset(
            env, policy, episodes=cfg.episodes, output_dir=output_dir, validation_fraction=cfg.validation_fraction,
            seed=cfg.seed, max_steps_per_episode=cfg.max_steps_per_episode,
            metadata={**source, "seed": cfg.seed, "protocol": protocol(env_cfg), "frame_shape": [env_cfg.screen_size] * 2},
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


def _check(cfg: DictConfig) -> None:
    if cfg.agent not in ("trained", "random"):
        raise ConfigError(f"agent={cfg.agent!r} is invalid: expected one of trained, random")
    if cfg.episodes < 1:
        raise ConfigError(f"episodes={cfg.episodes} is invalid: expected a number >= 1")
    if not 0.0 <= cfg.validation_fraction < 1.0:
        raise ConfigError(f"validation_fraction={cfg.validation_fraction} is invalid: expected a number in [0, 1)")
    if not 0.0 <= cfg.epsilon <= 1.0:
        raise ConfigError(f"epsilon={cfg.epsilon} is invalid: expected a number in [0, 1]")


def make_recording_source(cfg: DictConfig) -> tuple[DictConfig, Policy, dict[str, Any]]:
    """The game's env section, the policy and what to record about them, for ``agent=trained`` (a checkpoint,
    loaded by :meth:`rlpipe.agent.Agent.load`) or ``agent=random``; ``cfg`` is ``conf/record.yaml``'s."""
    if cfg.agent == "trained":
        if cfg.checkpoint is None:
            raise ConfigError("agent=trained needs checkpoint=PATH (or agent=random)")
        agent = Agent.load(cfg.checkpoint)
        if agent.env_cfg.kind != "atari":
            raise ConfigError(f"{cfg.checkpoint}: trained on {agent.env_cfg.id}, not an Atari game: recording needs one")
        if cfg.env_id is not None and cfg.env_id != agent.env_cfg.id:
            raise ConfigError(f"{cfg.checkpoint}: trained on {agent.env_cfg.id}, not {cfg.env_id}")
        rng = np.random.default_rng(cfg.seed)
        n_actions = agent.n_actions

        def policy(observation: torch.Tensor) -> int:
            return int(rng.integers(n_actions)) if rng.random() < cfg.epsilon else agent.act(observation)

        return agent.env_cfg, policy, {"agent": "trained", "checkpoint": str(cfg.checkpoint), "epsilon": cfg.epsilon}
    # The Breakout preset's preprocessing (conf/env/breakout.yaml), for any Atari game.
    env_cfg = OmegaConf.load(CONF_DIR / "env" / "breakout.yaml").env
    env_cfg.id = cfg.env_id or "ALE/Breakout-v5"
    probe = make_env(env_cfg, num_envs=1)
    n_actions = probe.full_action_spec_unbatched["action"].space.n
    probe.close()
    rng = np.random.default_rng(cfg.seed)
    return env_cfg, lambda observation: int(rng.integers(n_actions)), {"agent": "random", "checkpoint": None, "epsilon": 1.0}


def _check_output_dir(output_dir: Path) -> None:
    """Refuses an output directory that holds a recording already (it would be mixed with this one) or cannot be
    written."""
    if (output_dir / ACTIONS_FILE).exists():
        raise ConfigError(f"output_dir={output_dir} holds a recording already ({ACTIONS_FILE}); choose another output_dir")
    try:
        check_creatable(output_dir / EPISODES_DIR)  # (creates nothing that stays: a rejected command leaves no files)
    except OSError as err:
        raise ConfigError(f"output_dir={output_dir} cannot be written ({err.strerror})") from None


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
