"""Routing policies (which planned stop a free vehicle serves next), by name, and dispatch+routing pairs.

Each reads the simulator in routing mode (``Simulator(..., routing=True)``) and re-implements no travel,
insertion or cost. A routing decision chooses among ``sim.route_mask()`` (deliveries of parcels on board,
pickups of ready parcels within capacity) or ``WAIT`` (valid while ``sim.can_wait()``).

| name | rule |
|---|---|
| ``planned`` | the plan's first stop (the insertion order); wait while its parcel is not ready |
| ``nearest_next`` | the valid stop with the shortest free-flow drive from where the vehicle is |
| ``edf`` | the valid stop whose parcel has the earliest deadline (due time) |
| ``greedy`` | the valid stop whose move to the front gives the cheapest re-priced plan (or wait) |
| ``reopt_route`` | PyVRP re-sequences the vehicle's remaining stops, then ``planned`` |

``PairedPolicy`` plays a dispatch policy and a routing policy together; ``evaluate.py`` names such a pair
``dispatch+routing`` (e.g. ``insertion+nearest_next``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from agents.base import WAIT, Policy, RoutingPolicy, SpecOption, parse_spec
from lastmile_env.sim.simulator import Simulator
from lastmile_env.sim.types import Stop, StopKind, Vehicle
from lastmile_env.solver_budget import SolverBudget


def pending_vehicle(sim: Simulator) -> Vehicle:
    """The vehicle whose next stop is to decide."""
    if sim.routing_vehicle is None:
        raise ValueError("no routing decision is pending (call sim.next_decision() in routing mode)")
    return sim.vehicles[sim.routing_vehicle]


def valid_stops(sim: Simulator) -> list[int]:
    """Indices of the pending vehicle's planned stops that may be next."""
    return np.flatnonzero(sim.route_mask()).tolist()


class PlannedRoute:
    """Follow the plan: its first stop (the insertion rule's order), waiting while that stop's parcel is not
    ready yet; the first valid stop in plan order if the first stop cannot be served (never with a plan the
    insertion rule or a re-optimization made, which keeps capacity)."""

    name = "planned"

    def reset(self, seed: int | None = None) -> None:
        pass

    def route(self, sim: Simulator) -> int:
        mask = sim.route_mask()
        if mask[0]:
            return 0
        if sim.can_wait():
            return WAIT
        return int(np.flatnonzero(mask)[0])


class _BestValidStop:
    """The valid stop with the smallest ``key``; waits only when no stop is valid."""

    name: str

    def reset(self, seed: int | None = None) -> None:
        pass

    def key(self, sim: Simulator, v: Vehicle, i: int) -> tuple[float, ...]:
        raise NotImplementedError

    def route(self, sim: Simulator) -> int:
        v = pending_vehicle(sim)
        options = valid_stops(sim)
        if not options:
            return WAIT
        return min(options, key=lambda i: self.key(sim, v, i))


class NearestNextRoute(_BestValidStop):
    """The valid stop with the shortest free-flow drive from the vehicle (ties: plan order); waits only
    when no stop is valid."""

    name = "nearest_next"

    def key(self, sim: Simulator, v: Vehicle, i: int) -> tuple[float, ...]:
        return (sim.world.time_min[v.node][v.route[i].loc], i)


class EarliestDeadlineRoute(_BestValidStop):
    """The valid stop whose parcel is due first (a pickup carries its delivery's due time; ties: the
    nearer, then plan order); waits only when no stop is valid."""

    name = "edf"

    def key(self, sim: Simulator, v: Vehicle, i: int) -> tuple[float, ...]:
        stop = v.route[i]
        return (sim.orders[stop.order].due_min, sim.world.time_min[v.node][stop.loc], i)


class GreedyRepriceRoute:
    """The valid stop whose move to the front of the plan gives the cheapest plan, as the simulator prices
    it (``Simulator.price_route``; ties: plan order). When the plan's first stop is a pickup whose parcel is
    not ready yet, waiting (which keeps the plan) is chosen unless a valid stop gives a cheaper plan."""

    name = "greedy"

    def reset(self, seed: int | None = None) -> None:
        pass

    def route(self, sim: Simulator) -> int:
        mask = sim.route_mask()
        options = np.flatnonzero(mask).tolist()
        if not options:
            return WAIT
        costs = {i: sim.price_route(i).cost for i in options}
        best = min(options, key=lambda i: (costs[i], i))
        if not mask[0] and sim.can_wait() and sim.plan(pending_vehicle(sim).id).cost <= costs[best]:
            return WAIT
        return best


@dataclass(frozen=True)
class RouteReoptRecord:
    """One re-sequencing: sim time, vehicle, stops, plan cost before and proposed (inf: incomplete or
    infeasible for the simulator), whether applied, solver seconds."""

    time_min: float
    vehicle: int
    n_stops: int
    old_cost: float
    new_cost: float
    applied: bool
    solver_s: float


ROUTE_REOPT_ITERATIONS = 30  # PyVRP iterations per re-sequencing of one vehicle's stops, by default


class ReoptRoute:
    """PyVRP re-sequencing of the deciding vehicle's remaining stops, then ``planned``.

    The single-vehicle problem is ``agents.heuristics.reopt.build_pdp`` with one vehicle: each parcel of
    the plan still at its center is a pickup-and-delivery *shipment* (PyVRP keeps the pickup before the
    delivery on the same route; pickup not before the parcel is ready), each parcel on board a delivery
    from the vehicle's start, the route starts where and when the vehicle is free and ends at its center.
    PyVRP stops after ``max_iterations`` (deterministic given the seed; or after ``time_limit_s``
    wall-clock seconds, which depends on the machine), warm-started from the current plan; the simulator
    prices the proposal and ``Simulator.replan`` applies it only when it is cheaper. The vehicle then
    follows its plan (``planned``: the first stop, waiting while its parcel is not ready: the model lets a
    route wait at the center for a parcel, the routing env lets a vehicle leave only for ready parcels, so
    a proposal may wait where the model would not).

    A plan is re-sequenced when it changed other than by serving its first stop (a new order, a wake-up
    after a re-plan), and only with at least ``min_stops`` stops (shorter plans have little to reorder).
    """

    name = "reopt_route"

    def __init__(
        self,
        max_iterations: int | None = None,
        time_limit_s: float | None = None,
        seed: int = 0,
        min_stops: int = 3,
        late_slack_min: float = 30.0,
    ) -> None:
        self.budget = SolverBudget.of(max_iterations, time_limit_s, ROUTE_REOPT_ITERATIONS)
        self.seed = seed
        self.min_stops = min_stops
        self.late_slack_min = late_slack_min
        self._seed = seed
        self._solved: dict[int, tuple[Stop, ...]] = {}
        self.records: list[RouteReoptRecord] = []
        self._planned = PlannedRoute()

    def reset(self, seed: int | None = None) -> None:
        self._seed = self.seed if seed is None else seed
        self._solved = {}
        self.records = []

    def route(self, sim: Simulator) -> int:
        v = pending_vehicle(sim)
        route = tuple(v.route)
        solved = self._solved.get(v.id, ())
        if len(route) >= self.min_stops and route != solved[len(solved) - len(route) :]:
            self.reoptimize(sim, v)
            self._solved[v.id] = tuple(v.route)
        return self._planned.route(sim)

    def reoptimize(self, sim: Simulator, v: Vehicle) -> float:
        """Propose a new order of the vehicle's stops with PyVRP; apply it if the simulator prices it lower.
        Returns the expected-cost change (0 when nothing changed)."""
        from agents.heuristics.reopt import TIE, VehicleStart, as_solution, build_pdp, solution_stops, solve

        pickups = sorted({s.order for s in v.route if s.kind == StopKind.PICKUP})
        on_board = [s.order for s in v.route if s.kind == StopKind.DELIVERY and s.order not in pickups]
        start_min, node, _ = sim.plan_start(v.id)
        instance = build_pdp(
            sim.world,
            sim.orders,
            pickups,
            [VehicleStart(v, node, start_min, on_board)],
            late_slack_min=self.late_slack_min,
            keep_feasible=[v.route],
        )
        tic = time.perf_counter()
        solution = solve(instance, self.budget, self._seed, as_solution(instance, [v.route]))
        solver_s = time.perf_counter() - tic
        stops = solution_stops(instance, sim.orders, solution)[0]
        old = sim.plan(v.id).cost
        plan = sim.price(v.id, stops)
        new = plan.cost if len(stops) == len(v.route) and plan.feasible else math.inf
        applied = new < old - TIE
        delta = sim.replan({v.id: stops}) if applied else 0.0
        self.records.append(RouteReoptRecord(sim.now, v.id, len(stops), old, new, applied, solver_s))
        return delta


ROUTING_HEURISTICS: dict[str, Callable[..., RoutingPolicy]] = {
    "planned": PlannedRoute,
    "nearest_next": NearestNextRoute,
    "edf": EarliestDeadlineRoute,
    "greedy": GreedyRepriceRoute,
    "reopt_route": ReoptRoute,
}


# The options each routing heuristic's name accepts after a colon, e.g. ``reopt_route:time=0.1``.
ROUTING_SPEC_OPTIONS: dict[str, dict[str, SpecOption]] = {
    name: {"iterations": ("max_iterations", int), "time": ("time_limit_s", float)}
    if name == "reopt_route"
    else {}
    for name in ROUTING_HEURISTICS
}


def is_routing_heuristic(spec: str) -> bool:
    """Whether ``spec`` names a routing heuristic (with or without options)."""
    return spec.split(":")[0] in ROUTING_HEURISTICS


def make_routing_heuristic(spec: str, **params: Any) -> RoutingPolicy:
    """A routing heuristic by name (``name[:key=value]...``); unknown names or options fail with one line
    listing the valid ones."""
    name, options = parse_spec(spec, ROUTING_SPEC_OPTIONS, "routing policy")
    return ROUTING_HEURISTICS[name](**{**options, **params})


class PairedPolicy:
    """A dispatch policy and a routing policy played together on a simulator in routing mode:
    ``act`` is the dispatcher's, ``route`` the router's, ``reset`` resets both."""

    def __init__(self, dispatch: Policy, router: RoutingPolicy, name: str | None = None) -> None:
        self.dispatch = dispatch
        self.router = router
        self.name = name or f"{dispatch.name}+{router.name}"

    def reset(self, seed: int | None = None) -> None:
        self.dispatch.reset(seed)
        self.router.reset(seed)

    def act(self, sim: Simulator) -> int:
        return self.dispatch.act(sim)

    def route(self, sim: Simulator) -> int:
        return self.router.route(sim)
