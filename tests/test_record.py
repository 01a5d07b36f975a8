"""Gameplay recording (issue 10, the dataset part): frames and actions line up with what the game produced, the
metadata, the split, atomic episodes, the dataset reader, a dry run and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchrl.envs.utils import step_mdp

from conftest import compose_config, run_module
from rlpipe.envs import make_env
from rlpipe.envs.atari import protocol
from rlpipe.keys import OBSERVATION_KEY
from rlpipe.record import ACTIONS_FILE, EPISODES_DIR, GameplayDataset, record_dataset
from rlpipe.runtime import seed_everything

MAX_STEPS = 80  # agent steps per recorded episode: short episodes keep the test fast


def _random_recording(output_dir: Path | None, *, episodes: int, seed: int = 3) -> dict:
    env_cfg = compose_config(["env=breakout"]).env
    seed_everything(seed)
    env = make_env(env_cfg, num_envs=1, seed=seed)
    rng = np.random.default_rng(seed)
    recording = record_dataset(env, lambda observation: int(rng.integers(4)), episodes=episodes, output_dir=output_dir,
                               metadata={"agent": "random", "protocol": protocol(env_cfg)}, validation_fraction=0.1, seed=seed, max_steps_per_episode=MAX_STEPS)
    env.close()
    return recording


def test_frame_t_is_the_observation_on_which_action_t_was_chosen(tmp_path):
    """Replays the recorded actions in the same seeded game and compares every frame with the game's own."""
    recording = _random_recording(tmp_path, episodes=2)
    env = make_env(compose_config(["env=breakout"]).env, num_envs=1, seed=3)
    seed_everything(3)  # the NOOP starts draw from torch's generator, as while recording
    for episode in recording["episodes"]:
        td = env.reset()
        frames = sorted((tmp_path / EPISODES_DIR / episode["name"]).glob("frame_*.png"))
        assert len(frames) == episode["length"] == len(episode["actions"]) == len(episode["rewards"]) == len(episode["lives"])
        for t, action in enumerate(episode["actions"]):
            recorded = np.asarray(Image.open(frames[t]))
            assert (recorded == td.get(OBSERVATION_KEY)[-1].numpy()).all(), f"{episode['name']} frame {t}"
            td.set("action", torch.tensor(action["index"]))
            td = step_mdp(env.step(td))
    env.close()


def test_actions_json_describes_every_episode(tmp_path):
    recording = _random_recording(tmp_path, episodes=3)
    meta = json.loads((tmp_path / ACTIONS_FILE).read_text())
    assert meta == json.loads(json.dumps(recording))
    assert meta["action_names"] == ["NOOP", "FIRE", "RIGHT", "LEFT"]  # from the game
    assert meta["protocol"]["frame_skip"] == 4 and meta["protocol"]["repeat_action_probability"] == 0.0
    for episode in meta["episodes"]:
        assert all(a["name"] == meta["action_names"][a["index"]] for a in episode["actions"])
        assert episode["score"] == pytest.approx(sum(episode["rewards"]))
        assert all(0 <= lives <= 5 for lives in episode["lives"])
        assert episode["truncated"] == (episode["length"] == MAX_STEPS)
    assert not list((tmp_path / EPISODES_DIR).glob("*.tmp"))  # every episode renamed once complete


def test_validation_split_is_seeded_and_a_tenth():
    first = _random_recording(None, episodes=10, seed=5)["split"]
    again = _random_recording(None, episodes=10, seed=5)["split"]
    assert first == again and len(first["validation"]) == 1  # the same seed, the same episode
    other = _random_recording(None, episodes=10, seed=7)
    assert other["split"]["validation"] != first["validation"]  # (seeds 5 and 7 draw different episodes)
    assert [e["split"] for e in other["episodes"]].count("validation") == 1
    assert next(e["name"] for e in other["episodes"] if e["split"] == "validation") == other["split"]["validation"][0]


def test_dataset_reads_aligned_sequences(tmp_path):
    recording = _random_recording(tmp_path, episodes=2)
    dataset = GameplayDataset(tmp_path, sequence_length=16, split="all")
    assert len(dataset) == sum(e["length"] // 16 for e in recording["episodes"])
    frames, actions, rewards = dataset[1]
    episode = recording["episodes"][0]
    assert frames.shape == (16, 84, 84) and frames.dtype == torch.uint8
    assert actions.tolist() == [a["index"] for a in episode["actions"][16:32]]
    assert rewards.tolist() == pytest.approx(episode["rewards"][16:32])
    first_png = np.asarray(Image.open(tmp_path / EPISODES_DIR / episode["name"] / "frame_00016.png"))
    assert (frames[0].numpy() == first_png).all()


def test_dry_run_writes_nothing(tmp_path):
    result = run_module("rlpipe.record", "dataset", "agent=random", "episodes=1", "max_steps_per_episode=40",
                        "dry_run=true", f"output_dir={tmp_path / 'data'}", timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    (line,) = result.json_lines()
    assert line["episodes"] == 1 and line["agent_steps"] == 40 and line["output_dir"] is None
    assert not (tmp_path / "data").exists()


def test_cli_records_a_random_agent_and_refuses_to_mix_recordings(tmp_path):
    args = ["dataset", "agent=random", "episodes=2", "max_steps_per_episode=30", f"output_dir={tmp_path}"]
    result = run_module("rlpipe.record", *args, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    meta = json.loads((tmp_path / ACTIONS_FILE).read_text())
    assert [e["name"] for e in meta["episodes"]] == ["episode_001", "episode_002"] and meta["agent"] == "random"
    assert len(list((tmp_path / EPISODES_DIR / "episode_002").glob("*.png"))) == 30
    again = run_module("rlpipe.record", *args, timeout=300)
    assert again.returncode != 0 and "holds a recording already" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args,message", [
    (["dataset", "checkpoint=/no/such.pt"], "/no/such.pt: no such checkpoint file"),
    (["dataset"], "agent=trained needs checkpoint=PATH (or agent=random)"),
    (["film"], "unknown mode 'film': expected one of dataset, video, bulk"),
    (["bulk", "percent_random=50"], "bulk mode with trained-agent videos (percent_random < 100) needs checkpoint=PATH"),
    (["dataset", "agent=random", "output_dir=/proc/rlpipe-data"], "output_dir=/proc/rlpipe-data cannot be written"),
])
def test_bad_input_is_one_line(args, message):
    result = run_module("rlpipe.record", *args, timeout=300)
    assert result.returncode != 0
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_cli_records_a_trained_agent_from_its_checkpoint(tmp_path):
    """A Breakout checkpoint (an untrained network stands in for a trained one: the path is the same)."""
    from rlpipe.checkpoint import Counters, save_checkpoint
    from rlpipe.models import make_q_network

    cfg = compose_config(["env=breakout"])
    env = make_env(cfg.env, num_envs=1)
    q_network = make_q_network(cfg.model, env, torch.device("cpu"))
    env.close()
    checkpoint = tmp_path / "best.pt"
    save_checkpoint(checkpoint, config=cfg, counters=Counters(step=123), pieces={"q_network": q_network})
    result = run_module("rlpipe.record", "dataset", f"checkpoint={checkpoint}", "episodes=1", "max_steps_per_episode=25",
                        "epsilon=0.05", f"output_dir={tmp_path / 'data'}", timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    meta = json.loads((tmp_path / "data" / ACTIONS_FILE).read_text())
    assert (meta["agent"], meta["checkpoint"], meta["epsilon"]) == ("trained", str(checkpoint), 0.05)
    assert meta["episodes"][0]["length"] == 25 and meta["protocol"]["env_id"] == "ALE/Breakout-v5"


def test_video_has_one_annotated_native_frame_per_agent_step(tmp_path):
    import imageio.v2 as imageio

    from rlpipe.record import TEXT_AREA_PX, VIDEO_FPS, record_video

    from rlpipe.envs.atari import screen_rgb

    env = make_env(compose_config(["env=breakout"]).env, num_envs=1, seed=0)
    rng, screens = np.random.default_rng(0), []

    def policy(observation):  # also keeps the colour screen on which each action is chosen
        screens.append(screen_rgb(env).astype(int))
        return int(rng.integers(4))

    result = record_video(env, policy, path=tmp_path / "game.mp4", max_steps=40)
    env.close()
    assert result["frames"] == 40 and not list(tmp_path.glob("*.tmp.mp4"))
    reader = imageio.get_reader(tmp_path / "game.mp4")
    frames = [frame for frame in reader]
    assert reader.get_meta_data()["fps"] == VIDEO_FPS
    reader.close()
    assert len(frames) == 40 and frames[0].shape == (210 + TEXT_AREA_PX, 160, 3)
    text_areas = [frame[210:].astype(int) for frame in frames]
    assert all(area.max() > 100 for area in text_areas)  # the overlay writes white text on black
    assert any(np.abs(text_areas[0] - area).sum() > 0 for area in text_areas[1:])  # and changes with the step
    errors = [np.abs(frame[:210].astype(int) - screen).mean() for frame, screen in zip(frames, screens)]
    assert max(errors) < 6, errors  # video frame t is the screen of step t (H.264 is lossy: a small mean error)


def test_cli_writes_a_random_agent_video(tmp_path):
    result = run_module("rlpipe.record", "video", "agent=random", "episodes=1", "max_steps_per_episode=20",
                        f"output_dir={tmp_path}", timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    (line,) = result.json_lines()
    assert line["videos"][0]["frames"] == 20 and (tmp_path / "videos" / "random_agent_1.mp4").stat().st_size > 0


def test_bulk_mode_writes_random_and_trained_videos_with_their_frames(tmp_path):
    from rlpipe.checkpoint import Counters, save_checkpoint
    from rlpipe.models import make_q_network

    cfg = compose_config(["env=breakout"])
    env = make_env(cfg.env, num_envs=1)
    checkpoint = tmp_path / "best.pt"
    save_checkpoint(checkpoint, config=cfg, counters=Counters(), pieces={"q_network": make_q_network(cfg.model, env, torch.device("cpu"))})
    env.close()
    out = tmp_path / "bulk_videos"
    result = run_module("rlpipe.record", "bulk", f"checkpoint={checkpoint}", "total_videos=3", "percent_random=34",
                        "max_steps_per_episode=12", f"output_dir={out}", timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in out.glob("*.mp4")) == ["bulk_random_agent_1.mp4", "bulk_trained_agent_1.mp4", "bulk_trained_agent_2.mp4"]
    for video in out.glob("*.mp4"):
        frames = sorted(video.with_suffix("").glob("*.png"), key=lambda p: int(p.stem))
        assert [p.name for p in frames] == [f"{t}.png" for t in range(12)]
        assert np.asarray(Image.open(frames[0])).shape == (210, 160, 3)  # the native colour screen
