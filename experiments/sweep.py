"""Run a sweep of training runs (scenarios x algorithms x seeds), evaluate each against baselines, aggregate.

    python experiments/sweep.py experiments/sweeps/smoke.yaml --out runs/sweeps/smoke --workers 2
    python experiments/sweep.py experiments/sweeps/dispatch_default.yaml --dry-run

A sweep file (``experiments/sweeps/*.yaml``, validated by ``SweepSpec``: unknown keys and bad values fail
before any work, naming the field) gives a base experiment config and the lists to cross. Every run trains
with ``agents.learned.training.train``, then its ``final.zip`` plays paired days against the baselines with
``agents.evaluation.evaluate``. Runs are independent tasks on a process pool (one torch thread each) and are
collected in expansion order, so the tables do not depend on ``--workers``. Written under ``--out``:

* ``results.csv`` and ``results.md``: one row per run (and, in the markdown, the mean over seeds);
* ``learning_curves.png``: ``eval/relative_cost_per_delivered`` and ``charts/episode_cost`` against steps,
  from each run's TensorBoard events, a row of panels per scenario / algorithm, a line per seed;
* ``runs/<run folder>/`` (events, checkpoints, ``final.zip``, ``eval/`` report), ``logs/<run>.log`` and
  ``sweep.yaml`` (the validated sweep).

Exit status: 0 when every run succeeded, 1 when one failed (the others are still reported), 2 for a bad
sweep file or an unavailable backend. More in experiments/README.md (Sweeps).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import functools
import importlib
import json
import math
import multiprocessing
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, ValidationError, field_validator

from agents.heuristics import HEURISTICS
from lastmile_env.config import REPO_ROOT, ConfigError, format_validation_error, read_yaml_mapping

# agents.learned.training.AlgoName, repeated so that reading a sweep file does not import torch.
Algorithm = Literal["maskable_ppo", "ppo", "a2c"]
# Experiment fields the sweep sets itself, with the sweep field that does.
RESERVED_OVERRIDES = {
    "scenario": "scenarios",
    "algo.name": "algorithms",
    "seed": "seeds",
    "total_timesteps": "total_timesteps",
    "torch_threads": "the runner (1 thread per run: the pool fills the cores)",
}
EVAL_CURVE = "eval/relative_cost_per_delivered"
COST_CURVE = "charts/episode_cost"


# --------------------------------------------------------------------------------------------------------
# Sweep file


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


def _unique(values: list[Any]) -> list[Any]:
    dup = sorted({str(v) for v in values if values.count(v) > 1})
    if dup:
        raise ValueError(f"listed twice: {', '.join(dup)}")
    return values


class EvaluationSpec(_Strict):
    """The final evaluation of every run's ``final.zip`` against heuristics on paired days."""

    episodes: int = Field(20, ge=1)
    """episodes (days) per policy"""
    seed: int = Field(1000, ge=0)
    """episode k of every policy plays the day of seed ``seed + k`` (default: the days of
    experiments/baselines; training plays days ``seed`` then days drawn from [0, 2**63), eval 10000...)"""
    baselines: list[str] = Field(default_factory=lambda: ["insertion"], min_length=1)
    """heuristics (agents.heuristics) to compare with; the first is the reference of each run's report"""
    hindsight_time_limit_s: float = Field(0.0, ge=0)
    """solver seconds per day for the hindsight gap of each run's eval/ report (0: skip it)"""

    @field_validator("baselines")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        for name in v:
            if name not in HEURISTICS:
                raise ValueError(f"unknown heuristic {name!r}; valid: {', '.join(HEURISTICS)}")
        return _unique(v)


class SweepSpec(_Strict):
    """A sweep: the cross product scenarios x algorithms x seeds of one base experiment config."""

    name: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+$")
    """name of the sweep (default: the file's stem)"""
    description: str = ""
    base: str
    """experiment config (configs/experiment/*.yaml); a relative path is relative to the repository root"""
    scenarios: list[str] = Field(min_length=1)
    """scenario names (configs/scenario) or YAML paths (relative to the repository root)"""
    algorithms: list[Algorithm] = Field(min_length=1)
    """maskable_ppo, ppo and/or a2c"""
    seeds: list[NonNegativeInt] = Field(min_length=1)
    """training seeds"""
    total_timesteps: int = Field(ge=1)
    """env steps per run"""
    overrides: dict[str, Any] = Field(default_factory=dict)
    """dotted experiment fields set in every run (``algo.learning_rate: 3.0e-4``, ``env.fleet.size: 30``)"""
    evaluation: EvaluationSpec = EvaluationSpec()

    @field_validator("algorithms", "seeds")
    @classmethod
    def _no_duplicates(cls, v: list[Any]) -> list[Any]:
        return _unique(v)

    @field_validator("scenarios")
    @classmethod
    def _distinct_labels(cls, v: list[str]) -> list[str]:
        _unique([scenario_label(s) for s in v])
        return v

    @field_validator("overrides")
    @classmethod
    def _not_reserved(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key in v:
            if key in RESERVED_OVERRIDES:
                raise ValueError(f"{key!r} is set by the sweep's {RESERVED_OVERRIDES[key]}, not an override")
        return v


def scenario_label(scenario: str) -> str:
    """The scenario's part of a run name: the name itself, or a YAML path's stem."""
    path = Path(scenario)
    return path.stem if path.suffix in (".yaml", ".yml") else scenario


def _repo_path(path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else REPO_ROOT / p


def load_sweep(path: str | Path) -> SweepSpec:
    """Read and validate a sweep file; ConfigError names the field otherwise."""
    path = Path(path)
    data = read_yaml_mapping(path, "sweep file", allow_empty=True)
    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, f"invalid sweep file {path}")) from None
    return spec if spec.name else spec.model_copy(update={"name": path.stem})


# --------------------------------------------------------------------------------------------------------
# Expansion


@dataclass(frozen=True)
class Run:
    """One point of the sweep."""

    scenario: str
    algorithm: str
    seed: int

    @property
    def name(self) -> str:
        """``<scenario>__<algorithm>__<seed>``, as train.py's run folders start."""
        return f"{scenario_label(self.scenario)}__{self.algorithm}__{self.seed}"


def expand(spec: SweepSpec) -> list[Run]:
    """The cross product in a fixed order: scenarios, then algorithms, then seeds (innermost)."""
    return [Run(s, a, seed) for s in spec.scenarios for a in spec.algorithms for seed in spec.seeds]


@dataclass(frozen=True)
class RunTask:
    """Everything a worker needs for one run (plain data: picklable, and ready for a remote backend)."""

    run: Run
    config: dict[str, Any]  # the validated ExperimentConfig, JSON mode
    evaluation: dict[str, Any]  # the EvaluationSpec, JSON mode
    runs_dir: str
    log_path: str


def prepare(spec: SweepSpec, out: Path) -> list[RunTask]:
    """Expand and validate every run's experiment config (and scenario) before any work."""
    from agents.learned.training import load_experiment

    base = _repo_path(spec.base)
    overrides = [f"{key}={json.dumps(value, default=str)}" for key, value in spec.overrides.items()]
    tasks = []
    for run in expand(spec):
        scenario = run.scenario
        if scenario_label(scenario) != scenario:  # a YAML path
            scenario = str(_repo_path(scenario))
        try:
            exp = load_experiment(
                base,
                overrides,
                scenario=scenario,
                seed=run.seed,
                total_timesteps=spec.total_timesteps,
                torch_threads=1,
                **{"algo.name": run.algorithm},
            )
        except ConfigError as exc:
            raise ConfigError(f"sweep {spec.name}, run {run.name}: {exc}") from None
        tasks.append(
            RunTask(
                run=run,
                config=exp.model_dump(mode="json"),
                evaluation=spec.evaluation.model_dump(mode="json"),
                runs_dir=str(out / "runs"),
                log_path=str(out / "logs" / f"{run.name}.log"),
            )
        )
    return tasks


# --------------------------------------------------------------------------------------------------------
# One run: train, then evaluate final.zip against the baselines


@dataclass
class RunOutcome:
    """What a run produced (``error`` set when it failed; the metrics are then empty)."""

    run: Run
    run_dir: str | None = None
    train_wall_s: float = math.nan
    eval_wall_s: float = math.nan
    timesteps: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None


def _metrics(rows: Sequence[dict[str, Any]], learned: str, baselines: Sequence[str]) -> dict[str, float]:
    """Means and CI half-widths over the episodes, and the paired relative difference of cost/delivered."""
    from agents.evaluation import mean_ci

    by_policy = {
        p: sorted((r for r in rows if r["policy"] == p), key=lambda r: r["episode"])
        for p in (learned, *baselines)
    }
    out: dict[str, float] = {}
    for who, policy in (("learned", learned), *((b, b) for b in baselines)):
        for metric in ("cost_per_delivered", "on_time_rate"):
            ci = mean_ci(r[metric] for r in by_policy[policy])
            out[f"{who}_{metric}"], out[f"{who}_{metric}_ci"] = ci.mean, ci.half_width
    for b in baselines:
        pairs = zip(by_policy[learned], by_policy[b], strict=True)
        rel = mean_ci(
            100.0 * (x["cost_per_delivered"] - y["cost_per_delivered"]) / y["cost_per_delivered"]
            for x, y in pairs
            if math.isfinite(x["cost_per_delivered"]) and y["cost_per_delivered"] > 0
        )
        out[f"rel_cost_per_delivered_vs_{b}_pct"] = rel.mean
        out[f"rel_cost_per_delivered_vs_{b}_pct_ci"] = rel.half_width
    return out


def execute_run(task: RunTask) -> RunOutcome:
    """Train and evaluate one run (its output goes to its log); a failure is reported, not raised."""
    outcome = RunOutcome(task.run)
    log_path = Path(task.log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        try:
            import torch

            from agents.evaluation import evaluate
            from agents.learned.training import train, validate_experiment

            torch.set_num_threads(1)
            exp = validate_experiment(task.config, f"run {task.run.name}")
            started = time.perf_counter()
            run_dir = train(exp, task.runs_dir, progress=False)
            outcome.train_wall_s = time.perf_counter() - started
            outcome.run_dir, outcome.timesteps = str(run_dir), exp.total_timesteps
            ev = task.evaluation
            learned = str(run_dir / "final.zip")
            started = time.perf_counter()
            result = evaluate(
                exp.load_scenario(),
                [learned, *ev["baselines"]],
                episodes=ev["episodes"],
                seed=ev["seed"],
                workers=1,  # no pool inside a pool task
                reference=ev["baselines"][0],
                hindsight_time_limit_s=ev["hindsight_time_limit_s"],
                progress=False,
                route_map=False,
            )
            outcome.eval_wall_s = time.perf_counter() - started
            result.write(run_dir / "eval")
            outcome.metrics = _metrics(result.rows, learned, ev["baselines"])
        except Exception as exc:
            traceback.print_exc()
            outcome.error = f"{type(exc).__name__}: {exc}"
    return outcome


# --------------------------------------------------------------------------------------------------------
# Backends. A backend runs independent tasks and returns their outcomes in task order, calling
# ``on_done(index, outcome)`` as each finishes: ``run_local`` (a process pool) or ``run_ray`` (a Ray task
# per run), chosen by ``select_backend``.

Backend = Callable[[Sequence[RunTask], int, Callable[[int, RunOutcome], None]], list[RunOutcome]]


class BackendUnavailable(RuntimeError):
    """The requested backend cannot be used here (Ray not installed, cluster unreachable)."""


def run_local(
    tasks: Sequence[RunTask], workers: int, on_done: Callable[[int, RunOutcome], None]
) -> list[RunOutcome]:
    """In this process for one worker, else a spawn pool with a fresh process per run."""
    outcomes: list[RunOutcome | None] = [None] * len(tasks)
    if workers == 1:
        for i, task in enumerate(tasks):
            outcome = execute_run(task)
            outcomes[i] = outcome
            on_done(i, outcome)
    elif tasks:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            max_workers=min(workers, len(tasks)), mp_context=context, max_tasks_per_child=1
        ) as pool:
            futures: dict[Future[RunOutcome], int] = {
                pool.submit(execute_run, task): i for i, task in enumerate(tasks)
            }
            try:
                for future in as_completed(futures):
                    i = futures[future]
                    try:
                        outcome = future.result()
                    except Exception as exc:  # the worker process itself died
                        outcome = RunOutcome(tasks[i].run, error=f"{type(exc).__name__}: {exc}")
                    outcomes[i] = outcome
                    on_done(i, outcome)
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
    return [o for o in outcomes if o is not None]


def execute_run_plain(task: dict[str, Any]) -> dict[str, Any]:
    """``execute_run`` on and to plain data: what a Ray worker runs (it imports this module by name, so
    the classes on both sides are the same whether the driver runs this file as a script or a module)."""
    fields = {**task, "run": Run(**task["run"])}
    return dataclasses.asdict(execute_run(RunTask(**fields)))


def run_ray(
    tasks: Sequence[RunTask],
    workers: int,
    on_done: Callable[[int, RunOutcome], None],
    address: str | None = None,
) -> list[RunOutcome]:
    """One Ray task per run (``execute_run``) on the cluster at ``address`` (``connect_ray``), as many at a
    time as it has CPUs (``workers`` is not used); outcomes in task order. Runs write their folders and
    logs under ``OUT`` on the node that runs them: on a multi-node cluster ``OUT`` must be a shared path."""
    from agents.evaluation import connect_ray

    ray = connect_ray(address)
    if str(REPO_ROOT) not in sys.path:  # "python experiments/sweep.py" puts experiments/ first, not the root
        sys.path.insert(0, str(REPO_ROOT))
    module = importlib.import_module("experiments.sweep")
    remote = ray.remote(num_cpus=1)(module.execute_run_plain)
    refs = [remote.remote(dataclasses.asdict(task)) for task in tasks]
    index = {ref: i for i, ref in enumerate(refs)}
    outcomes: list[RunOutcome | None] = [None] * len(tasks)
    pending = list(refs)
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                i = index[ref]
                try:
                    found = ray.get(ref)
                    outcome = RunOutcome(**{**found, "run": Run(**found["run"])})
                except Exception as exc:  # the worker itself died
                    outcome = RunOutcome(tasks[i].run, error=f"{type(exc).__name__}: {exc}")
                outcomes[i] = outcome
                on_done(i, outcome)
    except BaseException:
        for ref in pending:
            ray.cancel(ref)
        raise
    return [o for o in outcomes if o is not None]


def select_backend(ray: bool, address: str | None = None) -> Backend:
    """The backend to run the tasks on: the local pool, or Ray (``ray`` or an ``address``), connected
    here, before any work; BackendUnavailable when Ray is missing or the cluster cannot be reached."""
    if not ray and address is None:
        return run_local
    from agents.evaluation import connect_ray

    try:
        connect_ray(address)
    except ConfigError as exc:
        raise BackendUnavailable(str(exc)) from None
    return functools.partial(run_ray, address=address)


# --------------------------------------------------------------------------------------------------------
# Results


def _columns(baselines: Sequence[str]) -> list[str]:
    per_policy = ["cost_per_delivered", "cost_per_delivered_ci", "on_time_rate", "on_time_rate_ci"]
    cols = ["scenario", "algorithm", "seed", "run", "status", "timesteps", "train_wall_s", "eval_wall_s"]
    cols += [f"learned_{c}" for c in per_policy]
    for b in baselines:
        cols += [f"{b}_{c}" for c in per_policy]
        cols += [f"rel_cost_per_delivered_vs_{b}_pct", f"rel_cost_per_delivered_vs_{b}_pct_ci"]
    return [*cols, "run_dir", "error"]


def result_rows(outcomes: Sequence[RunOutcome], baselines: Sequence[str]) -> list[dict[str, Any]]:
    """One row of ``results.csv`` per run, in expansion order."""
    rows = []
    for o in outcomes:
        row: dict[str, Any] = dict.fromkeys(_columns(baselines), math.nan)
        row.update(
            scenario=scenario_label(o.run.scenario),
            algorithm=o.run.algorithm,
            seed=o.run.seed,
            run=o.run.name,
            status="failed" if o.error else "ok",
            timesteps=o.timesteps,
            train_wall_s=o.train_wall_s,
            eval_wall_s=o.eval_wall_s,
            run_dir=o.run_dir or "",
            error=o.error or "",
            **o.metrics,
        )
        rows.append(row)
    return rows


def write_csv(rows: Sequence[dict[str, Any]], baselines: Sequence[str], path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=_columns(baselines))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()})


def _fmt(mean: float, half: float = math.nan, spec: str = ".2f", scale: float = 1.0) -> str:
    if not math.isfinite(mean):
        return "–"
    text = f"{mean * scale:{spec}}"
    return text + (f" ± {half * scale:{spec.lstrip('+')}}" if math.isfinite(half) else "")


def results_markdown(spec: SweepSpec, rows: Sequence[dict[str, Any]]) -> str:
    """The per-run table and the mean over seeds of each scenario / algorithm."""
    from agents.evaluation import mean_ci

    ev, bases = spec.evaluation, spec.evaluation.baselines
    days = f"{ev.seed}–{ev.seed + ev.episodes - 1}" if ev.episodes > 1 else str(ev.seed)
    overrides = ", ".join(f"`{k}={v}`" for k, v in spec.overrides.items()) or "none"
    lines = [f"# Sweep: {spec.name}", ""]
    if spec.description:
        lines += [spec.description, ""]
    lines += [
        f"Base config `{spec.base}`, {spec.total_timesteps:,} steps per run, overrides: {overrides}. Each "
        f"run's `final.zip` and {', '.join(f'`{b}`' for b in bases)} play the same {ev.episodes} days "
        f"(seeds {days}). `±`: 95% Student-t CI half-width over those days. Δ: the paired per-day relative "
        "difference of cost per delivered order, learned vs baseline (negative: the learned policy is "
        "cheaper).",
        "",
        "## Runs",
        "",
    ]
    head = ["scenario", "algorithm", "seed", "train (s)", "learned cost/delivered", "learned on-time (%)"]
    for b in bases:
        head += [f"{b} cost/delivered", f"{b} on-time (%)", f"Δ vs {b} (%)"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if r["status"] != "ok":
            cells = [r["scenario"], r["algorithm"], str(r["seed"]), f"failed: {r['error']}"]
            cells += [""] * (len(head) - len(cells))
        else:
            cells = [r["scenario"], r["algorithm"], str(r["seed"]), f"{r['train_wall_s']:.0f}"]
            cells += [_fmt(r["learned_cost_per_delivered"], r["learned_cost_per_delivered_ci"])]
            cells += [_fmt(r["learned_on_time_rate"], r["learned_on_time_rate_ci"], ".1f", 100.0)]
            for b in bases:
                rel = f"rel_cost_per_delivered_vs_{b}_pct"
                cells += [
                    _fmt(r[f"{b}_cost_per_delivered"], r[f"{b}_cost_per_delivered_ci"]),
                    _fmt(r[f"{b}_on_time_rate"], r[f"{b}_on_time_rate_ci"], ".1f", 100.0),
                    _fmt(r[rel], r[f"{rel}_ci"], "+.1f"),
                ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Over seeds",
        "",
        "Mean ± 95% CI half-width over the seeds of each run's mean over the evaluation days.",
        "",
    ]
    head = ["scenario", "algorithm", "runs", "learned cost/delivered", "learned on-time (%)"]
    head += [f"Δ vs {b} (%)" for b in bases]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for scenario, algorithm in dict.fromkeys((r["scenario"], r["algorithm"]) for r in rows):
        ok = [
            r
            for r in rows
            if (r["scenario"], r["algorithm"]) == (scenario, algorithm) and r["status"] == "ok"
        ]
        total = sum((r["scenario"], r["algorithm"]) == (scenario, algorithm) for r in rows)

        def over(col: str, _ok: list[dict[str, Any]] = ok) -> tuple[float, float]:
            ci = mean_ci(r[col] for r in _ok)
            return ci.mean, ci.half_width

        cells = [scenario, algorithm, f"{len(ok)}/{total}", _fmt(*over("learned_cost_per_delivered"))]
        cells += [_fmt(*over("learned_on_time_rate"), ".1f", 100.0)]
        cells += [_fmt(*over(f"rel_cost_per_delivered_vs_{b}_pct"), "+.1f") for b in bases]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------------
# Learning curves


def read_scalars(run_dir: str | Path, tags: Iterable[str]) -> dict[str, tuple[list[int], list[float]]]:
    """(steps, values) of each tag found in a run's TensorBoard events (every point, not a sample)."""
    from tensorboard.backend.event_processing import event_accumulator

    acc = event_accumulator.EventAccumulator(str(run_dir), size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    found = set(acc.Tags()["scalars"])
    out = {}
    for tag in tags:
        if tag in found:
            events = acc.Scalars(tag)
            out[tag] = ([e.step for e in events], [e.value for e in events])
    return out


def _rolling_mean(values: Sequence[float], window: int) -> list[float]:
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v - (values[i - window] if i >= window else 0.0)
        out.append(total / min(i + 1, window))
    return out


def plot_learning_curves(tasks: Sequence[RunTask], outcomes: Sequence[RunOutcome], path: Path) -> None:
    """A row per scenario / algorithm: the eval relative cost and the episode cost, a line per seed."""
    from matplotlib.figure import Figure

    groups = list(dict.fromkeys((scenario_label(t.run.scenario), t.run.algorithm) for t in tasks))
    fig = Figure(figsize=(12, 3.3 * len(groups) + 0.5), dpi=100, layout="constrained")
    fig.suptitle("Learning curves (one line per seed)")
    for g, (scenario, algorithm) in enumerate(groups):
        ax_eval = fig.add_subplot(len(groups), 2, 2 * g + 1)
        ax_cost = fig.add_subplot(len(groups), 2, 2 * g + 2)
        baseline = "baseline"
        plotted = {EVAL_CURVE: False, COST_CURVE: False}
        members = [
            (t, o)
            for t, o in zip(tasks, outcomes, strict=True)
            if (scenario_label(t.run.scenario), t.run.algorithm) == (scenario, algorithm)
        ]
        for k, (task, outcome) in enumerate(members):
            baseline = task.config["eval"]["baseline"]
            if outcome.run_dir is None:
                continue
            curves = read_scalars(outcome.run_dir, (EVAL_CURVE, COST_CURVE))
            colour, label = f"C{k % 10}", f"seed {task.run.seed}"
            if EVAL_CURVE in curves:
                steps, values = curves[EVAL_CURVE]
                ax_eval.plot(steps, [100.0 * v for v in values], marker="o", ms=3, color=colour, label=label)
                plotted[EVAL_CURVE] = True
            if COST_CURVE in curves:
                steps, values = curves[COST_CURVE]
                ax_cost.plot(steps, values, color=colour, alpha=0.25, lw=0.8)
                window = max(1, min(25, len(values) // 5))
                ax_cost.plot(steps, _rolling_mean(values, window), color=colour, label=label)
                plotted[COST_CURVE] = True
        ax_eval.axhline(0.0, color="grey", ls="--", lw=0.8)
        ax_eval.set_title(f"{scenario} / {algorithm}: eval cost/delivered vs {baseline}")
        ax_eval.set_yscale("symlog", linthresh=100.0)  # an untrained policy that rejects all is +1000s %
        ax_eval.set_ylabel("relative (%; log beyond ±100)")
        ax_eval.set_ylim(bottom=-100.0)  # a cost cannot fall below zero
        ax_cost.set_title(f"{scenario} / {algorithm}: training episode cost (rolling mean)")
        ax_cost.set_ylabel("cost per episode")
        for ax, tag in ((ax_eval, EVAL_CURVE), (ax_cost, COST_CURVE)):
            ax.set_xlabel("env steps")
            ax.grid(alpha=0.3)
            if plotted[tag]:
                ax.legend(fontsize="small")
            else:
                ax.text(0.5, 0.5, f"no {tag} scalars", ha="center", va="center", transform=ax.transAxes)
    fig.savefig(path)


# --------------------------------------------------------------------------------------------------------
# Command line


def _count(items: Sequence[Any], noun: str) -> str:
    return f"{len(items)} {noun}{'s' * (len(items) != 1)}"


def describe(spec: SweepSpec, tasks: Sequence[RunTask]) -> str:
    """The expanded runs, for --dry-run."""
    ev = spec.evaluation
    lines = [
        f"sweep {spec.name}: {len(tasks)} runs of {spec.total_timesteps:,} steps "
        f"({_count(spec.scenarios, 'scenario')} x {_count(spec.algorithms, 'algorithm')} x "
        f"{_count(spec.seeds, 'seed')}), "
        f"base {spec.base}",
        f"evaluation: final.zip vs {', '.join(ev.baselines)} on {ev.episodes} paired days from seed "
        f"{ev.seed}",
    ]
    if spec.overrides:
        lines.append("overrides: " + ", ".join(f"{k}={v}" for k, v in spec.overrides.items()))
    width = max(len(t.run.name) for t in tasks)
    for i, task in enumerate(tasks, 1):
        c = task.config
        lines.append(
            f"  {i:>3}. {task.run.name:<{width}}  scenario={c['scenario']} algo={c['algo']['name']} "
            f"seed={c['seed']} steps={c['total_timesteps']} lr={c['algo']['learning_rate']:g} "
            f"n_envs={c['n_envs']} eval.every={c['eval']['every']}"
        )
    return "\n".join(lines)


def run_sweep(
    spec: SweepSpec,
    out: Path,
    workers: int = 2,
    backend: Backend = run_local,
    echo: Callable[[str], None] = print,
) -> tuple[list[RunOutcome], dict[str, Path]]:
    """Run, evaluate and aggregate a sweep into ``out``; returns the outcomes and the written files."""
    tasks = prepare(spec, out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.yaml").write_text(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))
    echo(f"sweep {spec.name}: {len(tasks)} runs on {min(workers, len(tasks))} workers -> {out}")
    started = time.perf_counter()
    baselines = spec.evaluation.baselines
    done = 0

    def on_done(i: int, o: RunOutcome) -> None:
        nonlocal done
        done += 1
        head = f"[{done}/{len(tasks)}] {o.run.name}"
        if o.error:
            echo(f"{head}: FAILED ({o.error}); log {tasks[i].log_path}")
            return
        m, b = o.metrics, baselines[0]
        echo(
            f"{head}: trained in {o.train_wall_s:.0f}s | cost/delivered learned "
            f"{m['learned_cost_per_delivered']:.2f}, {b} {m[f'{b}_cost_per_delivered']:.2f} "
            f"({m[f'rel_cost_per_delivered_vs_{b}_pct']:+.1f}%)"
        )

    outcomes = backend(tasks, workers, on_done)
    rows = result_rows(outcomes, baselines)
    paths = {name: out / name for name in ("results.csv", "results.md", "learning_curves.png")}
    write_csv(rows, baselines, paths["results.csv"])
    paths["results.md"].write_text(results_markdown(spec, rows))
    plot_learning_curves(tasks, outcomes, paths["learning_curves.png"])
    echo(
        f"sweep {spec.name}: done in {time.perf_counter() - started:.0f}s: "
        + ", ".join(str(p) for p in paths.values())
    )
    return outcomes, paths


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", help="sweep file (experiments/sweeps/*.yaml)")
    parser.add_argument("--out", help="output folder (default: runs/sweeps/<sweep name>)")
    parser.add_argument("--workers", type=int, default=2, help="runs at a time (default: 2)")
    parser.add_argument("--dry-run", action="store_true", help="validate and print the expanded runs only")
    parser.add_argument(
        "--ray", action="store_true", help="one Ray task per run (pip install 'lastmile[ray]'); see README"
    )
    parser.add_argument(
        "--ray-address", metavar="ADDR", help="Ray cluster (auto, HOST:PORT, ray://HOST:10001); implies --ray"
    )
    args = parser.parse_args(argv)
    try:
        if args.dry_run:
            args.ray, args.ray_address = False, None  # nothing runs
        backend = select_backend(args.ray, args.ray_address)
        if args.workers < 1:
            raise ConfigError(f"--workers must be >= 1, got {args.workers}")
        spec = load_sweep(args.sweep)
        out = Path(args.out) if args.out else Path("runs") / "sweeps" / str(spec.name)
        if args.dry_run:
            print(describe(spec, prepare(spec, out)))
            return 0
        outcomes, paths = run_sweep(spec, out, args.workers, backend)
    except (ConfigError, BackendUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print()
    print(paths["results.md"].read_text())
    return 1 if any(o.error for o in outcomes) else 0


if __name__ == "__main__":
    raise SystemExit(main())
