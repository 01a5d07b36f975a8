"""Atari games (ALE) as TorchRL environments with the DQN preprocessing: any ALE game, two backends.

``env.game`` names the game (``Breakout``, ``Pong``, ``SpaceInvaders``, ``Qbert``, ``Seaquest``, ...; ``python -m
rlpipe.envs.atari`` lists all of them) and ``env.backend`` how it is played:

- ``ale_vector`` (the presets' choice): ale-py's C++ vector env, :class:`~rlpipe.envs.ale_vector.AleVectorEnv`.
  Frame skip 4 with the max of the last two emulator frames (``env.maxpool``, Mnih et al. 2015), ALE's grayscale
  (or, with ``env.grayscale=false``, the RGB screen), an ``INTER_AREA`` resize to ``env.screen_size`` (``84x84``; the
  native ``[210, 160]`` is not resized), FIRE then up to ``env.noop_max - 1`` NOOP emulator frames at reset,
  sticky actions with ``env.repeat_action_probability`` (Machado et al. 2018, https://arxiv.org/abs/1709.06009),
  an ``env.frame_stack``-frame stack, all in C++ threads.
- ``gym`` (checkpoints written before ``env.backend`` existed; ``env.parallel``): ``GymEnv("ALE/<Game>-v5",
  frame_skip=4)`` and TorchRL transforms, in transform order: :class:`NoopFireReset` (up to ``env.noop_max`` NOOP
  *agent steps* after reset, then FIRE, and FIRE again after every lost life within the agent step), ``ToTensorImage``,
  :class:`AntialiasedResize` of the RGB screen, ``GrayScale`` (ITU-R 601 weights), ``CatFrames``,
  ``EndOfLifeTransform``, ``StepCounter``, ``RewardSum`` into ``"episode_score"``, :class:`RewardShaping` and
  ``RewardSum`` into ``"episode_reward"``. No max-pooling.

Both write the same keys (``rlpipe.keys``): ``"observation"`` ``[frame_stack, 84, 84]`` uint8 (``[frame_stack, H, W,
3]`` in colour; stacks start with copies of the reset frame), ``("next", "end-of-life")`` (a lost life, or the game's end: episodic life for the
learner while the game goes on), ``"lives"``, ``"step_count"`` (truncated at ``env.max_episode_steps`` agent steps,
never terminated), ``"episode_score"`` (the game score: unshaped, unclipped), the shaped training ``"reward"`` and
``"episode_reward"``. The deliberate differences between the backends (docs/guide/atari.md):
the resize and grayscale formulas, max-pooling, NOOPs counted in emulator frames instead of agent steps with FIRE
before them, and no automatic FIRE after a lost life (the agent presses FIRE itself, as in ale-py, EnvPool and
Dopamine).

Several ``gym`` environments run side by side as a TorchRL ``SerialEnv`` (one process) or, with
``env.parallel=true``, a ``ParallelEnv`` (one process each); ``ale_vector`` steps its games in ale-py's threads.
"""

from __future__ import annotations

import difflib
import functools

import ale_py
import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from tensordict import TensorDictBase
from torchrl.data import TensorSpec
from torchrl.envs import (
    CatFrames,
    Compose,
    EndOfLifeTransform,
    EnvBase,
    EnvCreator,
    ExcludeTransform,
    GymEnv,
    GrayScale,
    ObservationTransform,
    ParallelEnv,
    RewardSum,
    SerialEnv,
    StepCounter,
    ToTensorImage,
    Transform,
    TransformedEnv,
)
from torchrl.envs.utils import step_mdp

from rlpipe.config import ConfigError
from rlpipe.envs.ale_vector import SCREEN_SHAPE, AleVectorEnv
from rlpipe.keys import END_OF_LIFE_KEY, EPISODE_SCORE_KEY, OBSERVATION_KEY

gym.register_envs(ale_py)
ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)  # no banner on stderr for every game made: errors only

NOOP, FIRE = 0, 1


class NoopFireReset(Transform):
    """The Atari start-of-play protocol: random NOOPs after reset, then FIRE; FIRE again after a lost life.

    Hand-written because TorchRL's ``NoopResetEnv`` takes *random* actions rather than NOOPs, and TorchRL has no
    FIRE transform. Like ``NoopResetEnv`` it steps its parent env from inside the transform, so it must come first
    in the chain and works on one (unbatched) environment.

    Args:
        noop_max: the number of NOOPs after a reset is drawn uniformly from ``[0, noop_max]``.
        fire: press FIRE after reset and after every lost life (games whose action 1 is FIRE).
    """

    def __init__(self, *, noop_max: int, fire: bool) -> None:
        super().__init__()
        self.noop_max = noop_max
        self.fire = fire
        self._lives = 0

    def _lives_left(self) -> int:
        return lives(self.parent)

    def _act(self, tensordict: TensorDictBase, action: int) -> TensorDictBase:
        tensordict = tensordict.clone(False).set("action", torch.tensor(action))
        return self.parent.step(tensordict)

    def _reset(self, tensordict: TensorDictBase, tensordict_reset: TensorDictBase) -> TensorDictBase:
        actions = [NOOP] * int(torch.randint(self.noop_max + 1, ()).item()) + ([FIRE] if self.fire else [])
        for action in actions:
            stepped = self._act(tensordict_reset, action)
            if stepped.get(("next", "done")).any():  # the game ended during the start-up: start over, no NOOPs
                tensordict_reset = self.parent.reset()
                if self.fire:
                    tensordict_reset = self._after(self._act(tensordict_reset, FIRE))
                break
            tensordict_reset = self._after(stepped)
        self._lives = self._lives_left()
        return tensordict_reset

    def _step(self, tensordict: TensorDictBase, next_tensordict: TensorDictBase) -> TensorDictBase:
        lives = self._lives_left()
        if self.fire and lives < self._lives and not next_tensordict.get("done").any():
            fired = self._act(self._after(tensordict.clone(False).set("next", next_tensordict)), FIRE).get("next")
            fired.set("reward", next_tensordict.get("reward") + fired.get("reward"))
            next_tensordict = fired
        self._lives = lives
        return next_tensordict

    @staticmethod
    def _after(stepped: TensorDictBase) -> TensorDictBase:
        return step_mdp(stepped, exclude_done=False, exclude_reward=True, exclude_action=True)


class AntialiasedResize(ObservationTransform):
    """Resizes ``[..., C, H, W]`` uint8 images with anti-aliased bilinear interpolation, in torch alone.

    TorchRL's ``Resize`` needs torchvision, which has no CPU build matching this torch; ``F.interpolate`` resizes
    uint8 images natively (about 50 us per 210x160 frame on one CPU core).
    """

    def __init__(self, height: int, width: int, *, in_keys: list[str], out_keys: list[str]) -> None:
        super().__init__(in_keys=in_keys, out_keys=out_keys)
        self.size = (height, width)

    def _apply_transform(self, image: torch.Tensor) -> torch.Tensor:
        batch_shape = image.shape[:-3]
        flat = image.reshape(-1, *image.shape[-3:])  # interpolate wants [N, C, H, W]
        resized = F.interpolate(flat, size=self.size, mode="bilinear", antialias=True, align_corners=False)
        return resized.reshape(*batch_shape, *resized.shape[-3:])

    def _reset(self, tensordict: TensorDictBase, tensordict_reset: TensorDictBase) -> TensorDictBase:
        return self._call(tensordict_reset)

    def transform_observation_spec(self, observation_spec: TensorSpec) -> TensorSpec:
        for in_key, out_key in zip(self.in_keys, self.out_keys):
            spec = observation_spec[in_key].clone()
            spec.shape = torch.Size([*spec.shape[:-2], *self.size])
            spec.space.low = self._apply_transform(spec.space.low)
            spec.space.high = self._apply_transform(spec.space.high)
            observation_spec[out_key] = spec
        return observation_spec


class RewardShaping(Transform):
    """Adds a living penalty per step and a life-loss penalty, then optionally clips the reward to its sign.

    ``r' = clip(r + living_penalty + life_loss_penalty * lost_life)``. TorchRL's ``SignTransform`` clips but has
    no penalties; penalties need the end-of-life signal, so this runs after ``EndOfLifeTransform``.
    """

    def __init__(self, *, living_penalty: float, life_loss_penalty: float, clip_to_sign: bool) -> None:
        super().__init__(in_keys=["reward", END_OF_LIFE_KEY], out_keys=["reward"])
        self.living_penalty = living_penalty
        self.life_loss_penalty = life_loss_penalty
        self.clip_to_sign = clip_to_sign

    def _call(self, next_tensordict: TensorDictBase) -> TensorDictBase:
        reward = next_tensordict.get("reward")
        lost_life = next_tensordict.get(END_OF_LIFE_KEY).to(reward.dtype)
        reward = reward + self.living_penalty + self.life_loss_penalty * lost_life
        if self.clip_to_sign:
            reward = reward.sign()
        return next_tensordict.set("reward", reward)


def _game(env: EnvBase) -> gym.Env:
    """The ALE game inside one preprocessed ``gym``-backend env (TorchRL's ``GymEnv`` keeps it as ``_env``): the one
    place that reaches into the wrapper; recording and the transforms read the game through the functions below."""
    return env.base_env._env.unwrapped


def lives(env: EnvBase) -> int:
    """Lives left in the game of one (unbatched) Atari env."""
    return int(env.lives()[0]) if isinstance(env, AleVectorEnv) else _game(env).ale.lives()


def screen_rgb(env: EnvBase) -> np.ndarray:
    """The game's current colour screen, ``[210, 160, 3]`` uint8: the raw frame behind the latest observation
    (an ``ale_vector`` env made with ``with_screen=True``)."""
    return env.screen_rgb()[0] if isinstance(env, AleVectorEnv) else _game(env).ale.getScreenRGB()


def action_names(env: EnvBase) -> list[str]:
    """The game's name of each action index, e.g. ``["NOOP", "FIRE", "RIGHT", "LEFT"]`` for Breakout."""
    return list(env.action_names) if isinstance(env, AleVectorEnv) else list(_game(env).get_action_meanings())


def frame_size(env_cfg: DictConfig) -> tuple[int, int]:
    """``(height, width)`` of the frames the agent sees: ``env.screen_size`` is one size (square) or a pair."""
    size = env_cfg.screen_size
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def frame_shape(env_cfg: DictConfig) -> tuple[int, ...]:
    """One frame of the stack: ``(H, W)`` grayscale, ``(H, W, 3)`` RGB."""
    return (*frame_size(env_cfg), *(() if env_cfg.get("grayscale", True) else (3,)))


def protocol(env_cfg: DictConfig) -> dict[str, object]:
    """How the game is played and observed, as recordings, summaries and results state it."""
    vector = env_cfg.backend == "ale_vector"
    height, width = frame_size(env_cfg)
    native = (height, width) == SCREEN_SHAPE[:2]
    colour = "ALE grayscale" if env_cfg.get("grayscale", True) else "RGB"
    size = f"native {height}x{width} (no resize)" if native else f"INTER_AREA resize to {height}x{width}"
    return {
        "env_id": env_cfg.id,
        "backend": env_cfg.backend,
        "frame_skip": env_cfg.frame_skip,
        "repeat_action_probability": env_cfg.repeat_action_probability,
        "noop_max": env_cfg.noop_max,
        "noop_unit": "emulator frames, after FIRE" if vector else "agent steps, before FIRE",
        "fire": "FIRE pressed by the environment at reset (games with FIRE); after a lost life the agent presses it" if vector else
                "FIRE pressed by the environment after reset and after a lost life, within the agent step (games with FIRE)",
        "frame": (f"{colour}, {size}" + (", max of the last two emulator frames" if env_cfg.maxpool else "")) if vector else
                 f"grayscale {height}x{width}" + ("" if native else ", anti-aliased resize of the 210x160 RGB screen"),
        "frame_stack": env_cfg.frame_stack,
        "max_episode_steps": env_cfg.max_episode_steps,
    }


GREEDY_GAME_MAX_FRAMES = 18_000  # emulator frames (5 minutes of play): a greedy agent that never presses FIRE after a lost life stalls until cut


def fixed_start(env_cfg: DictConfig) -> DictConfig:
    """The env section with neither NOOP starts nor sticky actions: without them an Atari game is deterministic, and a
    greedy agent plays one and the same game from every start (``eval.greedy_game``, rlpipe's figure before it
    evaluated under a published protocol). Its games are cut at ``GREEDY_GAME_MAX_FRAMES`` emulator frames (4,500
    agent steps at frame skip 4): a greedy agent that waits for the ball after a lost life (``env.backend=ale_vector``
    presses no FIRE for it) would otherwise play until ``env.max_episode_steps``, 27,000 steps by default, at every
    evaluation."""
    cap = min(env_cfg.max_episode_steps, GREEDY_GAME_MAX_FRAMES // env_cfg.frame_skip)
    return OmegaConf.merge(env_cfg, {"noop_max": 0, "repeat_action_probability": 0.0, "max_episode_steps": cap})


def atari_games() -> list[str]:
    """Every ALE game name ``env.game`` accepts (gymnasium's ``ALE/<Game>-v5`` ids)."""
    return sorted(name[len("ALE/"):-len("-v5")] for name in gym.registry if name.startswith("ALE/") and name.endswith("-v5"))


def rom_id(env_id: str) -> str:
    """ale-py's ROM id of a gymnasium ALE id (``ALE/SpaceInvaders-v5`` -> ``space_invaders``); an unknown game is a
    :class:`ConfigError` that says how to list the valid names."""
    try:
        return gym.spec(env_id).kwargs["game"]
    except (gym.error.Error, KeyError):
        game = env_id.removeprefix("ALE/").rsplit("-v", 1)[0]
        close = difflib.get_close_matches(game, atari_games(), n=3, cutoff=0.6)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        raise ConfigError(f"env.game={game!r} is not an ALE game{hint}; list the {len(atari_games())} games with: "
                          f"python -m rlpipe.envs.atari") from None


def make_atari_env(
    env_cfg: DictConfig, *, num_envs: int, seed: int | None, device: torch.device | str = "cpu", with_screen: bool = False
) -> EnvBase:
    """One preprocessed Atari env, or ``num_envs`` of them batched (``[num_envs]``).

    Args:
        env_cfg: the ``env`` section (``conf/env/atari.yaml``).
        num_envs: games side by side; 1 gives an unbatched env.
        seed: game ``i`` gets ``seed + i``.
        device: where the env's tensors live.
        with_screen: keep the raw colour screen for :func:`screen_rgb` (recording; the ``gym`` backend always can).
    """
    rom = rom_id(env_cfg.id)
    if env_cfg.backend == "ale_vector":
        env = AleVectorEnv(
            rom=rom, num_envs=num_envs, batched=num_envs > 1, frame_skip=env_cfg.frame_skip, frame_stack=env_cfg.frame_stack,
            screen_size=frame_size(env_cfg), grayscale=env_cfg.get("grayscale", True), maxpool=env_cfg.maxpool, noop_max=env_cfg.noop_max,
            repeat_action_probability=env_cfg.repeat_action_probability, max_episode_steps=env_cfg.max_episode_steps,
            living_penalty=env_cfg.living_penalty, life_loss_penalty=env_cfg.life_loss_penalty,
            clip_reward_to_sign=env_cfg.clip_reward_to_sign, with_screen=with_screen, device=device,
        )
    else:
        make_one = functools.partial(_make_one_atari_env, env_cfg, device=device)
        if num_envs == 1:
            env = make_one()
        elif env_cfg.parallel:
            env = ParallelEnv(num_envs, EnvCreator(make_one))
        else:
            env = SerialEnv(num_envs, make_one)
    if seed is not None:
        env.set_seed(seed)
    return env


def _make_one_atari_env(env_cfg: DictConfig, *, device: torch.device | str = "cpu") -> TransformedEnv:
    base = GymEnv(
        env_cfg.id,
        frame_skip=env_cfg.frame_skip,
        repeat_action_probability=env_cfg.repeat_action_probability,
        full_action_space=False,
        categorical_action_encoding=True,
        # ALE's own cap (emulator frames, NOOP and FIRE starts included) lies beyond StepCounter's below
        max_num_frames_per_episode=(env_cfg.max_episode_steps + env_cfg.noop_max + 2) * env_cfg.frame_skip,
        device=device,
    )
    needs_fire = base._env.unwrapped.get_action_meanings()[FIRE] == "FIRE"
    transforms: list[Transform] = [
        NoopFireReset(noop_max=env_cfg.noop_max, fire=needs_fire),
        ToTensorImage(from_int=False, dtype=torch.uint8, in_keys=["pixels"]),
        # Resizing before the grayscale conversion is twice as fast (uint8 resize has a channels-last fast path,
        # and the grayscale sum then runs on 84x84 instead of 210x160 pixels).
        AntialiasedResize(*frame_size(env_cfg), in_keys=["pixels"], out_keys=[OBSERVATION_KEY]),
        ExcludeTransform("pixels"),
        GrayScale(in_keys=[OBSERVATION_KEY]),
        CatFrames(N=env_cfg.frame_stack, dim=-3, in_keys=[OBSERVATION_KEY]),
        # Reading lives through GymEnv's attribute fallback costs ~100 us per step (it lists dir() twice).
        # done_key="terminated": a lost life or the game's end is terminal; TorchRL's default ("done") would make
        # a time-limit truncation terminal too, and the learner would never bootstrap across it.
        EndOfLifeTransform(eol_key=END_OF_LIFE_KEY, done_key="terminated", eol_attribute="_env.unwrapped.ale.lives"),
        StepCounter(max_steps=env_cfg.max_episode_steps),  # truncated (not terminated) at the cap
        RewardSum(in_keys=["reward"], out_keys=[EPISODE_SCORE_KEY]),
        RewardShaping(
            living_penalty=env_cfg.living_penalty,
            life_loss_penalty=env_cfg.life_loss_penalty,
            clip_to_sign=env_cfg.clip_reward_to_sign,
        ),
        RewardSum(),
    ]
    return TransformedEnv(base, Compose(*transforms))


if __name__ == "__main__":  # python -m rlpipe.envs.atari: the names env.game accepts
    print("\n".join(atari_games()))
