"""The collector: TorchRL's ``Collector`` as training runs it (and the benchmarks measure it)."""

from __future__ import annotations

import torch
from tensordict.nn import TensorDictModuleBase
from torchrl.collectors import Collector
from torchrl.envs import EnvBase


def make_collector(
    env: EnvBase, policy: TensorDictModuleBase, *, steps_per_collect: int, device: torch.device, random_steps: int = 0
) -> Collector:
    """An endless collector of ``steps_per_collect`` agent steps per batch (``[num_envs, steps]``, or ``[steps]``
    for one env), stored on the CPU; the training loop decides when to stop.

    Args:
        env: the training env (one, a vectorized one, or a ``SerialEnv``/``ParallelEnv`` of several).
        policy: the acting policy (Q-network + exploration).
        steps_per_collect: agent steps per batch, all envs together.
        device: the policy's device.
        random_steps: agent steps of uniform random actions first (the buffer prefill; rounded up to whole batches).
    """
    return Collector(
        env,
        policy,
        frames_per_batch=steps_per_collect,
        total_frames=-1,
        init_random_frames=random_steps,
        policy_device=device,
        env_device=env.device,
        storing_device="cpu",
        track_traj_ids=False,
        auto_register_policy_transforms=False,  # the policy is not recurrent: it needs no extra env transforms
        # On a GPU: no torch.cuda.synchronize() after every policy and env step (the actions' copy to the CPU env
        # waits for them anyway); acting and the next learning phase's kernels can then overlap.
        no_cuda_sync=device.type == "cuda",
    )
