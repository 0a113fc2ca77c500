"""Insertion rules: where a dispatched order's pickup and delivery go in the vehicle's plan.

An ``InsertionRule`` is any callable ``(sim, vehicle_id, order) -> Insertion | None`` (None: no feasible
place). The default, ``CheapestInsertion``, tries every pair of positions and keeps the cheapest feasible
one; ``AppendInsertion`` is the simple alternative (pickup and delivery at the end of the plan).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple, Protocol

from lastmile_env.sim.plan import PlanEval, evaluate_plan
from lastmile_env.sim.types import Order, Stop, StopKind

if TYPE_CHECKING:
    from lastmile_env.sim.simulator import Simulator


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


class CheapestInsertion:
    """Cheapest feasible insertion over all pickup/delivery position pairs (pickup before delivery).

    Exact: candidates are priced in order of their added distance, which is a lower bound on the added cost
    (under FIFO travel times inserting stops never makes the return or any delivery earlier), and the search
    stops once that bound exceeds the best cost found. Capacity is checked on the plan's loads before pricing.
    """

    def __call__(self, sim: Simulator, vehicle_id: int, order: Order) -> Insertion | None:
        vehicle = sim.vehicles[vehicle_id]
        old = sim.plan(vehicle_id)
        if not old.feasible:
            return None
        route = vehicle.route
        dist = sim.world.dist_km
        _, start_node, _ = sim.plan_start(vehicle_id)
        nodes = [start_node, *(s.loc for s in route), vehicle.home]
        loads = old.loads
        room = vehicle.capacity - order.size
        p, d = order.center, order.loc
        candidates: list[tuple[float, int, int]] = []
        for i in range(len(route) + 1):
            if loads[i] > room:
                continue
            a, b = nodes[i], nodes[i + 1]
            candidates.append((dist[a][p] + dist[p][d] + dist[d][b] - dist[a][b], i, i))
            added_pickup = dist[a][p] + dist[p][b] - dist[a][b]
            for j in range(i + 1, len(route) + 1):
                if loads[j] > room:
                    break
                c, e = nodes[j], nodes[j + 1]
                candidates.append((added_pickup + dist[c][d] + dist[d][e] - dist[c][e], i, j))
        candidates.sort()
        best: Insertion | None = None
        for added_km, i, j in candidates:
            if best is not None and added_km * vehicle.cost_per_km >= best.delta_cost - 1e-12:
                break
            found = _price(sim, vehicle_id, order, i, j)
            if found is not None and (best is None or found.delta_cost < best.delta_cost - 1e-12):
                best = found
        return best


class AppendInsertion:
    """Pickup and delivery appended at the end of the plan (a simple, order-preserving rule)."""

    def __call__(self, sim: Simulator, vehicle_id: int, order: Order) -> Insertion | None:
        n = len(sim.vehicles[vehicle_id].route)
        return _price(sim, vehicle_id, order, n, n)
