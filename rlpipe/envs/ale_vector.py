"""ale-py's C++ vector environment (``AtariVectorEnv``) as a TorchRL environment with rlpipe's Atari data.

The per-step preprocessing runs in ale-py's C++ worker threads (``ale_py.vector_env.AtariVectorEnv``, EnvPool's
design inside the ALE): frame skip with max-pooling of the last two emulator frames, ALE's grayscale palette (or
its RGB screen), an ``INTER_AREA`` resize (to ``84x84``; none at the native ``210x160``), FIRE and NOOP starts, and the
frame stack. Python sees one batched step per
call. ``benchmarks/atari_env.py`` measures it against EnvPool, TorchRL's ``GymWrapper`` of the same vector env,
rlpipe's ``GymEnv`` + transforms path (``env.backend=gym``) and a bare ALE loop.

Hand-written, as one class, because the library pieces cost more than the emulator: TorchRL's ``GymWrapper`` of
this vector env added about 450 us of Python per agent step, and each TorchRL transform (``StepCounter``,
``RewardSum``, ...) adds a pass over the TensorDict per batched step. This class writes the same keys as
``env.backend=gym``'s transforms in a few numpy operations per batched step:

- ``"observation"`` ``[N, H, W]`` uint8 (grayscale) or ``[N, H, W, 3]`` (RGB, as the ALE's screen lays it out: the
  network turns it into ``3N`` channels, and :class:`~rlpipe.frame_replay.FrameReplay` stores each ``[H, W, 3]``
  frame once): stacks padded at the start of an episode with copies of its first frame
  (``CatFrames(padding="same")``, which :class:`~rlpipe.frame_replay.FrameReplay` rebuilds; ale-py pads with black);
- ``"end-of-life"`` ``[1]`` bool: a life was lost at this step, or the game ended (``EndOfLifeTransform`` with
  ``done_key="terminated"``), and ``"lives"`` ``[]`` int64;
- ``"step_count"`` ``[1]``: agent steps into the episode; at ``max_episode_steps`` the episode is truncated
  (``StepCounter(max_steps=...)``: ``truncated``, never ``terminated``);
- ``"episode_score"`` ``[1]``: the unshaped game score so far; ``"reward"``: the game reward plus the living and
  life-loss penalties, optionally clipped to its sign (:class:`rlpipe.envs.atari.RewardShaping`);
  ``"episode_reward"``: the sum of those (``RewardSum``).

Partial resets (TorchRL's ``"_reset"`` mask) go through ale-py's ``reset_mask``; ale-py's own autoreset never
fires, as TorchRL resets a finished game before stepping it again. With ``with_screen``, a second vector env plays
the same games in lockstep at the native ``210x160`` in colour (for recording): both draw the same random numbers,
since preprocessing draws none, and every step checks that their rewards and lives agree.

Shapes: ``B`` games (batch size ``[B]``, or ``[]`` for one game made unbatched), ``N`` stacked frames, ``H``/``W``
frame size, ``3`` colour channels of an RGB frame.
"""

from __future__ import annotations

import os

import gymnasium as gym
import numpy as np
import torch
from ale_py.vector_env import AtariVectorEnv
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Bounded, Categorical, Composite, Unbounded
from torchrl.envs import EnvBase

from rlpipe.keys import END_OF_LIFE_KEY, EPISODE_LENGTH_KEY, EPISODE_RETURN_KEY, EPISODE_SCORE_KEY, OBSERVATION_KEY

LIVES_KEY = "lives"
SCREEN_SHAPE = (210, 160, 3)  # the ALE's native colour screen (every game)


class AleVectorEnv(EnvBase):
    """``num_envs`` ALE games stepped side by side in ale-py's C++ threads, with rlpipe's Atari keys.

    Args:
        rom: ale-py's ROM id (``"breakout"``, ``"space_invaders"``).
        num_envs: games side by side.
        batched: a ``[num_envs]`` env; False (only with ``num_envs=1``) makes an unbatched one (``[]``).
        frame_skip: emulator frames per agent step.
        frame_stack: frames per observation (``N``).
        screen_size: frames are resized to ``screen_size x screen_size``, or to ``(height, width)``; ``(210, 160)``
            keeps the native resolution (no resize).
        grayscale: ALE's grayscale palette (``[H, W]`` frames); False keeps the RGB screen (``[H, W, 3]``).
        maxpool: each frame is the pixel-wise max of the last two emulator frames of its skip.
        noop_max: ale-py's start: FIRE for games that need it, then NOOP emulator frames, ``k - 1`` of them with
            FIRE or ``k`` without, for ``k`` uniform in ``[0, noop_max - 1]``.
        repeat_action_probability: sticky actions (per emulator frame; Machado et al. 2018).
        max_episode_steps: agent steps after which an episode is truncated.
        living_penalty: added to the training reward every agent step.
        life_loss_penalty: added to the training reward when a life is lost.
        clip_reward_to_sign: train on the sign of the shaped reward.
        fire_reset: press FIRE at reset, for games whose action 1 is FIRE.
        num_threads: C++ worker threads (default: one per game, at most one per CPU core).
        with_screen: keep the raw colour screen of each game (:meth:`screen_rgb`), through a second vector env.
        device: where the env's tensors live.
    """

    def __init__(
        self,
        *,
        rom: str,
        num_envs: int,
        batched: bool = True,
        frame_skip: int,
        frame_stack: int,
        screen_size: int | tuple[int, int],
        grayscale: bool = True,
        maxpool: bool,
        noop_max: int,
        repeat_action_probability: float,
        max_episode_steps: int,
        living_penalty: float = 0.0,
        life_loss_penalty: float = 0.0,
        clip_reward_to_sign: bool = False,
        fire_reset: bool = True,
        num_threads: int | None = None,
        with_screen: bool = False,
        device: torch.device | str = "cpu",
    ) -> None:
        if not batched and num_envs != 1:
            raise ValueError("an unbatched env has one game")
        super().__init__(device=device, batch_size=torch.Size([num_envs] if batched else []))
        self.num_envs = num_envs
        self.frame_stack = frame_stack
        self.max_episode_steps = max_episode_steps
        self.living_penalty = living_penalty
        self.life_loss_penalty = life_loss_penalty
        self.clip_reward_to_sign = clip_reward_to_sign
        common = dict(
            frameskip=frame_skip, noop_max=noop_max, repeat_action_probability=repeat_action_probability,
            # ale-py's cap (emulator frames) lies beyond ours, so that truncation happens between agent steps, here
            max_num_frames_per_episode=(max_episode_steps + 1) * frame_skip,
            num_threads=num_threads or min(num_envs, os.cpu_count() or 1), use_fire_reset=fire_reset, episodic_life=False,
            life_loss_info=False, reward_clipping=False, full_action_space=False, autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP,
        )
        height, width = (screen_size, screen_size) if isinstance(screen_size, int) else tuple(screen_size)
        frame_shape = (height, width) if grayscale else (height, width, 3)  # one frame of the stack
        self._games = AtariVectorEnv(rom, num_envs, img_height=height, img_width=width, grayscale=grayscale,
                                     stack_num=frame_stack, maxpool=maxpool, **common)
        # The colour screen: the same games again, at native resolution, one frame, no max-pooling.
        self._screens = AtariVectorEnv(rom, num_envs, img_height=SCREEN_SHAPE[0], img_width=SCREEN_SHAPE[1], grayscale=False,
                                       stack_num=1, maxpool=False, **common) if with_screen else None
        self.action_names = [action.name for action in self._games.ale.get_action_set()]
        self._screen: np.ndarray | None = None  # [B, 210, 160, 3] uint8: the latest colour screens
        self._lives = np.zeros(num_envs, dtype=np.int64)  # [B] lives before the next step
        self._steps = np.zeros(num_envs, dtype=np.int64)  # [B] agent steps into each episode
        self._score = np.zeros(num_envs, dtype=np.float32)  # [B] game score of each episode so far
        self._return = np.zeros(num_envs, dtype=np.float32)  # [B] shaped return of each episode so far
        self._seed: int | None = None
        self._started = False

        shape = self.batch_size
        flag = Categorical(2, shape=(*shape, 1), dtype=torch.bool, device=self.device)
        self.observation_spec = Composite(
            {
                OBSERVATION_KEY: Bounded(0, 255, shape=(*shape, frame_stack, *frame_shape), dtype=torch.uint8, device=self.device),
                END_OF_LIFE_KEY: flag.clone(),
                LIVES_KEY: Unbounded(shape=shape, dtype=torch.int64, device=self.device),
                EPISODE_LENGTH_KEY: Bounded(0, max_episode_steps, shape=(*shape, 1), dtype=torch.int64, device=self.device),
                EPISODE_SCORE_KEY: Unbounded(shape=(*shape, 1), device=self.device),
                EPISODE_RETURN_KEY: Unbounded(shape=(*shape, 1), device=self.device),
            },
            shape=shape,
        )
        self.action_spec = Categorical(len(self.action_names), shape=shape, dtype=torch.int64, device=self.device)
        self.reward_spec = Unbounded(shape=(*shape, 1), device=self.device)
        self.done_spec = Composite({key: flag.clone() for key in ("done", "terminated", "truncated")}, shape=shape)

    # ------------------------------------------------------------------ TorchRL's env interface

    def _set_seed(self, seed: int | None) -> None:
        """Seeds the next full reset: game ``i`` gets ``seed + i`` (its NOOP draws and sticky actions)."""
        self._seed = seed

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        mask = None if tensordict is None else tensordict.get("_reset", None)
        if mask is None or not self._started or bool(mask.all()):
            # A seed set since the last reset applies now. A first reset without one draws one from torch's generator
            # (seeded by the run), never from the OS: runs repeat, and the colour-screen games get the same seed.
            # Later resets pass none: each game's random stream goes on (and the run's torch generator is untouched,
            # so evaluations, which reset their env every time, do not change the training's random numbers).
            seed = self._seed if self._seed is not None else None if self._started else int(torch.randint(2**30, ()))
            observation, info = self._games.reset(seed=seed)
            if self._screens is not None:
                self._screen = self._screens.reset(seed=seed)[0][:, 0]
            mask = np.ones(self.num_envs, dtype=bool)
            self._seed, self._started = None, True  # later resets continue each game's random stream
        else:
            mask = mask.reshape(self.num_envs).cpu().numpy()
            observation, info = self._games.reset(options={"reset_mask": mask})
            if self._screens is not None:
                self._screen = self._screens.reset(options={"reset_mask": mask})[0][:, 0]
        self._lives[mask] = info["lives"][mask]
        self._steps[mask] = 0
        self._score[mask] = 0.0
        self._return[mask] = 0.0
        no = np.zeros(self.num_envs, dtype=bool)
        return self._output(observation, end_of_life=no, terminated=no, truncated=no)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        action = tensordict.get("action").reshape(self.num_envs).cpu().numpy()
        observation, reward, terminated, truncated, info = self._games.step(action)
        if self._screens is not None:
            screen, screen_reward, _, _, screen_info = self._screens.step(action)
            if not (np.array_equal(screen_reward, reward) and np.array_equal(screen_info["lives"], info["lives"])):
                raise RuntimeError("the colour-screen games left the lockstep of the played games")
            self._screen = screen[:, 0]
        lives = info["lives"].astype(np.int64)
        end_of_life = (lives < self._lives) | terminated
        self._lives = lives
        self._steps += 1
        truncated = (truncated | (self._steps >= self.max_episode_steps)) & ~terminated
        reward = reward.astype(np.float32)
        self._score += reward
        shaped = reward + np.float32(self.living_penalty) + np.float32(self.life_loss_penalty) * end_of_life
        if self.clip_reward_to_sign:
            shaped = np.sign(shaped)
        self._return += shaped
        out = self._output(observation, end_of_life=end_of_life, terminated=terminated, truncated=truncated)
        out.set("reward", self._column(shaped))
        return out

    # ------------------------------------------------------------------ helpers

    def _output(self, observation: np.ndarray, *, end_of_life: np.ndarray, terminated: np.ndarray, truncated: np.ndarray) -> TensorDict:
        """The batched step's data as a TensorDict (``[B]``, or ``[]`` for an unbatched env)."""
        self._pad_like_first_frame(observation)
        shape = self.batch_size
        return TensorDict(
            {
                OBSERVATION_KEY: torch.from_numpy(observation).reshape(*shape, *observation.shape[1:]),
                END_OF_LIFE_KEY: self._column(end_of_life),
                LIVES_KEY: torch.from_numpy(self._lives.copy()).reshape(shape),
                EPISODE_LENGTH_KEY: self._column(self._steps),
                EPISODE_SCORE_KEY: self._column(self._score),
                EPISODE_RETURN_KEY: self._column(self._return),
                "done": self._column(terminated | truncated),
                "terminated": self._column(terminated),
                "truncated": self._column(truncated),
            },
            batch_size=shape,
            device=self.device,  # (a TensorDict without one is moved to the env's device by every step)
        )

    def _column(self, values: np.ndarray) -> torch.Tensor:
        """``[B]`` numpy values as a ``[B, 1]`` tensor (``[1]`` unbatched), copied."""
        return torch.from_numpy(values.copy()).reshape(*self.batch_size, 1)

    def _pad_like_first_frame(self, observation: np.ndarray) -> None:
        """Frames ``0 .. N-2-t`` of a stack ``t`` steps into its episode are padding: they become frame ``N-1-t``,
        the episode's first (ale-py leaves them black)."""
        for game in np.flatnonzero(self._steps < self.frame_stack - 1):
            first = self.frame_stack - 1 - self._steps[game]
            observation[game, :first] = observation[game, first]

    # ------------------------------------------------------------------ what recording reads

    def lives(self) -> np.ndarray:
        """``[B]`` lives left in each game."""
        return self._lives.copy()

    def screen_rgb(self) -> np.ndarray:
        """``[B, 210, 160, 3]`` uint8: the raw colour screen of each game now (needs ``with_screen=True``)."""
        if self._screen is None:
            raise RuntimeError("this env keeps no colour screen: make it with with_screen=True, then reset it")
        return self._screen

    def close(self, *, raise_if_closed: bool = True) -> None:
        for games in (self._games, self._screens):
            if games is not None:
                games.close()
        super().close(raise_if_closed=raise_if_closed)
