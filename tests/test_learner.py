"""The learner object (issue 12, its first part): ``Learner.learn`` gives exactly the updates of the loop it replaced
in ``rlpipe/train.py``, and a checkpoint finds every stateful piece under its old name."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from tensordict import TensorDict

from conftest import compose_config
from rlpipe.envs import make_env, transition_keys
from rlpipe.keys import PRIORITY_WEIGHT_KEY
from rlpipe.learner import Learner, adam_step_scale, make_gradient_update, make_loss, make_lr_scheduler, make_optimizer, make_target_updater
from rlpipe.models import make_q_network

K, B = 6, 16  # updates in the phase, minibatch size


def _block(generator: torch.Generator) -> TensorDict:
    """``K * B`` CartPole-shaped transitions with PER weights (fixed by the generator's seed)."""
    n = K * B
    terminated = torch.rand(n, 1, generator=generator) < 0.1
    return TensorDict({
        "observation": torch.randn(n, 4, generator=generator),
        "action": torch.randint(0, 2, (n,), generator=generator),
        ("next", "observation"): torch.randn(n, 4, generator=generator),
        ("next", "reward"): torch.rand(n, 1, generator=generator),
        ("next", "done"): terminated,
        ("next", "terminated"): terminated,
        PRIORITY_WEIGHT_KEY: torch.rand(n, generator=generator) + 0.5,
    }, batch_size=[n])


@pytest.mark.parametrize("schedule", [["train.lr_schedule=linear", "train.lr_final=1e-5"], ["train.target_update=soft"]])
def test_learner_gives_the_updates_of_the_loop_it_replaced(schedule):
    cfg = compose_config(["train.compile=false", f"train.batch_size={B}", "train.target_update_steps=4", *schedule])
    env = make_env(cfg.env)
    device = torch.device("cpu")
    torch.manual_seed(0)
    q_network = make_q_network(cfg.model, env, device)
    twin = copy.deepcopy(q_network)
    keys = transition_keys(env)
    env.close()

    learner = Learner(cfg.train, q_network, transition_keys=keys, device=device, total_updates=100)
    # Before the extraction, rlpipe/train.py built these pieces itself and ran this loop per learning phase.
    loss_module = make_loss(cfg.train, twin)
    optimizer = make_optimizer(cfg.train, loss_module, device)
    lr_scheduler = make_lr_scheduler(cfg.train, optimizer, total_updates=100)
    target_updater = make_target_updater(cfg.train, loss_module)
    update = make_gradient_update(cfg.train, loss_module, optimizer, transition_keys=keys, device=device)

    generator = torch.Generator().manual_seed(1)
    for _ in range(3):  # three phases: hard copies (every 4 updates) fall inside and across them
        block = _block(generator)
        learned = learner.learn(block)
        results = []
        for minibatch in block.split(B):
            results.append(update(minibatch))
            target_updater.step()
            if lr_scheduler is not None:
                lr_scheduler.step()
        assert torch.equal(learned.losses, torch.stack([r.loss for r in results]))
        assert torch.equal(learned.priorities, torch.cat([r.priority for r in results]))
        assert torch.equal(learned.grad_norms, torch.stack([r.grad_norm for r in results]))
        assert learned.losses.shape == (K,) and learned.priorities.shape == (K * B,)
    for mine, theirs in zip(q_network.parameters(), twin.parameters()):
        assert torch.equal(mine, theirs)
    assert (learner.loss_module.target_value_network_params == loss_module.target_value_network_params).all()
    assert learner.lr == pytest.approx(float(optimizer.param_groups[0]["lr"]))
    assert learner.lr != cfg.train.lr or cfg.train.lr_schedule == "constant"  # (the linear schedule moved)


def test_learner_names_the_pieces_a_checkpoint_stores():
    cfg = compose_config(["train.compile=false", "train.lr_schedule=cosine"])
    env = make_env(cfg.env)
    learner = Learner(cfg.train, make_q_network(cfg.model, env, torch.device("cpu")), transition_keys=transition_keys(env),
                      device=torch.device("cpu"), total_updates=10)
    env.close()
    pieces = learner.pieces()
    assert set(pieces) == {"q_network", "target_network", "optimizer", "lr_scheduler", "target_updater"}
    assert all(hasattr(piece, "state_dict") and hasattr(piece, "load_state_dict") for piece in pieces.values())
    learner.set_lr(3e-4)
    assert learner.lr == pytest.approx(3e-4)


def test_adam_step_scale_measures_how_much_of_the_step_epsilon_leaves():
    # After one step on a constant gradient g, Adam's bias-corrected m_hat is g and sqrt(v_hat) is |g|: the undamped
    # step is 1 per element, the damped one |g| / (|g| + eps).
    eps = 1e-4
    small, large, unused = (torch.nn.Parameter(torch.zeros(3)) for _ in range(3))
    optimizer = torch.optim.Adam([small, large, unused], lr=1e-3, eps=eps)
    small.grad, large.grad, unused.grad = torch.full((3,), 1e-6), torch.full((3,), 1.0), torch.zeros(3)
    optimizer.step()
    state = optimizer.state_dict()
    damped, undamped = adam_step_scale(state, indices=[0]), adam_step_scale(state, indices=[1])
    assert damped.fraction == pytest.approx(1e-6 / (1e-6 + eps), rel=1e-3) and damped.below_eps == pytest.approx(1.0)
    assert undamped.fraction == pytest.approx(1 / (1 + eps), rel=1e-6) and undamped.below_eps == 0.0
    overall = adam_step_scale(state)  # the never-updated elements are counted apart, not as damped
    assert (overall.elements, overall.no_gradient) == (6, 3)
    assert overall.fraction == pytest.approx((damped.fraction + undamped.fraction) / 2, rel=1e-6)
    assert overall.below_eps == pytest.approx(0.5)
    # a gradient that has stopped: its v_hat decays slowly, its m_hat fast; it no longer counts as a damped step
    small.grad, large.grad, unused.grad = torch.zeros(3), torch.full((3,), 1.0), torch.zeros(3)
    for _ in range(200):
        optimizer.step()
    assert adam_step_scale(optimizer.state_dict()).fraction == pytest.approx(1.0, abs=1e-3)
    assert math.isnan(adam_step_scale(torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))]).state_dict()).fraction)  # before a step
