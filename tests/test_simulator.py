"""Simulator behaviour on the hand-made line world (D - A - B, 1 km blocks, 2 min/km), computed by hand."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

from lastmile_env.sim import (
    AppendInsertion,
    InfeasibleAssignment,
    InvariantError,
    OrderStatus,
    SimulationError,
    Simulator,
    StopKind,
    check_invariants,
)
from tests.conftest import fixed_orders

# Order 0: arrives at 0, ready at 5, to B, due 60. Order 1: arrives at 7, ready at 10, to A, due 27.
TWO_ORDERS = fixed_orders(
    {"arrival_min": 0.0, "ready_min": 5.0, "node": "B", "due_min": 60.0},
    {"arrival_min": 7.0, "ready_min": 10.0, "node": "A", "due_min": 27.0},
)


def test_golden_insertion_costs_times_and_final_cost(tiny_world):
    sim = Simulator(tiny_world(), seed=0, generator=TWO_ORDERS, debug=True)
    assert sim.advance().id == 0
    # Pickup at D: wait for ready at 5, load 1 min -> 6; D->B 2 km = 4 min -> deliver at 10, free 12;
    # back B->D 4 min -> 16. Cost 4 km x 1 + 16 min x 1 = 20.
    ins = sim.insertion(0)
    assert ins.delta_cost == pytest.approx(20.0)
    assert ins.eta_min == pytest.approx(10.0)
    assert ins.delta_dist_km == pytest.approx(4.0)
    assert sim.assign(0) == pytest.approx(20.0)

    order = sim.advance()
    assert order.id == 1 and sim.now == 7.0
    # The van is committed to delivering at B (free at 12). Old plan: B->D, 2 km + 4 min = 6.
    # New plan: B->D 16, load till 17, D->A 19 (ETA), serve till 21, A->D 23: 4 km + 11 min = 15. Delta 9.
    ins = sim.insertion(0)
    assert ins.delta_cost == pytest.approx(9.0)
    assert ins.eta_min == pytest.approx(19.0)
    assert ins.on_time(order)
    sim.assign(0)
    assert sim.advance() is None and sim.done

    o0, o1 = sim.orders
    assert (o0.pickup_min, o0.delivered_min, o1.pickup_min, o1.delivered_min) == (5.0, 10.0, 16.0, 19.0)
    assert o0.on_time and o1.on_time and o1.eta_error_min == 0.0
    cost = sim.cost()
    assert cost.distance == pytest.approx(6.0)  # 0 + 2 + 2 + 1 + 1 km
    assert cost.driver_time == pytest.approx(23.0)  # on duty from 0 to 23
    assert cost.total == pytest.approx(29.0) == pytest.approx(sim.expected_cost)
    s = sim.summary()
    assert s["on_time_rate"] == 1.0 and s["delivered"] == 2 and s["cost_per_delivered"] == pytest.approx(14.5)
    assert sim.vehicles[0].idle and sim.vehicles[0].node == sim.vehicles[0].home


def test_golden_lateness_and_second_vehicle(tiny_world):
    late = fixed_orders(
        {"arrival_min": 0.0, "ready_min": 5.0, "node": "B", "due_min": 60.0},
        {"arrival_min": 7.0, "ready_min": 10.0, "node": "A", "due_min": 18.0},
    )
    sim = Simulator(tiny_world(n_vehicles=2), seed=0, generator=late, debug=True)
    sim.advance()
    sim.assign(0)
    sim.advance()
    # Van 0 delivers at 19, one minute late: 9 + (2 + 1 x 1) = 12.
    assert sim.insertion(0).delta_cost == pytest.approx(12.0)
    assert not sim.insertion(0).on_time(sim.current)
    # Idle van 1 at D from 7: wait for ready 10, load till 11, D->A 13 (on time), serve 15, back 17:
    # 2 km + 10 min = 12 as well; on time.
    assert sim.insertion(1).delta_cost == pytest.approx(12.0)
    assert sim.insertion(1).eta_min == pytest.approx(13.0)
    sim.assign(0)
    sim.advance()
    assert sim.orders[1].late_min == pytest.approx(1.0)
    assert sim.cost().lateness == pytest.approx(3.0)
    assert sim.summary()["late"] == 1


def test_cheapest_insertion_uses_the_route_and_beats_append(tiny_world):
    # Two parcels both ready at 0: the van takes both on one trip (D, D, A, B) rather than two trips.
    orders = fixed_orders(
        {"arrival_min": 0.0, "node": "B", "due_min": 100.0},
        {"arrival_min": 0.0, "node": "A", "due_min": 100.0},
    )
    for rule, expected_kinds in (
        (None, [StopKind.PICKUP, StopKind.DELIVERY, StopKind.DELIVERY]),
        (AppendInsertion(), [StopKind.DELIVERY, StopKind.PICKUP, StopKind.DELIVERY]),
    ):
        sim = Simulator(tiny_world(), seed=0, generator=orders, insertion=rule, debug=True)
        sim.advance()
        sim.assign(0)  # van starts: pickup of order 0 under way, delivery planned
        sim.advance()
        ins = sim.insertion(0)
        assert [s.kind for s in ins.stops(sim.vehicles[0].route, sim.current)] == expected_kinds
    # Cheapest: pickup right after the current pickup, deliver A on the way to B: no extra km.
    sim = Simulator(tiny_world(), seed=0, generator=orders, debug=True)
    sim.advance()
    sim.assign(0)
    sim.advance()
    assert sim.insertion(0).delta_dist_km == pytest.approx(0.0)


def test_capacity_makes_a_vehicle_infeasible(tiny_world):
    orders = fixed_orders(
        {"arrival_min": 0.0, "node": "B", "due_min": 100.0, "size": 3},
        {"arrival_min": 0.5, "node": "A", "due_min": 100.0, "size": 4},
    )
    sim = Simulator(tiny_world(capacity=5), seed=0, generator=orders, debug=True)
    sim.advance()
    sim.assign(0)
    sim.advance()
    # 3 loaded by 1 and on board until B; 4 more only fit after order 0 is delivered: a second trip.
    ins = sim.insertion(0)
    assert ins is not None and [s.order for s in ins.stops(sim.vehicles[0].route, sim.current)] == [0, 1, 1]
    sim.assign(0)
    assert max(sim.plan(0).loads) <= 5
    big = fixed_orders({"arrival_min": 0.0, "node": "B", "due_min": 100.0, "size": 6})
    sim = Simulator(tiny_world(capacity=5), seed=0, generator=big)
    sim.advance()
    assert sim.insertion(0) is None
    with pytest.raises(InfeasibleAssignment, match="cannot take order 0"):
        sim.assign(0)
    assert sim.reject() == 10.0
    assert sim.advance() is None
    assert sim.orders[0].status == OrderStatus.REJECTED and sim.cost().total == 10.0


def test_driving_out_of_order_raises(tiny_world):
    sim = Simulator(tiny_world(), seed=0, generator=TWO_ORDERS)
    with pytest.raises(SimulationError, match="no order is pending"):
        sim.reject()
    sim.advance()
    with pytest.raises(SimulationError, match="pending"):
        sim.advance()
    with pytest.raises(InfeasibleAssignment, match="does not exist"):
        sim.assign(5)


def test_shift_end_is_a_hard_limit(tiny_world):
    # Arrives at 590: pickup at 591, deliver B at 595.. back at 601 > shift end 600.
    orders = fixed_orders({"arrival_min": 590.0, "node": "B", "due_min": 700.0})
    sim = Simulator(tiny_world(), seed=0, generator=orders)
    sim.advance()
    assert sim.insertion(0) is None
    near = fixed_orders({"arrival_min": 580.0, "node": "A", "due_min": 700.0})
    sim = Simulator(tiny_world(), seed=0, generator=near)
    sim.advance()
    sim.assign(0)
    assert sim.plan(0).end_min == pytest.approx(580 + 1 + 2 + 2 + 2)


def test_event_log_tells_the_story(tiny_world):
    sim = Simulator(tiny_world(), seed=0, generator=TWO_ORDERS)
    sim.advance()
    sim.assign(0)
    sim.advance()
    sim.assign(0)
    sim.advance()
    kinds = [(e.kind, e.order) for e in sim.events]
    assert kinds[:2] == [("arrival", 0), ("dispatch", 0)]
    assert ("pickup", 0) in kinds and ("delivery", 1) in kinds and kinds[-1] == ("vehicle_idle", -1)
    times = [e.time_min for e in sim.events]
    assert times == sorted(times)
    check_invariants(sim)
    assert not math.isnan(sim.orders[1].promised_eta_min)


def test_deferred_orders_come_back_at_the_tick_oldest_first(tiny_world):
    orders = fixed_orders(
        {"arrival_min": 1.0, "node": "B", "due_min": 100.0},
        {"arrival_min": 2.0, "node": "A", "due_min": 100.0},
        {"arrival_min": 20.0, "node": "A", "due_min": 100.0},
    )
    sim = Simulator(tiny_world(), seed=0, generator=orders, debug=True)
    sim.advance()
    assert sim.can_defer() and sim.defer() == 0.0
    sim.advance()
    sim.defer()
    assert sim.n_open == 0 and [o.id for o in sim.deferred] == [0, 1]
    # Tick at 15 (tick_min 15): both come back, oldest first; a batch policy may switch.
    order = sim.advance()
    assert (order.id, sim.now, [o.id for o in sim.pending]) == (0, 15.0, [0, 1])
    sim.prioritize(1)
    assert sim.current.id == 1
    sim.assign(0)
    assert sim.advance().id == 0 and sim.now == 15.0
    sim.assign(0)
    assert sim.advance().id == 2
    sim.reject()
    assert sim.advance() is None
    assert [o.status for o in sim.orders] == [
        OrderStatus.DELIVERED,
        OrderStatus.DELIVERED,
        OrderStatus.REJECTED,
    ]
    with pytest.raises(SimulationError, match="not pending"):
        sim.prioritize(0)


def test_defer_is_limited_by_max_defer_min(tiny_world):
    orders = fixed_orders({"arrival_min": 1.0, "node": "B", "due_min": 100.0})
    sim = Simulator(tiny_world(), seed=0, generator=orders, debug=True)
    sim.advance()
    for tick in (15.0, 30.0, 45.0, 60.0):  # waits 59 min by the tick at 60: still allowed
        sim.defer()
        assert sim.advance().id == 0 and sim.now == tick
    assert not sim.can_defer()  # the tick at 75 is 74 min after arrival > 60
    with pytest.raises(SimulationError, match="max_defer_min"):
        sim.defer()


def test_replan_moves_orders_and_prices_the_change(tiny_world):
    orders = fixed_orders(
        {"arrival_min": 0.0, "ready_min": 30.0, "node": "B", "due_min": 200.0},
        {"arrival_min": 1.0, "ready_min": 30.0, "node": "A", "due_min": 200.0},
    )
    sim = Simulator(tiny_world(n_vehicles=2), seed=0, generator=orders, debug=True)
    sim.advance()
    sim.assign(0)
    sim.advance()
    sim.assign(0)
    stops = [sim.vehicles[0].current, *sim.vehicles[0].route]
    # Van 0 is committed to the pickup of order 0; order 1 moves to van 1.
    moved = [s for s in sim.vehicles[0].route if s.order == 1]
    kept = [s for s in sim.vehicles[0].route if s.order != 1]
    before = sim.expected_cost
    delta = sim.replan({0: kept, 1: moved})
    assert sim.orders[1].vehicle == 1 and sim.expected_cost == pytest.approx(before + delta)
    assert sim.vehicles[1].current is not None  # the idle van started
    with pytest.raises(SimulationError, match="exactly the planned stops"):
        sim.replan({0: []})
    with pytest.raises(SimulationError, match="order 0 delivered before its pickup"):
        # order 0's parcel is being collected by van 0: van 1 cannot deliver it
        sim.replan({0: [], 1: [*sim.vehicles[0].route, *sim.vehicles[1].route]})
    assert sim.advance() is None and sim.summary()["delivered"] == 2
    assert len(stops) == 4


def test_from_snapshot_continues_a_live_state(tiny_world):
    """A snapshot taken mid-run and rebuilt gives the same insertions as the running simulator."""
    import copy

    orders = fixed_orders(
        {"arrival_min": 0.0, "ready_min": 5.0, "node": "B", "due_min": 60.0},
        {"arrival_min": 7.0, "ready_min": 10.0, "node": "A", "due_min": 27.0},
    )
    world = tiny_world(n_vehicles=2)
    live = Simulator(world, seed=0, generator=orders)
    live.advance()
    live.assign(0)
    live.advance()
    snap = Simulator.from_snapshot(
        world, live.now, copy.deepcopy(live.orders), copy.deepcopy(live.vehicles), pending=1
    )
    for v in range(2):
        assert snap.insertion(v) == live.insertion(v)
    snap.assign(0)
    assert snap.advance() is None and snap.orders[1].delivered_min == pytest.approx(19.0)
    broken = copy.deepcopy(live.vehicles)
    broken[0].load = 99
    with pytest.raises(InvariantError, match="load 99"):
        Simulator.from_snapshot(world, live.now, copy.deepcopy(live.orders), broken, pending=1)
    with pytest.raises(SimulationError, match="not a pending order"):
        Simulator.from_snapshot(world, live.now, copy.deepcopy(live.orders), live.vehicles, pending=0)


def test_empty_plans_are_priced_once_per_alike_vehicle_and_start(tiny_world):
    """Idle vehicles alike in every parameter the kernels read share one pricing of their empty plan while
    the clock stands; a vehicle differing in one of them is priced on its own, and every plan is what
    ``evaluate_plan`` gives that vehicle."""
    from lastmile_env.sim.plan import evaluate_plan

    world = tiny_world(n_vehicles=3)
    sim = Simulator(world, seed=0, generator=TWO_ORDERS)
    sim.vehicles[2].cost_per_km = 2.0
    plans = [sim.plan(v.id) for v in sim.vehicles]
    assert plans[0] is plans[1] and plans[2] is not plans[0]
    for v in sim.vehicles:
        fresh = evaluate_plan(world, sim.orders, v, [], *sim.plan_start(v.id))
        for shared, own in zip(sim.plan(v.id), fresh, strict=True):
            assert np.array_equal(shared, own)
    sim.advance()
    sim.reject()
    sim.advance()  # order 1, at 7: the idle plans start now
    assert sim.now > 0 and sim.plan(0).frees_min[0] == sim.now and sim.plan(0) is sim.plan(1)


def test_a_vehicle_changed_without_touch_breaks_an_invariant(tiny_world):
    """The fleet search re-reads only the vehicles the simulator marked (``FleetPlans.touch``): a change made
    behind its back would leave a stale packed row, and the debug invariants name it."""
    sim = Simulator(tiny_world(), seed=0, generator=TWO_ORDERS, debug=True)
    sim.advance()
    sim.assign(0)
    sim.advance()
    sim.fleet_insertions()  # the packed rows read the fleet
    check_invariants(sim)
    sim.vehicles[0].free_min += 5.0
    with pytest.raises(InvariantError, match=r"vehicles \[0\] changed without FleetPlans.touch"):
        check_invariants(sim)
    sim.fleet_plans.touch(0)
    check_invariants(sim)


def test_a_deep_copy_mid_day_runs_the_rest_of_the_day_alike():
    """A simulator copied at a decision (a lookahead policy's rollout) carries its packed plans and scratch
    arrays along: the copy and the original, given the same decisions, run the same rest of the day."""
    from lastmile_env.config import load_scenario
    from lastmile_env.sim.world import world_for

    sim = Simulator(world_for(load_scenario("small")), seed=4)
    order = sim.advance()
    for _ in range(30):  # into the day: plans with stops, vehicles under way
        assert order is not None
        feasible = np.flatnonzero(sim.feasible_vehicles())
        if feasible.size:
            sim.assign(int(feasible[0]))
        else:
            sim.reject()
        order = sim.advance()
    twin = copy.deepcopy(sim)
    days = []
    for s in (sim, twin):
        rng, deltas, order = np.random.default_rng(5), [], s.current
        while order is not None:
            feasible = np.flatnonzero(s.feasible_vehicles())
            deltas.append(s.assign(int(rng.choice(feasible))) if feasible.size else s.reject())
            order = s.advance()
        days.append((deltas, s.cost(), [(v.node, v.dist_km, v.duty_min) for v in s.vehicles]))
    assert days[0] == days[1] and len(days[0][0]) > 10


def test_stop_is_a_frozen_value() -> None:
    """``Stop``'s own ``__init__`` (slot descriptors, for speed) keeps the frozen dataclass's behaviour:
    positional or keyword fields, equality and hash by value, immutable, copies and pickles equal."""
    import dataclasses
    import pickle

    from lastmile_env.sim.types import Stop, StopKind

    stop = Stop(StopKind.DELIVERY, 7, 12)
    assert (stop.kind, stop.order, stop.loc) == (StopKind.DELIVERY, 7, 12)
    assert stop == Stop(kind=StopKind.DELIVERY, order=7, loc=12)
    assert stop != Stop(StopKind.PICKUP, 7, 12)
    assert hash(stop) == hash(Stop(StopKind.DELIVERY, 7, 12))
    assert repr(stop) == "Stop(kind=<StopKind.DELIVERY: 1>, order=7, loc=12)"
    with pytest.raises(dataclasses.FrozenInstanceError):
        stop.loc = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        Stop(StopKind.PICKUP, 7)  # type: ignore[call-arg]
    for twin in (copy.copy(stop), copy.deepcopy(stop), pickle.loads(pickle.dumps(stop))):
        assert twin == stop and type(twin) is Stop
    assert dataclasses.replace(stop, loc=3) == Stop(StopKind.DELIVERY, 7, 3)
    assert not hasattr(stop, "__dict__")  # still slots
