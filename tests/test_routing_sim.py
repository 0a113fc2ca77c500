"""Routing mode of the simulator and the routing baselines: golden next stops on a hand-made line world,
waiting, invariants and complete days under every baseline."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agents.base import WAIT, run_episode
from agents.heuristics import make_heuristic
from agents.routing import ROUTING_HEURISTICS, PairedPolicy, ReoptRoute, make_routing_heuristic
from lastmile_env.config import load_scenario
from lastmile_env.sim import SimulationError, Simulator, Stop, StopKind, check_invariants, world_for
from lastmile_env.sim.simulator import InfeasibleRoute
from lastmile_env.sim.types import DecisionKind, OrderStatus
from tests.conftest import fixed_orders

# Line world (conftest): D (center) - A - B, 1 km blocks, 2 min per km, loading 1 min, 2 min at the door;
# costs 1 per km, 1 per driver minute, lateness 2 + 1 per minute.
B_LOOSE_A_TIGHT = fixed_orders(
    {"node": "B", "arrival_min": 0.0, "due_min": 100.0},
    {"node": "A", "arrival_min": 0.0, "due_min": 9.0},
)


def to_both_on_board(sim: Simulator) -> None:
    """Dispatch both orders to the van and pick both up; stop at the routing decision at t = 2."""
    d = sim.next_decision()
    assert d is not None and d.kind == DecisionKind.DISPATCH and d.order is not None and d.order.id == 0
    sim.assign(0)
    d = sim.next_decision()
    assert d is not None and d.kind == DecisionKind.ROUTE and d.vehicle == 0 and sim.decision == d
    assert [(s.kind, s.order) for s in sim.vehicles[0].route] == [
        (StopKind.PICKUP, 0),
        (StopKind.DELIVERY, 0),
    ]
    assert sim.route_mask().tolist() == [True, False]  # the delivery of a parcel not on board is not valid
    assert not sim.can_wait()
    sim.route(0)  # pickup at the center: free at 1
    d = sim.next_decision()
    assert d is not None and d.kind == DecisionKind.DISPATCH and d.order is not None and d.order.id == 1
    sim.assign(0)
    d = sim.next_decision()
    assert d is not None and d.kind == DecisionKind.ROUTE and sim.now == pytest.approx(1.0)
    route = sim.vehicles[0].route
    sim.route(next(i for i, s in enumerate(route) if s.kind == StopKind.PICKUP))
    d = sim.next_decision()
    assert d is not None and d.kind == DecisionKind.ROUTE and sim.now == pytest.approx(2.0)


def test_golden_best_next_stop_is_the_tight_delivery(tiny_world):
    sim = Simulator(tiny_world(), 0, generator=B_LOOSE_A_TIGHT, routing=True, debug=True)
    to_both_on_board(sim)
    world = sim.world
    a, b = world.matrix.index_of("A"), world.matrix.index_of("B")
    sim.replan({0: [Stop(StopKind.DELIVERY, 0, b), Stop(StopKind.DELIVERY, 1, a)]})  # the plan: B first
    assert sim.route_mask().tolist() == [True, True]
    # B first: arrive B 6, leave 8, A at 10 (1 min late: 2 + 1), leave 12, home 14: 4 km + 12 min + 3.
    assert sim.price_route(0).cost == pytest.approx(19.0)
    # A first: A at 4, leave 6, B at 8, leave 10, home 14: 4 km + 12 min, on time.
    assert sim.price_route(1).cost == pytest.approx(16.0)
    for name in ("nearest_next", "edf", "greedy"):
        assert make_routing_heuristic(name).route(sim) == 1, name
    assert make_routing_heuristic("planned").route(sim) == 0
    delta = sim.route(1)
    assert delta == pytest.approx(-3.0)
    while (d := sim.next_decision()) is not None:
        assert d.kind == DecisionKind.ROUTE
        sim.route(0)
    s = sim.summary()
    assert (s["on_time"], s["late"]) == (2, 0)
    assert s["cost"] == pytest.approx(1.0 + 1.0 + 16.0)  # the two pickups, then the plan
    assert sim.expected_cost == pytest.approx(s["cost"])


def test_golden_reopt_route_never_worsens_the_plan(tiny_world):
    sim = Simulator(tiny_world(), 0, generator=B_LOOSE_A_TIGHT, routing=True, debug=True)
    to_both_on_board(sim)
    a, b = sim.world.matrix.index_of("A"), sim.world.matrix.index_of("B")
    sim.replan({0: [Stop(StopKind.DELIVERY, 0, b), Stop(StopKind.DELIVERY, 1, a)]})
    router = ReoptRoute(min_stops=1, max_iterations=50)
    router.reset(0)
    choice = router.route(sim)
    assert len(router.records) == 1
    assert sim.plan(0).cost <= 19.0 + 1e-9
    assert sim.route_mask()[choice]


def test_wait_until_ready_charges_driver_time(tiny_world):
    late_parcel = fixed_orders({"node": "A", "arrival_min": 0.0, "ready_min": 10.0, "due_min": 100.0})
    sim = Simulator(tiny_world(), 0, generator=late_parcel, routing=True, debug=True)
    assert sim.next_decision() is not None
    sim.assign(0)
    d = sim.next_decision()
    assert d is not None and d.kind == DecisionKind.ROUTE
    assert sim.route_mask().tolist() == [False, False]  # parcel not ready, not on board
    assert sim.can_wait()
    with pytest.raises(InfeasibleRoute, match="cannot be next"):
        sim.route(0)
    assert make_routing_heuristic("planned").route(sim) == WAIT
    sim.wait()
    assert sim.vehicles[0].waiting
    d = sim.next_decision()  # woken by the parcel's readiness
    assert d is not None and d.kind == DecisionKind.ROUTE and sim.now == pytest.approx(10.0)
    assert sim.cost().driver_time == pytest.approx(10.0)
    assert not sim.can_wait() and sim.route_mask().tolist() == [True, False]
    sim.route(0)
    while sim.next_decision() is not None:
        sim.route(0)
    # Waited 10, loaded 1, drove 2, served 2, back 2: 17 min; 2 km.
    assert sim.summary()["cost"] == pytest.approx(19.0)
    assert sim.expected_cost == pytest.approx(19.0)


def test_advance_refuses_a_routing_decision_and_decisions_must_be_answered(tiny_world):
    sim = Simulator(tiny_world(), 0, generator=B_LOOSE_A_TIGHT, routing=True)
    assert sim.advance() is not None
    sim.assign(0)
    with pytest.raises(SimulationError, match="routing decision"):
        sim.advance()
    with pytest.raises(SimulationError, match="route\\(\\) or wait\\(\\)"):
        sim.next_decision()
    with pytest.raises(InfeasibleRoute, match="cannot wait"):
        sim.wait()


def test_routing_off_is_the_dispatch_simulator():
    world = world_for(load_scenario("small"))
    plain = run_episode(Simulator(world, 3), make_heuristic("insertion"), 3)
    assert not any(v.waiting for v in plain.vehicles) and plain.routing_vehicle is None
    assert all(e.kind not in ("route", "wait") for e in plain.events)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("capacity", [4, 10])
def test_invariants_under_random_masked_routing(seed, capacity):
    world = world_for(load_scenario("small", {"fleet.types": [{"capacity": capacity}]}))
    sim = Simulator(world, seed, routing=True, debug=True)
    rng = np.random.default_rng(seed)
    waits = routes = 0
    while (d := sim.next_decision()) is not None:
        if d.kind == DecisionKind.DISPATCH:
            feasible = [v for v in range(len(sim.vehicles)) if sim.insertion(v) is not None]
            if feasible and rng.random() < 0.9:
                sim.assign(int(rng.choice(feasible)))
            else:
                sim.reject()
        else:
            options = [*np.flatnonzero(sim.route_mask()).tolist(), *([WAIT] if sim.can_wait() else [])]
            assert options, "a routing decision always has a valid action"
            choice = int(rng.choice(options))
            if choice == WAIT:
                sim.wait()
                waits += 1
            else:
                sim.route(choice)
                routes += 1
    check_invariants(sim)
    s = sim.summary()
    assert s["delivered"] + s["rejected"] == s["orders"]
    assert all(o.status in (OrderStatus.DELIVERED, OrderStatus.REJECTED) for o in sim.orders)
    assert all(v.idle and v.node == v.home for v in sim.vehicles)
    assert routes >= s["delivered"] and waits > 0
    assert sim.expected_cost == pytest.approx(s["cost"])


@pytest.mark.parametrize("name", sorted(ROUTING_HEURISTICS))
def test_every_baseline_plays_a_day_with_every_order_accounted_for(name):
    world = world_for(load_scenario("small"))
    policy = PairedPolicy(make_heuristic("insertion"), make_routing_heuristic(name))
    sim = run_episode(Simulator(world, 5, routing=True, debug=True), policy, 5)
    s = sim.summary()
    assert s["orders"] > 0 and s["delivered"] + s["rejected"] == s["orders"]
    assert math.isfinite(s["cost"]) and sim.expected_cost == pytest.approx(s["cost"])
    assert policy.name == f"insertion+{name}"


def test_run_episode_needs_routing_mode_for_a_router():
    world = world_for(load_scenario("small"))
    with pytest.raises(ValueError, match="routing mode"):
        run_episode(Simulator(world, 0), make_heuristic("insertion"), 0, router=make_routing_heuristic("edf"))


@pytest.mark.parametrize("seed", [0, 1])
def test_planned_route_with_ready_parcels_is_exactly_dispatch_mode(seed):
    """With every parcel ready when it arrives, following the plan in routing mode drives exactly the legs
    dispatch mode drives: the same summary, number for number (one source of travel and cost)."""
    world = world_for(load_scenario("small", {"orders.prep_min": {"low": 0, "high": 0}}))
    dispatch_mode = run_episode(Simulator(world, seed), make_heuristic("insertion"), seed)
    pair = PairedPolicy(make_heuristic("insertion"), make_routing_heuristic("planned"))
    routing_mode = run_episode(Simulator(world, seed, routing=True, debug=True), pair, seed)
    assert routing_mode.summary() == dispatch_mode.summary()
    assert routing_mode.legs == dispatch_mode.legs
