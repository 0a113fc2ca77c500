"""Insertion rules: where a dispatched order's pickup and delivery go in the vehicle's plan.

An ``InsertionRule`` is any callable ``(sim, vehicle_id, order) -> Insertion | None`` (None: no feasible
place). The default, ``CheapestInsertion``, tries every pair of positions and keeps the cheapest feasible
one; ``AppendInsertion`` is the simple alternative (pickup and delivery at the end of the plan).
"""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING, NamedTuple, Protocol

from lastmile_env.sim.plan import PlanEval, evaluate_plan, late_penalty, leg_end, plan_cost
from lastmile_env.sim.types import Order, Stop, StopKind

if TYPE_CHECKING:
    from lastmile_env.sim.simulator import Simulator


TIE = 1e-9  # insertion costs closer than this are equal


class Insertion(NamedTuple):
    """A candidate plan for one vehicle with the new order in it."""

    vehicle: int
    pickup_pos: int  # index of the pickup in the new plan
    delivery_pos: int  # index of the delivery in the new plan
    stops: list[Stop]
    plan: PlanEval
    delta_cost: float  # plan cost increase
    delta_dist_km: float
    eta_min: float  # planned service start at the customer: the promised ETA

    def on_time(self, order: Order) -> bool:
        return self.eta_min <= order.due_min + 1e-9


class InsertionRule(Protocol):
    def __call__(self, sim: Simulator, vehicle_id: int, order: Order) -> Insertion | None: ...


def _with_order(route: list[Stop], order: Order, i: int, j: int) -> list[Stop]:
    """``route`` with the pickup after ``i`` stops and the delivery after ``j >= i`` of the old stops."""
    pickup = Stop(StopKind.PICKUP, order.id, order.center)
    delivery = Stop(StopKind.DELIVERY, order.id, order.loc)
    return [*route[:i], pickup, *route[i:j], delivery, *route[j:]]


def _price(sim: Simulator, vehicle_id: int, order: Order, i: int, j: int) -> Insertion | None:
    vehicle = sim.vehicles[vehicle_id]
    old = sim.plan(vehicle_id)
    stops = _with_order(vehicle.route, order, i, j)
    start_min, start_node, start_load = sim.plan_start(vehicle_id)
    new = evaluate_plan(sim.world, sim.orders, vehicle, stops, start_min, start_node, start_load)
    if not new.feasible:
        return None
    return Insertion(
        vehicle=vehicle_id,
        pickup_pos=i,
        delivery_pos=j + 1,
        stops=stops,
        plan=new,
        delta_cost=new.cost - old.cost,
        delta_dist_km=new.dist_km - old.dist_km,
        eta_min=new.starts_min[j + 1],
    )


def _delta_cost(
    sim: Simulator,
    vehicle_id: int,
    old: PlanEval,
    nodes: list[int],
    order: Order,
    i: int,
    j: int,
    bound: float,
) -> float | None:
    """Cost increase of the insertion ``(i, j)``; None if infeasible or provably not below ``bound``.

    Same arithmetic as ``evaluate_plan`` (it calls the same ``leg_end``), but resumes from the old plan's
    state after ``i`` stops and stops early once the new schedule rejoins the old one (a later old stop
    served at the same time as before: everything after it is unchanged).
    """
    world, orders = sim.world, sim.orders
    vehicle = sim.vehicles[vehicle_id]
    route = vehicle.route
    dist_km = world.dist_km
    start, target = old.frees_min[0], old.cost + bound
    t, node = old.frees_min[i], nodes[i]
    dist, late = old.cum_dist_km[i], old.cum_late_cost[i]

    def lower_bound(done: int) -> float:
        """Bound on the new cost once ``done`` old stops are served: the old plan's remaining legs are still
        to drive (or longer ones, by the triangle inequality), its remaining stops are no earlier (FIFO), so
        their lateness and the return are no smaller."""
        rest_km = old.dist_km - old.cum_dist_km[done]
        rest_late = old.late_cost - old.cum_late_cost[done]
        return plan_cost(vehicle, dist + rest_km, max(t, old.end_min) - start, late + rest_late)

    dist += dist_km[node][order.center]
    node, _, _, t = leg_end(world, vehicle, order, Stop(StopKind.PICKUP, order.id, order.center), node, t)
    for m in range(i, j):
        stop = route[m]
        o = orders[stop.order]
        dist += dist_km[node][stop.loc]
        node, _, begin, t = leg_end(world, vehicle, o, stop, node, t)
        if stop.kind == StopKind.DELIVERY:
            late += late_penalty(world, o, begin)
        if lower_bound(m + 1) >= target:
            return None
    dist += dist_km[node][order.loc]
    node, _, begin, t = leg_end(world, vehicle, order, Stop(StopKind.DELIVERY, order.id, order.loc), node, t)
    late += late_penalty(world, order, begin)
    for m in range(j, len(route) + 1):
        if m > j and t <= old.frees_min[m]:  # rejoined the old schedule after old stop m
            end = old.end_min
            dist += old.dist_km - old.cum_dist_km[m]
            late += old.late_cost - old.cum_late_cost[m]
            break
        if m == len(route):
            end = world.travel_arrival_min(node, vehicle.home, t, vehicle.speed_factor)
            dist += dist_km[node][vehicle.home]
            break
        stop = route[m]
        o = orders[stop.order]
        dist += dist_km[node][stop.loc]
        node, _, begin, t = leg_end(world, vehicle, o, stop, node, t)
        if stop.kind == StopKind.DELIVERY:
            late += late_penalty(world, o, begin)
        if lower_bound(m + 1) >= target:
            return None
    if end > vehicle.shift_end_min + 1e-9:
        return None
    return plan_cost(vehicle, dist, end - start, late) - old.cost


class CheapestInsertion:
    """Cheapest feasible insertion over all pickup/delivery position pairs (pickup before delivery).

    Exact branch and bound: candidates are priced in order of a lower bound on their added cost (added
    distance, plus the driver time by which the plan, done with no waiting at the day's lowest congestion,
    would outlast the current return; under FIFO travel times nothing gets earlier, so lateness only grows),
    and the search stops once that bound reaches the best cost found. Capacity is checked on the plan's loads
    before pricing; the winner is priced again by ``evaluate_plan``, the reference schedule.
    """

    def __call__(self, sim: Simulator, vehicle_id: int, order: Order) -> Insertion | None:
        vehicle = sim.vehicles[vehicle_id]
        old = sim.plan(vehicle_id)
        if not old.feasible:
            return None
        world = sim.world
        route = vehicle.route
        dist, time = world.dist_km, world.time_min
        _, start_node, _ = sim.plan_start(vehicle_id)
        nodes = [start_node, *(s.loc for s in route), vehicle.home]
        loads = old.loads
        room = vehicle.capacity - order.size
        p, d = order.center, order.loc
        # Lower bound on the new return time: no waiting, every leg at the day's lowest multiplier.
        per_ff_min = world.congestion_floor / vehicle.speed_factor
        busy_min = (
            old.frees_min[0] + old.service_min + world.config.orders.pickup_service_min + order.service_min
        )
        busy_min += sum(time[a][b] for a, b in itertools.pairwise(nodes)) * per_ff_min
        per_km, per_min = vehicle.cost_per_km, vehicle.cost_per_hour / 60.0

        def bound(added_km: float, added_ff_min: float) -> float:
            return added_km * per_km + max(0.0, busy_min + added_ff_min * per_ff_min - old.end_min) * per_min

        candidates: list[tuple[float, int, int]] = []
        for i in range(len(route) + 1):
            if loads[i] > room:
                continue
            a, b = nodes[i], nodes[i + 1]
            candidates.append(
                (
                    bound(
                        dist[a][p] + dist[p][d] + dist[d][b] - dist[a][b],
                        time[a][p] + time[p][d] + time[d][b] - time[a][b],
                    ),
                    i,
                    i,
                )
            )
            pickup_km = dist[a][p] + dist[p][b] - dist[a][b]
            pickup_min = time[a][p] + time[p][b] - time[a][b]
            for j in range(i + 1, len(route) + 1):
                if loads[j] > room:
                    break
                c, e = nodes[j], nodes[j + 1]
                candidates.append(
                    (
                        bound(
                            pickup_km + dist[c][d] + dist[d][e] - dist[c][e],
                            pickup_min + time[c][d] + time[d][e] - time[c][e],
                        ),
                        i,
                        j,
                    )
                )
        candidates.sort()
        # Ties (within TIE) go to the earliest positions, whatever order the bound priced them in.
        best, best_delta = (math.inf, math.inf), math.inf
        for lower, i, j in candidates:
            if lower > best_delta + TIE:
                break
            delta = _delta_cost(sim, vehicle_id, old, nodes, order, i, j, best_delta + TIE)
            if delta is not None and (
                delta < best_delta - TIE or (delta <= best_delta + TIE and (i, j) < best)
            ):
                best, best_delta = (i, j), min(delta, best_delta)
        return None if best_delta == math.inf else _price(sim, vehicle_id, order, int(best[0]), int(best[1]))


class AppendInsertion:
    """Pickup and delivery appended at the end of the plan (a simple, order-preserving rule)."""

    def __call__(self, sim: Simulator, vehicle_id: int, order: Order) -> Insertion | None:
        n = len(sim.vehicles[vehicle_id].route)
        return _price(sim, vehicle_id, order, n, n)
