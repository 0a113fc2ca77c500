"""The client side of the dispatch API, built on the simulator: a decision point as a request, a response
applied back. The parity test and the load benchmark drive the server with these.

``snapshot_request(sim)`` serializes exactly what a live system would know at the simulator's pending
decision: the time, every vehicle (fleet slot id, node, load, stop under way, plan; a drone's km flown since
its last charge), the open orders those plans refer to, the new order and the day's counters.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import numpy as np

from agents.base import DEFER, REJECT, Policy, apply
from lastmile_env.sim.simulator import Simulator
from lastmile_env.sim.types import Order, ServiceOption, Stop, StopKind, has_battery


def _node(sim: Simulator, key: int) -> int | str:
    node: Hashable = sim.world.matrix.nodes[key]
    return int(node) if isinstance(node, int | np.integer) else str(node)


def _stop(stop: Stop) -> dict[str, str]:
    return {"order_id": f"o{stop.order}", "kind": "pickup" if stop.kind == StopKind.PICKUP else "delivery"}


def _places(sim: Simulator, order: Order) -> dict[str, Any]:
    """An order's ``kind`` (returns only: a delivery is the default), ``node`` (the customer's: a
    delivery's address, a return's collection) and ``center``."""
    if order.is_return:
        return {"kind": "return", "node": _node(sim, order.center), "center": order.loc}
    return {"node": _node(sim, order.loc), "center": order.center}


def snapshot_request(sim: Simulator, counters: bool = True) -> dict[str, Any]:
    """The ``POST /v1/dispatch`` body for the simulator's pending order (orders are ``o<id>``, vehicles
    ``v<index>``: the simulator must run the server's scenario with its whole fleet)."""
    order = sim.current
    if order is None:
        raise ValueError("no order is pending a decision")
    vehicles: list[dict[str, Any]] = []
    referenced: set[int] = set()
    for v in sim.vehicles:
        entry: dict[str, Any] = {
            "id": f"v{v.id}",
            "type": v.type_name,
            "capacity": v.capacity,
            "node": _node(sim, v.node),
            "load": v.load,
            "stops": [_stop(s) for s in v.route],
        }
        referenced.update(s.order for s in v.route)
        if v.current is not None:
            entry["current_stop"] = _stop(v.current)
            referenced.add(v.current.order)
        if v.current is not None or v.returning:
            entry["free_at_min"] = v.free_min
        if v.returning:
            entry["returning"] = True
        if v.flown_km > 0.0 and has_battery(v):  # a battery's state
            entry["flown_km"] = v.flown_km
        vehicles.append(entry)
    orders = []
    for o in (sim.orders[i] for i in sorted(referenced)):
        entry = {"id": f"o{o.id}", **_places(sim, o)}
        entry.update(
            size=o.size,
            ready_min=o.ready_min,
            earliest_min=o.earliest_min,
            due_min=o.due_min,
            service_min=o.service_min,
            arrival_min=o.arrival_min,
        )
        orders.append(entry)
    new: dict[str, Any] = {
        "id": f"o{order.id}",
        **_places(sim, order),
        "size": order.size,
        "arrival_min": order.arrival_min,
        "ready_min": order.ready_min,
        "service_min": order.service_min,
    }
    if order.option == ServiceOption.WINDOW or order.is_return:
        new["window"] = {"start_min": order.earliest_min, "end_min": order.due_min}
    else:
        new["deadline_min"] = order.due_min
    body: dict[str, Any] = {"now_min": sim.now, "vehicles": vehicles, "orders": orders, "new_order": new}
    if counters:
        body["counters"] = {
            "orders_arrived": sim.n_arrived,
            "on_time": sim.n_on_time,
            "late": sim.n_late,
            "rejected": sim.n_rejected,
        }
    return body


def apply_response(sim: Simulator, response: dict[str, Any]) -> int:
    """Carry out a ``/v1/dispatch`` response on the simulator; returns it as a policy decision (vehicle
    index, ``REJECT`` or ``DEFER``)."""
    decision = {"reject": REJECT, "defer": DEFER}.get(response["decision"])
    if decision is None:
        decision = int(str(response["vehicle_id"]).removeprefix("v"))
    apply(sim, decision)
    return decision


def record_requests(sim: Simulator, policy: Policy, limit: int | None = None) -> list[dict[str, Any]]:
    """Requests of the decision points of an episode played by ``policy`` (realistic load-test bodies)."""
    requests: list[dict[str, Any]] = []
    policy.reset(0)
    while (limit is None or len(requests) < limit) and sim.advance() is not None:
        requests.append(snapshot_request(sim))
        apply(sim, policy.act(sim))
    return requests
