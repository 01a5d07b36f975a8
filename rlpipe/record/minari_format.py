"""Gameplay recordings as Minari datasets (https://minari.farama.org), the Farama Foundation's format for offline
RL data: ``minari.load_dataset`` and TorchRL's ``MinariExperienceReplay`` read them.

:func:`export_minari` converts a recording of :mod:`rlpipe.record.dataset` (PNG frames and ``actions.json``, the
default layout) into a Minari dataset, episode by episode and frame for frame:

- ``observations`` ``[T + 1, H, W]`` uint8: the frame each action was chosen on (the newest of the agent's stack),
  then the frame the last action led to (``final.png``);
- ``actions`` ``[T]``: action indices (the game's names are in the metadata);
- ``rewards`` ``[T]``: the unshaped game reward of each step;
- ``terminations`` / ``truncations`` ``[T]``: the game ended at the last step, or was cut at
  ``max_steps_per_episode``.

The recording's own metadata (game, protocol, agent, checkpoint, epsilon, seed, action names, split) travels in the
dataset's metadata under ``rlpipe``. Written with Minari's own ``create_dataset_from_buffers`` (its HDF5 layout,
which TorchRL reads), not by hand. :func:`minari_replay` reads one into TorchRL's ``MinariExperienceReplay``.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from tensordict import TensorDictBase

from rlpipe.config import ConfigError
from rlpipe.record.dataset import ACTIONS_FILE, EPISODES_DIR, FINAL_FRAME, _read_png


def check_dataset_id(dataset_id: str) -> None:
    """Refuses an id that a local Minari dataset has already."""
    import minari

    if dataset_id in minari.list_local_datasets():
        raise ConfigError(f"dataset_id={dataset_id} exists already in {minari.storage.get_dataset_path(dataset_id).parent}: "
                          f"choose another dataset_id (or delete it: minari delete {dataset_id})")


def default_dataset_id(recording: dict[str, Any]) -> str:
    """``rlpipe/<game>-<agent>-v0``, e.g. ``rlpipe/breakout-trained-v0`` (Minari's ``namespace/name-version``);
    ``rlpipe/<game>_rgb-<agent>-v0`` for colour frames, so that both recordings of a game can be exported."""
    game = recording["protocol"]["env_id"].removeprefix("ALE/").removesuffix("-v5").lower()
    colour = "_rgb" if len(recording.get("frame_shape", ())) == 3 else ""  # [H, W, 3]
    return f"rlpipe/{game}{colour}-{recording['agent']}-v0"


def episode_buffer(root: Path, episode: dict[str, Any], index: int) -> Any:
    """One recorded episode as Minari's ``EpisodeBuffer`` (the arrays above), its id ``index``."""
    from minari.data_collector import EpisodeBuffer

    directory = root / EPISODES_DIR / episode["name"]
    if not (directory / FINAL_FRAME).is_file():
        raise ConfigError(f"{directory}: no {FINAL_FRAME} (recorded by an rlpipe that did not store the frame after the "
                          f"last action, which Minari's observations include): record the episodes again")
    length = episode["length"]
    frames = [_read_png(directory / f"frame_{t:05d}.png") for t in range(length)] + [_read_png(directory / FINAL_FRAME)]
    terminations = np.zeros(length, dtype=bool)
    truncations = np.zeros(length, dtype=bool)
    (truncations if episode["truncated"] else terminations)[-1] = True
    return EpisodeBuffer(
        id=index,
        observations=np.stack(frames),  # [T + 1, H, W] uint8
        actions=np.array([a["index"] for a in episode["actions"]], dtype=np.int64),  # [T]
        rewards=list(episode["rewards"]),  # [T]
        terminations=terminations.tolist(),
        truncations=truncations.tolist(),
    )


def export_minari(root: Path, *, dataset_id: str | None = None, description: str | None = None) -> Any:
    """Writes the recording under ``root`` as the Minari dataset ``dataset_id`` (default :func:`default_dataset_id`)
    in Minari's dataset directory (``MINARI_DATASETS_PATH``, else ``~/.minari/datasets``); returns the
    ``MinariDataset``. Refuses, in one line, a recording without its final frames, and an id already taken."""
    import minari

    actions_file = root / ACTIONS_FILE
    if not actions_file.is_file():
        raise ConfigError(f"input={root} holds no recording ({ACTIONS_FILE} is missing)")
    recording = json.loads(actions_file.read_text())
    if not recording["episodes"]:
        raise ConfigError(f"input={root}: the recording has no finished episode")
    dataset_id = dataset_id or default_dataset_id(recording)
    check_dataset_id(dataset_id)
    buffers = [episode_buffer(root, episode, index) for index, episode in enumerate(recording["episodes"])]
    frame = buffers[0].observations.shape[1:]  # (H, W) grayscale, (H, W, 3) RGB
    colour = "grayscale" if len(frame) == 2 else "RGB"
    with warnings.catch_warnings():  # Minari warns that no env (and no evaluation env) is named: on purpose, below
        warnings.simplefilter("ignore", UserWarning)
        dataset = minari.create_dataset_from_buffers(
            dataset_id=dataset_id,
            buffer=buffers,
            # env=None: gymnasium's ALE/<Game>-v5 spec would say sticky actions and raw frames, which these are not;
            # the game and its protocol travel in the metadata
            action_space=gym.spaces.Discrete(len(recording["action_names"])),
            observation_space=gym.spaces.Box(0, 255, shape=frame, dtype=np.uint8),
            algorithm_name=f"rlpipe ({recording['agent']} agent)",
            jpeg_encoding=False,  # frames stored exactly (Minari's default JPEG-encodes image observations, lossy)
            description=description or (f"{recording['protocol']['env_id']} played by rlpipe's {recording['agent']} agent: "
                                        f"the newest {frame[0]}x{frame[1]} {colour} frame of each observation, the action "
                                        f"chosen on it, the unshaped game reward"),
        )
    meta = {key: value for key, value in recording.items() if key != "episodes"}
    meta["episode_names"] = [episode["name"] for episode in recording["episodes"]]
    dataset.storage.update_metadata({"rlpipe": json.dumps(meta)})
    return dataset


def minari_replay(dataset_id: str, *, batch_size: int, root: Path) -> Any:
    """TorchRL's ``MinariExperienceReplay`` over the local Minari dataset ``dataset_id`` (transitions with
    ``observation``, ``action``, ``("next", "observation")``, reward and done flags; its copy kept under ``root``).

    TorchRL 0.14.1 converts a dataset into a TensorDict, then stores ``td.memmap_like(path)``, which tensordict
    makes without content: every dataset it builds reads back as zeros (``tests/test_record_minari.py`` watches for
    the fix). While it builds this one, ``memmap_like`` also copies the content.
    """
    from torchrl.data.datasets import MinariExperienceReplay

    with _memmap_like_keeps_content():
        return MinariExperienceReplay(dataset_id, batch_size=batch_size, root=root, load_from_local_minari=True)


@contextlib.contextmanager
def _memmap_like_keeps_content() -> Iterator[None]:
    original = TensorDictBase.memmap_like

    def memmap_like(self: TensorDictBase, *args: Any, **kwargs: Any) -> TensorDictBase:
        copy = original(self, *args, **kwargs)
        copy.update_(self)
        return copy

    TensorDictBase.memmap_like = memmap_like
    try:
        yield
    finally:
        TensorDictBase.memmap_like = original
