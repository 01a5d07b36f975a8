"""DoorKey skills: preconditions and effects of each skill, the action mask, the progress-only option reward, the
primitive baseline, and building both through gymnasium and TorchRL."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from minigrid.core.actions import Actions
from minigrid.core.world_object import Door, Key

from rlpipe.envs.doorkey_skills import (
    ACTION_MASK_KEY,
    CELL_CHANNELS,
    EGOCENTRIC_CHANNELS,
    CLOSE_DOOR,
    DROP_KEY,
    GET_KEY,
    GO_TO_GOAL,
    OPEN_DOOR,
    PRIMITIVE_ACTIONS,
    PRIMITIVE_ENV_ID,
    SKILL_ENV_ID,
    SKILLS,
    DoorKeyPrimitiveEnv,
    DoorKeySkillEnv,
    _plan_skill,
    _register,
    agent_state_size,
    encode_observation,
    observation_size,
)
from rlpipe.keys import AGENT_STATE_KEY, OBSERVATION_KEY

SIZES_AND_SEEDS = [(8, 0), (8, 1), (8, 2), (5, 0), (5, 1), (5, 3)]
OPTION_REWARD = 1.0


def _mask(*skills: int) -> list[bool]:
    return [skill in skills for skill in range(len(SKILLS))]


def _door(env: DoorKeySkillEnv) -> Door:
    (door,) = [obj for obj in env.minigrid.grid.grid if isinstance(obj, Door)]
    return door


def _key_on_floor(env: DoorKeySkillEnv) -> bool:
    return any(isinstance(obj, Key) for obj in env.minigrid.grid.grid)


def _world(env: DoorKeySkillEnv) -> tuple:
    """Everything a skill may change (grid, agent pose, carried object); not MiniGrid's step counter."""
    minigrid = env.minigrid
    return (minigrid.grid.encode().tobytes(), tuple(int(c) for c in minigrid.agent_pos), minigrid.agent_dir,
            type(minigrid.carrying))


def _minigrid_goal_reward(env: DoorKeySkillEnv) -> float:
    return 1 - 0.9 * env.minigrid.step_count / env.minigrid.max_steps


def _step(env: DoorKeySkillEnv, skill: int) -> tuple[dict, float, bool, bool, dict]:
    obs, reward, terminated, truncated, info = env.step(skill)
    assert env.observation_space.contains(obs)
    assert set(info) == {"primitive_steps", "skill_success", "goal_reached"}
    return obs, reward, terminated, truncated, info


# --- reset, encoder, spaces -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "seed"), SIZES_AND_SEEDS)
def test_at_reset_only_get_key_is_valid(size: int, seed: int) -> None:
    # Key on the floor (GetKey), nothing carried (no OpenDoor, no DropKey), door locked (no CloseDoor, no path to
    # the goal).
    env = DoorKeySkillEnv(size)
    obs, info = env.reset(seed=seed)
    assert obs[ACTION_MASK_KEY].tolist() == _mask(GET_KEY)
    assert env.action_mask().tolist() == _mask(GET_KEY)
    assert info == {"primitive_steps": 0, "skill_success": False, "goal_reached": False}
    assert obs[OBSERVATION_KEY].shape == (observation_size(size),)
    assert env.observation_space.contains(obs)


def test_reset_with_a_seed_reproduces_the_layout() -> None:
    first, second = DoorKeySkillEnv(8), DoorKeySkillEnv(8)
    for seed in range(3):
        assert np.array_equal(first.reset(seed=seed)[0][OBSERVATION_KEY], second.reset(seed=seed)[0][OBSERVATION_KEY])
    assert not np.array_equal(first.reset(seed=0)[0][OBSERVATION_KEY], first.reset(seed=1)[0][OBSERVATION_KEY])


def test_encoder_one_hot_cells_direction_carrying_flag_and_progress() -> None:
    size = 8
    env = DoorKeySkillEnv(size)
    obs, _ = env.reset(seed=0)
    vector_D = obs[OBSERVATION_KEY]
    assert vector_D.dtype == np.float32 and vector_D.shape == (size * size * len(CELL_CHANNELS) + 4 + 1 + 4,)
    cells_SSC = vector_D[: size * size * len(CELL_CHANNELS)].reshape(size, size, len(CELL_CHANNELS))
    counts = dict(zip(CELL_CHANNELS, cells_SSC.sum(axis=(0, 1)).tolist()))
    # Outer walls (4 * (size - 1)) plus the splitting wall without its door cell (size - 3 interior cells).
    assert counts == {"wall": 4 * (size - 1) + size - 3, "key": 1, "door_locked": 1, "door_closed": 0,
                      "door_open": 0, "goal": 1, "agent": 1}
    agent_x, agent_y = env.minigrid.agent_pos
    assert cells_SSC[agent_y, agent_x, CELL_CHANNELS.index("agent")] == 1  # row-major [y, x, c]
    assert cells_SSC[size - 2, size - 2, CELL_CHANNELS.index("goal")] == 1
    direction_4, carrying_1, progress_4 = vector_D[-9:-5], vector_D[-5:-4], vector_D[-4:]
    assert direction_4.tolist() == np.eye(4)[env.minigrid.agent_dir].tolist()
    assert carrying_1.tolist() == [0.0] and progress_4.tolist() == [1.0, 0.0, 0.0, 0.0]

    obs, *_ = _step(env, GET_KEY)
    cells_SSC = obs[OBSERVATION_KEY][: size * size * len(CELL_CHANNELS)].reshape(size, size, len(CELL_CHANNELS))
    assert cells_SSC[..., CELL_CHANNELS.index("key")].sum() == 0
    assert obs[OBSERVATION_KEY][-5] == 1.0 and obs[OBSERVATION_KEY][-4:].tolist() == [0.0, 1.0, 0.0, 0.0]
    obs, *_ = _step(env, DROP_KEY)  # progress remembers the key was taken: this is not the start again
    assert obs[OBSERVATION_KEY][-5] == 0.0 and obs[OBSERVATION_KEY][-4:].tolist() == [0.0, 1.0, 0.0, 0.0]
    obs, *_ = _step(env, GET_KEY)
    obs, *_ = _step(env, OPEN_DOOR)
    assert obs[OBSERVATION_KEY][-4:].tolist() == [0.0, 0.0, 1.0, 0.0]
    cells_SSC = obs[OBSERVATION_KEY][: size * size * len(CELL_CHANNELS)].reshape(size, size, len(CELL_CHANNELS))
    assert cells_SSC[..., CELL_CHANNELS.index("door_open")].sum() == 1
    assert cells_SSC[..., CELL_CHANNELS.index("door_locked")].sum() == 0


def test_encoder_rejects_a_non_minigrid_env() -> None:
    with pytest.raises(TypeError, match="MiniGrid"):
        encode_observation(gym.make("CartPole-v1"))


def test_gymnasium_env_checker_passes() -> None:
    check_env(DoorKeySkillEnv(5), skip_render_check=True)
    check_env(DoorKeyPrimitiveEnv(5), skip_render_check=True)


# --- each skill's precondition and effect -----------------------------------------------------------------------


@pytest.mark.parametrize(("size", "seed"), SIZES_AND_SEEDS)
def test_skill_preconditions_and_effects(size: int, seed: int) -> None:
    env = DoorKeySkillEnv(size, option_reward=OPTION_REWARD)
    env.reset(seed=seed)

    obs, reward, terminated, truncated, info = _step(env, GET_KEY)
    assert isinstance(env.minigrid.carrying, Key) and not _key_on_floor(env)
    assert info["skill_success"] and info["primitive_steps"] > 0 and reward == OPTION_REWARD
    assert obs[ACTION_MASK_KEY].tolist() == _mask(OPEN_DOOR, DROP_KEY)
    assert not (terminated or truncated)

    obs, reward, _, _, info = _step(env, OPEN_DOOR)
    assert _door(env).is_open and info["skill_success"] and reward == OPTION_REWARD
    assert obs[ACTION_MASK_KEY].tolist() == _mask(CLOSE_DOOR, GO_TO_GOAL, DROP_KEY)

    obs, reward, _, _, info = _step(env, CLOSE_DOOR)
    door = _door(env)
    assert not door.is_open and not door.is_locked and info["skill_success"] and reward == 0.0
    assert tuple(env.minigrid.agent_pos) != tuple(door.cur_pos)  # never closed from the doorway
    assert obs[ACTION_MASK_KEY].tolist() == _mask(OPEN_DOOR, DROP_KEY)

    obs, reward, _, _, info = _step(env, DROP_KEY)
    assert env.minigrid.carrying is None and _key_on_floor(env) and info["skill_success"] and reward == 0.0
    assert info["primitive_steps"] >= 1
    assert obs[ACTION_MASK_KEY].tolist() == _mask(GET_KEY)  # door closed and no key: only GetKey

    for skill in (GET_KEY, OPEN_DOOR):
        _, reward, _, _, info = _step(env, skill)
        assert info["skill_success"] and reward == 0.0  # phases already reached earn nothing

    _, reward, terminated, truncated, info = _step(env, GO_TO_GOAL)
    minigrid = env.minigrid
    assert terminated and not truncated and info["skill_success"]
    assert minigrid.grid.get(*minigrid.agent_pos).type == "goal"
    assert reward == pytest.approx(OPTION_REWARD + _minigrid_goal_reward(env))
    assert reward > OPTION_REWARD


def test_drop_key_uses_the_cell_in_front_when_it_is_free() -> None:
    env = DoorKeySkillEnv(8)
    env.reset(seed=0)
    _step(env, GET_KEY)  # the agent faces the key's old cell, now empty
    _, _, _, _, info = _step(env, DROP_KEY)
    assert info["primitive_steps"] == 1 and info["skill_success"]


# --- option reward: progress only -------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [5, 8])
def test_cycling_skills_earns_no_option_reward(size: int) -> None:
    env = DoorKeySkillEnv(size, option_reward=OPTION_REWARD)
    env.reset(seed=4)
    assert _step(env, GET_KEY)[1] == OPTION_REWARD
    for _ in range(4):
        for skill in (DROP_KEY, GET_KEY):
            _, reward, _, _, info = _step(env, skill)
            assert info["skill_success"] and reward == 0.0
    assert _step(env, OPEN_DOOR)[1] == OPTION_REWARD
    for _ in range(4):
        for skill in (CLOSE_DOOR, OPEN_DOOR):
            _, reward, _, _, info = _step(env, skill)
            assert info["skill_success"] and reward == 0.0


@pytest.mark.parametrize("size", [5, 8])
def test_random_masked_policy_earns_at_most_three_option_rewards(size: int) -> None:
    option_reward = 0.5  # distinct from MiniGrid's goal reward so the two parts can be told apart
    env = DoorKeySkillEnv(size, option_reward=option_reward)
    rng = np.random.default_rng(size)
    decisions = 0
    for seed in range(30):
        obs, _ = env.reset(seed=seed)
        option_total = 0.0
        for _ in range(40):
            mask_K = obs[ACTION_MASK_KEY]
            skill = int(rng.choice(np.flatnonzero(mask_K)))
            obs, reward, terminated, truncated, info = _step(env, skill)
            decisions += 1
            assert info["skill_success"] or truncated  # a valid skill completes unless time runs out
            bonus = reward - (_minigrid_goal_reward(env) if terminated else 0.0)
            assert bonus == pytest.approx(0.0) or bonus == pytest.approx(option_reward)
            option_total += bonus
            if terminated or truncated:
                break
        assert option_total <= 3 * option_reward + 1e-9
    assert decisions >= 150


# --- the mask matches the preconditions -------------------------------------------------------------------------


def test_mask_matches_preconditions_and_invalid_skills_change_nothing() -> None:
    rng = np.random.default_rng(0)
    decisions = 0
    for size, seed in [(8, s) for s in range(10)] + [(5, s) for s in range(10)]:
        env = DoorKeySkillEnv(size)
        obs, _ = env.reset(seed=seed)
        for _ in range(15):
            mask_K = obs[ACTION_MASK_KEY]
            assert mask_K.any()
            for skill in np.flatnonzero(~mask_K):
                world, steps_before = _world(env), env.minigrid.step_count
                obs, reward, terminated, truncated, info = _step(env, int(skill))
                assert not info["skill_success"] and reward == 0.0 and not terminated
                assert info["primitive_steps"] == 1 and env.minigrid.step_count == steps_before + 1
                assert _world(env) == world and obs[ACTION_MASK_KEY].tolist() == mask_K.tolist()
            skill = int(rng.choice(np.flatnonzero(mask_K)))
            obs, _, terminated, truncated, info = _step(env, skill)
            decisions += 1
            assert info["skill_success"] or truncated, f"valid {SKILLS[skill]} failed (size {size}, seed {seed})"
            if terminated or truncated:
                break
    assert decisions >= 200


def test_dead_end_terminates_and_unmasks_every_skill() -> None:
    # Regression guard for the all-False mask, which would make masked argmax and softmax undefined. The dead end
    # (key behind the closed door) is built by hand: the skills never put the key on the goal's side.
    env = DoorKeySkillEnv(8)
    env.reset(seed=0)
    _step(env, GET_KEY)
    _step(env, OPEN_DOOR)
    minigrid, door = env.minigrid, _door(env)
    key, minigrid.carrying = minigrid.carrying, None
    key_cell = (int(door.cur_pos[0]) + 1, 1)
    assert minigrid.grid.get(*key_cell) is None
    minigrid.grid.set(*key_cell, key)
    assert env.action_mask().tolist() == _mask(GET_KEY, CLOSE_DOOR, GO_TO_GOAL)
    obs, reward, terminated, truncated, info = _step(env, CLOSE_DOOR)
    assert info["skill_success"] and terminated and not truncated and reward == 0.0
    assert obs[ACTION_MASK_KEY].all()


# --- scripted solution, horizon, truncation ---------------------------------------------------------------------


def test_get_key_open_door_go_to_goal_solves_8x8() -> None:
    env = DoorKeySkillEnv(8, option_reward=OPTION_REWARD)
    for seed in range(20):
        env.reset(seed=seed)
        steps, total_reward = [], 0.0
        for decision, skill in enumerate((GET_KEY, OPEN_DOOR, GO_TO_GOAL)):
            _, reward, terminated, truncated, info = _step(env, skill)
            steps.append(int(info["primitive_steps"]))
            total_reward += reward
            assert info["skill_success"] and not truncated
            assert terminated == (decision == 2)
        assert all(s > 0 for s in steps) and 10 <= sum(steps) < 100, steps
        assert total_reward == pytest.approx(3 * OPTION_REWARD + _minigrid_goal_reward(env))


def test_skill_stops_at_its_horizon_and_fails() -> None:
    env = DoorKeySkillEnv(8, max_skill_horizon=1)
    env.reset(seed=0)  # GetKey needs 4 primitive steps here
    _, reward, terminated, truncated, info = _step(env, GET_KEY)
    assert info == {"primitive_steps": 1, "skill_success": False, "goal_reached": False} and reward == 0.0
    assert not (terminated or truncated) and env.minigrid.carrying is None


def test_minigrid_time_limit_truncates_during_a_skill() -> None:
    env = DoorKeySkillEnv(8)
    env.reset(seed=0)
    env.minigrid.max_steps = 2  # GetKey needs 4 primitive steps on this layout
    _, reward, terminated, truncated, info = _step(env, GET_KEY)
    assert truncated and not terminated and reward == 0.0
    assert info == {"primitive_steps": 2, "skill_success": False, "goal_reached": False}


def test_a_policy_ignoring_the_mask_still_hits_the_time_limit() -> None:
    env = DoorKeySkillEnv(5)
    env.reset(seed=0)
    for decision in range(1, env.minigrid.max_steps + 1):
        _, _, terminated, truncated, _ = env.step(CLOSE_DOOR)  # invalid from the start: the door is locked
        assert not terminated and truncated == (decision == env.minigrid.max_steps)


# --- arguments --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("action", [-1, 5, 2.5, np.array([0, 1])])
def test_out_of_range_skill_raises(action: object) -> None:
    env = DoorKeySkillEnv(5)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="skill"):
        env.step(action)


def test_numpy_integer_actions_are_accepted() -> None:
    env = DoorKeySkillEnv(5)
    env.reset(seed=0)
    assert env.step(np.int64(GET_KEY))[4]["skill_success"]
    assert env.step(np.array(DROP_KEY))[4]["skill_success"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": 4}, "size"),
        ({"size": 6.0}, "size"),
        ({"max_skill_horizon": 0}, "max_skill_horizon"),
        ({"option_reward": math.nan}, "option_reward"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DoorKeySkillEnv(**kwargs)


def test_sizes_minigrid_does_not_register_still_build() -> None:
    env = DoorKeySkillEnv(7)
    obs, _ = env.reset(seed=0)
    assert env.minigrid.width == 7 and obs[OBSERVATION_KEY].shape == (observation_size(7),)
    assert obs[ACTION_MASK_KEY].tolist() == _mask(GET_KEY)


# --- the primitive baseline -------------------------------------------------------------------------------------


def test_primitive_env_spaces_steps_and_encoder_agree_with_the_skill_env() -> None:
    primitive, skills = DoorKeyPrimitiveEnv(8), DoorKeySkillEnv(8)
    assert primitive.action_space == gym.spaces.Discrete(6)
    assert set(primitive.observation_space.spaces) == {OBSERVATION_KEY, AGENT_STATE_KEY}
    assert primitive.observation_space[OBSERVATION_KEY].shape == (observation_size(8),)
    obs, info = primitive.reset(seed=3)
    _assert_agent_state_is_the_observations_agent_part(obs, 8)
    assert info == {"primitive_steps": 0, "skill_success": False, "goal_reached": False}
    assert np.array_equal(obs[OBSERVATION_KEY], skills.reset(seed=3)[0][OBSERVATION_KEY])  # same layout, same encoder
    for action in range(6):
        obs, reward, terminated, truncated, info = primitive.step(action)
        assert primitive.observation_space.contains(obs) and obs[OBSERVATION_KEY].shape == (observation_size(8),)
        assert info == {"primitive_steps": 1, "skill_success": False, "goal_reached": False} and reward == 0.0
        assert not (terminated or truncated)
        _assert_agent_state_is_the_observations_agent_part(obs, 8)
    with pytest.raises(ValueError, match="primitive action"):
        primitive.step(6)  # MiniGrid's "done" is not offered


def _assert_agent_state_is_the_observations_agent_part(obs: dict, size: int) -> None:
    """``agent_state`` = the observation's agent channel, direction, carrying flag and phase, without the layout."""
    observation, agent_state = obs[OBSERVATION_KEY], obs[AGENT_STATE_KEY]
    cells = observation[: size * size * len(CELL_CHANNELS)].reshape(size, size, len(CELL_CHANNELS))
    assert agent_state.shape == (agent_state_size(size),)
    assert np.array_equal(agent_state[: size * size], cells[..., CELL_CHANNELS.index("agent")].ravel())
    assert np.array_equal(agent_state[size * size:], observation[size * size * len(CELL_CHANNELS):])  # dir, key, phase


@pytest.mark.parametrize("size, seed", [(8, 0), (5, 1), (6, 2)])
def test_egocentric_view_is_the_full_grid_moved_to_the_agent_and_turned_with_it(size: int, seed: int) -> None:
    """Facing up (-y), the window is the full grid shifted so the agent is its centre; each right turn turns the
    window a quarter counterclockwise (what lay to the right now lies ahead); a step forward shifts it down a row.
    The values after the window are the full view's, and the agent state is the view's own."""
    full, egocentric = DoorKeyPrimitiveEnv(size), DoorKeyPrimitiveEnv(size, view="egocentric")
    full_obs, _ = full.reset(seed=seed)
    obs, _ = egocentric.reset(seed=seed)
    width = 2 * size - 1
    assert egocentric.observation_space[OBSERVATION_KEY].shape == (observation_size(size, "egocentric"),)
    assert observation_size(size, "egocentric") == width * width * len(EGOCENTRIC_CHANNELS) + 9
    right, forward = PRIMITIVE_ACTIONS.index(Actions.right), PRIMITIVE_ACTIONS.index(Actions.forward)

    def window(observation: np.ndarray) -> np.ndarray:
        return observation[: width * width * len(EGOCENTRIC_CHANNELS)].reshape(width, width, len(EGOCENTRIC_CHANNELS))

    while egocentric.minigrid.agent_dir != 3:  # turn until facing up
        obs = egocentric.step(right)[0]
        full_obs = full.step(right)[0]
    cells = full_obs[OBSERVATION_KEY][: size * size * len(CELL_CHANNELS)].reshape(size, size, len(CELL_CHANNELS))
    agent_y, agent_x = np.argwhere(cells[..., CELL_CHANNELS.index("agent")])[0]
    shifted = np.zeros((width, width, len(EGOCENTRIC_CHANNELS)), dtype=np.float32)
    shifted[size - 1 - agent_y: 2 * size - 1 - agent_y, size - 1 - agent_x: 2 * size - 1 - agent_x] = cells[..., :-1]
    assert np.array_equal(window(obs[OBSERVATION_KEY]), shifted)
    assert np.array_equal(obs[OBSERVATION_KEY][-9:], full_obs[OBSERVATION_KEY][-9:])  # direction, key, phase
    assert np.array_equal(obs[AGENT_STATE_KEY], full_obs[AGENT_STATE_KEY])
    for _ in range(4):
        turned = egocentric.step(right)[0]
        assert np.array_equal(window(turned[OBSERVATION_KEY]), np.rot90(window(obs[OBSERVATION_KEY]), 1))
        obs = turned
    assert not window(obs[OBSERVATION_KEY])[size - 2, size - 1].any()  # in these layouts the cell ahead is free
    moved = egocentric.step(forward)[0]
    assert np.array_equal(window(moved[OBSERVATION_KEY])[1:], window(obs[OBSERVATION_KEY])[:-1])


def test_skills_env_refuses_the_egocentric_view() -> None:
    from conftest import compose_config

    from rlpipe.config import ConfigError

    with pytest.raises(ConfigError, match="env.view=egocentric is invalid with env=doorkey"):
        compose_config(["env=doorkey", "env.view=egocentric"])
    with pytest.raises(ValueError, match="view must be one of full, egocentric"):
        DoorKeyPrimitiveEnv(5, view="rotated")


def test_primitive_env_reaches_the_goal_with_the_skill_plans() -> None:
    env = DoorKeyPrimitiveEnv(8)
    env.reset(seed=1)
    rewards, infos = [], []
    for skill in (GET_KEY, OPEN_DOOR, GO_TO_GOAL):
        for primitive in _plan_skill(env.minigrid, skill):
            _, reward, terminated, _, info = env.step(PRIMITIVE_ACTIONS.index(primitive))
            rewards.append(reward)
            infos.append(info)
    assert terminated and infos[-1]["skill_success"] and rewards[-1] > 0
    assert not any(info["skill_success"] for info in infos[:-1]) and sum(rewards[:-1]) == 0.0


# --- registration and TorchRL -----------------------------------------------------------------------------------


def test_registered_ids_build_with_keyword_arguments() -> None:
    _register()  # a second registration is a no-op, not a warning or an error
    skills = gym.make(SKILL_ENV_ID, size=5, option_reward=2.0)
    assert skills.unwrapped.option_reward == 2.0
    assert skills.reset(seed=0)[0][OBSERVATION_KEY].shape == (observation_size(5),)
    primitive = gym.make(PRIMITIVE_ENV_ID, size=6)
    assert primitive.reset(seed=0)[0][OBSERVATION_KEY].shape == (observation_size(6),)


def test_torchrl_gym_env_reads_the_mask_as_bool_and_the_info_as_numbers() -> None:
    import torch
    from torchrl.envs import GymEnv
    from torchrl.envs.libs.gym import default_info_dict_reader

    env = GymEnv(SKILL_ENV_ID, size=5, categorical_action_encoding=True)
    mask_spec = env.observation_spec[ACTION_MASK_KEY]
    assert mask_spec.dtype == torch.bool and mask_spec.shape == (5,)
    assert env.observation_spec[OBSERVATION_KEY].shape == (observation_size(5),)
    assert env.action_spec.n == len(SKILLS)
    env.set_info_dict_reader(default_info_dict_reader(["primitive_steps", "skill_success"]))
    env.set_seed(0)
    rollout = env.rollout(5)
    assert rollout[ACTION_MASK_KEY].dtype == torch.bool and rollout[ACTION_MASK_KEY].shape == (5, 5)
    assert rollout[0][ACTION_MASK_KEY].tolist() == _mask(GET_KEY)
    assert rollout["next", "primitive_steps"].shape == (5,)
    assert (rollout["next", "primitive_steps"] >= 1).all()
