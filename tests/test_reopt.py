"""ReoptPolicy: PyVRP re-optimization that the simulator prices before anything changes."""

from __future__ import annotations

import math

import pytest

from agents.base import REJECT, apply, run_episode
from agents.heuristics.reopt import ReoptPolicy
from lastmile_env.config import load_scenario
from lastmile_env.sim import (
    AppendInsertion,
    OrderStatus,
    ServiceOption,
    Simulator,
    Stop,
    StopKind,
    world_for,
)
from lastmile_env.vrp_travel import mean_congestion
from tests.conftest import fixed_orders

ITERS = 300  # an iteration limit keeps the tests fast and reproducible (a time limit depends on the machine)


def test_merges_appended_trips_into_one_with_the_hand_computed_cost(tiny_world):
    # Three parcels ready at 10 (B, A, B), appended one trip each; a fourth order arrives at 1.
    orders = fixed_orders(
        {"arrival_min": 0.0, "ready_min": 10.0, "node": "B", "due_min": 100.0},
        {"arrival_min": 0.1, "ready_min": 10.0, "node": "A", "due_min": 100.0},
        {"arrival_min": 0.2, "ready_min": 10.0, "node": "B", "due_min": 100.0},
        {"arrival_min": 1.0, "ready_min": 10.0, "node": "A", "due_min": 100.0},
    )
    sim = Simulator(tiny_world(), seed=0, generator=orders, insertion=AppendInsertion(), debug=True)
    for _ in range(3):
        sim.advance()
        sim.assign(0)
    assert sim.advance().id == 3
    # The van loads parcel 0 (free at 11, at D, 1 on board), then: D->B->D, load 1, D->A->D, load 2,
    # D->B->D: 10 km and back at 39, so 10 + 28 = 38.
    assert sim.plan(0).cost == pytest.approx(38.0)
    before = sim.expected_cost
    policy = ReoptPolicy(max_iterations=ITERS)
    policy.reset(0)
    delta = policy.reoptimize(sim)
    # One trip: load 1 and 2 (11 -> 13), deliver A and both B, back at 27: 4 km + 16 min = 20.
    assert sim.plan(0).cost == pytest.approx(20.0)
    assert delta == pytest.approx(-18.0)
    assert sim.expected_cost == pytest.approx(before - 18.0)
    kinds = [s.kind for s in sim.vehicles[0].route]
    assert kinds == [StopKind.PICKUP, StopKind.PICKUP] + [StopKind.DELIVERY] * 3
    assert policy.records[-1].applied
    sim.reject()
    while sim.advance() is not None:
        sim.reject()
    assert sim.summary()["delivered"] == 3


def test_keeps_the_plan_when_the_proposal_is_not_cheaper(tiny_world):
    orders = fixed_orders(
        {"arrival_min": 0.0, "ready_min": 10.0, "node": "B", "due_min": 100.0},
        {"arrival_min": 1.0, "ready_min": 10.0, "node": "A", "due_min": 100.0},
    )
    sim = Simulator(tiny_world(), seed=0, generator=orders, debug=True)
    sim.advance()
    sim.assign(0)
    sim.advance()
    sim.assign(0)  # cheapest insertion already plans one trip, the best there is
    route = list(sim.vehicles[0].route)
    policy = ReoptPolicy(max_iterations=ITERS)
    policy.reset(0)
    assert policy.reoptimize(sim) == 0.0
    assert sim.vehicles[0].route == route
    assert not policy.records[-1].applied


def test_small_episode_holds_every_invariant_and_never_raises_the_expected_cost():
    world = world_for(load_scenario("small"))
    applied = 0
    for seed in (0, 1):
        sim = Simulator(world, seed, debug=True)  # checks the invariants after every step
        policy = ReoptPolicy(max_iterations=ITERS)
        policy.reset(seed)
        while sim.advance() is not None:
            before = sim.expected_cost
            n_records = len(policy.records)
            decision = policy.act(sim)
            after = sim.expected_cost
            if len(policy.records) > n_records:
                record = policy.records[-1]
                if record.applied:
                    assert record.new_cost < record.old_cost
                    assert after - before == pytest.approx(record.new_cost - record.old_cost)
                    applied += 1
                else:
                    assert after == before
            else:
                assert after == before
            apply(sim, decision)
        assert all(o.status in (OrderStatus.DELIVERED, OrderStatus.REJECTED) for o in sim.orders)
    assert applied > 0


def test_deterministic_for_a_seed():
    world = world_for(load_scenario("small"))

    def play(seed: int) -> tuple:
        policy = ReoptPolicy(max_iterations=ITERS)
        sim = run_episode(Simulator(world, 3), policy, seed)
        return (
            sim.summary()["cost"],
            tuple(sim.events),
            tuple((r.old_cost, r.new_cost) for r in policy.records),
        )

    assert play(5) == play(5)


def test_rejects_like_insertion_when_no_vehicle_can_take_the_order(tiny_world):
    orders = fixed_orders({"arrival_min": 0.0, "node": "B", "due_min": 60.0, "size": 20})
    sim = Simulator(tiny_world(capacity=10), seed=0, generator=orders)
    sim.advance()
    assert ReoptPolicy(max_iterations=ITERS).act(sim) == REJECT


def test_mean_congestion_weights_hours_by_time():
    world = world_for(load_scenario("default"))  # shift starts at 8: hours 8, 9 have 1.5, 1.3
    assert mean_congestion(world, 0.0, 60.0) == pytest.approx(1.5)
    assert mean_congestion(world, 30.0, 90.0) == pytest.approx(1.4)
    assert mean_congestion(world, 0.0, 120.0) == pytest.approx(1.4)


def test_a_return_is_collected_in_its_window_and_brought_back_to_the_center(tiny_world):
    """A return at A in [30, 100] between two appended deliveries: one loop instead of two."""
    orders = fixed_orders(
        {"arrival_min": 0.0, "ready_min": 10.0, "node": "B", "due_min": 100.0},
        {"arrival_min": 0.1, "node": "A", "ready_min": 30.0, "earliest_min": 30.0, "due_min": 100.0},
        {"arrival_min": 1.0, "ready_min": 10.0, "node": "A", "due_min": 100.0},
    )

    def with_return(world, rng):
        day = orders(world, rng)
        ret = day[1]  # collected at A (its pickup place), dropped at the center D
        ret.is_return, ret.option, ret.center, ret.loc = True, ServiceOption.WINDOW, ret.loc, ret.center
        return day

    sim = Simulator(tiny_world(), seed=0, generator=with_return, insertion=AppendInsertion(), debug=True)
    for _ in range(3):
        sim.advance()
        sim.assign(0)
    # Loading parcel 0 till 11, then D->B 15..17, B->A 19, wait, collect 30..32, A->D 34, unload ..35,
    # load parcel 2 ..36, D->A 38..40, back at 42: 6 km + 31 minutes.
    assert sim.plan(0).cost == pytest.approx(37.0)
    policy = ReoptPolicy(max_iterations=ITERS)
    policy.reset(0)
    delta = policy.reoptimize(sim)
    # Load parcel 2 11..12, D->B 16..18, B->A 20..22, wait, collect 30..32, A->D 34, unload ..35: 4 km + 24.
    assert policy.records[-1].applied and delta == pytest.approx(-9.0)
    assert sim.plan(0).cost == pytest.approx(28.0)
    d, a, b = (sim.world.matrix.index_of(n) for n in "DAB")
    route = sim.vehicles[0].route  # B and A may come in either order: the same cost
    assert route[0] == Stop(StopKind.PICKUP, 2, d)
    assert set(route[1:3]) == {Stop(StopKind.DELIVERY, 0, b), Stop(StopKind.DELIVERY, 2, a)}
    assert route[3:] == [Stop(StopKind.PICKUP, 1, a), Stop(StopKind.DELIVERY, 1, d)]
    assert sim.advance() is None
    ret = sim.orders[1]
    assert ret.status == OrderStatus.DELIVERED and ret.on_time
    assert (ret.pickup_min, ret.pod_node, ret.delivered_min, ret.loc) == (30.0, a, 34.0, d)
    assert sim.cost().total == pytest.approx(sim.expected_cost)


def test_small_day_with_returns_holds_every_invariant():
    world = world_for(load_scenario("small", {"orders.returns_share": 0.3}))
    policy = ReoptPolicy(max_iterations=ITERS)
    sim = run_episode(Simulator(world, 2, debug=True), policy)
    s = sim.summary()
    assert s["returns"] > 0 and s["on_time_rate_return"] > 0.5
    assert any(r.applied for r in policy.records)
    assert all(r.new_cost < math.inf for r in policy.records)
