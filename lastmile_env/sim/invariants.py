"""Invariants of a running simulation, checked by the tests and after every step in debug mode."""

from __future__ import annotations

import math
from collections import Counter
from typing import TYPE_CHECKING

from lastmile_env.sim.types import MAX_ATTEMPTS, OrderStatus, StopKind, has_battery

if TYPE_CHECKING:
    from lastmile_env.sim.simulator import Simulator


class InvariantError(AssertionError):
    """The simulation state broke one of its invariants (a bug, never a user error)."""


def check_invariants(sim: Simulator) -> None:
    """Raise InvariantError unless:

    - every arrived order is in exactly one state (pending / assigned / on board / delivered / rejected) and
      sits where that state says (pending: awaiting a decision or deferred; assigned / on board: in exactly
      one vehicle's plan); no order that has not arrived is anywhere;
    - no vehicle carries more than its capacity, now or anywhere along its plan;
    - time never runs ahead of pending events and every committed leg takes the matrix's travel time (times
      its noise factor under ``travel.noise``; the factor is 1 without noise);
    - the expected cost equals committed cost plus the cost of every remaining plan;
    - delivery attempts (``_check_attempts``): failed orders, parcels going back, lockers, attempt counts;
    - routing mode: a vehicle free with planned stops is pending a routing decision, queued for one, or
      waiting; a waiting vehicle is free now at its node and has a pickup whose parcel is not ready yet (the
      readiness that will wake it); a pending or queued vehicle is free with planned stops. Outside routing
      mode no vehicle waits or awaits a routing decision.
    """
    problems: list[str] = []
    arrived = sim.n_arrived
    planned: Counter[tuple[int, int]] = Counter()  # (order, stop kind) -> times planned or under way
    on_board: Counter[int] = Counter()  # vehicle -> size of the parcels on board
    for o in sim.orders[:arrived]:
        if o.status == OrderStatus.ON_BOARD:
            on_board[o.vehicle] += o.size
    for v in sim.vehicles:
        stops = list(v.route) if v.current is None else [v.current, *v.route]
        for s in stops:
            planned[(s.order, int(s.kind))] += 1
            if s.order >= arrived:
                problems.append(f"vehicle {v.id} plans order {s.order}, which has not arrived")
            elif sim.orders[s.order].vehicle != v.id:
                problems.append(f"order {s.order} is planned on vehicle {v.id} but assigned elsewhere")
        if on_board[v.id] != v.load:
            problems.append(f"vehicle {v.id} load {v.load} != size on board {on_board[v.id]}")
        if v.load > v.capacity or v.load < 0:
            problems.append(f"vehicle {v.id} load {v.load} outside [0, {v.capacity}]")
        plan = sim.plan(v.id)
        if max(plan.loads) > v.capacity:
            problems.append(f"vehicle {v.id} plan reaches load {max(plan.loads)} > capacity {v.capacity}")
        if v.free_min < sim.now - 1e-9 and not v.idle:
            problems.append(f"vehicle {v.id} busy but free at {v.free_min} < now {sim.now}")

    pending = 0
    waiting = {o.id for o in sim.pending} | {o.id for o in sim.deferred}
    for o in sim.orders[:arrived]:
        pickups, deliveries = planned[(o.id, StopKind.PICKUP)], planned[(o.id, StopKind.DELIVERY)]
        expected = {
            OrderStatus.PENDING: (0, 0),
            OrderStatus.ASSIGNED: (1, 1),
            OrderStatus.ON_BOARD: (0, 1),
            OrderStatus.DELIVERED: (0, 0),
            OrderStatus.REJECTED: (0, 0),
            OrderStatus.FAILED: (0, 0),
        }[o.status]
        if (pickups, deliveries) != expected:
            problems.append(
                f"order {o.id} is {o.status.name} but planned {pickups} pickup(s), {deliveries} delivery(ies)"
            )
        if o.status == OrderStatus.PENDING:
            pending += 1
            if o.id not in waiting:
                problems.append(f"order {o.id} is PENDING but neither awaiting a decision nor deferred")
        if o.status == OrderStatus.DELIVERED and not (o.pickup_min <= o.delivered_min):
            problems.append(
                f"order {o.id} delivered at {o.delivered_min} before its pickup at {o.pickup_min}"
            )
        if not math.isnan(o.pickup_min) and o.pickup_min < o.ready_min - 1e-9:
            problems.append(f"order {o.id} picked up at {o.pickup_min} before ready at {o.ready_min}")
    for o in sim.orders[arrived:]:
        if o.status != OrderStatus.PENDING or o.vehicle != -1:
            problems.append(f"order {o.id} has not arrived but is {o.status.name}")
    if pending != len(waiting):
        problems.append(f"{pending} orders PENDING but {len(waiting)} awaiting a decision or deferred")
    settled = sim.n_on_time + sim.n_late
    delivered = sum(o.status == OrderStatus.DELIVERED for o in sim.orders[:arrived])
    if settled != delivered:
        problems.append(f"on-time + late counters {settled} != delivered orders {delivered}")
    _check_attempts(sim, problems)

    noisy = sim.world.config.travel.noise.kind != "none"
    for vid, src, dst, depart, arrive, factor in sim.legs:
        v = sim.vehicles[vid]
        expect = sim.world.travel_arrival_min(src, dst, depart, v.speed_factor, v.mode)
        if factor != 1.0:  # realized = planned leg time x the leg's noise factor
            if not noisy or not factor > 0:
                problems.append(f"vehicle {vid} leg {src}->{dst}: noise factor {factor} (noise off or <= 0)")
            expect = depart + (expect - depart) * factor
        if abs(expect - arrive) > 1e-6:
            problems.append(f"vehicle {vid} leg {src}->{dst} at {depart:.3f} arrived {arrive} != {expect}")
    dist = sum(sim.world.leg_km(leg[1], leg[2], sim.vehicles[leg[0]].mode) for leg in sim.legs)
    if abs(dist - sum(v.dist_km for v in sim.vehicles)) > 1e-6 * max(1.0, dist):
        problems.append(f"distance driven {sum(v.dist_km for v in sim.vehicles)} != legs' matrix sum {dist}")
    _check_batteries(sim, problems)

    _check_routing(sim, problems)

    expected_cost = sim.cost().total + sum(sim.plan(v.id).cost for v in sim.vehicles)
    if abs(expected_cost - sim.expected_cost) > 1e-6 * max(1.0, abs(expected_cost)):
        problems.append(f"expected cost {sim.expected_cost} != committed + planned {expected_cost}")
    if problems:
        raise InvariantError("; ".join(problems[:10]))


def _check_batteries(sim: Simulator, problems: list[str]) -> None:
    """Vehicle modes: a battery vehicle (drone) flies at most its range between two visits of home, leaves
    home no earlier than its recharge time after arriving from a flight, and carries at most its capacity
    (a drone: one parcel)."""
    flown = {v.id: sim.start_flown_km[v.id] for v in sim.vehicles if has_battery(v)}
    landed: dict[int, float] = {}
    for vid, src, dst, depart, arrive, _ in sim.legs:
        if vid not in flown:
            continue
        v = sim.vehicles[vid]
        if src == v.home and vid in landed and depart < landed[vid] + v.recharge_min - 1e-6:
            problems.append(f"drone {vid} left home at {depart:.3f} before recharged ({landed[vid]:.3f} + "
                            f"{v.recharge_min})")  # fmt: skip
        km = sim.world.leg_km(src, dst, v.mode)
        flown[vid] += km
        if flown[vid] > v.range_km + 1e-6:
            problems.append(f"drone {vid} flew {flown[vid]:.3f} km in a sortie (range {v.range_km})")
        if dst == v.home:
            flown[vid] = 0.0
            if km > 0:
                landed[vid] = arrive
    for vid, km in flown.items():
        if abs(km - sim.vehicles[vid].flown_km) > 1e-6:
            problems.append(f"drone {vid} flown_km {sim.vehicles[vid].flown_km} != its legs' {km}")


def _check_attempts(sim: Simulator, problems: list[str]) -> None:
    """Delivery attempts: failed orders counted and brought back to their vehicle's center, parcels going
    back are on board and headed there, lockers hold what was sent to them and no more than their capacity,
    no order has more door attempts than allowed (and none at all without ``attempts``)."""
    arrived = sim.orders[: sim.n_arrived]
    failed = sum(o.status == OrderStatus.FAILED for o in arrived)
    if failed != sim.n_failed:
        problems.append(f"failed counter {sim.n_failed} != failed orders {failed}")
    sent = Counter(o.locker for o in arrived if o.locker >= 0)
    capacity = sim.world.config.attempts.lockers.capacity
    for i, used in enumerate(sim.locker_used):
        if used != sent[i] or used > capacity:
            problems.append(f"locker {i} holds {used} parcels, {sent[i]} sent there, capacity {capacity}")
    for o in arrived:
        if o.attempts > MAX_ATTEMPTS or (o.attempts and not sim.attempts_on):
            problems.append(f"order {o.id} has {o.attempts} door attempts")
        if o.returning or o.status == OrderStatus.FAILED:
            home = sim.vehicles[o.vehicle].home
            if o.status not in (OrderStatus.ON_BOARD, OrderStatus.FAILED) or o.loc != home:
                problems.append(f"failed order {o.id} is {o.status.name} at {o.loc}, not going to {home}")
            if not o.returning or o.attempts == 0:
                problems.append(f"order {o.id} failed without a failed attempt")
        elif o.locker >= 0 and o.loc != int(sim.world.lockers[o.locker]):
            problems.append(f"order {o.id} sent to locker {o.locker} but delivered to {o.loc}")


def _check_routing(sim: Simulator, problems: list[str]) -> None:
    """The routing-mode invariants (see ``check_invariants``)."""
    queued = list(sim._route_queue)
    deciding = [] if sim.routing_vehicle is None else [sim.routing_vehicle]
    if not sim.routing:
        if queued or deciding or any(v.waiting for v in sim.vehicles):
            problems.append("routing decisions or waiting vehicles outside routing mode")
        return
    if len(set(queued + deciding)) != len(queued) + len(deciding):
        problems.append(f"a vehicle is queued twice for a routing decision: {deciding} + {queued}")
    if deciding and sim.current is not None:
        problems.append("a dispatch and a routing decision are pending at once")
    for v in sim.vehicles:
        free_with_stops = v.current is None and not v.returning and bool(v.route)
        awaiting = v.id in queued or v.id in deciding
        if v.waiting:
            if awaiting:
                problems.append(f"vehicle {v.id} waits and awaits a routing decision")
            if v.current is not None or v.returning or not v.route:
                problems.append(f"vehicle {v.id} waits but is driving or has no planned stop")
            if abs(v.free_min - sim.now) > 1e-9:
                problems.append(f"waiting vehicle {v.id} free at {v.free_min}, not now ({sim.now})")
            if not any(
                s.kind == StopKind.PICKUP and sim.orders[s.order].ready_min >= sim.now - 1e-9 for s in v.route
            ):
                problems.append(f"vehicle {v.id} waits but no parcel of its plan is still to become ready")
        elif awaiting and v.id in deciding and not free_with_stops:
            problems.append(f"vehicle {v.id} awaits a routing decision but is not free with planned stops")
        elif free_with_stops and not awaiting:
            problems.append(f"vehicle {v.id} is free with planned stops but neither waits nor is routed")
