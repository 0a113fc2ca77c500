"""The full-information hindsight reference, priced in the simulator's units."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from agents.base import run_episode
from agents.heuristics.reopt import ReoptPolicy
from agents.heuristics.rules import InsertionPolicy
from agents.hindsight import hindsight_bound, price_trip, split_trips
from lastmile_env.config import load_scenario
from lastmile_env.sim import ServiceOption, Simulator, Stop, StopKind, evaluate_plan, world_for
from tests.conftest import fixed_orders
from tests.test_vehicle_modes import MIXED

ITERS = 500  # an iteration limit keeps the tests fast and reproducible (a time limit depends on the machine)


def day(world, generator):
    """The orders of a day as a finished simulator holds them (no decisions needed here)."""
    return Simulator(world, seed=0, generator=generator).orders


def test_two_orders_down_the_street_share_one_trip(tiny_world):
    world = tiny_world()
    orders = day(
        world,
        fixed_orders(
            {"arrival_min": 0.0, "ready_min": 5.0, "node": "A", "due_min": 60.0},
            {"arrival_min": 0.0, "ready_min": 5.0, "node": "B", "due_min": 60.0},
        ),
    )
    result = hindsight_bound(world, orders, max_iterations=ITERS)
    # Leave at 5 (both parcels ready), load 5 -> 7, D->A 2 min -> 9, serve -> 11, A->B -> 13, serve -> 15,
    # B->D 4 min -> 19: 4 km + 14 driver minutes = 18 (two trips would cost 9 + 15, rejecting 10 each).
    assert result.cost == pytest.approx(18.0)
    assert result.distance_km == pytest.approx(4.0)
    assert result.driver_time_cost == pytest.approx(14.0)
    assert result.lateness_cost == 0.0 and result.rejection_cost == 0.0
    assert (result.n_served, result.n_dropped, result.n_on_time) == (2, 0, 2)
    assert result.trip_starts_min == [[5.0]]
    assert result.routes == [
        [[Stop(StopKind.PICKUP, 0, 0), Stop(StopKind.PICKUP, 1, 0), Stop(StopKind.DELIVERY, 0, 1),
          Stop(StopKind.DELIVERY, 1, 2)]]
    ]  # fmt: skip
    assert not result.proven_optimal


def test_an_order_dearer_than_its_rejection_is_dropped(tiny_world):
    world = tiny_world()
    orders = day(
        world,
        fixed_orders(
            {"arrival_min": 0.0, "ready_min": 5.0, "node": "A", "due_min": 60.0},
            # B on a trip of its own: 4 km + (1 + 4 + 2 + 4) minutes = 15 > the rejection penalty of 10.
            {"arrival_min": 0.0, "ready_min": 100.0, "node": "B", "due_min": 200.0},
        ),
    )
    result = hindsight_bound(world, orders, max_iterations=ITERS)
    # A: leave at 5, load -> 6, drive -> 8, serve -> 10, back at 12: 2 km + 7 minutes = 9.
    assert result.cost == pytest.approx(9.0 + 10.0)
    assert (result.n_served, result.n_dropped, result.n_on_time) == (1, 1, 1)
    assert result.on_time_rate == pytest.approx(0.5)
    assert result.rejection_cost == pytest.approx(10.0)
    assert result.trip_starts_min == [[5.0]]


def test_trips_are_priced_apart_so_idle_time_at_the_center_is_free(tiny_world):
    world = tiny_world()
    orders = day(
        world,
        fixed_orders(
            {"arrival_min": 0.0, "ready_min": 5.0, "node": "A", "due_min": 60.0},
            {"arrival_min": 0.0, "ready_min": 200.0, "node": "A", "due_min": 300.0},
        ),
    )
    van = world.make_vehicles()[0]
    route = [Stop(StopKind.PICKUP, 0, 0), Stop(StopKind.DELIVERY, 0, 1)]
    route += [Stop(StopKind.PICKUP, 1, 0), Stop(StopKind.DELIVERY, 1, 1)]
    trips = split_trips(van, route, orders)
    assert trips == [route[:2], route[2:]]
    first = price_trip(world, orders, van, trips[0], 0.0)
    second = price_trip(world, orders, van, trips[1], first.end_min)
    # Each: leave when the parcel is ready, 2 km + (1 + 2 + 2 + 2) minutes = 9; no charge from 12 to 200.
    assert (first.frees_min[0], first.cost) == pytest.approx((5.0, 9.0))
    assert (second.frees_min[0], second.cost) == pytest.approx((200.0, 9.0))


def test_a_window_delays_the_trip_instead_of_waiting_at_the_door(tiny_world):
    world = tiny_world()
    orders = day(
        world,
        fixed_orders(
            {"arrival_min": 0.0, "ready_min": 5.0, "node": "A", "earliest_min": 50.0, "due_min": 80.0}
        ),
    )
    result = hindsight_bound(world, orders, max_iterations=ITERS)
    # Leave at 47 (load -> 48, drive 2 min), serve at 50 -> 52, back at 54: 2 km + 7 minutes.
    assert result.cost == pytest.approx(9.0)
    assert result.trip_starts_min[0][0] == pytest.approx(47.0)


def with_returns(generator, *returns):
    """The generator's orders, those numbered in ``returns`` turned into returns: collected at their node in
    ``[ready_min, due_min]`` and brought back to the center."""

    def generate(world, rng):
        orders = generator(world, rng)
        for i in returns:
            o = orders[i]
            o.is_return, o.option, o.center, o.loc = True, ServiceOption.WINDOW, o.loc, o.center
            o.earliest_min = o.ready_min
        return orders

    return generate


def test_a_return_is_collected_on_the_way_back(tiny_world):
    world = tiny_world()
    orders = day(
        world,
        with_returns(
            fixed_orders(
                {"arrival_min": 0.0, "ready_min": 5.0, "node": "B", "due_min": 12.0},
                {"arrival_min": 0.0, "ready_min": 10.0, "node": "A", "due_min": 40.0},
            ),
            1,
        ),
    )
    result = hindsight_bound(world, orders, max_iterations=ITERS)
    # Leave at 5, load -> 6, D->B 10, serve -> 12, B->A 14, collect -> 16, A->D 18, unload -> 19:
    # 4 km + 14 driver minutes (collecting first, the parcel for B would be late).
    assert result.cost == pytest.approx(18.0)
    assert (result.n_served, result.n_dropped, result.n_on_time) == (2, 0, 2)
    assert result.routes == [
        [[Stop(StopKind.PICKUP, 0, 0), Stop(StopKind.DELIVERY, 0, 2), Stop(StopKind.PICKUP, 1, 1),
          Stop(StopKind.DELIVERY, 1, 0)]]
    ]  # fmt: skip
    van = world.make_vehicles()[0]
    plan = evaluate_plan(world, orders, van, result.routes[0][0], result.trip_starts_min[0][0], 0, 0)
    assert plan.feasible and plan.cost == pytest.approx(result.cost)


def test_a_lone_return_leaves_when_it_must(tiny_world):
    world = tiny_world()
    orders = day(
        world,
        with_returns(fixed_orders({"arrival_min": 0.0, "ready_min": 30.0, "node": "A", "due_min": 60.0}), 0),
    )
    result = hindsight_bound(world, orders, max_iterations=ITERS)
    # Leave at 28, D->A 30, collect -> 32, A->D 34, unload -> 35: 2 km + 7 minutes.
    assert result.cost == pytest.approx(9.0)
    assert result.trip_starts_min == [[28.0]]
    assert result.routes == [[[Stop(StopKind.PICKUP, 0, 1), Stop(StopKind.DELIVERY, 0, 0)]]]
    assert result.n_on_time == 1


@pytest.mark.parametrize(
    "overrides",
    [{}, {"orders.returns_share": 0.3}, MIXED, dict(MIXED, **{"orders.returns_share": 0.3})],
    ids=["vans", "returns", "modes", "modes+returns"],
)
def test_routes_are_feasible_and_priced_by_the_simulator(overrides):
    world = world_for(load_scenario("small", overrides))
    penalty = world.config.costs.reject_penalty
    for seed in (0, 1):
        orders = Simulator(world, seed).orders
        assert any(o.is_return for o in orders) == ("orders.returns_share" in overrides)
        result = hindsight_bound(world, orders, max_iterations=ITERS, seed=seed)
        stops = Counter((s.order, s.kind) for trips in result.routes for trip in trips for s in trip)
        served = {order for order, _ in stops}
        assert all(count == 1 for count in stops.values())
        assert all(stops[(o, StopKind.PICKUP)] == stops[(o, StopKind.DELIVERY)] == 1 for o in served)
        assert len(served) == result.n_served == len(orders) - result.n_dropped
        total, on_time = 0.0, 0
        for v, trips, starts in zip(
            world.make_vehicles(), result.routes, result.trip_starts_min, strict=True
        ):
            end = 0.0
            for trip, start in zip(trips, starts, strict=True):
                assert start >= end - 1e-9  # trips do not overlap (a drone's recharge included)
                assert split_trips(v, trip, orders) == [trip]
                plan = evaluate_plan(world, orders, v, trip, start, v.home, 0)
                assert plan.feasible and plan.in_range  # capacity, shift end, a drone's battery range
                seen = set()
                for s in trip:  # each pickup before its delivery, in the same trip
                    assert (s.kind == StopKind.PICKUP) != (s.order in seen)
                    seen.add(s.order)
                total += plan.cost
                for m, s in enumerate(trip):
                    order = orders[s.order]
                    place = order.center if s.kind == StopKind.PICKUP else order.loc
                    assert s.loc == place  # a return: collected at its address, dropped at its center
                    if (s.kind == StopKind.DELIVERY) != order.is_return:  # the customer's stop
                        on_time += plan.starts_min[m] <= order.due_min + 1e-9
                end = plan.end_min + (v.recharge_min if plan.dist_km > 0 else 0.0)
        assert result.cost == pytest.approx(total + result.n_dropped * penalty)
        assert result.n_on_time == on_time
        parts = result.distance_cost + result.driver_time_cost
        assert result.cost == pytest.approx(parts + result.lateness_cost + result.rejection_cost)


def test_report_policies_against_hindsight_on_small(capsys):
    """Reported, not asserted: a heuristic bound, so a policy may come out below it."""
    world = world_for(load_scenario("small"))
    lines = []
    for seed in (0, 1, 2):
        bound = hindsight_bound(world, Simulator(world, seed).orders, max_iterations=ITERS)
        assert math.isfinite(bound.cost) and bound.cost > 0
        for policy in (InsertionPolicy(), ReoptPolicy(max_iterations=300)):
            cost = run_episode(Simulator(world, seed), policy, seed).summary()["cost"]
            gap = (cost - bound.cost) / bound.cost
            lines.append(
                f"small seed {seed}: {policy.name} {cost:.1f} vs hindsight {bound.cost:.1f} ({gap:+.1%})"
            )
    with capsys.disabled():
        print("\n" + "\n".join(lines))


def test_deterministic_for_a_seed_with_an_iteration_limit():
    world = world_for(load_scenario("small"))
    orders = Simulator(world, 4).orders
    first = hindsight_bound(world, orders, seed=3, max_iterations=ITERS)
    again = hindsight_bound(world, orders, seed=3, max_iterations=ITERS)
    assert (first.cost, first.routes) == (again.cost, again.routes)
