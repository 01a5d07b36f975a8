"""Metric logging through TorchRL's loggers: CSV (default), TensorBoard, or Weights & Biases (offline by default).

Every metric goes through one ``Logger.log_metrics(metrics, step)`` call per log interval, with the agent-step
counter as the x-axis. Metric names are ``<group>/<name>``: ``train/*``, ``episode/*``, ``buffer/*``, ``eval/*``,
``time/*``.
"""

from __future__ import annotations

import io
import math
import os
import time
from collections import defaultdict, deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torchrl.record.loggers import CSVLogger, Logger, TensorboardLogger
from torchrl.record.loggers.wandb import WandbLogger

from rlpipe.config import ConfigError, leaves


def make_logger(logger_cfg: DictConfig, run_dir: Path, *, run_name: str, config: DictConfig, group: str | None = None) -> Loggers:
    """The run's TorchRL loggers (``logger=csv``, or several: ``logger=[csv,tensorboard]``), writing under
    ``<run_dir>/logs/``, with the run's configuration logged as hyperparameters.

    Args:
        logger_cfg: the ``logger`` config section: one entry per logger (``csv``, ``tensorboard``, ``wandb``).
        run_dir: the run directory.
        run_name: the run's display name (W&B).
        config: the resolved configuration, logged once as hyperparameters.
        group: the W&B group of the run (a sweep's runs share one); ``logger.wandb.group`` when it is set.
    """
    log_dir = run_dir / "logs"
    loggers: list[Logger] = []
    if logger_cfg.get("csv") is not None:
        csv = CSVLogger(exp_name="csv", log_dir=str(log_dir))
        _add_header_rows(csv.experiment)
        _remove_if_empty(Path(csv.experiment.log_dir) / "videos")  # TorchRL makes it; recorded videos go to <run>/videos
        loggers.append(csv)
    if logger_cfg.get("tensorboard") is not None:
        loggers.append(TensorboardLogger(exp_name="tensorboard", log_dir=str(log_dir)))
    if logger_cfg.get("wandb") is not None:
        loggers.append(WandbLogger(
            exp_name=run_name,
            offline=logger_cfg.wandb.mode == "offline",
            save_dir=str(log_dir),
            project=logger_cfg.wandb.project,
            group=logger_cfg.wandb.group or group,
        ))
    hparams = _hparams(config)
    for logger in loggers:
        logger.log_hparams(hparams)
    return Loggers(loggers)


class Loggers:
    """Every logger of the run: each call goes to all of them (composition: TorchRL has no multi-logger).

    Args:
        loggers: the TorchRL loggers, in the order of ``conf/logger``'s entries.
    """

    def __init__(self, loggers: list[Logger]) -> None:
        self.loggers = loggers

    def log_metrics(self, metrics: dict[str, float], *, step: int) -> None:
        """Logs ``metrics`` (``<group>/<name>`` -> value) at agent step ``step`` to every logger."""
        for logger in self.loggers:
            logger.log_metrics(metrics, step=step)

    def log_video(self, name: str, path: Path, *, step: int) -> None:
        """Hands an MP4 written by :mod:`rlpipe.record` to every logger that shows videos (:func:`log_video`)."""
        for logger in self.loggers:
            log_video(logger, name, path, step=step)

    def log_checkpoints(self, paths: list[Path]) -> None:
        """Uploads the run's checkpoints as one W&B artifact of type ``model``, ``run-<W&B run id>-checkpoints``
        (offline: kept for ``wandb sync``); the CSV and TensorBoard loggers have nothing to do (the files are in
        the run directory)."""
        for logger in self.loggers:
            if isinstance(logger, WandbLogger):
                import wandb

                artifact = wandb.Artifact(f"run-{logger.experiment.id}-checkpoints", type="model")
                for path in paths:
                    artifact.add_file(str(path))
                logger.experiment.log_artifact(artifact)

    def close(self) -> None:
        """Flushes and closes what needs it (W&B finishes its run: an offline run is complete on disk)."""
        for logger in self.loggers:
            if isinstance(logger, WandbLogger):
                logger.experiment.finish()
            elif isinstance(logger, TensorboardLogger):
                logger.experiment.close()


def log_video(logger: Logger, name: str, path: Path, *, step: int) -> None:
    """Hands an MP4 written by :mod:`rlpipe.record` to the logger: W&B uploads the file itself; TensorBoard gets
    it as an animated GIF, as its ``add_video`` writes one; with CSV the file stays where it is (``<run>/videos``).

    Not ``Logger.log_video``: TorchRL's W&B and TensorBoard loggers encode raw frames through moviepy, and
    torch's TensorBoard writer imports ``moviepy.editor``, which moviepy 2 (2024) removed; W&B takes a finished
    MP4 without moviepy, and Pillow (already a dependency) writes the GIF.
    """
    if isinstance(logger, WandbLogger):
        import wandb

        logger.log_metrics({name: wandb.Video(str(path), format="mp4")}, step=step)
    elif isinstance(logger, TensorboardLogger):
        logger.experiment.file_writer.add_summary(_gif_summary(name, path), step)


GIF_MAX_FRAMES = 1_000  # TensorBoard's GIF of a longer video keeps every k-th frame (memory, event-file size)


def _gif_summary(tag: str, path: Path) -> Any:
    """TensorBoard's video summary (an image summary holding an animated GIF) of the MP4 at ``path``, at most
    ``GIF_MAX_FRAMES`` frames (the MP4 in ``<run>/videos`` keeps every one)."""
    import imageio.v2 as imageio
    from PIL import Image
    from tensorboard.compat.proto.summary_pb2 import Summary

    with imageio.get_reader(path) as reader:
        fps = reader.get_meta_data()["fps"]
        every = max(1, math.ceil(reader.count_frames() / GIF_MAX_FRAMES))  # a long episode: every k-th frame, k x as long
        frames = [Image.fromarray(frame) for t, frame in enumerate(reader) if t % every == 0]  # [H, W, 3] uint8 each
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:], duration=round(1000 * every / fps), loop=0)
    image = Summary.Image(height=frames[0].height, width=frames[0].width, colorspace=3, encoded_image_string=gif.getvalue())
    return Summary(value=[Summary.Value(tag=tag, image=image)])


CSV_HEADER = "step,value\n"  # the first row of every scalars/<group>/<metric>.csv


def _add_header_rows(experiment: Any) -> None:
    """Makes TorchRL's CSV experiment start every metric file with a header row (it writes bare ``step,value``
    rows); a resumed run appending to an existing file adds none. TorchRL offers no option for it, hence the
    wrapped method."""
    add_scalar = experiment.add_scalar
    scalars_dir = Path(experiment.log_dir) / "scalars"

    def add_scalar_with_header(name: str, value: float, global_step: int | None = None) -> None:
        path = scalars_dir / f"{name}.csv"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(CSV_HEADER)
        add_scalar(name, value, global_step)

    experiment.add_scalar = add_scalar_with_header


def _remove_if_empty(directory: Path) -> None:
    if directory.is_dir() and not any(directory.iterdir()):
        directory.rmdir()


def check_logger(logger_cfg: DictConfig) -> None:
    """Refuses, with one line, a logger that cannot work here: W&B online mode without an API key."""
    wandb_cfg = logger_cfg.get("wandb")
    if wandb_cfg is not None and wandb_cfg.mode == "online" and not _wandb_api_key_found():
        raise ConfigError("logger.wandb.mode=online needs a W&B API key (WANDB_API_KEY, or `wandb login`) and none was "
                          "found; use logger.wandb.mode=offline and upload later with `wandb sync`")


def _wandb_api_key_found() -> bool:
    """Whether W&B can authenticate: ``WANDB_API_KEY``, or the ``~/.netrc`` entry that ``wandb login`` writes."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    return netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")


def _hparams(config: DictConfig) -> dict[str, Any]:
    """``{"train": {"lr": 1e-3}}`` -> ``{"train.lr": 1e-3}``; lists, None and empty sections become strings
    (TensorBoard's hparams take scalars only)."""
    flat = leaves(OmegaConf.to_container(config, resolve=True))
    return {key: value if isinstance(value, (bool, int, float, str)) else str(value) for key, value in flat.items()}


class MetricWindow:
    """Gathers what happens between two log points (episodes, updates) and turns it into metrics.

    Update results stay on their device until :meth:`flush`, so recording them forces no host sync.
    """

    def __init__(self, *, step: int, updates: int, recent_episodes: int = 20) -> None:
        self._recent_returns: deque[float] = deque(maxlen=recent_episodes)
        self._reset(step, updates)

    def _reset(self, step: int, updates: int) -> None:
        self._start = (time.perf_counter(), step, updates)
        self._returns: list[float] = []
        self._scores: list[float] = []
        self._lengths: list[int] = []
        self._extras: dict[str, list[float]] = {}
        self._losses: list[torch.Tensor] = []
        self._grad_norms: list[torch.Tensor] = []
        self._per: dict[str, torch.Tensor] = {}
        self._policy_lags: list[torch.Tensor] = []

    @property
    def start_step(self) -> int:
        """The agent-step counter when this window started."""
        return self._start[1]

    def record_episodes(
        self, returns: list[float], scores: list[float], lengths: list[int], extras: dict[str, list[float]] | None = None
    ) -> None:
        """Finished training episodes: training returns, game scores (unshaped), lengths in agent steps, and the
        env's own statistics (``rlpipe.envs.episode_stats``: success, primitive steps), logged as ``episode/<name>``."""
        self._returns += returns
        self._scores += scores
        self._lengths += lengths
        for name, values in (extras or {}).items():
            self._extras.setdefault(name, []).extend(values)
        self._recent_returns.extend(returns)

    def record_updates(self, losses: torch.Tensor, grad_norms: torch.Tensor) -> None:
        """Losses and gradient norms of a block of updates, ``[n_updates]`` each."""
        self._losses.append(losses)
        self._grad_norms.append(grad_norms)

    def record_priorities(self, priorities: torch.Tensor, weights: torch.Tensor) -> None:
        """PER diagnostics of the latest block: new priorities and the importance weights it was sampled with."""
        self._per = {"priority": priorities, "weight": weights}

    def record_policy_lag(self, lag: torch.Tensor) -> None:
        """Asynchronous collection: how many gradient updates behind the learner each collected step's acting
        weights were, ``[steps]``."""
        self._policy_lags.append(lag)

    @property
    def recent_return(self) -> float:
        """Mean return of the last few training episodes (the progress bar's ``reward``)."""
        return sum(self._recent_returns) / len(self._recent_returns) if self._recent_returns else float("nan")

    def flush(self, *, step: int, updates: int) -> dict[str, float]:
        """The window's metrics; starts a new window."""
        seconds = max(time.perf_counter() - self._start[0], 1e-9)
        metrics = {
            "time/steps_per_s": (step - self._start[1]) / seconds,
            "time/updates_per_s": (updates - self._start[2]) / seconds,
        }
        if self._returns:
            metrics["episode/reward"] = sum(self._returns) / len(self._returns)
            metrics["episode/score"] = sum(self._scores) / len(self._scores)
            metrics["episode/length"] = sum(self._lengths) / len(self._lengths)
        for name, values in self._extras.items():
            metrics[f"episode/{name}"] = sum(values) / len(values)
        if self._losses:
            metrics["train/loss"] = torch.cat(self._losses).mean().item()
            metrics["train/grad_norm"] = torch.cat(self._grad_norms).mean().item()
        for name, values in self._per.items():
            metrics[f"buffer/{name}_min"] = values.min().item()
            metrics[f"buffer/{name}_max"] = values.max().item()
        if self._policy_lags:
            lags = torch.cat(self._policy_lags)
            metrics["collector/policy_lag_updates"] = lags.float().mean().item()
            metrics["collector/policy_lag_updates_max"] = int(lags.max())
        self._reset(step, updates)
        return metrics


class StageClock:
    """Wall time of each stage of the training loop between two log points: where a step's time goes.

    ``with clock("learner"): ...`` times a block; :meth:`time_module` times every call of an ``nn.Module`` through
    forward hooks (the collector calls the policy itself). :meth:`flush` turns the window into
    ``time/<stage>_fraction`` (share of the window's wall time) and ``time/<stage>_ms_per_step`` (milliseconds per
    agent step); time outside every stage is reported as ``other``. Host wall time: on a GPU, ``acting`` counts the
    kernel launches and the work itself lands where the collector first waits for its result (``env``).
    """

    def __init__(self) -> None:
        self._seconds: dict[str, float] = defaultdict(float)
        self._start = time.perf_counter()
        self._hook_start = 0.0

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self._seconds[stage] += time.perf_counter() - start

    def add(self, stage: str, seconds: float) -> None:
        self._seconds[stage] += seconds

    def next_collect(self) -> None:
        """Marks the start of a collect: from here the collector steps the env and calls the policy."""
        self._collect_started, self._acting_before = time.perf_counter(), self.seconds("acting")

    def collected(self) -> None:
        """Adds the collect's ``env`` time: the wall time since :meth:`next_collect`, less the policy's forward
        passes in it (timed as ``acting``)."""
        self.add("env", time.perf_counter() - self._collect_started - (self.seconds("acting") - self._acting_before))

    def time_module(self, module: torch.nn.Module, stage: str) -> None:
        """Adds the wall time of every forward call of ``module`` to ``stage``."""

        def started(*_: Any) -> None:
            self._hook_start = time.perf_counter()

        def finished(*_: Any) -> None:
            self._seconds[stage] += time.perf_counter() - self._hook_start

        module.register_forward_pre_hook(started)
        module.register_forward_hook(finished)

    def seconds(self, stage: str) -> float:
        return self._seconds.get(stage, 0.0)

    def flush(self, *, steps: int) -> dict[str, float]:
        """Fractions of wall time and milliseconds per agent step of each stage since the last flush."""
        wall = max(time.perf_counter() - self._start, 1e-9)
        seconds = dict(self._seconds)
        seconds["other"] = max(wall - sum(seconds.values()), 0.0)
        metrics = {}
        for stage, spent in seconds.items():
            metrics[f"time/{stage}_fraction"] = spent / wall
            metrics[f"time/{stage}_ms_per_step"] = 1e3 * spent / max(steps, 1)
        self._seconds.clear()
        self._start = time.perf_counter()
        return metrics
