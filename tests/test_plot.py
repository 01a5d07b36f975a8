"""``python -m rlpipe.plot`` on synthetic run directories with known numbers: the PNGs of one run and of a sweep,
the sweep's results table against hand-computed means, stds and t-intervals, and the one-line errors."""

from __future__ import annotations

import csv
import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest

from rlpipe.plot import find_run_dirs, load_run, mean_curve, plot_runs, results_table, rolling_mean, t_quantile_975

from conftest import run_module

T_975_DOF2 = 4.303  # Student t, 97.5% quantile, 2 degrees of freedom (3 seeds)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ALL_PNGS = ("episode_return.png", "loss.png", "exploration.png", "q_values.png", "eval_return.png")
EVAL_STEPS = (1000, 2000, 3000)
# eval/return_mean at EVAL_STEPS, per configuration and seed
SWEEP_RETURNS = {
    "train.lr=0.001": [[5.0, 20.0, 10.0], [6.0, 9.0, 12.0], [4.0, 8.0, 17.0]],
    "train.lr=0.0001": [[1.0, 2.0, 3.0], [2.0, 4.0, 5.0], [1.0, 3.0, 7.0]],
}


def write_run(run_dir: Path, *, seed: int, returns: list[float], overrides: list[str] | None = None, csv_logs: bool = True,
              exploration: str = "egreedy", summary: bool = True) -> Path:
    """A run directory as ``rlpipe.train`` writes it, with evaluations at ``EVAL_STEPS`` returning ``returns``."""
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(f"train:\n  seed: {seed}\nenv:\n  name: cartpole\n  id: CartPole-v1\n"
                                         f"exploration:\n  kind: {exploration}\n")
    evaluations = [{"step": step, "wall_seconds": 1.0, "eval/return_mean": value, "eval/return_std": 1.5, "eval/length_mean": value}
                   for step, value in zip(EVAL_STEPS, returns)]
    (run_dir / "evaluations.jsonl").write_text("".join(json.dumps(e) + "\n" for e in evaluations))
    if summary:
        (run_dir / "summary.json").write_text(json.dumps({"env": "CartPole-v1", "seed": seed, "steps": EVAL_STEPS[-1],
                                                          "eval/return_mean": returns[-1], "eval/return_std": 1.5}))
    if overrides is not None:
        (run_dir / ".hydra").mkdir()
        (run_dir / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
        (run_dir / ".hydra" / "config.yaml").write_text("train:\n  seed: 0\n")  # Hydra's copy: not a run of its own
    if csv_logs:
        exploration_metric = "train/epsilon" if exploration == "egreedy" else "train/temperature"
        for name in ("episode/reward", "train/loss", exploration_metric, "train/q_mean", "eval/return_mean"):
            path = run_dir / "logs" / "csv" / "scalars" / f"{name}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            rows = [f"{step},{'nan' if step == 200 else seed + step / 1000}" for step in range(100, 3001, 100)]
            path.write_text("step,value\n" + "\n".join(rows) + "\n")
    return run_dir


@pytest.fixture
def sweep(tmp_path) -> Path:
    """A Hydra multirun sweep: 2 learning rates x 3 seeds, one configuration nested a level deeper, one run killed
    before it wrote summary.json, and the exploration metric differing between configurations."""
    root = tmp_path / "multirun" / "2025-01-01"
    (root / "multirun.yaml").parent.mkdir(parents=True)
    (root / "multirun.yaml").write_text("hydra: {}\n")
    job = 0
    for nested, (lr_override, per_seed) in zip(("", "later/"), SWEEP_RETURNS.items()):
        for seed, returns in enumerate(per_seed):
            write_run(root / f"{nested}{job}_{lr_override},train.seed={seed}", seed=seed, returns=returns,
                      overrides=[f"train.seed={seed}", lr_override], summary=job != 1,
                      exploration="egreedy" if nested == "" else "temperature")
            job += 1
    return root


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, path
    assert len(data) > 5_000, path  # a drawn figure, not an empty canvas
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    assert (width, height) == (700, 400), path  # figsize (7, 4) at 100 dpi


def test_sweep_writes_every_plot_and_the_results_table(sweep):
    result = run_module("rlpipe.plot", str(sweep), timeout=120)
    assert result.returncode == 0, result.stderr
    out = sweep / "plots"
    for name in ALL_PNGS:
        assert_png(out / name)
        assert str(out / name) in result.stdout
    assert "| train.lr=0.0001 | 3 |" in result.stdout  # the markdown table is printed too

    with (out / "results.csv").open() as file:
        rows = {row["configuration"]: row for row in csv.DictReader(file)}
    assert list(rows) == sorted(SWEEP_RETURNS)
    for label, per_seed in SWEEP_RETURNS.items():
        finals = [returns[-1] for returns in per_seed]
        mean = sum(finals) / 3
        std = math.sqrt(sum((f - mean) ** 2 for f in finals) / 2)
        half_width = T_975_DOF2 * std / math.sqrt(3)
        best_mean = sum(max(returns) for returns in per_seed) / 3
        row = rows[label]
        assert row["seeds"] == "3" and row["final_step"] == "3000"
        assert float(row["final_return_mean"]) == pytest.approx(mean)
        assert float(row["final_return_std"]) == pytest.approx(std)
        assert float(row["final_return_ci95"]) == pytest.approx(half_width, rel=1e-3)
        assert float(row["best_return_mean"]) == pytest.approx(best_mean)
        assert f"| {label} | 3 | {mean:.2f} | {std:.2f} | {half_width:.2f} | {best_mean:.2f} | 3000 |" in (out / "results.md").read_text()
    # by hand: train.lr=0.001 finals 10, 12, 17 -> mean 13, std sqrt(13), half-width 4.303 * sqrt(13/3); bests 20, 12, 17
    assert float(rows["train.lr=0.001"]["final_return_ci95"]) == pytest.approx(4.303 * math.sqrt(13 / 3), rel=1e-3)
    assert float(rows["train.lr=0.001"]["best_return_mean"]) == pytest.approx(49 / 3)


def test_sweep_out_dir_and_api(sweep, tmp_path):
    runs = [load_run(run_dir) for run_dir in find_run_dirs(sweep)]
    assert len(runs) == 6 and {run.label for run in runs} == set(SWEEP_RETURNS)
    assert [row["configuration"] for row in results_table(runs)] == sorted(SWEEP_RETURNS)
    assert runs[1].seed == 1 and runs[1].env == "CartPole-v1"  # the killed run: read from config.yaml
    written = plot_runs(sweep, tmp_path / "figures")
    assert sorted(path.name for path in written) == sorted([*ALL_PNGS, "results.md", "results.csv"])
    assert all(path.parent == tmp_path / "figures" for path in written) and not (sweep / "plots").exists()


def test_single_run_writes_the_five_plots(tmp_path):
    run_dir = write_run(tmp_path / "run", seed=3, returns=[1.0, 2.0, 3.0])
    written = plot_runs(run_dir)
    assert sorted(path.name for path in written) == sorted(ALL_PNGS)
    for path in written:
        assert path.parent == run_dir / "plots"
        assert_png(path)


def test_run_without_csv_logs_still_gets_its_evaluation_curve(tmp_path):
    run_dir = write_run(tmp_path / "tensorboard_run", seed=0, returns=[1.0, 2.0, 3.0], csv_logs=False, exploration="temperature")
    assert [path.name for path in plot_runs(run_dir)] == ["eval_return.png"]
    assert_png(run_dir / "plots" / "eval_return.png")


def test_run_killed_before_its_first_evaluation_and_a_run_from_before_evaluations_jsonl(tmp_path):
    """A seed with no evaluation yet counts in no result (no band, std n/a); a run with only summary.json's
    ``evaluations`` (bare ``return_mean`` names) still gives its curve."""
    write_run(tmp_path / "sweep" / "0", seed=0, returns=[], overrides=["train.seed=0"], summary=False)
    legacy = write_run(tmp_path / "sweep" / "1", seed=1, returns=[2.0, 4.0, 3.0], overrides=["train.seed=1"], summary=False)
    (legacy / "evaluations.jsonl").unlink()
    (legacy / "summary.json").write_text(json.dumps({"env": "CartPole-v1", "seed": 1, "evaluations": [
        {"step": step, "return_mean": value, "return_std": 0.5} for step, value in zip(EVAL_STEPS, [2.0, 4.0, 3.0])]}))
    written = plot_runs(tmp_path / "sweep")
    assert sorted(path.name for path in written) == sorted([*ALL_PNGS, "results.md", "results.csv"])
    [row] = results_table([load_run(run_dir) for run_dir in find_run_dirs(tmp_path / "sweep")])
    assert row["configuration"] == "default" and row["seeds"] == 1 and row["final_step"] == 3000
    assert row["final_return_mean"] == 3.0 and row["best_return_mean"] == 4.0 and math.isnan(row["final_return_ci95"])
    assert "| default | 1 | 3.00 | n/a | n/a | 4.00 | 3000 |" in (tmp_path / "sweep" / "plots" / "results.md").read_text()
    assert "default,1,3.0,,,4.0,3000" in (tmp_path / "sweep" / "plots" / "results.csv").read_text()


@pytest.mark.parametrize("case", ["missing", "empty", "corrupt"])
def test_unusable_directory_is_one_line_on_stderr(tmp_path, case):
    target = tmp_path / "nothing_here"
    if case != "missing":
        target.mkdir()
    if case == "corrupt":  # a run whose summary.json was cut short
        (target / "config.yaml").write_text("train:\n  seed: 0\n")
        (target / "summary.json").write_text('{"env": "CartPole-v1", "se')
    result = run_module("rlpipe.plot", str(target), timeout=120)
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("rlpipe.plot: "), result.stderr
    assert "Traceback" not in result.stderr and not result.stdout


def test_mean_curve_interpolates_onto_the_union_of_steps():
    """Run a logs at 0 and 10, run b at 0, 5, 10, run c only up to 5: c counts only where it ran."""
    curves = [(np.array([0.0, 10.0]), np.array([0.0, 10.0])), (np.array([0.0, 5.0, 10.0]), np.array([2.0, 2.0, 2.0])),
              (np.array([0.0, 5.0]), np.array([4.0, np.nan]))]
    steps, mean, half = mean_curve(curves)
    assert steps.tolist() == [0.0, 5.0, 10.0]
    assert mean.tolist() == pytest.approx([2.0, 3.5, 6.0])  # at 5: a interpolated to 5, b 2 (c's NaN dropped)
    assert half[0] == pytest.approx(T_975_DOF2 * 2.0 / math.sqrt(3), rel=1e-3)  # values 0, 2, 4: std 2
    assert half[1] == pytest.approx(12.706 * math.sqrt(4.5) / math.sqrt(2), rel=1e-3)  # values 5, 2: std sqrt(4.5)


def test_rolling_mean_and_t_quantiles():
    assert rolling_mean(np.array([1.0, np.nan, 3.0, 5.0]), window=2).tolist() == [1.0, 1.0, 3.0, 4.0]
    assert [round(t_quantile_975(dof), 3) for dof in (1, 2, 10, 30, 31, 1000)] == [12.706, 4.303, 2.228, 2.042, 2.040, 1.962]
