"""The frame-deduplicated replay memory: rebuilt stacks equal the stacks the environment produced (across episode
boundaries, several streams and wrap-around of the ring), overwritten histories are never sampled, priorities
land on the right transitions, and it survives a checkpoint."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.collectors import Collector
from torchrl.data import Bounded, Categorical, Composite, Unbounded
from torchrl.envs import CatFrames, Compose, EnvBase, RewardSum, SerialEnv, StepCounter, TransformedEnv
from torchrl.envs.utils import RandomPolicy

from rlpipe.frame_replay import FrameReplay
from rlpipe.keys import INDEX_KEY, OBSERVATION_KEY

FRAME_STACK = 4


class FrameIdEnv(EnvBase):
    """Emits 2x2 uint8 frames that spell a unique id (stream in one byte, a counter in three); episodes last 1 to
    ``max_len`` steps."""

    def __init__(self, stream: int, max_len: int = 9) -> None:
        super().__init__(batch_size=[])
        self.stream, self.max_len = stream, max_len
        self.observation_spec = Composite(observation=Bounded(0, 255, shape=(1, 2, 2), dtype=torch.uint8))
        self.action_spec = Categorical(3)
        self.reward_spec = Unbounded(shape=(1,))
        self.counter, self.t, self.length = 0, 0, 1
        self.rng = torch.Generator().manual_seed(stream)

    def _frame(self) -> torch.Tensor:
        self.counter += 1
        c = self.counter
        return torch.tensor([[[self.stream, c % 256], [(c // 256) % 256, c // 65536]]], dtype=torch.uint8)

    def _reset(self, tensordict: TensorDictBase | None = None) -> TensorDict:
        self.t, self.length = 0, int(torch.randint(1, self.max_len + 1, (), generator=self.rng))
        false = torch.zeros(1, dtype=torch.bool)
        return TensorDict({"observation": self._frame(), "done": false, "terminated": false.clone()}, [])

    def _step(self, tensordict: TensorDictBase) -> TensorDict:
        self.t += 1
        done = torch.tensor([self.t >= self.length])
        reward = tensordict["action"].float().reshape(1) + 10 * self.t
        return TensorDict({"observation": self._frame(), "reward": reward, "done": done, "terminated": done.clone()}, [])

    def _set_seed(self, seed: int | None) -> None:
        self.rng = torch.Generator().manual_seed(int(seed or 0) + self.stream)


def _stacked_env(stream: int) -> TransformedEnv:
    return TransformedEnv(FrameIdEnv(stream), Compose(CatFrames(N=FRAME_STACK, dim=-3, in_keys=["observation"]), StepCounter(), RewardSum()))


class GroundTruth:
    """Replays the memory's slot arithmetic on the collected data: which slot each transition went to."""

    def __init__(self, num_streams: int, slots_per_stream: int) -> None:
        self.rows = [0] * num_streams
        self.slots_per_stream = slots_per_stream
        self.at: dict[int, tuple[int, TensorDictBase]] = {}  # global slot -> (row number, transition)

    def add(self, batch: TensorDictBase) -> None:
        batch = batch if batch.batch_dims == 2 else batch.unsqueeze(0)
        for stream in range(batch.shape[0]):
            for transition in batch[stream].unbind(0):
                slot = stream * self.slots_per_stream + self.rows[stream] % self.slots_per_stream
                self.at[slot] = (self.rows[stream], transition.clone())
                self.rows[stream] += 2 if transition["next", "done"].item() else 1


def _collect_into(replay: FrameReplay, env: EnvBase, batches: int, steps: int, check) -> None:
    collector = Collector(env, RandomPolicy(env.action_spec), frames_per_batch=steps,
                          total_frames=batches * steps, track_traj_ids=False, auto_register_policy_transforms=False)
    truth = GroundTruth(replay.num_streams, replay.slots_per_stream)
    for batch in collector:
        replay.extend(batch)
        truth.add(batch)
        check(replay, truth)
    collector.shutdown()


def _check_every_sampleable_slot(replay: FrameReplay, truth: GroundTruth, *, terminal=("next", "terminated")) -> None:
    index = replay.sampleable.view(-1).nonzero().squeeze(-1)
    rebuilt = replay.transitions(index)
    for i, slot in enumerate(index.tolist()):
        _, transition = truth.at[slot]
        assert torch.equal(rebuilt[i][OBSERVATION_KEY], transition[OBSERVATION_KEY]), slot
        assert torch.equal(rebuilt[i]["next", OBSERVATION_KEY], transition["next", OBSERVATION_KEY]), slot
        assert rebuilt[i]["action"] == transition["action"]
        assert rebuilt[i]["next", "reward"] == transition["next", "reward"]
        assert rebuilt[i]["next", "terminated"] == transition[terminal]


def _check_recent_transitions_are_sampleable(replay: FrameReplay, truth: GroundTruth) -> None:
    """Every transition whose frames are all still in the ring (and whose next frame exists) can be sampled."""
    for stream in range(replay.num_streams):
        written = truth.rows[stream]
        for slot in range(stream * replay.slots_per_stream, (stream + 1) * replay.slots_per_stream):
            if slot not in truth.at:
                continue
            row, transition = truth.at[slot]
            history = min(FRAME_STACK - 1, int(transition["step_count"]))
            complete = row + 1 < written and row - history >= written - replay.slots_per_stream
            if complete:
                assert replay.sampleable.view(-1)[slot], (stream, slot, row, written)


@pytest.mark.parametrize("num_streams", [1, 2])
def test_rebuilt_stacks_equal_collected_stacks_across_episodes_and_wraparound(num_streams):
    replay = FrameReplay(capacity=num_streams * 37, num_streams=num_streams, frame_shape=(2, 2), frame_stack=FRAME_STACK,
                         alpha=0.6, beta=0.4, priority_eps=1e-6)
    env = _stacked_env(0) if num_streams == 1 else SerialEnv(num_streams, [lambda s=s: _stacked_env(s) for s in range(num_streams)])
    env.set_seed(0)

    def check(replay, truth):
        _check_every_sampleable_slot(replay, truth)
        _check_recent_transitions_are_sampleable(replay, truth)

    _collect_into(replay, env, batches=30, steps=5 * num_streams, check=check)  # 150 steps per stream: 4 laps
    assert replay.sampleable.sum() > 0.6 * replay.capacity


def test_sampling_never_returns_unsampleable_slots():
    replay = FrameReplay(capacity=2 * 29, num_streams=2, frame_shape=(2, 2), frame_stack=FRAME_STACK, alpha=1.0, beta=1.0, priority_eps=1e-6)
    env = SerialEnv(2, [lambda s=s: _stacked_env(s) for s in range(2)])
    env.set_seed(1)

    def check(replay, truth):
        sample = replay.sample(512)
        assert replay.sampleable.view(-1)[sample[INDEX_KEY]].all()
        assert (sample["priority_weight"] <= 1.0 + 1e-6).all()
        replay.update_priority(sample[INDEX_KEY], torch.rand(512) * 5)  # uneven priorities, then sample again

    _collect_into(replay, env, batches=25, steps=8, check=check)


def test_priorities_update_the_right_transitions():
    alpha, eps = 0.7, 1e-6
    replay = FrameReplay(capacity=64, num_streams=1, frame_shape=(2, 2), frame_stack=FRAME_STACK, alpha=alpha, beta=1.0, priority_eps=eps)
    _collect_into(replay, _stacked_env(0), batches=4, steps=10, check=lambda *_: None)
    sample = replay.sample(16)
    index = sample[INDEX_KEY]
    priority = torch.arange(1.0, 17.0)
    replay.update_priority(index, priority)
    last = {i: p for i, p in zip(index.tolist(), priority.tolist())}  # repeated draws: the last write wins
    stored = torch.as_tensor(replay.sampler._sum_tree[torch.tensor(list(last))])
    assert torch.allclose(stored, (torch.tensor(list(last.values())) + eps) ** alpha)
    unsampleable = (~replay.sampleable.view(-1)).nonzero().squeeze(-1)
    assert (torch.as_tensor(replay.sampler._sum_tree[unsampleable]) == 0).all()
    top = max(last, key=last.get)
    replay.update_priority(torch.tensor([top]), torch.tensor([1e6]))
    assert (replay.sample(200)[INDEX_KEY] == top).float().mean() > 0.9


def test_uniform_mode_samples_sampleable_slots_evenly():
    replay = FrameReplay(capacity=48, num_streams=1, frame_shape=(2, 2), frame_stack=FRAME_STACK, alpha=0.0, beta=0.0, priority_eps=1.0)
    _collect_into(replay, _stacked_env(0), batches=6, steps=10, check=lambda *_: None)
    sample = replay.sample(20_000)
    counts = torch.bincount(sample[INDEX_KEY], minlength=48)[replay.sampleable.view(-1)].float()
    assert (sample["priority_weight"] == 1).all()
    assert counts.min() > 0.7 * counts.mean() and counts.max() < 1.3 * counts.mean()


def test_checkpoint_roundtrip(tmp_path):
    replay = FrameReplay(capacity=2 * 31, num_streams=2, frame_shape=(2, 2), frame_stack=FRAME_STACK, alpha=0.6, beta=0.4, priority_eps=1e-6)
    env = SerialEnv(2, [lambda s=s: _stacked_env(s) for s in range(2)])
    _collect_into(replay, env, batches=12, steps=8, check=lambda *_: None)
    replay.update_priority(replay.sample(32)[INDEX_KEY], torch.rand(32))
    replay.dumps(tmp_path / "buffer")
    restored = FrameReplay(capacity=2 * 31, num_streams=2, frame_shape=(2, 2), frame_stack=FRAME_STACK, alpha=0.6, beta=0.4, priority_eps=1e-6)
    restored.loads(tmp_path / "buffer")
    assert torch.equal(restored.sampleable, replay.sampleable) and torch.equal(restored.written, replay.written)
    index = replay.sampleable.view(-1).nonzero().squeeze(-1)
    assert (restored.transitions(index) == replay.transitions(index)).all()
    assert torch.allclose(torch.as_tensor(restored.sampler._sum_tree[index]), torch.as_tensor(replay.sampler._sum_tree[index]))


def test_memmap_storage_holds_the_same_data(tmp_path):
    memory = FrameReplay(capacity=40, num_streams=1, frame_shape=(2, 2), frame_stack=FRAME_STACK, alpha=0.6, beta=0.4, priority_eps=1e-6)
    mapped = FrameReplay(capacity=40, num_streams=1, frame_shape=(2, 2), frame_stack=FRAME_STACK, alpha=0.6, beta=0.4,
                         priority_eps=1e-6, memmap_dir=str(tmp_path / "frames"))
    for replay in (memory, mapped):
        torch.manual_seed(0)  # the same random actions for both
        _collect_into(replay, _stacked_env(0), batches=5, steps=10, check=lambda *_: None)
    assert (tmp_path / "frames" / "frame.memmap").stat().st_size == 40 * 4
    index = memory.sampleable.view(-1).nonzero().squeeze(-1)
    assert (memory.transitions(index) == mapped.transitions(index)).all()


@pytest.mark.parametrize("preset,backend,num_envs", [("breakout", "ale_vector", 1), ("breakout", "ale_vector", 2),
                                                     ("breakout", "gym", 1), ("breakout_rgb", "ale_vector", 2)])
def test_real_breakout_stacks_survive_storage(preset, backend, num_envs):
    """The same check on the real Atari pipeline (8-frame stacks, NOOP/FIRE resets, lives), through the factory:
    ale-py's vector env (one game, and two side by side), the gym backend, and native 210x160 RGB frames
    (``[8, 210, 160, 3]`` stacks, each frame stored once)."""
    from conftest import compose_config

    from rlpipe.envs import make_env
    from rlpipe.replay import make_replay_buffer

    colour = preset == "breakout_rgb"  # 100,800-byte frames: a shorter run, still wrapping its ring twice
    slots, batches = (50, 4) if colour else (150, 10)
    cfg = compose_config([f"env={preset}", f"buffer.capacity={slots * num_envs}", f"env.backend={backend}", f"env.maxpool={backend != 'gym'}"])
    env = make_env(cfg.env, num_envs=num_envs, seed=0)
    replay = make_replay_buffer(cfg.buffer, cfg.env, env)
    assert isinstance(replay, FrameReplay) and replay.frame_stack == 8 and replay.terminal_key == ("next", "end-of-life")
    truth_terminals = []

    def check(replay, truth):
        _check_every_sampleable_slot(replay, truth, terminal=("next", "end-of-life"))
        truth_terminals.extend(t["next", "end-of-life"].item() for _, t in truth.at.values())

    _collect_into(replay, env, batches=batches, steps=40 * num_envs, check=check)  # 400 (160) steps per game: the rings wrap twice
    assert any(truth_terminals) or colour  # lives were lost along the way (160 steps at frame skip 2 are too few)
    env.close()


def _hand_built_stream() -> TensorDict:
    """Ten transitions of one stream, as a collector yields them: frame ids 1, 2, ... in 2x2 frames, 2-frame
    stacks. Rewards are 1, 2, ..., 10. A life is lost at transition 2 (terminal for the learner, the game goes on),
    the episode is truncated by a time limit at transition 5 (done, not terminal: bootstrap) and the next episode
    ends with the game at transition 8 (done and terminal); transition 9 starts a third episode."""
    lost_life, truncated, game_over = 2, 5, 8
    frame_id, step_in_episode = 1, 0
    rows = []
    for t in range(10):
        ends = t in (truncated, game_over)
        rows.append({"frame": frame_id, "next_frame": frame_id + 1, "step": step_in_episode, "reward": float(t + 1),
                     "eol": t in (lost_life, game_over), "done": ends, "terminated": t == game_over})
        frame_id, step_in_episode = (frame_id + 2, 0) if ends else (frame_id + 1, step_in_episode + 1)

    def stack(frame: int, step: int) -> torch.Tensor:  # CatFrames(N=2) with "same" padding at the episode start
        ids = [frame - min(1, step), frame]
        return torch.tensor(ids, dtype=torch.uint8)[:, None, None].expand(2, 2, 2).clone()

    return TensorDict(
        {
            OBSERVATION_KEY: torch.stack([stack(r["frame"], r["step"]) for r in rows]),
            "action": torch.arange(10) % 3,
            "step_count": torch.tensor([[r["step"]] for r in rows]),
            ("next", OBSERVATION_KEY): torch.stack([stack(r["next_frame"], r["step"] + 1) for r in rows]),
            ("next", "reward"): torch.tensor([[r["reward"]] for r in rows]),
            ("next", "done"): torch.tensor([[r["done"]] for r in rows]),
            ("next", "terminated"): torch.tensor([[r["terminated"]] for r in rows]),
            ("next", "end-of-life"): torch.tensor([[r["eol"]] for r in rows]),
            ("next", "step_count"): torch.tensor([[r["step"] + 1] for r in rows]),
        },
        batch_size=[10],
    )


def test_n_step_targets_equal_hand_computed_values_across_a_lost_life_and_episode_ends():
    """3-step returns with gamma 0.5 on the hand-built stream, against values written out by hand, then through
    TorchRL's TD(0) estimator as the learner builds it: it must bootstrap with gamma ** steps_to_next_obs."""
    from conftest import compose_config

    from rlpipe.learner import make_loss
    from rlpipe.models import make_q_network
    from rlpipe.envs import make_env

    gamma = 0.5
    replay = FrameReplay(capacity=64, num_streams=1, frame_shape=(2, 2), frame_stack=2, alpha=0.0, beta=0.0,
                         priority_eps=1.0, n_step=3, gamma=gamma, terminal_key=("next", "end-of-life"))
    replay.extend(_hand_built_stream())
    # transition: (n-step reward, steps m, terminal, done, id of the newest frame of the next observation)
    # Rewards are t + 1; a window stops after a terminal (lost life, t=2 and t=8) or a done (t=5 and t=8).
    expected = {
        0: (1 + 0.5 * 2 + 0.25 * 3, 3, True, False, 4),  # t=0,1,2: the window ends on the lost life
        1: (2 + 0.5 * 3, 2, True, False, 4),
        2: (3.0, 1, True, False, 4),
        3: (4 + 0.5 * 5 + 0.25 * 6, 3, False, True, 7),  # t=3,4,5: truncated at t=5, bootstrap from frame 7
        4: (5 + 0.5 * 6, 2, False, True, 7),
        5: (6.0, 1, False, True, 7),
        6: (7 + 0.5 * 8 + 0.25 * 9, 3, True, True, 11),  # t=6,7,8: the game ends at t=8
        7: (8 + 0.5 * 9, 2, True, True, 11),
        8: (9.0, 1, True, True, 11),
    }
    # Slots: transitions 0-5 at slots 0-5, the final frame of episode 1 at slot 6, transitions 6-8 at 7-9, the
    # final frame of episode 2 at 10, transition 9 at 11 (its window is not complete: not sampleable).
    slot_of = {t: t if t <= 5 else t + 1 if t <= 8 else t + 2 for t in range(10)}
    assert replay.sampleable.view(-1).nonzero().squeeze(-1).tolist() == [slot_of[t] for t in range(9)]
    batch = replay.transitions(torch.tensor([slot_of[t] for t in range(9)]))
    for t, (reward, steps, terminal, done, next_frame) in expected.items():
        assert batch["next", "reward"][t].item() == pytest.approx(reward), t
        assert batch["steps_to_next_obs"][t].item() == steps, t
        assert batch["next", "terminated"][t].item() == terminal, t
        assert batch["next", "done"][t].item() == done, t
        assert batch["next", OBSERVATION_KEY][t, -1, 0, 0].item() == next_frame, t
        assert batch[OBSERVATION_KEY][t, -1, 0, 0].item() == _hand_built_stream()[OBSERVATION_KEY][t, -1, 0, 0].item()

    # Written in two collects, the memory holds the same transitions; a window that was complete before the second
    # write (it ended at the lost life) keeps the priority the learner gave it.
    split = FrameReplay(capacity=64, num_streams=1, frame_shape=(2, 2), frame_stack=2, alpha=1.0, beta=0.0,
                        priority_eps=1e-6, n_step=3, gamma=gamma, terminal_key=("next", "end-of-life"))
    stream = _hand_built_stream()
    split.extend(stream[:4])
    assert split.sampleable.view(-1).nonzero().squeeze(-1).tolist() == [0, 1, 2]  # t=3's window needs t=4, t=5
    split.update_priority(torch.tensor([2]), torch.tensor([0.25]))
    split.extend(stream[4:])
    assert split.sampler._sum_tree[2] == pytest.approx(0.25 + 1e-6)
    assert (split.transitions(torch.tensor([slot_of[t] for t in range(9)])) == batch).all()

    # The learner's TD(0) estimator on these transitions, with a known next-state value V = 10 for every state.
    cfg = compose_config(["env=breakout", f"train.gamma={gamma}"])
    loss = make_loss(cfg.train, make_q_network(cfg.model, make_env(cfg.env), torch.device("cpu")))
    target = loss.value_estimator.value_estimate(batch.clone(), next_value=torch.full((9, 1), 10.0)).squeeze(-1)
    for t, (reward, steps, terminal, _, _) in expected.items():
        assert target[t].item() == pytest.approx(reward + (0.0 if terminal else gamma**steps * 10.0)), t


def test_sampled_stacks_never_mix_frames_across_an_overwrite_under_real_training(tmp_path, monkeypatch):
    """The replay ring wrapping around while an agent learns from it (a long Breakout run wraps its 1M-frame ring at
    about 1M agent steps): a real training run on a ring of 200 frames per game, 3-step returns, prioritized
    sampling with priorities written back. Every sampled observation and n-step next observation equals the stack
    the environment produced for that transition, recorded as it was stored, through several laps of the ring."""
    from conftest import compose_config

    from rlpipe.train import train

    truth: dict[tuple[int, int], tuple[bytes, bytes]] = {}  # (stream, row written) -> digests of (stack, next stack)
    rings: list[FrameReplay] = []
    checked = {"transitions": 0, "after_wrap": 0}
    extend_stream, transitions = FrameReplay._extend_stream, FrameReplay.transitions

    def recording_extend(self, stream, batch):
        if not rings:
            rings.append(self)
        row, done = int(self.written[stream]), batch.get(("next", "done")).reshape(-1)
        for t in range(done.numel()):  # the memory's own row arithmetic: an episode's end adds its final frame's row
            truth[(stream, row)] = (_digest(batch.get(OBSERVATION_KEY)[t]), _digest(batch.get(("next", OBSERVATION_KEY))[t]))
            row += 2 if done[t] else 1
        extend_stream(self, stream, batch)

    def checked_transitions(self, index):
        batch = transitions(self, index)
        steps = batch.get("steps_to_next_obs").reshape(-1)
        for i, global_slot in enumerate(index.tolist()):
            stream, slot = divmod(global_slot, self.slots_per_stream)
            row = int(self._write_number(stream, torch.tensor(slot)))
            assert _digest(batch.get(OBSERVATION_KEY)[i]) == truth[(stream, row)][0], (stream, row)
            last = row + int(steps[i]) - 1  # the n-step window's last transition: no episode ends before it
            assert _digest(batch.get(("next", OBSERVATION_KEY))[i]) == truth[(stream, last)][1], (stream, row, last)
            checked["transitions"] += 1
            checked["after_wrap"] += int(self.written[stream]) > self.slots_per_stream
        return batch

    monkeypatch.setattr(FrameReplay, "_extend_stream", recording_extend)
    monkeypatch.setattr(FrameReplay, "transitions", checked_transitions)
    cfg = compose_config(["env=breakout", "env.num_envs=2", "buffer.capacity=400", "train.total_steps=1200",
                          "train.init_random_steps=200", "train.updates_per_step=0.0625", "train.compile=false", "eval.interval_steps=100000", "eval.episodes=1",
                          "eval.greedy_game=false", "env.max_episode_steps=200", "checkpoint.interval_steps=100000",
                          "checkpoint.save_buffer=false", "train.log_interval_steps=1000"])
    train(cfg, tmp_path)
    (ring,) = rings
    assert cfg.train.n_step == 3 and cfg.buffer.kind == "prioritized"
    assert int(ring.written.min()) > 2 * ring.slots_per_stream  # every game's ring went round more than twice
    assert checked["after_wrap"] > 800, checked  # most sampled transitions were drawn after the first overwrite


def _digest(stack: torch.Tensor) -> bytes:
    """A stack's 8 frames of 84x84 pixels as a 20-byte digest (a run's every stack, kept whole, would take 360 MB)."""
    import hashlib

    return hashlib.sha1(stack.contiguous().numpy().tobytes()).digest()
