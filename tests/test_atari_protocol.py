"""Atari at the published protocol: evaluation games that differ (epsilon 0.05, NOOP starts), the protocol recorded,
any ALE game, the episode cap, and the ale-py vector env against the ``gym`` backend it replaces."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from tensordict.nn import TensorDictModule

from conftest import REPO, compose_config, run_module

from rlpipe.config import ConfigError, validate
from rlpipe.envs import make_env
from rlpipe.envs.ale_vector import AleVectorEnv
from rlpipe.envs.atari import GREEDY_GAME_MAX_FRAMES, NoopFireReset, atari_games, fixed_start, make_atari_env, rom_id, screen_rgb
from rlpipe.evaluate import evaluate_policy, evaluation_protocol
from rlpipe.frame_replay import FrameReplay
from rlpipe.keys import END_OF_LIFE_KEY, EPISODE_SCORE_KEY, OBSERVATION_KEY, TRANSITION_KEYS
from rlpipe.learner import make_loss
from rlpipe.models import make_q_network

CPU = torch.device("cpu")


def _constant_actor(action: int) -> TensorDictModule:
    """A policy that always picks ``action``: any variety across games comes from the env and epsilon."""
    return TensorDictModule(lambda obs: torch.full(obs.shape[:-3], action, dtype=torch.long), in_keys=[OBSERVATION_KEY],
                            out_keys=["action"])


def _breakout(*overrides: str):
    return compose_config(["env=breakout", *overrides]).env


# ---------------------------------------------------------------- the protocol


def test_evaluation_games_differ_under_the_protocol_and_not_without_it():
    """Without sticky actions Breakout is deterministic: from fixed starts a fixed policy plays one game ten times.
    NOOP starts and epsilon 0.05 make the ten games differ."""
    fixed = make_env(_breakout("env.noop_max=0", "env.max_episode_steps=400"), num_envs=10, seed=0)
    same = evaluate_policy(fixed, _constant_actor(1), device=CPU, epsilon=0.0)
    assert same.lengths.unique().numel() == 1 and same.returns.unique().numel() == 1
    protocol = make_env(_breakout("env.max_episode_steps=400"), num_envs=10, seed=0)
    torch.manual_seed(0)
    varied = evaluate_policy(protocol, _constant_actor(1), device=CPU, epsilon=0.05)
    assert varied.lengths.unique().numel() > 1 or varied.returns.unique().numel() > 1
    fixed.close()
    protocol.close()


def test_evaluation_honours_epsilon():
    """A NOOP-only agent never serves the ball again after its first lost life (ale-py does not press FIRE for it),
    so every game runs into the cap with the same score; random actions at epsilon 0.5 press FIRE and end games."""
    env = make_env(_breakout("env.noop_max=0", "env.max_episode_steps=600"), num_envs=6, seed=0)
    greedy = evaluate_policy(env, _constant_actor(0), device=CPU, epsilon=0.0)
    assert (greedy.lengths == 600).all()
    torch.manual_seed(0)
    exploring = evaluate_policy(env, _constant_actor(0), device=CPU, epsilon=0.5)
    assert (exploring.lengths < 600).any() and exploring.lengths.unique().numel() > 1
    env.close()


def test_presets_name_their_protocol():
    noop = compose_config(["env=breakout"])
    assert (noop.eval.epsilon, noop.env.noop_max, noop.env.repeat_action_probability, noop.eval.episodes) == (0.05, 30, 0.0, 10)
    assert evaluation_protocol(noop.env, epsilon=0.05, episodes=10)["name"] == "noop_starts"
    sticky = compose_config(["env=breakout", "protocol=sticky_actions"])
    assert (sticky.env.repeat_action_probability, sticky.env.noop_max, sticky.eval.epsilon) == (0.25, 0, 0.001)
    assert evaluation_protocol(sticky.env, epsilon=0.001, episodes=10)["name"] == "sticky_actions"
    assert evaluation_protocol(compose_config([]).env, epsilon=0.0, episodes=20)["name"] == "seeded_resets"


def test_the_greedy_game_starts_fixed_and_is_cut():
    sticky = compose_config(["env=breakout", "protocol=sticky_actions"]).env
    fixed = fixed_start(sticky)
    assert (fixed.noop_max, fixed.repeat_action_probability, fixed.max_episode_steps) == (0, 0.0, GREEDY_GAME_MAX_FRAMES // 4)
    assert fixed_start(_breakout("env.max_episode_steps=500")).max_episode_steps == 500
    assert evaluation_protocol(fixed, epsilon=0.0, episodes=1)["name"] == "fixed_start"


def test_a_checkpoint_from_before_the_backends_keeps_the_gym_backend():
    stored = OmegaConf.to_container(compose_config(["env=breakout"]), resolve=True)
    for key in ("game", "backend", "maxpool", "max_episode_steps"):
        del stored["env"][key]
    env_cfg = validate(OmegaConf.create(stored)).env
    assert (env_cfg.backend, env_cfg.maxpool, env_cfg.max_episode_steps, env_cfg.game) == ("gym", False, 27_000, None)
    assert isinstance(make_env(env_cfg).transform[0], NoopFireReset)


# ---------------------------------------------------------------- any game


def test_any_game_trains_and_records_its_protocol(tmp_path):
    """Pong, a few hundred steps: the run directory and summary name the game, its threshold is Pong's, and every
    evaluation line and the summary say which protocol they used; rlpipe.evaluate plays the run's protocol."""
    run_dir = tmp_path / "pong"
    result = run_module("rlpipe.train", "env=atari", "env.game=Pong", "train.total_steps=480", "train.init_random_steps=240",
                        "buffer.capacity=4000", "eval.episodes=2", "eval.interval_steps=240", "env.max_episode_steps=200",
                        "train.compile=false", "checkpoint.save_buffer=false", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["env"] == "ALE/Pong-v5" and summary["solved_return"] == 18.0
    assert summary["eval/protocol"]["name"] == "noop_starts" and summary["eval/protocol"]["epsilon"] == 0.05
    assert summary["eval/protocol"]["backend"] == "ale_vector" and summary["eval/epsilon"] == 0.05
    lines = [json.loads(line) for line in (run_dir / "evaluations.jsonl").read_text().splitlines()]
    assert len(lines) == 2 and all(line["eval/protocol"] == "noop_starts" and line["eval/epsilon"] == 0.05 for line in lines)
    # the extra metric: one greedy game from a fixed start (the deterministic game), beside the protocol's mean
    assert all(line["eval/greedy_length"] >= 1 and "eval/greedy_return" in line for line in lines)
    assert summary["eval/greedy_return"] == lines[-1]["eval/greedy_return"]
    assert "(protocol noop_starts, epsilon 0.05)" in result.stdout
    assert OmegaConf.load(run_dir / "config.yaml").env.name == "pong"

    evaluated = run_module("rlpipe.evaluate", f"checkpoint={run_dir / 'checkpoints' / 'last.pt'}", "eval.episodes=3")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    line = evaluated.json_lines()[-1]
    assert line["eval/epsilon"] == 0.05 and line["eval/protocol"]["name"] == "noop_starts" and len(line["eval/lengths"]) == 3


def test_an_unknown_game_is_one_line_that_says_how_to_list_the_games(tmp_path):
    result = run_module("rlpipe.train", "env=atari", "env.game=Pongg", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "rlpipe.train: invalid configuration: env.game='Pongg' is not an ALE game (did you mean Pong?); list the "
        f"{len(atari_games())} games with: python -m rlpipe.envs.atari"]
    assert not (tmp_path / "run").exists()
    listed = subprocess.run([sys.executable, "-m", "rlpipe.envs.atari"], cwd=REPO, capture_output=True, text=True, check=True)
    assert {"Breakout", "Pong", "SpaceInvaders", "Qbert", "Seaquest"} <= set(listed.stdout.split())
    assert rom_id("ALE/SpaceInvaders-v5") == "space_invaders"
    with pytest.raises(ConfigError, match="not an ALE game"):
        rom_id("ALE/Nope-v5")


def test_action_names_come_from_the_game():
    pong = make_env(compose_config(["env=atari", "env.game=Pong"]).env)
    assert pong.action_names == ["NOOP", "FIRE", "RIGHT", "LEFT", "RIGHTFIRE", "LEFTFIRE"]
    assert pong.full_action_spec_unbatched["action"].space.n == 6


# ---------------------------------------------------------------- the episode cap


@pytest.mark.parametrize("backend", ["ale_vector", "gym"])
def test_max_episode_steps_truncates_and_the_td_target_bootstraps_through_it(backend):
    cap = 30
    env_cfg = _breakout(f"env.backend={backend}", f"env.maxpool={backend == 'ale_vector'}", f"env.max_episode_steps={cap}",
                        "env.noop_max=0")
    env = make_env(env_cfg, num_envs=1, seed=0)
    torch.manual_seed(0)
    rollout = env.rollout(cap + 10, break_when_any_done=False)  # random actions
    t = cap - 1
    assert rollout["next", "step_count"][t].item() == cap
    assert rollout["next", "truncated"][t].item() and rollout["next", "done"][t].item()
    assert not rollout["next", "terminated"][t].item() and not rollout["next", END_OF_LIFE_KEY][t].item()
    assert not rollout["next", "done"][:t].any() and rollout["step_count"][t + 1].item() == 0  # a new episode

    # Stored, the truncated transition stays non-terminal; its target is r + gamma * V(s'), s' the last frame.
    cfg = compose_config(["env=breakout", "buffer.capacity=200", "train.n_step=1"])
    replay = FrameReplay(capacity=200, num_streams=1, frame_shape=(84, 84), frame_stack=8, alpha=0.0, beta=0.0,
                         priority_eps=1e-6, terminal_key=("next", END_OF_LIFE_KEY))
    replay.extend(rollout)
    batch = replay.transitions(torch.tensor([t]))
    assert not batch["next", "terminated"].item() and batch["next", "done"].item()
    assert torch.equal(batch["next", OBSERVATION_KEY][0], rollout["next", OBSERVATION_KEY][t])
    loss = make_loss(cfg.train, make_q_network(cfg.model, env, CPU))
    target = loss.value_estimator.value_estimate(batch.select(*TRANSITION_KEYS).clone(), next_value=torch.full((1, 1), 10.0))
    assert target.item() == pytest.approx(batch["next", "reward"].item() + cfg.train.gamma * 10.0)
    env.close()


# ---------------------------------------------------------------- the ale-py vector env against the gym backend


def test_the_vector_env_plays_the_gym_backends_game():
    """The same game, the same actions, two backends: with FIRE and NOOP starts off and no max-pooling, rewards,
    lives, ends and scores agree step for step; frames differ only in the resize and grayscale formulas
    (INTER_AREA of ALE's grayscale against an anti-aliased bilinear resize of the RGB screen), a few grey levels."""
    gym_env = make_env(_breakout("env.backend=gym", "env.maxpool=false", "env.noop_max=0"), num_envs=1, seed=0)
    gym_env.transform[0].fire = False  # NoopFireReset: no FIRE at reset or after a lost life
    vector = AleVectorEnv(rom="breakout", num_envs=1, batched=False, frame_skip=4, frame_stack=8, screen_size=84, maxpool=False,
                          noop_max=0, repeat_action_probability=0.0, max_episode_steps=27_000, living_penalty=-0.001,
                          life_loss_penalty=-1.0, fire_reset=False)
    actions = torch.from_numpy(np.random.default_rng(0).choice(4, size=1500, p=[0.1, 0.3, 0.3, 0.3]))
    runs = []
    for env in (gym_env, vector):
        td = env.reset()
        steps = []
        for action in actions:
            td["action"] = action
            stepped, td = env.step_and_maybe_reset(td)
            steps.append(stepped.exclude("pixels"))
        runs.append(torch.stack(steps))
    old, new = runs
    for key in ("reward", "done", "terminated", END_OF_LIFE_KEY, "lives", EPISODE_SCORE_KEY, "step_count", "episode_reward"):
        assert torch.equal(old["next", key].float(), new["next", key].float()), key
    assert old["next", "done"].sum() >= 2 and old["next", EPISODE_SCORE_KEY].max() > 0  # games ended, points were scored
    difference = (old["next", OBSERVATION_KEY].float() - new["next", OBSERVATION_KEY].float()).abs()
    assert difference.mean() < 2.0 and difference.quantile(0.99) < 40, (difference.mean(), difference.max())
    # stacks are built alike: the padding at an episode's start copies its first frame in both
    first = new[old["step_count"].squeeze(-1) == 0][OBSERVATION_KEY]
    assert (first == first[:, -1:]).all()
    gym_env.close()
    vector.close()


def test_vector_env_partial_reset_and_first_frame_padding():
    env = make_env(_breakout("env.max_episode_steps=5"), num_envs=3, seed=0)
    td = env.reset()
    assert (td[OBSERVATION_KEY] == td[OBSERVATION_KEY][:, -1:]).all()  # every frame is the reset frame
    for step in range(1, 5):
        td["action"] = torch.tensor([1, 2, 3])
        stepped, td = env.step_and_maybe_reset(td)
        frames = stepped["next", OBSERVATION_KEY]
        first = env.frame_stack - 1 - step
        assert (frames[:, :first] == frames[:, first : first + 1]).all()
    td["action"] = torch.tensor([1, 2, 3])
    stepped, td = env.step_and_maybe_reset(td)  # the cap: all three reset through the partial-reset path
    assert stepped["next", "truncated"].all() and (td["step_count"] == 0).all()
    assert (td[OBSERVATION_KEY] == td[OBSERVATION_KEY][:, -1:]).all()
    env.close()


def test_a_reset_of_a_seeded_vector_env_leaves_the_runs_random_numbers_alone():
    """Evaluations reset their env every time: that must not draw from torch's generator, which the training's
    exploration and replay sampling use. Each game's own random stream goes on (new NOOP starts)."""
    env = make_env(_breakout(), num_envs=2, seed=3)
    first = env.reset()[OBSERVATION_KEY].clone()
    before = torch.get_rng_state()
    second = env.reset()[OBSERVATION_KEY]
    assert torch.equal(torch.get_rng_state(), before)
    assert not torch.equal(first, second)  # the NOOP draws went on
    env.close()


def test_the_colour_screen_plays_the_same_game_even_with_sticky_actions():
    """The colour-screen games are a second vector env in lockstep: with sticky actions and NOOP starts drawn from
    the same seeds, 1,500 random steps keep rewards and lives equal (the env raises otherwise), and the screen
    reduced to the agent's resolution is the agent's frame."""
    env_cfg = compose_config(["env=breakout", "protocol=sticky_actions", "env.noop_max=30", "env.maxpool=false"]).env
    env = make_atari_env(env_cfg, num_envs=1, seed=5, with_screen=True)
    td = env.reset()
    torch.manual_seed(0)
    for _ in range(1500):
        td["action"] = env.action_spec.rand()
        stepped, td = env.step_and_maybe_reset(td)
    screen = torch.from_numpy(screen_rgb(env)).permute(2, 0, 1).float()  # [3, 210, 160]
    gray = (torch.tensor([0.299, 0.587, 0.114])[:, None, None] * screen).sum(0, keepdim=True)
    small = F.interpolate(gray[None], size=(84, 84), mode="area")[0, 0]
    assert (small - td[OBSERVATION_KEY][-1].float()).abs().mean() < 3.0
    env.close()


def test_evaluation_plays_one_game_per_env_under_the_protocol():
    cfg = compose_config(["env=breakout", "env.max_episode_steps=300"])
    env = make_env(cfg.env, num_envs=4, seed=1)
    q_network = make_q_network(cfg.model, env, CPU)
    result = evaluate_policy(env, q_network, device=CPU, epsilon=cfg.eval.epsilon)
    assert result.returns.shape == (4,) and (result.lengths <= 300).all()
    assert (result.returns >= 0).all() and (result.returns == result.returns.round()).all()  # the game score, unshaped
    env.close()
