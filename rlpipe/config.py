"""Configuration schema and validation.

Hydra composes the run's configuration from ``conf/``; :func:`validate` then checks it before any work starts.
Every key must be known, of the declared type, and inside its allowed range; an error names the key and what is
allowed. The YAML files under ``conf/`` hold the values and a one-line comment per key; the dataclasses below hold
only the types and the rules. Groups with several families (``env``, ``model``, ``exploration``, ``buffer``) pick
their schema from their ``kind`` key, so a new family adds one dataclass and one entry in ``_FAMILY_SCHEMAS``;
``logger`` holds one entry per logger that is on (``logger=[csv,tensorboard]``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, Optional

from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException


class ConfigError(ValueError):
    """A configuration value is unknown, of the wrong type, or out of range."""


def env_name(env_id: str) -> str:
    """A short name for run directories: ``CartPole-v1`` -> ``cartpole``, ``ALE/Breakout-v5`` -> ``breakout``."""
    return re.sub(r"-v\d+$", "", env_id.rsplit("/", 1)[-1]).lower()


def reward_threshold(env_id: str) -> float | None:
    """The return at which gymnasium's registry counts ``env_id`` as solved (``EnvSpec.reward_threshold``), or None
    for an id without one (or an unknown id, which the env factory then refuses by name)."""
    import gymnasium as gym

    try:
        threshold = gym.spec(env_id).reward_threshold
    except gym.error.Error:
        return None
    return None if threshold is None else float(threshold)


# Evaluation means of the game score that count as solved (env.atari's solved_return); other games have none.
ATARI_SOLVED_RETURN = {
    "Breakout": 20.0,  # the original project's first bar
    "Pong": 18.0,  # near Nature DQN's 18.9 (Mnih et al. 2015)
}


def atari_solved_return(game: str) -> float | None:
    return ATARI_SOLVED_RETURN.get(game)


# Used by conf/env/*.yaml, so that `env.id=Acrobot-v1` on a classic preset names its run directory and its
# solved threshold after Acrobot, not CartPole.
OmegaConf.register_new_resolver("env_name", env_name, replace=True)
OmegaConf.register_new_resolver("reward_threshold", reward_threshold, replace=True)
OmegaConf.register_new_resolver("atari_solved_return", atari_solved_return, replace=True)


@dataclass(frozen=True)
class Rule:
    """A constraint on one config value, with the wording used in error messages."""

    test: Callable[[Any], bool]
    allowed: str


def one_of(*choices: str) -> Rule:
    return Rule(lambda v: v in choices, "one of " + ", ".join(choices))


def at_least(low: float) -> Rule:
    return Rule(lambda v: v >= low, f"a number >= {low}")


def positive() -> Rule:
    return Rule(lambda v: v > 0, "a number > 0")


def between(low: float, high: float) -> Rule:
    return Rule(lambda v: low <= v <= high, f"a number in [{low}, {high}]")


def _key(rule: Rule | None = None, default: Any = MISSING) -> Any:
    """A schema field: its type comes from the annotation, its value from conf/, its rule from here."""
    return field(default=default, metadata={"rule": rule})


@dataclass
class TrainConfig:
    seed: int = _key(at_least(0))
    device: str = _key(Rule(lambda v: v in ("auto", "cpu", "mps") or v.startswith("cuda"), "auto, cpu, cuda, cuda:N or mps"))
    total_steps: int = _key(at_least(1))
    time_limit_minutes: Optional[float] = _key(Rule(lambda v: v is None or v > 0, "null or a number > 0"), default=None)
    init_random_steps: int = _key(at_least(0))
    steps_per_collect: int = _key(at_least(1))
    updates_per_step: float = _key(positive())
    batch_size: int = _key(at_least(1))
    lr: float = _key(positive())
    lr_schedule: str = _key(one_of("constant", "linear", "cosine"))
    lr_final: float = _key(at_least(0.0))
    adam_eps: float = _key(positive())
    gamma: float = _key(between(0.0, 1.0))
    n_step: int = _key(at_least(1), default=1)  # defaults: checkpoints written before these keys existed
    loss: str = _key(one_of("smooth_l1", "l2", "l1"))
    max_grad_norm: float = _key(positive())
    target_update: str = _key(one_of("hard", "soft"))
    target_update_steps: int = _key(at_least(1))
    target_tau: float = _key(Rule(lambda v: 0.0 < v <= 1.0, "a number in (0, 1]"))
    compile: bool = _key()
    compile_step: Any = _key(Rule(lambda v: v in ("auto", True, False), "auto, true or false"), default="auto")  # (defaults:
    cudagraphs: bool = _key(default=False)  # checkpoints written before these keys existed)
    precision: str = _key(one_of("auto", "fp32", "bf16"), default="auto")
    num_threads: Optional[int] = _key(Rule(lambda v: v is None or v >= 1, "null or a number >= 1"), default=None)
    stop_on_solve: bool = _key()
    log_interval_steps: int = _key(at_least(1))


@dataclass
class EvalConfig:
    episodes: int = _key(at_least(1))
    interval_steps: int = _key(at_least(1))
    epsilon: float = _key(between(0.0, 1.0), default=0.0)
    greedy_game: bool = _key(default=False)  # (default: checkpoints written before it existed)

    @staticmethod
    def check(cfg: DictConfig) -> None:
        if cfg.eval.greedy_game and cfg.env.kind != "atari":
            raise ConfigError(f"eval.greedy_game=true is invalid with env={cfg.env.name}: the greedy game from a fixed start is "
                              f"an Atari figure (a deterministic game without NOOP starts and sticky actions); expected false")


@dataclass
class RecordConfig:  # defaults: checkpoints written before the section existed
    dataset: bool = _key(default=False)
    video: bool = _key(default=False)
    episodes: int = _key(at_least(1), default=1)
    output_dir: Optional[str] = _key(default=None)
    max_steps_per_episode: int = _key(at_least(1), default=4_500)
    validation_fraction: float = _key(Rule(lambda v: 0.0 <= v < 1.0, "a number in [0, 1)"), default=0.1)

    @staticmethod
    def check(cfg: DictConfig) -> None:
        if (cfg.record.dataset or cfg.record.video) and cfg.env.kind != "atari":
            switch = "record.dataset" if cfg.record.dataset else "record.video"
            raise ConfigError(f"{switch}=true is invalid with env={cfg.env.name}: gameplay recording needs an Atari game")


@dataclass
class CheckpointConfig:
    interval_steps: int = _key(at_least(1))
    save_buffer: bool = _key()


@dataclass
class ClassicEnvConfig:
    name: str = _key()
    kind: str = _key(one_of("classic"))
    id: str = _key()
    num_envs: int = _key(at_least(1))
    parallel: bool = _key(default=False)  # (default: checkpoints from before the key existed)
    solved_return: Optional[float] = _key(default=None)


def _is_screen_size(value: Any) -> bool:
    """``env.screen_size``: one size (square frames) or a ``[height, width]`` pair, every size >= 8."""
    pair = isinstance(value, (list, tuple, ListConfig))
    sizes = list(value) if pair else [value]
    return len(sizes) == (2 if pair else 1) and all(isinstance(size, int) and not isinstance(size, bool) and size >= 8 for size in sizes)


@dataclass
class AtariEnvConfig:
    name: str = _key()
    kind: str = _key(one_of("atari"))
    id: str = _key()
    # Defaults below: checkpoints written before these keys existed (the gym backend, its episode cap, no max-pool).
    game: Optional[str] = _key(default=None)
    backend: str = _key(one_of("ale_vector", "gym"), default="gym")
    num_envs: int = _key(at_least(1))
    parallel: bool = _key()
    solved_return: Optional[float] = _key(default=None)
    max_episode_steps: int = _key(at_least(1), default=27_000)
    frame_skip: int = _key(at_least(1))
    maxpool: bool = _key(default=False)
    repeat_action_probability: float = _key(between(0.0, 1.0))
    noop_max: int = _key(at_least(0))
    screen_size: Any = _key(Rule(_is_screen_size, "a size >= 8 (square frames) or a pair [height, width] of sizes >= 8"))
    grayscale: bool = _key(default=True)  # (default: checkpoints written before it existed)
    frame_stack: int = _key(at_least(1))
    episodic_life: bool = _key()
    living_penalty: float = _key(Rule(lambda v: v <= 0, "a number <= 0 (0 switches it off)"))
    life_loss_penalty: float = _key(Rule(lambda v: v <= 0, "a number <= 0 (0 switches it off)"))
    clip_reward_to_sign: bool = _key()

    @staticmethod
    def check(cfg: DictConfig) -> None:
        env = cfg.env
        if env.game is not None and env.id != f"ALE/{env.game}-v5":
            raise ConfigError(f"env.id={env.id} does not name env.game={env.game}: set env.game (env.id follows it as "
                              f"ALE/<game>-v5)")
        if env.backend == "gym" and not env.grayscale:
            raise ConfigError("env.grayscale=false is invalid with env.backend=gym: colour frames come from the ale_vector "
                              "backend; expected env.backend=ale_vector")
        if env.backend == "gym" and env.maxpool:
            raise ConfigError("env.maxpool=true is invalid with env.backend=gym: only the ale_vector backend max-pools frames")
        if env.clip_reward_to_sign and env.living_penalty != 0:
            raise ConfigError(f"env.living_penalty={env.living_penalty} is invalid with env.clip_reward_to_sign=true: the reward is "
                              f"clipped after shaping, so every step without a point would train as -1; expected 0, or "
                              f"env.clip_reward_to_sign=false (env=breakout's choice)")
        if env.backend == "ale_vector" and env.parallel:
            raise ConfigError("env.parallel=true is invalid with env.backend=ale_vector: its games already run in ale-py's "
                              "C++ threads; expected false (env.parallel is for env.backend=gym)")


@dataclass
class DoorKeyEnvConfig:
    name: str = _key()
    kind: str = _key(one_of("doorkey"))
    id: str = _key(one_of("rlpipe/DoorKeySkills-v0", "rlpipe/DoorKeyPrimitive-v0"))
    num_envs: int = _key(at_least(1))
    solved_return: Optional[float] = _key(default=None)
    solved_success_rate: Optional[float] = _key(Rule(lambda v: v is None or 0 < v <= 1, "null or a number in (0, 1]"), default=None)
    size: int = _key(at_least(5))
    max_skill_horizon: int = _key(at_least(1))
    option_reward: float = _key(Rule(lambda v: v >= 0, "a number >= 0 (0 switches it off)"))
    decision_penalty: float = _key(Rule(lambda v: v <= 0, "a number <= 0 (0 switches it off)"))
    max_decisions: Optional[int] = _key(Rule(lambda v: v is None or v >= 1, "null or a number >= 1"), default=None)
    view: str = _key(one_of("full", "egocentric"), default="full")  # default: checkpoints written before it existed

    @staticmethod
    def check(cfg: DictConfig) -> None:
        if cfg.env.view != "full" and cfg.env.id != "rlpipe/DoorKeyPrimitive-v0":
            raise ConfigError(
                f"env.view={cfg.env.view} is invalid with env={cfg.env.name}: the skills env observes the full grid "
                f"(its skills plan on it); expected full, or env=doorkey_primitive"
            )


@dataclass
class MlpConfig:
    kind: str = _key(one_of("mlp"))
    hidden_sizes: list[int] = _key(Rule(lambda v: len(v) > 0 and all(h >= 1 for h in v), "a non-empty list of sizes >= 1"))
    activation: str = _key(one_of("relu", "tanh", "elu", "leaky_relu"))
    dueling: bool = _key()


@dataclass
class NatureCnnConfig:
    kind: str = _key(one_of("nature_cnn"))
    channels: list[int] = _key(Rule(lambda v: len(v) > 0 and all(c >= 1 for c in v), "a non-empty list of channel counts >= 1"))
    kernel_sizes: list[int] = _key(Rule(lambda v: len(v) > 0 and all(k >= 1 for k in v), "a non-empty list of sizes >= 1"))
    strides: list[int] = _key(Rule(lambda v: len(v) > 0 and all(k >= 1 for k in v), "a non-empty list of strides >= 1"))
    hidden_size: int = _key(at_least(1))
    activation: str = _key(one_of("relu", "tanh", "elu", "leaky_relu"))
    dueling: bool = _key()


@dataclass
class EGreedyConfig:
    kind: str = _key(one_of("egreedy"))
    eps_init: float = _key(between(0.0, 1.0))
    eps_final: float = _key(between(0.0, 1.0))
    annealing: str = _key(one_of("linear", "exponential"))
    annealing_steps: int = _key(at_least(1))

    @staticmethod
    def check(cfg: DictConfig) -> None:
        exploration = cfg.exploration
        if exploration.eps_final > exploration.eps_init:
            raise ConfigError(
                f"exploration.eps_final={exploration.eps_final} is invalid: expected at most exploration.eps_init={exploration.eps_init}"
            )
        if exploration.annealing == "exponential" and exploration.eps_final <= 0:
            raise ConfigError("exploration.eps_final=0 is invalid with annealing=exponential: expected a number > 0")


@dataclass
class TemperatureConfig:
    kind: str = _key(one_of("temperature"))
    temperature_init: float = _key(positive())
    temperature_final: float = _key(positive())
    decay_per_episode: float = _key(Rule(lambda v: 0.0 < v <= 1.0, "a number in (0, 1]"))
    decay_slowdown: float = _key(positive())

    @staticmethod
    def check(cfg: DictConfig) -> None:
        exploration = cfg.exploration
        if exploration.temperature_final > exploration.temperature_init:
            raise ConfigError(
                f"exploration.temperature_final={exploration.temperature_final} is invalid: expected at most "
                f"exploration.temperature_init={exploration.temperature_init}"
            )


@dataclass
class RndConfig(EGreedyConfig):  # the exploration agent acts epsilon-greedy: egreedy's keys, and RND's
    kind: str = _key(one_of("rnd"))
    alpha_init: float = _key(between(0.0, 1.0))
    alpha_final: float = _key(between(0.0, 1.0))
    alpha_schedule: str = _key(one_of("constant", "linear", "exponential"))
    alpha_decay_steps: int = _key(at_least(1))
    predictor_lr: float = _key(positive())
    update_fraction: float = _key(Rule(lambda v: 0.0 < v <= 1.0, "a number in (0, 1]"))
    intrinsic_gamma: float = _key(Rule(lambda v: 0.0 <= v < 1.0, "a number in [0, 1)"))
    intrinsic_stats_steps: int = _key(at_least(1))
    intrinsic_normalisation: str = _key(one_of("reward", "return"))
    episodic_novelty: bool = _key(default=False)  # defaults: checkpoints written before these keys existed
    explorer_episodic: bool = _key(default=True)
    exploit_acting_share: float = _key(between(0.0, 1.0), default=0.0)
    novelty_input: str = _key(one_of("observation", "agent_state"), default="observation")
    obs_clip: float = _key(positive())
    rnd_hidden_sizes: list[int] = _key(Rule(lambda v: len(v) > 0 and all(n >= 1 for n in v), "a non-empty list of sizes >= 1"))
    rnd_feature_size: int = _key(at_least(1))

    @staticmethod
    def check(cfg: DictConfig) -> None:
        exploration = cfg.exploration
        if exploration.novelty_input == "agent_state" and cfg.env.kind != "doorkey":
            raise ConfigError(
                f"exploration.novelty_input=agent_state is invalid with env={cfg.env.name}: only the DoorKey envs "
                f"observe an agent state apart from the layout; expected observation"
            )
        if exploration.episodic_novelty and cfg.env.kind != "doorkey":
            raise ConfigError(
                f"exploration.episodic_novelty=true is invalid with env={cfg.env.name}: it rewards exact first visits of an "
                f"observation within an episode, which continuous states and frames almost never repeat (DoorKey's grid "
                f"observations do); expected false"
            )
        if cfg.env.kind == "atari" and not cfg.env.get("grayscale", True):
            raise ConfigError(f"exploration=rnd is invalid with env={cfg.env.name}: RND's networks read the newest grayscale "
                              f"frame; expected env.grayscale=true (env=atari or env=breakout)")
        EGreedyConfig.check(cfg)  # the exploration agent acts epsilon-greedy
        if exploration.alpha_schedule == "exponential" and min(exploration.alpha_init, exploration.alpha_final) <= 0:
            raise ConfigError("exploration.alpha_init and alpha_final must be > 0 with alpha_schedule=exponential")


_STORAGE = one_of("memory", "memmap")
_BUFFER_DEVICE = Rule(lambda v: v in ("auto", "cpu") or v.startswith("cuda"), "auto, cpu, cuda or cuda:N")


def _check_buffer_device(cfg: DictConfig) -> None:
    """Memory-mapped files are host memory: they take ``buffer.device`` auto or cpu only."""
    if cfg.buffer.storage == "memmap" and cfg.buffer.device not in ("auto", "cpu"):
        raise ConfigError(f"buffer.device={cfg.buffer.device} is invalid with buffer.storage=memmap: memory-mapped files "
                          f"live in host memory; expected auto or cpu, or buffer.storage=memory")


@dataclass
class PrioritizedBufferConfig:
    kind: str = _key(one_of("prioritized"))
    capacity: int = _key(at_least(1))
    alpha: float = _key(at_least(0.0))
    beta_init: float = _key(between(0.0, 1.0))
    beta_final: float = _key(between(0.0, 1.0))
    priority_eps: float = _key(positive())
    storage: str = _key(_STORAGE)
    memmap_dir: Optional[str] = _key(default=None)
    keep_memmap_files: bool = _key(default=False)
    device: str = _key(_BUFFER_DEVICE, default="auto")  # (default: checkpoints written before it existed)

    @staticmethod
    def check(cfg: DictConfig) -> None:
        _check_buffer_device(cfg)
        if cfg.buffer.beta_final < cfg.buffer.beta_init:
            raise ConfigError(f"buffer.beta_final={cfg.buffer.beta_final} is invalid: expected at least buffer.beta_init={cfg.buffer.beta_init}")


@dataclass
class UniformBufferConfig:
    kind: str = _key(one_of("uniform"))
    capacity: int = _key(at_least(1))
    storage: str = _key(_STORAGE)
    memmap_dir: Optional[str] = _key(default=None)
    keep_memmap_files: bool = _key(default=False)
    device: str = _key(_BUFFER_DEVICE, default="auto")  # (default: checkpoints written before it existed)

    @staticmethod
    def check(cfg: DictConfig) -> None:
        _check_buffer_device(cfg)


@dataclass
class SyncCollectorConfig:
    kind: str = _key(one_of("sync"))


@dataclass
class AsyncCollectorConfig:
    kind: str = _key(one_of("async"))
    num_workers: int = _key(at_least(1))
    sync_interval_updates: int = _key(at_least(1))
    worker_exploration: str = _key(one_of("schedule", "apex"))

    @staticmethod
    def check(cfg: DictConfig) -> None:
        workers, num_envs = cfg.collector.num_workers, cfg.env.num_envs
        if num_envs % workers:
            raise ConfigError(f"collector.num_workers={workers} is invalid with env.num_envs={num_envs}: every worker steps "
                              f"the same number of envs; expected a divisor of env.num_envs (or env.num_envs={workers})")
        if cfg.env.get("parallel", False):
            raise ConfigError(f"env.parallel=true is invalid with collector={cfg.collector.kind}: each worker steps its envs in turn; "
                              "expected env.parallel=false, and more collector.num_workers for more processes")
        if cfg.exploration.kind == "rnd":
            raise ConfigError(f"collector={cfg.collector.kind} is invalid with exploration=rnd: RND's two agents and its statistics are "
                              "not shared with collection workers; expected collector=sync")


@dataclass
class RayCollectorConfig(AsyncCollectorConfig):
    kind: str = _key(one_of("ray"))
    address: Optional[str] = _key(default=None)
    cpus_per_worker: float = _key(positive())  # (its check is AsyncCollectorConfig's)


@dataclass
class CsvLoggerConfig:
    pass


@dataclass
class TensorboardLoggerConfig:
    pass


@dataclass
class WandbLoggerConfig:
    mode: str = _key(one_of("offline", "online"))
    project: str = _key()
    group: Optional[str] = _key(default=None)


@dataclass
class LoggerConfig:  # logger=csv, or several at once: logger=[csv,tensorboard] (an entry per logger that is on)
    csv: Optional[CsvLoggerConfig] = None
    tensorboard: Optional[TensorboardLoggerConfig] = None
    wandb: Optional[WandbLoggerConfig] = None


# Sections with one schema, and sections whose schema is chosen by their `kind` key.
_SECTION_SCHEMAS: dict[str, type] = {
    "train": TrainConfig,
    "eval": EvalConfig,
    "record": RecordConfig,
    "checkpoint": CheckpointConfig,
    "logger": LoggerConfig,
}
_FAMILY_SCHEMAS: dict[str, dict[str, type]] = {
    "env": {"classic": ClassicEnvConfig, "atari": AtariEnvConfig, "doorkey": DoorKeyEnvConfig},
    "model": {"mlp": MlpConfig, "nature_cnn": NatureCnnConfig},
    "exploration": {"egreedy": EGreedyConfig, "temperature": TemperatureConfig, "rnd": RndConfig},
    "buffer": {"prioritized": PrioritizedBufferConfig, "uniform": UniformBufferConfig},
    "collector": {"sync": SyncCollectorConfig, "async": AsyncCollectorConfig, "ray": RayCollectorConfig},
}
_TOP_LEVEL_KEYS = ("resume",)  # resume: path to a checkpoint, or null


def validate(cfg: DictConfig) -> DictConfig:
    """Returns ``cfg`` merged onto the typed schema (read-only), or raises :class:`ConfigError` naming the bad key.

    Checks, in order: unknown sections; each family's ``kind``; unknown keys and types (OmegaConf structured
    merge); values left unset; each key's :class:`Rule`; the constraints that tie several keys together.
    """
    plain = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(plain, dict)
    if isinstance(plain.get("logger"), dict) and "kind" in plain["logger"]:  # checkpoints from before logger=[a,b]
        legacy = dict(plain["logger"])
        plain["logger"] = {legacy.pop("kind"): legacy}
    plain.setdefault("collector", {"kind": "sync"})  # checkpoints from before collector=async
    known = (*_SECTION_SCHEMAS, *_FAMILY_SCHEMAS, *_TOP_LEVEL_KEYS)
    for key in plain:
        if key not in known:
            raise ConfigError(f"unknown key {key}: the top level accepts {', '.join(known)}")

    env = plain.get("env")
    if isinstance(env, dict) and env.get("kind") != "atari" and {"noop_max", "repeat_action_probability"} & set(env):
        raise ConfigError(f"protocol=... is invalid with env={env.get('name')}: the evaluation protocols (NOOP starts, "
                          f"sticky actions) are for Atari games (env=atari, env=breakout)")
    schemas = dict(_SECTION_SCHEMAS)
    for section, families in _FAMILY_SCHEMAS.items():
        node = plain.get(section)
        kind = node.get("kind") if isinstance(node, dict) else None
        if kind not in families:
            raise ConfigError(f"{section}.kind={kind!r} is invalid: expected one of {', '.join(families)}")
        schemas[section] = families[kind]

    typed: dict[str, Any] = {}
    for section, schema in schemas.items():
        try:
            typed[section] = OmegaConf.merge(OmegaConf.structured(schema), plain.get(section) or {})
        except OmegaConfBaseException as err:
            raise ConfigError(_describe(err, section, schema)) from None
        missing = sorted(OmegaConf.missing_keys(typed[section]))
        if missing:
            raise ConfigError(f"{section}.{missing[0]} has no value: set it in conf/ or on the command line")
        _check_rules(typed[section], schema, prefix=f"{section}.")
        if schema is LoggerConfig and typed[section].wandb is not None:
            _check_rules(typed[section].wandb, WandbLoggerConfig, prefix="logger.wandb.")
    resume = plain.get("resume")
    if resume is not None and not isinstance(resume, str):
        raise ConfigError(f"resume={resume!r} is invalid: expected a path to a checkpoint, or null")

    checked = OmegaConf.create({**typed, "resume": resume})
    _check_cross_constraints(checked, schemas)
    OmegaConf.set_readonly(checked, True)
    return checked


def _describe(err: OmegaConfBaseException, section: str, schema: type) -> str:
    key = f"{section}.{err.full_key}" if getattr(err, "full_key", None) else section
    if isinstance(err, ConfigKeyError):
        return f"unknown key {key}: {section} accepts {', '.join(f.name for f in fields(schema))}"
    message = str(getattr(err, "msg", err)).splitlines()[0]
    return f"{key}: {message}"


def _check_rules(node: DictConfig, schema: type, prefix: str) -> None:
    for f in fields(schema):
        rule: Rule | None = f.metadata.get("rule")
        value = node[f.name]
        if rule is None or value is None:
            continue
        plain = OmegaConf.to_container(value) if isinstance(value, ListConfig) else value
        if not rule.test(plain):
            raise ConfigError(f"{prefix}{f.name}={plain!r} is invalid: expected {rule.allowed}")


def _check_cross_constraints(cfg: DictConfig, schemas: dict[str, type]) -> None:
    """The checks that tie keys of several sections together: the run's own here, then each chosen family's
    (a schema's ``check``, beside its keys)."""
    train, buffer = cfg.train, cfg.buffer
    if train.cudagraphs and not (train.device == "auto" or train.device.startswith("cuda")):
        raise ConfigError(f"train.cudagraphs=true is invalid with train.device={train.device}: CUDA graphs need a CUDA device "
                          f"(train.device=cuda or auto on a GPU machine); expected false")
    if train.init_random_steps >= train.total_steps:
        raise ConfigError(
            f"train.total_steps={train.total_steps} is too short for train.init_random_steps={train.init_random_steps} "
            f"(random steps that fill the buffer before learning starts): lower it too, e.g. "
            f"train.init_random_steps={train.total_steps // 5}"
        )
    if train.steps_per_collect % cfg.env.num_envs:
        raise ConfigError(
            f"train.steps_per_collect={train.steps_per_collect} is invalid: expected a multiple of env.num_envs={cfg.env.num_envs}"
        )
    if train.total_steps % cfg.env.num_envs:
        raise ConfigError(f"train.total_steps={train.total_steps} is invalid: expected a multiple of env.num_envs="
                          f"{cfg.env.num_envs} (every env takes the same number of steps)")
    if train.batch_size > buffer.capacity:
        raise ConfigError(f"train.batch_size={train.batch_size} is invalid: expected at most buffer.capacity={buffer.capacity}")
    model_for_pixels = cfg.model.kind == "nature_cnn"
    if model_for_pixels != (cfg.env.kind == "atari"):
        raise ConfigError(
            f"model={cfg.model.kind} does not fit env={cfg.env.name} ({cfg.env.kind}): "
            f"expected model=nature_cnn for pixel (atari) environments and model=mlp otherwise"
        )
    if train.n_step > 1 and cfg.env.kind != "atari" and train.steps_per_collect // cfg.env.num_envs <= train.n_step:
        raise ConfigError(
            f"train.n_step={train.n_step} is invalid with train.steps_per_collect={train.steps_per_collect} and "
            f"env.num_envs={cfg.env.num_envs}: the replay completes a collect's n-step returns with the next collect, "
            f"so each collect must hold more than n_step steps per env; expected n_step < "
            f"{train.steps_per_collect // cfg.env.num_envs} or a larger train.steps_per_collect"
        )
    for section in ("env", "exploration", "buffer", "eval", "record", "collector"):
        check = getattr(schemas[section], "check", None)
        if check is not None:
            check(cfg)



def leaves(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 1e-3}}`` -> ``{"train.lr": 1e-3}`` (lists stay values)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(leaves(value, f"{prefix}{key}."))
        else:  # (an empty section, e.g. logger.csv: {}, is a value: it switches the CSV logger on)
            flat[f"{prefix}{key}"] = value
    return flat
