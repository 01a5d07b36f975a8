"""MiniGrid DoorKey driven by five scripted skills (options), and the same task with primitive actions.

``DoorKeySkillEnv`` turns MiniGrid's DoorKey into a five-decision semi-MDP in the spirit of the options framework
(Sutton, Precup & Singh 1999, https://doi.org/10.1016/S0004-3702(99)00052-1): one agent step runs a whole skill
(GetKey, OpenDoor, CloseDoor, GoToGoal, DropKey), each a breadth-first-search planner that turns, moves and
interacts with MiniGrid's primitive actions until its effect holds, it fails, or ``max_skill_horizon`` primitive
steps are spent. ``DoorKeyPrimitiveEnv`` is the same task with the primitive actions, the baseline to compare with.

Observation (both environments, :func:`encode_observation`): the *full* grid, not MiniGrid's 7x7 egocentric view,
as per-cell one-hot channels, followed by the agent's direction, a carrying-key flag and the episode's progress::

    [ cells_SSC.ravel() (S*S*C, row-major [y, x, c]) | direction one-hot (4) | carrying key (1) | max phase one-hot (4) ]

with the ``C = 7`` channels of :data:`CELL_CHANNELS`: wall, key on the floor, door locked, door closed (unlocked),
door open, goal, agent. The skills change *where the task stands* (key carried, door open) more than where the
agent stands, so the network must see the task's phase: a fully observed input keeps the problem Markov for an MLP
Q-network, whereas in MiniGrid's egocentric 7x7 view the door, the key or the goal is often out of sight and one
view can belong to several phases. A second entry, ``agent_state`` (:func:`encode_agent_state`), holds the same
vector without the layout: the agent's cell one-hot, then the last nine values above (what RND's
``novelty_input=agent_state`` reads). The progress one-hot (the highest phase reached so far in the episode) makes
the skill reward Markov: GetKey earns the option reward the first time only, and without this memory a dropped
key looks like the start of the episode. Measured: without it, greedy agents trained with the default config
learned to cycle DropKey/GetKey (its Q-value generalised from the first, rewarded GetKey) and reached the goal in
0 of 100 evaluation episodes at every evaluation up to 20,000 decisions. With primitive actions,
``view="egocentric"`` (``env.view``) gives the same cells in the agent's frame instead
(:func:`encode_egocentric_observation`: a ``[2S-1, 2S-1]`` window centred on the agent, turned with it), still
fully observed.

Skill rewards (``DoorKeySkillEnv``): the sum of MiniGrid's own rewards over the skill's primitive steps (non-zero
only when the goal is reached: ``1 - 0.9 * step_count / max_steps``) plus ``option_reward`` for a skill that
completes *and* makes progress. Progress is measured by the task phase (0 start, 1 key carried, 2 door open,
3 on the goal); the bonus is paid only when a completed skill raises the maximum phase reached so far in the
episode. Dropping and re-taking the key or closing and re-opening the door therefore earns nothing after the first
time, and an episode earns at most ``3 * option_reward`` of bonus.

Shape legend: ``S`` grid size (cells per side), ``C`` cell channels (7), ``K`` skills (5), ``D`` observation size
(``S*S*C + 4 + 1``).

Importing this module registers ``"rlpipe/DoorKeySkills-v0"`` and ``"rlpipe/DoorKeyPrimitive-v0"`` with gymnasium,
so ``GymEnv("rlpipe/DoorKeySkills-v0", size=8)`` builds one (the keyword arguments reach the constructor).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

import gymnasium as gym
import minigrid  # noqa: F401  (registers the MiniGrid-* ids with gymnasium)
import numpy as np
from minigrid.core.actions import Actions
from minigrid.core.constants import DIR_TO_VEC
from minigrid.core.world_object import Door, Key
from minigrid.minigrid_env import MiniGridEnv

from rlpipe.keys import ACTION_MASK_KEY, AGENT_STATE_KEY, OBSERVATION_KEY

SKILL_ENV_ID: Final = "rlpipe/DoorKeySkills-v0"
PRIMITIVE_ENV_ID: Final = "rlpipe/DoorKeyPrimitive-v0"

SKILLS: Final = ("GetKey", "OpenDoor", "CloseDoor", "GoToGoal", "DropKey")
GET_KEY, OPEN_DOOR, CLOSE_DOOR, GO_TO_GOAL, DROP_KEY = range(len(SKILLS))

CELL_CHANNELS: Final = ("wall", "key", "door_locked", "door_closed", "door_open", "goal", "agent")
_WALL, _KEY, _DOOR_LOCKED, _DOOR_CLOSED, _DOOR_OPEN, _GOAL, _AGENT = range(len(CELL_CHANNELS))
NUM_DIRECTIONS: Final = 4
NUM_PHASES: Final = 4  # task phases of the progress rule: 0 start, 1 key carried, 2 door open, 3 on the goal

# MiniGrid's actions minus "done", which does nothing in DoorKey.
PRIMITIVE_ACTIONS: Final = (Actions.left, Actions.right, Actions.forward, Actions.pickup, Actions.drop, Actions.toggle)

MIN_SIZE: Final = 5  # the smallest DoorKey layout MiniGrid can generate (3x3 interior, split wall in column 2)

Cell = tuple[int, int]  # (x, y): MiniGrid's column-first grid coordinates
Observation = dict[str, np.ndarray]
Info = dict[str, Any]  # {"primitive_steps": np.int64, "skill_success": np.bool_, "goal_reached": np.bool_}
StepResult = tuple[Observation, float, bool, bool, Info]  # observation, reward, terminated, truncated, info
ActionLike = int | np.integer | np.ndarray  # one integer; a 0-d or one-element array is accepted


VIEWS: Final = ("full", "egocentric")  # the observation's frame: the grid as it lies, or as the agent faces it
EGOCENTRIC_CHANNELS: Final = CELL_CHANNELS[:-1]  # the egocentric window has no agent channel: the agent is its centre


def observation_size(size: int, view: str = "full") -> int:
    """Length ``D`` of the observation vector for a ``size`` x ``size`` grid: :func:`encode_observation`'s
    (``view="full"``) or :func:`encode_egocentric_observation`'s (``"egocentric"``)."""
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    _check_view(view)
    if view == "egocentric":
        return (2 * size - 1) ** 2 * len(EGOCENTRIC_CHANNELS) + NUM_DIRECTIONS + 1 + NUM_PHASES
    return size * size * len(CELL_CHANNELS) + NUM_DIRECTIONS + 1 + NUM_PHASES


def agent_state_size(size: int) -> int:
    """Length of :func:`encode_agent_state`'s vector for a ``size`` x ``size`` grid."""
    return size * size + NUM_DIRECTIONS + 1 + NUM_PHASES


def encode_agent_state(env: gym.Env, max_phase: int = 0) -> np.ndarray:
    """What the agent controls, without the layout: ``[S*S + 4 + 1 + 4]`` float32, the agent's cell one-hot
    (row-major ``[y, x]``), its direction one-hot, the carrying-key flag and the one-hot of ``max_phase``.

    The observation's cells also hold the layout (walls, door, key), which DoorKey draws anew every episode; RND
    with ``exploration.novelty_input=agent_state`` measures novelty on this vector instead (``rlpipe/rnd.py``).
    """
    minigrid_env = _as_minigrid(env)
    size = minigrid_env.grid.width
    cell_SS = np.zeros((size, size), dtype=np.float32)
    agent_x, agent_y = (int(c) for c in minigrid_env.agent_pos)
    cell_SS[agent_y, agent_x] = 1.0
    return np.concatenate([cell_SS.ravel(), _direction_key_phase(minigrid_env, max_phase)])


def _direction_key_phase(minigrid_env: MiniGridEnv, max_phase: int) -> np.ndarray:
    """``[4 + 1 + 4]`` float32: the direction one-hot, the carrying-key flag and the one-hot of ``max_phase``."""
    direction_4 = np.zeros(NUM_DIRECTIONS, dtype=np.float32)
    direction_4[minigrid_env.agent_dir] = 1.0
    carrying_1 = np.array([float(isinstance(minigrid_env.carrying, Key))], dtype=np.float32)
    progress_4 = np.zeros(NUM_PHASES, dtype=np.float32)
    progress_4[max_phase] = 1.0
    return np.concatenate([direction_4, carrying_1, progress_4])


def encode_observation(env: gym.Env, max_phase: int = 0) -> np.ndarray:
    """Encodes the full MiniGrid state as a float32 vector ``[D]`` (layout in the module docstring).

    Args:
        env: a MiniGrid environment, wrapped or not (its ``.unwrapped`` is read). The grid must be square.
        max_phase: the highest task phase reached so far in the episode (0-3, the progress rule's memory).

    Returns:
        ``[S*S*C + 4 + 1 + 4]`` float32 of zeros and ones: the one-hot cells ``[S, S, C]`` in row-major
        ``[y, x, c]`` order, the direction one-hot ``[4]`` (MiniGrid's 0 = +x, 1 = +y, 2 = -x, 3 = -y), the
        carrying-key flag, and the one-hot of ``max_phase`` ``[4]``.
    """
    minigrid_env = _as_minigrid(env)
    cells_SSC = _cells(minigrid_env)
    agent_x, agent_y = (int(c) for c in minigrid_env.agent_pos)
    cells_SSC[agent_y, agent_x, _AGENT] = 1.0
    return np.concatenate([cells_SSC.ravel(), _direction_key_phase(minigrid_env, max_phase)])


def encode_egocentric_observation(env: gym.Env, max_phase: int = 0) -> np.ndarray:
    """The full grid as the agent faces it: a ``[2S-1, 2S-1]`` window centred on the agent's cell and turned so
    that the agent looks up (row 0 lies ahead, column 0 to its left), then the direction, key and phase values of
    :func:`encode_observation`.

    Every cell of the grid is in the window, so the observation is as Markov as the full one; what changes is the
    frame. Navigation ("the key is two cells ahead, one to the right") then looks the same wherever the agent
    stands and whichever way it faces, which MiniGrid's own 7x7 agent view exploits too (Chevalier-Boisvert et al.
    2023), whereas in the full grid an MLP must learn it anew for every cell and direction.

    Returns:
        ``[(2S-1)**2 * 6 + 4 + 1 + 4]`` float32 of zeros and ones: the window ``[2S-1, 2S-1, 6]`` row-major with the
        :data:`EGOCENTRIC_CHANNELS` (window cells beyond the grid are all zero), then as :func:`encode_observation`.
    """
    minigrid_env = _as_minigrid(env)
    cells_SSC = _cells(minigrid_env)[..., : len(EGOCENTRIC_CHANNELS)]
    size = cells_SSC.shape[0]
    agent_x, agent_y = (int(c) for c in minigrid_env.agent_pos)
    forward_x, forward_y = (int(c) for c in DIR_TO_VEC[minigrid_env.agent_dir])
    right_x, right_y = -forward_y, forward_x  # y grows downwards: facing +x, the right hand points to +y
    y_SS, x_SS = np.mgrid[0:size, 0:size]
    dx_SS, dy_SS = x_SS - agent_x, y_SS - agent_y
    ahead_SS, right_SS = dx_SS * forward_x + dy_SS * forward_y, dx_SS * right_x + dy_SS * right_y
    window_WWC = np.zeros((2 * size - 1, 2 * size - 1, len(EGOCENTRIC_CHANNELS)), dtype=np.float32)
    window_WWC[size - 1 - ahead_SS, size - 1 + right_SS] = cells_SSC
    return np.concatenate([window_WWC.ravel(), _direction_key_phase(minigrid_env, max_phase)])


def _cells(minigrid_env: MiniGridEnv) -> np.ndarray:
    """``[S, S, C]`` float32: the one-hot :data:`CELL_CHANNELS` of the grid's objects, row-major ``[y, x]``, with
    the agent channel still empty."""
    grid = minigrid_env.grid
    if grid.width != grid.height:
        raise ValueError(f"DoorKey observations need a square grid, got {grid.width}x{grid.height}")
    size = grid.width
    cells_SSC = np.zeros((size, size, len(CELL_CHANNELS)), dtype=np.float32)
    for index, obj in enumerate(grid.grid):  # Grid stores cells row-major: index = y * width + x
        if obj is None:
            continue
        y, x = divmod(index, size)
        channel = _cell_channel(obj)
        if channel is not None:
            cells_SSC[y, x, channel] = 1.0
    return cells_SSC


class _DoorKeyEnv(gym.Env):
    """What both DoorKey environments share: the MiniGrid env underneath, reset, render and close."""

    _minigrid: MiniGridEnv
    _max_phase: int

    @property
    def minigrid(self) -> MiniGridEnv:
        """The underlying (unwrapped) MiniGrid environment; read it, do not step it."""
        return self._minigrid

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Observation, Info]:
        """Generates a new layout (reproducible for a given ``seed``) and returns ``(observation, info)``."""
        super().reset(seed=seed)
        self._minigrid.reset(seed=seed, options=options)
        self._max_phase = _phase(self._minigrid)
        return self._observation(), _info(0, False, False)

    def render(self) -> Any:
        return self._minigrid.render()

    def close(self) -> None:
        self._minigrid.close()

    def _observation(self) -> Observation:
        raise NotImplementedError


class DoorKeySkillEnv(_DoorKeyEnv):
    """MiniGrid DoorKey with five scripted skills as actions, and an action mask of their preconditions.

    Options framework: Sutton, Precup & Singh 1999, https://doi.org/10.1016/S0004-3702(99)00052-1. MiniGrid:
    Chevalier-Boisvert et al. 2023, https://arxiv.org/abs/2306.13831.

    Actions (``Discrete(5)``, :data:`SKILLS` order); "reachable" means by a breadth-first path over cells the
    agent can enter (empty, open door; the goal only for GoToGoal, since stepping on it ends the episode):

    - ``GetKey``: key on the floor and a reachable cell next to it. Effect: key carried.
    - ``OpenDoor``: key carried, door closed or locked, a reachable cell next to it. Effect: door open.
    - ``CloseDoor``: door open and a reachable cell next to it (never the doorway itself, from which the agent
      could not face the door). Effect: door closed, unlocked.
    - ``GoToGoal``: a path to the goal. Effect: agent on the goal; MiniGrid terminates and pays its reward.
    - ``DropKey``: key carried and a reachable cell with an empty neighbour: dropped where the agent stands if it
      can (in front first, else after the fewest turns), else from the nearest such cell. Effect: key on the floor.

    Observation: ``{"observation": Box(float32, [D]), "agent_state": Box(float32, [S*S + 9]), "action_mask": Box(bool, [5])}``
    (``agent_state``: :func:`encode_agent_state`). If no skill is valid (a
    dead end: the agent in front of a closed door with the key on the far side; the skills do not lead there
    from DoorKey's layouts, where the key starts on the agent's side and only GoToGoal crosses the door), the episode terminates (nothing more can be
    earned, so its value is 0) and the mask is all True so that masked argmax and sampling stay defined.

    A masked (invalid) skill does not crash: the world (grid, agent pose, carried object) stays unchanged and the
    decision reports ``skill_success=False``, reward 0 and one primitive step, MiniGrid's no-op ``done``. Charging
    that tick keeps MiniGrid's time limit binding, so even a policy that ignores the mask ends its episodes.

    Reward: MiniGrid's rewards over the skill's primitive steps plus ``option_reward`` when a completed skill
    raises the highest task phase of the episode (module docstring). ``terminated`` when MiniGrid terminates
    (goal reached), ``truncated`` when MiniGrid's own ``max_steps`` (primitive steps, ``10 * size**2``) run out
    during a skill. ``info``: ``primitive_steps`` (int, primitive actions of this decision) and
    ``skill_success`` (bool), as NumPy scalars so that TorchRL's ``default_info_dict_reader`` reads them into
    tensors.

    Args:
        size: cells per side of the grid, walls included (>= 5).
        max_skill_horizon: primitive steps one skill may take before it is stopped as failed (>= 1).
        option_reward: bonus paid for a completed skill that raises the episode's task phase.
        decision_penalty: added to the reward of every decision (<= 0; 0 switches it off). With gamma 0.99 a
            DropKey/GetKey cycle is worth only ~2% less than progress, too small a margin for a Q-network to keep;
            a cost per decision widens it.
        render_mode: passed to MiniGrid (``"rgb_array"`` for videos).
    """

    metadata = {"render_modes": ["human", "rgb_array"], "render_fps": 10}

    def __init__(
        self,
        size: int = 8,
        *,
        max_skill_horizon: int = 200,
        option_reward: float = 1.0,
        decision_penalty: float = 0.0,
        render_mode: str | None = None,
    ) -> None:
        _check_size(size)
        if max_skill_horizon < 1:
            raise ValueError(f"max_skill_horizon must be >= 1 primitive step, got {max_skill_horizon}")
        if not math.isfinite(option_reward):
            raise ValueError(f"option_reward must be a finite number, got {option_reward}")
        self._minigrid = _make_doorkey(size, render_mode)
        self.size = size
        self.max_skill_horizon = max_skill_horizon
        self.option_reward = float(option_reward)
        if not (math.isfinite(decision_penalty) and decision_penalty <= 0):
            raise ValueError(f"decision_penalty must be a finite number <= 0, got {decision_penalty}")
        self.decision_penalty = float(decision_penalty)
        self.render_mode = render_mode
        self.action_space = gym.spaces.Discrete(len(SKILLS))
        self.observation_space = gym.spaces.Dict(
            {
                OBSERVATION_KEY: _observation_box(size, "full"),
                AGENT_STATE_KEY: _agent_state_box(size),
                ACTION_MASK_KEY: gym.spaces.Box(low=0, high=1, shape=(len(SKILLS),), dtype=np.bool_),
            }
        )
        self._max_phase = 0  # highest task phase reached in this episode (progress rule)

    def step(self, action: ActionLike) -> StepResult:
        """Runs one skill to completion, failure or ``max_skill_horizon``; see the class docstring."""
        skill = _check_action(action, len(SKILLS), "skill")
        plan = _plan_skill(self._minigrid, skill)
        if plan is None:
            _, reward, terminated, truncated, _ = self._minigrid.step(Actions.done)
            return self._observation(), float(reward), bool(terminated), bool(truncated), _info(1, False, False)

        env_reward, primitive_steps = 0.0, 0
        terminated = truncated = False
        for primitive in plan[: self.max_skill_horizon]:
            _, reward, terminated, truncated, _ = self._minigrid.step(primitive)
            env_reward += float(reward)
            primitive_steps += 1
            if terminated or truncated:
                break

        success = _effect_holds(self._minigrid, skill)
        phase = _phase(self._minigrid)
        option_bonus = self.option_reward if success and phase > self._max_phase else 0.0
        self._max_phase = max(self._max_phase, phase)
        if not terminated and not self._valid_skills().any():
            terminated = True  # dead end: no skill can change the state again, so the value is 0
        info = _info(primitive_steps, success, bool(terminated) and _on_goal(self._minigrid))
        return self._observation(), env_reward + option_bonus + self.decision_penalty, bool(terminated), bool(truncated), info

    def action_mask(self) -> np.ndarray:
        """``[K]`` bool, True where the skill's preconditions hold (all True at a dead end; class docstring)."""
        valid_K = self._valid_skills()
        return valid_K if valid_K.any() else np.ones_like(valid_K)

    def _valid_skills(self) -> np.ndarray:
        return np.array([_plan_skill(self._minigrid, skill) is not None for skill in range(len(SKILLS))], dtype=bool)

    def _observation(self) -> Observation:
        return {OBSERVATION_KEY: encode_observation(self._minigrid, self._max_phase),
                AGENT_STATE_KEY: encode_agent_state(self._minigrid, self._max_phase), ACTION_MASK_KEY: self.action_mask()}


class DoorKeyPrimitiveEnv(_DoorKeyEnv):
    """MiniGrid DoorKey with primitive actions and the skill env's observation: the baseline for
    :class:`DoorKeySkillEnv`.

    MiniGrid: Chevalier-Boisvert et al. 2023, https://arxiv.org/abs/2306.13831.

    Actions (``Discrete(6)``): left, right, forward, pickup, drop, toggle (MiniGrid's "done" is left out: it does
    nothing here). Observation: ``{"observation": Box(float32, [D]), "agent_state": Box(float32, [S*S + 9])}`` from
    :func:`encode_observation` (or :func:`encode_egocentric_observation`) and :func:`encode_agent_state`. Reward,
    ``terminated`` and ``truncated`` are MiniGrid's own. ``info`` mirrors the skill env so logs line up:
    ``primitive_steps`` is 1 and ``skill_success`` is True when the step reached the goal.

    Args:
        size: cells per side of the grid, walls included (>= 5).
        view: ``"full"`` (:func:`encode_observation`) or ``"egocentric"`` (:func:`encode_egocentric_observation`):
            the same cells in the agent's frame.
        render_mode: passed to MiniGrid (``"rgb_array"`` for videos).
    """

    metadata = {"render_modes": ["human", "rgb_array"], "render_fps": 10}

    def __init__(self, size: int = 8, *, view: str = "full", render_mode: str | None = None) -> None:
        _check_view(view)
        self._minigrid = _make_doorkey(size, render_mode)
        self._max_phase = 0  # highest task phase reached in this episode (part of the observation)
        self.size, self.view = size, view
        self.render_mode = render_mode
        self.action_space = gym.spaces.Discrete(len(PRIMITIVE_ACTIONS))
        self.observation_space = gym.spaces.Dict({OBSERVATION_KEY: _observation_box(size, view),
                                                  AGENT_STATE_KEY: _agent_state_box(size)})

    def step(self, action: ActionLike) -> StepResult:
        """One MiniGrid primitive action."""
        index = _check_action(action, len(PRIMITIVE_ACTIONS), "primitive action")
        _, reward, terminated, truncated, _ = self._minigrid.step(PRIMITIVE_ACTIONS[index])
        self._max_phase = max(self._max_phase, _phase(self._minigrid))
        obs = self._observation()
        goal_reached = bool(terminated) and _on_goal(self._minigrid)
        info = _info(1, goal_reached, goal_reached)
        return obs, float(reward), bool(terminated), bool(truncated), info

    def _observation(self) -> Observation:
        encode = encode_egocentric_observation if self.view == "egocentric" else encode_observation
        return {OBSERVATION_KEY: encode(self._minigrid, self._max_phase),
                AGENT_STATE_KEY: encode_agent_state(self._minigrid, self._max_phase)}


# ---------------------------------------------------------------------------------------------------------------
# World queries and skill planning on the unwrapped MiniGrid env.


@dataclass(frozen=True)
class _Layout:
    """Where DoorKey's objects are now; ``key`` is None while the key is carried."""

    key: Cell | None
    door: Cell
    door_obj: Door
    goal: Cell


def _locate(env: MiniGridEnv) -> _Layout:
    key = door = goal = None
    door_obj = None
    width = env.grid.width
    for index, obj in enumerate(env.grid.grid):
        if obj is None:
            continue
        y, x = divmod(index, width)
        if obj.type == "key":
            key = (x, y)
        elif obj.type == "door":
            door, door_obj = (x, y), obj
        elif obj.type == "goal":
            goal = (x, y)
    if door is None or door_obj is None or goal is None:
        raise RuntimeError("not a DoorKey layout: the grid has no door or no goal")
    return _Layout(key=key, door=door, door_obj=door_obj, goal=goal)


def _agent_cell(env: MiniGridEnv) -> Cell:
    x, y = env.agent_pos
    return int(x), int(y)


def _on_goal(env: MiniGridEnv) -> bool:
    obj = env.grid.get(*_agent_cell(env))
    return obj is not None and obj.type == "goal"


def _carrying_key(env: MiniGridEnv) -> bool:
    return isinstance(env.carrying, Key)


def _phase(env: MiniGridEnv) -> int:
    """Task phase for the progress rule: 0 start, 1 key carried, 2 door open, 3 on the goal."""
    if _on_goal(env):
        return 3
    if _locate(env).door_obj.is_open:
        return 2
    return 1 if _carrying_key(env) else 0


def _effect_holds(env: MiniGridEnv, skill: int) -> bool:
    if skill == GET_KEY:
        return _carrying_key(env)
    if skill == OPEN_DOOR:
        return _locate(env).door_obj.is_open
    if skill == CLOSE_DOOR:
        return not _locate(env).door_obj.is_open
    if skill == GO_TO_GOAL:
        return _on_goal(env)
    return env.carrying is None and _locate(env).key is not None  # DROP_KEY


def _plan_skill(env: MiniGridEnv, skill: int) -> list[Actions] | None:
    """The primitive actions that carry out ``skill`` from the current state, or None if its preconditions fail."""
    layout = _locate(env)
    if skill == GET_KEY:
        if layout.key is None or env.carrying is not None:
            return None
        return _plan_interaction(env, {layout.key}, Actions.pickup)
    if skill == OPEN_DOOR:
        if not _carrying_key(env) or layout.door_obj.is_open:
            return None
        return _plan_interaction(env, {layout.door}, Actions.toggle)
    if skill == CLOSE_DOOR:
        if not layout.door_obj.is_open:
            return None
        return _plan_interaction(env, {layout.door}, Actions.toggle)
    if skill == GO_TO_GOAL:
        path = _shortest_path(env, lambda cell: cell == layout.goal, enter_goal=True)
        return None if path is None or len(path) < 2 else _walk(path, env.agent_dir)[0]  # < 2: already there
    if not _carrying_key(env):  # DROP_KEY
        return None
    grid = env.grid
    empty = {cell for cell in _interior(env) if grid.get(*cell) is None}
    return _plan_interaction(env, empty, Actions.drop)


def _plan_interaction(env: MiniGridEnv, targets: set[Cell], interaction: Actions) -> list[Actions] | None:
    """Walk to the nearest cell next to a target, face the target needing the fewest turns, then interact."""
    path = _shortest_path(env, lambda cell: any(n in targets for n in _neighbours(cell)), enter_goal=False)
    if path is None:
        return None
    actions, direction = _walk(path, env.agent_dir)
    stand = path[-1]
    turns = min(
        (_turns(direction, _direction(stand, cell)) for cell in _neighbours(stand) if cell in targets),
        key=len,
    )
    return [*actions, *turns, interaction]


def _shortest_path(env: MiniGridEnv, is_destination: Callable[[Cell], bool], *, enter_goal: bool) -> list[Cell] | None:
    """Breadth-first search from the agent over enterable cells; the path ``[agent, ..., destination]`` or None.

    Enterable: empty or an open door, and the goal when ``enter_goal`` (stepping on it ends the episode, so the
    other skills route around it).
    """
    start = _agent_cell(env)
    parents: dict[Cell, Cell | None] = {start: None}
    frontier = deque([start])
    while frontier:
        cell = frontier.popleft()
        if is_destination(cell):
            path = [cell]
            while (parent := parents[path[-1]]) is not None:
                path.append(parent)
            return path[::-1]
        for neighbour in _neighbours(cell):
            if neighbour not in parents and _enterable(env, neighbour, enter_goal=enter_goal):
                parents[neighbour] = cell
                frontier.append(neighbour)
    return None


def _enterable(env: MiniGridEnv, cell: Cell, *, enter_goal: bool) -> bool:
    obj = env.grid.get(*cell)
    if obj is None:
        return True
    if obj.type == "door":
        return obj.is_open
    return enter_goal and obj.type == "goal"


def _walk(path: list[Cell], direction: int) -> tuple[list[Actions], int]:
    """Turns and forward moves along ``path`` starting in ``direction``; returns them and the final direction."""
    actions: list[Actions] = []
    for here, there in zip(path, path[1:]):
        heading = _direction(here, there)
        actions += [*_turns(direction, heading), Actions.forward]
        direction = heading
    return actions, direction


def _turns(direction: int, heading: int) -> list[Actions]:
    """Fewest turns from ``direction`` to ``heading`` (MiniGrid: right turns clockwise, +1 mod 4)."""
    return {0: [], 1: [Actions.right], 2: [Actions.right, Actions.right], 3: [Actions.left]}[(heading - direction) % 4]


def _direction(here: Cell, there: Cell) -> int:
    delta = (there[0] - here[0], there[1] - here[1])
    return next(d for d, vec in enumerate(DIR_TO_VEC) if tuple(int(v) for v in vec) == delta)


def _neighbours(cell: Cell) -> Iterator[Cell]:
    x, y = cell
    return iter(((x + 1, y), (x, y + 1), (x - 1, y), (x, y - 1)))  # outer walls keep every interior neighbour in bounds


def _interior(env: MiniGridEnv) -> Iterator[Cell]:
    return ((x, y) for y in range(1, env.grid.height - 1) for x in range(1, env.grid.width - 1))


# ---------------------------------------------------------------------------------------------------------------
# Construction helpers.


def _check_size(size: int) -> None:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise ValueError(f"size must be an integer number of cells, got {size!r}")
    if size < MIN_SIZE:
        raise ValueError(f"size must be >= {MIN_SIZE} cells (walls included), got {size}")


def _make_doorkey(size: int, render_mode: str | None) -> MiniGridEnv:
    _check_size(size)
    env_id = f"MiniGrid-DoorKey-{size}x{size}-v0"
    if env_id in gym.registry:
        return gym.make(env_id, render_mode=render_mode).unwrapped
    # MiniGrid registers only sizes 5, 6, 8 and 16; its DoorKeyEnv entry point takes any size.
    return gym.make("MiniGrid-DoorKey-8x8-v0", size=int(size), render_mode=render_mode).unwrapped


def _observation_box(size: int, view: str) -> gym.spaces.Box:
    return gym.spaces.Box(low=0.0, high=1.0, shape=(observation_size(size, view),), dtype=np.float32)


def _check_view(view: str) -> None:
    if view not in VIEWS:
        raise ValueError(f"view must be one of {', '.join(VIEWS)}, got {view!r}")


def _agent_state_box(size: int) -> gym.spaces.Box:
    return gym.spaces.Box(low=0.0, high=1.0, shape=(agent_state_size(size),), dtype=np.float32)


def _as_minigrid(env: gym.Env) -> MiniGridEnv:
    minigrid_env = env.unwrapped
    if not isinstance(minigrid_env, MiniGridEnv):
        raise TypeError(f"expected a MiniGrid environment, got {type(minigrid_env).__name__}")
    return minigrid_env


def _cell_channel(obj: Any) -> int | None:
    if obj.type == "wall":
        return _WALL
    if obj.type == "key":
        return _KEY
    if obj.type == "door":
        return _DOOR_OPEN if obj.is_open else _DOOR_LOCKED if obj.is_locked else _DOOR_CLOSED
    if obj.type == "goal":
        return _GOAL
    return None


def _check_action(action: ActionLike, num_actions: int, what: str) -> int:
    array = np.asarray(action)
    if array.size != 1 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{what} must be one integer in [0, {num_actions}), got {action!r}")
    index = int(array.reshape(()))
    if not 0 <= index < num_actions:
        raise ValueError(f"{what} must be in [0, {num_actions}), got {index}")
    return index


def _info(primitive_steps: int, skill_success: bool, goal_reached: bool) -> Info:
    # NumPy scalars: TorchRL's default_info_dict_reader reads ``value.dtype``, which Python ints and bools lack.
    return {
        "primitive_steps": np.int64(primitive_steps),
        "skill_success": np.bool_(skill_success),
        "goal_reached": np.bool_(goal_reached),  # the episode ended on the goal: the task's success
    }


def _register() -> None:
    for env_id, entry_point in (
        (SKILL_ENV_ID, f"{__name__}:DoorKeySkillEnv"),
        (PRIMITIVE_ENV_ID, f"{__name__}:DoorKeyPrimitiveEnv"),
    ):
        if env_id not in gym.registry:  # re-importing (reloads, subprocesses sharing a registry) must not warn
            gym.register(id=env_id, entry_point=entry_point)


_register()
