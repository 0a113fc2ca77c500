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

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from agents.evaluation.common import (
    CONFIDENCE,
    EPISODE_COLUMNS,
    PAIRED_METRICS,
    SUMMARY_METRICS,
    EvaluationError,
)
from agents.evaluation.policies import _parse_policies, resolve_policy
from agents.evaluation.reports import EvaluationResult, SuiteResult
from agents.evaluation.runners import connect_ray
from agents.evaluation.scenario import _check_run, _plan, _run
from agents.evaluation.stats import Interval, mean_ci, summarize
from agents.evaluation.suites import SUITE_DIR, Suite, available_suites, load_suite
from lastmile_env.config import ConfigError, ScenarioConfig

__all__ = [
    "CONFIDENCE",
    "EPISODE_COLUMNS",
    "PAIRED_METRICS",
    "SUITE_DIR",
    "SUMMARY_METRICS",
    "EvaluationError",
    "EvaluationResult",
    "Interval",
    "Suite",
    "SuiteResult",
    "available_suites",
    "connect_ray",
    "evaluate",
    "evaluate_suite",
    "load_suite",
    "mean_ci",
    "resolve_policy",
    "summarize",
]


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
