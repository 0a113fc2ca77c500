"""Invariants of a running simulation, checked by the tests and after every step in debug mode."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lastmile_env.sim.types import MAX_ATTEMPTS, OrderStatus, StopKind, has_battery

if TYPE_CHECKING:
    from lastmile_env.sim.simulator import Simulator


class InvariantError(AssertionError):
    """The simulation state broke one of its invariants (a bug, never a user error)."""


# (pickups, deliveries) planned or under way for an order in each state
_EXPECTED_STOPS = {
    OrderStatus.PENDING: (0, 0),
    OrderStatus.ASSIGNED: (1, 1),
    OrderStatus.ON_BOARD: (0, 1),
    OrderStatus.DELIVERED: (0, 0),
    OrderStatus.REJECTED: (0, 0),
    OrderStatus.FAILED: (0, 0),
}

Leg = tuple[int, int, int, float, float, float]  # vehicle, from, to, depart, arrive, noise factor


@dataclass
class LegAudit:
    """What the legs checked so far add up to, so that a debug run checks each committed leg once instead of
    every leg of the day after every event (committed legs are only ever appended).

    ``checked`` legs have been checked; ``last`` is the last of them (if it changed, the audit starts over);
    ``km`` is their matrix distance; ``flown`` / ``landed`` the battery vehicles' sortie km and last landing.
    """

    checked: int = 0
    last: Leg | None = None
    km: float = 0.0
    flown: dict[int, float] = field(default_factory=dict)
    landed: dict[int, float] = field(default_factory=dict)


def check_invariants(sim: Simulator, audit: LegAudit | None = None) -> None:
    """Raise InvariantError unless:

    - every arrived order is in exactly one state (pending / assigned / on board / delivered / rejected) and
      sits where that state says (pending: awaiting a decision or deferred; assigned / on board: in exactly
      one vehicle's plan); no order that has not arrived is anywhere;
    - no vehicle carries more than its capacity, now or anywhere along its plan;
    - time never runs ahead of pending events and every committed leg takes the matrix's travel time (times
      its noise factor under ``travel.noise``; the factor is 1 without noise);
    - the expected cost equals committed cost plus the cost of every remaining plan;
    - every vehicle the simulator changed since the fleet's packed plans last read it is marked for them
      (``FleetPlans.touch``);
    - battery vehicles (``_check_legs``): range per sortie, recharge time, flown km;
    - delivery attempts (``_check_attempts``): failed orders, parcels going back, lockers, attempt counts;
    - routing mode: a vehicle free with planned stops is pending a routing decision, queued for one, or
      waiting; a waiting vehicle is free now at its node and has a pickup whose parcel is not ready yet (the
      readiness that will wake it); a pending or queued vehicle is free with planned stops. Outside routing
      mode no vehicle waits or awaits a routing decision.

    Every committed leg is checked, unless ``audit`` (kept by the caller between calls, as the simulator does
    in debug mode) says which legs were already checked: then only the new ones are.
    """
    problems: list[str] = []
    arrived = sim.n_arrived
    orders = sim.orders
    pickups: dict[int, int] = {}  # order -> pickups planned or under way
    deliveries: dict[int, int] = {}  # order -> deliveries planned or under way
    pickup = StopKind.PICKUP  # bound once: an enum attribute costs a lookup per stop
    for v in sim.vehicles:
        vid = v.id
        for s in v.route if v.current is None else [v.current, *v.route]:
            j = s.order
            counts = pickups if s.kind == pickup else deliveries
            counts[j] = counts.get(j, 0) + 1
            if j >= arrived:
                problems.append(f"vehicle {vid} plans order {j}, which has not arrived")
            elif orders[j].vehicle != vid:
                problems.append(f"order {j} is planned on vehicle {vid} but assigned elsewhere")
        if v.load > v.capacity or v.load < 0:
            problems.append(f"vehicle {v.id} load {v.load} outside [0, {v.capacity}]")
        plan = sim.plan(v.id)
        if max(plan.loads) > v.capacity:
            problems.append(f"vehicle {v.id} plan reaches load {max(plan.loads)} > capacity {v.capacity}")
        if v.free_min < sim.now - 1e-9 and not v.idle:
            problems.append(f"vehicle {v.id} busy but free at {v.free_min} < now {sim.now}")

    pending = delivered = 0
    on_board: Counter[int] = Counter()  # vehicle -> size of the parcels on board
    waiting = {o.id for o in sim.pending} | {o.id for o in sim.deferred}
    # bound once, as above
    pending_status, on_board_status = OrderStatus.PENDING, OrderStatus.ON_BOARD
    delivered_status = OrderStatus.DELIVERED
    for o in orders[:arrived]:
        status = o.status
        n_pick, n_drop = pickups.get(o.id, 0), deliveries.get(o.id, 0)
        if (n_pick, n_drop) != _EXPECTED_STOPS[status]:
            problems.append(
                f"order {o.id} is {status.name} but planned {n_pick} pickup(s), {n_drop} delivery(ies)"
            )
        if status == pending_status:
            pending += 1
            if o.id not in waiting:
                problems.append(f"order {o.id} is PENDING but neither awaiting a decision nor deferred")
        elif status == on_board_status:
            on_board[o.vehicle] += o.size
        elif status == delivered_status:
            delivered += 1
            if not (o.pickup_min <= o.delivered_min):
                problems.append(
                    f"order {o.id} delivered at {o.delivered_min} before its pickup at {o.pickup_min}"
                )
        if o.pickup_min < o.ready_min - 1e-9:  # False while not picked up (nan)
            problems.append(f"order {o.id} picked up at {o.pickup_min} before ready at {o.ready_min}")
    for v in sim.vehicles:
        if on_board[v.id] != v.load:
            problems.append(f"vehicle {v.id} load {v.load} != size on board {on_board[v.id]}")
    for o in orders[arrived:]:
        if o.status != OrderStatus.PENDING or o.vehicle != -1:
            problems.append(f"order {o.id} has not arrived but is {o.status.name}")
    if pending != len(waiting):
        problems.append(f"{pending} orders PENDING but {len(waiting)} awaiting a decision or deferred")
    settled = sim.n_on_time + sim.n_late
    if settled != delivered:
        problems.append(f"on-time + late counters {settled} != delivered orders {delivered}")
    _check_attempts(sim, problems)

    _check_legs(sim, problems, audit if audit is not None else LegAudit())

    _check_routing(sim, problems)

    untracked = sim.fleet_plans.untracked(sim.vehicles)
    if untracked:
        problems.append(f"vehicles {untracked} changed without FleetPlans.touch: their packed rows are stale")
    expected_cost = sim.cost().total + sum(sim.plan(v.id).cost for v in sim.vehicles)
    if abs(expected_cost - sim.expected_cost) > 1e-6 * max(1.0, abs(expected_cost)):
        problems.append(f"expected cost {sim.expected_cost} != committed + planned {expected_cost}")
    if problems:
        raise InvariantError("; ".join(problems[:10]))


def _check_legs(sim: Simulator, problems: list[str], audit: LegAudit) -> None:
    """Committed legs: each takes the matrix's travel time (times its noise factor under ``travel.noise``; the
    factor is 1 without noise) and the legs' matrix distance is what the vehicles drove. A battery vehicle
    (drone) flies at most its range between two visits of home and leaves home no earlier than its recharge
    time after landing from a flight. The legs before ``audit.checked`` were checked before; ``audit`` is
    brought up to date."""
    legs = sim.legs
    if audit.checked > len(legs) or (audit.checked and legs[audit.checked - 1] != audit.last):
        audit.checked, audit.last, audit.km = 0, None, 0.0  # not the legs it saw: check them all again
    if audit.checked == 0:
        audit.flown = {v.id: sim.start_flown_km[v.id] for v in sim.vehicles if has_battery(v)}
        audit.landed = {}
    world, vehicles = sim.world, sim.vehicles
    noisy = world.config.travel.noise.kind != "none"
    flown, landed = audit.flown, audit.landed
    km_total = audit.km
    for vid, src, dst, depart, arrive, factor in legs[audit.checked :]:
        v = vehicles[vid]
        expect = world.travel_arrival_min(src, dst, depart, v.speed_factor, v.mode)
        if factor != 1.0:  # realized = planned leg time x the leg's noise factor
            if not noisy or not factor > 0:
                problems.append(f"vehicle {vid} leg {src}->{dst}: noise factor {factor} (noise off or <= 0)")
            expect = depart + (expect - depart) * factor
        if abs(expect - arrive) > 1e-6:
            problems.append(f"vehicle {vid} leg {src}->{dst} at {depart:.3f} arrived {arrive} != {expect}")
        km = world.leg_km(src, dst, v.mode)
        km_total += km
        if vid not in flown:
            continue
        if src == v.home and vid in landed and depart < landed[vid] + v.recharge_min - 1e-6:
            problems.append(f"drone {vid} left home at {depart:.3f} before recharged ({landed[vid]:.3f} + "
                            f"{v.recharge_min})")  # fmt: skip
        flown[vid] += km
        if flown[vid] > v.range_km + 1e-6:
            problems.append(f"drone {vid} flew {flown[vid]:.3f} km in a sortie (range {v.range_km})")
        if dst == v.home:
            flown[vid] = 0.0
            if km > 0:
                landed[vid] = arrive
    audit.checked, audit.km = len(legs), km_total
    audit.last = legs[-1] if legs else None
    driven = sum(v.dist_km for v in vehicles)
    if abs(km_total - driven) > 1e-6 * max(1.0, km_total):
        problems.append(f"distance driven {driven} != legs' matrix sum {km_total}")
    for vid, km in flown.items():
        if abs(km - vehicles[vid].flown_km) > 1e-6:
            problems.append(f"drone {vid} flown_km {vehicles[vid].flown_km} != its legs' {km}")


def _check_attempts(sim: Simulator, problems: list[str]) -> None:
    """Delivery attempts: failed orders counted and brought back to their vehicle's center, parcels going
    back are on board and headed there, lockers hold what was sent to them and no more than their capacity,
    no order has more door attempts than allowed (and none at all without ``attempts``)."""
    failed = 0
    sent: Counter[int] = Counter()  # locker -> parcels sent there
    attempts_on, vehicles, lockers = sim.attempts_on, sim.vehicles, sim.world.lockers
    failed_status = OrderStatus.FAILED  # bound once: an enum attribute costs a lookup per order
    for o in sim.orders[: sim.n_arrived]:
        if o.locker >= 0:
            sent[o.locker] += 1
        if o.attempts > MAX_ATTEMPTS or (o.attempts and not attempts_on):
            problems.append(f"order {o.id} has {o.attempts} door attempts")
        if o.status == failed_status:
            failed += 1
        if o.returning or o.status == failed_status:
            home = vehicles[o.vehicle].home
            if o.status not in (OrderStatus.ON_BOARD, OrderStatus.FAILED) or o.loc != home:
                problems.append(f"failed order {o.id} is {o.status.name} at {o.loc}, not going to {home}")
            if not o.returning or o.attempts == 0:
                problems.append(f"order {o.id} failed without a failed attempt")
        elif o.locker >= 0 and o.loc != int(lockers[o.locker]):
            problems.append(f"order {o.id} sent to locker {o.locker} but delivered to {o.loc}")
    if failed != sim.n_failed:
        problems.append(f"failed counter {sim.n_failed} != failed orders {failed}")
    capacity = sim.world.config.attempts.lockers.capacity
    for i, used in enumerate(sim.locker_used):
        if used != sent[i] or used > capacity:
            problems.append(f"locker {i} holds {used} parcels, {sent[i]} sent there, capacity {capacity}")


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
