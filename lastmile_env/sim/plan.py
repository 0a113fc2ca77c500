"""Evaluating a vehicle's plan: the one schedule computation that execution and insertion both use.

A plan starts where and when the vehicle is free, visits its stops in order (waiting for a parcel to be ready
at a pickup, for a window to open at a delivery), and ends back at the vehicle's center. Its cost is
distance + driver time (start to return) + lateness penalties of its deliveries.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from lastmile_env.sim.types import Order, Stop, StopKind, Vehicle
from lastmile_env.sim.world import World


class PlanEval(NamedTuple):
    """The schedule and cost of a plan. Index ``m`` of the prefix lists is the state after ``m`` stops."""

    cost: float
    dist_km: float
    end_min: float  # back at the center
    late_cost: float
    starts_min: list[float]  # service start of each stop
    loads: list[int]  # load after m stops (loads[0] is the start load)
    frees_min: list[float]  # time free after m stops (frees_min[0] is the start)
    cum_dist_km: list[float]  # km driven to reach stop m
    cum_late_cost: list[float]  # lateness cost of the first m stops
    service_min: float  # time spent serving stops (loading and at the door)
    feasible: bool  # capacity respected and back by the vehicle's shift end


def leg_end(
    world: World, vehicle: Vehicle, order: Order | None, stop: Stop | None, src: int, depart_min: float
) -> tuple[int, float, float, float]:
    """Drive from ``src`` to a stop (or home when ``stop`` is None) and serve it.

    Returns ``(destination, arrive_min, service_start_min, free_min)``. The simulator commits legs with this
    very function, so a plan's schedule is exactly what execution will do.
    """
    dst = vehicle.home if stop is None else stop.loc
    arrive = world.travel_arrival_min(src, dst, depart_min, vehicle.speed_factor)
    if stop is None or order is None:
        return dst, arrive, arrive, arrive
    if stop.kind == StopKind.PICKUP:
        begin = arrive if arrive >= order.ready_min else order.ready_min
        return dst, arrive, begin, begin + world.config.orders.pickup_service_min
    begin = arrive if arrive >= order.earliest_min else order.earliest_min
    return dst, arrive, begin, begin + order.service_min


def late_penalty(world: World, order: Order, start_min: float) -> float:
    """Lateness cost of delivering ``order`` at ``start_min`` (0 when on time)."""
    late = start_min - order.due_min
    if late <= 1e-9:
        return 0.0
    costs = world.config.costs
    return costs.late_fixed + costs.late_per_min * late


def evaluate_plan(
    world: World,
    orders: Sequence[Order],
    vehicle: Vehicle,
    stops: Sequence[Stop],
    start_min: float,
    start_node: int,
    start_load: int,
) -> PlanEval:
    """Schedule ``stops`` from ``(start_min, start_node, start_load)`` and price the plan."""
    dist_km = world.dist_km
    t, node, load = start_min, start_node, start_load
    dist = 0.0
    late_cost = 0.0
    starts: list[float] = []
    loads, frees, cum_dist, cum_late = [load], [t], [0.0], [0.0]
    fits = load <= vehicle.capacity
    service = 0.0
    pickup_service = world.config.orders.pickup_service_min
    for stop in stops:
        order = orders[stop.order]
        dist += dist_km[node][stop.loc]
        node, _, begin, t = leg_end(world, vehicle, order, stop, node, t)
        starts.append(begin)
        if stop.kind == StopKind.PICKUP:
            load += order.size
            fits = fits and load <= vehicle.capacity
            service += pickup_service
        else:
            load -= order.size
            late_cost += late_penalty(world, order, begin)
            service += order.service_min
        loads.append(load)
        frees.append(t)
        cum_dist.append(dist)
        cum_late.append(late_cost)
    dist += dist_km[node][vehicle.home]
    end = world.travel_arrival_min(node, vehicle.home, t, vehicle.speed_factor)
    cost = plan_cost(vehicle, dist, end - start_min, late_cost)
    feasible = fits and end <= vehicle.shift_end_min + 1e-9
    return PlanEval(cost, dist, end, late_cost, starts, loads, frees, cum_dist, cum_late, service, feasible)


def plan_cost(vehicle: Vehicle, dist_km: float, duty_min: float, late_cost: float) -> float:
    """Cost of a plan: distance, driver time from its start to the return, lateness penalties."""
    return dist_km * vehicle.cost_per_km + duty_min * vehicle.cost_per_hour / 60.0 + late_cost
