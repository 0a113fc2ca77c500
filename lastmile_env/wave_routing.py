"""Routes for a wave's released orders, solved by PyVRP (wave mode, ``dispatch.mode: wave``).

At a wave a policy chooses which pooled orders go now; this module turns that batch into routes, one order
sequence per vehicle, which ``Simulator.release`` then prices and commits. The model is a VRPTW with
depot-loaded clients, one per center (each order is collected at its own center):

- vehicles: those of the center that are there, or back there, when the wave's parcels leave (the wave +
  ``dispatch.wave_margin_min``), each with its capacity, its unit costs, its mode's travel (its mode's
  matrix over its speed factor at the mode's congestion averaged over the rest of the shift,
  ``lastmile_env.vrp_travel``) and back at the center by its shift end;
- clients: the orders, each with its size, its time at the door plus the loading time of its parcel at the
  center (so a route's return time is exact), its window ``[earliest, due]`` (hard in PyVRP: a due time
  that even a direct trip cannot meet is widened past that trip's arrival; the simulator prices the
  lateness) and a release time (the parcel is ready and the wave's margin has passed). When the center
  has at least one vehicle per order every client is required (the EURO Meets NeurIPS 2022 fleet is
  unlimited); otherwise clients are optional with a prize, ``reject_penalty`` (x10 for the orders that
  must go at this wave), so a short fleet serves what it can and the rest waits or is rejected, and a
  vehicle may come back to the center to reload (multi-trip: each trip is one route of ``release``).
  A caller may also make chosen orders optional with its own prizes (``solve_wave(..., prizes=...)``): a
  prize-collecting VRPTW, where PyVRP takes an order only where its prize is worth its detour (how a learned
  wave policy says how much each order should go now).
- every route starts at the wave (PyVRP's ``start_late``), as the simulator's van is on duty from then: the
  wait for a first window is charged in the model as the simulator charges it (a parcel not ready at the
  wave puts time warp on its route: penalized by PyVRP, priced as the real wait by the simulator).
- ``safety_min`` (a policy's option, 0 by default) plans each due time that many minutes early: PyVRP's travel
  is static at the congestion averaged over the rest of the shift, so its routes can reach a door a few
  minutes later than the simulator's time-dependent travel does, and a released route is never re-planned.

With travel given in whole seconds and no congestion (the EURO Meets NeurIPS 2022 instances) the model is
the competition's epoch problem exactly. The budget is PyVRP iterations by default, so the routes depend
only on the inputs and the seed, never on the machine; a wall-clock limit is an option.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyvrp

from lastmile_env.sim.simulator import Simulator
from lastmile_env.sim.types import Order, Vehicle
from lastmile_env.solver_budget import SolverBudget
from lastmile_env.vrp_travel import (
    DIST_SCALE,
    LOAD_SCALE,
    TIME_SCALE,
    mode_congestion,
    profile_matrices,
)

LATE_SLACK_MIN = 30.0  # a due time no trip can meet is widened to the direct arrival plus this
WAVE_ITERATIONS = 2000  # PyVRP iterations per wave by default (about 2-10 s of CPU for 100-400 orders)
WAVE_SEED = 1  # PyVRP seed by default (the competition's solver_seed)


def available_vehicles(sim: Simulator, center: int, leave_min: float) -> list[Vehicle]:
    """The vehicles of ``center`` that are there, or back there, by ``leave_min`` (their plans done)."""
    plans = {v.id: sim.plan(v.id) for v in sim.vehicles if v.home == center}
    return [
        sim.vehicles[i] for i, plan in plans.items() if plan.end_min <= leave_min + 1e-9 and plan.feasible
    ]


def solve_wave(
    sim: Simulator,
    order_ids: Sequence[int],
    budget: SolverBudget | None = None,
    seed: int = WAVE_SEED,
    prizes: Mapping[int, float] | None = None,
    safety_min: float = 0.0,
) -> tuple[list[tuple[int, list[int]]], list[int]]:
    """Routes for the pooled orders ``order_ids`` at the pending wave: ``(routes, unrouted)`` where each
    route is ``(vehicle id, order ids in delivery order)`` and ``unrouted`` are the orders no route could
    take (no vehicle at their center, left out by PyVRP for a short fleet or for a prize below its detour,
    or on a route the simulator found infeasible). ``prizes`` (order id -> prize in the world's cost units,
    >= 0) makes those orders optional: PyVRP takes one only where its prize outweighs its detour.
    ``safety_min``: PyVRP plans every due time this many minutes early (see the module docstring)."""
    budget = budget or SolverBudget(max_iterations=WAVE_ITERATIONS)
    pool = {o.id: o for o in sim.pool}
    unknown = [i for i in order_ids if i not in pool]
    if unknown:
        raise ValueError(f"orders {unknown} are not in the wave's pool")
    if not 0 <= safety_min < float("inf"):
        raise ValueError(f"safety_min must be a finite number of minutes >= 0, got {safety_min}")
    prizes = dict(prizes or {})
    asked = set(order_ids)
    bad = sorted(i for i, p in prizes.items() if i not in asked or not 0 <= p < float("inf"))
    if bad:
        raise ValueError(f"prizes of orders {bad}: each must be a finite prize >= 0 of an order being routed")
    leave_min = sim.now + sim.world.config.dispatch.wave_margin_min
    by_center: dict[int, list[Order]] = {}
    for i in sorted(order_ids):
        by_center.setdefault(pool[i].center, []).append(pool[i])
    routes: list[tuple[int, list[int]]] = []
    for center, orders in sorted(by_center.items()):
        vehicles = available_vehicles(sim, center, leave_min)
        if not vehicles:
            continue
        found = _solve_center(sim, center, orders, vehicles, leave_min, budget, seed, prizes, safety_min)
        for vid, ids in found:
            mine = [trip for trip in routes if trip[0] == vid]  # the vehicle's trips accepted so far
            if sim.price_trips([*mine, (vid, ids)])[vid][1].feasible:
                routes.append((vid, ids))
    routed = {i for _, ids in routes for i in ids}
    return routes, sorted(set(order_ids) - routed)


def _solve_center(
    sim: Simulator,
    center: int,
    orders: Sequence[Order],
    vehicles: Sequence[Vehicle],
    leave_min: float,
    budget: SolverBudget,
    seed: int,
    prizes: Mapping[int, float],
    safety_min: float = 0.0,
) -> list[tuple[int, list[int]]]:
    """One center's VRPTW: PyVRP's best routes, mapped back to vehicle ids and order ids. The orders in
    ``prizes`` are optional with that prize; with fewer vehicles than orders every order is (see the module's
    docstring)."""
    world = sim.world
    loading_min = world.config.orders.pickup_service_min
    keys = np.array([center, *(o.loc for o in orders)], dtype=np.int64)
    is_center = np.zeros(len(keys), dtype=bool)
    is_center[0] = True
    shift_end = max(v.shift_end_min for v in vehicles)
    congestion = mode_congestion(world, leave_min, max(shift_end, leave_min))

    short = len(vehicles) < len(orders)
    # PyVRP counts in integers: distances in metres, or a matrix world's weights as they are (whole units:
    # the EURO objective is their sum); costs so that the smallest unit cost is 100, which keeps them
    # well below PyVRP's penalties for lateness and excess load.
    dist_unit = 1.0 if world.config.graph.kind == "matrix" else DIST_SCALE  # PyVRP units per world unit
    unit_costs = [c for v in vehicles for c in (v.cost_per_km / dist_unit, v.cost_per_hour / 3600.0) if c > 0]
    cost_unit = 100.0 / min(unit_costs, default=1.0)
    # One vehicle type per kind of vehicle (mode, speed, capacity, costs, shift end); one profile per
    # (mode, speed).
    kinds: dict[tuple[Any, ...], list[int]] = {}
    for v in vehicles:
        key = (v.mode, v.speed_factor, v.capacity, v.cost_per_km, v.cost_per_hour, v.shift_end_min)
        kinds.setdefault(key, []).append(v.id)
    profiles: dict[tuple[int, float], int] = {}
    dist_mats: list[Any] = []  # PyVRP's stubs type matrices as ndarray[int]
    time_mats: list[Any] = []
    leave_s = round(leave_min * TIME_SCALE)  # every route starts at the wave (see the module docstring)
    vehicle_types = []
    for ids in kinds.values():
        v = sim.vehicles[ids[0]]
        profile_key = (v.mode, v.speed_factor)
        if profile_key not in profiles:
            profiles[profile_key] = len(dist_mats)
            metres, seconds, _ = profile_matrices(world, keys, v, congestion, is_center)
            dist_mats.append(np.rint(metres * (dist_unit / DIST_SCALE)).astype(np.int64))
            time_mats.append(seconds.astype(np.int64))
        vehicle_types.append(
            pyvrp.VehicleType(
                num_available=len(ids),
                capacity=[v.capacity * LOAD_SCALE],
                tw_early=leave_s,
                tw_late=round(v.shift_end_min * TIME_SCALE),
                start_late=leave_s,
                unit_distance_cost=round(v.cost_per_km / dist_unit * cost_unit),
                unit_duration_cost=round(v.cost_per_hour / 3600.0 * cost_unit),
                profile=profiles[profile_key],
                reload_depots=[0] if short else [],
            )
        )

    to_door_s = np.min([t[0] for t in time_mats], axis=0)  # the fastest kind's trip to each door
    must = {o.id for o, m in zip(sim.pool, sim.must_dispatch(), strict=True) if m}
    prize = world.config.costs.reject_penalty * cost_unit  # a short fleet's prize of an order

    def client_prize(order_id: int) -> int:
        if order_id in prizes:
            return round(cost_unit * prizes[order_id])
        return round(prize * (10.0 if order_id in must else 1.0)) if short else 0

    clients = []
    for j, o in enumerate(orders, start=1):
        release_s = round(max(o.ready_min, leave_min) * TIME_SCALE)
        reach_s = release_s + round(loading_min * TIME_SCALE) + int(to_door_s[j])
        early_s = round(o.earliest_min * TIME_SCALE)
        due_s = round(o.due_min * TIME_SCALE)
        if max(reach_s, early_s) > due_s:
            due_s = max(reach_s, early_s) + round(LATE_SLACK_MIN * TIME_SCALE)
        else:  # plan it safety_min early, but no earlier than it can be reached
            due_s = max(due_s - round(safety_min * TIME_SCALE), reach_s, early_s)
        clients.append(
            pyvrp.Client(
                location=j,
                delivery=[o.size * LOAD_SCALE],
                service_duration=round((o.service_min + loading_min) * TIME_SCALE),
                tw_early=early_s,
                tw_late=due_s,
                release_time=release_s,
                prize=client_prize(o.id),
                required=not short and o.id not in prizes,
            )
        )
    locations = [pyvrp.Location(float(world.xy_km[k, 0]), float(world.xy_km[k, 1])) for k in keys]
    depots = [pyvrp.Depot(location=0)]
    data = pyvrp.ProblemData(locations, clients, depots, vehicle_types, dist_mats, time_mats)
    result = pyvrp.solve(data, budget.criterion(), seed=seed, collect_stats=False, display=False)
    free = {k: list(ids) for k, ids in enumerate(kinds.values())}
    routes = []
    for route in result.best.routes():
        vid = free[route.vehicle_type()].pop(0)
        trip: list[int] = []
        for a in route.schedule():  # a reload at the center ends a trip
            if a.type == pyvrp.ActivityType.CLIENT:
                trip.append(orders[a.idx].id)
            elif trip:
                routes.append((vid, trip))
                trip = []
    return routes


@dataclass(frozen=True)
class WaveOutcome:
    """What one wave sent: the routes, the orders rejected (must go now but no route could take them) and
    the expected cost the wave added (the routes' plans plus rejection penalties)."""

    routes: list[tuple[int, list[int]]]
    rejected: list[int]
    cost: float


def dispatch_wave(
    sim: Simulator,
    order_ids: Sequence[int],
    budget: SolverBudget | None = None,
    seed: int = WAVE_SEED,
    safety_min: float = 0.0,
) -> WaveOutcome:
    """Send the chosen pooled orders, and every order that must go now, as PyVRP's routes (``solve_wave``,
    with its ``safety_min``); an order that must go but fits no route is rejected, any other unrouted order
    waits for the next wave. The one way envs, policies and benchmarks answer a wave decision."""
    must = [o.id for o, m in zip(sim.pool, sim.must_dispatch(), strict=True) if m]
    chosen = sorted(set(int(i) for i in order_ids) | set(must))
    routes, unrouted = solve_wave(sim, chosen, budget, seed, safety_min=safety_min)
    rejected = sorted(set(unrouted) & set(must))
    cost = sim.release(routes, reject=rejected)
    return WaveOutcome(routes, rejected, cost)
