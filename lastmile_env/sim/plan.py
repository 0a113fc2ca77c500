"""Evaluating a vehicle's plan: the one schedule computation that execution and insertion both use.

A plan starts where and when the vehicle is free, visits its stops in order (waiting for a parcel to be ready
at a pickup, for a window to open at a delivery), and ends back at the vehicle's center. Its cost is
distance + driver time (start to return) + lateness penalties of its deliveries. The arithmetic is in
``lastmile_env.kernels`` (compiled); this module turns stops into its arrays and back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from lastmile_env import kernels
from lastmile_env.sim.types import Order, Stop, StopKind, Vehicle
from lastmile_env.sim.world import World


class PlanEval(NamedTuple):
    """The schedule and cost of a plan.

    Per-stop arrays have one entry per stop; prefix arrays (``loads``, ``frees_min``, ``cum_*``) have
    ``k + 1``: index ``m`` is the state after ``m`` stops.
    """

    cost: float
    dist_km: float
    end_min: float  # back at the center
    late_cost: float
    service_min: float  # time spent serving stops (loading and at the door)
    feasible: bool  # capacity respected and back by the vehicle's shift end
    nodes: np.ndarray  # (k + 2,) start node, the stops' key indices, home
    stop_open_min: np.ndarray  # (k,) parcel ready (pickup) or window start (delivery)
    stop_due_min: np.ndarray  # (k,) due time (inf for pickups)
    stop_service_min: np.ndarray  # (k,)
    stop_load_delta: np.ndarray  # (k,) +size at a pickup, -size at a delivery
    arrive_min: np.ndarray  # (k,)
    starts_min: np.ndarray  # (k,) service start of each stop
    frees_min: np.ndarray  # (k + 1,) time free after m stops (frees_min[0] is the start)
    loads: np.ndarray  # (k + 1,) load after m stops (loads[0] is the start load)
    cum_dist_km: np.ndarray  # (k + 1,) km driven to reach stop m
    cum_late_cost: np.ndarray  # (k + 1,) lateness cost of the first m stops


def plan_cost(vehicle: Vehicle, dist_km: float, duty_min: float, late_cost: float) -> float:
    """Cost of a plan: distance, driver time from its start to the return, lateness penalties."""
    return dist_km * vehicle.cost_per_km + duty_min * vehicle.cost_per_hour / 60.0 + late_cost


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
    k = len(stops)
    nodes = np.empty(k + 2, dtype=np.int64)
    open_min, due_min, service_min = np.empty(k), np.empty(k), np.empty(k)
    load_delta = np.empty(k, dtype=np.int64)
    pickup_service = world.config.orders.pickup_service_min
    nodes[0], nodes[k + 1] = start_node, vehicle.home
    for m, stop in enumerate(stops):
        order = orders[stop.order]
        nodes[m + 1] = stop.loc
        if stop.kind == StopKind.PICKUP:
            open_min[m], due_min[m], service_min[m], load_delta[m] = (
                order.ready_min,
                math.inf,
                pickup_service,
                order.size,
            )
        else:
            open_min[m], due_min[m], service_min[m], load_delta[m] = (
                order.earliest_min,
                order.due_min,
                order.service_min,
                -order.size,
            )
    late_fixed, late_per_min = world.late_costs
    arrive, begin, free, load, cum_dist, cum_late, end, service = kernels.schedule(
        world.time_arr, world.dist_arr, world.mults, world.config.shift_start_hour, vehicle.speed_factor,
        vehicle.home, start_min, start_node, start_load, nodes[1 : k + 1], open_min, due_min, service_min,
        load_delta, late_fixed, late_per_min,
    )  # fmt: skip
    dist = float(cum_dist[k]) + world.dist_km[int(nodes[k])][vehicle.home]
    late = float(cum_late[k])
    end = float(end)
    feasible = int(load.max()) <= vehicle.capacity and end <= vehicle.shift_end_min + 1e-9
    return PlanEval(
        cost=plan_cost(vehicle, dist, end - start_min, late),
        dist_km=dist,
        end_min=end,
        late_cost=late,
        service_min=float(service),
        feasible=feasible,
        nodes=nodes,
        stop_open_min=open_min,
        stop_due_min=due_min,
        stop_service_min=service_min,
        stop_load_delta=load_delta,
        arrive_min=arrive,
        starts_min=begin,
        frees_min=free,
        loads=load,
        cum_dist_km=cum_dist,
        cum_late_cost=cum_late,
    )
