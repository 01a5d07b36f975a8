"""Gameplay videos: one MP4 per episode, the game's native colour screen above an annotated text area."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchrl.envs import EnvBase

from rlpipe.envs.atari import action_names, screen_rgb
from rlpipe.record.dataset import Policy, play_episode

VIDEO_FPS = 30  # one video frame per agent step: at frame skip 4, 30 fps plays at twice the game's 60 Hz (real time at skip 2)
TEXT_AREA_PX = 30  # below the 160x210 screen: 160x240, a multiple of 16 as H.264 wants


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

        episode = play_episode(env, policy, names, max_steps=max_steps, on_step=write_frame)
    temporary.rename(path)
    if frames_tmp is not None:
        frames_tmp.rename(frames_dir)
    return {"path": str(path), "frames": episode["length"], "score": episode["score"], "truncated": episode["truncated"],
            "actions": [a["name"] for a in episode["actions"]]}


def _annotated(screen: np.ndarray, text: str) -> np.ndarray:
    """``screen [210, 160, 3]`` above a black text area holding ``text``: ``[240, 160, 3]`` uint8."""
    from PIL import ImageDraw

    canvas = Image.new("RGB", (screen.shape[1], screen.shape[0] + TEXT_AREA_PX))
    canvas.paste(Image.fromarray(screen), (0, 0))
    ImageDraw.Draw(canvas).text((3, screen.shape[0] + 9), text, fill=(255, 255, 255))
    return np.asarray(canvas)
