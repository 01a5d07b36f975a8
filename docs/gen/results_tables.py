#!/usr/bin/env python3
"""Markdown tables from the benchmark results: ``benchmarks/results/<name>.json`` -> ``docs/results/tables/<name>.md``.

Every table comes from the JSON alone (no number is typed here), with a provenance block (command, commit, date,
machine) and a footer saying the file is generated. Each benchmark family has one small renderer, chosen by file
name in ``RENDERERS``; a file no pattern matches (a new benchmark) gets the generic renderer, which flattens its
scalar fields into a two-column table, so a new results file never breaks the generator.

    python docs/gen/results_tables.py           # (re)write the tables, remove stale ones
    python docs/gen/results_tables.py --check   # compare with the files on disk: diff and exit 1 when they differ

Standard library only (no torch, no rlpipe): it runs in well under a second.
"""

from __future__ import annotations

import argparse
import difflib
import fnmatch
import json
import re
import statistics
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]  # docs/gen/results_tables.py -> the repository root
RESULTS = REPO / "benchmarks" / "results"
TABLES = REPO / "docs" / "results" / "tables"
SCRIPT = "docs/gen/results_tables.py"

PROVENANCE_KEYS = ("benchmark", "command", "commit", "date", "provenance", "machine", "versions", "libraries")
NONE = "-"  # a cell whose value the file does not hold (or holds as null)


# --- formatting -------------------------------------------------------------------------------------------------

def num(value: object, digits: int = 1) -> str:
    """Counts with thousands separators, floats with ``digits`` fixed decimals, booleans as yes/no, null as NONE."""
    if value is None:
        return NONE
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def count(value: object) -> str:
    """A count stored as an int or as an integral float (steps, episodes)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return num(value, 0)


def pct(value: float | None, digits: int = 1) -> str:
    return NONE if value is None else f"{value:.{digits}%}"


def kilo(step: int | float) -> str:
    """An agent-step count in thousands: 150000 -> 150k."""
    return f"{step / 1000:g}k"


def spread(values: Sequence[float], digits: int = 1) -> str:
    """min - max of a list of rates."""
    return f"{num(min(values), digits)} - {num(max(values), digits)}" if values else NONE


def plain(value: object) -> str:
    """A setting as JSON spells it (true, null, 0.05), counts with thousands separators, strings in code spans."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):  # settings (0.05, 20) as written; measured values to 4 significant digits
        return f"{value:,.0f}" if value.is_integer() else f"{value:,.1f}" if abs(value) >= 100 else f"{value:.4g}"
    if isinstance(value, str):
        return f"`{value}`" if value else '""'
    if isinstance(value, list):
        return ", ".join(plain(item) for item in value) if value else "[]"
    return f"`{json.dumps(value)}`"


def pick(mapping: dict, *names: str, default: object = None) -> object:
    """The first of ``names`` that ``mapping`` holds: results files of different ages spell a quantity differently
    (``eval/return_mean``, ``eval_return_mean``, per evaluation ``return_mean``)."""
    for name in names:
        if name in mapping:
            return mapping[name]
    return default


def ev(mapping: dict, name: str) -> object:
    """An evaluation quantity under its current name (``eval/<name>``) or either legacy one."""
    return pick(mapping, f"eval/{name}", f"eval_{name}", name)


def cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def table(header: Sequence[str], rows: Iterable[Sequence[object]], align: str = "") -> list[str]:
    """A Markdown table; ``align`` has one letter per column, ``r`` for right-aligned (numbers), else left."""
    align = align.ljust(len(header), "l")
    lines = ["| " + " | ".join(cell(h) for h in header) + " |",
             "| " + " | ".join("---:" if a == "r" else "---" for a in align) + " |"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return lines + [""]


def section(title: str, *blocks: list[str]) -> list[str]:
    lines = [f"#### {title}", ""]  # under the including page's own sections
    for block in blocks:
        lines += block
    return lines


def paragraph(text: str) -> list[str]:
    return [text, ""]


def split_count(name: str) -> tuple[str, int | None]:
    """``"rlpipe Collector, 4 env"`` -> ``("rlpipe Collector", 4)``; a name without a trailing count -> (name, None)."""
    match = re.fullmatch(r"(.*), (\d+) envs?", name)
    return (match.group(1), int(match.group(2))) if match else (name, None)


def rates_table(contenders: dict[str, dict], unit: str, digits: int = 1) -> list[str]:
    """Median, range and rounds of interleaved rate measurements (``{"median", "min", "max", "rates"}``)."""
    return table(["contender", f"{unit} (median)", "min - max", "rounds"],
                 [[name, num(r["median"], digits), f"{num(r['min'], digits)} - {num(r['max'], digits)}", len(r.get("rates", []))]
                  for name, r in contenders.items()], "lrrr")


def step_pivot(columns: dict[str, Sequence[dict]], value: Callable[[dict], str], step_header: str = "agent steps") -> list[str]:
    """One row per step (the union over the columns, in increasing order), one column per labelled series of
    ``{"step": ..., ...}`` rows; NONE where a series has no row at that step."""
    by_column = {label: {row["step"]: row for row in rows} for label, rows in columns.items()}
    steps = sorted({step for rows in by_column.values() for step in rows})
    return table([step_header, *columns],
                 [[count(step), *(value(rows[step]) if step in rows else NONE for rows in by_column.values())] for step in steps],
                 "r" * (len(columns) + 1))


# --- provenance -------------------------------------------------------------------------------------------------

def machine_line(machine: dict) -> str:
    parts = [f"{machine['cpu_count']} CPUs (`os.cpu_count()`)" if "cpu_count" in machine else "CPU count not recorded"]
    if "torch_threads" in machine:
        parts.append(f"torch threads: {machine['torch_threads']}")
    parts.append(f"torch {machine['torch']}" if "torch" in machine else "torch version not recorded")
    parts.append(f"Python {machine['python']}" if "python" in machine else "Python version not recorded")
    if "processor" in machine:
        parts.append(f"processor {machine['processor']}")
    parts.append(f"CPU model {machine['cpu_model']}" if machine.get("cpu_model") else "CPU model not recorded")
    for flag, label in (("avx2", "AVX2"), ("avx512f", "AVX-512F"), ("amx", "AMX")):
        if flag in machine:
            parts.append(f"{label} {num(machine[flag])}")
    known = {"cpu_count", "torch_threads", "torch", "python", "processor", "cpu_model", "avx2", "avx512f", "amx"}
    parts += [f"{key} {plain(value)}" for key, value in machine.items() if key not in known]
    return ", ".join(parts)


def provenance(name: str, data: dict) -> list[str]:
    rel = f"benchmarks/results/{name}"
    lines = [f"- command: `{data['command']}`" if "command" in data else "- command: not recorded"]
    if "commit" in data:
        dirty = "; `-dirty`: the checkout had uncommitted changes" if str(data["commit"]).endswith("-dirty") else ""
        lines.append(f"- commit: {data['commit']}{dirty}")
    else:
        lines.append(f"- commit: not recorded in `{rel}`")
    lines.append(f"- date: {data['date']}" if "date" in data else "- date: not recorded")
    if "provenance" in data:
        lines.append(f"- provenance: {data['provenance']}")
    lines.append(f"- machine: {machine_line(data['machine'])}" if isinstance(data.get("machine"), dict)
                 else "- machine: not recorded")
    versions = pick(data, "versions", "libraries")
    if isinstance(versions, dict) and versions:
        lines.append("- library versions: " + ", ".join(f"{key} {value}" for key, value in versions.items()))
    else:
        lines.append("- library versions: not recorded in the file")
    if data.get("benchmark") not in (None, Path(name).stem):
        lines.append(f"- `benchmark` field: `{data['benchmark']}` (differs from the file name)")
    return lines + [""]


def top_level_fields(data: dict) -> list[str]:
    """The top-level scalars and lists of scalars (settings such as ``steps``, ``env``, ``overrides``)."""
    rows = [[f"`{key}`", plain(value)] for key, value in data.items()
            if key not in PROVENANCE_KEYS
            and (not isinstance(value, (dict, list)) or (isinstance(value, list) and all(not isinstance(v, (dict, list)) for v in value)))]
    return section("Top-level fields", table(["field", "value"], rows)) if rows else []


# --- renderers: one per benchmark family --------------------------------------------------------------------------

def render_atari_env(data: dict) -> list[str]:
    env = data["env"]
    rows = [[name, num(r["us_per_agent_step"], 0), num(r["x_bare_ale"], 2), spread(r.get("us_per_agent_step_rounds", []), 0)]
            for name, r in env.items()]
    rows += [[name, f"not run: {reason}", "", ""] for name, reason in data.get("not_run", {}).items()]
    lines = section("Environment paths",
                    paragraph(f"Medians of {data.get('rounds', NONE)} interleaved rounds of {count(data.get('steps'))} agent steps, "
                              f"{data.get('num_envs', NONE)} games side by side where the path batches them."),
                    table(["environment path", "us per agent step (median)", "x a bare ALE step", "rounds: min - max us"], rows, "lrrr"))
    if data.get("flicker_share"):
        games = data["flicker_share"]
        lines += section("Flicker share",
                         paragraph(f"Share of {count(data.get('flicker_steps'))} random-play agent steps whose last emulator frame "
                                   "misses a flickering object."),
                         table(list(games), [[pct(share) for share in games.values()]], "r" * len(games)))
    training = data.get("training", {})
    if training:
        per_run = [[backend, i, num(r["steps_per_s"]), pct(r["env_fraction"]), pct(r["acting_fraction"]),
                    pct(r["env_fraction"] + r["acting_fraction"]), pct(r.get("learner_fraction")), pct(r.get("replay_fraction")),
                    num(r["env_ms_per_step"], 2), num(r["acting_ms_per_step"], 2), r.get("windows", NONE)]
                   for backend, runs in training.items() for i, r in enumerate(runs)]

        def median(runs: list[dict], fn: Callable[[dict], float]) -> float:
            return statistics.median(fn(r) for r in runs)

        medians = [[backend, len(runs), num(median(runs, lambda r: r["steps_per_s"])), pct(median(runs, lambda r: r["env_fraction"])),
                    pct(median(runs, lambda r: r["acting_fraction"])),
                    pct(median(runs, lambda r: r["env_fraction"] + r["acting_fraction"])),
                    num(median(runs, lambda r: r["env_ms_per_step"]), 2), num(median(runs, lambda r: r["acting_ms_per_step"]), 2)]
                   for backend, runs in training.items() if runs]
        lines += section(f"Training ({count(data.get('train_steps'))} agent steps per run)",
                         paragraph("Per run, from the run's own `time/*` logs (shares of wall time):"),
                         table(["backend", "run", "agent steps/s", "env share", "acting share", "env + acting", "learner share",
                                "replay share", "env ms per agent step", "acting ms per agent step", "windows"],
                               per_run, "lrrrrrrrrrr"),
                         paragraph("Medians over each backend's runs:"),
                         table(["backend", "runs", "agent steps/s", "env share", "acting share", "env + acting",
                                "env ms per agent step", "acting ms per agent step"], medians, "lrrrrrrr"))
        backends = list(training)
        for other in backends[1:]:  # per round, against the first backend
            ratios = [new["steps_per_s"] / old["steps_per_s"] for new, old in zip(training[other], training[backends[0]])]
            if ratios:
                lines += paragraph(f"Per round, `{other}` / `{backends[0]}` agent steps/s: "
                                   + ", ".join(num(r, 2) for r in ratios) + f" (median {num(statistics.median(ratios), 2)}).")
    return lines


def render_atari_collection(data: dict) -> list[str]:
    rows = []
    for name, r in data["results"].items():
        loop, envs = split_count(name)
        rows.append([loop, NONE if envs is None else envs, num(r["median"], 0), spread(r.get("rates", []), 0),
                     num(r.get("ratio_vs_plain"), 2), num(r.get("ratio_vs_plain_same_work"), 2)])
    return section("Agent steps per second",
                   paragraph("Medians over interleaved rounds; ratios are medians of the per-round ratios to the plain ALE loop "
                             "(and to the plain loop doing the same work, where measured)."),
                   table(["loop", "envs", "steps/s (median)", "min - max", "ratio to plain ALE loop", "ratio to plain + same work"],
                         rows, "lrrrrr"))


def render_collector_throughput(data: dict) -> list[str]:
    results = data["results"]
    parsed = {name: split_count(name) for name in results}
    lines = []
    if all(envs is not None for _, envs in parsed.values()):  # pivot: one row per env count, one column per contender
        contenders = list(dict.fromkeys(kind for kind, _ in parsed.values()))
        env_counts = list(dict.fromkeys(envs for _, envs in parsed.values()))
        by_key = {parsed_key: results[name] for name, parsed_key in parsed.items()}
        rows = [[envs, *(f"{num(by_key[(kind, envs)]['median'], 0)} ({num(by_key[(kind, envs)].get('ratio'), 2)})"
                         if (kind, envs) in by_key else NONE for kind in contenders)] for envs in env_counts]
        lines += section("Environment steps per second",
                         paragraph("Medians over interleaved rounds; in brackets the median of the per-round ratios to the "
                                   f"first contender (`{contenders[0]}`) with the same envs."),
                         table(["envs", *(f"{kind} steps/s (ratio)" for kind in contenders)], rows, "r" * (len(contenders) + 1)))
    return lines + section("Spread over rounds", rates_table(results, "steps/s", 0))


def learner_configuration(r: dict) -> str:
    if "levers" in r:
        return "plain fp32 + " + " + ".join(r["levers"])
    parts = [f"{r['buffer']} replay" if "buffer" in r else None,
             f"K = {r['updates_per_phase']}" if "updates_per_phase" in r else None, r.get("mode"),
             f"precision {r['precision']}" + (f" ({r['precision_used']} used)" if "precision_used" in r else "") if "precision" in r else None]
    return ", ".join(p for p in parts if p)


def render_learner_throughput(data: dict) -> list[str]:
    results = data["results"]
    if any("variant" in r for r in results):  # contenders named by variant (Breakout): rlpipe's and plain + lever
        rows = [[f"`{r['variant']}`", learner_configuration(r), r.get("batch_size", NONE), num(r["rlpipe"]["median"]),
                 num(r["plain"]["median"]), num(r["ratio"], 2)] for r in results]
        body = table(["contender (`variant`)", "configuration", "batch", "updates/s (median)", "plain fp32 updates/s (median)",
                      "ratio to plain fp32"], rows, "llrrrr")
        note = ("A contender's own rate is stored under `rlpipe` (for the plain + lever rows too); `plain` is the plain fp32 "
                "update measured in the same rounds.")
    else:  # the MLP presets: rlpipe's learning phase by buffer, mode and updates per phase
        rows = [[r.get("buffer", NONE), r.get("mode", NONE), r.get("updates_per_phase", NONE), num(r["rlpipe"]["median"], 0),
                 num(r["plain"]["median"], 0), num(r["ratio"], 2)] for r in results]
        body = table(["buffer", "mode", "K (updates per phase)", "rlpipe updates/s (median)", "plain PyTorch updates/s (median)",
                      "ratio to plain"], rows, "llrrrr")
        note = f"Batch {data.get('batch_size', NONE)}; the preset's K is {data.get('preset_updates_per_phase', NONE)}."
    digits = 1 if any("variant" in r for r in results) else 0
    spread_rows = [[f"`{r['variant']}`" if "variant" in r else learner_configuration(r), r.get("batch_size", data.get("batch_size", NONE)),
                    spread(r["rlpipe"].get("rates", []), digits), spread(r["plain"].get("rates", []), digits),
                    len(r["rlpipe"].get("rates", []))] for r in results]
    return (section("Updates per second",
                    paragraph("Medians over interleaved rounds; the ratio is the median of the per-round ratios (so not "
                              "exactly the ratio of the medians). " + note), body)
            + section("Spread over rounds", table(["contender", "batch", "updates/s: min - max", "plain: min - max", "rounds"],
                                                  spread_rows, "lrrrr")))


def render_time_to_solve(data: dict) -> list[str]:
    runs = data["runs"]
    rows = [[r["seed"], num(r.get("solved")), count(r.get("solved_at_step")), num(r.get("solved_at_seconds")),
             num(r.get("process_seconds")), count(r.get("steps")), num(r.get("wall_seconds")),
             num(pick(r, "eval/return_mean", "final_eval_return_mean")),
             num(pick(r, "eval/best_return_mean", "best_eval_return_mean"))] for r in runs]
    return (section("Time to solve",
                    paragraph("Wall seconds from the start of training; process seconds add Python start-up and imports."),
                    table(["seed", "solved", "steps to solve", "wall s to solve", "process s", "steps run", "wall s",
                           "final evaluation mean", "best evaluation mean"], rows, "rlrrrrrrr"))
            + section("Evaluations (return mean +- std)",
                      step_pivot({f"seed {r['seed']}": r["evaluations"] for r in runs},
                                 lambda e: f"{num(ev(e, 'return_mean'))} +- {num(ev(e, 'return_std'))}")))


def render_replay_memory(data: dict) -> list[str]:
    full = pick(data, "rss_gib_full", "rss_gb_full")
    rows = [[data.get("storage", NONE), count(data.get("capacity")), data.get("frame_stack", NONE), count(data.get("sampleable")),
             num(pick(data, "rss_gib_before", "rss_gb_before"), 2), num(full, 2),
             NONE if full is None else num(full * 2**30 / 1e9, 2),
             num(pick(data, "rss_gib_peak_while_filling", "rss_gb_peak_while_filling"), 2), num(data.get("fill_seconds"))]]
    sampling = data["sampling"]
    first = next(iter(sampling), None)
    sample_rows = [[name, num(r["median"]), spread(r.get("rates", [])), len(r.get("rates", [])), num(r.get("ratio"), 2)]
                   for name, r in sampling.items()]
    return (section("Memory",
                    paragraph("Process RSS in GiB (the files' `rss_gb_*` fields hold GiB: kB from `/proc` over 1024**2); "
                              "GB = 10**9 bytes."),
                    table(["storage", "capacity", "frame stack", "sampleable", "RSS before (GiB)", "RSS full (GiB)",
                           "RSS full (GB)", "RSS peak while filling (GiB)", "fill s"], rows, "lrrrrrrrr"))
            + section("Batches per second",
                      paragraph(f"Medians over interleaved rounds; ratio: median of the per-round ratios to `{first}`."),
                      table(["contender", "batches/s (median)", "min - max", "rounds", "ratio"], sample_rows, "lrrrr")))


def first_solved(run: dict) -> str:
    if run.get("solved_at_step") is None:
        return "not reached"
    minutes = NONE if run.get("solved_at_seconds") is None else num(run["solved_at_seconds"] / 60)
    return f"{count(run['solved_at_step'])}, {minutes} min"


def protocol_cell(run: dict) -> str:
    protocol = run.get("protocol")
    if not isinstance(protocol, dict):
        return "not recorded"
    parts = [str(protocol.get("name", NONE))]
    if "epsilon" in protocol:
        parts.append(f"epsilon {protocol['epsilon']:g}")
    if "episodes" in protocol:
        parts.append(f"{protocol['episodes']} games")
    return ", ".join(parts)


def render_breakout_runs(data: dict) -> list[str]:
    runs = data["runs"]
    rows = [[label, r.get("seed", NONE), r.get("env") or (r.get("protocol") or {}).get("env_id", NONE), protocol_cell(r),
             num(r.get("finished")), count(r.get("steps")), count(r.get("updates")), num(r["wall_seconds"] / 60),
             num(r["steps"] / r["wall_seconds"]), num(r.get("solved_return")), first_solved(r),
             num(pick(r, "eval/best_return_mean", "best_eval_return_mean"))] for label, r in runs.items()]
    notes = [f"- `{label}`: {r['protocol_note']}" for label, r in runs.items() if r.get("protocol_note")]
    lines = section("Runs",
                    table(["run", "seed", "game", "evaluation protocol", "finished", "agent steps", "updates", "wall min",
                           "agent steps/s", "solved return", "first evaluation >= solved return: step, wall min",
                           "best evaluation mean"], rows, "lrllrrrrrrlr"),
                    ["Protocol notes:", "", *notes, ""] if notes else [])

    greedy = any("eval/greedy_return" in e for r in runs.values() for e in r["evaluations"])
    eval_rows = [[label, count(e["step"]), f"{num(ev(e, 'return_mean'))} +- {num(ev(e, 'return_std'))}",
                  *([num(e.get("eval/greedy_return"))] if greedy else []), num(ev(e, "length_mean")), num(e["wall_seconds"] / 60)]
                 for label, r in runs.items() for e in r["evaluations"]]
    lines += section("Evaluations",
                     table(["run", "agent steps", "game score mean +- std (the run's protocol)",
                            *(["greedy game (`eval/greedy_return`)"] if greedy else []), "length mean", "wall min"],
                           eval_rows, "lrr" + ("r" if greedy else "") + "rr"))

    epsilon_evals = data.get("epsilon_0.05_evaluations") or {}
    if epsilon_evals:
        eps_rows = [[label, f"`{e.get('checkpoint', NONE)}`", count(e.get("step")), num(e.get("epsilon"), 2), e.get("episodes", NONE),
                     f"{num(ev(e, 'return_mean'))} +- {num(ev(e, 'return_std'))}", num(ev(e, "length_mean")),
                     ", ".join(f"{score:g}" for score in ev(e, "returns") or [])] for label, e in epsilon_evals.items()]
        lines += section("Evaluations of a checkpoint (`epsilon_0.05_evaluations`)",
                         table(["run", "checkpoint", "checkpoint step", "epsilon", "games", "mean +- std", "length mean", "game scores"],
                               eps_rows, "llrrrrrl"))

    budgets = {label: r["time_budget"] for label, r in runs.items() if r.get("time_budget")}
    if budgets:
        stages = list(dict.fromkeys(stage for budget in budgets.values() for stage in budget))
        budget_rows = [[label, *(f"{pct(b[s]['fraction'])} ({num(b[s]['ms_per_step'], 2)})" if s in b else NONE for s in stages),
                        pct(b["env"]["fraction"] + b["acting"]["fraction"]) if "env" in b and "acting" in b else NONE]
                       for label, b in budgets.items()]
        lines += section("Time budget",
                         paragraph("Share of each run's wall time per stage (milliseconds per agent step in brackets)."),
                         table(["run", *stages, "collection (env + acting)"], budget_rows, "l" + "r" * (len(stages) + 1)))

    curves = list(dict.fromkeys(name for r in runs.values() for name in r.get("training", {})))
    for name in curves:
        digits = 2 if name == "episode/score" else 4
        series = {label: [{"step": step, "value": value} for step, value in r.get("training", {}).get(name, [])]
                  for label, r in runs.items()}
        lines += section(f"Training curve `{name}` (per log window)", step_pivot(series, lambda row: num(row["value"], digits)))
    return lines


def render_doorkey(data: dict) -> list[str]:
    labelled = [(f"skills, seed {r.get('seed', i)}", r) for i, r in enumerate(data.get("skills", []))]
    labelled += [(f"primitive {size}", r) for size, r in data.get("primitive", {}).items()]
    rows = [[label, f"`{r.get('env', NONE)}`", r.get("seed", NONE), count(r.get("steps")), count(r.get("updates")), count(r.get("episodes")),
             ", ".join(f"{kilo(e['step'])} {num(ev(e, 'success_rate'), 2)}" for e in r["evaluations"]) if len(r["evaluations"]) <= 6
             else f"{len(r['evaluations'])} evaluations (table below)",
             num(ev(r, "success_rate"), 2), num(ev(r, "return_mean"), 2), num(ev(r, "length_mean")),
             num(ev(r, "primitive_steps_mean")), pick(r, "eval/episodes", "eval_episodes", default=NONE), num(r.get("wall_seconds"), 0)] for label, r in labelled]
    lines = section("Runs",
                    paragraph("Final columns: the last evaluation (greedy episodes); steps are decisions for the skills runs, "
                              "agent steps for the primitive ones."),
                    table(["run", "env", "seed", "steps", "updates", "episodes", "success at each evaluation", "final success",
                           "final return", "decisions / episode", "primitive steps / episode", "evaluation episodes", "wall s"],
                          rows, "llrrrrlrrrrrr"))
    long = {label: r["evaluations"] for label, r in labelled if len(r["evaluations"]) > 6}
    if long:
        lines += section("Success at each evaluation (wall s in brackets)",
                         step_pivot(long, lambda e: f"{num(ev(e, 'success_rate'), 2)} ({num(e.get('wall_seconds'), 0)})"))
    return lines


def success_steps(evaluations: list[dict], rate: float) -> int | None:
    return next((e["step"] for e in evaluations if ev(e, "success_rate") == rate), None)


def render_doorkey_rnd(data: dict) -> list[str]:
    runs = data["runs"]
    rows = []
    for label, r in runs.items():
        summary = r.get("summary") or {}
        evaluations = summary.get("evaluations", [])
        best, last = r.get("best_success_rate"), r.get("final_success_rate")
        rates = [ev(e, "success_rate") for e in evaluations]
        if evaluations and len(set(rates)) == 1:
            best_cell = f"{num(rates[0], 2)} at all {len(rates)}"
        elif best is not None:
            best_cell = f"{num(best, 2)} (first at {count(success_steps(evaluations, best))})"
        else:
            best_cell = NONE
        stopped = summary.get("stopped_by")
        rows.append([label, summary.get("seed", NONE), count(r.get("steps_so_far", summary.get("steps"))),
                     (num(r.get("finished")) + (f" ({stopped})" if stopped else "")) if r.get("finished") is not None else NONE,
                     len(evaluations), count(r.get("first_eval_success_step")), count(r.get("first_eval_target_step")),
                     best_cell,
                     f"{num(last, 2)} (at {count(evaluations[-1]['step'])})" if last is not None and evaluations else num(last, 2),
                     count(r.get("first_training_success_step")), num(summary.get("wall_seconds"), 0)])
    lines = section("Runs",
                    paragraph("Greedy success rate of the (exploitation) agent at the training evaluations. "
                              "`first_eval_target_step` is the benchmark's own record of the first evaluation at or above its "
                              "target (0.9, `TARGET_SUCCESS` in `benchmarks/doorkey_rnd.py`), compared on the stored value."),
                    table(["run", "seed", "steps run", "finished (stopped by)", "evaluations", "first evaluation > 0",
                           "first evaluation >= target", "best success", "last success", "first training episode on the goal",
                           "wall s"], rows, "lrrlrrrrrrr"))
    close = [(label, e["step"], ev(e, "success_rate")) for label, r in runs.items() for e in (r.get("summary") or {}).get("evaluations", [])
             if ev(e, "success_rate") is not None and round(ev(e, "success_rate"), 2) >= 0.9 > ev(e, "success_rate")]
    if close:
        lines += paragraph("Shown as 0.90 but stored below 0.9 (float32), so not counted as reaching the target: "
                           + "; ".join(f"`{label}` at {count(step)} ({value!r})" for label, step, value in close) + ".")

    if any(key in r for r in runs.values() for key in ("exploration", "learner", "view")):
        def settings(value: object) -> str:
            return ", ".join(f"{k}={plain(v)}" for k, v in value.items()) if isinstance(value, dict) else "not recorded"
        lines += section("Configuration",
                         table(["run", "exploration", "learner", "view"],
                               [[label, settings(r.get("exploration")), settings(r.get("learner")), r.get("view", "not recorded")]
                                for label, r in runs.items()]))

    finals = {label: r["final_evaluation"] for label, r in runs.items() if r.get("final_evaluation")}
    if finals:
        epsilons = list(dict.fromkeys(k for f in finals.values() for k in f if k.startswith("eps_")))
        explorer = any("exploration_agent" in f for f in finals.values())
        eps_label = " / ".join(k.removeprefix("eps_") for k in epsilons)

        def rates(result: dict | None) -> str:
            return " / ".join(num(result.get(k), 2) for k in epsilons) if result else NONE
        final_rows = [[label, count(f.get("checkpoint_step")), f.get("episodes", NONE), rates(f),
                       *([rates(f.get("exploration_agent"))] if explorer else [])] for label, f in finals.items()]
        lines += section("Final evaluation (`final_evaluation`: the last checkpoint on new layouts)",
                         table(["run", "checkpoint step", "episodes", f"exploitation agent: success at epsilon {eps_label}",
                                *([f"exploration agent: success at epsilon {eps_label}"] if explorer else [])], final_rows, "lrrrr"))

    probes = [(label, agent, c) for label, r in runs.items() for agent, c in (r.get("coverage") or {}).items()]
    if probes:
        lines += section("Coverage probe (`coverage`: greedy episodes of each agent from the last checkpoint)",
                         table(["run", "agent", "checkpoint step", "highest phase per episode", "distinct cells per episode"],
                               [[label, agent, count(c.get("checkpoint_step")), plain(c.get("max_phase")), plain(c.get("distinct_cells"))]
                                for label, agent, c in probes], "llrll"))

    curves = {label: (r.get("summary") or {}).get("evaluations", []) for label, r in runs.items()}
    if any(curves.values()):
        lines += section("Greedy success at each evaluation", step_pivot(curves, lambda e: num(ev(e, "success_rate"), 2)))
    return lines


def render_rnd_cost(data: dict) -> list[str]:
    results = data["results"]
    reference = results.get("egreedy", {}).get("updates_per_s")
    rows = [[f"`{r.get('mode', mode)}`", r.get("batch_size", NONE), r.get("updates_per_phase", NONE), r.get("steps_per_collect", NONE),
             num(r["updates_per_s"]), spread(r.get("rates", [])), len(r.get("rates", [])),
             num(r["updates_per_s"] / reference, 2) if reference else NONE] for mode, r in results.items()]
    lines = section("Updates per second",
                    paragraph("Medians over rounds, one process per mode; relative: median updates/s over egreedy's."),
                    table(["mode", "batch", "updates per phase", "steps per collect", "updates/s (median)", "min - max", "rounds",
                           "relative to egreedy"], rows, "lrrrrrrr"))
    if "rnd_over_egreedy" in data:
        lines += paragraph(f"`rnd_over_egreedy` as recorded: {num(data['rnd_over_egreedy'], 2)}.")
    return lines


def render_recording(data: dict) -> list[str]:
    agent = f"checkpoint `{data['checkpoint']}`" if data.get("checkpoint") else "random agent (no checkpoint)"
    rows = [["yes" if r.get("write") else "no (dry run)", r.get("episodes", NONE), count(r.get("agent_steps")), num(r.get("seconds"), 2),
             num(r.get("steps_per_s"), 0), num(r.get("steps_per_episode")), num(r.get("score_mean")), num(r.get("png_bytes_per_step"), 0),
             num(r["seconds_for_100_episodes"] / 60) if r.get("seconds_for_100_episodes") is not None else NONE]
            for r in data["results"]]
    lines = section("Dataset recording",
                    paragraph(f"Agent: {agent}."),
                    table(["PNG writes", "episodes", "agent steps", "seconds", "steps/s", "steps / episode", "game score mean",
                           "PNG bytes per frame", "100 episodes (min)"], rows, "lrrrrrrrr"))
    videos = data.get("videos")
    if videos:
        digits = {"seconds": 2, "frames_per_s": 0, "mp4_bytes_per_video": 0, "tensorboard_gif_seconds_per_video": 2}
        lines += section("Videos (`videos`)",
                         table(["quantity", "value"], [[f"`{k}`", num(v, digits.get(k, 1))] for k, v in videos.items()], "lr"))
    return lines


def render_scale_out(data: dict) -> list[str]:
    lines = []
    collection = data.get("collection", {})
    if collection:
        setups = list(dict.fromkeys(setup for envs in collection.values() for setup in envs))
        lines += section("Collection: agent steps per second (median over interleaved rounds)",
                         table(["env", *setups], [[env, *(num(r[s]["median"], 0) if s in r else NONE for s in setups)]
                                                  for env, r in collection.items()], "l" + "r" * len(setups)),
                         table(["env", "setup", "steps/s: min - max", "rounds"],
                               [[env, setup, spread(s.get("rates", []), 0), len(s.get("rates", []))]
                                for env, r in collection.items() for setup, s in r.items()], "llrr"))
    sweeps = data.get("sweeps", {})
    if sweeps:
        reference_name = next((name for name in sweeps if name.startswith("serial")), None)
        reference = sweeps[reference_name]["wall_seconds"] if reference_name else None
        rows = [[name, num(s["wall_seconds"], 0), (num(s["wall_seconds"] / reference, 2) + "x") if reference else NONE,
                 len(s.get("run_wall_seconds", [])), spread(s.get("run_wall_seconds", []), 0), f"`{s.get('command', NONE)}`"]
                for name, s in sweeps.items()]
        lines += section(f"Sweeps ({count(data.get('sweep_steps'))} steps per run)",
                         paragraph(f"Against serial: wall time over the `{reference_name}` sweep's." if reference_name
                                   else "No serial sweep recorded to compare against."),
                         table(["launcher", "wall s", "against serial", "runs", "each run's wall s: min - max", "command"],
                               rows, "lrrrrl"))
    return lines


def render_async_collection(data: dict) -> list[str]:
    rows = []
    for name, r in data["results"].items():
        env, variant = name.split(": ", 1)
        lag = NONE if r.get("policy_lag_updates") is None else f"{num(r['policy_lag_updates'], 0)} (max {num(r['policy_lag_updates_max'], 0)})"
        rows.append([env, variant, num(r["steps_per_s"], 1), spread(r["steps_per_s_windows"], 1), num(r.get("updates_per_s"), 1), lag,
                     f"`{r['command']}`"])
    lines = section("Agent steps per second while learning",
                    paragraph("Median of each run's logged `time/steps_per_s` windows after its first learning window "
                              "(the compile) and before its last (the evaluation); runs one after another on one machine. "
                              f"Agent steps after the prefill: {', '.join(f'{env} {count(n)}' for env, n in data['steps'].items())}."),
                    table(["env", "collector", "steps/s", "windows: min - max", "updates/s", "policy lag, updates", "command"],
                          rows, "llrrrrl"))
    learning = data.get("learning") or {}
    if learning:
        rows = [[name, "yes" if r["solved"] else "no", count(r["solved_at_step"]), num(r["solved_at_seconds"], 0),
                 num(r["eval/return_mean"], 1), f"`{r['command']}`"] for name, r in learning.items()]
        lines += section("CartPole to its solve threshold",
                         table(["run", "solved", "at agent step", "after wall s", "final evaluation", "command"], rows, "llrrrl"))
    return lines


def render_atari_rgb(data: dict) -> list[str]:
    rows, memory = [], []
    for name, r in data["contenders"].items():
        shape = "x".join(map(str, r["replay"]["observation_shape"]))
        training, ratio = r.get("training") or {}, r.get("ratio_to_grayscale", {})
        rows.append([f"`{' '.join(r['overrides'])}`", shape, num(r["env_steps_per_s"]["median"], 0),
                     num(r["learner"]["ms_per_update"], 0), spread([1e3 / v for v in r["learner"]["rates"]], 0),
                     num(ratio.get("ms_per_update"), 1) + "x", num(training.get("steps_per_s"), 1),
                     spread(training.get("steps_per_s_by_window", []), 1), num(training.get("learner_ms_per_step"), 1)])
        memory.append([f"`{' '.join(r['overrides'])}`", count(r["replay"]["frame_bytes"]), count(round(r["replay"]["bytes_per_transition"])),
                       count(r["replay"]["preset_capacity"]), num(r["replay"]["preset_ring_gb"], 1), num(r["replay"]["ring_1m_gb"], 1)])
    return (section("Speed",
                    paragraph(f"Batch {data['contenders'][next(iter(data['contenders']))].get('batch_size', NONE)}, "
                              f"{data['updates_per_phase']} updates per learning phase, medians over {data['rounds']} interleaved "
                              "rounds; training: the mean of `rlpipe.train`'s logged `time/steps_per_s` windows while it learns "
                              "(the first learning window, which compiles, and the last, which evaluates, left out)."),
                    table(["contender", "observation", "env agent steps/s", "ms per update", "ms per update: min - max",
                           "against grayscale", "training agent steps/s", "windows: min - max", "learner ms per agent step"],
                          rows, "llrrrrrrr"))
            + section("Replay memory",
                      paragraph("Bytes per transition: the growth of the process's resident memory over a filled `FrameReplay`, "
                                "per stored frame; the rings' sizes are that figure times their capacity."),
                      table(["contender", "frame bytes", "bytes per transition", "preset capacity", "preset ring GB", "1M-frame ring GB"],
                            memory, "lrrrrr")))


def render_reliability(data: dict) -> list[str]:
    records = data["records"]
    signals = sorted({r["signal"] for r in records})
    stopped = [r["stopped_at_step"] for r in records if r.get("stopped_at_step") is not None]
    summary = [[data.get("trials", len(records)), " / ".join(signals), " / ".join(str(sum(r["signal"] == s for r in records)) for s in signals),
                f"{count(min(stopped))} - {count(max(stopped))}" if stopped else NONE, f"{data.get('survived', NONE)} / {data.get('trials', len(records))}",
                num(data.get("outside_changed")), num(data.get("repository_changed")), plain(data.get("stray_entries"))]]
    rows = [[r["trial"], r["signal"], num(r.get("after_s")), num(r.get("signalled")), r.get("exit_code", NONE), count(r.get("stopped_at_step")),
             count(r.get("final_step")), num(r.get("wall_s")), plain(r.get("problems")), num(r.get("survived"))] for r in records]
    return (section("Summary",
                    table(["trials", "signals", "trials per signal", "stopped at steps", "survived", "outside the run directories changed",
                           "repository changed", "stray entries"], summary, "rllrrlll"))
            + section("Trials", table(["trial", "signal", "after s", "signalled", "exit code", "stopped at step", "final step", "wall s",
                                       "problems", "survived"], rows, "rlrlrrrrll")))


def render_adam_step_scale(data: dict) -> list[str]:
    """``benchmarks/adam_step_scale.py``: one table per checkpoint, a row per parameter tensor and one for all."""
    lines: list[str] = []
    for label, c in data["checkpoints"].items():
        rows = [[f"`{name}`", count(t["elements"] + t["no_gradient"]), num(t["fraction"], 3), pct(t["below_eps"]), count(t["no_gradient"])]
                for name, t in [*c["tensors"].items(), ("all", c["all"])]]
        lines += section(f"{label}: agent step {count(c['step'])}, Adam epsilon {c['adam_eps']:g}, learning rate {c['lr']:g}",
                         paragraph(f"Checkpoint `{c['checkpoint']}`. Step fraction: the size of Adam's step, sum |m_hat| / (sqrt(v_hat) + eps), "
                                   "against its size without epsilon, sum |m_hat| / sqrt(v_hat) (1: undamped). Below epsilon: the share "
                                   "of that undamped step on elements where sqrt(v_hat) < eps. No gradient: elements whose v is 0 (no gradient "
                                   "yet, or none for so long that v has decayed to 0)."),
                         table(["tensor", "elements", "step fraction", "undamped step below epsilon", "no gradient"], rows, "lrrrr"))
    return lines


def render_generic(data: dict) -> list[str]:
    """Any other results file: every nested scalar, by its path in the JSON (lists of scalars joined); the top-level
    ones are already in "Top-level fields"."""
    rows: list[list[str]] = []

    def walk(value: object, path: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{path}.{key}" if path else str(key))
        elif isinstance(value, list) and any(isinstance(item, (dict, list)) for item in value):
            for i, item in enumerate(value):
                walk(item, f"{path}[{i}]")
        else:
            rows.append([f"`{path}`", plain(value)])

    walk({k: v for k, v in data.items() if k not in PROVENANCE_KEYS and isinstance(v, (dict, list))
          and (isinstance(v, dict) or any(isinstance(item, (dict, list)) for item in v))}, "")
    return section("Nested fields", table(["field", "value"], rows)) if rows else []


# File-name pattern -> renderer, first match wins; anything else gets render_generic.
RENDERERS: list[tuple[str, Callable[[dict], list[str]]]] = [
    ("atari_env.json", render_atari_env),
    ("atari_collection_*.json", render_atari_collection),
    ("collector_throughput_*.json", render_collector_throughput),
    ("learner_throughput_*.json", render_learner_throughput),
    ("time_to_solve_*.json", render_time_to_solve),
    ("replay_memory_*.json", render_replay_memory),
    ("breakout_*.json", render_breakout_runs),
    ("pong_runs*.json", render_breakout_runs),
    ("doorkey_rnd*.json", render_doorkey_rnd),
    ("doorkey.json", render_doorkey),
    ("rnd_cost_*.json", render_rnd_cost),
    ("recording_*.json", render_recording),
    ("scale_out.json", render_scale_out),
    ("async_collection*.json", render_async_collection),
    ("reliability.json", render_reliability),
    ("atari_rgb.json", render_atari_rgb),
    ("adam_step_scale_*.json", render_adam_step_scale),
]


# --- the documents ------------------------------------------------------------------------------------------------

def renderer_for(name: str) -> Callable[[dict], list[str]]:
    return next((render for pattern, render in RENDERERS if fnmatch.fnmatchcase(name, pattern)), render_generic)


def document(path: Path) -> str:
    data = json.loads(path.read_text())
    render = renderer_for(path.name)
    try:
        body = render(data)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, ZeroDivisionError, statistics.StatisticsError) as error:
        # a known family whose file changed shape: still a document, and a note saying why it is the generic one
        print(f"{path.name}: {render.__name__} failed ({type(error).__name__}: {error}); generic table instead", file=sys.stderr)
        body = paragraph(f"(`{render.__name__}` could not read this file: {type(error).__name__}: {error}; its fields below.)") \
            + render_generic(data)
    lines = [f"**Results file** `benchmarks/results/{path.name}`", "", *provenance(path.name, data), *top_level_fields(data), *body,
             f"Generated by `python {SCRIPT}` from `benchmarks/results/{path.name}`; do not edit.", ""]
    while len(lines) > 1 and lines[-1] == "" and lines[-2] == "":
        lines.pop()
    return "\n".join(lines)


def generate() -> dict[str, str]:
    """``{"<stem>.md": text}`` for every results file, in file-name order."""
    return {f"{path.stem}.md": document(path) for path in sorted(RESULTS.glob("*.json"))}


def check(expected: dict[str, str]) -> int:
    on_disk = {path.name: path.read_text() for path in sorted(TABLES.glob("*.md"))} if TABLES.is_dir() else {}
    problems = 0
    for name in sorted(set(expected) - set(on_disk)):
        print(f"missing: docs/results/tables/{name}")
        problems += 1
    for name in sorted(set(on_disk) - set(expected)):
        print(f"extra (no results file): docs/results/tables/{name}")
        problems += 1
    for name in sorted(set(expected) & set(on_disk)):
        if expected[name] != on_disk[name]:
            problems += 1
            sys.stdout.writelines(difflib.unified_diff(on_disk[name].splitlines(keepends=True), expected[name].splitlines(keepends=True),
                                                       f"docs/results/tables/{name} (on disk)", f"docs/results/tables/{name} (generated)"))
    if problems:
        print(f"{problems} table file(s) out of date: run `python {SCRIPT}`")
        return 1
    print(f"{len(expected)} table files up to date")
    return 0


def write(expected: dict[str, str]) -> int:
    TABLES.mkdir(parents=True, exist_ok=True)
    written = 0
    for name, text in expected.items():
        path = TABLES / name
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
            written += 1
    stale = [path for path in sorted(TABLES.glob("*.md")) if path.name not in expected]
    for path in stale:
        path.unlink()
    print(f"{len(expected)} table files in docs/results/tables: {written} written, {len(stale)} stale removed")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="regenerate in memory and compare with docs/results/tables: print the differences, exit 1 if any")
    args = parser.parse_args(argv)
    expected = generate()
    return check(expected) if args.check else write(expected)


if __name__ == "__main__":
    sys.exit(main())
