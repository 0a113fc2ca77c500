"""The scenario runner: one task per (scenario, policy, episode) and one hindsight task per day, planned
from the validated inputs and collected into an EvaluationResult per scenario."""

from __future__ import annotations

import importlib
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agents.base import Policy, WavePolicy, run_episode
from agents.evaluation.common import EPISODE_COLUMNS, EvaluationError
from agents.evaluation.policies import describe_solver_budgets, resolve_policy
from agents.evaluation.reports import EvaluationResult
from agents.evaluation.runners import execute
from lastmile_env.config import ConfigError, ScenarioConfig, load_scenario, with_dispatch_mode
from lastmile_env.generators import default_generator
from lastmile_env.replay import record_episode
from lastmile_env.sim.simulator import Simulator
from lastmile_env.sim.world import World, world_for
from lastmile_env.solver_budget import SolverBudget


@dataclass(frozen=True)
class _Task:
    """One unit of work for the pool: a policy's episode, or the hindsight bound of one day."""

    scenario: int  # index into the run's plans
    config_json: str
    episode: int
    seed: int
    policy: str | None = None  # None: the hindsight task
    hindsight_budget: SolverBudget | None = None
    snapshot: bool = False  # capture the route map mid-shift
    record: bool = False  # return the day's replay record (evaluate --record)

    def describe(self) -> str:
        config = ScenarioConfig.model_validate_json(self.config_json)
        what = f"policy {self.policy}" if self.policy is not None else "hindsight bound"
        return f"{what} on {config.name}, episode {self.episode} (seed {self.seed})"


class _Snapshot:
    """Wraps a policy to capture the route map the first time it decides at or after ``at_min``."""

    def __init__(self, policy: Policy | WavePolicy, world: World, at_min: float) -> None:
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
        assert not isinstance(self.inner, WavePolicy)
        return self.inner.act(sim)


class _WaveSnapshot(_Snapshot):
    """``_Snapshot`` for a wave policy: captures at its first wave at or after ``at_min``."""

    def __init__(self, policy: WavePolicy, world: World, at_min: float) -> None:
        super().__init__(policy, world, at_min)
        self.wave_policy = policy
        self.budget, self.seed = policy.budget, policy.seed
        self.safety_min = getattr(policy, "safety_min", 0.0)

    def choose(self, sim: Simulator) -> list[int]:
        if self.frame is None and sim.now >= self.at_min:
            self.capture(sim)
        return self.wave_policy.choose(sim)


def in_mode_for(config: ScenarioConfig, policy: Any) -> ScenarioConfig:
    """The scenario as the policy plays it: in wave mode for a wave policy, one order at a time for any other
    (the day is the same: the mode changes only when the decisions are made). A scenario that cannot run in
    wave mode (returns, battery vehicles) raises ConfigError."""
    return with_dispatch_mode(config, "wave" if isinstance(policy, WavePolicy) else "order")


def _play(task: _Task) -> dict[str, Any]:
    """Run one policy's episode; the row of ``EPISODE_COLUMNS`` (and a mid-shift frame when asked)."""
    assert task.policy is not None
    policy = resolve_policy(task.policy)()
    config = in_mode_for(ScenarioConfig.model_validate_json(task.config_json), policy)
    world = world_for(config)
    router = getattr(policy, "router", None)  # a dispatch+routing pair plays in routing mode
    snapshot: _Snapshot | None = None
    if task.snapshot:
        mid_min = min(config.fleet.shift_end_min, config.orders.last_arrival_min) / 2.0
        if isinstance(policy, WavePolicy):
            policy = snapshot = _WaveSnapshot(policy, world, mid_min)
        else:
            policy = snapshot = _Snapshot(policy, world, mid_min)
    started = time.perf_counter()
    sim = run_episode(
        Simulator(world, task.seed, routing=router is not None), policy, task.seed, router=router
    )
    wall_s = time.perf_counter() - started
    if snapshot is not None:
        wall_s -= snapshot.render_s  # drawing the frame during the episode is not the policy's time
        if snapshot.frame is None:  # no decision after mid-shift: show the end of the day (untimed)
            snapshot.capture(sim)
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
    replay = record_episode(sim, task.policy, task.seed) if task.record else None
    return {"row": row, "frame": snapshot.frame if snapshot is not None else None, "replay": replay}


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
        budget = task.hindsight_budget
        assert budget is not None
        bound = module.hindsight_bound(
            world,
            orders,
            time_limit_s=budget.time_limit_s,
            seed=task.seed,
            max_iterations=budget.max_iterations,
        )
        cost, error = float(bound.cost), None
    except Exception as exc:
        cost, error = math.nan, f"{type(exc).__name__}: {exc}"
    return {"cost": cost, "orders": len(orders), "error": error, "wall_s": time.perf_counter() - started}


def _run_task(task: _Task) -> dict[str, Any]:
    return _play(task) if task.policy is not None else _hindsight(task)


@dataclass
class _Plan:
    """A validated evaluation of one scenario, before running."""

    config: ScenarioConfig
    policies: list[str]
    episodes: int
    seed: int
    reference: str | None
    hindsight_budget: SolverBudget | None  # None: not computed (see hindsight_note)
    hindsight_note: str | None
    route_map: bool
    record: int = 0  # record the first days of every policy (evaluate --record)

    def tasks(self, index: int) -> list[_Task]:
        """Episode-major, so that an interrupted run has covered every policy equally."""
        cfg = self.config.model_dump_json()
        out: list[_Task] = []
        for k in range(self.episodes):
            seed = self.seed + k
            if self.hindsight_note is None:
                out.append(_Task(index, cfg, k, seed, hindsight_budget=self.hindsight_budget))
            for policy in self.policies:
                snapshot = self.route_map and k == 0
                out.append(_Task(index, cfg, k, seed, policy, snapshot=snapshot, record=k < self.record))
        return out

    def collect(self, tasks: Sequence[_Task], results: Sequence[dict[str, Any]]) -> EvaluationResult:
        """Rows ordered by policy then episode, with the hindsight gap filled in; checks the pairing."""
        hindsight: dict[int, dict[str, Any]] = {}
        played: dict[tuple[str, int], dict[str, Any]] = {}
        frames: dict[str, np.ndarray] = {}
        replays: dict[tuple[str, int], dict[str, Any]] = {}
        for task, res in zip(tasks, results, strict=True):
            if task.policy is None:
                hindsight[task.episode] = res
            else:
                played[task.policy, task.episode] = res["row"]
                if res["frame"] is not None:
                    frames[task.policy] = res["frame"]
                if res["replay"] is not None:
                    replays[task.policy, task.episode] = res["replay"]
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
        note = _multi_center_check(self.config, rows, note)
        result = EvaluationResult(
            config=self.config,
            policies=self.policies,
            episodes=self.episodes,
            seed=self.seed,
            reference=self.reference,
            hindsight_budget=self.hindsight_budget.describe() if self.hindsight_budget else None,
            hindsight_note=note,
            rows=rows,
            replays=replays,
            solver_budgets=describe_solver_budgets(self.policies),
        )
        if frames:
            best = result.best_policy()
            result.route_map_policy = best if best in frames else next(iter(frames))
            result.route_map = frames[result.route_map_policy]
        return result


def _multi_center_check(config: ScenarioConfig, rows: list[dict[str, Any]], note: str | None) -> str | None:
    """On a multi-center day the hindsight model keeps each trip to one center, while policies collect at
    several centers in one trip: where a policy then beats it on average, it is no bound there. Its gaps are
    dropped (the costs stay in the rows) and the note says why; the returned note is the report's."""
    n_centers = world_for(config).n_depots  # built (and cached) when the run was planned
    if n_centers < 2:
        return note
    by_policy: dict[str, list[float]] = {}
    for row in rows:
        if math.isfinite(row["hindsight_gap"]):
            by_policy.setdefault(row["policy"], []).append(row["hindsight_gap"])
    below = {p: float(np.mean(g)) for p, g in by_policy.items() if np.mean(g) < 0}
    if not below:
        return note
    for row in rows:
        row["hindsight_gap"] = math.nan
    worst = min(below, key=lambda p: below[p])
    return (
        f"the bound is not valid on this {n_centers}-center day: its model keeps each trip to one center "
        f"while vehicles may collect at several centers in one trip, and {len(below)} policies cost less "
        f"than it on average ({worst}: {100 * below[worst]:+.1f}%); no gap is shown"
    )


def _hindsight_budget(time_limit_s: float | None, iterations: int | None) -> SolverBudget | None:
    """The hindsight solver's budget: iterations by default, seconds when asked; None when 0 skips it."""
    if time_limit_s is not None and not (time_limit_s >= 0 and math.isfinite(time_limit_s)):
        raise EvaluationError(
            f"the hindsight time limit must be >= 0 s (0 skips the bound), got {time_limit_s}"
        )
    if iterations is not None and iterations < 0:
        raise EvaluationError(f"the hindsight iterations must be >= 0 (0 skips the bound), got {iterations}")
    if time_limit_s == 0 or iterations == 0:
        return None
    try:
        from agents.hindsight import HINDSIGHT_ITERATIONS
    except ImportError:
        HINDSIGHT_ITERATIONS = 1  # the bound is unavailable; _hindsight_unavailable says why
    try:
        return SolverBudget.of(iterations, time_limit_s, HINDSIGHT_ITERATIONS)
    except ValueError as exc:
        raise EvaluationError(f"hindsight bound: {exc}") from None


def _hindsight_unavailable(budget: SolverBudget | None, world: World) -> str | None:
    """Why the hindsight bound will not be computed (disabled, unavailable, or not valid for this world's
    days: then no gap is shown rather than a misleading one), or None when it will."""
    if budget is None:
        return "disabled: hindsight budget 0"
    try:
        module = importlib.import_module("agents.hindsight")
    except ImportError as exc:
        return f"agents.hindsight is not available: {exc}"
    if not hasattr(module, "hindsight_bound"):
        return "agents.hindsight has no hindsight_bound"
    invalid = module.not_valid_for(world) if hasattr(module, "not_valid_for") else None
    return None if invalid is None else f"the bound is not valid here: {invalid}"


def _check_run(episodes: int, seed: int, workers: int | None, record: int = 0) -> int:
    """Validate the run-wide settings; returns the number of workers."""
    if episodes < 1:
        raise EvaluationError(f"episodes must be >= 1, got {episodes}")
    if not 0 <= record <= episodes:
        raise EvaluationError(f"record must be between 0 and the {episodes} episodes, got {record}")
    if seed < 0:
        raise EvaluationError(f"seed must be >= 0, got {seed}")
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
    hindsight_budget: SolverBudget | None,
    overrides: Mapping[str, Any] | None,
    route_map: bool,
    record: int = 0,
) -> _Plan:
    config = load_scenario(scenario, overrides)
    if reference is not None and reference not in policies:
        raise EvaluationError(
            f"reference policy {reference!r} is not among the evaluated policies ({', '.join(policies)}); "
            "add it to the policies or choose one of them as the reference"
        )
    # Bad layouts and order logs fail here, and the travel matrix is cached, before the workers start.
    world = world_for(config)
    default_generator(world)
    for spec in policies:  # a policy that cannot play the scenario's decisions fails here, before any work
        try:
            in_mode_for(config, resolve_policy(spec)())
        except ConfigError as exc:
            raise EvaluationError(f"policy {spec!r} cannot play {config.name}: {exc}") from None
    return _Plan(
        config,
        policies,
        episodes,
        seed,
        reference,
        hindsight_budget,
        _hindsight_unavailable(hindsight_budget, world),
        route_map,
        record,
    )


def _run(
    plans: Sequence[_Plan], workers: int, progress: bool, ray: bool | str = False
) -> list[EvaluationResult]:
    tasks = [task for i, plan in enumerate(plans) for task in plan.tasks(i)]
    started = time.perf_counter()
    results = execute(tasks, _run_task, workers, progress, ray)
    wall_s = time.perf_counter() - started
    out = []
    for i, plan in enumerate(plans):
        mine = [(t, r) for t, r in zip(tasks, results, strict=True) if t.scenario == i]
        result = plan.collect([t for t, _ in mine], [r for _, r in mine])
        result.wall_s = wall_s
        out.append(result)
    return out
