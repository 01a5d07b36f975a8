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
from rlpipe.models import make_q_network
from rlpipe.keys import OBSERVATION_KEY
from rlpipe.record import ACTIONS_FILE, EPISODES_DIR, GameplayDataset, record_dataset
from rlpipe.record.dataset import FINAL_FRAME
from rlpipe.record.training import make_training_recorder
from rlpipe.runtime import seed_everything

MAX_STEPS = 80  # agent steps per recorded episode: short episodes keep the test fast


def _random_recording(output_dir: Path | None, *, episodes: int, seed: int = 3, preset: str = "breakout") -> dict:
    env_cfg = compose_config([f"env={preset}"]).env
    seed_everything(seed)
    env = make_env(env_cfg, num_envs=1, seed=seed)
    rng = np.random.default_rng(seed)
    recording = record_dataset(env, lambda observation: int(rng.integers(4)), episodes=episodes, output_dir=output_dir,
                               metadata={"agent": "random", "protocol": protocol(env_cfg)}, validation_fraction=0.1, seed=seed, max_steps_per_episode=MAX_STEPS)
    env.close()
    return recording


@pytest.mark.parametrize("preset", ["breakout", "breakout_rgb"])
def test_frame_t_is_the_observation_on_which_action_t_was_chosen(tmp_path, preset):
    """Replays the recorded actions in the same seeded game and compares every frame with the game's own: 84x84
    grayscale, and native 210x160 RGB (``env=breakout_rgb``: the PNGs are colour, at the env's resolution)."""
    recording = _random_recording(tmp_path, episodes=2, preset=preset)
    env = make_env(compose_config([f"env={preset}"]).env, num_envs=1, seed=3)
    seed_everything(3)  # the NOOP starts draw from torch's generator, as while recording
    for episode in recording["episodes"]:
        td = env.reset()
        frames = sorted((tmp_path / EPISODES_DIR / episode["name"]).glob("frame_*.png"))
        assert len(frames) == episode["length"] == len(episode["actions"]) == len(episode["rewards"]) == len(episode["lives"])
        for t, action in enumerate(episode["actions"]):
            recorded = np.asarray(Image.open(frames[t]))
            assert recorded.shape == ((84, 84) if preset == "breakout" else (210, 160, 3))
            assert (recorded == td.get(OBSERVATION_KEY)[-1].numpy()).all(), f"{episode['name']} frame {t}"
            td.set("action", torch.tensor(action["index"]))
            td = step_mdp(env.step(td))
        final = np.asarray(Image.open(tmp_path / EPISODES_DIR / episode["name"] / FINAL_FRAME))
        assert (final == td.get(OBSERVATION_KEY)[-1].numpy()).all(), f"{episode['name']}: the frame the last action led to"
    env.close()


def test_actions_json_describes_every_episode(tmp_path):
    recording = _random_recording(tmp_path, episodes=3)
    meta = json.loads((tmp_path / ACTIONS_FILE).read_text())
    assert meta == json.loads(json.dumps(recording))
    assert meta["action_names"] == ["NOOP", "FIRE", "RIGHT", "LEFT"]  # from the game
    assert meta["protocol"]["frame_skip"] == 4 and meta["protocol"]["repeat_action_probability"] == 0.0
    for episode in meta["episodes"]:
        assert all(a["name"] == meta["action_names"][a["index"]] for a in episode["actions"])
        assert set(episode["rewards"]) <= {0.0, 1.0, 4.0, 7.0}  # Breakout's brick values: unshaped (training pays penalties)
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
    assert len(list((tmp_path / EPISODES_DIR / "episode_002").glob("frame_*.png"))) == 30
    assert (tmp_path / EPISODES_DIR / "episode_002" / FINAL_FRAME).is_file()
    again = run_module("rlpipe.record", *args, timeout=300)
    assert again.returncode != 0 and "holds a recording already" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args,message", [
    (["dataset", "checkpoint=/no/such.pt"], "/no/such.pt: no such checkpoint file"),
    (["dataset"], "agent=trained needs checkpoint=PATH (or agent=random)"),
    (["film"], "unknown mode 'film': expected one of dataset, video, bulk"),
    (["bulk", "percent_random=50"], "bulk mode with trained-agent videos (percent_random < 100) needs checkpoint=PATH"),
    (["dataset", "agent=random", "output_dir=/proc/rlpipe-data"], "output_dir=/proc/rlpipe-data cannot be written"),
    (["dataset", "agent=random", "env_preset=cmyk"], "env_preset=cmyk is invalid: expected one of atari, breakout_rgb"),
])
def test_bad_input_is_one_line(args, message):
    result = run_module("rlpipe.record", *args, timeout=300)
    assert result.returncode != 0
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def _checkpoint(path: Path, overrides: list[str], *, seed: int = 0, weights_from: list[str] | None = None) -> Path:
    """A checkpoint of an untrained network (the path through loading is the same as for a trained one); with
    ``weights_from``, the network of another configuration is stored under this one's."""
    from rlpipe.checkpoint import Counters, save_checkpoint
    from rlpipe.models import make_q_network

    cfg = compose_config(overrides)
    network_cfg = compose_config(weights_from or overrides)
    env = make_env(network_cfg.env, num_envs=1)
    torch.manual_seed(seed)
    q_network = make_q_network(network_cfg.model, env, torch.device("cpu"))
    env.close()
    save_checkpoint(path, config=cfg, counters=Counters(step=123), pieces={"q_network": q_network})
    return path


def test_cli_records_the_actions_the_checkpoints_network_chose(tmp_path):
    """Rebuilds each observation from the recorded frames (a stack of the last 8, the first repeated at the
    start) and asks the checkpoint's network: every recorded action is its greedy choice on frame t."""
    from rlpipe.agent import Agent

    checkpoint = _checkpoint(tmp_path / "best.pt", ["env=breakout"], seed=2)
    result = run_module("rlpipe.record", "dataset", f"checkpoint={checkpoint}", "episodes=1", "max_steps_per_episode=60",
                        f"output_dir={tmp_path / 'data'}", timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    meta = json.loads((tmp_path / "data" / ACTIONS_FILE).read_text())
    assert (meta["agent"], meta["checkpoint"], meta["epsilon"]) == ("trained", str(checkpoint), 0.0)
    episode = meta["episodes"][0]
    assert episode["length"] == 60 and meta["protocol"]["env_id"] == "ALE/Breakout-v5"
    frames = [np.asarray(Image.open(tmp_path / "data" / EPISODES_DIR / "episode_001" / f"frame_{t:05d}.png")) for t in range(60)]
    agent = Agent.load(checkpoint)
    stacks = np.stack([np.stack([frames[max(t - k, 0)] for k in range(7, -1, -1)]) for t in range(60)])  # [60, 8, 84, 84]
    chosen = agent.act(torch.from_numpy(stacks)).tolist()
    assert chosen == [a["index"] for a in episode["actions"]]  # (an untrained network may press one button throughout)


@pytest.mark.parametrize("checkpoint_of,args,message", [
    (["env=cartpole"], [], "trained on CartPole-v1, not an Atari game: recording needs one"),
    (["env=breakout"], ["env_id=ALE/Pong-v5"], "trained on ALE/Breakout-v5, not ALE/Pong-v5"),
    (["env=breakout", "model.hidden_size=64"], [], "cannot load q_network: Error(s) in loading state_dict"),
])
def test_a_checkpoint_of_another_game_or_network_is_one_line(tmp_path, checkpoint_of, args, message):
    checkpoint = _checkpoint(tmp_path / "other.pt", checkpoint_of[:1], weights_from=checkpoint_of)
    result = run_module("rlpipe.record", "dataset", f"checkpoint={checkpoint}", *args, f"output_dir={tmp_path / 'data'}", timeout=300)
    assert result.returncode != 0
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "data").exists()


def test_video_has_one_annotated_native_frame_per_agent_step(tmp_path):
    import imageio.v2 as imageio

    from rlpipe.record import TEXT_AREA_PX, VIDEO_FPS, record_video

    from rlpipe.envs.atari import make_atari_env, screen_rgb

    env = make_atari_env(compose_config(["env=breakout"]).env, num_envs=1, seed=0, with_screen=True)
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


# ------------------------------------------------------------------------------------------- while training

def test_training_records_evaluation_episodes_and_sends_videos_to_tensorboard_and_wandb(tmp_path):
    import imageio.v2 as imageio
    from PIL import ImageSequence
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = tmp_path / "run"
    # batch 8: the updates' cost is not what this test is about
    result = run_module("rlpipe.train", "env=breakout", "eval.greedy_game=false", "train.total_steps=1600", "train.init_random_steps=400",
                        "train.batch_size=8",
                        "eval.interval_steps=800", "eval.episodes=1", "env.max_episode_steps=400", "train.compile=false", "logger=[tensorboard,wandb]",
                        "record.dataset=true", "record.video=true", "record.episodes=2", "record.max_steps_per_episode=40",
                        f"hydra.run.dir={run_dir}", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    steps = [e["step"] for e in json.loads((run_dir / "summary.json").read_text())["evaluations"]]
    assert len(steps) == 2
    meta = json.loads((run_dir / "data" / ACTIONS_FILE).read_text())
    assert meta["agent"] == "training" and meta["episodes_planned"] == 4 and meta["run_dir"] == str(run_dir)
    assert [e["training_step"] for e in meta["episodes"]] == [steps[0], steps[0], steps[1], steps[1]]
    assert [e["name"] for e in meta["episodes"]] == ["episode_001", "episode_002", "episode_003", "episode_004"]
    for episode in meta["episodes"]:
        assert len(list((run_dir / "data" / EPISODES_DIR / episode["name"]).glob("frame_*.png"))) == episode["length"]
    assert len(GameplayDataset(run_dir / "data", sequence_length=10, split="all")) == sum(e["length"] // 10 for e in meta["episodes"])
    videos = {step: run_dir / "videos" / f"eval_step_{step}.mp4" for step in steps}
    accumulator = EventAccumulator(str(run_dir / "logs" / "tensorboard"), size_guidance={"images": 0})
    accumulator.Reload()
    logged = {image.step: image for image in accumulator.Images("eval/video")}
    assert sorted(logged) == steps
    for step, video in videos.items():
        with imageio.get_reader(video) as reader:
            n_frames = sum(1 for _ in reader)
        gif = Image.open(__import__("io").BytesIO(logged[step].encoded_image_string))
        assert gif.format == "GIF" and gif.size == (160, 240)
        assert sum(1 for _ in ImageSequence.Iterator(gif)) == n_frames  # every video frame, as an animated GIF
    uploaded = sorted((run_dir / "logs").rglob("media/videos/eval/video_*.mp4"))  # W&B (offline) keeps its own copies
    assert sorted(path.read_bytes() for path in uploaded) == sorted(video.read_bytes() for video in videos.values())


def test_a_video_only_recorder_writes_no_dataset(tmp_path):
    """record.video without record.dataset: one video per evaluation, and no dataset directory."""
    cfg = compose_config(["env=breakout", "record.video=true", "record.max_steps_per_episode=20"])
    recorder = make_training_recorder(cfg.record, cfg.env, tmp_path, seed=0, epsilon=0.05, evaluations_planned=1,
                                      resumed_at_step=None)
    env = make_env(cfg.env, num_envs=1, seed=0)
    q_network = make_q_network(cfg.model, env, torch.device("cpu"))
    env.close()
    sent = []
    recorder.record(q_network, step=800, on_video=sent.append)
    recorder.close()
    assert sent == [tmp_path / "videos" / "eval_step_800.mp4"] and sent[0].stat().st_size > 0
    assert recorder.dataset is None and not (tmp_path / "data").exists()


def test_a_resumed_run_continues_its_recording(tmp_path):
    """Episodes recorded after the checkpoint a run resumes from are dropped: that run plays them again."""
    from rlpipe.record import DatasetWriter

    env = make_env(compose_config(["env=breakout"]).env, num_envs=1, seed=0)
    rng = np.random.default_rng(0)
    policy = lambda observation: int(rng.integers(4))  # noqa: E731
    first = DatasetWriter(tmp_path, action_names=["NOOP", "FIRE", "RIGHT", "LEFT"], metadata={}, episodes_planned=10,
                          validation_fraction=0.1, seed=0)
    for step in (1000, 2000, 3000):
        first.record_episode(env, policy, max_steps=5, training_step=step)
    (tmp_path / EPISODES_DIR / "episode_004.tmp").mkdir()  # (killed while writing the next one)
    resumed = DatasetWriter(tmp_path, action_names=["NOOP", "FIRE", "RIGHT", "LEFT"], metadata={}, episodes_planned=10,
                            validation_fraction=0.1, seed=0, continue_after_step=2000)
    assert [e["training_step"] for e in json.loads((tmp_path / ACTIONS_FILE).read_text())["episodes"]] == [1000, 2000]
    assert sorted(p.name for p in (tmp_path / EPISODES_DIR).iterdir()) == ["episode_001", "episode_002"]
    entry = resumed.record_episode(env, policy, max_steps=5, training_step=3000)
    env.close()
    assert entry["name"] == "episode_003" and (tmp_path / EPISODES_DIR / "episode_003").is_dir()
    assert resumed.recording["split"] == first.recording["split"]  # the same seeded split


def test_recording_while_training_needs_an_atari_game():
    from rlpipe.config import ConfigError, validate

    with pytest.raises(ConfigError, match=r"record.video=true is invalid with env=cartpole: gameplay recording needs an Atari game"):
        validate(compose_config(["record.video=true"], check=False))


def test_training_refuses_a_recording_directory_in_use_before_writing_anything(tmp_path):
    used = tmp_path / "used"
    (used / "actions").mkdir(parents=True)
    (used / ACTIONS_FILE).write_text("{}")
    run_dir = tmp_path / "run"
    result = run_module("rlpipe.train", "env=breakout", "record.dataset=true", f"record.output_dir={used}",
                        f"hydra.run.dir={run_dir}", timeout=300)
    assert result.returncode != 0 and not run_dir.exists()
    assert f"record.output_dir={used} holds a recording already" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_full_disk_switches_recording_off_and_training_goes_on(tmp_path, monkeypatch, caplog):
    from rlpipe.models import make_q_network
    from rlpipe.record import DatasetWriter

    cfg = compose_config(["env=breakout", "record.dataset=true", "record.video=true", "record.max_steps_per_episode=5"])
    recorder = _recorder(cfg, tmp_path, resumed_at_step=None)
    q_network = make_q_network(cfg.model, recorder.env, torch.device("cpu"))
    videos = []
    recorder.record(q_network, step=100, on_video=videos.append)
    assert videos == [tmp_path / "videos" / "eval_step_100.mp4"]

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(DatasetWriter, "record_episode", full)
    recorder.record(q_network, step=200, on_video=videos.append)
    assert recorder.off and len(videos) == 1
    assert "cannot write the recording" in caplog.text and "No space left on device" in caplog.text
    monkeypatch.undo()
    recorder.record(q_network, step=300, on_video=videos.append)  # off for the rest of the run
    recorder.close()
    assert len(videos) == 1

    def full_logger(path):  # a logger's copy of the video fails: the run goes on too
        raise OSError(28, "No space left on device")

    again = _recorder(cfg, tmp_path / "second", resumed_at_step=None)
    again.record(q_network, step=100, on_video=full_logger)
    again.close()
    assert again.off
    assert [e["training_step"] for e in json.loads((tmp_path / "data" / ACTIONS_FILE).read_text())["episodes"]] == [100]


def test_any_atari_game_records_with_its_own_action_names(tmp_path):
    result = run_module("rlpipe.record", "dataset", "agent=random", "env_id=ALE/MsPacman-v5", "episodes=1",
                        "max_steps_per_episode=12", f"output_dir={tmp_path}", timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    meta = json.loads((tmp_path / ACTIONS_FILE).read_text())
    assert meta["protocol"]["env_id"] == "ALE/MsPacman-v5" and len(meta["action_names"]) == 9
    assert meta["action_names"][:5] == ["NOOP", "UP", "RIGHT", "LEFT", "DOWN"]
    assert {a["name"] for a in meta["episodes"][0]["actions"]} <= set(meta["action_names"])
    assert len(list((tmp_path / EPISODES_DIR / "episode_001").glob("frame_*.png"))) == 12


def test_a_full_disk_is_one_line_and_leaves_the_finished_episodes_readable(tmp_path):
    """The 16th PNG write fails with ENOSPC (Pillow patched in the recording process, as a full disk would)."""
    import subprocess
    import sys

    from conftest import REPO, _cli_env

    code = (
        "import errno, runpy, sys, PIL.Image\n"
        "save, writes = PIL.Image.Image.save, []\n"
        "def full(self, *args, **kwargs):\n"
        "    writes.append(1)\n"
        "    if len(writes) > 15: raise OSError(errno.ENOSPC, 'No space left on device')\n"
        "    return save(self, *args, **kwargs)\n"
        "PIL.Image.Image.save = full\n"
        f"sys.argv = ['rlpipe.record', 'dataset', 'agent=random', 'episodes=3', 'max_steps_per_episode=10', 'output_dir={tmp_path}']\n"
        "runpy.run_module('rlpipe.record', run_name='__main__', alter_sys=True)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL, env=_cli_env(None))
    assert proc.returncode != 0
    assert proc.stderr.strip() == f"rlpipe.record: cannot write the recording under {tmp_path}: No space left on device"
    meta = json.loads((tmp_path / ACTIONS_FILE).read_text())
    assert [e["name"] for e in meta["episodes"]] == ["episode_001"]  # the finished one, complete and listed
    assert len(GameplayDataset(tmp_path, sequence_length=10, split="all")) == 1
    assert not (tmp_path / EPISODES_DIR / "episode_002").exists()  # the cut one never got its final name


def test_a_run_resumed_elsewhere_refuses_another_runs_recording(tmp_path):
    """Only a run resumed in place continues its recording: one resumed into a new directory (from best.pt) with
    record.output_dir pointing at the first run's data must not touch it."""
    from rlpipe.config import ConfigError
    from rlpipe.models import make_q_network

    first, data = tmp_path / "first", tmp_path / "first" / "data"
    cfg = compose_config(["env=breakout", "record.dataset=true", "record.max_steps_per_episode=5", f"record.output_dir={data}"])
    recorder = _recorder(cfg, first, resumed_at_step=None)
    recorder.record(make_q_network(cfg.model, recorder.env, torch.device("cpu")), step=1000)
    recorder.close()
    with pytest.raises(ConfigError, match="holds a recording already"):
        _recorder(cfg, tmp_path / "second", resumed_at_step=500)
    assert [e["training_step"] for e in json.loads((data / ACTIONS_FILE).read_text())["episodes"]] == [1000]
    continued = _recorder(cfg, first, resumed_at_step=500)  # the same run, resumed in place
    continued.close()
    assert json.loads((data / ACTIONS_FILE).read_text())["episodes"] == []  # recorded after its checkpoint: dropped


def _recorder(cfg, run_dir, *, resumed_at_step):
    """The training run's recorder, as rlpipe.run builds it from the run's sections."""
    import math

    from rlpipe.record import make_training_recorder

    return make_training_recorder(cfg.record, cfg.env, run_dir, seed=cfg.train.seed, epsilon=cfg.eval.epsilon,
                                  evaluations_planned=math.ceil(cfg.train.total_steps / cfg.eval.interval_steps),
                                  resumed_at_step=resumed_at_step)
