"""The discrete-event simulator of one shift: the single source of truth for travel, insertion and cost.

Usage::

    sim = Simulator(world, seed=0)
    order = sim.advance()            # runs events up to the first decision
    while order is not None:
        sim.assign(v) or sim.reject()
        order = sim.advance()

A decision happens when an order arrives, and at each dispatch tick for the orders deferred to it (one at a
time, oldest first; a batch policy may pick another with ``prioritize``). Between decisions the simulator
runs its event queue: parcels become ready, vehicles finish stops (pickup, delivery), drive on along their
plan, return to their center and go idle. Gymnasium adapters, heuristics, evaluation and the server all
drive this class.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from lastmile_env.sim.insertion import CheapestInsertion, Insertion, InsertionRule
from lastmile_env.sim.plan import PlanEval, evaluate_plan
from lastmile_env.sim.types import (
    CostBreakdown,
    Event,
    Ledger,
    Order,
    OrderStatus,
    Stop,
    StopKind,
    Vehicle,
)
from lastmile_env.sim.world import World

if TYPE_CHECKING:
    from lastmile_env.generators import OrderGenerator

# Event kinds in the queue; at equal times vehicles move first, then parcels become ready, then orders arrive,
# then deferred orders come back.
_VEHICLE, _READY, _ARRIVAL, _TICK = 0, 1, 2, 3


class SimulationError(RuntimeError):
    """The simulator was driven out of order (e.g. deciding when no order is pending)."""


class InfeasibleAssignment(ValueError):
    """The chosen vehicle cannot take the pending order (capacity or shift end)."""


class Simulator:
    """One episode (one shift) of a scenario's world.

    Args:
        world: the scenario's static world (``world_for(config)``).
        seed: episode seed; split into independent streams for arrivals and travel noise, so what a policy
            does never changes which orders arrive.
        generator: the order stream (default: the scenario's Poisson generator).
        insertion: the insertion rule (default: cheapest feasible insertion).
        debug: check every invariant after each decision and event batch (slow).
    """

    def __init__(
        self,
        world: World,
        seed: int | np.random.SeedSequence,
        *,
        generator: OrderGenerator | None = None,
        insertion: InsertionRule | None = None,
        debug: bool = False,
    ) -> None:
        seq = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
        arrivals_seq, self._noise_seq = seq.spawn(2)
        self.world = world
        self.insertion_rule: InsertionRule = insertion or CheapestInsertion()
        self.debug = debug
        if generator is None:  # imported here: generators imports the simulator's types
            from lastmile_env.generators import default_generator

            generator = default_generator(world)
        self.orders: list[Order] = generator(world, np.random.default_rng(arrivals_seq))
        self.vehicles = world.make_vehicles()
        self.now = 0.0
        self.current: Order | None = None
        self.deferred: list[Order] = []  # waiting for the next tick
        self._batch: list[Order] = []  # pending now, to decide after ``current``
        self._tick_at = -1.0
        self.n_arrived = 0
        self.done = False
        self.events: list[Event] = []
        self.legs: list[tuple[int, int, int, float, float]] = []  # (vehicle, src, dst, depart, arrive)
        self._queue: list[tuple[float, int, int, int]] = []  # (time, kind, seq, index)
        self._seq = 0
        for o in self.orders:
            self._push(o.arrival_min, _ARRIVAL, o.id)
            self._push(o.ready_min, _READY, o.id)
        self._plans: list[PlanEval | None] = [None] * len(self.vehicles)
        self._insertions: dict[tuple[int, int], Insertion | None] = {}
        self.late_cost = 0.0
        self.reject_cost = 0.0
        self.expected_cost = 0.0
        self.n_on_time = 0
        self.n_late = 0
        self.n_rejected = 0
        self.late_min_total = 0.0

    @classmethod
    def from_snapshot(
        cls, world: World, now_min: float, orders: Sequence[Order], vehicles: Sequence[Vehicle], pending: int
    ) -> Simulator:
        """A simulator standing at a decision mid-shift, built from a live system's state.

        ``orders`` are every order the plans refer to plus the one to decide (``orders[i].id == i``; the
        pending one has status PENDING); ``vehicles`` carry their position, current stop, load and plan.
        Nothing beyond the snapshot is known: no further order will arrive, and costs count from the snapshot
        on (the vehicles are copied with zero committed distance and duty). The state is checked against
        every simulator invariant; InvariantError names what is inconsistent.
        """
        from lastmile_env.sim.invariants import check_invariants

        listed = list(orders)
        if [o.id for o in listed] != list(range(len(listed))):
            raise SimulationError("snapshot orders must have ids 0..n-1 in order")
        if not 0 <= pending < len(listed) or listed[pending].status != OrderStatus.PENDING:
            raise SimulationError(f"snapshot order {pending} is not a pending order")
        sim = cls(world, 0, generator=lambda _world, _rng: listed)
        sim._queue = []  # the snapshot's future is unknown
        sim.now = now_min
        # Costs count from the snapshot on: nothing committed before it is known.
        sim.vehicles = [
            dataclasses.replace(v, route=list(v.route), dist_km=0.0, duty_min=0.0) for v in vehicles
        ]
        sim._plans = [None] * len(sim.vehicles)
        sim.n_arrived = len(listed)
        sim.current = listed[pending]
        for v in sim.vehicles:
            if v.current is not None or v.returning:
                sim._push(max(v.free_min, now_min), _VEHICLE, v.id)
        sim.expected_cost = sum(sim.plan(v.id).cost for v in sim.vehicles)
        check_invariants(sim)
        return sim

    # ----------------------------------------------------------------------------------------- queries
    def plan_start(self, vehicle_id: int) -> tuple[float, int, int]:
        """Where, when and with which load the changeable part of a vehicle's plan starts."""
        v = self.vehicles[vehicle_id]
        return max(v.free_min, self.now), v.node, v.free_load

    def price(self, vehicle_id: int, stops: Sequence[Stop]) -> PlanEval:
        """Schedule and cost of ``stops`` as the vehicle's remaining plan (nothing changes)."""
        return evaluate_plan(
            self.world, self.orders, self.vehicles[vehicle_id], stops, *self.plan_start(vehicle_id)
        )

    def plan(self, vehicle_id: int) -> PlanEval:
        """The schedule and cost of a vehicle's remaining plan (cached until it changes)."""
        cached = self._plans[vehicle_id]
        start_min = self.plan_start(vehicle_id)[0]
        if cached is None or cached.frees_min[0] != start_min:  # an idle vehicle's plan starts now
            cached = self.price(vehicle_id, self.vehicles[vehicle_id].route)
            self._plans[vehicle_id] = cached
        return cached

    def insertion(self, vehicle_id: int, order: Order | None = None) -> Insertion | None:
        """The insertion rule's placement of a pending order (default: the current one) into a vehicle's
        plan, or None when the vehicle cannot take it. Cached until a plan or the clock changes."""
        if order is None:
            order = self._pending()
        elif order.status != OrderStatus.PENDING or order.id >= self.n_arrived:
            raise SimulationError(f"order {order.id} is not pending a decision")
        key = (order.id, vehicle_id)
        if key not in self._insertions:
            self._insertions[key] = self.insertion_rule(self, vehicle_id, order)
        return self._insertions[key]

    @property
    def pending(self) -> list[Order]:
        """Orders to decide now: the current one first."""
        return self._batch if self.current is None else [self.current, *self._batch]

    def can_defer(self) -> bool:
        """Whether the current order may wait for the next tick (it would not exceed ``max_defer_min``)."""
        order = self._pending()
        return self._next_tick() - order.arrival_min <= self.world.config.dispatch.max_defer_min + 1e-9

    def feasible_vehicles(self) -> list[bool]:
        """For each vehicle, whether it can take the pending order."""
        return [self.insertion(v) is not None for v in range(len(self.vehicles))]

    def cost(self) -> CostBreakdown:
        """Cost committed so far: legs driven or under way, lateness of committed deliveries, rejections."""
        distance = sum(v.dist_km * v.cost_per_km for v in self.vehicles)
        driver = sum(v.duty_min * v.cost_per_hour / 60.0 for v in self.vehicles)
        return CostBreakdown(distance, driver, self.late_cost, self.reject_cost)

    def ledger(self) -> Ledger:
        return Ledger(self.expected_cost, self.n_on_time, self.n_late, self.n_rejected, self.late_min_total)

    @property
    def n_open(self) -> int:
        """Accepted orders not yet delivered."""
        settled = self.n_on_time + self.n_late + self.n_rejected
        return self.n_arrived - settled - len(self.pending) - len(self.deferred)

    @property
    def arrived_orders(self) -> list[Order]:
        return self.orders[: self.n_arrived]

    # --------------------------------------------------------------------------------------- decisions
    def assign(self, vehicle_id: int) -> float:
        """Give the pending order to a vehicle; returns the plan cost increase."""
        order = self._pending()
        if not 0 <= vehicle_id < len(self.vehicles):
            raise InfeasibleAssignment(f"vehicle {vehicle_id} does not exist (fleet of {len(self.vehicles)})")
        ins = self.insertion(vehicle_id)
        if ins is None:
            raise InfeasibleAssignment(
                f"vehicle {vehicle_id} cannot take order {order.id} (size {order.size}): no insertion keeps "
                "its capacity and gets it back to its center by its shift end"
            )
        v = self.vehicles[vehicle_id]
        stops = ins.stops(v.route, order)
        plan = self.price(vehicle_id, stops)
        delta = plan.cost - self.plan(vehicle_id).cost
        v.route = stops
        self._plans[vehicle_id] = plan
        self._insertions = {}
        order.status = OrderStatus.ASSIGNED
        order.vehicle = vehicle_id
        order.decided_min = self.now
        order.promised_eta_min = float(plan.starts_min[ins.delivery_after + 1])
        self.expected_cost += delta
        self._log("dispatch", order.id, vehicle_id)
        self._finish_decision()
        if v.current is None and not v.returning:
            self._start_next(v)
        self._check()
        return delta

    def reject(self) -> float:
        """Reject the pending order; returns the rejection penalty."""
        order = self._pending()
        order.status = OrderStatus.REJECTED
        order.decided_min = self.now
        penalty = self.world.config.costs.reject_penalty
        self.reject_cost += penalty
        self.expected_cost += penalty
        self.n_rejected += 1
        self._log("reject", order.id, -1)
        self._finish_decision()
        self._check()
        return penalty

    def defer(self) -> float:
        """Decide the current order later: it comes back at the next tick. Returns 0 (no cost yet)."""
        order = self._pending()
        if not self.can_defer():
            raise SimulationError(
                f"order {order.id} cannot be deferred: it arrived at {order.arrival_min:.1f} and would wait "
                f"past max_defer_min ({self.world.config.dispatch.max_defer_min}) by the next tick"
            )
        self.deferred.append(order)
        tick = self._next_tick()
        if self._tick_at < tick:
            self._push(tick, _TICK, -1)
            self._tick_at = tick
        self._log("defer", order.id, -1)
        self._finish_decision()
        return 0.0

    def prioritize(self, order_id: int) -> None:
        """Make another order that is pending now the current one (for policies that batch decisions)."""
        for k, order in enumerate(self._batch):
            if order.id == order_id:
                assert self.current is not None
                self._batch[k] = self.current
                self.current = order
                return
        if self.current is None or self.current.id != order_id:
            raise SimulationError(f"order {order_id} is not pending now")

    def replan(self, routes: dict[int, list[Stop]]) -> float:
        """Replace the plans of some vehicles (e.g. a re-optimization); returns the cost change.

        The new plans must hold exactly the stops the old ones held between them, each parcel on board
        stays with its vehicle, every pickup precedes its delivery on the same vehicle, and every plan is
        feasible; otherwise SimulationError names the problem and nothing changes.
        """
        old_stops = sorted((s.order, int(s.kind)) for vid in routes for s in self.vehicles[vid].route)
        new_stops = sorted((s.order, int(s.kind)) for stops in routes.values() for s in stops)
        if old_stops != new_stops:
            raise SimulationError("replan must keep exactly the planned stops of the vehicles it changes")
        plans: dict[int, PlanEval] = {}
        for vid, stops in routes.items():
            v = self.vehicles[vid]
            under_way = v.current
            seen = {under_way.order} if under_way is not None and under_way.kind == StopKind.PICKUP else set()
            for stop in stops:
                order = self.orders[stop.order]
                expected_loc = order.center if stop.kind == StopKind.PICKUP else order.loc
                if stop.loc != expected_loc:
                    raise SimulationError(
                        f"replan: stop of order {order.id} at {stop.loc}, not {expected_loc}"
                    )
                if stop.kind == StopKind.PICKUP:
                    seen.add(order.id)
                elif order.status == OrderStatus.ON_BOARD and order.vehicle != vid:
                    raise SimulationError(f"replan: order {order.id} is on board vehicle {order.vehicle}")
                elif order.status == OrderStatus.ASSIGNED and order.id not in seen:
                    raise SimulationError(f"replan: order {order.id} delivered before its pickup on {vid}")
            plan = self.price(vid, stops)
            if not plan.feasible:
                raise SimulationError(
                    f"replan: the plan of vehicle {vid} is infeasible (capacity or shift end)"
                )
            plans[vid] = plan
        delta = sum(plans[vid].cost - self.plan(vid).cost for vid in routes)
        for vid, stops in routes.items():
            v = self.vehicles[vid]
            v.route = list(stops)
            for stop in stops:
                self.orders[stop.order].vehicle = vid
            self._plans[vid] = plans[vid]
        self.expected_cost += delta
        self._insertions = {}
        for vid in routes:
            v = self.vehicles[vid]
            if v.current is None and not v.returning and v.route:
                self._start_next(v)
        self._check()
        return delta

    def advance(self) -> Order | None:
        """Run events up to the next decision; returns the order to decide, or None when the shift is over."""
        self._check_no_pending()
        if self._batch:
            self.current = self._batch.pop(0)
            return self.current
        while self._queue:
            time_min, kind, _, index = heapq.heappop(self._queue)
            if time_min < self.now - 1e-9:
                raise SimulationError(f"time went back from {self.now} to {time_min}")
            if time_min > self.now:
                self.now = time_min
                self._insertions = {}
            if kind == _ARRIVAL:
                order = self.orders[index]
                self.n_arrived = index + 1
                self.current = order
                self._log("arrival", order.id, -1)
                self._check()
                return order
            if kind == _TICK:
                self._batch, self.deferred = self.deferred, []
                if self._batch:
                    self.current = self._batch.pop(0)
                    self._check()
                    return self.current
            elif kind == _READY:
                self._log("ready", index, -1)
            else:
                self._insertions = {}
                self._vehicle_free(self.vehicles[index])
        self.done = True
        self._check()
        return None

    # ------------------------------------------------------------------------------------- internals
    def _pending(self) -> Order:
        if self.current is None:
            raise SimulationError("no order is pending a decision; call advance() first")
        return self.current

    def _check_no_pending(self) -> None:
        if self.current is not None:
            raise SimulationError(f"order {self.current.id} is pending: assign or reject it first")

    def _finish_decision(self) -> None:
        self.current = None

    def _next_tick(self) -> float:
        tick = self.world.config.dispatch.tick_min
        return (math.floor(self.now / tick + 1e-9) + 1) * tick

    def _push(self, time_min: float, kind: int, index: int) -> None:
        heapq.heappush(self._queue, (time_min, kind, self._seq, index))
        self._seq += 1

    def _log(self, kind: str, order: int, vehicle: int) -> None:
        self.events.append(Event(self.now, kind, order, vehicle))

    def _vehicle_free(self, v: Vehicle) -> None:
        """A vehicle finished its current stop (or its return home)."""
        stop = v.current
        if stop is not None:
            order = self.orders[stop.order]
            if stop.kind == StopKind.PICKUP:
                order.status = OrderStatus.ON_BOARD
                order.pickup_min = v.current_start_min
                v.load += order.size
                self._log("pickup", order.id, v.id)
            else:
                order.status = OrderStatus.DELIVERED
                order.delivered_min = v.current_start_min
                v.load -= order.size
                if order.on_time:
                    self.n_on_time += 1
                else:
                    self.n_late += 1
                    self.late_min_total += order.late_min
                self._log("delivery", order.id, v.id)
            v.current = None
        elif v.returning:
            v.returning = False
        self._start_next(v)
        if v.idle:
            self._log("vehicle_idle", -1, v.id)

    def _start_next(self, v: Vehicle) -> None:
        """Commit the vehicle to its next leg: the first planned stop, or the way home.

        The leg is a one-stop plan priced by ``evaluate_plan``, so it executes exactly as it was planned.
        """
        depart = max(v.free_min, self.now)
        self._plans[v.id] = None
        src = v.node
        if v.route:
            stop = v.route.pop(0)
            leg = evaluate_plan(self.world, self.orders, v, [stop], depart, src, v.free_load)
            dst = stop.loc
            arrive, begin, free = float(leg.arrive_min[0]), float(leg.starts_min[0]), float(leg.frees_min[1])
            v.current, v.current_start_min = stop, begin
            v.free_load = int(leg.loads[1])
            self.late_cost += float(leg.cum_late_cost[1])
        elif src != v.home:
            dst = v.home
            arrive = free = self.world.travel_arrival_min(src, dst, depart, v.speed_factor)
            v.returning = True
        else:
            v.free_min = depart
            return
        v.dist_km += self.world.dist_km[src][dst]
        v.duty_min += free - depart
        self.legs.append((v.id, src, dst, depart, arrive))
        v.node, v.free_min = dst, free
        self._push(free, _VEHICLE, v.id)

    def _check(self) -> None:
        if self.debug:
            from lastmile_env.sim.invariants import check_invariants

            check_invariants(self)

    # --------------------------------------------------------------------------------------- results
    def summary(self) -> dict[str, Any]:
        """Outcome of the episode so far: on-time rate, cost breakdown, distance, lateness, ETA error.

        The on-time rate is on-time deliveries over orders with a known outcome (delivered or rejected):
        a rejected order counts as not served on time.
        """
        arrived = self.orders[: self.n_arrived]
        delivered = [o for o in arrived if o.status == OrderStatus.DELIVERED]
        settled = len(delivered) + self.n_rejected
        cost = self.cost()
        eta_errors = [abs(o.eta_error_min) for o in delivered]
        return {
            "orders": len(arrived),
            "delivered": len(delivered),
            "on_time": self.n_on_time,
            "late": self.n_late,
            "rejected": self.n_rejected,
            "on_time_rate": self.n_on_time / settled if settled else math.nan,
            "cost": cost.total,
            "cost_distance": cost.distance,
            "cost_driver_time": cost.driver_time,
            "cost_lateness": cost.lateness,
            "cost_rejection": cost.rejection,
            "cost_per_delivered": cost.total / len(delivered) if delivered else math.nan,
            "distance_km": sum(v.dist_km for v in self.vehicles),
            "late_minutes": self.late_min_total,
            "eta_abs_error_min": float(np.mean(eta_errors)) if eta_errors else math.nan,
        }
