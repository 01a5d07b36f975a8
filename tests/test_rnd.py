"""RND with two agents on one replay buffer (issue 12): novelty, the exploitation agent's reward, checkpoints,
resume, and loading either agent."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from tensordict import TensorDict

from conftest import compose_config, run_module
from rlpipe.agent import Agent
from rlpipe.checkpoint import CheckpointError, load_checkpoint, restore_checkpoint
from rlpipe.config import ConfigError
from rlpipe.envs import make_env, transition_keys
from rlpipe.keys import AGENT_STATE_KEY, OBSERVATION_KEY, PRIORITY_WEIGHT_KEY, REWARD_KEY, STEPS_TO_NEXT_OBS_KEY, TERMINATED_KEY
from rlpipe.learner import Learner
from rlpipe.run import make_agents
from rlpipe.models import make_q_network
from rlpipe.replay import make_replay_buffer
from rlpipe.rnd import COMBINED_REWARD_KEY, FIRST_VISIT_KEY, INTRINSIC_REWARD_KEY, RNDLearner

K, B = 4, 16  # updates per learning phase, minibatch size
CPU = torch.device("cpu")


def _learner(overrides: list[str], num_envs: int = 1) -> tuple[RNDLearner, object]:
    """An ``exploration=rnd`` learner for the composed task, built as ``rlpipe.train`` builds it."""
    cfg = compose_config(["exploration=rnd", "train.compile=false", f"train.batch_size={B}", *overrides])
    env = make_env(cfg.env)
    learner = make_agents(cfg.train, cfg.exploration, lambda: make_q_network(cfg.model, env, CPU),
                           transition_keys=transition_keys(env), observation_spec=env.full_observation_spec_unbatched, num_envs=num_envs, device=CPU,
                           total_updates=1000)
    env.close()
    return learner, cfg


def _block(observations: torch.Tensor, generator: torch.Generator) -> TensorDict:
    """``K * B`` transitions whose next observations are drawn from ``observations`` ``[M, *O]``, with PER weights."""
    n = K * B
    pick = torch.randint(0, len(observations), (n,), generator=generator)
    terminated = torch.rand(n, 1, generator=generator) < 0.1
    return TensorDict({
        OBSERVATION_KEY: observations[torch.randint(0, len(observations), (n,), generator=generator)],
        "action": torch.randint(0, 2, (n,), generator=generator),
        ("next", OBSERVATION_KEY): observations[pick],
        REWARD_KEY: torch.rand(n, 1, generator=generator),
        ("next", "done"): terminated,
        ("next", "terminated"): terminated,
        PRIORITY_WEIGHT_KEY: torch.rand(n, generator=generator) + 0.5,
        STEPS_TO_NEXT_OBS_KEY: torch.ones(n, 1, dtype=torch.long),  # (read with n-step returns: Breakout's preset)
    }, batch_size=[n])


def _collect(observations: torch.Tensor) -> TensorDict:
    """A collect ``[T]`` of one env whose next observations are ``observations`` ``[T, *O]``."""
    steps = len(observations)
    return TensorDict({("next", OBSERVATION_KEY): observations, REWARD_KEY: torch.zeros(steps, 1),
                       ("next", "done"): torch.zeros(steps, 1, dtype=torch.bool)}, batch_size=[steps])


@pytest.mark.parametrize("task", ["vector", "frames"])
def test_an_often_seen_observation_earns_less_intrinsic_reward_than_a_novel_one(task):
    generator = torch.Generator().manual_seed(0)
    if task == "vector":  # CartPole's 4 numbers
        learner, _ = _learner(["exploration.update_fraction=1.0"])
        seen = torch.randn(8, 4, generator=generator)
        novel = torch.randn(8, 4, generator=generator) * 3 + 5
    else:  # Breakout's 8 stacked 84x84 frames (RND reads the newest, normalised per pixel)
        learner, _ = _learner(["env=breakout", "exploration.update_fraction=1.0", "train.precision=fp32"])
        seen = torch.randint(0, 60, (8, 8, 84, 84), generator=generator, dtype=torch.uint8)
        novel = torch.randint(120, 256, (8, 8, 84, 84), generator=generator, dtype=torch.uint8)
        assert learner.rnd.obs_rms.mean.shape == (1, 84, 84)  # per pixel of one frame
    for _ in range(4):
        learner.observe(_collect(seen))  # the statistics see the observations the agent meets
    before_seen = learner.rnd.intrinsic_reward(seen).mean()
    for _ in range(40 if task == "vector" else 15):  # K updates of the predictor per phase, on seen observations only
        learner.learn(_block(seen, generator))
    after_seen, after_novel = learner.rnd.intrinsic_reward(seen).mean(), learner.rnd.intrinsic_reward(novel).mean()
    assert after_seen < 0.5 * before_seen  # the predictor learned what it saw...
    assert after_seen < 0.5 * after_novel  # ...and not what it never saw


def test_the_exploitation_agent_never_learns_from_intrinsic_reward():
    learner, cfg = _learner([])
    # Twins of the exploitation agent at its initial weights: one learns from the extrinsic reward alone, the other
    # (the control that shows this test can fail) from the combined reward the exploration agent learns from.
    extrinsic = Learner(cfg.train, copy.deepcopy(learner.exploit.q_network), transition_keys=learner.exploit.gradient_update.transition_keys,
                        device=CPU, total_updates=1000)
    combined = Learner(cfg.train, copy.deepcopy(learner.exploit.q_network), transition_keys=learner.exploit.gradient_update.transition_keys,
                       device=CPU, total_updates=1000, reward_key=COMBINED_REWARD_KEY)
    generator = torch.Generator().manual_seed(0)
    observations = torch.randn(256, 4, generator=generator)
    learner.observe(_collect(observations[:64]))
    for _ in range(3):
        block = _block(observations, generator)
        twin_block = block.clone()  # (without the intrinsic and combined rewards the RND learner adds)
        learned = learner.learn(block)
        assert (block.get(INTRINSIC_REWARD_KEY) > 0).all() and learner.alpha > 0  # the combined reward differs...
        assert not torch.equal(block.get(COMBINED_REWARD_KEY), block.get(REWARD_KEY))
        alone = extrinsic.learn(twin_block)
        twin_block.set(COMBINED_REWARD_KEY, block.get(COMBINED_REWARD_KEY))
        mixed = combined.learn(twin_block)
        assert torch.equal(learned.losses, alone.losses)  # ...and the exploitation agent's updates are those of extrinsic reward
        assert not torch.equal(learned.losses, mixed.losses)
    for mine, theirs in zip(learner.exploit.q_network.parameters(), extrinsic.q_network.parameters()):
        assert torch.equal(mine, theirs)
    assert any(not torch.equal(a, b) for a, b in zip(learner.exploit.q_network.parameters(), combined.q_network.parameters()))


def test_a_non_episodic_exploration_agent_bootstraps_through_terminations():
    learner, cfg = _learner(["exploration.explorer_episodic=false"])
    keys = learner.exploit.gradient_update.transition_keys
    # Twins at the initial weights, both episodic: the exploration agent's learns on the block with its terminations
    # cleared (what the non-episodic agent must match), the other on the block as sampled (the control), and the
    # exploitation agent's twin on the block as sampled (it stays episodic).
    cleared = Learner(cfg.train, copy.deepcopy(learner.explore.q_network), transition_keys=keys, device=CPU,
                      total_updates=1000, reward_key=COMBINED_REWARD_KEY)
    as_sampled = Learner(cfg.train, copy.deepcopy(learner.explore.q_network), transition_keys=keys, device=CPU,
                         total_updates=1000, reward_key=COMBINED_REWARD_KEY)
    exploit_twin = Learner(cfg.train, copy.deepcopy(learner.exploit.q_network), transition_keys=keys, device=CPU, total_updates=1000)
    generator = torch.Generator().manual_seed(0)
    observations = torch.randn(256, 4, generator=generator)
    learner.observe(_collect(observations[:64]))
    block = _block(observations, generator)
    terminated = torch.arange(K * B).reshape(-1, 1) % 3 == 0  # a third of the transitions end their episode
    block.set(("next", "done"), terminated)
    block.set(TERMINATED_KEY, terminated)
    twin_block = block.clone()  # (without the combined reward, set below once the RND learner has computed it)
    learned = learner.learn(block)
    twin_block.set(COMBINED_REWARD_KEY, block.get(COMBINED_REWARD_KEY))
    assert torch.equal(learned.losses, exploit_twin.learn(twin_block.clone()).losses)  # the exploitation agent: episodic
    as_sampled.learn(twin_block.clone())
    twin_block.set(TERMINATED_KEY, torch.zeros_like(terminated))
    cleared.learn(twin_block)
    assert torch.equal(block.get(TERMINATED_KEY), terminated)  # the stored flags are left as they are
    for mine, theirs in zip(learner.explore.q_network.parameters(), cleared.q_network.parameters()):
        assert torch.equal(mine, theirs)
    assert any(not torch.equal(a, b) for a, b in zip(learner.explore.q_network.parameters(), as_sampled.q_network.parameters()))


def _equal(a, b) -> bool:
    """Deep equality of state dicts (tensors by value)."""
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a == b


@pytest.fixture(scope="module")
def rnd_run(tmp_path_factory):
    """A short CartPole run with exploration=rnd (2,000 steps, checkpoints every 1,000)."""
    run_dir = tmp_path_factory.mktemp("rnd") / "run"
    result = run_module("rlpipe.train", "exploration=rnd", "train.total_steps=2000", "train.init_random_steps=500",
                        "checkpoint.interval_steps=1000", "eval.interval_steps=1000", "eval.episodes=2", "train.compile=false",
                        "train.log_interval_steps=500", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-2000:]
    return run_dir


def test_a_checkpoint_holds_both_agents_rnd_and_alpha_and_restores_them(rnd_run):
    payload = load_checkpoint(rnd_run / "checkpoints" / "last.pt")
    for name in ("q_network", "optimizer", "explore/q_network", "explore/optimizer", "explore/target_network", "rnd", "rnd/optimizer"):
        assert payload.get(name) is not None, name
    stored = payload["rnd"]
    assert float(stored["alpha"]) == pytest.approx(0.5 + (0.1 - 0.5) * 2000 / 200_000)  # the schedule at step 2,000
    assert float(stored["obs_rms.count"]) == pytest.approx(2000, abs=0.01)  # every collected next observation
    assert not _equal(payload["q_network"], payload["explore/q_network"])  # two agents, two networks

    learner, cfg = _learner(["train.batch_size=64"])  # a fresh learner as a resumed run builds it
    pieces = learner.pieces()
    restore_checkpoint(payload, pieces=pieces)
    for name, piece in pieces.items():
        if piece is not None:
            assert _equal(piece.state_dict(), payload[name]), name
    assert learner.alpha == pytest.approx(float(stored["alpha"]))
    assert torch.equal(learner.rnd.obs_rms.mean, stored["obs_rms.mean"])
    assert torch.equal(learner.rnd.scale_stats.var, stored["scale_stats.var"])


def test_a_resumed_rnd_run_continues_its_statistics_agents_and_alpha(rnd_run, tmp_path):
    before = load_checkpoint(rnd_run / "checkpoints" / "last.pt")
    resumed_dir = tmp_path / "resumed"
    result = run_module("rlpipe.train", f"resume={rnd_run / 'checkpoints' / 'last.pt'}", "train.total_steps=3000",
                        f"hydra.run.dir={resumed_dir}")
    assert result.returncode == 0, result.stderr[-2000:]
    after = load_checkpoint(resumed_dir / "checkpoints" / "last.pt")
    # The statistics went on counting from the checkpoint's (a fresh start would count 1,000)
    assert float(after["rnd"]["obs_rms.count"]) == pytest.approx(3000, abs=0.01)
    assert float(after["rnd"]["alpha"]) == pytest.approx(0.5 + (0.1 - 0.5) * 3000 / 200_000)
    assert after["counters"]["updates"] > before["counters"]["updates"]
    for agent in ("q_network", "explore/q_network"):  # both agents kept learning
        assert any(not torch.equal(a, b) for a, b in zip(before[agent].values(), after[agent].values()))
    assert after["explore/optimizer"]["state"][0]["step"] > before["explore/optimizer"]["state"][0]["step"]
    metrics = {path.stem for path in (resumed_dir / "logs" / "csv" / "scalars" / "rnd").glob("*.csv")}
    assert metrics == {"alpha", "intrinsic_mean", "predictor_loss"}
    explore_metrics = {path.stem for path in (resumed_dir / "logs" / "csv" / "scalars" / "explore").glob("*.csv")}
    assert {"loss", "q_mean"} <= explore_metrics


def test_either_agent_loads_and_evaluates(rnd_run):
    checkpoint = rnd_run / "checkpoints" / "last.pt"
    payload = load_checkpoint(checkpoint)
    exploit, explore = Agent.load(checkpoint), Agent.load(checkpoint, agent="exploration")
    assert _equal(exploit.q_network.state_dict(), payload["q_network"])
    assert _equal(explore.q_network.state_dict(), payload["explore/q_network"])
    result = run_module("rlpipe.evaluate", f"checkpoint={checkpoint}", "agent=exploration", "eval.episodes=2")
    assert result.returncode == 0, result.stderr
    assert result.json_lines()[-1]["agent"] == "exploration"


def test_a_single_agent_checkpoint_has_no_exploration_agent(tmp_path):
    run_dir = tmp_path / "run"
    result = run_module("rlpipe.train", "train.total_steps=600", "train.init_random_steps=300", "eval.episodes=1",
                        "train.compile=false", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-2000:]
    with pytest.raises(CheckpointError, match="has no exploration agent"):
        Agent.load(run_dir / "checkpoints" / "last.pt", agent="exploration")
    result = run_module("rlpipe.evaluate", f"checkpoint={run_dir / 'checkpoints' / 'last.pt'}", "agent=exploration")
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1 and "has no exploration agent" in result.stderr


def test_rnd_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="alpha_final"):
        compose_config(["exploration=rnd", "exploration.alpha_final=1.5"])
    with pytest.raises(ConfigError, match="alpha_schedule=exponential"):
        compose_config(["exploration=rnd", "exploration.alpha_schedule=exponential", "exploration.alpha_final=0"])
    for env in ("breakout", "cartpole"):
        with pytest.raises(ConfigError, match="episodic_novelty"):
            compose_config([f"env={env}", "exploration=rnd", "exploration.episodic_novelty=true"])
    with pytest.raises(ConfigError, match="novelty_input=agent_state"):
        compose_config(["env=cartpole", "exploration=rnd", "exploration.novelty_input=agent_state"])
    with pytest.raises(ConfigError, match="exploit_acting_share"):
        compose_config(["exploration=rnd", "exploration.exploit_acting_share=1.5"])


def test_rnd_on_the_agent_state_reads_and_stores_the_agent_state():
    learner, cfg = _learner(["env=doorkey_primitive"])  # its tuned preset: novelty_input=agent_state
    assert cfg.exploration.novelty_input == "agent_state"
    assert learner.stored_keys == (("next", AGENT_STATE_KEY),)
    env = make_env(cfg.env)
    rollout = env.rollout(64, break_when_any_done=False)  # [T]: random actions
    replay = make_replay_buffer(cfg.buffer, cfg.env, env, extra_keys=learner.stored_keys)
    env.close()
    learner.observe(rollout)
    replay.extend(rollout)
    stored = replay.storage[:64]
    assert torch.equal(stored.get(("next", AGENT_STATE_KEY)), rollout.get(("next", AGENT_STATE_KEY)))
    assert learner.rnd.obs_rms.mean.shape == rollout.get(AGENT_STATE_KEY).shape[-1:]  # statistics of the agent state
    # A learning phase's intrinsic reward is the novelty of the next agent states, whatever the layout: the
    # observations are scrambled here, and the reward is the one computed from the agent states beforehand.
    block = stored.clone()
    block.set(PRIORITY_WEIGHT_KEY, torch.ones(64))
    block.set(("next", OBSERVATION_KEY), block.get(("next", OBSERVATION_KEY)).flip(0))
    expected = learner.rnd.intrinsic_reward(block.get(("next", AGENT_STATE_KEY)))  # [64, 1]
    learner.learn(block)
    assert torch.allclose(block.get(INTRINSIC_REWARD_KEY), expected)


def test_episodic_novelty_rewards_only_an_observations_first_visit_in_its_episode():
    learner, cfg = _learner(["env=doorkey_primitive", "exploration.novelty_input=observation",
                             "exploration.episodic_novelty=true"], num_envs=2)
    env = make_env(cfg.env)
    a, b, c, d = torch.eye(env.full_observation_spec_unbatched[OBSERVATION_KEY].shape[-1])[:4]  # distinct observations

    def collect(observations, next_observations, done) -> TensorDict:  # [E=2, T]
        done = torch.tensor(done).unsqueeze(-1)
        return TensorDict({
            OBSERVATION_KEY: torch.stack([torch.stack(row) for row in observations]),
            "action": torch.zeros(2, len(done[0]), dtype=torch.long),
            ("next", OBSERVATION_KEY): torch.stack([torch.stack(row) for row in next_observations]),
            REWARD_KEY: torch.zeros(2, len(done[0]), 1), ("next", "done"): done, ("next", "terminated"): done.clone(),
        }, batch_size=[2, len(done[0])])

    # Env 0: reset on a, then b a b c (ends); reset on d, then b b. Env 1: reset on a, then b c, then (next
    # collect) c a d, its episode running on across the two collects.
    first = collect([[a, b, a, b, d, b], [a, b, c, c, c, c]], [[b, a, b, c, b, b], [b, c, c, c, c, c]],
                    [[False, False, False, True, False, False], [False] * 6])
    second = collect([[b, b, b], [c, c, a]], [[b, c, a], [c, a, d]], [[False] * 3, [False] * 3])
    learner.observe(first)
    learner.observe(second)
    assert first.get(FIRST_VISIT_KEY).squeeze(-1).tolist() == [
        [True, False, False, True, True, False],  # a was the reset; the second episode forgets b
        [True, True, False, False, False, False],
    ]
    assert second.get(FIRST_VISIT_KEY).squeeze(-1).tolist() == [[False, True, True], [False, False, True]]
    # The replay stores the flag with the transition (the learner's stored_keys), and a learning phase pays the
    # intrinsic reward on first visits only.
    replay = make_replay_buffer(cfg.buffer, cfg.env, env, extra_keys=learner.stored_keys)
    env.close()
    replay.extend(first)
    assert torch.equal(replay.storage[:12].get(FIRST_VISIT_KEY), first.get(FIRST_VISIT_KEY).reshape(12, 1))
    block = _block(torch.eye(len(a))[:32], torch.Generator().manual_seed(1))
    first_visit = torch.arange(K * B).remainder(2).bool().unsqueeze(-1)  # [K*B, 1]
    block.set(FIRST_VISIT_KEY, first_visit)
    learner.learn(block)
    intrinsic, extrinsic = block.get(INTRINSIC_REWARD_KEY), block.get(REWARD_KEY)
    assert (intrinsic[first_visit] > 0).all() and (intrinsic[~first_visit] == 0).all()
    assert torch.allclose(block.get(COMBINED_REWARD_KEY)[~first_visit], (1 - learner.alpha) * extrinsic[~first_visit])


# Three runs cover the four features: episodic novelty on observations with both agents acting; the agent state with
# episodic novelty and n-step targets (compiled); the agent state alone.
@pytest.mark.parametrize("variant", [["exploration.novelty_input=observation", "exploration.episodic_novelty=true",
                                      "exploration.exploit_acting_share=0.5"],
                                     ["exploration.novelty_input=agent_state"],
                                     ["exploration.novelty_input=agent_state", "exploration.episodic_novelty=true",
                                      "train.n_step=3", "train.steps_per_collect=8"]],
                         ids=["episodic_novelty_exploit_acting", "agent_state", "n_step"])
def test_a_training_run_stores_what_rnd_reads(variant, tmp_path):
    """train.py's wiring: the learner's flags and inputs reach the replay (observed before stored, kept as
    stored_keys), on two envs; without it the replay or the learning phase fails on a missing key. The n-step
    variant compiles its updates as the preset does; the others run eager (the compile is 60% of such a short run)."""
    run_dir = tmp_path / "run"
    compile = "train.n_step=3" in variant
    result = run_module("rlpipe.train", "env=doorkey_primitive", "exploration=rnd", *variant, "env.num_envs=2", f"train.compile={compile}",
                        "env.max_decisions=40", "train.total_steps=1200", "train.init_random_steps=400", "eval.episodes=2",
                        "eval.interval_steps=1200", "checkpoint.interval_steps=1200", "train.log_interval_steps=400",
                        f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["finished"] and summary["updates"] > 0
    assert (run_dir / "logs" / "csv" / "scalars" / "rnd" / "intrinsic_mean.csv").is_file()
    if "exploration.exploit_acting_share=0.5" in variant:  # both agents played, each env's collects drawn apart
        with (run_dir / "logs" / "csv" / "scalars" / "rnd" / "exploit_acting_share.csv").open() as file:
            shares = [float(line.split(",")[1]) for line in list(file)[1:]]
        assert shares and all(0.0 < share < 1.0 for share in shares), shares


def test_the_exploitation_agent_plays_the_envs_drawn_for_it_and_only_those():
    learner, cfg = _learner(["exploration.exploit_acting_share=0.5"], num_envs=4)
    actor = learner.acting_network
    observation = torch.randn(4, 4, generator=torch.Generator().manual_seed(0))  # [E, D]: CartPole, 4 envs
    own = {name: network(TensorDict({OBSERVATION_KEY: observation}, batch_size=[4])).get("action_value")
           for name, network in (("explore", learner.explore.q_network), ("exploit", learner.exploit.q_network))}
    assert not torch.equal(own["explore"], own["exploit"])  # two agents that would act apart
    for plays in ([False] * 4, [True, False, True, False], [True] * 4):
        actor.exploit_plays.copy_(torch.tensor(plays))
        acted = actor(TensorDict({OBSERVATION_KEY: observation}, batch_size=[4]))
        for env, exploit_plays in enumerate(plays):
            expected = own["exploit" if exploit_plays else "explore"][env]
            assert torch.equal(acted.get("action_value")[env], expected)
            assert torch.equal(acted.get("action")[env], expected.argmax(-1))
    drawn = []
    torch.manual_seed(0)  # (the draws use torch's global generator, as in training)
    for _ in range(200):  # each collect draws who plays each env's next steps
        learner.observe(TensorDict({("next", OBSERVATION_KEY): torch.randn(4, 2, 4), REWARD_KEY: torch.zeros(4, 2, 1),
                                    ("next", "done"): torch.zeros(4, 2, 1, dtype=torch.bool)}, batch_size=[4, 2]))
        drawn.append(actor.exploit_plays.clone())
    assert 0.4 < torch.stack(drawn).float().mean() < 0.6
    single, _ = _learner([])
    assert single.acting_network is single.explore.q_network  # share 0: the exploration agent plays every step


def test_moving_statistics_follow_a_shrinking_stream_where_all_history_statistics_lag():
    """Why the scaling statistics are hand-written (rlpipe.rnd.MovingMeanStd): RND's error shrinks as the predictor
    learns; all-history statistics (TorchRL's RunningMeanStd) keep the early spread, recent-weighted ones follow."""
    from torchrl.envs.transforms.rnd import RunningMeanStd

    from rlpipe.rnd import MovingMeanStd

    generator = torch.Generator().manual_seed(0)
    moving, everything = MovingMeanStd(horizon=100), RunningMeanStd(shape=())
    for scale in (10.0, 1.0):  # 2,000 values at std 10, then 2,000 at std 1, four at a time
        for _ in range(500):
            values = torch.randn(4, generator=generator) * scale
            moving.update(values)
            everything.update(values)
    assert 0.5 < float(moving.var) < 2.0
    assert float(everything.var) > 25.0


@pytest.mark.parametrize("normalise_by", ["reward", "return"])
def test_the_scaling_statistics_see_the_reward_or_the_discounted_return(normalise_by):
    learner, _ = _learner([f"exploration.intrinsic_normalisation={normalise_by}"])
    observations = torch.randn(16, 4, generator=torch.Generator().manual_seed(0))
    learner.observe(_collect(observations))  # (the observation statistics change first, so recompute below)
    error = learner.rnd.error(learner.rnd.normalised_input(observations))
    returns = torch.zeros(())
    discounted = []
    for value in error:  # R <- gamma * R + r, never reset
        returns = 0.99 * returns + value
        discounted.append(returns)
    expected = torch.stack(discounted) if normalise_by == "return" else error
    assert float(learner.rnd.scale_stats.var) == pytest.approx(float(expected.var(unbiased=False)), rel=1e-4)
    assert float(learner.rnd.intrinsic_return) == (pytest.approx(float(discounted[-1]), rel=1e-5) if normalise_by == "return" else 0.0)
