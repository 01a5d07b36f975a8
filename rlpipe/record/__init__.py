"""Gameplay recording: exact frame/action datasets and annotated videos of Atari games, from a trained agent or a
random one, on the command line or while training.

- :mod:`rlpipe.record.dataset`: the dataset format, :class:`DatasetWriter` and :class:`GameplayDataset` (reading it
  back as sequences);
- :mod:`rlpipe.record.video`: MP4 videos of the game's colour screen with the step, action and score;
- :mod:`rlpipe.record.training`: :class:`TrainingRecorder`, episodes recorded after each evaluation of a run;
- :mod:`rlpipe.record.minari_format`: recordings as Minari datasets (export, and TorchRL's reader);
- :mod:`rlpipe.record.cli`: ``python -m rlpipe.record dataset|video|bulk|export`` (``conf/record.yaml``).
"""

from rlpipe.record.dataset import (
    ACTIONS_FILE,
    EPISODES_DIR,
    FORMAT,
    VERSION,
    DatasetWriter,
    GameplayDataset,
    Policy,
    random_policy,
    record_dataset,
    with_epsilon,
)
from rlpipe.record.training import RECORD_SEED_OFFSET, TrainingRecorder, make_training_recorder
from rlpipe.record.video import TEXT_AREA_PX, VIDEO_FPS, record_video

__all__ = [
    "ACTIONS_FILE", "EPISODES_DIR", "FORMAT", "VERSION", "RECORD_SEED_OFFSET", "TEXT_AREA_PX", "VIDEO_FPS", "DatasetWriter",
    "GameplayDataset", "Policy", "TrainingRecorder", "make_training_recorder", "random_policy", "record_dataset",
    "record_video", "with_epsilon",
]
