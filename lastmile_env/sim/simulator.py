"""The discrete-event simulator of one shift: the single source of truth for travel, insertion and cost.

Usage::

    sim = Simulator(world, seed=0)
    order = sim.advance()            # runs events up to the first decision
    while order is not None:
        sim.assign(v) or sim.reject()
        order = sim.advance()

A decision happens when an order arrives. Between decisions the simulator runs its event queue: parcels
become ready, vehicles finish stops (pickup, delivery), drive on along their plan, return to their center and
go idle. Gymnasium adapters, heuristics, evaluation and the server all drive this class.
"""

from __future__ import annotations

import heapq
import math
from typing import Any

import numpy as np

from lastmile_env.generators import OrderGenerator, PoissonOrderGenerator
from lastmile_env.sim.insertion import CheapestInsertion, Insertion, InsertionRule
from lastmile_env.sim.plan import PlanEval, evaluate_plan, late_penalty, leg_end
from lastmile_env.sim.types import (
    CostBreakdown,
    Event,
    Ledger,
    Order,
    OrderStatus,
    StopKind,
    Vehicle,
)
from lastmile_env.sim.world import World

# Event kinds in the queue; at equal times vehicles move first, then parcels become ready, then orders arrive.
_VEHICLE, _READY, _ARRIVAL = 0, 1, 2


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
        self.orders: list[Order] = (generator or PoissonOrderGenerator())(
            world, np.random.default_rng(arrivals_seq)
        )
        self.vehicles = [
            Vehicle(
                id=i,
                type_name=s.type_name,
                capacity=s.capacity,
                speed_factor=s.speed_factor,
                cost_per_km=s.cost_per_km,
                cost_per_hour=s.cost_per_hour,
                home=s.home,
                shift_end_min=s.shift_end_min,
                node=s.home,
            )
            for i, s in enumerate(world.vehicles)
        ]
        self.now = 0.0
        self.current: Order | None = None
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
        self._insertions: dict[int, Insertion | None] = {}
        self.late_cost = 0.0
        self.reject_cost = 0.0
        self.expected_cost = 0.0
        self.n_on_time = 0
        self.n_late = 0
        self.n_rejected = 0
        self.late_min_total = 0.0

    # ----------------------------------------------------------------------------------------- queries
    def plan_start(self, vehicle_id: int) -> tuple[float, int, int]:
        """Where, when and with which load the changeable part of a vehicle's plan starts."""
        v = self.vehicles[vehicle_id]
        return max(v.free_min, self.now), v.node, v.free_load

    def plan(self, vehicle_id: int) -> PlanEval:
        """The schedule and cost of a vehicle's remaining plan (cached until it changes)."""
        cached = self._plans[vehicle_id]
        if cached is None:
            v = self.vehicles[vehicle_id]
            start_min, start_node, start_load = self.plan_start(vehicle_id)
            cached = evaluate_plan(self.world, self.orders, v, v.route, start_min, start_node, start_load)
            self._plans[vehicle_id] = cached
        return cached

    def insertion(self, vehicle_id: int) -> Insertion | None:
        """The insertion rule's placement of the pending order into a vehicle's plan (None: infeasible)."""
        if self.current is None:
            raise SimulationError("no order is pending a decision")
        if vehicle_id not in self._insertions:
            self._insertions[vehicle_id] = self.insertion_rule(self, vehicle_id, self.current)
        return self._insertions[vehicle_id]

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
        return self.n_arrived - settled - (self.current is not None)

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
        v.route = ins.stops
        self._plans[vehicle_id] = ins.plan
        order.status = OrderStatus.ASSIGNED
        order.vehicle = vehicle_id
        order.decided_min = self.now
        order.promised_eta_min = ins.eta_min
        self.expected_cost += ins.delta_cost
        self._log("dispatch", order.id, vehicle_id)
        self._finish_decision()
        if v.current is None and not v.returning:
            self._start_next(v)
        self._check()
        return ins.delta_cost

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

    def advance(self) -> Order | None:
        """Run events up to the next decision; returns the order to decide, or None when the shift is over."""
        self._check_no_pending()
        while self._queue:
            time_min, kind, _, index = heapq.heappop(self._queue)
            if time_min < self.now - 1e-9:
                raise SimulationError(f"time went back from {self.now} to {time_min}")
            self.now = max(self.now, time_min)
            if kind == _ARRIVAL:
                order = self.orders[index]
                self.n_arrived = index + 1
                self.current = order
                self._insertions = {}
                self._log("arrival", order.id, -1)
                self._check()
                return order
            if kind == _READY:
                self._log("ready", index, -1)
            else:
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
        self._insertions = {}

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
        """Commit the vehicle to its next leg: the first planned stop, or the way home."""
        depart = max(v.free_min, self.now)
        self._plans[v.id] = None
        if v.route:
            stop = v.route.pop(0)
            order = self.orders[stop.order]
        elif v.node != v.home:
            stop, order = None, None
        else:
            v.free_min = depart
            return
        src = v.node
        dst, arrive, begin, free = leg_end(self.world, v, order, stop, src, depart)
        v.dist_km += self.world.dist_km[src][dst]
        v.duty_min += free - depart
        self.legs.append((v.id, src, dst, depart, arrive))
        if stop is None:
            v.returning = True
        else:
            assert order is not None
            v.current = stop
            v.current_start_min = begin
            if stop.kind == StopKind.PICKUP:
                v.free_load += order.size
            else:
                v.free_load -= order.size
                self.late_cost += late_penalty(self.world, order, begin)
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
