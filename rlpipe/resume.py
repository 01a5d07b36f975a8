"""Resuming a run: the checkpoint's configuration, with the command line's overrides applied where they can be.

A resumed run takes every key from its checkpoint; a key the command line sets is applied when the loop reads it
afresh and refused, with one line naming the key and the reason, when its state comes back from the checkpoint.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from rlpipe.config import ConfigError, leaves, validate

# What a resumed run cannot change: these pieces come back from the checkpoint as they were (prefixes of keys).
_FIXED_ON_RESUME = {
    "env": "the environment's layout and the replay buffer come from the checkpoint",
    "model": "the network's weights come from the checkpoint",
    "exploration": "the exploration module's state comes from the checkpoint",
    "buffer": "the replay buffer comes from the checkpoint",
    "train.seed": "the random-number states come from the checkpoint",
    "train.n_step": "the replay buffer stores transitions for the stored n-step setting",
    "train.adam_eps": "the optimizer's state (Adam's epsilon included) comes from the checkpoint",
    "train.lr_schedule": "the learning-rate schedule's state comes from the checkpoint",
    "train.lr_final": "the learning-rate schedule's state comes from the checkpoint",
    "train.target_update": "the target network's update rule is part of the stored state",
}
# ... except where the buffer lives on disk, which a resumed run may choose anew, and the reporting threshold.
_FREE_ON_RESUME = ("buffer.storage", "buffer.memmap_dir", "buffer.keep_memmap_files", "env.solved_return", "env.solved_success_rate",
                   "env.parallel")


def resumed_config(stored: dict[str, Any], cfg: DictConfig, overrides: list[str] | tuple[str, ...]) -> DictConfig:
    """The configuration of a resumed run: the checkpoint's, with this command line's overrides applied where they
    can be, refused with a :class:`ConfigError` naming the key where they cannot.

    A resumed run needs no overrides: every key the command line did not set takes the checkpoint's value. A key it
    did set (``train.total_steps=...``, or a group such as ``logger=tensorboard``) is applied when the loop reads it
    afresh (step budget, time limit, evaluation, checkpoints, logging, device, compile, precision, batch size,
    update ratio, target period, the learning rate of a constant schedule); a key whose state comes back from the
    checkpoint (``_FIXED_ON_RESUME``: env, model, exploration, buffer, seed, n-step, Adam epsilon, the
    learning-rate schedule) is refused when its value differs. A resumed run so never records a value it does not use.

    Args:
        stored: the checkpoint's configuration.
        cfg: the configuration composed from this command line (not yet validated: its values for keys the command
            line did not set are the defaults, and need not fit the checkpoint's).
        overrides: this command line's overrides (``key=value`` and ``group=option``), as Hydra lists them.
    """
    old = leaves(OmegaConf.to_container(validate(OmegaConf.create(stored)), resolve=True))
    new = leaves(OmegaConf.to_container(cfg, resolve=True))
    explicit = [override.lstrip("+~").split("=", 1)[0] for override in overrides]
    schedule = old.get("train.lr_schedule")
    merged, refused, reasons = dict(old), [], {}
    for key in sorted(set(old) | set(new)):
        if key == "resume":
            merged[key] = new.get(key)
            continue
        if old.get(key) == new.get(key) or not any(key == name or key.startswith(name + ".") for name in explicit):
            continue  # unchanged, or not set on this command line: the checkpoint's value stands
        reason = next((why for prefix, why in _FIXED_ON_RESUME.items() if key == prefix or key.startswith(prefix + ".")), None)
        if key in _FREE_ON_RESUME:
            reason = None
        if key in ("train.lr", "train.total_steps") and schedule != "constant":
            reason = f"the {schedule} learning-rate schedule's state (its length and base rate) comes from the checkpoint"
        if reason is not None:
            refused.append(key)
            reasons[key] = reason
        elif key in new:
            merged[key] = new[key]
        else:  # a key of the stored family that the new one lacks (e.g. logger=wandb -> logger=csv)
            merged.pop(key, None)
    if refused:
        # Name the key that says most: a group's kind (buffer=uniform changes buffer.kind, and drops buffer.alpha),
        # then a key both configurations have.
        key = min(refused, key=lambda k: (not k.endswith(".kind"), k not in old or k not in new, k))
        more = f"; also {len(refused) - 1} more key(s)" if len(refused) > 1 else ""
        raise ConfigError(f"cannot change {key}={new.get(key)!r} (the checkpoint has {old.get(key)!r}: {reasons[key]}) "
                          f"when resuming{more}; drop the override or start a new run")
    return validate(OmegaConf.create(_tree(merged)))


def _tree(flat: dict[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`leaves`."""
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, name = key.split(".")
        node = tree
        for parent in parents:
            if not isinstance(node.get(parent), dict):  # (a section off in one config, e.g. logger.wandb: null)
                node[parent] = {}
            node = node[parent]
        if not (value is None and isinstance(node.get(name), dict)):  # a section's keys outweigh its null
            node[name] = value
    return tree
