"""Periodic re-optimization with PyVRP on top of cheapest insertion.

PyVRP only *proposes* plans; the simulator prices them (``evaluate_plan``) and a proposal replaces the
current plans (``Simulator.replan``) only when that price is lower, so re-optimizing never makes the
expected cost worse.

The PyVRP model (``build_pdp``) is a pickup and delivery problem that mirrors the simulator's plans stop
for stop:

- each parcel still at a center is a *shipment*: picked up at its center (not before it is ready, taking
  the per-parcel loading time) and delivered to its address within ``[earliest, due]``. PyVRP windows are
  hard, so a due time that cannot be met even by the fastest direct delivery is widened to that arrival
  plus ``late_slack_min``; the simulator then prices the lateness;
- each *return* not yet collected (``Order.is_return``) is a shipment the other way round: picked up at the
  customer's address within ``[ready, due]`` (due widened as above, taking the time at the door) and
  delivered to its center (``Order.loc``; unloaded like a pickup, no window). A parcel that failed for good
  and goes back to its center (``Order.returning``) has no window either;
- each parcel on board is a *client* delivered from the vehicle's start (PyVRP clients are loaded at the
  depot a route leaves from), reachable only by its vehicle (a per-vehicle routing profile makes the
  other vehicles' on-board addresses unreachable);
- each vehicle is one vehicle type: it starts where and when the simulator frees it (a depot placed at
  that node), ends at its home center by its shift end, with its capacity and our unit costs per metre
  and per second (integer PyVRP units);
- travel is each vehicle's mode (van, cargo bike, drone): its mode's free-flow matrix / speed factor
  times the mode's mean congestion over the remaining shift (PyVRP durations are static), in seconds and
  metres (``lastmile_env.vrp_travel``); a drone with a battery range has a profile of its own in which only
  sorties within range are possible and every departure from home after a landing waits for the
  recharge. The simulator still prices the proposal with every sortie's exact range.

The current plans warm-start the search; due times and shift ends they already break in the model are
widened to where they have them, so the warm start is feasible and PyVRP's best is no worse in its model.

A route's activities are the stops of the simulator's plan, in order (pickup, delivery of a shipment or of
an on-board parcel), so nothing is lost converting back.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyvrp
from pyvrp import Activity, ActivityType
from pyvrp.stop import MaxIterations, MaxRuntime, StoppingCriterion

from agents.base import REJECT
from agents.heuristics.rules import feasible_insertions
from lastmile_env.sim.simulator import Simulator
from lastmile_env.sim.types import Order, Stop, StopKind, Vehicle, has_battery
from lastmile_env.sim.world import World
from lastmile_env.vrp_travel import (
    COST_SCALE,
    DIST_SCALE,
    LOAD_SCALE,
    TIME_SCALE,
    door,
    drive_min,
    fastest_min,
    mode_congestion,
    profile_matrices,
)

UNREACHABLE = 10**8  # distance and duration of an edge a profile may not use
NO_LIMIT_MIN = 1e6  # a due time or shift end that does not bind
TIE = 1e-6  # a proposal must be cheaper than the current plans by more than this


@dataclass(frozen=True)
class VehicleStart:
    """Where and when a vehicle starts the part of its plan PyVRP may change, and the parcels it carries
    then (order ids: their deliveries are in the new plan)."""

    vehicle: Vehicle
    node: int
    time_min: float
    on_board: list[int] = field(default_factory=list)


def fleet_starts(sim: Simulator) -> tuple[list[VehicleStart], list[int]]:
    """Every vehicle's start of the changeable part of its plan, and the orders whose parcels are still to
    be picked up (PyVRP shipments), as the simulator stands now."""
    starts, shipment_ids = [], []
    for v in sim.vehicles:
        pickups = {s.order for s in v.route if s.kind == StopKind.PICKUP}
        shipment_ids += sorted(pickups)
        on_board = [s.order for s in v.route if s.kind == StopKind.DELIVERY and s.order not in pickups]
        start_min, node, _ = sim.plan_start(v.id)
        starts.append(VehicleStart(v, node, start_min, on_board))
    return starts, shipment_ids


@dataclass(frozen=True)
class PdpInstance:
    """A PyVRP instance and how its indices map back to orders: ``shipment_ids[s]`` is shipment ``s``'s
    order, ``client_ids[c]`` client ``c``'s (an on-board parcel); vehicle type ``k`` is ``starts[k]``."""

    data: pyvrp.ProblemData
    shipment_ids: list[int]
    client_ids: list[int]
    starts: list[VehicleStart]


def build_pdp(
    world: World,
    orders: Sequence[Order],
    shipment_ids: Sequence[int],
    starts: Sequence[VehicleStart],
    *,
    late_slack_min: float,
    keep_feasible: Sequence[Sequence[Stop]] | None = None,
) -> PdpInstance:
    """The PyVRP instance delivering ``shipment_ids`` (from their centers) and every vehicle's on-board
    parcels (see the module docstring). Routes start exactly at their vehicle's start time, as the
    simulator charges a plan's waiting from its start.

    ``keep_feasible``: plans (stops per vehicle, e.g. the current ones) whose late deliveries and late
    returns in the model widen the due times and shift ends they break, so that these plans are feasible
    for PyVRP and can warm-start it.
    """
    args = (world, orders, shipment_ids, starts, late_slack_min)
    # A return's due time is its collection's (its pickup); everything else's is its delivery's.
    if keep_feasible is None:
        return _build_pdp(*args, {}, [0.0] * len(starts))
    relaxed = _build_pdp(*args, dict.fromkeys(range(len(orders)), NO_LIMIT_MIN), [NO_LIMIT_MIN] * len(starts))
    due_floor: dict[int, float] = {}
    end_floor = [0.0] * len(starts)
    for route in as_solution(relaxed, keep_feasible).routes():
        end_floor[route.vehicle_type()] = route.end_time() / TIME_SCALE
        for a in route.schedule():
            if a.type in (ActivityType.PICKUP, ActivityType.DELIVERY):
                i = relaxed.shipment_ids[a.idx]
                if (a.type == ActivityType.PICKUP) == orders[i].is_return:  # the customer's stop
                    due_floor[i] = a.start_time / TIME_SCALE
            elif a.type == ActivityType.CLIENT:
                due_floor[relaxed.client_ids[a.idx]] = a.start_time / TIME_SCALE
    return _build_pdp(*args, due_floor, end_floor)


def _build_pdp(
    world: World,
    orders: Sequence[Order],
    shipment_ids: Sequence[int],
    starts: Sequence[VehicleStart],
    late_slack_min: float,
    due_floor: Mapping[int, float],
    end_floor: Sequence[float],
) -> PdpInstance:
    """``build_pdp`` with due times and shift ends no earlier than the given floors (minutes)."""
    n_depots = world.n_depots
    pickup_min = world.config.orders.pickup_service_min
    client_ids = [i for st in starts for i in st.on_board]
    owner = [k for k, st in enumerate(starts) for _ in st.on_board]
    # A shipment's address: where a parcel is delivered, or where a return is collected.
    addresses = sorted({door(orders[i]) for i in shipment_ids})
    # Locations: the centers, each vehicle's start, shipment addresses, then one per on-board parcel.
    keys = np.array(
        [*range(n_depots), *(st.node for st in starts), *addresses, *(orders[i].loc for i in client_ids)],
        dtype=np.int64,
    )
    is_center = np.arange(len(keys)) < n_depots
    address_index = {loc: n_depots + len(starts) + j for j, loc in enumerate(addresses)}
    first_client_loc = n_depots + len(starts) + len(addresses)
    locations = [pyvrp.Location(float(world.xy_km[k, 0]), float(world.xy_km[k, 1])) for k in keys]
    t0 = min((st.time_min for st in starts), default=0.0)
    congestion = mode_congestion(world, t0, max((st.vehicle.shift_end_min for st in starts), default=t0))
    fleet = [st.vehicle for st in starts]

    # One profile per kind of vehicle (mode, speed), one per vehicle that carries parcels (the other
    # vehicles' on-board addresses are unreachable for it) or has a battery range (its sorties).
    profiles: dict[tuple[int, float, int], int] = {}
    dist_mats: list[Any] = []  # PyVRP's stubs type matrices as ndarray[int]
    time_mats: list[Any] = []
    vehicle_profile = []
    for k, st in enumerate(starts):
        v = st.vehicle
        own = bool(st.on_board) or has_battery(v)
        key = (v.mode, v.speed_factor, k if own else -1)
        if key not in profiles:
            profiles[key] = len(dist_mats)
            d, t, allowed = profile_matrices(
                world, keys, v, congestion, is_center, n_depots + k if own else None, v.flown_km
            )
            others = [first_client_loc + c for c, o in enumerate(owner) if o != k]
            allowed[others, :] = False
            allowed[:, others] = False
            np.fill_diagonal(allowed, True)
            dist_mats.append(np.where(allowed, d, UNREACHABLE).astype(np.int64))
            time_mats.append(np.where(allowed, t, UNREACHABLE).astype(np.int64))
        vehicle_profile.append(profiles[key])

    def seconds(minutes: float) -> int:
        return round(minutes * TIME_SCALE)

    def latest(order: Order, reach_min: float) -> int:
        """The hard PyVRP due time: the order's, or past its earliest possible delivery if that is late."""
        due = order.due_min if reach_min <= order.due_min else reach_min + late_slack_min
        return seconds(max(due, due_floor.get(order.id, -math.inf)))

    def arrival(st: VehicleStart, node: int) -> float:
        return st.time_min + drive_min(world, congestion, st.vehicle, st.node, node)

    at_center = [min((arrival(st, c) for st in starts), default=0.0) for c in range(n_depots)]
    shipments = []
    for i in shipment_ids:
        o = orders[i]
        if o.is_return:  # collected at the address in its window, unloaded at its center
            reach = min((arrival(st, o.center) for st in starts), default=0.0)
            shipments.append(
                pyvrp.Shipment(
                    pickup_location=address_index[o.center],
                    delivery_location=o.loc,
                    pickup_tw_early=seconds(o.ready_min),
                    pickup_tw_late=latest(o, max(reach, o.ready_min)),
                    pickup_service_duration=seconds(o.service_min),
                    delivery_service_duration=seconds(pickup_min),
                    amount=[o.size * LOAD_SCALE],
                )
            )
            continue
        leave = max(o.ready_min, at_center[o.center]) + pickup_min
        reach = leave + fastest_min(world, congestion, fleet, o.center, o.loc)
        shipments.append(
            pyvrp.Shipment(
                pickup_location=o.center,
                delivery_location=address_index[o.loc],
                pickup_tw_early=seconds(o.ready_min),
                pickup_service_duration=seconds(pickup_min),
                delivery_tw_early=seconds(o.earliest_min),
                delivery_tw_late=latest(o, max(reach, o.earliest_min)),
                delivery_service_duration=seconds(o.service_min),
                amount=[o.size * LOAD_SCALE],
            )
        )
    clients = []
    for c, (i, k) in enumerate(zip(client_ids, owner, strict=True)):
        o, st = orders[i], starts[k]
        if o.is_return or o.returning:  # unloaded at the center: no window
            clients.append(
                pyvrp.Client(
                    location=first_client_loc + c,
                    delivery=[o.size * LOAD_SCALE],
                    service_duration=seconds(pickup_min),
                )
            )
            continue
        reach = arrival(st, o.loc)
        clients.append(
            pyvrp.Client(
                location=first_client_loc + c,
                delivery=[o.size * LOAD_SCALE],
                service_duration=seconds(o.service_min),
                tw_early=seconds(o.earliest_min),
                tw_late=latest(o, max(reach, o.earliest_min)),
            )
        )
    depots = [pyvrp.Depot(location=j) for j in range(n_depots + len(starts))]
    vehicle_types = []
    for k, st in enumerate(starts):
        v = st.vehicle
        early = seconds(st.time_min)
        vehicle_types.append(
            pyvrp.VehicleType(
                num_available=1,
                capacity=[v.capacity * LOAD_SCALE],
                start_depot=n_depots + k,
                end_depot=v.home,
                tw_early=early,
                tw_late=max(
                    early, math.floor(v.shift_end_min * TIME_SCALE), math.ceil(end_floor[k] * TIME_SCALE)
                ),
                start_late=early,
                unit_distance_cost=round(v.cost_per_km / DIST_SCALE * COST_SCALE),
                unit_duration_cost=round(v.cost_per_hour / 60.0 / TIME_SCALE * COST_SCALE),
                profile=vehicle_profile[k],
                name=str(v.id),
            )
        )
    data = pyvrp.ProblemData(
        locations, clients, depots, vehicle_types, dist_mats, time_mats, shipments=shipments
    )
    return PdpInstance(data, list(shipment_ids), client_ids, list(starts))


def solve(
    instance: PdpInstance,
    time_limit_s: float,
    seed: int,
    max_iterations: int | None = None,
    initial: pyvrp.Solution | None = None,
) -> pyvrp.Solution:
    """PyVRP's best solution within ``time_limit_s`` or, when given, after ``max_iterations`` (then the
    result depends only on the seed, not on the machine's speed)."""
    stop: StoppingCriterion = (
        MaxRuntime(time_limit_s) if max_iterations is None else MaxIterations(max_iterations)
    )
    result = pyvrp.solve(
        instance.data, stop, seed=seed, collect_stats=False, display=False, initial_solution=initial
    )
    return result.best


def solution_stops(
    instance: PdpInstance, orders: Sequence[Order], solution: pyvrp.Solution
) -> list[list[Stop]]:
    """Each vehicle's (vehicle type's) route as simulator stops, in PyVRP's order."""
    routes: list[list[Stop]] = [[] for _ in instance.starts]
    for route in solution.routes():
        stops = routes[route.vehicle_type()]
        for a in route.schedule():
            if a.type == ActivityType.PICKUP:
                o = orders[instance.shipment_ids[a.idx]]
                stops.append(Stop(StopKind.PICKUP, o.id, o.center))
            elif a.type == ActivityType.DELIVERY:
                o = orders[instance.shipment_ids[a.idx]]
                stops.append(Stop(StopKind.DELIVERY, o.id, o.loc))
            elif a.type == ActivityType.CLIENT:
                o = orders[instance.client_ids[a.idx]]
                stops.append(Stop(StopKind.DELIVERY, o.id, o.loc))
    return routes


def as_solution(instance: PdpInstance, routes: Sequence[Sequence[Stop]]) -> pyvrp.Solution:
    """Plans (one stop list per vehicle type) as a PyVRP solution, e.g. to warm-start the search."""
    shipment = {oid: s for s, oid in enumerate(instance.shipment_ids)}
    client = {oid: c for c, oid in enumerate(instance.client_ids)}
    pyvrp_routes = []
    for k, stops in enumerate(routes):
        activities = [
            Activity(ActivityType.PICKUP, shipment[s.order])
            if s.kind == StopKind.PICKUP
            else Activity(ActivityType.CLIENT, client[s.order])
            if s.order in client
            else Activity(ActivityType.DELIVERY, shipment[s.order])
            for s in stops
        ]
        if activities:
            pyvrp_routes.append(pyvrp.Route(instance.data, activities, k))
    return pyvrp.Solution(instance.data, pyvrp_routes)


@dataclass(frozen=True)
class ReoptRecord:
    """One re-optimization: sim time, parcels re-planned (at centers), current and proposed plan costs
    (inf: the proposal was incomplete or infeasible for the simulator), whether applied, solver seconds."""

    time_min: float
    n_orders: int
    old_cost: float
    new_cost: float
    applied: bool
    solver_s: float


class ReoptPolicy:
    """Cheapest insertion with periodic PyVRP re-optimization.

    Each order is decided as ``InsertionPolicy`` does: the vehicle with the cheapest feasible insertion,
    rejected when that costs more than the rejection penalty. Before deciding, once every ``interval_min``
    of sim time, every stop that has not started is re-planned: PyVRP re-assigns the parcels still at the
    centers across vehicles and re-sequences every vehicle's remaining stops (parcels on board, including
    one being loaded now, stay on their vehicle), warm-started from the current plans. The proposal
    replaces the plans only when the simulator prices it lower, so the expected cost never rises.

    Args:
        interval_min: sim minutes between re-optimizations.
        time_limit_s: PyVRP's wall-clock budget per re-optimization.
        seed: PyVRP's seed (``reset(seed)`` overrides it when given).
        max_iterations: stop PyVRP after this many iterations instead of after ``time_limit_s``. With a
            time limit the outcome depends on the machine's speed; with an iteration limit only on the seed.
        late_slack_min: how far past an unreachable due time the model still lets a parcel be delivered.
    """

    name = "reopt"

    def __init__(
        self,
        interval_min: float = 30.0,
        time_limit_s: float = 0.5,
        seed: int = 0,
        max_iterations: int | None = None,
        late_slack_min: float = 30.0,
    ) -> None:
        if interval_min <= 0:
            raise ValueError(f"interval_min must be positive, got {interval_min}")
        self.interval_min = interval_min
        self.time_limit_s = time_limit_s
        self.seed = seed
        self.max_iterations = max_iterations
        self.late_slack_min = late_slack_min
        self._seed = seed
        self._next_min = interval_min
        self.records: list[ReoptRecord] = []

    def reset(self, seed: int | None = None) -> None:
        self._seed = self.seed if seed is None else seed
        self._next_min = self.interval_min
        self.records = []

    def act(self, sim: Simulator) -> int:
        if sim.now >= self._next_min - 1e-9:
            self.reoptimize(sim)
            self._next_min = (math.floor(sim.now / self.interval_min + 1e-9) + 1) * self.interval_min
        options = feasible_insertions(sim)
        if not options:
            return REJECT
        best = min(options, key=lambda v: (options[v].delta_cost, v))
        return best if options[best].delta_cost <= sim.world.config.costs.reject_penalty else REJECT

    def reoptimize(self, sim: Simulator) -> float:
        """Propose new plans for all vehicles with PyVRP; apply them if the simulator prices them lower.
        Returns the expected-cost change (0 when nothing changed)."""
        if not any(v.route for v in sim.vehicles):
            return 0.0
        starts, shipment_ids = fleet_starts(sim)
        current = [v.route for v in sim.vehicles]
        instance = build_pdp(
            sim.world,
            sim.orders,
            shipment_ids,
            starts,
            late_slack_min=self.late_slack_min,
            keep_feasible=current,
        )
        warm = as_solution(instance, current)
        tic = time.perf_counter()
        solution = solve(instance, self.time_limit_s, self._seed, self.max_iterations, warm)
        solver_s = time.perf_counter() - tic
        routes = dict(enumerate(solution_stops(instance, sim.orders, solution)))
        old = sum(sim.plan(v.id).cost for v in sim.vehicles)
        plans = [sim.price(v.id, routes[v.id]) for v in sim.vehicles]
        complete = sum(map(len, routes.values())) == sum(len(v.route) for v in sim.vehicles)
        new = sum(p.cost for p in plans) if complete and all(p.feasible for p in plans) else math.inf
        applied = new < old - TIE
        delta = sim.replan(routes) if applied else 0.0
        self.records.append(ReoptRecord(sim.now, len(shipment_ids), old, new, applied, solver_s))
        return delta
