"""Cheapest insertion is exact: its branch and bound finds what brute force over every position pair finds."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lastmile_env import kernels
from lastmile_env.config import load_scenario
from lastmile_env.generators import default_generator
from lastmile_env.sim import Simulator, evaluate_plan, world_for
from lastmile_env.sim.insertion import TIE, Insertion, _order_array, price_insertion
from lastmile_env.sim.plan import FleetPlans, PlanEval, vehicle_params
from lastmile_env.sim.types import Order
from lastmile_env.sim.world import World


def brute_force(sim: Simulator, vehicle_id: int) -> tuple[float, tuple[int, int] | None]:
    """Cheapest feasible (delta, (i, j)) by pricing every pair with the reference schedule."""
    v, order = sim.vehicles[vehicle_id], sim.current
    start = sim.plan_start(vehicle_id)
    old = sim.plan(vehicle_id)
    best, best_ij = math.inf, None
    n = len(v.route)
    for i in range(n + 1):
        for j in range(i, n + 1):
            stops = Insertion(vehicle_id, i, j, 0.0, 0.0, 0.0).stops(v.route, order)
            plan = evaluate_plan(sim.world, sim.orders, v, stops, *start)
            if plan.feasible and plan.cost - old.cost < best - TIE:
                best, best_ij = plan.cost - old.cost, (i, j)
    return best, best_ij


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 1000), congested=st.booleans(), tight=st.booleans())
def test_branch_and_bound_matches_brute_force(seed, congested, tight):
    overrides = {
        "fleet.size": 2,
        "orders.rate_per_hour": 20,
        "fleet.types": [{"capacity": 6 if tight else 20, "speed_factor": 0.8}],
    }
    if congested:
        overrides["graph.congestion"] = [1.0] * 8 + [2.5, 0.6, 1.8, 1.0] + [1.3] * 12
    sim = Simulator(world_for(load_scenario("small", overrides)), seed=seed)
    rng = np.random.default_rng(seed)
    order, checked = sim.advance(), 0
    while order is not None:
        for vid in range(len(sim.vehicles)):
            expected, _ = brute_force(sim, vid)
            got = sim.insertion(vid)
            if expected == math.inf:
                assert got is None
            else:
                assert got is not None and got.delta_cost == pytest.approx(expected, abs=1e-7)
                # the kernel's numbers for its choice are the reference schedule's
                ref = price_insertion(sim, vid, sim.current, got.pickup_after, got.delivery_after)
                assert ref is not None
                assert (got.delta_cost, got.delta_dist_km, got.eta_min) == pytest.approx(
                    (ref.delta_cost, ref.delta_dist_km, ref.eta_min), abs=1e-7
                )
                checked += 1
        feasible = [v for v in range(len(sim.vehicles)) if sim.insertion(v) is not None]
        if feasible and rng.uniform() < 0.9:
            sim.assign(int(rng.choice(feasible)))
        else:
            sim.reject()
        order = sim.advance()
    assert checked > 0


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 1000), congested=st.booleans(), windows=st.booleans())
def test_insertion_bounds_never_exceed_the_exact_cost(seed, congested, windows):
    """The search prunes by ``kernels.insertion_bounds``: every feasible pair (the reference schedule's) is
    bounded, by at most its exact added cost, in congestion and with time windows."""
    overrides = {"fleet.size": 2, "orders.rate_per_hour": 20, "orders.window_share": 0.6 if windows else 0.0}
    if congested:
        overrides["graph.congestion"] = [1.0] * 8 + [2.5, 0.6, 1.8, 1.0] + [1.3] * 12
    sim = Simulator(world_for(load_scenario("small", overrides)), seed=seed)
    world = sim.world
    rng = np.random.default_rng(seed)
    order, checked = sim.advance(), 0
    while order is not None:
        for vid in range(len(sim.vehicles)):
            old = sim.plan(vid)
            if not old.feasible:
                continue
            vehicle = sim.vehicles[vid]
            params = vehicle_params(vehicle)
            mode = vehicle.mode
            k = len(vehicle.route)
            n_pairs = (k + 1) * (k + 2) // 2
            lower = np.empty(n_pairs)
            pi, pj = np.empty(n_pairs, dtype=np.int64), np.empty(n_pairs, dtype=np.int64)
            per_ff = kernels.window_floor(
                world.mode_mults[mode], world.config.shift_start_hour, old.frees_min[0], vehicle.shift_end_min
            ) / vehicle.speed_factor  # fmt: skip
            summary = np.array([old.cost, old.dist_km, old.end_min, old.late_cost, old.service_min])
            new = _order_array(sim, order)
            n = kernels.insertion_bounds(
                world.time_modes[mode], world.dist_modes[mode], world.mode_mults[mode],
                world.config.shift_start_hour, params, np.array(world.late_costs), old.nodes,
                old.stop_open_min, old.stop_due_min, old.stop_service_min, old.frees_min, old.loads,
                old.cum_late_cost, summary, new, per_ff, lower, pi, pj, np.empty((kernels.WORK_ROWS, k + 2)),
            )  # fmt: skip
            bounds = {(int(pi[r]), int(pj[r])): lower[r] for r in range(n)}
            for i in range(k + 1):
                for j in range(i, k + 1):
                    exact = price_insertion(sim, vid, order, i, j)
                    if exact is not None:  # feasible: never left out, never over-bounded
                        assert bounds[i, j] <= exact.delta_cost + 1e-9, (i, j)
                        checked += 1
        feasible = [v for v in range(len(sim.vehicles)) if sim.insertion(v) is not None]
        if feasible and rng.uniform() < 0.9:
            sim.assign(int(rng.choice(feasible)))
        else:
            sim.reject()
        order = sim.advance()
    assert checked > 0


def _row_is_plan(rows: FleetPlans, vid: int, plan: PlanEval) -> bool:
    """A packed row holds the plan bit for bit: its stops' arrays and its schedule."""
    k = int(rows.counts[vid])
    pairs = [
        (rows.nodes[vid, : k + 2], plan.nodes),
        (rows.open_min[vid, :k], plan.stop_open_min),
        (rows.due_min[vid, :k], plan.stop_due_min),
        (rows.service_min[vid, :k], plan.stop_service_min),
        (rows.load_delta[vid, :k], plan.stop_load_delta),
        (rows.free[vid, : k + 1], plan.frees_min),
        (rows.loads[vid, : k + 1], plan.loads),
        (rows.cum_dist[vid, : k + 1], plan.cum_dist_km),
        (rows.cum_late[vid, : k + 1], plan.cum_late_cost),
        (
            rows.summary[vid],
            np.array([plan.cost, plan.dist_km, plan.end_min, plan.late_cost, plan.service_min]),
        ),
    ]
    same = all(a.dtype == b.dtype and a.tobytes() == b.tobytes() for a, b in pairs)
    return same and bool(rows.feasible[vid]) == plan.feasible


@pytest.mark.parametrize(
    ("scenario", "overrides"),
    [
        ("small", {}),
        ("hetero_fleet", {}),  # bikes and drones (battery range and recharges)
        ("small", {"fleet.size": 2, "fleet.types": [{"capacity": 40}], "orders.rate_per_hour": 40}),
    ],
)
def test_assign_commits_the_plan_that_pricing_gives(scenario, overrides):
    """``assign`` schedules the searched plan in the packed row (``FleetPlans.insert``) instead of pricing
    it again: the row then holds, bit for bit, what ``evaluate_plan`` gives for the new route, and the cost
    change and the promised ETA are that plan's. The third case fills a long plan past the rows' room (the
    rows grow in place, ``FleetPlans._grow``, and keep what they held)."""
    sim = Simulator(world_for(load_scenario(scenario, overrides)), seed=3)
    rng = np.random.default_rng(3)
    order, longest, checked = sim.advance(), 0, 0
    while order is not None:
        feasible = np.flatnonzero(sim.feasible_vehicles())
        if feasible.size:
            vid = int(rng.choice(feasible))
            v = sim.vehicles[vid]
            ins = sim.insertion(vid)
            assert ins is not None
            old_cost, route = sim.price(vid, v.route).cost, ins.stops(v.route, order)
            expected = sim.price(vid, route)
            served = ins.pickup_after if order.is_return else ins.delivery_after + 1
            delta = sim.assign(vid)
            assert delta == expected.cost - old_cost
            assert order.promised_eta_min == expected.starts_min[served]
            longest = max(longest, len(route))
            rows = sim.fleet_plans
            if v.route == route and rows._routes[vid] == route:  # not left yet, the row not rebuilt
                checked += 1
                assert not rows.dirty[vid] and _row_is_plan(rows, vid, expected)
        else:
            sim.reject()
        order = sim.advance()
    assert checked > 10
    if "fleet.size" in overrides:
        assert longest > 8  # past the packed rows' first room (8 stops): the rows grew


def test_grown_rows_have_the_shapes_of_rows_allocated_that_long() -> None:
    """``FleetPlans._grow`` lists the arrays sized by the rows' capacity apart from ``_alloc``, which sizes
    them: an array added to one and not the other would be left short (the kernels read past it unchecked)."""
    grown, fresh = FleetPlans(), FleetPlans()
    grown._alloc(3, 8)
    grown.nodes[:] = np.arange(30).reshape(3, 10)
    grown._grow(20)
    fresh._alloc(3, 20)
    arrays = {name: value for name, value in vars(fresh).items() if isinstance(value, np.ndarray)}
    assert "nodes" in arrays and "counts" in arrays  # the stacks and their named views
    for name, value in arrays.items():
        assert getattr(grown, name).shape == value.shape, name
    assert (grown.nodes[:, :10] == np.arange(30).reshape(3, 10)).all() and not grown.nodes[:, 10:].any()


def test_a_returns_search_prices_the_plan_it_commits() -> None:
    """A return is unloaded at its center with no window (``stop_values``): the search must not make it wait
    there for the customer's window start, even where that start is after the collection opens."""
    world = world_for(load_scenario("small", {"orders.returns_share": 0.5}))
    inner = default_generator(world)

    def late_windows(world: World, rng: np.random.Generator) -> list[Order]:
        orders = inner(world, rng)
        for o in orders:
            if o.is_return:
                o.earliest_min = o.ready_min + 300.0  # not the collection's window: it has no say here
        return orders

    sim = Simulator(world, seed=5, generator=late_windows)
    rng = np.random.default_rng(5)
    order, checked = sim.advance(), 0
    while order is not None:
        feasible = np.flatnonzero(sim.feasible_vehicles())
        if feasible.size:
            vid = int(rng.choice(feasible))
            ins = sim.insertion(vid)
            assert ins is not None
            route = sim.vehicles[vid].route
            expected = sim.price(vid, ins.stops(route, order)).cost - sim.price(vid, route).cost
            assert ins.delta_cost == pytest.approx(expected, rel=1e-12, abs=1e-9)
            checked += order.is_return
            sim.assign(vid)
        else:
            sim.reject()
        order = sim.advance()
    assert checked > 5
