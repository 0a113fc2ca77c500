"""The EURO Meets NeurIPS 2022 dynamic VRPTW as a benchmark: every run of the competition's configs whose
instance is at hand, played by wave policies on the simulator, validated by the competition's rules and
reported in its units (total driving seconds) beside the published costs of the same runs.

A run is (instance, instance_seed, variant). Each policy plays it once (``run_day``); the hindsight problem
(every request known, with its release time) is solved once per run. Results go to ``results.csv`` as each
run finishes, so an interrupted benchmark keeps what it computed, and a second call with the same OUT
skips the rows already there (a run whose status is an error is run again).
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.base import WavePolicy, run_episode
from agents.evaluation.common import EvaluationError
from agents.evaluation.runners import execute
from agents.heuristics.waves import WAVE_HEURISTICS
from lastmile_env.config import ConfigError
from lastmile_env.sim import Simulator, world_for
from lastmile_env.solver_budget import SolverBudget
from lastmile_env.sources import euro2022
from lastmile_env.wave_routing import WAVE_ITERATIONS, WAVE_SEED

DATA_DIR = euro2022.DATA_DIR
RESULT_COLUMNS = ("instance", "instance_seed", "policy", "cost", "status")
HINDSIGHT = "hindsight"  # the policy column of the hindsight problem's rows
PUBLISHED_BASELINES = {"greedy": "baseline_greedy", "lazy": "baseline_lazy", "random": "baseline_random"}


@dataclass(frozen=True)
class Run:
    """One run of the configs: an instance file, its seed and the variant."""

    instance: str  # file name, as in the configs
    path: str
    instance_seed: int
    static: bool
    config_nr: int


@dataclass(frozen=True)
class DayTask:
    """A policy (or the hindsight problem) on one run, within a solver budget."""

    run: Run
    policy: str
    budget: SolverBudget
    seed: int = WAVE_SEED

    def describe(self) -> str:
        return f"{self.policy} on {self.run.instance} (seed {self.run.instance_seed})"


def load_runs(configs: str | Path, instances: str | Path, static: bool) -> tuple[list[Run], list[str]]:
    """The runs of a configs file (a JSON list of {instance, instance_seed, static, ...}) of one variant
    whose instance file is in ``instances``, and the instance names that are not (skipped)."""
    path, folder = Path(configs), Path(instances)
    if not path.is_file():
        raise EvaluationError(f"--configs: {path}: file not found")
    if not folder.is_dir():
        raise EvaluationError(f"--instances: {folder}: not a folder")
    try:
        entries = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EvaluationError(f"--configs: {path}: not JSON ({exc})") from None
    if not isinstance(entries, list):
        raise EvaluationError(f"--configs: {path}: must hold a list of runs, not a {type(entries).__name__}")
    runs, skipped = [], []
    for nr, entry in enumerate(entries):
        if not isinstance(entry, dict) or not {"instance", "instance_seed", "static"} <= set(entry):
            raise EvaluationError(
                f"--configs: {path}: entry {nr} must have instance, instance_seed and static, got {entry!r}"
            )
        if bool(entry["static"]) != static:
            continue
        file = folder / str(entry["instance"])
        if not file.is_file():
            skipped.append(str(entry["instance"]))
            continue
        runs.append(Run(str(entry["instance"]), str(file), int(entry["instance_seed"]), static, nr))
    return runs, sorted(set(skipped))


SHIPPED_NAME = "learned"  # the shipped best learned policy (agents.learned.shipped)
LEARNED_EPOCH = "learned_epoch"  # the shipped learned wave policy (agents.learned.epoch_policy)


def make_wave_policy(name: str, budget: SolverBudget, seed: int = WAVE_SEED) -> WavePolicy:
    """A wave policy by name: a heuristic, ``learned_epoch`` (the shipped learned model), ``learned`` (the
    shipped best learned wave policy, ``wave_policy`` of experiments/dispatch/learned.yaml) or a learned
    model file (``.pt``); unknown names and bad model files fail in one line."""
    if name == SHIPPED_NAME:
        from agents.learned.shipped import shipped_learned_wave

        try:
            shipped = make_wave_policy(shipped_learned_wave(), budget, seed)
        except ConfigError as exc:
            raise EvaluationError(str(exc)) from None
        shipped.name = SHIPPED_NAME
        return shipped
    if name == LEARNED_EPOCH or name.endswith(".pt"):
        from agents.learned.epoch_policy import SHIPPED_EPOCH_MODEL, learned_wave

        try:
            learned = learned_wave(SHIPPED_EPOCH_MODEL if name == LEARNED_EPOCH else name, budget, seed)
        except ConfigError as exc:
            raise EvaluationError(str(exc)) from None
        learned.name = name
        return learned
    if name not in WAVE_HEURISTICS:
        raise EvaluationError(
            f"unknown wave policy {name!r}; valid: {', '.join(WAVE_HEURISTICS)}, {LEARNED_EPOCH}, "
            f"{SHIPPED_NAME} or a learned model file (.pt)"
        )
    policy: WavePolicy = WAVE_HEURISTICS[name](budget, seed)
    return policy


def hindsight_budget(budget: SolverBudget) -> SolverBudget:
    """The hindsight problem's budget: ten waves' worth of the policies' budget (it is one whole day)."""
    if budget.max_iterations is not None:
        return SolverBudget(max_iterations=10 * budget.max_iterations)
    assert budget.time_limit_s is not None
    return SolverBudget(time_limit_s=10 * budget.time_limit_s)


def play_day(
    inst: euro2022.Instance,
    path: str | Path,
    requests: euro2022.Requests,
    policy: WavePolicy,
    instance_seed: int,
    static: bool = False,
) -> euro2022.DayResult:
    """A wave policy plays one competition day (``requests`` of the instance file ``path``) on the
    simulator; the day's routes validated by the competition's rules."""
    world = world_for(euro2022.scenario(inst, path, static=static))
    sim = Simulator(world, instance_seed, generator=euro2022.RequestStream(requests))
    run_episode(sim, policy, instance_seed)
    return euro2022.validate_day(inst, requests, euro2022.dispatched_routes(sim))


def run_day(task: DayTask) -> dict[str, Any]:
    """Play one run (or solve its hindsight problem) and validate it; a result row. A failure is reported
    in the row's status, not raised: one bad run should not lose a long benchmark."""
    started = time.perf_counter()
    run = task.run
    try:
        inst = euro2022.read_instance(run.path)
        requests = (
            euro2022.static_requests(inst)
            if run.static
            else euro2022.sample_requests(inst, run.instance_seed)
        )
        if task.policy == HINDSIGHT:
            cost, _ = euro2022.solve_hindsight(inst, requests, hindsight_budget(task.budget), task.seed)
            status = "ok"
        else:
            policy = make_wave_policy(task.policy, task.budget, task.seed)
            day = play_day(inst, run.path, requests, policy, run.instance_seed, run.static)
            cost = day.cost
            status = "ok" if day.valid else f"invalid: {day.problems[0]}"
    except Exception as exc:  # reported in the results, see the docstring
        cost, status = euro2022.INVALID_EPOCH_COST, " ".join(f"error: {type(exc).__name__}: {exc}".split())
    row = {
        "instance": run.instance,
        "instance_seed": run.instance_seed,
        "policy": task.policy,
        "cost": cost,
        "status": status,
    }
    return {"row": row, "wall_s": time.perf_counter() - started}


def _read_done(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != RESULT_COLUMNS:
            raise EvaluationError(
                f"{path} exists but is not a results file of this benchmark (columns {reader.fieldnames}); "
                "choose another --out"
            )
        return list(reader)


def published_costs(
    path: Path = DATA_DIR / "final_phase_results_shipped_instances.csv",
) -> list[dict[str, str]]:
    """The competition's published per-run costs (team, variant, config_nr, instance, instance_seed, cost)."""
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def benchmark(
    policies: Sequence[str],
    out: str | Path,
    instances: str | Path = DATA_DIR / "instances",
    configs: str | Path = DATA_DIR / "final_configs.json",
    static: bool = False,
    budget: SolverBudget | None = None,
    hindsight: bool = True,
    workers: int = 1,
    progress: bool = False,
) -> Path:
    """Run every policy on every run of the configs whose instance is in ``instances``; write
    ``OUT/results.csv`` (row by row as runs finish; rows already there are kept and not run again) and
    ``OUT/summary.md``. Returns OUT."""
    budget = budget or SolverBudget(max_iterations=WAVE_ITERATIONS)
    names = list(dict.fromkeys(policies))
    for name in names:
        make_wave_policy(name, budget)  # unknown names fail before any work
    runs, skipped = load_runs(configs, instances, static)
    for instance_path in sorted({r.path for r in runs}):  # a malformed instance fails before any work
        try:
            euro2022.read_instance(instance_path)
        except euro2022.Euro2022Error as exc:
            raise EvaluationError(str(exc)) from None
    if not runs:
        raise EvaluationError(
            f"no {'static' if static else 'dynamic'} run of {configs} has its instance in {instances}"
            + (f" (missing: {', '.join(skipped)})" if skipped else "")
        )
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise EvaluationError(f"--out: {folder} exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    results = folder / "results.csv"
    done = _read_done(results)
    kept = [r for r in done if not r["status"].startswith("error")]  # a run that failed is run again
    if len(kept) < len(done):
        with results.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=RESULT_COLUMNS)
            writer.writeheader()
            writer.writerows(kept)
    have = {(r["instance"], r["instance_seed"], r["policy"]) for r in kept}
    todo = [
        DayTask(run, name, budget)
        for run in runs
        for name in [*names, *([HINDSIGHT] if hindsight else [])]
        if (run.instance, str(run.instance_seed), name) not in have
    ]
    new = not results.is_file()
    with results.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=RESULT_COLUMNS)
        if new:
            writer.writeheader()
            f.flush()

        def write(_: int, result: dict[str, Any]) -> None:
            writer.writerow(result["row"])
            f.flush()

        finished = execute(todo, run_day, workers, progress, on_result=write)
    rows = _read_done(results)
    walls = [r["wall_s"] for r in finished if r["row"]["policy"] != HINDSIGHT]
    _write_summary(folder / "summary.md", runs, skipped, names, rows, static, budget, walls)
    return folder


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def _write_summary(
    path: Path,
    runs: Sequence[Run],
    skipped: Sequence[str],
    names: Sequence[str],
    rows: Sequence[dict[str, str]],
    static: bool,
    budget: SolverBudget,
    walls: Sequence[float],
) -> None:
    variant = "static" if static else "dynamic"
    keys = {(r.instance, str(r.instance_seed)) for r in runs}
    ours = {
        (r["instance"], r["instance_seed"], r["policy"]): r
        for r in rows
        if (r["instance"], r["instance_seed"]) in keys
    }
    published: dict[tuple[str, str, str], float] = {}
    for p in published_costs():
        if p["variant"] == variant and (p["instance"], p["instance_seed"]) in keys:
            published[(p["instance"], p["instance_seed"], p["team"])] = float(p["cost"])
    teams = sorted({t for _, _, t in published})
    run_keys = sorted(keys)
    hind = [float(ours[(i, s, HINDSIGHT)]["cost"]) for i, s in run_keys if (i, s, HINDSIGHT) in ours]
    lines = [
        f"# EURO Meets NeurIPS 2022, {variant} variant: {len(runs)} runs",
        "",
        "Costs are total driving seconds (the competition's score); solver budget: "
        f"{budget.describe()} per wave (PyVRP seed {WAVE_SEED}), {hindsight_budget(budget).describe()} for "
        "the hindsight problem"
        + (f"; {_mean(walls):.1f} s per policy-day on average" if walls else "")
        + ". Published rows ran HGS with the competition's wall-clock limit per epoch "
        "(120 s dynamic, 300-600 s static).",
        "",
        "| policy | runs ok | mean cost | published (same runs) | vs published | vs hindsight |",
        "|---|---|---|---|---|---|",
    ]
    hind_mean = _mean(hind) if len(hind) == len(run_keys) else math.nan
    for name in [*names, HINDSIGHT]:
        mine = [ours.get((i, s, name)) for i, s in run_keys]
        if any(m is None for m in mine):
            continue
        costs = [float(m["cost"]) for m in mine if m is not None]
        ok = sum(1 for m in mine if m is not None and m["status"] == "ok")
        team = PUBLISHED_BASELINES.get(name)
        pub = [published.get((i, s, team)) for i, s in run_keys] if team else []
        pub_mean = (
            _mean([p for p in pub if p is not None]) if pub and all(p is not None for p in pub) else math.nan
        )
        mean = _mean(costs)
        vs_pub = f"{100 * (mean / pub_mean - 1):+.1f}%" if not math.isnan(pub_mean) else ""
        vs_hind = (
            f"{100 * (mean / hind_mean - 1):+.1f}%" if not math.isnan(hind_mean) and name != HINDSIGHT else ""
        )
        pub_text = f"{pub_mean:,.0f}" if not math.isnan(pub_mean) else ""
        lines.append(f"| {name} | {ok}/{len(mine)} | {mean:,.0f} | {pub_text} | {vs_pub} | {vs_hind} |")
    for team in teams:
        pub = [published.get((i, s, team)) for i, s in run_keys]
        if all(p is not None for p in pub) and not team.startswith("baseline_"):
            lines.append(f"| published: {team} | | | {_mean([p for p in pub if p is not None]):,.0f} | | |")
    lines += [
        "",
        "Per run:",
        "",
        "| instance | seed | " + " | ".join([*names, HINDSIGHT]) + " |",
        "|---|---|" + "---|" * (len(names) + 1),
    ]
    for i, s in run_keys:
        cells = []
        for name in [*names, HINDSIGHT]:
            r = ours.get((i, s, name))
            team = PUBLISHED_BASELINES.get(name)
            pub_cost = published.get((i, s, team)) if team else None
            text = (
                ""
                if r is None
                else f"{float(r['cost']):,.0f}" + ("" if r["status"] == "ok" else " (invalid)")
            )
            if r is not None and pub_cost is not None:
                text += f" ({100 * (float(r['cost']) / pub_cost - 1):+.1f}%)"
            cells.append(text)
        lines.append(f"| {i} | {s} | " + " | ".join(cells) + " |")
    if skipped:
        lines += [
            "",
            f"Skipped: the runs of {len(skipped)} instances of the configs whose file is not in the "
            "instances folder.",
            "",
            "<details><summary>skipped instances</summary>",
            "",
            ", ".join(skipped),
            "",
            "</details>",
        ]
    lines += [
        "",
        "The hindsight row is PyVRP on the day's requests with their release times, all known in advance: a "
        "heuristic solution, so an estimate of the bound from above. Data: ORTEC, CC BY-NC 4.0 "
        "(non-commercial use).",
    ]
    path.write_text("\n".join(lines) + "\n")
