"""A full-information reference: the day's orders all known in advance, routed once by PyVRP.

``hindsight_bound(world, sim.orders)`` takes a finished episode's orders, gives PyVRP every one of them at
time 0 (each parcel released at its ready time, delivered within its window; each return collected within
its window and brought back to its center) as a prize-collecting
multi-trip VRP (``build_multitrip``: an order PyVRP does not serve is dropped at the rejection penalty),
and prices PyVRP's routes with the simulator's ``evaluate_plan``, so the result is in exactly the
simulator's cost units: distance, driver time, lateness, rejections.

A vehicle's route is priced as *trips*: it is cut wherever the vehicle is back home and empty before a
pickup at its center, and each trip is a plan of its own that starts when the vehicle must leave home
(no waiting for the trip's first parcels, and later still while that removes waiting at doors without
delaying the return), so idle time at the center between trips is not charged, as in the simulator.

This is a *heuristic* bound, not a proven lower bound: it is PyVRP's best solution within the time limit,
of a model with congestion-averaged travel times, one center per trip, waiting between trips charged and
one address per drone sortie; a trip that is infeasible for the simulator (back after the shift end, or a
sortie beyond a drone's range) sheds orders as rejections. Between two trips a drone recharges. A
policy can come out below it. Report the gap as ``(policy_cost - hindsight_cost) / hindsight_cost``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyvrp
from pyvrp import Activity, ActivityType
from pyvrp.stop import MaxIterations, MaxRuntime, StoppingCriterion

from lastmile_env import kernels
from lastmile_env.sim.plan import PlanEval, evaluate_plan
from lastmile_env.sim.types import Order, Stop, StopKind, Vehicle, has_battery
from lastmile_env.sim.world import World
from lastmile_env.vrp_travel import (
    COST_SCALE,
    DIST_SCALE,
    LOAD_SCALE,
    TIME_SCALE,
    door,
    fastest_min,
    mode_congestion,
    profile_matrices,
)

UNREACHABLE = 10**9  # distance and duration of an edge no trip may use
LATE_SLACK_MIN = 30.0  # how far past an unreachable due time the model still lets a parcel be delivered


@dataclass(frozen=True)
class HindsightResult:
    """The full-information plan of a day and its price in the simulator's units.

    ``routes[v]`` is vehicle ``v``'s trips (stop lists, each priced as a plan starting at
    ``trip_starts_min[v][t]``); ``cost`` is the sum of the other cost fields.
    """

    cost: float
    distance_km: float
    distance_cost: float
    driver_time_cost: float
    lateness_cost: float
    rejection_cost: float
    n_served: int
    n_dropped: int
    n_on_time: int  # served by the due time
    solver_time_s: float
    routes: list[list[list[Stop]]]
    trip_starts_min: list[list[float]]
    proven_optimal: bool = False

    @property
    def on_time_rate(self) -> float:
        """On-time deliveries over all orders (a dropped order is not on time), as ``Simulator.summary``."""
        total = self.n_served + self.n_dropped
        return self.n_on_time / total if total else math.nan


def split_trips(vehicle: Vehicle, stops: Sequence[Stop], orders: Sequence[Order]) -> list[list[Stop]]:
    """A route cut before every pickup at the vehicle's center made with nothing on board."""
    trips: list[list[Stop]] = []
    load = 0
    for s in stops:
        if not trips or (load == 0 and s.kind == StopKind.PICKUP and s.loc == vehicle.home):
            trips.append([])
        trips[-1].append(s)
        load += orders[s.order].size if s.kind == StopKind.PICKUP else -orders[s.order].size
    return trips


def price_trip(
    world: World, orders: Sequence[Order], vehicle: Vehicle, trip: Sequence[Stop], free_min: float
) -> PlanEval:
    """The trip as a plan from the vehicle's center, starting when it must: not before ``free_min``, not
    waiting for the first parcels (loaded back to back), then later while that lowers the cost without a
    later return (less waiting at the doors)."""
    pickup_min = world.config.orders.pickup_service_min
    start = free_min
    for m, s in enumerate(trip):
        if s.kind != StopKind.PICKUP or s.loc != vehicle.home:
            break
        start = max(start, orders[s.order].ready_min - m * pickup_min)
    plan = evaluate_plan(world, orders, vehicle, trip, start, vehicle.home, 0)
    for _ in range(len(trip)):
        waits = plan.starts_min - plan.arrive_min
        first = next((float(w) for w in waits if w > 1e-9), 0.0)
        if first <= 0.0:
            break
        later = evaluate_plan(world, orders, vehicle, trip, start + first, vehicle.home, 0)
        if not (later.cost < plan.cost - 1e-9 and later.end_min <= plan.end_min + 1e-9):
            break
        start, plan = start + first, later
    return plan


@dataclass(frozen=True)
class MultiTrip:
    """A PyVRP multi-trip instance: ``order_ids[c]`` is client ``c``'s order; vehicle type ``k`` is vehicle
    ``k``."""

    data: pyvrp.ProblemData
    order_ids: list[int]


def build_multitrip(
    world: World, orders: Sequence[Order], vehicles: Sequence[Vehicle], prize: float, late_slack_min: float
) -> MultiTrip:
    """The whole day as a prize-collecting multi-trip VRP with release times and time windows.

    Each order is an optional client (prize ``prize``) released at its ready time, delivered within
    ``[earliest, due]`` (a due time that cannot be met even by a direct delivery is widened to that arrival +
    ``late_slack_min``), its service the time at the door plus its loading time at the center. A return
    (``Order.is_return``) is a client with a *pickup* amount at its address (no release time), collected
    within ``[ready, due]`` (widened the same way) and unloaded at the end of the trip at its center
    (``Order.loc``: the trip's center), its service the time at the door plus the unloading time. A vehicle
    starts and ends at its center and may reload at any center; a trip leaving a center only serves that
    center's orders (every other edge is unreachable: a center to another center's address, between
    addresses of different centers). Each vehicle travels by its mode (``lastmile_env.vrp_travel``); one
    with a battery range reloads only at home, and each of its trips is one sortie to one address within
    range, after the recharge.

    The objective is ours: km and driver time over each route's span (PyVRP cannot leave idle time at the
    center between trips unpaid, which the pricing by trips does, so it is a little conservative there).
    Units and travel times as in ``reopt.build_pdp``.
    """
    n_depots = world.n_depots
    pickup_min = world.config.orders.pickup_service_min
    # Locations: the centers, then one per order.
    keys = np.array([*range(n_depots), *(door(o) for o in orders)], dtype=np.int64)
    center_of = np.array([*range(n_depots), *(home_center(o) for o in orders)], dtype=np.int64)
    is_depot = np.arange(len(keys)) < n_depots
    # Allowed: into a center from anywhere; out of a center or an address only to its own center's addresses.
    allowed = is_depot[None, :] | (center_of[:, None] == center_of[None, :])
    locations = [pyvrp.Location(float(world.xy_km[k, 0]), float(world.xy_km[k, 1])) for k in keys]
    congestion = mode_congestion(world, 0.0, max((v.shift_end_min for v in vehicles), default=0.0))
    # One profile per kind of vehicle (mode, speed), and one per vehicle with a battery range (its sorties).
    profiles: dict[tuple[int, float, int], int] = {}
    dist_mats: list[Any] = []  # PyVRP's stubs type matrices as ndarray[int]
    time_mats: list[Any] = []
    vehicle_profile = []
    for v in vehicles:
        key = (v.mode, v.speed_factor, v.id if has_battery(v) else -1)
        if key not in profiles:
            profiles[key] = len(dist_mats)
            d, t, ok = profile_matrices(world, keys, v, congestion, is_depot)
            ok &= allowed
            dist_mats.append(np.where(ok, d, UNREACHABLE).astype(np.int64))
            time_mats.append(np.where(ok, t, UNREACHABLE).astype(np.int64))
        vehicle_profile.append(profiles[key])
    clients = []
    for c, o in enumerate(orders):
        if o.is_return:
            reach = max(o.ready_min, fastest_min(world, congestion, vehicles, o.loc, o.center))
            due = o.due_min if reach <= o.due_min else reach + late_slack_min
            clients.append(
                pyvrp.Client(
                    location=n_depots + c,
                    delivery=[0],
                    pickup=[o.size * LOAD_SCALE],
                    service_duration=round((o.service_min + pickup_min) * TIME_SCALE),
                    tw_early=round(o.ready_min * TIME_SCALE),
                    tw_late=round(due * TIME_SCALE),
                    prize=round(prize * COST_SCALE),
                    required=False,
                )
            )
            continue
        drive = fastest_min(world, congestion, vehicles, o.center, o.loc)
        reach = max(o.earliest_min, o.ready_min + pickup_min + drive)
        due = o.due_min if reach <= o.due_min else reach + late_slack_min
        clients.append(
            pyvrp.Client(
                location=n_depots + c,
                delivery=[o.size * LOAD_SCALE],
                service_duration=round((o.service_min + pickup_min) * TIME_SCALE),
                tw_early=round(o.earliest_min * TIME_SCALE),
                tw_late=round(due * TIME_SCALE),
                release_time=round(o.ready_min * TIME_SCALE),
                prize=round(prize * COST_SCALE),
                required=False,
            )
        )
    vehicle_types = [
        pyvrp.VehicleType(
            num_available=1,
            capacity=[v.capacity * LOAD_SCALE],
            start_depot=v.home,
            end_depot=v.home,
            tw_late=math.floor(v.shift_end_min * TIME_SCALE),
            unit_distance_cost=round(v.cost_per_km / DIST_SCALE * COST_SCALE),
            unit_duration_cost=round(v.cost_per_hour / 60.0 / TIME_SCALE * COST_SCALE),
            profile=vehicle_profile[k],
            # A vehicle with a battery range reloads (and recharges) only at home: its sorties start there.
            reload_depots=[v.home] if v.range_km < math.inf else list(range(n_depots)),
            name=str(v.id),
        )
        for k, v in enumerate(vehicles)
    ]
    depots = [pyvrp.Depot(location=c) for c in range(n_depots)]
    data = pyvrp.ProblemData(locations, clients, depots, vehicle_types, dist_mats, time_mats)
    return MultiTrip(data, [o.id for o in orders])


def home_center(order: Order) -> int:
    """The center an order's trip leaves from: its parcel's, or the one a return is brought back to."""
    return order.loc if order.is_return else order.center


def one_order_trips(
    instance: MultiTrip, orders: Sequence[Order], vehicles: Sequence[Vehicle]
) -> pyvrp.Solution:
    """A starting solution serving every order in a trip of its own: by ready time, round-robin over the
    vehicles of the order's center (over all vehicles for a center without any), leaving out vehicles with
    a battery range."""
    homed: dict[int, list[int]] = {}
    for v in vehicles:
        homed.setdefault(v.home, []).append(v.id)
    every = [v.id for v in vehicles]
    turn: dict[int, int] = {}
    activities: list[list[Activity]] = [[] for _ in vehicles]
    for c in sorted(
        range(len(instance.order_ids)), key=lambda c: (orders[instance.order_ids[c]].ready_min, c)
    ):
        center = home_center(orders[instance.order_ids[c]])
        # not a vehicle with a battery range: its sorties are left to PyVRP
        unlimited = [vid for vid in homed.get(center, every) if vehicles[vid].range_km == math.inf]
        pool = unlimited or [vid for vid in every if vehicles[vid].range_km == math.inf] or every
        vid = pool[turn.get(center, 0) % len(pool)]
        turn[center] = turn.get(center, 0) + 1
        if activities[vid] or center != vehicles[vid].home:
            activities[vid].append(Activity(ActivityType.DEPOT, center))
        activities[vid].append(Activity(ActivityType.CLIENT, c))
    routes = [pyvrp.Route(instance.data, acts, vid) for vid, acts in enumerate(activities) if acts]
    return pyvrp.Solution(instance.data, routes)


def multitrip_stops(
    instance: MultiTrip, orders: Sequence[Order], solution: pyvrp.Solution
) -> list[list[Stop]]:
    """Each vehicle's route as simulator stops: per trip, the pickups at its center by ready time, then the
    deliveries and the collections of returns in PyVRP's order, then the returns unloaded at their center."""
    routes: list[list[Stop]] = [[] for _ in range(instance.data.num_vehicle_types)]
    for route in solution.routes():
        trips: dict[int, list[int]] = {}
        for a in route.schedule():
            if a.is_client():
                trips.setdefault(a.trip, []).append(instance.order_ids[a.idx])
        for t in sorted(trips):
            ids = trips[t]
            returns = [i for i in ids if orders[i].is_return]
            loaded = sorted(
                (i for i in ids if not orders[i].is_return), key=lambda i: (orders[i].ready_min, i)
            )
            stops = routes[route.vehicle_type()]
            stops += [Stop(StopKind.PICKUP, i, orders[i].center) for i in loaded]
            stops += [
                Stop(StopKind.PICKUP if orders[i].is_return else StopKind.DELIVERY, i, door(orders[i]))
                for i in ids
            ]
            stops += [Stop(StopKind.DELIVERY, i, orders[i].loc) for i in returns]
    return routes


def hindsight_bound(
    world: World,
    orders: Sequence[Order],
    time_limit_s: float = 2.0,
    seed: int = 0,
    max_iterations: int | None = None,
) -> HindsightResult:
    """Route every order of the day with full information and price the routes with the simulator.

    Args:
        world: the scenario's world.
        orders: the day's orders (e.g. a finished simulator's ``sim.orders``); only their data is read.
        time_limit_s: PyVRP's wall-clock budget.
        seed: PyVRP's seed.
        max_iterations: stop PyVRP after this many iterations instead (reproducible across machines).
    """
    vehicles = world.make_vehicles()
    penalty = world.config.costs.reject_penalty
    instance = build_multitrip(world, orders, vehicles, penalty, LATE_SLACK_MIN)
    stop: StoppingCriterion = (
        MaxRuntime(time_limit_s) if max_iterations is None else MaxIterations(max_iterations)
    )
    tic = time.perf_counter()
    initial = one_order_trips(instance, orders, vehicles)
    solution = pyvrp.solve(
        instance.data, stop, seed=seed, collect_stats=False, display=False, initial_solution=initial
    ).best
    solver_s = time.perf_counter() - tic

    routes: list[list[list[Stop]]] = []
    starts: list[list[float]] = []
    distance = distance_cost = driver = lateness = 0.0
    served = on_time = 0
    for v, stops in zip(vehicles, multitrip_stops(instance, orders, solution), strict=True):
        routes.append([])
        starts.append([])
        free = 0.0
        for trip in split_trips(v, stops, orders):
            plan = price_trip(world, orders, v, trip, free)
            while not plan.feasible and trip:  # shed the last delivery until back in time (and in capacity)
                last = next(s.order for s in reversed(trip) if s.kind == StopKind.DELIVERY)
                trip = [s for s in trip if s.order != last]
                plan = price_trip(world, orders, v, trip, free)
            if not trip:
                continue
            routes[-1].append(trip)
            starts[-1].append(float(plan.frees_min[0]))
            # the next trip leaves no earlier than the vehicle is back (and, with a battery, recharged)
            free = kernels.stop_free(plan.end_min, plan.end_min, 0.0, v.recharge_min, v.recharge_min > 0)
            served += len(trip) // 2
            deliveries = np.isfinite(plan.stop_due_min)
            on_time += int(np.sum(deliveries & (plan.starts_min <= plan.stop_due_min + 1e-9)))
            distance += plan.dist_km
            distance_cost += plan.dist_km * v.cost_per_km
            lateness += plan.late_cost
            driver += plan.cost - plan.dist_km * v.cost_per_km - plan.late_cost
    dropped = len(orders) - served
    return HindsightResult(
        cost=distance_cost + driver + lateness + dropped * penalty,
        distance_km=distance,
        distance_cost=distance_cost,
        driver_time_cost=driver,
        lateness_cost=lateness,
        rejection_cost=dropped * penalty,
        n_served=served,
        n_dropped=dropped,
        n_on_time=on_time,
        solver_time_s=solver_s,
        routes=routes,
        trip_starts_min=starts,
    )
