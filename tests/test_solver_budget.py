"""Solver budgets: iterations by default (reproducible), wall-clock seconds only when asked, and the
``name:key=value`` policy specs that set them."""

from __future__ import annotations

import pytest
from pyvrp.stop import MaxIterations, MaxRuntime

from agents.heuristics import make_heuristic
from agents.heuristics.reopt import REOPT_ITERATIONS, ReoptPolicy
from agents.routing import ROUTE_REOPT_ITERATIONS, make_routing_heuristic
from lastmile_env.solver_budget import SolverBudget


def test_default_budgets_are_iterations():
    assert ReoptPolicy().budget == SolverBudget(max_iterations=REOPT_ITERATIONS)
    assert make_routing_heuristic("reopt_route").budget == SolverBudget(max_iterations=ROUTE_REOPT_ITERATIONS)
    assert ReoptPolicy().budget.deterministic
    assert isinstance(ReoptPolicy().budget.criterion(), MaxIterations)


def test_a_time_limit_is_an_option_and_says_so():
    budget = ReoptPolicy(time_limit_s=0.5).budget
    assert not budget.deterministic
    assert isinstance(budget.criterion(), MaxRuntime)
    assert budget.describe().startswith("0.5 s wall-clock")
    assert SolverBudget(max_iterations=500).describe() == "500 iterations"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_iterations": 10, "time_limit_s": 1.0}, "not both"),
        ({"max_iterations": 0}, "iterations must be >= 1"),
        ({"time_limit_s": 0.0}, "time limit must be > 0"),
        ({"time_limit_s": float("nan")}, "time limit must be > 0"),
    ],
)
def test_bad_budgets_fail_with_one_line(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ReoptPolicy(**kwargs)


def test_specs_set_the_budget_and_the_interval():
    policy = make_heuristic("reopt:time=0.5:interval=15")
    assert isinstance(policy, ReoptPolicy)
    assert policy.budget == SolverBudget(time_limit_s=0.5) and policy.interval_min == 15.0
    assert make_heuristic("reopt_myopic:iterations=7").budget == SolverBudget(max_iterations=7)
    assert make_routing_heuristic("reopt_route:time=0.1").budget == SolverBudget(time_limit_s=0.1)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("reopt:speed=3", "bad option 'speed=3'; reopt takes iterations=..., time=..., interval=..."),
        ("reopt:time", "bad option 'time'"),
        ("reopt:iterations=lots", "iterations must be an integer, got 'lots'"),
        ("insertion:time=1", "insertion takes none"),
        ("reopt:time=-1", "time limit must be > 0"),
        ("nope", "unknown policy 'nope'"),
    ],
)
def test_bad_specs_fail_with_one_line(spec, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        make_heuristic(spec)
