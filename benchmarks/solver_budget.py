"""PyVRP budgets for ``reopt`` and the hindsight bound: cost and wall time, iterations against seconds.

    python benchmarks/solver_budget.py --days 20000,20001,20002 --reopt t0.5,50,100,200 \\
        --hindsight t2,250,500,1000

A budget ``tS`` is S wall-clock seconds per solve (machine-dependent), a plain number is PyVRP iterations
(reproducible). Each (day, budget) is one run in this process, one after the other, so the budgets of a
day share the machine's load. Prints one Markdown table: per budget the mean cost per delivered order and
on-time rate of ``reopt`` (or the hindsight cost) and the mean wall seconds per day; the load average before
and after in the header. Used to choose ``REOPT_ITERATIONS`` and ``HINDSIGHT_ITERATIONS``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

from agents.base import run_episode
from agents.heuristics.reopt import ReoptPolicy
from agents.hindsight import hindsight_bound
from lastmile_env.config import load_scenario
from lastmile_env.sim.simulator import Simulator
from lastmile_env.sim.world import world_for


def budget_kwargs(budget: str) -> dict[str, Any]:
    """``t0.5`` -> seconds, ``50`` -> iterations."""
    if budget.startswith("t"):
        return {"time_limit_s": float(budget[1:])}
    return {"max_iterations": int(budget)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenario", default="default")
    parser.add_argument("--days", default="20000,20001,20002", help="comma-separated day seeds")
    parser.add_argument("--reopt", default="t0.5,50,100", help="reopt budgets (tS: seconds; N: iterations)")
    parser.add_argument("--hindsight", default="t2,250,500", help="hindsight budgets, same form")
    args = parser.parse_args(argv)
    try:
        days = [int(s) for s in args.days.split(",")]
        plans = [("reopt", b, budget_kwargs(b)) for b in args.reopt.split(",") if b] + [
            ("hindsight", b, budget_kwargs(b)) for b in args.hindsight.split(",") if b
        ]
    except ValueError as exc:
        print(f"error: bad day or budget: {exc}", file=sys.stderr)
        return 2
    world = world_for(load_scenario(args.scenario))
    load_before = os.getloadavg()
    rows: dict[tuple[str, str], list[dict[str, float]]] = {}
    for day in days:
        for what, budget, kwargs in plans:
            started = time.perf_counter()
            if what == "reopt":
                s = run_episode(Simulator(world, day), ReoptPolicy(**kwargs), day).summary()
                row = {"per": s["cost_per_delivered"], "on_time": s["on_time_rate"], "cost": s["cost"]}
            else:
                row = {"cost": hindsight_bound(world, Simulator(world, day).orders, seed=day, **kwargs).cost}
            row["wall"] = time.perf_counter() - started
            rows.setdefault((what, budget), []).append(row)
            print(f"# {what} {budget} day {day}: {row}", file=sys.stderr, flush=True)
    load_after = os.getloadavg()
    print(
        f"`{args.scenario}`, days {args.days}; load average {load_before[0]:.1f} before, "
        f"{load_after[0]:.1f} after (shared machine: compare within this table)\n"
    )
    print("| solver | budget | cost/delivered | on-time (%) | cost per day | wall s per day |")
    print("|---|---|---|---|---|---|")
    for (what, budget), rs in rows.items():

        def mean(key: str, rs: list[dict[str, float]] = rs) -> float:
            return statistics.fmean(r[key] for r in rs)

        label = f"{budget[1:]} s" if budget.startswith("t") else f"{budget} iterations"
        per = f"{mean('per'):.2f}" if what == "reopt" else "-"
        on_time = f"{100 * mean('on_time'):.1f}" if what == "reopt" else "-"
        print(f"| {what} | {label} | {per} | {on_time} | {mean('cost'):.0f} | {mean('wall'):.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
