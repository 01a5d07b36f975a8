"""Full-colour, native-resolution Atari (``env=breakout_rgb``): 210x160 RGB frames at frame skip 2 in 8-frame stacks,
the Nature CNN sized from that spec (24 input channels, 22,528 flattened features), and a run that trains, evaluates
under the protocol, checkpoints and loads as an agent. The replay's colour stacks are checked against the env's in
``tests/test_frame_replay.py``; recording at native colour in ``tests/test_record.py``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torchrl.envs.utils import step_mdp

from conftest import compose_config, run_module

from rlpipe.agent import Agent
from rlpipe.config import ConfigError
from rlpipe.envs import make_env
from rlpipe.envs.ale_vector import AleVectorEnv
from rlpipe.envs.atari import frame_shape, protocol
from rlpipe.keys import OBSERVATION_KEY
from rlpipe.models import ColourStackToChannels, make_q_network

CPU = torch.device("cpu")


def test_the_preset_plays_native_colour_frames_at_frame_skip_2():
    cfg = compose_config(["env=breakout_rgb"])
    assert (cfg.env.frame_skip, list(cfg.env.screen_size), cfg.env.grayscale, cfg.env.frame_stack) == (2, [210, 160], False, 8)
    assert cfg.env.name == "breakout_rgb" and compose_config(["env=breakout_rgb", "env.game=Pong"]).env.name == "pong_rgb"
    # Breakout's tuned exploration schedules apply in colour too (conf/tuned/breakout_rgb_*.yaml)
    assert (cfg.exploration.temperature_final, cfg.exploration.decay_slowdown) == (0.02, 1.0)
    assert compose_config(["env=breakout_rgb", "exploration=egreedy"]).exploration.annealing_steps == 100_000
    assert frame_shape(cfg.env) == (210, 160, 3) and frame_shape(compose_config(["env=breakout"]).env) == (84, 84)
    assert protocol(cfg.env)["frame"] == "RGB, native 210x160 (no resize), max of the last two emulator frames"
    env = make_env(cfg.env, num_envs=2, seed=0)
    assert env.full_observation_spec_unbatched[OBSERVATION_KEY].shape == (8, 210, 160, 3)
    assert env.reset()[OBSERVATION_KEY].shape == (2, 8, 210, 160, 3)
    env.close()


def test_colour_frames_are_the_games_screen_and_stacks_start_padded_with_the_first_frame():
    """Without max-pooling, the newest frame of every stack is the ALE's RGB screen itself (read through a second
    vector env in lockstep); at the start of an episode the stack's older frames are copies of its first frame."""
    env = AleVectorEnv(rom="breakout", num_envs=1, batched=False, frame_skip=2, frame_stack=8, screen_size=(210, 160),
                       grayscale=False, maxpool=False, noop_max=0, repeat_action_probability=0.0, max_episode_steps=1_000,
                       with_screen=True)
    env.set_seed(0)
    td = env.reset()
    rng = np.random.default_rng(0)
    previous = None
    for t in range(12):
        stack = td[OBSERVATION_KEY].numpy()  # [8, 210, 160, 3]
        assert np.array_equal(stack[-1], env.screen_rgb()[0]), t
        first = max(0, 7 - t)  # frames before the episode's first are copies of it
        assert all(np.array_equal(stack[k], stack[first]) for k in range(first)), t
        if previous is not None:
            assert np.array_equal(stack[:-1], previous[1:]), t  # the stack slides by one frame per agent step
        previous = stack
        td = step_mdp(env.step(td.set("action", torch.tensor(int(rng.integers(4))))))
    assert stack.std() > 0  # a real screen, not a blank one
    env.close()


def test_the_nature_cnn_reads_24_channels_and_grows_its_flattened_layer_to_22528():
    cfg = compose_config(["env=breakout_rgb"])
    env = make_env(cfg.env, num_envs=1, seed=0)
    q = make_q_network(cfg.model, env, CPU)
    net = q.module[0].module
    assert isinstance(net[0], ColourStackToChannels)
    assert net[2][0].in_channels == 24  # the first convolution (ConvNet's first layer)
    assert net[3][0].in_features == 22_528  # 64 x 22 x 16 conv features at 210x160, against 3,136 at 84x84
    assert q(env.reset())["action_value"].shape == (4,)
    # frame-major channels: channel 3i + c is colour c of frame i
    stack = torch.randint(0, 256, (2, 8, 210, 160, 3), dtype=torch.uint8)
    channels = ColourStackToChannels()(stack)
    assert channels.shape == (2, 24, 210, 160)
    assert torch.equal(channels[:, 3 * 5 + 1], stack[:, 5, :, :, 1])
    # a resize the user chooses shrinks it
    small = make_q_network(cfg.model, make_env(compose_config(["env=breakout_rgb", "env.screen_size=[105,80]"]).env), CPU)
    assert small.module[0].module[3][0].in_features == 64 * 9 * 6
    env.close()


@pytest.mark.parametrize("overrides,message", [
    (["env.backend=gym"], "env.grayscale=false is invalid with env.backend=gym"),
    (["env.screen_size=[210]"], "env.screen_size=[210] is invalid"),
    (["env.screen_size=4"], "env.screen_size=4 is invalid"),
    (["exploration=rnd"], "exploration=rnd is invalid with env=breakout_rgb: RND's networks read the newest grayscale frame"),
])
def test_bad_colour_settings_are_one_line(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        compose_config(["env=breakout_rgb", *overrides])


@pytest.mark.parametrize("storage", ["memory", "memmap"])
def test_a_frame_ring_larger_than_its_memory_or_disk_is_refused_before_the_run(tmp_path, storage, monkeypatch):
    """10M colour frames (1 TB) on a machine with 20 GB of memory and 50 GB of free disk: refused in one line that
    names the size, where it would not fit, and the way out, instead of a run killed for memory (or by a full disk)
    once the ring has filled that far. A short run with the same ring writes little of it, and passes the check."""
    import shutil

    from rlpipe import replay as replay_module
    from rlpipe.replay import check_frame_ring_fits, make_replay_buffer, make_replay_scratch

    monkeypatch.setattr(replay_module, "available_memory_bytes", lambda: 20 * 10**9)
    monkeypatch.setattr(replay_module.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**12, 10**12 - 50 * 10**9, 50 * 10**9))

    cfg = compose_config(["env=breakout_rgb", "buffer.capacity=10_000_000", f"buffer.storage={storage}",
                          f"buffer.memmap_dir={tmp_path}"])
    env = make_env(cfg.env, num_envs=1, seed=0)
    scratch = make_replay_scratch(cfg.buffer, tmp_path)
    where = "the disk under .* has 50.0 GB free" if storage == "memmap" else "this machine has 20.0 GB of memory available"
    with pytest.raises(ConfigError, match=rf"^buffer.capacity=10,000,000 frames of 210x160x3 bytes take 1008.0 GB, and {where}"):
        make_replay_buffer(cfg.buffer, cfg.env, env, scratch=scratch, max_frames=2 * 20_000_000)
    # a short run touches little of the ring: only the frames it can write count
    check_frame_ring_fits(10_000_000, (210, 160, 3), memmap_dir=None if storage == "memory" else str(tmp_path),
                          device=CPU, max_frames=2_000)
    cfg = compose_config(["env=breakout_rgb", "buffer.capacity=2_000"])  # a ring that fits is built
    assert make_replay_buffer(cfg.buffer, cfg.env, env).capacity == 2_000
    env.close()


# Tiny sizes: the wiring of a colour run end to end (spec -> frame replay -> learner -> protocol evaluation ->
# checkpoint -> Agent), not its learning (docs/results/atari-rgb.md measures that). Space Invaders: any game plays in
# colour, and a game without a known threshold is never solved.
TINY = ["env=breakout_rgb", "env.game=SpaceInvaders", "train.total_steps=64", "train.init_random_steps=32",
        "train.batch_size=4", "buffer.capacity=400", "eval.episodes=1", "eval.interval_steps=64", "eval.greedy_game=false",
        "env.max_episode_steps=60", "checkpoint.interval_steps=64", "train.log_interval_steps=32", "train.compile=false"]


def test_any_game_trains_in_colour_evaluates_checkpoints_and_loads_as_an_agent(tmp_path):
    result = run_module("rlpipe.train", *TINY, f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["env"] == "ALE/SpaceInvaders-v5" and summary["solved_return"] is None and not summary["solved"]
    assert summary["finished"] and summary["steps"] >= 64 and summary["updates"] > 0
    assert summary["eval/protocol"]["frame_skip"] == 2 and summary["eval/protocol"]["frame"].startswith("RGB, native 210x160")
    agent = Agent.load(tmp_path / "checkpoints" / "last.pt")
    env = agent.make_env(seed=0)
    observation = env.reset()[OBSERVATION_KEY]
    assert observation.shape == (8, 210, 160, 3) and 0 <= agent.act(observation) < 6
    env.close()
