"""``python -m rlpipe.record``: gameplay datasets and videos from a checkpoint or a random agent (``conf/record.yaml``).

    python -m rlpipe.record dataset checkpoint=outputs/<run>/checkpoints/best.pt episodes=100
    python -m rlpipe.record dataset agent=random env_id=ALE/Pong-v5 episodes=20 output_dir=data/pong_random
    python -m rlpipe.record dataset agent=random episodes=3 dry_run=true      # plays, writes nothing
    python -m rlpipe.record dataset agent=random env_preset=breakout_rgb      # native 210x160 RGB frames, frame skip 2
    python -m rlpipe.record video checkpoint=outputs/<run>/checkpoints/best.pt  # data/videos/trained_agent_1.mp4
    python -m rlpipe.record bulk checkpoint=PATH total_videos=20 percent_random=30 output_dir=bulk_videos
    python -m rlpipe.record dataset checkpoint=PATH episodes=100 format=minari  # a Minari dataset (rlpipe.record.minari_format)
    python -m rlpipe.record export input=data/pong_random format=minari [dataset_id=rlpipe/pong-random-v0]
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig
from torchrl.envs import EnvBase

from rlpipe.agent import Agent
from rlpipe.checkpoint import CheckpointError
from rlpipe.config import ConfigError, validate
from rlpipe.envs.atari import frame_shape, make_atari_env, protocol
from rlpipe.record.dataset import ACTIONS_FILE, Policy, check_output_dir, random_policy, record_dataset, with_epsilon
from rlpipe.record.video import record_video
from rlpipe.runtime import CONF_DIR, check_command_line, check_creatable, quiet_libraries, seed_everything

MODES = ("dataset", "video", "bulk", "export")
ATARI_PRESETS = ("atari", "breakout_rgb")  # env presets agent=random plays: 84x84 grayscale, native RGB
FORMATS = ("png", "minari")


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="record")  # absolute: this module is not __main__
def main(cfg: DictConfig) -> None:
    quiet_libraries()
    try:
        _check(cfg)
    except ConfigError as err:
        raise SystemExit(f"rlpipe.record: {err}") from None
    if cfg.mode == "export":
        _export(Path(cfg.input), dataset_id=cfg.dataset_id)
        return
    try:
        if cfg.mode == "bulk":  # bulk mixes both agents: the checkpoint's (when given) and a random one
            cfg.agent = "trained" if cfg.checkpoint is not None else "random"
        output_dir = None if cfg.dry_run else Path(cfg.output_dir)
        if output_dir is not None and cfg.mode == "dataset" and cfg.format != "minari":
            check_output_dir(output_dir)
        if output_dir is not None and cfg.mode in ("video", "bulk"):
            try:
                check_creatable(output_dir / "videos")
            except OSError as err:
                raise ConfigError(f"output_dir={output_dir} cannot be written ({err.strerror})") from None
        source = make_recording_source(cfg)
    except (CheckpointError, ConfigError) as err:
        raise SystemExit(f"rlpipe.record: {err}") from None
    env, env_cfg, policy = source.env, source.env_cfg, source.policy
    staging = None
    if output_dir is not None and cfg.format == "minari":  # recorded in the default layout beside output_dir, then converted
        from rlpipe.record.minari_format import check_dataset_id, default_dataset_id

        dataset_id = cfg.dataset_id or default_dataset_id({"protocol": protocol(env_cfg), "frame_shape": frame_shape(env_cfg),
                                                                    **source.metadata})
        try:
            check_dataset_id(dataset_id)  # before playing: a taken id would throw the recording away
            output_dir.mkdir(parents=True, exist_ok=True)
        except ConfigError as err:
            env.close()
            raise SystemExit(f"rlpipe.record: {err}") from None
        staging = output_dir = Path(tempfile.mkdtemp(prefix=".minari-staging-", dir=output_dir))
    if cfg.mode in ("video", "bulk"):
        _videos(cfg, env, policy)
        return
    started = time.perf_counter()
    try:
        recording = record_dataset(
            env, policy, episodes=cfg.episodes, output_dir=output_dir, validation_fraction=cfg.validation_fraction,
            seed=cfg.seed, max_steps_per_episode=cfg.max_steps_per_episode,
            metadata={**source.metadata, "seed": cfg.seed, "protocol": protocol(env_cfg), "frame_shape": list(frame_shape(env_cfg))},
        )
    except OSError as err:  # a full or vanished output directory
        raise SystemExit(f"rlpipe.record: cannot write the recording under {output_dir}: {err.strerror}") from None
    except KeyboardInterrupt:
        done = "" if output_dir is None else f"; the episodes finished so far are in {output_dir / ACTIONS_FILE}"
        if staging is not None:
            done += f" (python -m rlpipe.record export input={staging} format=minari converts them)"
        print(f"rlpipe.record: interrupted{done}", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        env.close()
    seconds = time.perf_counter() - started
    steps = sum(e["length"] for e in recording["episodes"])
    if staging is not None:
        _export(staging, dataset_id=dataset_id, keep_on_failure=True)
        shutil.rmtree(staging)
        if not any(staging.parent.iterdir()):  # output_dir held nothing but the staging directory
            staging.parent.rmdir()
        output_dir = None
    print(json.dumps({"output_dir": None if output_dir is None else str(output_dir), "episodes": len(recording["episodes"]),
                      "agent_steps": steps, "seconds": round(seconds, 2), "steps_per_second": round(steps / seconds, 1),
                      "score_mean": float(np.mean([e["score"] for e in recording["episodes"]])),
                      "validation": recording["split"]["validation"]}))


def _videos(cfg: DictConfig, env: EnvBase, policy: Policy) -> None:
    """``rlpipe.record video``: ``episodes`` MP4 files, ``<output_dir>/videos/<agent>_agent_<n>.mp4``.
    ``rlpipe.record bulk``: ``total_videos`` of them in ``output_dir``, ``percent_random`` % by a random agent
    (``bulk_random_agent_<n>.mp4``) and the rest by the checkpoint's (``bulk_trained_agent_<n>.mp4``), each with a
    folder of the same name holding every frame (``0.png``, ...)."""
    jobs = [(cfg.agent, n, Path(cfg.output_dir) / "videos" / f"{cfg.agent}_agent_{n}.mp4") for n in range(1, cfg.episodes + 1)]
    policies = {cfg.agent: policy}
    if cfg.mode == "bulk":
        n_random = round(cfg.total_videos * cfg.percent_random / 100)
        jobs = [("random", n, Path(cfg.output_dir) / f"bulk_random_agent_{n}.mp4") for n in range(1, n_random + 1)]
        jobs += [("trained", n, Path(cfg.output_dir) / f"bulk_trained_agent_{n}.mp4") for n in range(1, cfg.total_videos - n_random + 1)]
        policies["random"] = random_policy(env, seed=cfg.seed)
    started, results = time.perf_counter(), []
    try:
        for agent, n, path in jobs:
            if cfg.dry_run:
                path = Path(tempfile.mkdtemp(prefix="rlpipe-dry-run-")) / path.name
            frames_dir = path.with_suffix("") if cfg.mode == "bulk" else None
            result = record_video(env, policies[agent], path=path, max_steps=cfg.max_steps_per_episode, frames_dir=frames_dir)
            if cfg.dry_run:
                shutil.rmtree(path.parent)
                result["path"] = None
            results.append({key: result[key] for key in ("path", "frames", "score", "truncated")})
    except OSError as err:
        raise SystemExit(f"rlpipe.record: cannot write the video under {cfg.output_dir}: {err.strerror}") from None
    finally:
        env.close()
    seconds = time.perf_counter() - started
    frames = sum(r["frames"] for r in results)
    print(json.dumps({"videos": results, "seconds": round(seconds, 2), "frames_per_second": round(frames / seconds, 1)}))


def _export(root: Path, *, dataset_id: str | None, keep_on_failure: bool = False) -> None:
    """``rlpipe.record export`` (and ``dataset ... format=minari``): the recording under ``root`` as a Minari dataset;
    prints one JSON line (its id, directory, episodes and steps). A failure is one line; with ``keep_on_failure``
    it names the recording left under ``root``."""
    from rlpipe.record.minari_format import export_minari

    try:
        dataset = export_minari(root, dataset_id=dataset_id)
    except (ConfigError, ValueError, OSError) as err:  # (Minari refuses a malformed id with ValueError)
        kept = f"; the recording is kept in {root}" if keep_on_failure else ""
        raise SystemExit(f"rlpipe.record: cannot write the Minari dataset: {err}{kept}") from None
    print(json.dumps({"dataset_id": dataset.spec.dataset_id, "path": str(dataset.spec.data_path),
                      "episodes": dataset.total_episodes, "agent_steps": dataset.total_steps}))


def _check(cfg: DictConfig) -> None:
    if cfg.format not in FORMATS or (cfg.mode == "export" and cfg.format != "minari"):
        raise ConfigError(f"format={cfg.format!r} is invalid with mode {cfg.mode}: expected "
                          f"{'minari' if cfg.mode == 'export' else ' or '.join(FORMATS)}")
    if cfg.mode == "export" and cfg.input is None:
        raise ConfigError("export needs input=DIR (a recording's output_dir)")
    if cfg.format == "minari" and cfg.mode in ("video", "bulk"):
        raise ConfigError(f"format=minari is for datasets (rlpipe.record dataset or export), not mode {cfg.mode}")
    if cfg.agent not in ("trained", "random"):
        raise ConfigError(f"agent={cfg.agent!r} is invalid: expected one of trained, random")
    if cfg.episodes < 1:
        raise ConfigError(f"episodes={cfg.episodes} is invalid: expected a number >= 1")
    if cfg.env_preset not in ATARI_PRESETS:
        raise ConfigError(f"env_preset={cfg.env_preset} is invalid: expected one of {', '.join(ATARI_PRESETS)}")
    if not 0.0 <= cfg.validation_fraction < 1.0:
        raise ConfigError(f"validation_fraction={cfg.validation_fraction} is invalid: expected a number in [0, 1)")
    if cfg.mode == "bulk" and (cfg.total_videos < 1 or not 0 <= cfg.percent_random <= 100):
        raise ConfigError(f"total_videos={cfg.total_videos}, percent_random={cfg.percent_random} are invalid: "
                          f"expected total_videos >= 1 and percent_random in [0, 100]")
    if cfg.mode == "bulk" and cfg.percent_random < 100 and cfg.checkpoint is None:
        raise ConfigError("bulk mode with trained-agent videos (percent_random < 100) needs checkpoint=PATH")
    if cfg.max_steps_per_episode < 1:
        raise ConfigError(f"max_steps_per_episode={cfg.max_steps_per_episode} is invalid: expected a number >= 1")
    if not 0.0 <= cfg.epsilon <= 1.0:
        raise ConfigError(f"epsilon={cfg.epsilon} is invalid: expected a number in [0, 1]")


@dataclass
class RecordingSource:
    """What plays the recorded games: the game's env (``num_envs=1``, seeded), its env section, the policy, and
    what to record about them (agent, checkpoint, epsilon)."""

    env: EnvBase
    env_cfg: DictConfig
    policy: Policy
    metadata: dict[str, Any]


def make_recording_source(cfg: DictConfig) -> RecordingSource:
    """The env and policy of ``agent=trained`` (a checkpoint, loaded by :meth:`rlpipe.agent.Agent.load`) or
    ``agent=random``, seeded with ``cfg.seed``; ``cfg`` is ``conf/record.yaml``'s."""
    if cfg.agent == "trained":
        if cfg.checkpoint is None:
            raise ConfigError("agent=trained needs checkpoint=PATH (or agent=random)")
        agent = Agent.load(cfg.checkpoint)
        if agent.env_cfg.kind != "atari":
            raise ConfigError(f"{cfg.checkpoint}: trained on {agent.env_cfg.id}, not an Atari game: recording needs one")
        if cfg.env_id is not None and cfg.env_id != agent.env_cfg.id:
            raise ConfigError(f"{cfg.checkpoint}: trained on {agent.env_cfg.id}, not {cfg.env_id}")
        env_cfg = agent.env_cfg
        metadata = {"agent": "trained", "checkpoint": str(cfg.checkpoint), "epsilon": cfg.epsilon}
    else:  # the Atari preset's preprocessing and protocol (conf/env/atari.yaml), for any game
        agent, env_cfg = None, atari_preset(cfg.env_id or "ALE/Breakout-v5", preset=cfg.env_preset)
        metadata = {"agent": "random", "checkpoint": None, "epsilon": 1.0}
    seed_everything(cfg.seed)
    env = make_atari_env(env_cfg, num_envs=1, seed=cfg.seed, with_screen=cfg.mode in ("video", "bulk"))
    if agent is None:
        policy = random_policy(env, seed=cfg.seed)
    else:
        policy = with_epsilon(agent.act, n_actions=agent.n_actions, epsilon=float(cfg.epsilon), rng=np.random.default_rng(cfg.seed))
    return RecordingSource(env=env, env_cfg=env_cfg, policy=policy, metadata=metadata)


def atari_preset(env_id: str, *, preset: str = "atari") -> DictConfig:
    """The ``env`` section of ``python -m rlpipe.train env=<preset> env.game=<game of env_id>`` (validated): ``atari``
    plays 84x84 grayscale, ``breakout_rgb`` native 210x160 RGB at frame skip 2."""
    if not (env_id.startswith("ALE/") and env_id.endswith("-v5")):
        raise ConfigError(f"env_id={env_id} is invalid: expected an ALE id, ALE/<Game>-v5 (python -m rlpipe.envs.atari lists the games)")
    overrides = [f"env={preset}", f"env.game={env_id.removeprefix('ALE/').removesuffix('-v5')}"]
    if GlobalHydra.instance().is_initialized():  # inside rlpipe.record's own Hydra app (its config directory is conf/ too)
        return validate(compose("config", overrides=overrides)).env
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return validate(compose("config", overrides=overrides)).env


def _command_line(argv: list[str]) -> list[str]:
    """``rlpipe.record dataset key=value ...``: the first word is the mode (Hydra's ``mode=dataset``)."""
    if argv and "=" not in argv[0] and not argv[0].startswith("-"):
        if argv[0] not in MODES:
            raise SystemExit(f"rlpipe.record: unknown mode {argv[0]!r}: expected one of {', '.join(MODES)}")
        return [f"mode={argv[0]}", *argv[1:]]
    return argv


def run() -> None:
    """The command line: ``python -m rlpipe.record <mode> key=value ...``."""
    sys.argv[1:] = _command_line(sys.argv[1:])
    check_command_line("rlpipe.record", "record", sys.argv[1:], run_dir_key=None)
    main()
