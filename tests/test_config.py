"""Every option of every config group composes, validates and builds its objects; bad values fail with a message
that names the key and what is allowed."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from rlpipe.config import ConfigError
from rlpipe.envs import make_env, transition_keys
from rlpipe.exploration import make_exploration
from rlpipe.run import make_agents
from rlpipe.loggers import make_logger
from rlpipe.models import make_q_network
from rlpipe.replay import make_beta_schedule, make_replay_buffer

from conftest import CONF_DIR, compose_config

# Groups users choose from; `tuned` is picked by Hydra itself (tuned/<env>_<exploration>.yaml).
GROUPS = sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir() and p.name != "tuned")
OPTIONS = [(group, option.stem) for group in GROUPS for option in sorted((CONF_DIR / group).glob("*.yaml"))]
COMPANIONS = {  # options that only fit with another choice
    ("model", "nature_cnn"): ["env=breakout"],
    ("protocol", "noop_starts"): ["env=atari", "env.game=Pong"],
    ("protocol", "sticky_actions"): ["env=breakout"],
}
SMALL = ["buffer.capacity=5000"]


def test_every_group_has_options():
    assert set(GROUPS) >= {"env", "model", "exploration", "buffer", "logger"}
    assert len(OPTIONS) >= 12


@pytest.mark.parametrize("group,option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_composes_and_builds(group, option, tmp_path):
    cfg = compose_config([*COMPANIONS.get((group, option), []), f"{group}={option}", *SMALL])
    device = torch.device("cpu")
    env = make_env(cfg.env, num_envs=cfg.env.num_envs, seed=0)
    exploration = make_exploration(cfg.exploration, env.full_action_spec_unbatched["action"], device)
    learner = make_agents(cfg.train, cfg.exploration, lambda: make_q_network(cfg.model, env, device),
                           transition_keys=transition_keys(env), observation_spec=env.full_observation_spec_unbatched,
                           num_envs=env.batch_size.numel(), device=device, total_updates=100)
    q_network = learner.q_network
    acting = learner.acting_network
    if cfg.exploration.kind != "rnd":
        assert acting is q_network
    elif cfg.exploration.exploit_acting_share == 0:
        assert acting is learner.explore.q_network
    else:  # both agents act (rlpipe.rnd.SharedActing: experiment=doorkey_rnd)
        assert acting.explore is learner.explore.q_network and acting.exploit is q_network
    replay = make_replay_buffer(cfg.buffer, cfg.env, env)
    make_beta_schedule(cfg.buffer, total_steps=cfg.train.total_steps)
    logger = make_logger(cfg.logger, tmp_path, run_name="test", config=cfg)
    logger.log_metrics({"train/loss": 1.0}, step=1)
    logger.close()
    td = q_network(env.reset())
    assert td["action_value"].shape[-1] == env.full_action_spec_unbatched["action"].space.n
    assert exploration.update(step=0, episodes=0) > 0
    assert len(replay) == 0
    env.close()


@pytest.mark.parametrize(
    "overrides",
    [
        ["train.lr_schedule=linear", "train.lr_final=1e-5"],
        ["train.lr_schedule=cosine"],
        ["train.target_update=soft"],
        ["exploration.annealing=exponential"],
        ["model.dueling=true", "model.activation=tanh"],
        ["env=lunarlander", "buffer=uniform", "logger=tensorboard"],
    ],
)
def test_option_combinations_compose(overrides):
    cfg = compose_config(overrides)
    assert OmegaConf.is_readonly(cfg)


@pytest.mark.parametrize("env", ["cartpole", "lunarlander", "breakout", "breakout_gpu", "doorkey", "doorkey_primitive"])
@pytest.mark.parametrize("exploration", ["egreedy", "temperature", "rnd"])
def test_every_env_and_exploration_pair_composes(env, exploration):
    cfg = compose_config([f"env={env}", f"exploration={exploration}"])
    assert cfg.exploration.kind == exploration and cfg.env.name == env


@pytest.mark.parametrize("env", ["cartpole", "lunarlander", "breakout", "doorkey", "doorkey_primitive"])
def test_rnd_builds_and_rewards_every_env(env):
    """exploration=rnd on every task: two agents, and an intrinsic reward [E, 1] for the env's own observations."""
    cfg = compose_config([f"env={env}", "exploration=rnd", *SMALL])
    device = torch.device("cpu")
    task = make_env(cfg.env, num_envs=cfg.env.num_envs, seed=0)
    learner = make_agents(cfg.train, cfg.exploration, lambda: make_q_network(cfg.model, task, device),
                           transition_keys=transition_keys(task), observation_spec=task.full_observation_spec_unbatched,
                           num_envs=task.batch_size.numel(), device=device, total_updates=100)
    key = learner.novelty_key[-1]  # what RND reads: the observation, or the agent state (DoorKey primitive's preset)
    observation = task.reset().get(key).reshape(-1, *task.full_observation_spec_unbatched[key].shape)
    reward = learner.rnd.intrinsic_reward(observation)
    assert reward.shape == (len(observation), 1) and bool((reward >= 0).all())
    assert learner.exploit.q_network is not learner.explore.q_network
    task.close()


def test_breakout_cpu_preset_picks_its_model_exploration_and_schedules():
    cfg = compose_config(["env=breakout"])
    assert (cfg.model.kind, cfg.exploration.kind, cfg.buffer.kind) == ("nature_cnn", "temperature", "prioritized")
    assert (cfg.env.frame_skip, cfg.env.frame_stack, cfg.env.noop_max, cfg.env.repeat_action_probability) == (4, 8, 30, 0.0)
    assert (cfg.env.num_envs, cfg.train.batch_size, cfg.train.updates_per_step, cfg.train.n_step) == (4, 32, 0.25, 3)
    assert (cfg.train.lr, cfg.train.adam_eps, cfg.train.target_update_steps, cfg.train.init_random_steps) == (1e-4, 1.5e-4, 250, 20_000)
    assert (cfg.train.precision, cfg.env.solved_return, cfg.checkpoint.save_buffer) == ("auto", 20.0, True)
    assert cfg.buffer.capacity == 1_000_000
    temperature = cfg.exploration
    assert (temperature.temperature_final, temperature.decay_per_episode, temperature.decay_slowdown) == (0.02, 0.99, 1.0)
    egreedy = compose_config(["env=breakout", "exploration=egreedy"]).exploration
    assert (egreedy.eps_init, egreedy.eps_final, egreedy.annealing_steps) == (1.0, 0.01, 100_000)


def test_breakout_gpu_preset_keeps_the_original_values():
    cfg = compose_config(["env=breakout_gpu"])
    assert cfg.env.id == "ALE/Breakout-v5" and cfg.model.kind == "nature_cnn" and cfg.buffer.kind == "prioritized"
    assert (cfg.train.lr, cfg.train.batch_size, cfg.train.max_grad_norm, cfg.train.target_update_steps) == (2.5e-4, 128, 1.0, 500)
    assert (cfg.train.n_step, cfg.train.init_random_steps, cfg.env.num_envs, cfg.buffer.capacity) == (1, 50_000, 1, 1_000_000)
    temperature = cfg.exploration  # the original schedule: x0.995 per game, three times slower, floor 0.05
    assert (temperature.temperature_final, temperature.decay_per_episode, temperature.decay_slowdown) == (0.05, 0.995, 3.0)
    egreedy = compose_config(["env=breakout_gpu", "exploration=egreedy"]).exploration
    assert (egreedy.eps_final, egreedy.annealing_steps) == (0.01, 200_000)


def test_doorkey_presets_carry_the_original_design():
    cfg = compose_config(["env=doorkey"])
    assert (cfg.env.size, cfg.env.max_skill_horizon, cfg.env.option_reward) == (8, 200, 1.0)
    assert (cfg.train.lr, cfg.train.gamma, cfg.buffer.capacity, cfg.train.init_random_steps) == (2.5e-4, 0.99, 50_000, 1_000)
    assert (cfg.train.batch_size, cfg.train.total_steps) == (32, 20_000)
    assert cfg.train.steps_per_collect * cfg.train.updates_per_step == 1  # one update every 4 decisions
    assert cfg.train.target_update_steps / cfg.train.updates_per_step == 1_000  # a target copy every 1,000 decisions
    assert (cfg.exploration.eps_init, cfg.exploration.eps_final, cfg.exploration.annealing_steps) == (1.0, 0.01, 10_000)
    assert compose_config(["env=doorkey", "exploration=temperature"]).exploration.kind == "temperature"
    assert compose_config(["env=doorkey_primitive"]).env.id == "rlpipe/DoorKeyPrimitive-v0"


def test_env_presets_carry_their_tuned_values():
    cartpole, lunar = compose_config(["env=cartpole"]), compose_config(["env=lunarlander"])
    assert cartpole.env.id == "CartPole-v1" and lunar.env.id == "LunarLander-v3"
    assert lunar.train.total_steps == 200_000 and cartpole.train.total_steps == 50_000
    assert not cartpole.train.compile and lunar.train.compile  # CartPole's short solve does not repay a compile
    assert compose_config(["env=lunarlander", "train.lr=1e-4"]).train.lr == pytest.approx(1e-4)  # CLI beats preset


@pytest.mark.parametrize(
    "overrides,expected",
    [
        (["train.lr=-1"], "train.lr=-1.0 is invalid: expected a number > 0"),
        (["train.lr=abc"], "train.lr: Value 'abc' of type 'str' could not be converted to Float"),
        (["train.batch_size=0"], "train.batch_size=0 is invalid: expected a number >= 1"),
        (["train.batch_size=2.5"], "train.batch_size: Value '2.5' of type 'float' could not be converted to Integer"),
        (["train.gamma=1.5"], "train.gamma=1.5 is invalid: expected a number in [0.0, 1.0]"),
        (["train.gamma=-0.1"], "train.gamma=-0.1 is invalid: expected a number in [0.0, 1.0]"),
        (["train.target_update=sometimes"], "train.target_update='sometimes' is invalid: expected one of hard, soft"),
        (["train.device=tpu"], "train.device='tpu' is invalid: expected auto, cpu, cuda, cuda:N or mps"),
        (["+train.learning_rate=1e-3"], "unknown key train.learning_rate: train accepts seed, device, total_steps"),
        (["+banana=1"], "unknown key banana: the top level accepts train, eval"),
        (["exploration.eps_final=1.5"], "exploration.eps_final=1.5 is invalid: expected a number in [0.0, 1.0]"),
        (["exploration.eps_init=0.1", "exploration.eps_final=0.5"], "exploration.eps_final=0.5 is invalid: expected at most exploration.eps_init=0.1"),
        (["exploration.annealing=cosine"], "exploration.annealing='cosine' is invalid: expected one of linear, exponential"),
        (["buffer.capacity=0"], "buffer.capacity=0 is invalid: expected a number >= 1"),
        (["buffer.beta_init=0.9", "buffer.beta_final=0.5"], "buffer.beta_final=0.5 is invalid: expected at least buffer.beta_init=0.9"),
        (["model.hidden_sizes=[]"], "model.hidden_sizes=[] is invalid: expected a non-empty list of sizes >= 1"),
        (["model.activation=swish"], "model.activation='swish' is invalid: expected one of relu, tanh, elu, leaky_relu"),
        (["eval.episodes=0"], "eval.episodes=0 is invalid: expected a number >= 1"),
        (["train.init_random_steps=60000"], "train.total_steps=50000 is too short for train.init_random_steps=60000"),
        (["train.total_steps=10", "train.init_random_steps=0", "train.batch_size=1000000"], "train.batch_size=1000000 is invalid: expected at most buffer.capacity"),
        (["resume=3"], "resume=3 is invalid: expected a path to a checkpoint, or null"),
        (["model=nature_cnn"], "model=nature_cnn does not fit env=cartpole (classic): expected model=nature_cnn for pixel"),
        (["env=breakout", "model=mlp"], "model=mlp does not fit env=breakout (atari)"),
        (["env=atari", "env.clip_reward_to_sign=true"], "env.living_penalty=-0.001 is invalid with env.clip_reward_to_sign=true"),
        (["env=breakout", "env.frame_stack=0"], "env.frame_stack=0 is invalid: expected a number >= 1"),
        (["env=breakout", "env.living_penalty=0.1"], "env.living_penalty=0.1 is invalid: expected a number <= 0 (0 switches it off)"),
        (["exploration=temperature", "exploration.temperature_init=0"], "exploration.temperature_init=0.0 is invalid: expected a number > 0"),
        (["exploration=temperature", "exploration.decay_per_episode=1.5"], "exploration.decay_per_episode=1.5 is invalid: expected a number in (0, 1]"),
        (["env=doorkey", "env.solved_success_rate=1.5"], "env.solved_success_rate=1.5 is invalid: expected null or a number in (0, 1]"),
        (["buffer.storage=disk"], "buffer.storage='disk' is invalid: expected one of memory, memmap"),
        (["train.n_step=256"], "train.n_step=256 is invalid with train.steps_per_collect=256 and env.num_envs=1: the replay completes"),
        (["eval.epsilon=2"], "eval.epsilon=2.0 is invalid: expected a number in [0.0, 1.0]"),
        (["train.precision=fp16"], "train.precision='fp16' is invalid: expected one of auto, fp32, bf16"),
        (["train.time_limit_minutes=0"], "train.time_limit_minutes=0.0 is invalid: expected null or a number > 0"),
        (["env=breakout", "env.backend=envpool"], "env.backend='envpool' is invalid: expected one of ale_vector, gym"),
        (["env=breakout", "env.max_episode_steps=0"], "env.max_episode_steps=0 is invalid: expected a number >= 1"),
        (["env=breakout", "env.backend=gym"], "env.maxpool=true is invalid with env.backend=gym"),
        (["env=breakout", "env.parallel=true"], "env.parallel=true is invalid with env.backend=ale_vector"),
        (["env=breakout", "env.id=ALE/Pong-v5"], "env.id=ALE/Pong-v5 does not name env.game=Breakout: set env.game"),
        (["protocol=sticky_actions"], "protocol=... is invalid with env=cartpole: the evaluation protocols"),
        (["eval.greedy_game=true"], "eval.greedy_game=true is invalid with env=cartpole: the greedy game from a fixed start"),
    ],
)
def test_bad_values_name_the_key_and_what_is_allowed(overrides, expected):
    with pytest.raises(ConfigError) as err:
        compose_config(overrides)
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_vectorized_training_env_needs_whole_collects():
    with pytest.raises(ConfigError, match="train.steps_per_collect=10 is invalid: expected a multiple of env.num_envs=4"):
        compose_config(["env.num_envs=4", "train.steps_per_collect=10"])
