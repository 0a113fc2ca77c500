"""Evaluation of dispatch policies: paired episodes, t confidence intervals, a hindsight gap and reports.

Episode k of every policy uses seed ``seed + k``, and the simulator draws the day's orders from its seed
alone, so all policies play the same days and their per-episode differences are paired (much tighter than
comparing two independent means). Each (policy, episode) is one task, and each episode has one hindsight
task (an offline bound on the day's cost with every order known in advance); tasks run in a pool of
processes and are collected in task order, so a parallel run gives exactly the rows of a serial one (the
hindsight column too, as far as its solver is deterministic under a wall-clock time limit). Workers are
spawned and resolve policy names from the ``HEURISTICS`` registry as imported: a policy registered at run
time in the calling process is only visible with ``workers=1``.

Usage::

    result = evaluate("default", ["nearest", "insertion", "regret"], episodes=20, workers=8)
    result.write("runs/eval/default")    # episodes.csv, summary.json, summary.md, metrics.png, route_map.png
    print(result.markdown())

    suite = evaluate_suite("standard", ["insertion", "regret"], episodes=10)
    suite.write("runs/eval/standard")    # one folder per scenario, plus suite.md and suite.json
"""

from __future__ import annotations

import csv
import functools
import importlib
import json
import math
import multiprocessing
import os
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from agents.base import Policy, run_episode
from agents.heuristics import HEURISTICS, make_heuristic
from lastmile_env.config import (
    REPO_ROOT,
    ConfigError,
    ScenarioConfig,
    available_scenarios,
    load_scenario,
    read_yaml_mapping,
)
from lastmile_env.sim.simulator import Simulator
from lastmile_env.sim.types import MODES
from lastmile_env.sim.world import World, world_for

SUITE_DIR = REPO_ROOT / "configs" / "suite"
CONFIDENCE = 0.95

# Outcomes of a day beyond cost and on-time rate (the realism options add most), in rows and summaries.
_OUTCOME_METRICS = (
    "eta_abs_error_min",
    "eta_live_abs_error_min",
    "on_time_rate_same_day",
    "on_time_rate_window",
    "on_time_rate_express",
    "revenue",
    "profit",
    "failed_attempts",
    "delivered_pickup_point",
    "failed",
    "on_time_rate_return",
    *(f"{what}_{mode}" for what in ("delivered", "km") for mode in MODES),
)
EPISODE_COLUMNS = (
    "scenario",
    "policy",
    "episode",
    "seed",
    "on_time_rate",
    "cost",
    "cost_per_delivered",
    "distance_km",
    "late_minutes",
    "rejected",
    "delivered",
    "orders",
    *_OUTCOME_METRICS,
    "hindsight_cost",
    "hindsight_gap",
    "wall_s",
)
# Metrics summarized per policy (mean and CI), and those also compared pairwise against the reference.
SUMMARY_METRICS = (
    "on_time_rate",
    "cost",
    "cost_per_delivered",
    "distance_km",
    "rejected",
    "late_minutes",
    *_OUTCOME_METRICS,
    "hindsight_gap",
    "wall_s",
)
PAIRED_METRICS = ("cost", "cost_per_delivered", "on_time_rate")


class EvaluationError(ConfigError):
    """Bad evaluation input (unknown policy or suite, bad episode count...); raised before any work."""


# ------------------------------------------------------------------------------------------- statistics
@dataclass(frozen=True)
class Interval:
    """A sample mean with its two-sided Student-t confidence interval (``half_width`` is nan for n < 2)."""

    mean: float
    half_width: float
    n: int

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width

    def to_dict(self) -> dict[str, float | int]:
        return {
            "mean": self.mean,
            "ci_low": self.low,
            "ci_high": self.high,
            "half_width": self.half_width,
            "n": self.n,
        }


def mean_ci(values: Iterable[float], confidence: float = CONFIDENCE) -> Interval:
    """Mean and Student-t confidence interval of the finite values (nan entries, e.g. no delivery, are
    dropped and not counted in ``n``)."""
    from scipy import stats  # imported here: the pool's workers never need it

    x = np.asarray([float(v) for v in values], dtype=float)
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return Interval(math.nan, math.nan, 0)
    mean = float(x.mean())
    if n < 2:
        return Interval(mean, math.nan, 1)
    sem = float(x.std(ddof=1)) / math.sqrt(n)
    half = float(stats.t.ppf(0.5 + confidence / 2.0, n - 1)) * sem
    return Interval(mean, half, n)


# ------------------------------------------------------------------------------------ policies, suites
def resolve_policy(spec: str) -> Callable[[], Policy]:
    """A factory for the policy named by ``spec``, checked before any work and called in each worker.

    A spec is a heuristic name (``HEURISTICS``) or the path of a trained model zip (``train.py``'s
    checkpoints and ``final.zip``), loaded as a ``LearnedPolicy`` in each worker. ``dispatch+routing``
    (e.g. ``insertion+nearest_next``, ``model.zip+routing_model.zip``) pairs a dispatch spec with a routing
    one (``agents.routing.ROUTING_HEURISTICS`` or a trained routing model zip); the pair plays the
    simulator in routing mode, the router choosing every vehicle's next stop.
    """
    if "+" in spec:
        return _resolve_pair(spec)
    if spec in HEURISTICS:
        return functools.partial(make_heuristic, spec)
    valid = ", ".join(HEURISTICS)
    path = Path(spec)
    if path.suffix == ".zip":
        if not path.is_file():
            raise EvaluationError(f"policy {spec!r}: no such model file")
        return functools.partial(_load_learned, str(path))
    if os.sep in spec or path.suffix or path.exists():
        raise EvaluationError(
            f"policy {spec!r} looks like a file but is not a trained model zip; valid policy names: {valid}"
        )
    raise EvaluationError(f"unknown policy {spec!r}; valid names: {valid}, or a trained model .zip")


def _resolve_pair(spec: str) -> Callable[[], Policy]:
    """``dispatch+routing``: factories for both halves, checked now (see ``resolve_policy``)."""
    from agents.routing import ROUTING_HEURISTICS, make_routing_heuristic

    dispatch_spec, _, routing_spec = spec.partition("+")
    dispatch = resolve_policy(dispatch_spec)
    router: Callable[[], Any]
    if routing_spec in ROUTING_HEURISTICS:
        router = functools.partial(make_routing_heuristic, routing_spec)
    elif routing_spec.endswith(".zip") and Path(routing_spec).is_file():
        router = functools.partial(_load_learned_router, routing_spec)
    else:
        raise EvaluationError(
            f"policy {spec!r}: unknown routing policy {routing_spec!r}; valid: "
            f"{', '.join(ROUTING_HEURISTICS)}, or a trained routing model .zip (as dispatch+routing)"
        )
    return functools.partial(_make_pair, dispatch, router, spec)


def _make_pair(dispatch: Callable[[], Policy], router: Callable[[], Any], name: str) -> Policy:
    from agents.routing import PairedPolicy

    return PairedPolicy(dispatch(), router(), name)


def _load_learned_router(path: str) -> Any:
    """A trained routing policy for one worker process (one torch thread)."""
    import torch

    from agents.learned.routing_policy import LearnedRoutingPolicy

    torch.set_num_threads(1)
    return LearnedRoutingPolicy.load(path)


def _load_learned(path: str) -> Policy:
    """A trained policy for one worker process (one torch thread: workers already fill the cores)."""
    import torch

    from agents.learned.policy import LearnedPolicy

    torch.set_num_threads(1)
    return LearnedPolicy.load(path)


def available_suites() -> list[str]:
    """Names of the suites shipped under ``configs/suite``."""
    return sorted(p.stem for p in SUITE_DIR.glob("*.yaml"))


@dataclass(frozen=True)
class Suite:
    """A named list of scenarios evaluated together (``configs/suite/*.yaml``)."""

    name: str
    description: str
    scenarios: tuple[str, ...]


def load_suite(suite: str | Path) -> Suite:
    """Load a suite by name (``"standard"``) or YAML path; unknown names (of the suite or of one of its
    scenarios) fail with the valid ones."""
    path = Path(suite)
    if path.suffix not in (".yaml", ".yml"):
        path = SUITE_DIR / f"{suite}.yaml"
        if not path.is_file():
            raise EvaluationError(
                f"unknown suite {str(suite)!r}; valid names: {', '.join(available_suites())} "
                "(or a path to a .yaml file)"
            )
    try:
        data = read_yaml_mapping(path, "suite file")
    except ConfigError as exc:
        raise EvaluationError(str(exc)) from exc
    if set(data) - {"name", "description", "scenarios"}:
        raise EvaluationError(f"suite file {path} must hold a mapping with name, description and scenarios")
    scenarios = data.get("scenarios")
    if not isinstance(scenarios, list) or not scenarios or not all(isinstance(s, str) for s in scenarios):
        raise EvaluationError(f"suite {path}: 'scenarios' must be a non-empty list of scenario names")
    if len(set(scenarios)) != len(scenarios):
        raise EvaluationError(f"suite {path}: a scenario is listed twice in {scenarios}")
    name = str(data.get("name", path.stem))
    for scenario in scenarios:
        if Path(scenario).suffix not in (".yaml", ".yml") and scenario not in available_scenarios():
            raise EvaluationError(
                f"suite {name}: unknown scenario {scenario!r}; "
                f"valid names: {', '.join(available_scenarios())}"
            )
    return Suite(name, str(data.get("description", "")), tuple(scenarios))


# --------------------------------------------------------------------------------------------- tasks
@dataclass(frozen=True)
class _Task:
    """One unit of work for the pool: a policy's episode, or the hindsight bound of one day."""

    scenario: int  # index into the run's plans
    config_json: str
    episode: int
    seed: int
    policy: str | None = None  # None: the hindsight task
    hindsight_time_limit_s: float = 0.0
    snapshot: bool = False  # capture the route map mid-shift

    def describe(self) -> str:
        config = ScenarioConfig.model_validate_json(self.config_json)
        what = f"policy {self.policy}" if self.policy is not None else "hindsight bound"
        return f"{what} on {config.name}, episode {self.episode} (seed {self.seed})"


class _Snapshot:
    """Wraps a policy to capture the route map the first time it decides at or after ``at_min``."""

    def __init__(self, policy: Policy, world: World, at_min: float) -> None:
        self.inner, self.world, self.at_min = policy, world, at_min
        self.name = policy.name
        self.frame: np.ndarray | None = None
        self.render_s = 0.0

    def reset(self, seed: int | None = None) -> None:
        self.inner.reset(seed)

    def capture(self, sim: Simulator) -> None:
        started = time.perf_counter()
        from lastmile_env.render import Renderer  # only the snapshot tasks need matplotlib

        renderer = Renderer(self.world)
        self.frame = renderer.rgb_array(sim)
        renderer.close()
        self.render_s += time.perf_counter() - started

    def act(self, sim: Simulator) -> int:
        if self.frame is None and sim.now >= self.at_min:
            self.capture(sim)
        return self.inner.act(sim)


def _play(task: _Task) -> dict[str, Any]:
    """Run one policy's episode; the row of ``EPISODE_COLUMNS`` (and a mid-shift frame when asked)."""
    assert task.policy is not None
    config = ScenarioConfig.model_validate_json(task.config_json)
    world = world_for(config)
    policy = resolve_policy(task.policy)()
    router = getattr(policy, "router", None)  # a dispatch+routing pair plays in routing mode
    snapshot = None
    if task.snapshot:
        mid_min = min(config.fleet.shift_end_min, config.orders.last_arrival_min) / 2.0
        policy = snapshot = _Snapshot(policy, world, mid_min)
    started = time.perf_counter()
    sim = run_episode(
        Simulator(world, task.seed, routing=router is not None), policy, task.seed, router=router
    )
    wall_s = time.perf_counter() - started
    if snapshot is not None:
        if snapshot.frame is None:  # no decision after mid-shift: show the end of the day
            snapshot.capture(sim)
        wall_s -= snapshot.render_s
    s = sim.summary()
    row: dict[str, Any] = {
        "scenario": config.name,
        "policy": task.policy,
        "episode": task.episode,
        "seed": task.seed,
        **{k: s[k] for k in EPISODE_COLUMNS[4 : EPISODE_COLUMNS.index("hindsight_cost")]},
        "hindsight_cost": math.nan,
        "hindsight_gap": math.nan,
        "wall_s": wall_s,
    }
    return {"row": row, "frame": snapshot.frame if snapshot is not None else None}


def _hindsight(task: _Task) -> dict[str, Any]:
    """The hindsight bound of one day (the orders come from the simulator's constructor alone).

    A failure of the solver is reported, not raised: one bad day should not lose a long evaluation.
    """
    config = ScenarioConfig.model_validate_json(task.config_json)
    world = world_for(config)
    orders = Simulator(world, task.seed).orders
    started = time.perf_counter()
    try:
        module = importlib.import_module("agents.hindsight")
        bound = module.hindsight_bound(
            world, orders, time_limit_s=task.hindsight_time_limit_s, seed=task.seed
        )
        cost, error = float(bound.cost), None
    except Exception as exc:
        cost, error = math.nan, f"{type(exc).__name__}: {exc}"
    return {"cost": cost, "orders": len(orders), "error": error, "wall_s": time.perf_counter() - started}


def _run_task(task: _Task) -> dict[str, Any]:
    return _play(task) if task.policy is not None else _hindsight(task)


def _execute(
    tasks: Sequence[_Task], workers: int, progress: bool, ray: bool | str = False
) -> list[dict[str, Any]]:
    """Run the tasks (in-process for one worker, else a spawn pool, or Ray tasks); results in task order."""
    if ray is not False:
        return _execute_ray(tasks, None if ray is True else ray, progress)
    results: list[dict[str, Any] | None] = [None] * len(tasks)
    with tqdm(total=len(tasks), desc="evaluate", unit="task", disable=not progress) as bar:
        if workers == 1:
            for i, task in enumerate(tasks):
                results[i] = _guarded(task, functools.partial(_run_task, task))
                bar.update()
        else:
            # spawn, not fork: the parent may hold threads (tqdm, BLAS) that fork would copy mid-state.
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=context) as pool:
                futures: dict[Future[dict[str, Any]], int] = {
                    pool.submit(_run_task, task): i for i, task in enumerate(tasks)
                }
                try:
                    for future in as_completed(futures):
                        i = futures[future]
                        results[i] = _guarded(tasks[i], future.result)
                        bar.update()
                except BaseException:
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise
    assert all(r is not None for r in results)
    return [r for r in results if r is not None]


def connect_ray(address: str | None = None, num_cpus: int | None = None) -> Any:
    """The ``ray`` module, initialized: already, or now on ``address`` (``auto``, ``HOST:PORT``,
    ``ray://HOST:10001``), or with ``ray.init()``'s default (the cluster of ``RAY_ADDRESS`` or one started on
    this machine with ``ray start``, else a new local instance) when None; ``local`` starts a new local
    instance (of ``num_cpus``). Workers get the repository on their ``PYTHONPATH``: a cluster's nodes need
    this checkout at the same path and the same environment.

    Ray missing, or a cluster that cannot be reached, raises EvaluationError (before any work)."""
    try:
        import ray
    except ImportError:
        raise EvaluationError(
            "the Ray backend needs Ray, an optional extra: pip install 'lastmile[ray]'"
        ) from None
    if ray.is_initialized():
        return ray
    if address not in (None, "auto", "local"):
        host, _, port = address.removeprefix("ray://").rpartition(":")
        try:  # ray.init would retry an unreachable address for minutes
            socket.create_connection((host, int(port)), timeout=5).close()
        except (OSError, ValueError) as exc:
            raise EvaluationError(f"cannot reach the Ray cluster at {address}: {exc}") from None
    path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    try:
        ray.init(address=address, num_cpus=num_cpus, runtime_env={"env_vars": {"PYTHONPATH": path}})
    except Exception as exc:
        where = f"the Ray cluster at {address}" if address else "Ray (ray.init())"
        raise EvaluationError(f"cannot connect to {where}: {type(exc).__name__}: {exc}") from None
    return ray


def _execute_ray(tasks: Sequence[_Task], address: str | None, progress: bool) -> list[dict[str, Any]]:
    """One Ray task per (scenario, policy, episode) task, as many at a time as the cluster has CPUs;
    results in task order, as from the pool."""
    ray = connect_ray(address)
    remote = ray.remote(num_cpus=1)(_run_task)
    refs = [remote.remote(task) for task in tasks]
    index = {ref: i for i, ref in enumerate(refs)}
    results: list[dict[str, Any] | None] = [None] * len(tasks)
    pending = list(refs)
    with tqdm(total=len(tasks), desc="evaluate (ray)", unit="task", disable=not progress) as bar:
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    i = index[ref]
                    results[i] = _guarded(tasks[i], functools.partial(ray.get, ref))
                    bar.update()
        except BaseException:
            for ref in pending:
                ray.cancel(ref)
            raise
    return [r for r in results if r is not None]


def _guarded(task: _Task, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run a task, naming it in the error if it fails."""
    try:
        return run()
    except Exception as exc:
        raise RuntimeError(f"{task.describe()} failed: {type(exc).__name__}: {exc}") from exc


# ------------------------------------------------------------------------------------------- results
def _jsonable(value: Any) -> Any:
    """Plain JSON: nan / inf become null, numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def summarize(
    rows: Sequence[Mapping[str, Any]], policies: Sequence[str], reference: str | None
) -> dict[str, Any]:
    """Per policy: mean and CI of each summary metric, and the paired per-episode differences against the
    reference (``vs_reference``: absolute for ``PAIRED_METRICS``, plus ``cost_rel_pct`` in percent)."""
    by_policy = {
        p: sorted((r for r in rows if r["policy"] == p), key=lambda r: r["episode"]) for p in policies
    }
    out: dict[str, Any] = {}
    for policy in policies:
        mine = by_policy[policy]
        entry: dict[str, Any] = {
            "episodes": len(mine),
            "metrics": {m: mean_ci(r[m] for r in mine).to_dict() for m in SUMMARY_METRICS},
            "vs_reference": None,
        }
        if reference is not None and policy != reference:
            ref = by_policy[reference]
            diffs = {m: mean_ci(a[m] - b[m] for a, b in zip(mine, ref, strict=True)) for m in PAIRED_METRICS}
            rel = mean_ci(100.0 * (a["cost"] - b["cost"]) / b["cost"] for a, b in zip(mine, ref, strict=True))
            entry["vs_reference"] = {
                "reference": reference,
                **{m: ci.to_dict() for m, ci in diffs.items()},
                "cost_rel_pct": rel.to_dict(),
            }
        out[policy] = entry
    return out


def _fmt(stat: Mapping[str, Any], spec: str = ".1f", scale: float = 1.0, unit: str = "") -> str:
    """``mean ± half-width`` of a summary entry (``–`` when there is no value)."""
    if stat["n"] == 0 or not math.isfinite(stat["mean"]):
        return "–"
    text = f"{stat['mean'] * scale:{spec}}{unit}"
    if math.isfinite(stat["half_width"]):
        text += f" ± {stat['half_width'] * scale:{spec}}"
    return text


def _fmt_delta(vs: Mapping[str, Any] | None, metric: str, spec: str = "+.1f", scale: float = 1.0) -> str:
    """``mean [low, high]`` of a paired difference (and the relative cost change for ``cost``)."""
    if vs is None:
        return "(reference)"
    stat = vs[metric]
    if stat["n"] == 0:
        return "–"
    text = f"{stat['mean'] * scale:{spec}}"
    if math.isfinite(stat["half_width"]):
        text += f" [{stat['ci_low'] * scale:{spec}}, {stat['ci_high'] * scale:{spec}}]"
    if metric == "cost" and vs["cost_rel_pct"]["n"]:
        text += f" ({vs['cost_rel_pct']['mean']:+.1f}%)"
    return text


@dataclass
class EvaluationResult:
    """The outcome of evaluating policies on one scenario: one row per (policy, episode) and the summary."""

    config: ScenarioConfig
    policies: list[str]
    episodes: int
    seed: int
    reference: str | None
    hindsight_time_limit_s: float
    hindsight_note: str | None  # why the hindsight gap is missing, or which days failed (None: all fine)
    rows: list[dict[str, Any]]
    route_map: np.ndarray | None = None
    route_map_policy: str | None = None
    wall_s: float = math.nan  # of the whole run (all scenarios of a suite)
    summary: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.summary = summarize(self.rows, self.policies, self.reference)

    @property
    def scenario(self) -> str:
        return self.config.name

    @property
    def hindsight_computed(self) -> bool:
        """Whether the hindsight bound is known for at least one day."""
        return any(math.isfinite(r["hindsight_gap"]) for r in self.rows)

    def best_policy(self) -> str:
        """The policy with the lowest mean cost (the first one on ties)."""
        costs = [self.summary[p]["metrics"]["cost"]["mean"] for p in self.policies]
        finite = [(c, i) for i, c in enumerate(costs) if math.isfinite(c)]
        return self.policies[min(finite)[1]] if finite else self.policies[0]

    def to_json(self) -> dict[str, Any]:
        """Everything but the rows: the run's settings, the hindsight status and the summary."""
        return _jsonable(
            {
                "scenario": self.scenario,
                "description": self.config.description,
                "policies": self.policies,
                "episodes": self.episodes,
                "seeds": [self.seed + k for k in range(self.episodes)],
                "reference": self.reference,
                "confidence": CONFIDENCE,
                "hindsight": {
                    "computed": self.hindsight_computed,
                    "time_limit_s": self.hindsight_time_limit_s,
                    "note": self.hindsight_note,
                },
                "best_policy": self.best_policy(),
                "route_map_policy": self.route_map_policy,
                "run_wall_s": self.wall_s,
                "summary": self.summary,
                "config": self.config.model_dump(mode="json"),
            }
        )

    def markdown(self, heading: str = "##") -> str:
        """A readable report: the settings, then one table row per policy."""
        k, ref = self.episodes, self.reference
        notes = [
            f"{k} episode{'s' * (k != 1)} per policy (seeds {self.seed}–{self.seed + k - 1}), paired: every "
            "policy plays the same days. `±` is the half-width of the 95% Student-t confidence interval."
        ]
        if ref is not None:
            notes.append(
                f"Δcost: the paired per-episode cost difference to `{ref}` [95% CI] (mean relative change)."
            )
        if self.hindsight_computed:
            notes.append(
                "Gap to hindsight: (cost − hindsight) / hindsight, where hindsight is the cost of an "
                "offline plan of the day with every order known in advance "
                f"({self.hindsight_time_limit_s:g} s solver limit per day)."
                + (
                    " It plans with expected travel times and every customer at home, so the gap here also "
                    "holds the cost of the travel surprises and failed attempts that no policy can foresee."
                    if self.config.travel.noise.kind != "none" or self.config.attempts.enabled
                    else ""
                )
                + (f" Note: {self.hindsight_note}." if self.hindsight_note else "")
            )
        else:
            notes.append(f"Gap to hindsight: not computed ({self.hindsight_note}).")
        live_eta = self.config.travel.live_eta
        if live_eta:
            notes.append(
                "ETA error: mean |actual − ETA| in minutes, for the ETA promised at dispatch and for the "
                "live ETA in force 30 min before the delivery (orders dispatched later than that left out)."
            )
        by_option = self.config.orders.express_share > 0
        if by_option:
            notes.append("On-time by option: the on-time rate among same-day / window / express orders.")
        prices = self.config.orders.prices
        priced = prices.same_day > 0 or prices.window > 0 or prices.express > 0
        if priced:
            notes.append(
                f"Profit: revenue (per delivered order: same-day {prices.same_day:g}, window "
                f"{prices.window:g}, express {prices.express:g}) minus cost."
            )
        absences = self.config.attempts.enabled
        if absences:
            notes.append(
                "Attempts: failed attempts (customer absent) / orders left at a pickup point / orders failed "
                "(brought back), per day."
            )
        returns = self.config.orders.returns_share > 0
        if returns:
            notes.append("Returns on time: share of returns collected within their window.")
        modes = any(t.mode != "van" for t in self.config.fleet.types)
        if modes:
            notes.append("By mode: deliveries / km per day of the vans, cargo bikes and drones.")
        lines = [f"{heading} Evaluation: {self.scenario}", ""]
        if self.config.description:
            lines += [self.config.description, ""]
        lines += [
            " ".join(notes),
            "",
            "| policy | on-time rate (%) | cost | cost/delivered | km | rejected | gap to hindsight (%) "
            f"| Δcost vs {ref or '–'} |"
            + (" ETA error promised / live (min) |" if live_eta else "")
            + (" on-time by option (%) |" if by_option else "")
            + (" profit |" if priced else "")
            + (" attempts failed / pickup point / failed |" if absences else "")
            + (" returns on time (%) |" if returns else "")
            + (" by mode: van / bike / drone deliveries; km |" if modes else "")
            + " s/episode |",
            "|---|---|---|---|---|---|---|---|"
            + "---|" * (live_eta + by_option + priced + absences + returns + modes)
            + "---|",
        ]
        for policy in self.policies:
            m = self.summary[policy]["metrics"]
            vs = self.summary[policy]["vs_reference"]
            cells = [
                f"`{policy}`",
                _fmt(m["on_time_rate"], scale=100.0),
                _fmt(m["cost"]),
                _fmt(m["cost_per_delivered"], ".2f"),
                _fmt(m["distance_km"], ".0f"),
                _fmt(m["rejected"]),
                _fmt(m["hindsight_gap"], scale=100.0) if self.hindsight_computed else "n/c",
                _fmt_delta(vs, "cost") if ref is not None else "–",
                *(
                    [f"{_fmt(m['eta_abs_error_min']).split(' ±')[0]} / {_fmt(m['eta_live_abs_error_min'])}"]
                    if live_eta
                    else []
                ),
                *(
                    [
                        " / ".join(
                            _fmt(m[f"on_time_rate_{o}"], ".0f", scale=100.0).split(" ±")[0]
                            for o in ("same_day", "window", "express")
                        )
                    ]
                    if by_option
                    else []
                ),
                *([_fmt(m["profit"], ".0f")] if priced else []),
                *(
                    [
                        " / ".join(
                            _fmt(m[k]).split(" ±")[0]
                            for k in ("failed_attempts", "delivered_pickup_point", "failed")
                        )
                    ]
                    if absences
                    else []
                ),
                *([_fmt(m["on_time_rate_return"], scale=100.0)] if returns else []),
                *(
                    [
                        "; ".join(
                            " / ".join(_fmt(m[f"{what}_{mode}"], ".0f").split(" ±")[0] for mode in MODES)
                            for what in ("delivered", "km")
                        )
                    ]
                    if modes
                    else []
                ),
                _fmt(m["wall_s"], ".2f").split(" ±")[0],
            ]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """Write episodes.csv, summary.json, summary.md, metrics.png and route_map.png; returns the paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {name: out / name for name in ("episodes.csv", "summary.json", "summary.md", "metrics.png")}
        with paths["episodes.csv"].open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=EPISODE_COLUMNS)
            writer.writeheader()
            writer.writerows(self.rows)
        paths["summary.json"].write_text(json.dumps(self.to_json(), indent=2) + "\n")
        paths["summary.md"].write_text(self.markdown())
        _plot_metrics(self, paths["metrics.png"])
        if self.route_map is not None:
            paths["route_map.png"] = out / "route_map.png"
            _plot_route_map(self, paths["route_map.png"])
        return paths


@dataclass
class SuiteResult:
    """The outcome of a suite: one EvaluationResult per scenario."""

    suite: Suite
    results: list[EvaluationResult]
    wall_s: float = math.nan

    def markdown(self) -> str:
        """One table over scenario × policy: on-time rate, cost per delivery, Δcost vs the reference."""
        refs = {r.reference for r in self.results}
        ref = refs.pop() if len(refs) == 1 else None
        lines = [
            f"# Suite: {self.suite.name}",
            "",
            *([self.suite.description, ""] if self.suite.description else []),
            "Mean ± 95% CI half-width over paired episodes; Δcost: per-episode difference to "
            f"`{ref}` [95% CI] (mean relative change). Per-scenario reports are in the subfolders.",
            "",
            f"| scenario | policy | on-time rate (%) | cost/delivered | Δcost vs {ref or 'reference'} |",
            "|---|---|---|---|---|",
        ]
        for result in self.results:
            for policy in result.policies:
                entry = result.summary[policy]
                m = entry["metrics"]
                delta = _fmt_delta(entry["vs_reference"], "cost") if result.reference is not None else "–"
                lines.append(
                    f"| {result.scenario} | `{policy}` | {_fmt(m['on_time_rate'], scale=100.0)} | "
                    f"{_fmt(m['cost_per_delivered'], '.2f')} | {delta} |"
                )
        return "\n".join(lines) + "\n"

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """Each scenario's outputs in ``out_dir/<scenario>/``, plus ``suite.md`` and ``suite.json``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for result in self.results:
            result.write(out / result.scenario)
        paths = {"suite.md": out / "suite.md", "suite.json": out / "suite.json"}
        paths["suite.md"].write_text(self.markdown())
        combined = {
            "suite": self.suite.name,
            "description": self.suite.description,
            "wall_s": self.wall_s,
            "scenarios": {r.scenario: r.to_json() for r in self.results},
        }
        paths["suite.json"].write_text(json.dumps(_jsonable(combined), indent=2) + "\n")
        return paths


# -------------------------------------------------------------------------------------------- plots
_PLOTTED = (
    ("on_time_rate", "on-time rate (%)", 100.0),
    ("cost", "cost per day", 1.0),
    ("cost_per_delivered", "cost per delivered order", 1.0),
    ("distance_km", "distance (km)", 1.0),
    ("rejected", "rejected orders", 1.0),
    ("hindsight_gap", "gap to hindsight (%)", 100.0),
)


def _plot_metrics(result: EvaluationResult, path: Path) -> None:
    """One bar panel per metric: the mean of each policy with its 95% CI as an error bar."""
    from matplotlib.figure import Figure

    panels = [p for p in _PLOTTED if p[0] != "hindsight_gap" or result.hindsight_computed]
    cols = 3
    rows = math.ceil(len(panels) / cols)
    n = len(result.policies)
    fig = Figure(figsize=(4.2 * cols, 3.4 * rows + 0.4), dpi=100, layout="constrained")
    fig.suptitle(f"{result.scenario}: {result.episodes} paired episodes, mean and 95% CI")
    colours = [f"C{i % 10}" for i in range(n)]
    for k, (metric, label, scale) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, k + 1)
        stats = [result.summary[p]["metrics"][metric] for p in result.policies]
        means = [s["mean"] * scale for s in stats]
        errs = [s["half_width"] * scale if math.isfinite(s["half_width"]) else 0.0 for s in stats]
        ax.bar(range(n), means, yerr=errs, color=colours, capsize=4, edgecolor="black", linewidth=0.5)
        ax.set_xticks(range(n), result.policies, rotation=30, ha="right")
        ax.set_title(label)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    fig.savefig(path)


def _plot_route_map(result: EvaluationResult, path: Path) -> None:
    """The captured mid-shift frame with a caption naming the policy and the day."""
    from matplotlib.figure import Figure

    assert result.route_map is not None
    height, width = result.route_map.shape[:2]
    fig = Figure(figsize=(width / 100, height / 100 + 0.4), dpi=100)
    ax = fig.add_axes((0.0, 0.0, 1.0, height / (height + 40)))
    ax.imshow(result.route_map)
    ax.set_axis_off()
    fig.suptitle(
        f"{result.scenario}: policy {result.route_map_policy}, episode 0 (seed {result.seed}), mid-shift",
        y=0.995,
        va="top",
    )
    fig.savefig(path)


# ------------------------------------------------------------------------------------------ running
@dataclass
class _Plan:
    """A validated evaluation of one scenario, before running."""

    config: ScenarioConfig
    policies: list[str]
    episodes: int
    seed: int
    reference: str | None
    hindsight_time_limit_s: float
    hindsight_note: str | None
    route_map: bool

    def tasks(self, index: int) -> list[_Task]:
        """Episode-major, so that an interrupted run has covered every policy equally."""
        cfg = self.config.model_dump_json()
        out: list[_Task] = []
        for k in range(self.episodes):
            seed = self.seed + k
            if self.hindsight_note is None:
                out.append(_Task(index, cfg, k, seed, hindsight_time_limit_s=self.hindsight_time_limit_s))
            for policy in self.policies:
                out.append(_Task(index, cfg, k, seed, policy, snapshot=self.route_map and k == 0))
        return out

    def collect(self, tasks: Sequence[_Task], results: Sequence[dict[str, Any]]) -> EvaluationResult:
        """Rows ordered by policy then episode, with the hindsight gap filled in; checks the pairing."""
        hindsight: dict[int, dict[str, Any]] = {}
        played: dict[tuple[str, int], dict[str, Any]] = {}
        frames: dict[str, np.ndarray] = {}
        for task, res in zip(tasks, results, strict=True):
            if task.policy is None:
                hindsight[task.episode] = res
            else:
                played[task.policy, task.episode] = res["row"]
                if res["frame"] is not None:
                    frames[task.policy] = res["frame"]
        note = self.hindsight_note
        errors = [h["error"] for h in hindsight.values() if h["error"] is not None]
        if note is None and errors:
            note = (
                f"the hindsight solver failed on {len(errors)} of {self.episodes} days (first: {errors[0]})"
            )
        rows = []
        for policy in self.policies:
            for k in range(self.episodes):
                row = dict(played[policy, k])
                if row["orders"] != played[self.policies[0], k]["orders"]:
                    raise RuntimeError(f"episode {k}: policies saw different days; the pairing is broken")
                h = hindsight.get(k)
                if h is not None and math.isfinite(h["cost"]) and h["cost"] > 0:
                    row["hindsight_cost"] = h["cost"]
                    row["hindsight_gap"] = (row["cost"] - h["cost"]) / h["cost"]
                rows.append(row)
        result = EvaluationResult(
            config=self.config,
            policies=self.policies,
            episodes=self.episodes,
            seed=self.seed,
            reference=self.reference,
            hindsight_time_limit_s=self.hindsight_time_limit_s,
            hindsight_note=note,
            rows=rows,
        )
        if frames:
            best = result.best_policy()
            result.route_map_policy = best if best in frames else next(iter(frames))
            result.route_map = frames[result.route_map_policy]
        return result


def _hindsight_unavailable(time_limit_s: float) -> str | None:
    """Why the hindsight bound will not be computed, or None when it will."""
    if time_limit_s == 0:
        return "disabled: hindsight time limit 0"
    try:
        module = importlib.import_module("agents.hindsight")
    except ImportError as exc:
        return f"agents.hindsight is not available: {exc}"
    if not hasattr(module, "hindsight_bound"):
        return "agents.hindsight has no hindsight_bound"
    return None


def _parse_policies(policies: Sequence[str] | str) -> list[str]:
    specs = [p.strip() for p in policies.split(",")] if isinstance(policies, str) else list(policies)
    specs = [p for p in specs if p]
    if not specs:
        raise EvaluationError(f"no policy given; valid names: {', '.join(HEURISTICS)}")
    dup = sorted({p for p in specs if specs.count(p) > 1})
    if dup:
        raise EvaluationError(f"policy listed twice: {', '.join(dup)}")
    for spec in specs:
        resolve_policy(spec)
    return specs


def _check_run(episodes: int, seed: int, workers: int | None, hindsight_time_limit_s: float) -> int:
    """Validate the run-wide settings; returns the number of workers."""
    if episodes < 1:
        raise EvaluationError(f"episodes must be >= 1, got {episodes}")
    if seed < 0:
        raise EvaluationError(f"seed must be >= 0, got {seed}")
    if not hindsight_time_limit_s >= 0:
        raise EvaluationError(
            f"the hindsight time limit must be >= 0 s (0 disables), got {hindsight_time_limit_s}"
        )
    n = workers if workers is not None else (os.cpu_count() or 1)
    if n < 1:
        raise EvaluationError(f"workers must be >= 1, got {n}")
    return n


def _plan(
    scenario: str | Path | ScenarioConfig,
    policies: list[str],
    episodes: int,
    seed: int,
    reference: str | None,
    hindsight_time_limit_s: float,
    overrides: Mapping[str, Any] | None,
    route_map: bool,
) -> _Plan:
    config = load_scenario(scenario, overrides)
    if reference is not None and reference not in policies:
        raise EvaluationError(
            f"reference policy {reference!r} is not among the evaluated policies ({', '.join(policies)}); "
            "add it to the policies or choose one of them as the reference"
        )
    world_for(config)  # bad layouts fail here, and the travel matrix is cached before the workers start
    return _Plan(
        config,
        policies,
        episodes,
        seed,
        reference,
        hindsight_time_limit_s,
        _hindsight_unavailable(hindsight_time_limit_s),
        route_map,
    )


def _run(
    plans: Sequence[_Plan], workers: int, progress: bool, ray: bool | str = False
) -> list[EvaluationResult]:
    tasks = [task for i, plan in enumerate(plans) for task in plan.tasks(i)]
    started = time.perf_counter()
    results = _execute(tasks, workers, progress, ray)
    wall_s = time.perf_counter() - started
    out = []
    for i, plan in enumerate(plans):
        mine = [(t, r) for t, r in zip(tasks, results, strict=True) if t.scenario == i]
        result = plan.collect([t for t, _ in mine], [r for _, r in mine])
        result.wall_s = wall_s
        out.append(result)
    return out


def evaluate(
    scenario: str | Path | ScenarioConfig,
    policies: Sequence[str] | str,
    episodes: int = 20,
    seed: int = 0,
    workers: int | None = None,
    reference: str | None = "insertion",
    hindsight_time_limit_s: float = 2.0,
    overrides: Mapping[str, Any] | None = None,
    progress: bool = True,
    route_map: bool = True,
    ray: bool | str = False,
) -> EvaluationResult:
    """Evaluate policies on paired episodes of one scenario.

    Args:
        scenario: a scenario name, YAML path or config (``overrides``: dotted scenario fields).
        policies: policy specs (see ``resolve_policy``), or one comma-separated string.
        episodes, seed: episode k of every policy plays the day of seed ``seed + k``.
        workers: processes (default: all cores; 1 runs in this process).
        reference: the policy the others are compared to episode by episode (None: no comparison).
        hindsight_time_limit_s: solver time per day for the hindsight bound (0: skip the gap).
        route_map: capture a mid-shift route map of episode 0 (kept for the policy with the lowest cost).
        ray: run the tasks as Ray tasks instead of the pool (``workers`` is then ignored): True for
            ``ray.init()``'s default, or a cluster address (``connect_ray``). Same rows as the pool.

    Bad input (unknown names, episodes < 1...) raises ConfigError / EvaluationError before any work.
    """
    specs = _parse_policies(policies)
    n_workers = _check_run(episodes, seed, workers, hindsight_time_limit_s)
    plan = _plan(scenario, specs, episodes, seed, reference, hindsight_time_limit_s, overrides, route_map)
    if ray is not False:
        connect_ray(None if ray is True else ray)
    return _run([plan], n_workers, progress, ray)[0]


def evaluate_suite(
    suite: str | Path,
    policies: Sequence[str] | str,
    episodes: int = 20,
    seed: int = 0,
    workers: int | None = None,
    reference: str | None = "insertion",
    hindsight_time_limit_s: float = 2.0,
    overrides: Mapping[str, Any] | None = None,
    progress: bool = True,
    route_map: bool = True,
    ray: bool | str = False,
) -> SuiteResult:
    """Evaluate policies on every scenario of a suite (one pool for all tasks); arguments as ``evaluate``,
    ``overrides`` apply to every scenario."""
    loaded = load_suite(suite)
    specs = _parse_policies(policies)
    n_workers = _check_run(episodes, seed, workers, hindsight_time_limit_s)
    plans = []
    for scenario in loaded.scenarios:
        try:
            plans.append(
                _plan(
                    scenario, specs, episodes, seed, reference, hindsight_time_limit_s, overrides, route_map
                )
            )
        except EvaluationError:
            raise
        except ConfigError as exc:
            raise ConfigError(f"suite {loaded.name}, scenario {scenario}: {exc}") from None
    names = [p.config.name for p in plans]
    if len(set(names)) != len(names):
        raise EvaluationError(f"suite {loaded.name}: two scenarios share a name in {names}")
    if ray is not False:
        connect_ray(None if ray is True else ray)
    started = time.perf_counter()
    results = _run(plans, n_workers, progress, ray)
    return SuiteResult(loaded, results, time.perf_counter() - started)
