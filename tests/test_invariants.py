"""Invariants of the pieces: shapes, schedules, the double-DQN target, PER weighting and priorities, target updates,
evaluation, checkpoints. Each test builds the real objects with rlpipe's factories."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from tensordict import TensorDict
from torch import nn
from torchrl.data import Categorical
from torchrl.modules import QValueActor

from rlpipe.checkpoint import CheckpointError, Counters, load_checkpoint, restore_checkpoint, save_checkpoint
from rlpipe.envs import make_env
from rlpipe.evaluate import evaluate_policy
from rlpipe.exploration import EpsilonSchedule, make_exploration
from rlpipe.learner import GradientUpdate, Learner, make_loss, make_optimizer, make_target_updater
from rlpipe.models import make_q_network
from rlpipe.keys import INDEX_KEY, TRANSITION_KEYS
from rlpipe.replay import BetaSchedule, make_replay_buffer
from rlpipe.run import learning_phase

CPU = torch.device("cpu")


def _train_cfg(**overrides):
    base = {
        "loss": "smooth_l1", "gamma": 0.9, "lr": 1e-3, "adam_eps": 1e-8, "target_update": "hard",
        "target_update_steps": 3, "target_tau": 0.1,
    }
    return OmegaConf.create(base | overrides)


def _linear_q(weight: torch.Tensor) -> QValueActor:
    """A Q-network Q(s) = W s (no bias), so that targets can be computed by hand. weight: [A, O]."""
    net = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    with torch.no_grad():
        net.weight.copy_(weight)
    return QValueActor(net, in_keys=["observation"], spec=Categorical(weight.shape[0]))


def _set_target(loss, weight: torch.Tensor) -> None:
    loss.target_value_network_params["module", "0", "module", "weight"].data.copy_(weight)


def _batch(obs, action, next_obs, reward, terminated, truncated, weight=None) -> TensorDict:
    terminated = torch.tensor(terminated).unsqueeze(-1)
    done = terminated | torch.tensor(truncated).unsqueeze(-1)
    td = TensorDict(
        {
            "observation": torch.tensor(obs, dtype=torch.float32),
            "action": torch.tensor(action),
            ("next", "observation"): torch.tensor(next_obs, dtype=torch.float32),
            ("next", "reward"): torch.tensor(reward, dtype=torch.float32).unsqueeze(-1),
            ("next", "done"): done,
            ("next", "terminated"): terminated,
        },
        batch_size=[len(action)],
    )
    if weight is not None:
        td.set("priority_weight", torch.tensor(weight, dtype=torch.float32))
    return td


# Online and target weights chosen so that the online argmax at s' differs from the target argmax:
# Q_online(s') = W_on s', Q_target(s') = W_tg s'.
W_ONLINE = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])  # [A=3, O=2]
W_TARGET = torch.tensor([[2.0, 0.0], [0.0, 0.5], [1.0, 1.0]])
HAND_BATCH = dict(
    obs=[[1.0, 2.0], [3.0, 1.0], [0.5, 0.5]],
    action=[0, 2, 1],
    next_obs=[[0.0, 1.0], [2.0, 0.0], [1.0, 3.0]],
    reward=[1.0, -1.0, 0.5],
    terminated=[False, True, False],
    truncated=[False, False, True],  # a time limit: still bootstraps
)


def _hand_targets(gamma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Q_online(s, a) and y = r + gamma * (1 - terminated) * Q_target(s', argmax_a Q_online(s', a)), by hand."""
    s, a = torch.tensor(HAND_BATCH["obs"]), torch.tensor(HAND_BATCH["action"])
    s_next, r = torch.tensor(HAND_BATCH["next_obs"]), torch.tensor(HAND_BATCH["reward"])
    term = torch.tensor(HAND_BATCH["terminated"]).float()
    q_pred = (s @ W_ONLINE.T).gather(1, a[:, None]).squeeze(1)
    a_star = (s_next @ W_ONLINE.T).argmax(1)
    q_next = (s_next @ W_TARGET.T).gather(1, a_star[:, None]).squeeze(1)
    return q_pred, r + gamma * (1 - term) * q_next


def _classic_replay(*, capacity: int, alpha: float = 0.6, beta: float = 0.4, priority_eps: float = 1e-6):
    buffer_cfg = OmegaConf.create({"kind": "prioritized", "capacity": capacity, "alpha": alpha, "beta_init": beta,
                                   "beta_final": 1.0, "priority_eps": priority_eps, "storage": "memory", "memmap_dir": None})
    env_cfg = OmegaConf.create({"kind": "classic", "id": "CartPole-v1"})
    return make_replay_buffer(buffer_cfg, env_cfg, make_env(env_cfg))


def _random_transitions(n: int, n_obs: int = 2, n_actions: int = 3) -> TensorDict:
    return _batch(
        obs=torch.randn(n, n_obs).tolist(), action=torch.randint(0, n_actions, (n,)).tolist(), next_obs=torch.randn(n, n_obs).tolist(),
        reward=torch.randn(n).tolist(), terminated=(torch.rand(n) < 0.3).tolist(), truncated=[False] * n,
    )


# ---------------------------------------------------------------- networks


@pytest.mark.parametrize("env_id,n_obs,n_actions", [("CartPole-v1", 4, 2), ("LunarLander-v3", 8, 4)])
@pytest.mark.parametrize("dueling", [False, True])
def test_q_network_shapes_come_from_specs(env_id, n_obs, n_actions, dueling):
    env = make_env(OmegaConf.create({"kind": "classic", "id": env_id}), num_envs=3, seed=0)
    q = make_q_network(OmegaConf.create({"kind": "mlp", "hidden_sizes": [32, 16], "activation": "relu", "dueling": dueling}), env, CPU)
    td = q(env.reset())
    assert td["observation"].shape == (3, n_obs)
    assert td["action_value"].shape == (3, n_actions)
    assert td["action"].shape == (3,)
    assert torch.equal(td["action"], td["action_value"].argmax(-1))
    env.close()


def test_dueling_head_combines_value_and_mean_centred_advantage():
    env = make_env(OmegaConf.create({"kind": "classic", "id": "CartPole-v1"}))
    q = make_q_network(OmegaConf.create({"kind": "mlp", "hidden_sizes": [8], "activation": "relu", "dueling": True}), env, CPU)
    net = q.module[0].module
    x = torch.randn(5, 4)
    features = net.features(x)
    advantage, value = net.advantage(features), net.value(features)
    assert torch.allclose(net(x), value + advantage - advantage.mean(-1, keepdim=True))


# ---------------------------------------------------------------- schedules


def test_linear_epsilon_schedule_values():
    schedule = EpsilonSchedule(eps_init=1.0, eps_final=0.1, annealing_steps=1000, annealing="linear")
    assert schedule(0) == pytest.approx(1.0)
    assert schedule(500) == pytest.approx(0.55)
    assert schedule(1000) == pytest.approx(0.1)
    assert schedule(10_000) == pytest.approx(0.1)


def test_exponential_epsilon_schedule_values():
    schedule = EpsilonSchedule(eps_init=1.0, eps_final=0.01, annealing_steps=1000, annealing="exponential")
    assert schedule(0) == pytest.approx(1.0)
    assert schedule(500) == pytest.approx(0.1)  # geometric: halfway in steps is halfway in log(epsilon)
    assert schedule(1000) == pytest.approx(0.01)
    assert schedule(5000) == pytest.approx(0.01)


def test_exploration_module_follows_schedule_and_explores_at_that_rate():
    action_spec = Categorical(4)
    cfg = OmegaConf.create({"kind": "egreedy", "eps_init": 1.0, "eps_final": 0.2, "annealing": "linear", "annealing_steps": 100})
    exploration = make_exploration(cfg, action_spec, CPU)
    assert exploration.update(step=50, episodes=0) == pytest.approx(0.6)
    assert exploration.module.eps.item() == pytest.approx(0.6)
    exploration.update(step=100, episodes=0)
    greedy = torch.zeros(20_000, dtype=torch.long)
    td = exploration.module(TensorDict({"action": greedy.clone()}, batch_size=[20_000]))
    changed = (td["action"] != greedy).float().mean().item()
    assert changed == pytest.approx(0.2 * 3 / 4, abs=0.02)  # a random action equals the greedy one 1 time in 4


def test_beta_schedule_anneals_to_final_value():
    schedule = BetaSchedule(beta_init=0.4, beta_final=1.0, total_steps=1000)
    assert [schedule(s) for s in (0, 500, 1000, 2000)] == pytest.approx([0.4, 0.7, 1.0, 1.0])


# ---------------------------------------------------------------- loss


def test_double_dqn_target_equals_hand_computed_value():
    gamma = 0.9
    loss = make_loss(_train_cfg(loss="l2", gamma=gamma), _linear_q(W_ONLINE))
    _set_target(loss, W_TARGET)
    batch = _batch(**HAND_BATCH)
    value = loss(batch)["loss"]
    q_pred, target = _hand_targets(gamma)
    assert torch.allclose(batch["td_error"].squeeze(-1), (q_pred - target) ** 2)
    assert torch.allclose(value, ((q_pred - target) ** 2).mean())
    # the online network chose the next action: with the target's own argmax the value would differ
    s_next = torch.tensor(HAND_BATCH["next_obs"])
    vanilla_next = (s_next @ W_TARGET.T).max(1).values
    assert not torch.allclose((s_next @ W_TARGET.T).gather(1, (s_next @ W_ONLINE.T).argmax(1, keepdim=True)).squeeze(1), vanilla_next)


def test_per_weighted_loss_equals_hand_computed_weighted_mean():
    weights = [0.25, 1.0, 0.5]
    loss = make_loss(_train_cfg(loss="smooth_l1"), _linear_q(W_ONLINE))
    _set_target(loss, W_TARGET)
    value = loss(_batch(**HAND_BATCH, weight=weights))["loss"]
    q_pred, target = _hand_targets(0.9)
    per_sample = F.smooth_l1_loss(q_pred, target, reduction="none")
    w = torch.tensor(weights)
    assert torch.allclose(value, (w * per_sample).sum() / w.sum())
    unweighted = loss(_batch(**HAND_BATCH))["loss"]
    assert torch.allclose(unweighted, per_sample.mean())


@pytest.mark.parametrize("compile", [False, True])
def test_gradient_update_moves_online_parameters_only(compile):
    loss = make_loss(_train_cfg(), _linear_q(W_ONLINE))
    _set_target(loss, W_TARGET)
    optimizer = make_optimizer(_train_cfg(lr=0.1), loss, CPU)
    update = GradientUpdate(loss, optimizer, max_grad_norm=10.0, compile=compile, device=CPU)
    target_before = loss.target_value_network_params.clone()
    online_before = W_ONLINE.clone()
    result = update(_batch(**HAND_BATCH, weight=[1.0, 1.0, 1.0]))
    online_after = loss.value_network_params["module", "0", "module", "weight"]
    assert not torch.allclose(online_after, online_before)
    assert (loss.target_value_network_params == target_before).all()
    q_pred, target = _hand_targets(0.9)
    assert torch.allclose(result.priority, (q_pred - target).abs())  # |delta|, not delta^2
    assert torch.allclose(result.loss, F.smooth_l1_loss(q_pred, target))


def test_compiled_and_eager_updates_agree():
    results = []
    for compile in (False, True):
        torch.manual_seed(0)
        env = make_env(OmegaConf.create({"kind": "classic", "id": "CartPole-v1"}))
        q = make_q_network(OmegaConf.create({"kind": "mlp", "hidden_sizes": [16], "activation": "relu", "dueling": False}), env, CPU)
        loss = make_loss(_train_cfg(), q)
        update = GradientUpdate(loss, make_optimizer(_train_cfg(), loss, CPU), max_grad_norm=1.0, compile=compile, device=CPU)
        torch.manual_seed(1)
        batch = _batch(
            obs=torch.randn(8, 4).tolist(), action=torch.randint(0, 2, (8,)).tolist(), next_obs=torch.randn(8, 4).tolist(),
            reward=torch.randn(8).tolist(), terminated=[False] * 8, truncated=[False] * 8,
        )
        for _ in range(3):
            out = update(batch)
        results.append((out.loss, out.priority, torch.cat([p.flatten() for p in q.parameters()])))
    for eager, compiled in zip(*results):
        assert torch.allclose(eager, compiled, atol=1e-5)


# ---------------------------------------------------------------- target updates


def test_hard_update_copies_every_n_updates():
    loss = make_loss(_train_cfg(), _linear_q(W_ONLINE))
    updater = make_target_updater(_train_cfg(target_update="hard", target_update_steps=3), loss)
    online = loss.value_network_params["module", "0", "module", "weight"]
    target = loss.target_value_network_params["module", "0", "module", "weight"]
    copies = []
    for update in range(1, 10):
        online.data.add_(1.0)  # an optimizer step
        updater.step()
        copies.append(torch.equal(target, online))
    assert copies == [False, False, True] * 3


def test_soft_update_is_polyak_average():
    loss = make_loss(_train_cfg(), _linear_q(W_ONLINE))
    updater = make_target_updater(_train_cfg(target_update="soft", target_tau=0.1), loss)  # starts target = online
    _set_target(loss, W_TARGET)
    updater.step()
    target = loss.target_value_network_params["module", "0", "module", "weight"]
    assert torch.allclose(target, 0.9 * W_TARGET + 0.1 * W_ONLINE)


# ---------------------------------------------------------------- replay


def test_priorities_land_on_the_sampled_transitions():
    """The training loop's learning phase itself (rlpipe.run.learning_phase): one draw, several minibatches, the
    finite check, one priority write."""
    alpha, eps = 0.6, 1e-6
    replay = _classic_replay(capacity=64, alpha=alpha, priority_eps=eps)
    data = _random_transitions(40)
    replay.extend(data)
    # lr 0: every minibatch sees the same network; no target copy within the phase's 4 updates
    train_cfg = _train_cfg(gamma=0.9, lr=0.0, target_update_steps=10, batch_size=8, max_grad_norm=10.0, compile=False,
                           n_step=1, lr_schedule="constant", cudagraphs=False)
    learner = Learner(train_cfg, _linear_q(W_ONLINE), transition_keys=TRANSITION_KEYS, device=CPU, total_updates=10)
    _set_target(learner.loss_module, W_TARGET)

    learned = learning_phase(replay, learner, n_updates=4, batch_size=8, prioritized=True)

    block = learned.block
    assert block.batch_size == (32,) and torch.equal(learned.priorities, learned.result.priorities)
    index = block.get(INDEX_KEY)
    s, a, s_next = data["observation"][index], data["action"][index], data["next", "observation"][index]
    r, term = data["next", "reward"][index].squeeze(-1), data["next", "terminated"][index].squeeze(-1).float()
    a_star = (s_next @ W_ONLINE.T).argmax(1)
    target = r + 0.9 * (1 - term) * (s_next @ W_TARGET.T).gather(1, a_star[:, None]).squeeze(1)
    expected = ((s @ W_ONLINE.T).gather(1, a[:, None]).squeeze(1) - target).abs()
    stored = torch.as_tensor(replay.sampler._sum_tree[index])  # (p + eps) ** alpha per transition
    assert torch.allclose(stored, (expected + eps) ** alpha, rtol=1e-4)


def test_prioritized_sampling_follows_priorities():
    replay = _classic_replay(capacity=16, alpha=1.0, beta=1.0)
    replay.extend(_random_transitions(10))
    replay.update_priority(torch.arange(10), torch.full((10,), 1e-3))
    replay.update_priority(torch.tensor([7]), torch.tensor([1000.0]))
    sample = replay.sample(1000)
    assert (sample[INDEX_KEY] == 7).float().mean() > 0.95
    weight = sample["priority_weight"]
    assert weight.max() <= 1.0 + 1e-6 and weight[sample[INDEX_KEY] == 7].max() < 1e-3  # frequent -> down-weighted


def test_replay_keeps_only_transition_keys_of_whole_collector_batches():
    replay = _classic_replay(capacity=32)
    batch = _random_transitions(12).reshape(3, 4)  # [num_envs, steps], as a batched collector yields
    batch.set("episode_reward", torch.zeros(3, 4, 1))
    replay.extend(batch)
    assert len(replay) == 12
    assert set(replay.sample(5).keys(True, True)) == {*TRANSITION_KEYS, INDEX_KEY, "priority_weight"}


def test_vector_n_step_returns_equal_hand_computed_values_per_env_across_collects():
    """3-step returns with gamma 0.5 on two envs collected as two ``[2, 4]`` batches, against values written out by
    hand: windows stay within their env, continue across collects, stop at episode ends (env 0 terminates at
    t=2, env 1 is truncated at t=5) and read the terminal flags at the window's end, with the next observation."""
    buffer_cfg = OmegaConf.create({"kind": "uniform", "capacity": 32, "storage": "memory", "memmap_dir": None})
    env_cfg = OmegaConf.create({"kind": "classic", "id": "CartPole-v1"})
    replay = make_replay_buffer(buffer_cfg, env_cfg, make_env(env_cfg), n_step=3, gamma=0.5)
    steps = torch.arange(8.0).expand(2, 8)  # [E, T]
    ids = 10 * torch.arange(2.0)[:, None] + steps  # observation id 10 * env + t
    terminated = torch.zeros(2, 8, 1, dtype=torch.bool)
    truncated = torch.zeros(2, 8, 1, dtype=torch.bool)
    terminated[0, 2], truncated[1, 5] = True, True
    stream = TensorDict({
        "observation": torch.stack([ids, torch.zeros(2, 8), torch.zeros(2, 8), torch.zeros(2, 8)], -1),
        "action": torch.zeros(2, 8, dtype=torch.long),
        "next": {"observation": torch.stack([ids + 0.5, torch.zeros(2, 8), torch.zeros(2, 8), torch.zeros(2, 8)], -1),
                 "reward": (steps + 1).unsqueeze(-1), "terminated": terminated, "truncated": truncated,
                 "done": terminated | truncated},
    }, batch_size=[2, 8])
    replay.extend(stream[:, :4])
    assert len(replay) == 2  # t=0 of each env: the last n_step steps wait for the steps after them
    replay.extend(stream[:, 4:])
    # (env, t): (n-step reward, steps m, terminated, done, id of the next observation)
    expected = {
        (0, 0): (1 + 0.5 * 2 + 0.25 * 3, 3, True, True, 2.5),  # the window ends on the termination at t=2
        (0, 1): (2 + 0.5 * 3, 2, True, True, 2.5),
        (0, 2): (3.0, 1, True, True, 2.5),
        (0, 3): (4 + 0.5 * 5 + 0.25 * 6, 3, False, False, 5.5),  # the next episode, across the two collects
        (0, 4): (5 + 0.5 * 6 + 0.25 * 7, 3, False, False, 6.5),
        (1, 0): (1 + 0.5 * 2 + 0.25 * 3, 3, False, False, 12.5),
        (1, 2): (3 + 0.5 * 4 + 0.25 * 5, 3, False, False, 14.5),
        (1, 3): (4 + 0.5 * 5 + 0.25 * 6, 3, False, True, 15.5),  # truncated at t=5: bootstrap from its next obs
        (1, 4): (5 + 0.5 * 6, 2, False, True, 15.5),
    }
    stored = replay.storage[: len(replay)]
    assert len(replay) == 10  # t=0-4 of each env; t=5-7 wait for the next collect
    row_of = {int(obs_id): row for row, obs_id in enumerate(stored["observation"][:, 0].tolist())}
    for (env, t), (reward, m, term, done, next_id) in expected.items():
        row = row_of[10 * env + t]
        assert stored["next", "reward"][row].item() == pytest.approx(reward), (env, t)
        assert stored["steps_to_next_obs"][row].item() == m, (env, t)
        assert stored["next", "terminated"][row].item() == term, (env, t)
        assert stored["next", "done"][row].item() == done, (env, t)
        assert stored["next", "observation"][row, 0].item() == next_id, (env, t)


# ---------------------------------------------------------------- evaluation


def test_evaluation_plays_exactly_the_first_episode_of_each_sub_env():
    env_cfg = OmegaConf.create({"kind": "classic", "id": "CartPole-v1"})
    q = make_q_network(OmegaConf.create({"kind": "mlp", "hidden_sizes": [16], "activation": "relu", "dueling": False}), make_env(env_cfg), CPU)
    batched = evaluate_policy(make_env(env_cfg, num_envs=4, seed=10), q, device=CPU)
    one_by_one = [evaluate_policy(make_env(env_cfg, num_envs=1, seed=10 + i), q, device=CPU) for i in range(4)]
    assert batched.returns.tolist() == [r.returns.item() for r in one_by_one]
    assert batched.lengths.tolist() == [r.lengths.item() for r in one_by_one]
    assert batched.return_std == pytest.approx(batched.returns.std(unbiased=False).item())


class _AlwaysLeft(torch.nn.Module):
    """A CartPole 'policy' that pushes left on every step: its episodes last 8-11 steps."""

    in_keys = ["observation"]  # what the evaluation sends to the actor's device (as a TensorDictModule declares)

    def forward(self, td):
        return td.set("action", torch.zeros(td.batch_size, dtype=torch.long))


def test_evaluation_epsilon_replaces_actions_with_random_ones():
    env_cfg = OmegaConf.create({"kind": "classic", "id": "CartPole-v1"})
    greedy = evaluate_policy(make_env(env_cfg, num_envs=20, seed=0), _AlwaysLeft(), device=CPU)
    assert greedy.lengths.max() <= 11
    random = evaluate_policy(make_env(env_cfg, num_envs=20, seed=0), _AlwaysLeft(), device=CPU, epsilon=1.0)
    assert random.lengths.float().mean() > 15  # uniformly random actions: about 22 steps per episode
    partly = evaluate_policy(make_env(env_cfg, num_envs=20, seed=0), _AlwaysLeft(), device=CPU, epsilon=0.5)
    assert partly.lengths.float().std() > 0


# ---------------------------------------------------------------- checkpoints


def _pieces():
    loss = make_loss(_train_cfg(), _linear_q(torch.randn(3, 2)))
    optimizer = make_optimizer(_train_cfg(), loss, CPU)
    return loss, {"q_network": loss.value_network_params, "target_network": loss.target_value_network_params, "optimizer": optimizer}


def test_checkpoint_roundtrip_restores_every_piece(tmp_path):
    loss, pieces = _pieces()
    update = GradientUpdate(loss, pieces["optimizer"], max_grad_norm=1.0, compile=False, device=CPU)
    update(_batch(**HAND_BATCH))
    cfg = OmegaConf.create({"train": {"seed": 3}})
    path = tmp_path / "last.pt"
    save_checkpoint(path, config=cfg, counters=Counters(step=120, updates=60, episodes=4, best_eval_return=9.5), pieces=pieces)
    expected_draw = torch.rand(3)  # the RNG stream continues from the checkpoint

    fresh_loss, fresh_pieces = _pieces()
    counters, buffer_restored = restore_checkpoint(load_checkpoint(path), pieces=fresh_pieces)
    assert counters == Counters(step=120, updates=60, episodes=4, best_eval_return=9.5)
    assert not buffer_restored
    assert (fresh_loss.value_network_params == loss.value_network_params).all()
    assert (fresh_loss.target_value_network_params == loss.target_value_network_params).all()
    state, fresh_state = pieces["optimizer"].state_dict()["state"], fresh_pieces["optimizer"].state_dict()["state"]
    assert all(torch.equal(state[k]["exp_avg"], fresh_state[k]["exp_avg"]) for k in state)
    assert torch.equal(torch.rand(3), expected_draw)
    assert load_checkpoint(path)["config"] == {"train": {"seed": 3}}


def test_checkpoint_stores_and_restores_the_replay_buffer(tmp_path):
    replay = _classic_replay(capacity=32)
    data = _random_transitions(20)
    replay.extend(data)
    replay.update_priority(torch.arange(20), torch.arange(20.0))
    _, pieces = _pieces()
    save_checkpoint(tmp_path / "last.pt", config=OmegaConf.create({}), counters=Counters(step=5), pieces=pieces, replay_buffer=replay)
    save_checkpoint(tmp_path / "last.pt", config=OmegaConf.create({}), counters=Counters(step=9), pieces=pieces, replay_buffer=replay)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last-buffer-9", "last.pt"]  # the stale buffer is gone
    assert not list((tmp_path / "last-buffer-9").rglob("*.pkl"))

    restored = _classic_replay(capacity=32)
    _, fresh_pieces = _pieces()
    _, buffer_restored = restore_checkpoint(load_checkpoint(tmp_path / "last.pt"), pieces=fresh_pieces, replay_buffer=restored)
    assert buffer_restored and len(restored) == 20
    assert torch.equal(restored[:20]["observation"], data["observation"])
    index = torch.arange(20)
    assert torch.allclose(torch.as_tensor(restored.sampler._sum_tree[index]), torch.as_tensor(replay.sampler._sum_tree[index]))


class _CallsOnLoad:
    def __reduce__(self):
        return (os.getcwd, ())


def test_bad_checkpoints_give_one_line_errors(tmp_path):
    missing = tmp_path / "nope.pt"
    truncated = tmp_path / "truncated.pt"
    _, pieces = _pieces()
    save_checkpoint(truncated, config=OmegaConf.create({}), counters=Counters(), pieces=pieces)
    truncated.write_bytes(truncated.read_bytes()[:200])
    foreign_dict = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, foreign_dict)
    foreign_pickle = tmp_path / "pickle.pt"
    foreign_pickle.write_bytes(pickle.dumps(_CallsOnLoad()))  # plain unpickling would call os.getcwd: refused
    noise = tmp_path / "noise.pt"
    noise.write_bytes(bytes(range(256)) * 4)
    for path in (missing, truncated, foreign_dict, foreign_pickle, noise):
        with pytest.raises(CheckpointError) as err:
            load_checkpoint(path)
        message = str(err.value)
        assert str(path) in message and "\n" not in message
