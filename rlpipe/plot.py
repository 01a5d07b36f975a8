"""``python -m rlpipe.plot``: learning-curve PNGs and a results table from a run or a Hydra multirun sweep.

A run directory is one that ``python -m rlpipe.train`` wrote: ``config.yaml`` plus ``evaluations.jsonl`` (or
``summary.json``), and the CSV logger's ``logs/csv/scalars/<group>/<name>.csv`` files when that logger was on.

One run gives ``episode_return.png`` (raw and rolling mean), ``loss.png``, ``exploration.png`` (epsilon or
temperature), ``q_values.png`` and ``eval_return.png`` (mean +- std of the evaluation episodes); plots whose CSV
file is absent (e.g. a TensorBoard-only run) are skipped. Several runs (a sweep, found at any depth) are grouped
into configurations by their ``.hydra/overrides.yaml`` minus the seed; each figure then shows, per configuration,
the mean across seeds with a 95% Student-t confidence band, and ``results.md`` / ``results.csv`` tabulate the final
and best evaluation returns.

Examples::

    python -m rlpipe.plot outputs/2025-01-01/12-00-00                 # one run -> <run>/plots/*.png
    python -m rlpipe.plot multirun/2025-01-01/12-00-00                # a sweep -> plots, results.md, results.csv
    python -m rlpipe.plot multirun/2025-01-01/12-00-00 --out figures  # somewhere else
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from rlpipe.checkpoint import current_names

Series = tuple[np.ndarray, np.ndarray]  # (steps_T, values_T), sorted by agent step

EVAL_RETURN_MEAN = "eval/return_mean"
EVAL_RETURN_STD = "eval/return_std"
ROLLING_WINDOW_POINTS = 10  # log points in the trailing mean of training returns (NaN points skipped)
SEED_OVERRIDE_KEYS = ("train.seed", "resume")  # overrides that differ between the seeds of one configuration
FIGSIZE_IN = (7.0, 4.0)
DPI = 100
LEGEND_WIDTH_CHARS = 60
# results.csv columns, with their results.md titles
RESULT_COLUMNS = {
    "configuration": "configuration",
    "seeds": "seeds",
    "final_return_mean": "final eval return (mean)",
    "final_return_std": "std across seeds",
    "final_return_ci95": "95% CI +-",
    "best_return_mean": "best eval return (mean)",
    "final_step": "final step",
}
# Student-t 97.5% quantiles for 1..30 degrees of freedom; beyond, a Cornish-Fisher expansion (error < 1e-5).
# Hand-written so that numpy stays the only numerical dependency (no scipy for one number).
_T975 = (12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004, 2.262157, 2.228139,
         2.200985, 2.178813, 2.160369, 2.144787, 2.131450, 2.119905, 2.109816, 2.100922, 2.093024, 2.085963,
         2.079614, 2.073873, 2.068658, 2.063899, 2.059539, 2.055529, 2.051831, 2.048407, 2.045230, 2.042272)


class PlotError(Exception):
    """A directory that cannot be plotted (missing, holding no runs, unreadable files); the CLI's one-line error."""


@dataclass(frozen=True)
class Metric:
    """One figure: its file, title, and the metric names it shows (the first one a run has wins)."""

    file_name: str
    title: str
    names: tuple[str, ...]
    smooth: bool = False  # plot a rolling mean (sweeps average the smoothed curves)
    from_evaluations: bool = False  # read evaluations.jsonl instead of the CSV logs


METRICS = (
    Metric("episode_return.png", "training episode return", ("episode/reward",), smooth=True),
    Metric("loss.png", "TD loss", ("train/loss",)),
    Metric("exploration.png", "exploration", ("train/epsilon", "train/temperature")),
    Metric("q_values.png", "mean Q-value", ("train/q_mean",)),
    Metric("eval_return.png", "evaluation return", (EVAL_RETURN_MEAN,), from_evaluations=True),
)


@dataclass(frozen=True)
class Run:
    """What the plots need from one run directory."""

    path: Path
    env: str
    seed: int | None
    overrides: tuple[str, ...]  # the configuration: its Hydra overrides minus the seed's, sorted
    evaluations: tuple[dict[str, float], ...]  # evaluations.jsonl, keys as written (``step``, ``eval/return_mean``, ...)

    @property
    def label(self) -> str:
        """The configuration's name: ``"train.lr=0.001,train.n_step=3"``, or ``"default"`` without overrides."""
        return ",".join(self.overrides) or "default"

    def eval_series(self, key: str = EVAL_RETURN_MEAN) -> Series:
        records = [e for e in self.evaluations if key in e and e[key] is not None]
        return _sorted_by_step(np.array([e["step"] for e in records], float), np.array([e[key] for e in records], float))

    def curve(self, metric: Metric) -> tuple[str, Series] | None:
        """The first of ``metric.names`` this run logged, with its values; None if it logged none."""
        for name in metric.names:
            series = self.eval_series(name) if metric.from_evaluations else read_scalar(self.path, name)
            if series is not None and series[0].size:
                return name, series
        return None


def find_run_dirs(root: Path) -> list[Path]:
    """Directories under ``root`` (itself included) holding ``config.yaml`` and ``evaluations.jsonl`` or
    ``summary.json``; the search does not descend into a run (its checkpoints can hold many files)."""
    found = []
    for directory, subdirs, files in os.walk(root):
        if "config.yaml" in files and ("evaluations.jsonl" in files or "summary.json" in files):
            found.append(Path(directory))
            subdirs.clear()
        subdirs.sort()
    return sorted(found)


def load_run(run_dir: Path) -> Run:
    """Reads one run directory (``summary.json`` is optional: a killed run may lack it)."""
    config = _read(run_dir / "config.yaml", yaml.safe_load, dict)
    summary = _read(run_dir / "summary.json", json.loads, dict) if (run_dir / "summary.json").is_file() else {}
    overrides_path = run_dir / ".hydra" / "overrides.yaml"
    overrides = _read(overrides_path, yaml.safe_load, list) if overrides_path.is_file() else []
    env_cfg, train_cfg = config.get("env") or {}, config.get("train") or {}
    return Run(
        path=run_dir,
        env=str(summary.get("env") or env_cfg.get("id") or env_cfg.get("name") or "unknown env"),
        seed=summary.get("seed", train_cfg.get("seed")),
        overrides=config_overrides([str(o) for o in overrides]),
        evaluations=tuple(_read_evaluations(run_dir, summary)),
    )


def config_overrides(overrides: Sequence[str]) -> tuple[str, ...]:
    """``["train.seed=0", "train.lr=0.001"]`` -> ``("train.lr=0.001",)``: the overrides that name a configuration,
    sorted (the same configuration launched with its overrides in another order is the same)."""
    return tuple(sorted(o for o in overrides if o.split("=", 1)[0].lstrip("+~") not in SEED_OVERRIDE_KEYS))


def legend_labels(groups: dict[str, list[Run]]) -> dict[str, str]:
    """Legend text per configuration: its overrides minus those all configurations share, wrapped (the full
    labels are in results.md)."""
    shared = set.intersection(*(set(group[0].overrides) for group in groups.values()))
    return {label: textwrap.fill(" ".join(o for o in group[0].overrides if o not in shared) or label, LEGEND_WIDTH_CHARS)
            for label, group in groups.items()}


def read_scalar(run_dir: Path, name: str) -> Series | None:
    """``logs/csv/scalars/<name>.csv`` (``step,value`` rows, header optional) or None when the run has no such file."""
    path = run_dir / "logs" / "csv" / "scalars" / f"{name}.csv"
    if not path.is_file():
        return None
    rows = []
    with path.open(newline="") as file:
        for row in csv.reader(file):
            try:
                rows.append((float(row[0]), float(row[1])))
            except (ValueError, IndexError):  # the header, or a line cut short by a killed run
                continue
    steps, values = np.array(rows, float).reshape(-1, 2).T
    return _sorted_by_step(steps, values)


def rolling_mean(values_T: np.ndarray, window: int = ROLLING_WINDOW_POINTS) -> np.ndarray:
    """Trailing mean over the last ``window`` points, ignoring NaNs (NaN where the whole window is NaN)."""
    finite_T = np.isfinite(values_T)
    sums = np.concatenate([[0.0], np.cumsum(np.where(finite_T, values_T, 0.0))])
    counts = np.concatenate([[0], np.cumsum(finite_T)])
    end = np.arange(1, values_T.size + 1)
    start = np.maximum(end - window, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (sums[end] - sums[start]) / (counts[end] - counts[start])


def t_quantile_975(dof: int) -> float:
    """The 97.5% quantile of Student's t with ``dof`` degrees of freedom (two-sided 95% intervals)."""
    if dof <= len(_T975):
        return _T975[dof - 1]
    z = 1.959963984540054
    return (z + (z**3 + z) / (4 * dof) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * dof**2)
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * dof**3))


def mean_std_ci(samples_RG: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column of ``samples_RG`` (R runs x G points, NaN = no sample): the mean, the sample std (ddof 1) and the
    95% CI half-width ``t(n-1) * std / sqrt(n)``; std and half-width are NaN where a column has one sample."""
    count_G = np.isfinite(samples_RG).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_G = np.nansum(samples_RG, axis=0) / count_G
        std_G = np.sqrt(np.nansum((samples_RG - mean_G) ** 2, axis=0) / (count_G - 1))
        std_G = np.where(count_G > 1, std_G, np.nan)
        t_G = np.array([t_quantile_975(int(n) - 1) if n > 1 else np.nan for n in count_G])
        return mean_G, std_G, t_G * std_G / np.sqrt(count_G)


def mean_curve(curves: Sequence[Series]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean across runs and its 95% CI half-width on the union of the runs' steps: each run is interpolated onto
    that grid inside its own step range (no extrapolation: a run stopped early counts only where it ran)."""
    curves = [(steps[np.isfinite(values)], values[np.isfinite(values)]) for steps, values in curves]
    curves = [(steps, values) for steps, values in curves if steps.size]
    if not curves:
        return np.empty(0), np.empty(0), np.empty(0)
    grid_G = np.unique(np.concatenate([steps for steps, _ in curves]))
    samples_RG = np.stack([np.where((grid_G >= steps[0]) & (grid_G <= steps[-1]), np.interp(grid_G, steps, values), np.nan)
                           for steps, values in curves])
    mean_G, _, half_G = mean_std_ci(samples_RG)
    return grid_G, mean_G, half_G


def group_runs(runs: Sequence[Run]) -> dict[str, list[Run]]:
    """Runs by configuration label, labels sorted."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.label, []).append(run)
    return dict(sorted(groups.items()))


def results_table(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """One row per configuration (sorted by label), over its runs with at least one evaluation: the final (last)
    evaluation return's mean, std and 95% CI half-width across seeds, the mean of each run's best evaluation
    return, and the final step (the earliest last-evaluation step among the seeds: equal unless one was cut short)."""
    rows = []
    for label, group in group_runs(runs).items():
        evaluated = [(steps, returns) for steps, returns in (run.eval_series() for run in group) if steps.size]
        finals_R1 = np.array([[returns[-1]] for _, returns in evaluated], float).reshape(-1, 1)
        mean, std, half = (float(stat_G[0]) for stat_G in mean_std_ci(finals_R1))
        rows.append({
            "configuration": label,
            "seeds": len(evaluated),
            "final_return_mean": mean,
            "final_return_std": std,
            "final_return_ci95": half,
            "best_return_mean": float(np.mean([np.nanmax(returns) for _, returns in evaluated])) if evaluated else math.nan,
            "final_step": min((int(steps[-1]) for steps, _ in evaluated), default=None),
        })
    return rows


def results_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The results as a markdown table (returns to two decimals; n/a for a std of one seed)."""
    lines = ["| " + " | ".join(RESULT_COLUMNS.values()) + " |", "|" + "---|" * len(RESULT_COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(_format_cell(row[key]) for key in RESULT_COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def write_results(rows: Sequence[dict[str, Any]], out_dir: Path) -> list[Path]:
    """``results.md`` and ``results.csv`` (full precision; empty cells for undefined values) in ``out_dir``."""
    markdown_path, csv_path = out_dir / "results.md", out_dir / "results.csv"
    markdown_path.write_text(results_markdown(rows))
    with csv_path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(RESULT_COLUMNS))
        writer.writeheader()
        writer.writerows({key: "" if _undefined(value) else value for key, value in row.items()} for row in rows)
    return [markdown_path, csv_path]


def plot_single_run(run: Run, out_dir: Path) -> list[Path]:
    """The figures of one run; those whose metric it did not log are skipped."""
    written = []
    for metric in METRICS:
        found = run.curve(metric)
        if found is None:
            continue
        name, (steps, values) = found
        which = f" ({name.split('/')[-1]})" if len(metric.names) > 1 else ""  # epsilon or temperature
        figure, axes = _new_figure(f"{metric.title}{which}: {run.env}, seed {run.seed}", name)
        if metric.smooth:
            axes.plot(steps, values, alpha=0.35, label="per log point")
            axes.plot(steps, rolling_mean(values), label=f"rolling mean ({ROLLING_WINDOW_POINTS} log points)")
            axes.legend()
        elif metric.from_evaluations:
            std_by_step = dict(zip(*run.eval_series(EVAL_RETURN_STD)))
            std = np.array([std_by_step.get(step, np.nan) for step in steps])
            axes.plot(steps, values, marker="o", label="mean of evaluation episodes")
            axes.fill_between(steps, values - std, values + std, alpha=0.25, label="+- std")
            axes.legend()
        else:
            axes.plot(steps, values)
        written.append(_save(figure, out_dir / metric.file_name))
    return written


def plot_sweep(runs: Sequence[Run], out_dir: Path) -> list[Path]:
    """Per metric, one curve per configuration: the mean across seeds with a 95% confidence band."""
    envs = ", ".join(sorted({run.env for run in runs}))
    groups = group_runs(runs)
    legends = legend_labels(groups)
    written = []
    for metric in METRICS:
        smoothed = f", rolling mean of {ROLLING_WINDOW_POINTS} log points" if metric.smooth else ""
        figure, axes = _new_figure(f"{metric.title}: {envs} (mean over seeds, 95% CI{smoothed})", ylabel="")
        names_found: set[str] = set()
        for label, group in groups.items():
            found = [curve for curve in (run.curve(metric) for run in group) if curve is not None]
            names_found.update(name for name, _ in found)
            steps, mean, half = mean_curve([(steps, rolling_mean(values) if metric.smooth else values) for _, (steps, values) in found])
            if not steps.size:
                continue
            seeds = f"{len(found)} seed{'s' if len(found) > 1 else ''}"
            which = ", " + "/".join(sorted({name.split("/")[-1] for name, _ in found})) if len(metric.names) > 1 else ""
            line, = axes.plot(steps, mean, label=f"{legends[label]} ({seeds}{which})")
            axes.fill_between(steps, mean - half, mean + half, color=line.get_color(), alpha=0.2)  # NaN (one seed): no band
        if axes.lines:
            axes.set_ylabel(" / ".join(sorted(names_found)))
            axes.legend(fontsize="x-small")
            written.append(_save(figure, out_dir / metric.file_name))
    return written


def plot_runs(path: Path, out_dir: Path | None = None) -> list[Path]:
    """Plots the run or sweep under ``path`` into ``out_dir`` (default ``<path>/plots``); a sweep also gets
    ``results.md`` and ``results.csv``. Returns the files written; raises :class:`PlotError`."""
    path = Path(path)
    if not path.is_dir():
        raise PlotError(f"{path}: no such directory")
    run_dirs = find_run_dirs(path)
    if not run_dirs:
        raise PlotError(f"{path}: no runs found (a run directory holds config.yaml and evaluations.jsonl or summary.json)")
    runs = [load_run(run_dir) for run_dir in run_dirs]
    out_dir = Path(out_dir) if out_dir is not None else path / "plots"
    out_dir.mkdir(parents=True, exist_ok=True)
    if len(runs) == 1:
        return plot_single_run(runs[0], out_dir)
    return plot_sweep(runs, out_dir) + write_results(results_table(runs), out_dir)


def _new_figure(title: str, ylabel: str) -> tuple[Figure, Axes]:
    # A bare Figure, not pyplot: importing this module leaves the caller's backend alone and no figure stays open.
    figure = Figure(figsize=FIGSIZE_IN, layout="constrained")
    axes = figure.add_subplot()
    axes.set(title=title, xlabel="agent steps", ylabel=ylabel)
    axes.title.set_fontsize("medium")
    axes.grid(alpha=0.3)
    return figure, axes


def _save(figure: Figure, path: Path) -> Path:
    figure.savefig(path, dpi=DPI)
    return path


def _sorted_by_step(steps_T: np.ndarray, values_T: np.ndarray) -> Series:
    """Sorted by step; of rows logged twice for one step (a resumed run logs again), the last written wins."""
    order = np.argsort(steps_T, kind="stable")
    steps_T, values_T = steps_T[order], values_T[order]
    last = np.ones_like(steps_T, dtype=bool)
    last[:-1] = steps_T[1:] != steps_T[:-1]
    return steps_T[last], values_T[last]


def _read_evaluations(run_dir: Path, summary: dict[str, Any]) -> list[dict[str, float]]:
    """evaluations.jsonl, else the copy in summary.json; a line cut short by a killed run is skipped."""
    path = run_dir / "evaluations.jsonl"
    if not path.is_file():  # runs from before evaluations.jsonl wrote bare names (``return_mean``) in summary.json
        return [current_names(record) for record in summary.get("evaluations") or []]
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return [record for record in records if isinstance(record, dict) and "step" in record]


def _read(path: Path, parse: Callable[[str], Any], expected: type) -> Any:
    """``parse(text)`` of the file at ``path``, which must be an ``expected``; a :class:`PlotError` otherwise."""
    try:
        content = parse(path.read_text())
    except (OSError, ValueError, yaml.YAMLError) as err:  # json.JSONDecodeError is a ValueError
        raise PlotError(f"{path}: cannot read it: {err}") from None
    if not isinstance(content, expected):
        raise PlotError(f"{path}: expected a {'mapping' if expected is dict else 'list'}, found {type(content).__name__}")
    return content


def _undefined(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _format_cell(value: Any) -> str:
    if _undefined(value):
        return "n/a"
    return f"{value:.2f}" if isinstance(value, float) else str(value).replace("|", "\\|")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m rlpipe.plot", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", type=Path, metavar="RUN_OR_SWEEP_DIR", help="a run directory, or a sweep holding several")
    parser.add_argument("--out", type=Path, metavar="DIR", help="where to write (default: RUN_OR_SWEEP_DIR/plots)")
    args = parser.parse_args(argv)
    try:
        written = plot_runs(args.path, args.out)
    except PlotError as err:
        raise SystemExit(f"rlpipe.plot: {err}") from None
    except OSError as err:  # an output directory that cannot be written, a log file that cannot be read
        raise SystemExit(f"rlpipe.plot: {err.filename}: {err.strerror}") from None
    for path in written:
        print(path)
    table = next((path for path in written if path.name == "results.md"), None)
    if table is not None:
        print()
        print(table.read_text(), end="")


if __name__ == "__main__":
    main()
