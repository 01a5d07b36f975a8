"""DoorKey with skills through the pipeline: masks in exploration, the random prefill, replay and the double-DQN
target; episode statistics; the CLI; the embedding API. (The skills themselves: tests/test_doorkey_skills.py.)"""

from __future__ import annotations

import json

import pytest
import torch
from omegaconf import OmegaConf
from tensordict import TensorDict
from torch import nn
from torchrl.collectors import Collector
from torchrl.data import Categorical
from torchrl.envs.utils import ExplorationType, set_exploration_type
from torchrl.modules import QValueActor

from rlpipe.agent import Agent
from rlpipe.envs import action_mask_key, episode_stats, make_env, transition_keys
from rlpipe.envs.doorkey_skills import GET_KEY, SKILL_ENV_ID, DoorKeySkillEnv, observation_size
from rlpipe.exploration import make_exploration
from rlpipe.keys import ACTION_MASK_KEY, MASK_TRANSITION_KEYS, OBSERVATION_KEY
from rlpipe.learner import GradientUpdate, make_loss, make_optimizer
from rlpipe.replay import make_replay_buffer

from conftest import compose_config, run_module

CPU = torch.device("cpu")
N_ACTIONS = 5


def _masked_q_actor(bias: list[float]) -> QValueActor:
    """Q(s, .) = bias for every state: a linear layer with zero weights."""
    linear = nn.Linear(3, len(bias))
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.copy_(torch.tensor(bias))
    return QValueActor(linear, in_keys=["observation"], spec=Categorical(len(bias)), action_mask_key=ACTION_MASK_KEY)


def _random_masks(n: int, generator: torch.Generator) -> torch.Tensor:
    mask = torch.rand(n, N_ACTIONS, generator=generator) < 0.4  # [n, A]
    mask[torch.arange(n), torch.randint(N_ACTIONS, (n,), generator=generator)] = True  # at least one valid
    return mask


@pytest.mark.parametrize("exploration", ["egreedy", "temperature"])
def test_exploration_never_picks_a_masked_action_in_10000_draws(exploration):
    cfg = compose_config(["env=doorkey", f"exploration={exploration}"])
    # The best action (index 0, Q = 10) is masked wherever the mask forbids it: greedy picks would expose a leak.
    q_actor = _masked_q_actor([10.0, 1.0, 0.5, 0.0, -1.0])
    module = make_exploration(cfg.exploration, Categorical(N_ACTIONS), CPU, action_mask_key=ACTION_MASK_KEY)
    if exploration == "egreedy":
        module.module.eps.fill_(0.5)  # half random draws, half greedy
    else:
        module.module.temperature.fill_(5.0)  # a flat softmax: every valid action gets drawn
    generator = torch.Generator().manual_seed(0)
    mask = _random_masks(10_000, generator)
    td = TensorDict({"observation": torch.zeros(10_000, 3), ACTION_MASK_KEY: mask}, batch_size=[10_000])
    with set_exploration_type(ExplorationType.RANDOM):
        action = module.module(q_actor(td)).get("action")  # [10000]
    assert mask[torch.arange(10_000), action].all()
    # exploration really explores: every action is drawn somewhere it is allowed
    assert set(action.tolist()) == set(range(N_ACTIONS))


def test_double_dqn_target_ignores_a_masked_next_action_with_the_largest_q():
    q_actor = _masked_q_actor([1.0, 5.0, 2.0])  # Q(s', 1) = 5 is the largest, but action 1 is masked in s'
    train_cfg = OmegaConf.create({"gamma": 0.9, "loss": "l2", "lr": 1e-3, "adam_eps": 1e-8})
    loss_module = make_loss(train_cfg, q_actor)
    keys = transition_keys_for_mask()
    update = GradientUpdate(loss_module, make_optimizer(train_cfg, loss_module, CPU), max_grad_norm=1e9,
                            compile=False, device=CPU, transition_keys=keys)
    batch = TensorDict(
        {
            "observation": torch.zeros(2, 3),
            "action": torch.tensor([0, 2]),
            ACTION_MASK_KEY: torch.ones(2, 3, dtype=torch.bool),
            ("next", "observation"): torch.zeros(2, 3),
            ("next", ACTION_MASK_KEY): torch.tensor([[True, False, True], [True, True, True]]),
            ("next", "reward"): torch.tensor([[1.0], [1.0]]),
            ("next", "done"): torch.zeros(2, 1, dtype=torch.bool),
            ("next", "terminated"): torch.zeros(2, 1, dtype=torch.bool),
        },
        batch_size=[2],
    )
    result = update(batch)
    # target = r + gamma * Q_target(s', argmax over valid a' of Q_online(s', a')): 1 + 0.9 * 2 with the mask,
    # 1 + 0.9 * 5 without it. |delta| = |Q(s, a) - target|.
    expected_targets = torch.tensor([1 + 0.9 * 2.0, 1 + 0.9 * 5.0])
    expected = (torch.tensor([1.0, 2.0]) - expected_targets).abs()
    torch.testing.assert_close(result.priority, expected)


def transition_keys_for_mask() -> tuple:
    env = make_env(compose_config(["env=doorkey"]).env)
    keys = transition_keys(env)
    env.close()
    assert keys[-2:] == MASK_TRANSITION_KEYS
    return keys


def test_random_prefill_draws_valid_skills_and_replay_keeps_both_masks():
    cfg = compose_config(["env=doorkey", "env.num_envs=2", "buffer.capacity=1000"])
    env = make_env(cfg.env, num_envs=2, seed=0)
    assert action_mask_key(env) == ACTION_MASK_KEY
    assert set(episode_stats(env)) == {"success", "primitive_steps"}
    # init_random_frames covers the whole batch: the collector acts with env.rand_action (TorchRL's prefill path)
    collector = Collector(env, None, frames_per_batch=200, total_frames=-1, init_random_frames=200)
    batch = next(iter(collector))  # [2, 100]
    collector.shutdown(close_env=False)
    mask, action = batch.get(ACTION_MASK_KEY), batch.get("action")  # [2, 100, A], [2, 100]
    assert mask.gather(-1, action.unsqueeze(-1)).all()
    assert not mask.all()  # the mask really restricts (only GetKey at reset)
    # episodes finished and their statistics are there: decisions, primitive steps, success
    done = batch.get(("next", "done")).squeeze(-1)
    assert done.any()
    primitive_steps = batch.get(("next", "episode_primitive_steps")).reshape(done.shape)[done]
    decisions = batch.get(("next", "step_count")).reshape(done.shape)[done]
    assert (primitive_steps > decisions).all()  # each decision runs several primitive actions

    replay = make_replay_buffer(cfg.buffer, cfg.env, env)
    replay.extend(batch)
    sample = replay.sample(64)
    assert sample.get(ACTION_MASK_KEY).shape == (64, N_ACTIONS)
    assert sample.get(("next", ACTION_MASK_KEY)).dtype == torch.bool


def test_doorkey_cli_reports_success_and_the_agent_api_acts(tmp_path):
    result = run_module(
        "rlpipe.train", "env=doorkey", "train.total_steps=2000", "eval.interval_steps=2000", "eval.episodes=20",
        "train.compile=false", "train.log_interval_steps=500", f"hydra.run.dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["env"] == SKILL_ENV_ID and 0.0 <= summary["eval/success_rate"] <= 1.0
    assert summary["eval/primitive_steps_mean"] > 0
    # decisions per episode beside primitive steps (max_decisions caps an episode at 100 decisions)
    assert 1 <= summary["eval/length_mean"] <= 100
    assert summary["eval/primitive_steps_mean"] >= summary["eval/length_mean"]
    assert "success rate" in result.stdout
    scalars = tmp_path / "logs" / "csv" / "scalars"
    for metric in ("episode/success", "episode/primitive_steps", "episode/length", "eval/success_rate"):
        assert (scalars / f"{metric}.csv").read_text().strip(), metric

    agent = Agent.load(tmp_path / "checkpoints" / "last.pt")
    env = DoorKeySkillEnv(size=8)
    obs, _ = env.reset(seed=3)
    assert agent.act(obs) == GET_KEY  # the only valid skill at reset
    forbid_all_but_drop = torch.tensor([False, False, False, False, True])
    assert agent.act(obs["observation"], mask=forbid_all_but_drop) == 4
    batch = agent.act(torch.stack([torch.as_tensor(obs["observation"])] * 3), mask=forbid_all_but_drop.expand(3, 5))
    assert batch.tolist() == [4, 4, 4]
    with pytest.raises(ValueError, match="allows no action"):
        agent.act(obs["observation"], mask=torch.zeros(5, dtype=torch.bool))


def _short_run(tmp_path, *overrides: str) -> dict:
    result = run_module(
        "rlpipe.train", *overrides, "train.total_steps=600", "train.init_random_steps=200", "eval.interval_steps=600",
        "eval.episodes=3", "train.compile=false", f"hydra.run.dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((tmp_path / "summary.json").read_text())


@pytest.mark.parametrize("view, n_step", [("full", 1), ("egocentric", 3)])
def test_primitive_doorkey_cli_smoke(view, n_step, tmp_path):
    summary = _short_run(tmp_path, "env=doorkey_primitive", "env.size=5", f"env.view={view}", f"train.n_step={n_step}")
    assert summary["env"] == "rlpipe/DoorKeyPrimitive-v0" and summary["steps"] >= 600 and summary["updates"] > 0
    assert "eval/success_rate" in summary and summary["eval/primitive_steps_mean"] > 0
    agent = Agent.load(tmp_path / "checkpoints" / "last.pt")
    env = agent.make_env(num_envs=1, seed=0)
    assert env.observation_spec[OBSERVATION_KEY].shape[-1] == observation_size(5, view)
    env.close()


def test_doorkey_cli_with_masked_boltzmann_exploration(tmp_path):
    summary = _short_run(tmp_path, "env=doorkey", "exploration=temperature")
    assert summary["steps"] >= 600 and summary["updates"] > 0 and 0.0 <= summary["eval/success_rate"] <= 1.0
    step, temperature = (tmp_path / "logs" / "csv" / "scalars" / "train" / "temperature.csv").read_text().split()[-1].split(",")
    assert int(step) >= 600 and 0.05 <= float(temperature) < 1.0  # decayed per finished episode from 1.0
