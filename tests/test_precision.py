"""Mixed precision (``train.precision``): bf16 autocast of the Q-network agrees with fp32, still learns, keeps the TD
target and the loss in fp32, and falls back to fp32 with a log line where the hardware cannot run it."""

from __future__ import annotations

import logging

import pytest
import torch
from omegaconf import OmegaConf

from conftest import compose_config

from rlpipe.envs import make_env
from rlpipe.keys import STEPS_TO_NEXT_OBS_KEY, TRANSITION_KEYS
from rlpipe.learner import GradientUpdate, make_loss, make_optimizer
from rlpipe.models import AutocastSequential, make_q_network
from rlpipe.replay import make_replay_buffer
from rlpipe.runtime import resolve_precision

CPU = torch.device("cpu")
# bf16 keeps 8 bits of mantissa (relative rounding 2^-9, about 0.2%); through three convolutions and two linear
# layers the Q-values move by well under 2% of their spread, and the Huber loss of the same batch by under 5%.
LOSS_RELATIVE_TOLERANCE = 0.05


@pytest.fixture(scope="module")
def breakout_batch():
    """A fixed batch of 32 real Breakout transitions (3-step, as the preset samples them), and the config."""
    cfg = compose_config(["env=breakout", "env.num_envs=1", "buffer.capacity=2000"])
    env = make_env(cfg.env, num_envs=1, seed=0)
    torch.manual_seed(0)
    replay = make_replay_buffer(cfg.buffer, cfg.env, env, n_step=cfg.train.n_step, gamma=cfg.train.gamma)
    replay.extend(env.rollout(400, break_when_any_done=False))
    batch = replay.sample(32).select(*TRANSITION_KEYS, STEPS_TO_NEXT_OBS_KEY)
    yield cfg, env, batch
    env.close()


def _networks(cfg, env):
    """The same weights in an fp32 and a bf16 Q-network. bf16 autocast runs on every CPU (without AVX512-BF16 or AMX
    its kernels are slower, not different in what they compute), so these checks run on every machine."""
    fp32 = make_q_network(cfg.model, env, CPU)
    bf16 = make_q_network(cfg.model, env, CPU, precision=torch.bfloat16)
    bf16.load_state_dict(fp32.state_dict())  # AutocastSequential keeps the parameter names
    return fp32, bf16


def test_bf16_and_fp32_losses_agree_on_a_fixed_batch(breakout_batch):
    cfg, env, batch = breakout_batch
    fp32, bf16 = _networks(cfg, env)
    assert isinstance(bf16.module[0].module, AutocastSequential)
    q32 = fp32(batch.clone())["action_value"]
    q16 = bf16(batch.clone())["action_value"]
    assert q16.dtype == torch.float32  # Q-values leave the network in fp32: targets and loss stay fp32
    assert (q16 - q32).abs().max() < 0.02 * (q32.max() - q32.min()).clamp_min(1e-3)
    loss32 = make_loss(cfg.train, fp32)(batch.clone())["loss"]
    loss16 = make_loss(cfg.train, bf16)(batch.clone())["loss"]
    assert loss16.dtype == torch.float32
    assert abs(loss16.item() - loss32.item()) <= LOSS_RELATIVE_TOLERANCE * loss32.item(), (loss16.item(), loss32.item())


@pytest.mark.parametrize("compile", [False, True])
def test_a_bf16_update_lowers_the_loss_on_a_fixed_batch(breakout_batch, compile):
    cfg, env, batch = breakout_batch
    torch.manual_seed(0)
    # Early Breakout frames differ in a few pixels only, so a real batch has a loss floor that hides learning:
    # fit distinct random frames and rewards instead (the real batch's structure, keys and dtypes).
    # 8 of the 32 transitions: a bf16 Nature-CNN update on a CPU without AVX512-BF16 or AMX costs about 1 s per 32.
    batch = batch[:8].clone()
    for key in ("observation", ("next", "observation")):
        batch.set(key, torch.randint(0, 256, batch.get(key).shape, dtype=torch.uint8))
    batch.set(("next", "reward"), torch.randn(batch.get(("next", "reward")).shape))
    _, q = _networks(cfg, env)
    loss_module = make_loss(cfg.train, q)
    optimizer = make_optimizer(OmegaConf.merge(cfg.train, {"lr": 1e-3}), loss_module, CPU)
    update = GradientUpdate(loss_module, optimizer, max_grad_norm=cfg.train.max_grad_norm, compile=compile, device=CPU,
                            transition_keys=TRANSITION_KEYS + (STEPS_TO_NEXT_OBS_KEY,))
    losses = [update(batch).loss.item() for _ in range(40)]
    assert all(p.dtype == torch.float32 for p in q.parameters())  # the weights Adam updates stay fp32
    assert sum(losses[-5:]) < 0.5 * sum(losses[:5]), losses


def _cpu_features(monkeypatch, *, amx: bool, avx512_bf16: bool) -> None:
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)


def test_bf16_falls_back_to_fp32_with_a_log_line_where_the_cpu_cannot_run_it(monkeypatch, caplog):
    _cpu_features(monkeypatch, amx=False, avx512_bf16=False)
    with caplog.at_level(logging.INFO, logger="rlpipe"):
        assert resolve_precision("bf16", CPU) == torch.float32
    assert "train.precision=bf16 is not supported on this CPU" in caplog.text
    assert "falling back to fp32" in caplog.text


@pytest.mark.parametrize(
    ("amx", "avx512_bf16", "auto", "bf16"),
    [
        (True, True, torch.bfloat16, torch.bfloat16),  # AMX: bf16 pays, auto takes it
        (False, True, torch.float32, torch.bfloat16),  # AVX512-BF16 only: measured slower, auto keeps fp32
        (False, False, torch.float32, torch.float32),  # neither: fp32 (bf16 falls back)
    ],
)
def test_auto_precision_takes_bf16_only_where_it_pays(monkeypatch, caplog, amx, avx512_bf16, auto, bf16):
    _cpu_features(monkeypatch, amx=amx, avx512_bf16=avx512_bf16)
    with caplog.at_level(logging.INFO, logger="rlpipe"):
        assert resolve_precision("auto", CPU) == auto
        assert resolve_precision("bf16", CPU) == bf16
        assert resolve_precision("fp32", CPU) == torch.float32
    assert f"train.precision=auto: {'bf16' if auto == torch.bfloat16 else 'fp32'} on this CPU" in caplog.text
