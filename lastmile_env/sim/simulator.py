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

Routing mode (``Simulator(world, seed, routing=True)``) adds a second kind of decision: whenever a vehicle
is free with planned stops (it finished a stop or its way home, was given an order while idle, or a parcel
it waits for became ready), the simulator stops and asks which stop it serves next::

    while (decision := sim.next_decision()) is not None:
        if decision.kind == DecisionKind.DISPATCH:
            sim.assign(v) or sim.reject()
        else:                        # DecisionKind.ROUTE, for vehicle decision.vehicle
            sim.route(i) or sim.wait()

``route(i)`` moves stop ``i`` of the vehicle's plan to the front (the others keep their order) and commits
it as the next leg; valid stops (``route_mask``) are deliveries of parcels on board and pickups of ready
parcels that keep the plan within capacity. ``wait()`` holds the vehicle where it is (driver time is
charged) until a parcel of its plan becomes ready or its plan changes; it is valid only while some pickup
of its plan is not ready, so a day always ends with every accepted order delivered. With routing off (the
default) nothing of this runs and every number is as before.

Wave mode (``dispatch.mode: wave``) replaces the decision at each arrival by one at each wave: arriving
orders wait in a pool (``pool``); at a wave the simulator stops with a ``DecisionKind.WAVE`` decision, and
the policy sends any subset of the pool as routes, one order sequence per vehicle, which the vehicles serve
after their current plan (collect the parcels at the center, then deliver in that order)::

    while (decision := sim.next_decision()) is not None:   # decision.kind == DecisionKind.WAVE
        must = sim.must_dispatch()                         # orders that cannot wait for the next wave
        sim.release([(vehicle, [order ids]), ...], reject=[...])

Orders left in the pool wait for the next wave; at the last wave every pooled order must go. This is the
decision of the EURO Meets NeurIPS 2022 dynamic VRPTW and of wave-based depots.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from heapq import heappop, heappush
from typing import TYPE_CHECKING, Any

import numpy as np

from lastmile_env import kernels
from lastmile_env.sim.insertion import CheapestInsertion, FleetInsertion, Insertion, InsertionRule
from lastmile_env.sim.plan import FleetPlans, FleetState, PlanEval, evaluate_plan, fleet_state, stop_values
from lastmile_env.sim.types import (
    MAX_ATTEMPTS,
    MODES,
    AbsentChoice,
    CostBreakdown,
    Decision,
    DecisionKind,
    Event,
    Ledger,
    Order,
    OrderStatus,
    ServiceOption,
    Stop,
    StopKind,
    Vehicle,
    as_named,
)
from lastmile_env.sim.world import World

if TYPE_CHECKING:
    from lastmile_env.generators import OrderGenerator
    from lastmile_env.sim.invariants import LegAudit

# The live-ETA error is measured on the ETA in force this long before the actual delivery.
LIVE_ETA_LEAD_MIN = 30.0

# Event kinds in the queue; at equal times vehicles move first, then parcels become ready, then orders arrive,
# then deferred orders come back.
_VEHICLE, _READY, _ARRIVAL, _TICK, _WAVE = 0, 1, 2, 3, 4

# Enum members the event path reads, as module constants (the same objects): in Python 3.11 reading a member
# through its class (``StopKind.PICKUP``) goes through the hook of ``EnumType.__getattr__``, ~1,000
# instructions a read; a global's read is ~40.
_PICKUP = StopKind.PICKUP
_DISPATCH, _ROUTE_DECISION, _WAVE_DECISION = DecisionKind.DISPATCH, DecisionKind.ROUTE, DecisionKind.WAVE
_PENDING, _ASSIGNED = OrderStatus.PENDING, OrderStatus.ASSIGNED
_ON_BOARD, _DELIVERED = OrderStatus.ON_BOARD, OrderStatus.DELIVERED

_UNSET: Any = object()  # ``insertion``'s cache lookup: not cached (None is a cached "cannot take it")

# Wave mode: an order must go now when waiting for the next wave would make it late by more than this
# (minutes; absorbs float rounding of times given in integer seconds).
_MUST_EPS_MIN = 1e-6


class SimulationError(RuntimeError):
    """The simulator was driven out of order (e.g. deciding when no order is pending)."""


class InfeasibleAssignment(ValueError):
    """The chosen vehicle cannot take the pending order (capacity or shift end)."""


class InfeasibleRoute(ValueError):
    """The chosen stop cannot be the vehicle's next one (not on board, parcel not ready, or capacity)."""


def reordered(route: Sequence[Stop], index: int) -> list[Stop]:
    """``route`` with stop ``index`` moved to the front; the other stops keep their order."""
    return [route[index], *route[:index], *route[index + 1 :]]


class Simulator:
    """One episode (one shift) of a scenario's world.

    Args:
        world: the scenario's static world (``world_for(config)``).
        seed: episode seed; split into independent streams for arrivals and travel noise, so what a policy
            does never changes which orders arrive.
        generator: the order stream (default: the scenario's Poisson generator).
        insertion: the insertion rule (default: cheapest feasible insertion).
        debug: check every invariant after each decision and event batch (slow).
        routing: routing mode: a free vehicle with planned stops is a decision (see the module docstring).
        _vehicles: internal (``from_snapshot``): the fleet to start from instead of ``world.make_vehicles()``.
    """

    def __init__(
        self,
        world: World,
        seed: int | np.random.SeedSequence,
        *,
        generator: OrderGenerator | None = None,
        insertion: InsertionRule | None = None,
        debug: bool = False,
        routing: bool = False,
        _vehicles: list[Vehicle] | None = None,
    ) -> None:
        seq = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
        arrivals_seq, self._noise_seq = seq.spawn(2)
        self.world = world
        # what every leg is priced with (``kernels.leg``): the stacked travel arrays and the shift's start
        self._travel = (world.time_modes, world.dist_modes, world.mode_mults, world.config.shift_start_hour)
        self._pickup_service_min = world.config.orders.pickup_service_min
        self._late_costs = world.late_costs
        travel = world.config.travel
        # Travel noise: one factor per driven leg, from its own stream (the orders never depend on it).
        self._noise_sigma = travel.noise.sigma if travel.noise.kind == "lognormal" else 0.0
        self._noise_rng = np.random.default_rng(self._noise_seq) if travel.noise.kind != "none" else None
        self.track_eta = travel.live_eta
        self.eta_log: list[tuple[float, int, float]] = []  # live_eta: (time, order, new ETA) per update
        self.insertion_rule: InsertionRule = insertion or CheapestInsertion()
        self.debug = debug
        self.routing = routing
        self.wave_mode = world.config.dispatch.mode == "wave"
        if self.wave_mode and routing:
            raise SimulationError("routing mode and dispatch.mode: wave cannot be combined")
        self.wave_pending = False  # wave mode: a wave decision awaits ``release``
        self.last_wave_min = math.nan  # wave mode: the last wave of the day (every pooled order goes then)
        self.routing_vehicle: int | None = None  # routing mode: the vehicle whose next stop is to decide
        self._route_queue: list[int] = []  # vehicles free with planned stops, to decide after it
        if generator is None:  # imported here: generators imports the simulator's types
            from lastmile_env.generators import default_generator

            generator = default_generator(world)
        self.orders: list[Order] = generator(world, np.random.default_rng(arrivals_seq))
        # the fleet at the shift start (``from_snapshot``: the snapshot's, not built here to be replaced)
        self.vehicles = world.make_vehicles() if _vehicles is None else _vehicles
        # Rosters and ``fleet.idle_at: last_drop``: vehicles may be idle away from their center (at a roster's
        # start node, or waiting at their last drop); their plans price the way home, which they drive when
        # the day's work is done (``_send_idle_home``).
        self._away_idle = any(not v.returns_home or v.node != v.home for v in self.vehicles)
        self.now = 0.0
        self.current: Order | None = None
        self.deferred: list[Order] = []  # waiting for the next tick
        self._batch: list[Order] = []  # pending now, to decide after ``current``
        self._tick_at = -1.0
        self.n_arrived = 0
        self.done = False
        # the event log as logged, (time, kind, order, vehicle) rows appended where they happen (``events``)
        self._logged: list[tuple[float, str, int, int]] = []
        self._events: list[Event] = []  # ``_logged`` as ``Event`` rows, built when read
        # (vehicle, src, dst, depart, arrive, noise factor): arrive - depart = planned leg time x factor
        self.legs: list[tuple[int, int, int, float, float, float]] = []
        self.leg_stops: list[Stop | None] = []  # the stop each leg of ``legs`` drives to (None: the way home)
        # km each vehicle had flown since its last charge before the first leg (a snapshot's drones)
        self.start_flown_km = [v.flown_km for v in self.vehicles]
        self._leg_audit: LegAudit | None = None  # debug mode: the legs already checked
        # Events are (time, kind, seq, index); entries differ by their seq, so they run in one total order.
        # The day's arrivals and readiness, known at the start, are one list sorted once (last event first,
        # popped from its end); the events made as the day runs (vehicles free, ticks, waves) go into a small
        # heap; ``next_decision`` takes the lesser of the two heads, the order one heap of both would give.
        arrivals = [(o.arrival_min, _ARRIVAL, 2 * k, o.id) for k, o in enumerate(self.orders)]
        readies = [(o.ready_min, _READY, 2 * k + 1, o.id) for k, o in enumerate(self.orders)]
        self._timeline: list[tuple[float, int, int, int]] = sorted(arrivals + readies, reverse=True)
        self._queue: list[tuple[float, int, int, int]] = []
        self._seq = len(self._timeline)
        if self.wave_mode and self.orders:
            for k, wave_min in enumerate(self._wave_times()):
                self._push(wave_min, _WAVE, k)
        self._plans: list[PlanEval | None] = [None] * len(self.vehicles)
        self._empty_plans: dict[tuple[float, ...], PlanEval] = {}  # ``price`` of no stops, at _empty_plans_at
        self._empty_plans_at = math.nan
        # ``insertion``'s cache: every change of a plan or of the clock replaces the dict, which also marks
        # what was found with the one replaced as stale (``_fleet_insertions_with``, ``_searched_with``)
        self._insertions: dict[tuple[int, int], Insertion | None] = {}
        self._fleet_insertions: dict[int, FleetInsertion] = {}  # by order id, found at _fleet_insertions_with
        self._fleet_insertions_with = self._insertions
        self._searched_with: dict[tuple[int, int], Insertion | None] | None = None  # at the last fleet search
        self.fleet_plans = FleetPlans()  # every plan packed, for whole-fleet kernels
        self.late_cost = 0.0
        self.reject_cost = 0.0
        self.expected_cost = 0.0  # + the plans of vehicles that start away from their center (below)
        self.n_on_time = 0
        self.n_late = 0
        self.n_rejected = 0
        self.late_min_total = 0.0
        # Delivery attempts (attempts.*): the absence draws of each order's attempts and its choice, fixed
        # per episode seed from their own stream, so every policy meets the same customers.
        attempts = world.config.attempts
        self.attempts_on = attempts.enabled
        self.n_failed = 0  # orders failed for good (brought back)
        self.n_failed_attempts = 0
        self.failed_cost = 0.0
        self.locker_used = np.zeros(len(world.lockers), dtype=np.int64)  # parcels left or planned there
        self._stop_late = [0.0] * len(self.vehicles)  # lateness charged for each vehicle's current stop
        self._absence_u = np.empty((0, MAX_ATTEMPTS))
        if self.attempts_on:
            absence_rng = np.random.default_rng(seq.spawn(1)[0])
            self._absence_u = absence_rng.uniform(size=(len(self.orders), MAX_ATTEMPTS))
            wants_point = absence_rng.uniform(size=len(self.orders)) < attempts.pickup_point_share
            for o, point in zip(self.orders, wants_point, strict=True):
                o.absent_choice = AbsentChoice.PICKUP_POINT if point else AbsentChoice.REDELIVER
        if self._away_idle and _vehicles is None:  # a roster's vehicle away from its center drives home
            self.expected_cost = sum(self.plan(v.id).cost for v in self.vehicles)

    @classmethod
    def from_snapshot(
        cls,
        world: World,
        now_min: float,
        orders: Sequence[Order],
        vehicles: Sequence[Vehicle],
        pending: int | None,
    ) -> Simulator:
        """A simulator standing at a decision mid-shift, built from a live system's state.

        ``orders`` are every order the plans refer to plus the one to decide, ``orders[pending]``
        (``orders[i].id == i``; the pending one has status PENDING; ``pending=None``: no decision pends, e.g.
        to re-plan the fleet); ``vehicles`` carry their position, current stop, load, plan and
        (a drone) the km flown since its last charge (``flown_km``).
        Nothing beyond the snapshot is known: no further order will arrive, and costs count from the snapshot
        on (the vehicles' committed distance and duty are set to zero). The orders and vehicles become the
        simulator's, which changes them as it runs: pass copies to keep them. The state is checked against
        every simulator invariant; InvariantError names what is inconsistent.
        """
        from lastmile_env.sim.invariants import check_invariants

        listed = list(orders)
        if [o.id for o in listed] != list(range(len(listed))):
            raise SimulationError("snapshot orders must have ids 0..n-1 in order")
        if pending is not None and (
            not 0 <= pending < len(listed) or listed[pending].status != OrderStatus.PENDING
        ):
            raise SimulationError(f"snapshot order {pending} is not a pending order")
        fleet = list(vehicles)
        for v in fleet:  # costs count from the snapshot on: nothing committed before it is known
            v.dist_km = v.duty_min = 0.0
        # the snapshot's future is unknown: no order arrives; its drones keep their battery state
        sim = cls(world, 0, generator=lambda _world, _rng: [], _vehicles=fleet)
        sim.orders = listed
        sim.now = now_min
        sim.n_arrived = len(listed)
        sim.current = None if pending is None else listed[pending]
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
        vehicle, start = self.vehicles[vehicle_id], self.plan_start(vehicle_id)
        if stops:
            return evaluate_plan(self.world, self.orders, vehicle, stops, *start)
        # No stops, only the way home: alike vehicles (every parameter the kernels read) starting alike share
        # one pricing, kept while the clock stands (most of a fleet is idle at its center at a decision).
        if self._empty_plans_at != self.now:
            self._empty_plans, self._empty_plans_at = {}, self.now
        key = (
            vehicle.speed_factor, vehicle.home, vehicle.shift_end_min, vehicle.cost_per_km,
            vehicle.cost_per_hour, vehicle.capacity, vehicle.mode, vehicle.range_km, vehicle.recharge_min,
            vehicle.flown_km, *start,
        )  # fmt: skip
        found = self._empty_plans.get(key)
        if found is None:
            found = self._empty_plans[key] = evaluate_plan(self.world, self.orders, vehicle, stops, *start)
        return found

    def plan(self, vehicle_id: int) -> PlanEval:
        """The schedule and cost of a vehicle's remaining plan (cached until it changes)."""
        cached = self._plans[vehicle_id]
        start_min = self.plan_start(vehicle_id)[0]
        if cached is None or cached.frees_min[0] != start_min:  # an idle vehicle's plan starts now
            cached = self.price(vehicle_id, self.vehicles[vehicle_id].route)
            self._plans[vehicle_id] = cached
        return cached

    def priced_route(self, vehicle_id: int) -> PlanEval | None:
        """The last pricing of the vehicle's current route, if it is cached: its stop arrays hold, its
        schedule may start before now (``plan`` re-prices it then)."""
        return self._plans[vehicle_id]

    def insertion(self, vehicle_id: int, order: Order | None = None) -> Insertion | None:
        """The insertion rule's placement of a pending order (default: the current one) into a vehicle's
        plan, or None when the vehicle cannot take it. Cached until a plan or the clock changes."""
        if order is None:
            order = self._pending()
        elif order.status != _PENDING or order.id >= self.n_arrived:
            raise SimulationError(f"order {order.id} is not pending a decision")
        key = (order.id, vehicle_id)
        found = self._insertions.get(key, _UNSET)
        if found is _UNSET:
            if hasattr(self.insertion_rule, "fleet"):  # one compiled call prices every vehicle
                found = self.fleet_insertions(order).insertion(vehicle_id)
            else:
                found = self.insertion_rule(self, vehicle_id, order)
            self._insertions[key] = found
        return found

    def fleet_insertions(self, order: Order | None = None) -> FleetInsertion:
        """``insertion`` for every vehicle at once, as arrays (with each plan's return time); one call of
        the rule's ``fleet`` method when it has one. Cached like ``insertion``."""
        if order is None:
            order = self._pending()
        elif order.status != _PENDING or order.id >= self.n_arrived:
            raise SimulationError(f"order {order.id} is not pending a decision")
        if self._fleet_insertions_with is not self._insertions:  # a plan or the clock changed since
            self._fleet_insertions, self._fleet_insertions_with = {}, self._insertions
        found = self._fleet_insertions.get(order.id)
        if found is not None:  # the env asks ~3 times per decision
            return found
        fleet = getattr(self.insertion_rule, "fleet", None)
        if fleet is not None:
            found = fleet(self, order)
            self._searched_with = self._insertions
        else:
            each = [self.insertion(v, order) for v in range(len(self.vehicles))]
            found = FleetInsertion.of(
                np.array([-1 if e is None else e.pickup_after for e in each], dtype=np.int64),
                np.array([-1 if e is None else e.delivery_after for e in each], dtype=np.int64),
                np.array([np.inf if e is None else e.delta_cost for e in each]),
                np.array([np.nan if e is None else e.delta_dist_km for e in each]),
                np.array([np.nan if e is None else e.eta_min for e in each]),
                np.array([self.plan(v).end_min for v in range(len(self.vehicles))]),
            )
        self._fleet_insertions[order.id] = found
        return found

    def _fleet_searched(self) -> bool:
        """Whether ``fleet_plans`` is current: the rule's fleet search ran (for any order: it brings every
        row up to date) since the last change of any plan or of the clock."""
        return self._searched_with is self._insertions

    def fleet_state(self) -> FleetState:
        """Every vehicle's plan start (``plan_start``), planned stops and the idle count, as arrays: those the
        fleet search gathered when it ran at this state (read only), else gathered now."""
        if self.current is not None and self._fleet_searched():
            return self.fleet_plans.state()
        return fleet_state(self.vehicles, self.now)

    @property
    def events(self) -> list[Event]:
        """The event log, in time order: one ``Event`` per arrival, decision, stop served, etc. (the rows
        are built when the log is read, not on every event's path)."""
        built, logged = self._events, self._logged
        if len(built) < len(logged):
            built.extend(map(Event._make, logged[len(built) :]))
        return built

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
        return self.fleet_insertions().feasible.tolist()

    @property
    def decision(self) -> Decision | None:
        """The decision pending now (None between decisions and at the end of the shift)."""
        if self.current is not None:
            return as_named(Decision, (_DISPATCH, self.current, -1))
        if self.routing_vehicle is not None:
            return as_named(Decision, (_ROUTE_DECISION, None, self.routing_vehicle))
        if self.wave_pending:
            return as_named(Decision, (_WAVE_DECISION, None, -1))
        return None

    @property
    def pool(self) -> list[Order]:
        """Wave mode: the orders waiting for a wave, oldest first."""
        return self.deferred

    def must_dispatch(self, slack_min: float = 0.0) -> np.ndarray:
        """Wave mode: for each pooled order, whether it must go at this wave: at the last wave every order,
        else the orders whose direct trip from their center, leaving after the next wave (and its margin),
        would reach them after their due time or not be back by the shift end. With ``slack_min`` > 0 also
        those it would reach within that many minutes of their due time (a policy's safety margin: a
        route with other stops takes longer than the direct trip; release only checks ``slack_min`` 0)."""
        pool = self.pool
        if self.now >= self.last_wave_min - 1e-9:
            return np.ones(len(pool), dtype=bool)
        cfg = self.world.config
        leave_min = self.now + cfg.dispatch.wave_min + cfg.dispatch.wave_margin_min
        must = np.zeros(len(pool), dtype=bool)
        for i, o in enumerate(pool):
            start = max(leave_min, o.ready_min) + cfg.orders.pickup_service_min
            arrive = self.world.travel_arrival_min(o.center, o.loc, start, 1.0)
            begin = max(arrive, o.earliest_min)
            back = self.world.travel_arrival_min(o.loc, o.center, begin + o.service_min, 1.0)
            late = begin > o.due_min - slack_min + _MUST_EPS_MIN
            must[i] = late or back > cfg.fleet.shift_end_min + _MUST_EPS_MIN
        return must

    def route_mask(self, vehicle_id: int | None = None) -> np.ndarray:
        """For each stop of a vehicle's plan (default: the one pending a routing decision), whether it may be
        its next stop: a delivery of a parcel on board, or a pickup of a parcel that is ready now and whose
        load, carried from the start of the plan, keeps every point of the plan within capacity."""
        v = self.vehicles[self._routing_pending().id if vehicle_id is None else vehicle_id]
        mask = np.zeros(len(v.route), dtype=bool)
        if not v.route:
            return mask
        loads = self.plan(v.id).loads
        for i, stop in enumerate(v.route):
            order = self.orders[stop.order]
            if stop.kind == StopKind.DELIVERY:
                mask[i] = order.status == OrderStatus.ON_BOARD and order.vehicle == v.id
            else:
                mask[i] = order.ready_min <= self.now and int(loads[: i + 1].max()) + order.size <= v.capacity
        return mask

    def can_wait(self, vehicle_id: int | None = None) -> bool:
        """Whether a vehicle (default: the one pending a routing decision) may wait: some pickup of its plan
        is not ready yet (its readiness will wake the vehicle)."""
        v = self.vehicles[self._routing_pending().id if vehicle_id is None else vehicle_id]
        return any(s.kind == StopKind.PICKUP and self.orders[s.order].ready_min > self.now for s in v.route)

    def price_route(self, index: int, vehicle_id: int | None = None) -> PlanEval:
        """Schedule and cost of a vehicle's plan with stop ``index`` served next (nothing changes)."""
        vid = self._routing_pending().id if vehicle_id is None else vehicle_id
        return self.price(vid, reordered(self.vehicles[vid].route, index))

    def cost(self) -> CostBreakdown:
        """Cost committed so far: legs driven or under way, lateness of committed deliveries, rejections."""
        distance: float = 0  # summed in fleet order, as sum() did
        driver: float = 0
        for v in self.vehicles:
            distance += v.dist_km * v.cost_per_km
            driver += v.duty_min * v.cost_per_hour / 60.0
        return as_named(CostBreakdown, (distance, driver, self.late_cost, self.reject_cost, self.failed_cost))

    def ledger(self) -> Ledger:
        """The running totals reward functions compare (``Ledger``)."""
        return as_named(
            Ledger,
            (
                self.expected_cost,
                self.n_on_time,
                self.n_late,
                self.n_rejected,
                self.late_min_total,
                self.n_failed,
            ),
        )

    @property
    def n_open(self) -> int:
        """Accepted orders not yet delivered (or failed)."""
        return self.n_arrived - self.n_settled - (self.current is not None) - self.n_waiting

    @property
    def n_settled(self) -> int:
        """Orders with an outcome: delivered (on time or late), rejected, or failed."""
        return self.n_on_time + self.n_late + self.n_rejected + self.n_failed

    @property
    def n_waiting(self) -> int:
        """Orders deferred or waiting in a tick batch, besides the current one."""
        return len(self._batch) + len(self.deferred)

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
        served = ins.pickup_after if order.is_return else ins.delivery_after + 1  # a return: its collection
        # The fleet search left every packed plan current: its row has the old plan's cost, and the new plan
        # is scheduled in place (the same arithmetic as pricing ``stops`` again); the plan itself is priced
        # only if asked for (``plan``).
        committed = None
        if self._fleet_searched():
            old_cost = self.fleet_plans.summary.item(vehicle_id, 0)
            committed = self.fleet_plans.insert(
                self.world, vehicle_id, stops, ins.pickup_after, ins.delivery_after, order, served
            )
        if committed is None:
            plan = self.price(vehicle_id, stops)
            old_cost, committed = self.plan(vehicle_id).cost, (plan.cost, float(plan.starts_min[served]))
            self._plans[vehicle_id] = plan
        else:
            self._plans[vehicle_id] = None
        new_cost, eta = committed
        delta = new_cost - old_cost
        v.route = stops
        self.fleet_plans.touch(vehicle_id)
        self._insertions = {}
        order.status = _ASSIGNED
        order.vehicle = vehicle_id
        order.decided_min = self.now
        order.promised_eta_min = eta
        self.expected_cost += delta
        self._logged.append((self.now, "dispatch", order.id, vehicle_id))
        self.current = None
        if v.current is None and not v.returning:
            self._start_next(v)
        if self.track_eta:
            self._update_etas(v)
        if self.debug:
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
        self._logged.append((self.now, "reject", order.id, -1))
        self.current = None
        if self.debug:
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
        self._logged.append((self.now, "defer", order.id, -1))
        self.current = None
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
                    f"replan: the plan of vehicle {vid} is infeasible (capacity, shift end or battery range)"
                )
            plans[vid] = plan
        delta = sum(plans[vid].cost - self.plan(vid).cost for vid in routes)
        for vid, stops in routes.items():
            v = self.vehicles[vid]
            v.route = list(stops)
            self.fleet_plans.touch(vid)
            for stop in stops:
                self.orders[stop.order].vehicle = vid
            self._plans[vid] = plans[vid]
        self.expected_cost += delta
        self._insertions = {}
        for vid in routes:
            v = self.vehicles[vid]
            if v.current is None and not v.returning and (v.route or v.waiting):
                self._start_next(v)
            self._update_etas(v)
        self._check()
        return delta

    def release(self, routes: Sequence[tuple[int, Sequence[int]]], reject: Sequence[int] = ()) -> float:
        """Wave mode: send pooled orders now. Each route ``(vehicle, order ids)`` is appended to that
        vehicle's plan: collect the parcels at their centers, then deliver them in the given order; its
        parcels leave no earlier than the wave + ``dispatch.wave_margin_min``. Orders in ``reject`` are
        rejected; the rest of the pool waits for the next wave. Every order of ``must_dispatch`` must be
        released or rejected, and every extended plan must be feasible (capacity, shift end); otherwise
        SimulationError names the problem and nothing changes. Returns the expected cost added.
        """
        if not self.wave_pending:
            raise SimulationError("no wave is pending; call next_decision() first (dispatch.mode: wave)")
        pool = {o.id: o for o in self.pool}
        chosen: list[int] = []
        for vid, ids in routes:
            if not 0 <= vid < len(self.vehicles):
                raise SimulationError(f"vehicle {vid} does not exist (fleet of {len(self.vehicles)})")
            if len(ids) == 0:
                raise SimulationError(f"the route for vehicle {vid} has no order")
            chosen.extend(int(i) for i in ids)
        chosen.extend(int(i) for i in reject)
        unknown = sorted(set(chosen) - set(pool))
        if unknown:
            raise SimulationError(f"orders {unknown} are not in the wave's pool")
        if len(set(chosen)) != len(chosen):
            twice = sorted({i for i in chosen if chosen.count(i) > 1})
            raise SimulationError(f"orders {twice} are released or rejected more than once")
        left = [o.id for o, must in zip(self.pool, self.must_dispatch(), strict=True) if must]
        missing = sorted(set(left) - set(chosen))
        if missing:
            raise SimulationError(
                f"orders {missing} must be dispatched at this wave (waiting would make them late or this is "
                "the last wave): release or reject them"
            )
        priced = self.price_trips(routes)
        infeasible = [vid for vid, (_, plan) in priced.items() if not plan.feasible]
        if infeasible:
            raise SimulationError(
                f"the routes for vehicles {infeasible} are infeasible (capacity or back by the shift end)"
            )
        released = {int(i) for _, ids in routes for i in ids}
        leave_min = self._wave_leave_min()
        for i in released:
            pool[i].ready_min = max(pool[i].ready_min, leave_min)
        added = 0.0
        for vid, (stops, plan) in priced.items():
            v = self.vehicles[vid]
            added += plan.cost - self.plan(vid).cost
            v.route = stops
            self.fleet_plans.touch(vid)
            self._plans[vid] = plan
            for m, stop in enumerate(stops):
                order = self.orders[stop.order]
                if stop.kind == StopKind.DELIVERY and order.id in released:
                    order.status = OrderStatus.ASSIGNED
                    order.vehicle = vid
                    order.decided_min = self.now
                    order.promised_eta_min = float(plan.starts_min[m])
                    self._logged.append((self.now, "dispatch", order.id, vid))
        penalty = self.world.config.costs.reject_penalty
        for i in reject:
            order = pool[int(i)]
            order.status = OrderStatus.REJECTED
            order.decided_min = self.now
            self.reject_cost += penalty
            self.n_rejected += 1
            added += penalty
            self._logged.append((self.now, "reject", order.id, -1))
        self.expected_cost += added
        gone = set(chosen)
        self.deferred = [o for o in self.deferred if o.id not in gone]
        self.wave_pending = False
        self._insertions = {}
        for vid in priced:
            v = self.vehicles[vid]
            if v.current is None and not v.returning:
                self._start_next(v)
            self._update_etas(v)
        self._check()
        return added

    def price_trips(
        self, trips: Sequence[tuple[int, Sequence[int]]]
    ) -> dict[int, tuple[list[Stop], PlanEval]]:
        """Wave mode: for each vehicle of ``trips`` (``(vehicle, order ids)``, as ``release`` takes them), its
        plan with its trips appended (collect the parcels at their centers, then deliver in order) and that
        plan's schedule and cost, the parcels leaving no earlier than the wave + its margin, as ``release``
        would make them. Nothing changes."""
        orders = {int(i): self.orders[int(i)] for _, ids in trips for i in ids}
        saved = {i: o.ready_min for i, o in orders.items()}
        leave_min = self._wave_leave_min()
        for o in orders.values():
            o.ready_min = max(o.ready_min, leave_min)
        try:
            plans: dict[int, list[Stop]] = {}
            for vid, ids in trips:
                stops = plans.setdefault(vid, list(self.vehicles[vid].route))
                stops += [Stop(StopKind.PICKUP, int(i), self.orders[int(i)].center) for i in ids]
                stops += [Stop(StopKind.DELIVERY, int(i), self.orders[int(i)].loc) for i in ids]
            return {vid: (stops, self.price(vid, stops)) for vid, stops in plans.items()}
        finally:
            for i, ready in saved.items():
                orders[i].ready_min = ready

    def route(self, index: int) -> float:
        """Routing mode: serve stop ``index`` of the pending vehicle's plan next (moved to the front, the
        rest keeps its order) and start driving there; returns the plan cost change."""
        v = self._routing_pending()
        if not 0 <= index < len(v.route):
            raise InfeasibleRoute(f"vehicle {v.id} has {len(v.route)} planned stops, not a stop {index}")
        if not self.route_mask(v.id)[index]:
            stop = v.route[index]
            raise InfeasibleRoute(
                f"stop {index} of vehicle {v.id} ({stop.kind.name.lower()} of order {stop.order}) cannot be "
                f"next: valid stops are {np.flatnonzero(self.route_mask(v.id)).tolist()} (deliveries of "
                "parcels on board, pickups of ready parcels within capacity)"
            )
        stops = reordered(v.route, index)
        plan = self.price(v.id, stops)
        delta = plan.cost - self.plan(v.id).cost
        v.route = stops
        self.fleet_plans.touch(v.id)
        self._plans[v.id] = plan
        self.expected_cost += delta
        self._insertions = {}
        self._logged.append((self.now, "route", stops[0].order, v.id))
        self.routing_vehicle = None
        self._start_next(v, decided=True)
        self._check()
        return delta

    def wait(self) -> float:
        """Routing mode: hold the pending vehicle where it is until a parcel of its plan becomes ready or its
        plan changes (driver time is charged as the clock runs). Returns 0 (the cost comes with time)."""
        v = self._routing_pending()
        if not self.can_wait(v.id):
            raise InfeasibleRoute(
                f"vehicle {v.id} cannot wait: every parcel of its plan is ready or on board, so no event "
                "would wake it; choose a stop"
            )
        v.waiting = True
        self._logged.append((self.now, "wait", -1, v.id))
        self.routing_vehicle = None
        self._check()
        return 0.0

    def advance(self) -> Order | None:
        """Run events up to the next dispatch decision; returns the order to decide, or None when the shift
        is over. In routing mode use ``next_decision``, which also stops at routing decisions."""
        decision = self.next_decision()
        if decision is None:
            return None
        if decision.kind == _WAVE_DECISION:
            raise SimulationError(
                "a wave is pending: in wave mode (dispatch.mode: wave), drive the simulator with "
                "next_decision() and answer with release()"
            )
        if decision.kind == _ROUTE_DECISION:
            raise SimulationError(
                f"vehicle {decision.vehicle} awaits a routing decision: in routing mode, drive the simulator "
                "with next_decision() and answer with route() or wait()"
            )
        return decision.order

    def next_decision(self) -> Decision | None:
        """Run events up to the next decision of either kind (``decision``); None when the shift is over."""
        self._check_no_pending()
        if self._route_queue and (decision := self._pop_route_decision()) is not None:
            return decision
        if self._batch:
            self.current = self._batch.pop(0)
            return self.decision
        queue, timeline = self._queue, self._timeline
        while queue or timeline:
            if timeline and (not queue or timeline[-1] < queue[0]):
                time_min, kind, _, index = timeline.pop()
            else:
                time_min, kind, _, index = heappop(queue)
            now = self.now
            if time_min < now - 1e-9:
                raise SimulationError(f"time went back from {now} to {time_min}")
            if time_min > now:
                if self.routing:
                    self._accrue_waiting(time_min)
                away = self._idle_away_costs() if self._away_idle else None
                self.now = time_min
                self._insertions = {}
                if away:
                    self._reprice_idle_away(away)
            if kind == _VEHICLE:
                self._insertions = {}
                self._vehicle_free(self.vehicles[index])
            elif kind == _ARRIVAL:
                order = self.orders[index]
                self.n_arrived = index + 1
                self._logged.append((self.now, "arrival", order.id, -1))
                if self.wave_mode:  # it waits in the pool for the next wave
                    self.deferred.append(order)
                    continue
                self.current = order
                if self.debug:
                    self._check()
                return as_named(Decision, (_DISPATCH, order, -1))  # ``decision`` now
            elif kind == _WAVE:
                if self.deferred:
                    self.wave_pending = True
                    self._logged.append((self.now, "wave", -1, -1))
                    self._check()
                    return self.decision
                continue
            elif kind == _TICK:
                self._batch, self.deferred = self.deferred, []
                if self._batch:
                    self.current = self._batch.pop(0)
                    self._check()
                    return self.decision
            elif kind == _READY:
                self._logged.append((self.now, "ready", index, -1))
                if self.routing:
                    order = self.orders[index]
                    if order.status == _ASSIGNED and self.vehicles[order.vehicle].waiting:
                        self._request_route(self.vehicles[order.vehicle])
            if self._route_queue and (decision := self._pop_route_decision()) is not None:
                return decision
        if self._away_idle and self._send_idle_home():
            return self.next_decision()  # run their way home
        self.done = True
        self._check()
        return None

    # ------------------------------------------------------------------------------------- internals
    def _pending(self) -> Order:
        if self.current is None:
            raise SimulationError("no order is pending a decision; call advance() first")
        return self.current

    def _check_no_pending(self) -> None:
        if self.wave_pending:
            raise SimulationError(f"the wave at {self.now:.1f} min is pending: release() its orders first")
        if self.current is not None:
            raise SimulationError(f"order {self.current.id} is pending: assign or reject it first")
        if self.routing_vehicle is not None:
            raise SimulationError(
                f"vehicle {self.routing_vehicle} awaits a routing decision: route() or wait() first"
            )

    def _routing_pending(self) -> Vehicle:
        if self.routing_vehicle is None:
            raise SimulationError("no vehicle is pending a routing decision; call next_decision() first")
        return self.vehicles[self.routing_vehicle]

    def _pop_route_decision(self) -> Decision | None:
        """The next queued routing decision (a vehicle whose plan was emptied meanwhile heads home)."""
        while self._route_queue:
            v = self.vehicles[self._route_queue.pop(0)]
            if v.route:
                self.routing_vehicle = v.id
                self._check()
                return Decision(DecisionKind.ROUTE, None, v.id)
            self._start_next(v, decided=True)
        return None

    def _request_route(self, v: Vehicle) -> None:
        """Routing mode: the vehicle is free now with planned stops; ask for its next one."""
        v.waiting = False
        v.free_min = max(v.free_min, self.now)
        self.fleet_plans.touch(v.id)
        if v.id != self.routing_vehicle and v.id not in self._route_queue:
            self._route_queue.append(v.id)

    def _accrue_waiting(self, until_min: float) -> None:
        """Routing mode, the clock moving to ``until_min``: waiting vehicles are charged the driver time and
        their plans start later; the expected cost follows (committed + re-priced plans)."""
        for v in self.vehicles:
            if v.waiting:
                before = self.plan(v.id).cost
                waited = until_min - v.free_min
                v.duty_min += waited
                v.free_min = until_min
                self.fleet_plans.touch(v.id)
                self._plans[v.id] = None
                after = self.price(v.id, v.route)
                self._plans[v.id] = after
                self.expected_cost += waited * v.cost_per_hour / 60.0 + after.cost - before
                self._update_etas(v)

    # -------------------------------------------------------------- rosters, couriers idle away from home
    def _idle_away_costs(self) -> dict[int, float]:
        """The plan costs of the idle vehicles away from their center (they start when the clock does)."""
        return {v.id: self.plan(v.id).cost for v in self.vehicles if v.idle and v.node != v.home}

    def _reprice_idle_away(self, before: dict[int, float]) -> None:
        """The clock moved: the way home of an idle vehicle away from its center now leaves later (another
        congestion hour, perhaps past its shift); the expected cost follows the re-priced plans."""
        for vid, cost in before.items():
            self.expected_cost += self.plan(vid).cost - cost

    def _send_idle_home(self) -> bool:
        """The day's work is done: every idle vehicle away from its center drives home (False: none was)."""
        away = [v for v in self.vehicles if v.idle and v.node != v.home]
        for v in away:
            self._start_next(v, go_home=True)
        return bool(away)

    def _next_tick(self) -> float:
        tick = self.world.config.dispatch.tick_min
        return (math.floor(self.now / tick + 1e-9) + 1) * tick

    def _wave_leave_min(self) -> float:
        """Wave mode: when the parcels of the pending wave may leave their center at the earliest."""
        return self.now + self.world.config.dispatch.wave_margin_min

    def _wave_times(self) -> list[float]:
        """Wave mode: every wave of the day, from ``wave_start_min`` up to the first wave at or after the
        day's last arrival or ``last_wave_min`` (the last wave, when every pooled order goes)."""
        cfg = self.world.config.dispatch
        last_arrival = max(o.arrival_min for o in self.orders)
        last = max(last_arrival, cfg.last_wave_min or 0.0)
        n = max(0, math.ceil((last - cfg.wave_start_min) / cfg.wave_min - 1e-9))
        times = [cfg.wave_start_min + k * cfg.wave_min for k in range(n + 1)]
        self.last_wave_min = times[-1]
        return times

    def _push(self, time_min: float, kind: int, index: int) -> None:
        heappush(self._queue, (time_min, kind, self._seq, index))
        self._seq += 1

    def _vehicle_free(self, v: Vehicle) -> None:
        """A vehicle finished its current stop (or its return home); ``_start_next`` (which marks the vehicle
        for the packed plans, ``FleetPlans.touch``) commits what it does next."""
        stop = v.current
        if stop is not None:
            order = self.orders[stop.order]
            if stop.kind == _PICKUP:
                order.status = _ON_BOARD
                order.pickup_min = v.current_start_min
                v.load += order.size
                self._logged.append((self.now, "pickup", order.id, v.id))
            elif self.attempts_on and self._absent(order, v.current_start_min):
                self._failed_attempt(v, order)
            elif order.returning:
                order.status = OrderStatus.FAILED
                order.pod_node, order.pod_min, order.pod_how = stop.loc, v.current_start_min, "returned"
                v.load -= order.size
                self.n_failed += 1
                self._logged.append((self.now, "returned", order.id, v.id))
            else:
                order.status = _DELIVERED
                order.delivered_min = v.current_start_min
                v.load -= order.size
                if order.on_time:
                    self.n_on_time += 1
                else:
                    self.n_late += 1
                    self.late_min_total += order.late_min
                if order.is_return:  # proof of collection
                    order.pod_node, order.pod_min, order.pod_how = order.center, order.pickup_min, "collected"
                elif self.attempts_on:
                    at_locker = order.locker >= 0
                    order.attempts += not at_locker
                    order.pod_node, order.pod_min = stop.loc, order.delivered_min
                    order.pod_how = "pickup_point" if at_locker else "door"
                self._logged.append((self.now, "delivery", order.id, v.id))
            v.current = None
        elif v.returning:
            v.returning = False
        if self._start_next(v):
            self._logged.append((self.now, "vehicle_idle", -1, v.id))

    def _absent(self, order: Order, begin_min: float) -> bool:
        """Whether the customer is absent at this door attempt: the order's draw for the attempt against the
        absence probability of the attempt's clock hour (never at a locker or at the center a failed parcel
        goes back to, never for a snapshot's orders, which have no draws)."""
        if order.locker >= 0 or order.returning or order.is_return or order.id >= len(self._absence_u):
            return False
        hour = int((self.world.config.shift_start_hour + begin_min / 60.0) % 24.0)
        absence = self.world.config.attempts.absence_by_hour[hour]
        return bool(self._absence_u[order.id, order.attempts] < absence)

    def _failed_attempt(self, v: Vehicle, order: Order) -> None:
        """The customer was absent: charge the penalty, keep the parcel on board and plan its next stop.

        A customer who chose a pickup point gets the parcel at the locker nearest (by travel time) to the
        address that has room (if a drone's battery reaches it). Else (or with no room anywhere) the parcel
        is either redelivered, at least
        ``redelivery_delay_min`` after the attempt (after a first attempt only, and only within the
        vehicle's shift), or brought back to the vehicle's center, the order failed for good at the cost of a
        rejection (``costs.reject_penalty``): whichever costs less. The new stop is a delivery stop of the
        order at its new place (``loc``), inserted where it costs least in the vehicle's plan
        (``_best_drop``). The lateness charged for the attempt is refunded (lateness counts at the actual
        delivery); the surprise goes into the expected cost.
        """
        cfg = self.world.config.attempts
        order.attempts += 1
        self.n_failed_attempts += 1
        before = self.plan(v.id).cost  # the plan after the stop, as if the parcel had been delivered
        refund = self._stop_late[v.id]
        self.late_cost -= refund
        penalty = cfg.failed_penalty
        v.free_load += order.size  # still on board
        self._plans[v.id] = None
        self._insertions = {}
        self.fleet_plans = FleetPlans()  # the order's stop arrays change: every packed row is rebuilt
        self._logged.append((self.now, "failed_attempt", order.id, v.id))
        choice = None
        if order.absent_choice == AbsentChoice.PICKUP_POINT:
            locker = self._free_locker(order.loc)
            if locker >= 0:
                address, order.loc = order.loc, int(self.world.lockers[locker])
                choice = self._best_drop(v, order, need_shift=False)
                if choice is None:  # beyond a drone's battery range
                    order.loc = address
                else:
                    self.locker_used[locker] += 1
                    order.locker = locker
        if choice is None:
            address, earliest = order.loc, order.earliest_min
            order.returning, order.loc = True, v.home
            choice = self._best_drop(v, order, need_shift=False)
            lost = self.world.config.costs.reject_penalty
            if order.attempts < MAX_ATTEMPTS:
                order.returning, order.loc = False, address
                order.earliest_min = max(earliest, v.current_start_min + cfg.redelivery_delay_min)
                again = self._best_drop(v, order, need_shift=True)
                if again is not None and (choice is None or again[1].cost <= choice[1].cost + lost):
                    choice, lost = again, 0.0
                else:
                    order.returning, order.loc, order.earliest_min = True, v.home, earliest
            penalty += lost
        # First in the plan, the way back to the center always qualifies: the load only goes down, and a
        # drone flies straight home, which its planned sortie through this door already allowed for.
        assert choice is not None
        v.route, plan = choice
        self.fleet_plans.touch(v.id)
        self._plans[v.id] = plan
        self.failed_cost += penalty
        self.expected_cost += penalty - refund + plan.cost - before

    def _free_locker(self, loc: int) -> int:
        """The locker nearest (by travel time) to ``loc`` that has room; -1 if none."""
        room = np.flatnonzero(self.locker_used < self.world.config.attempts.lockers.capacity)
        if room.size == 0:
            return -1
        times = np.array([self.world.time_min[loc][int(self.world.lockers[i])] for i in room])
        return int(room[int(np.argmin(times))])

    def _best_drop(self, v: Vehicle, order: Order, need_shift: bool) -> tuple[list[Stop], PlanEval] | None:
        """The vehicle's plan with the delivery stop of an order on board at its cheapest place (priced as
        the order stands now): a feasible plan first, else (unless ``need_shift``) the cheapest within
        capacity and battery range (a vehicle may come back after its shift end, but cannot fly further
        than its battery); None if none. Nothing changes."""
        stop = Stop(StopKind.DELIVERY, order.id, order.loc)
        best: tuple[tuple[int, float], list[Stop], PlanEval] | None = None
        for p in range(len(v.route) + 1):
            stops = [*v.route[:p], stop, *v.route[p:]]
            plan = self.price(v.id, stops)
            if plan.feasible:
                key = (0, plan.cost)
            elif not need_shift and int(plan.loads.max()) <= v.capacity and plan.in_range:
                key = (1, plan.cost)
            else:
                continue
            if best is None or key < best[0]:
                best = (key, stops, plan)
        return None if best is None else (best[1], best[2])

    def _start_next(self, v: Vehicle, decided: bool = False, go_home: bool = False) -> bool:
        """Commit the vehicle to its next leg: the first planned stop, or the way home (for a courier that
        waits at its last drop, ``fleet.idle_at: last_drop``, only with ``go_home``). Returns whether it has
        no leg to drive and stays idle where it is (``Vehicle.idle``, known here without asking).

        The leg is a one-stop plan priced by ``evaluate_plan``, so without travel noise it executes exactly
        as it was planned. With noise (``travel.noise``) the leg's driving time is its planned time x a
        factor drawn from the noise stream; the service at the stop then starts at the realized arrival (or
        when the stop opens) and the lateness is priced there (``kernels.late_cost``). The surprise (the
        realized leg and the re-priced rest of the plan against the old plan) goes into the expected cost,
        so the rewards still sum to minus the episode's cost. In routing mode a vehicle with planned stops
        waits for a routing decision instead (``decided``: it was just made).
        """
        vid = v.id
        self.fleet_plans.touch(vid)
        if self.routing:
            if v.route and not decided:
                self._request_route(v)
                return False
            v.waiting = False
        free_min, now = v.free_min, self.now
        depart = now if now > free_min else free_min  # max(free_min, now), without the builtin's call
        noisy = self._noise_rng is not None
        before = committed = 0.0
        if noisy and (v.route or v.node != v.home):
            before = self.plan(vid).cost
            committed = v.dist_km * v.cost_per_km + v.duty_min * v.cost_per_hour / 60.0 + self.late_cost
        self._plans[vid] = None
        src = v.node
        factor = self._leg_factor() if noisy else 1.0
        route = v.route
        homing = not route
        if route:
            stop = route.pop(0)
            dst = stop.loc
            opens, due, service, load_delta = stop_values(
                self.orders[stop.order], stop.kind, self._pickup_service_min
            )
            open_min, due_min, service_min = float(opens), float(due), float(service)
            # the one-stop plan [stop], bit for bit as ``evaluate_plan`` prices it (the arguments spelled
            # out: a call with ``*`` unpacking builds them into a list first)
            time_modes, dist_modes, mults, shift_start_h = self._travel
            late_fixed, late_per_min = self._late_costs
            arrive, begin, free, late, leg_km = kernels.leg(
                time_modes, dist_modes, mults, shift_start_h, v.speed_factor, v.home, v.mode, v.range_km,
                v.recharge_min, depart, src, dst, open_min, due_min, service_min, late_fixed, late_per_min,
            )  # fmt: skip
            if factor != 1.0:
                arrive = depart + (arrive - depart) * factor
                begin = max(arrive, open_min)
                charging = v.recharge_min > 0 and dst == v.home and leg_km > 0
                free = kernels.stop_free(arrive, begin, service_min, v.recharge_min, charging)
                late = kernels.late_cost(begin, due_min, *self._late_costs)
            v.current, v.current_start_min = stop, begin
            v.free_load += int(load_delta)
            self.late_cost += late
            self._stop_late[vid] = late
        elif src != v.home and (v.returns_home or go_home):
            dst = v.home
            arrive = free = self.world.travel_arrival_min(src, dst, depart, v.speed_factor, v.mode)
            if factor != 1.0:
                arrive = free = depart + (arrive - depart) * factor
            v.returning = True
            leg_km = self.world.leg_km(src, dst, v.mode)
        else:
            v.free_min = depart
            return True
        v.dist_km += leg_km
        v.duty_min += free - depart
        if homing and v.recharge_min > 0 and leg_km > 0:
            # back home: the plan ends at the arrival; the battery recharges before it leaves again
            free = kernels.stop_free(arrive, free, 0.0, v.recharge_min, True)
        v.flown_km = 0.0 if dst == v.home else v.flown_km + leg_km
        self.legs.append((vid, src, dst, depart, arrive, factor))
        self.leg_stops.append(None if homing else stop)
        v.node, v.free_min = dst, free
        self._push(free, _VEHICLE, vid)
        if noisy:
            now_committed = v.dist_km * v.cost_per_km + v.duty_min * v.cost_per_hour / 60.0 + self.late_cost
            self.expected_cost += now_committed - committed + self.plan(vid).cost - before
        if self.track_eta:
            self._update_etas(v)
        return False

    def _leg_factor(self) -> float:
        """The next leg's travel-time factor: lognormal with mean 1 (``travel.noise``)."""
        assert self._noise_rng is not None
        sigma = self._noise_sigma
        return float(self._noise_rng.lognormal(-0.5 * sigma * sigma, sigma))

    def _update_etas(self, v: Vehicle) -> None:
        """``travel.live_eta``: the live ETA of every delivery on the vehicle (the stop under way, then its
        plan from ``plan``, the same schedule that is executed); each change is logged in ``eta_log``.

        The vehicle under way knows its arrival at its current stop (as a navigation app does), so the plan
        starts at the realized end of the current leg; the noise of every later leg is unknown."""
        if not self.track_eta:
            return
        orders = self.orders
        current = v.current
        if current is not None and (current.kind == StopKind.DELIVERY) != orders[current.order].is_return:
            self._set_eta(orders[current.order], v.current_start_min)
        if v.route:
            starts = self.plan(v.id).starts_min
            for m, stop in enumerate(v.route):
                if (stop.kind == StopKind.DELIVERY) != orders[stop.order].is_return:  # the customer's stop
                    self._set_eta(orders[stop.order], float(starts[m]))

    def _set_eta(self, order: Order, eta: float) -> None:
        if not abs(order.live_eta_min - eta) <= 1e-9:  # a change (or the first ETA: nan)
            order.live_eta_min = eta
            self.eta_log.append((self.now, order.id, eta))

    def _check(self) -> None:
        if self.debug:
            from lastmile_env.sim.invariants import LegAudit, check_invariants

            if self._leg_audit is None:
                self._leg_audit = LegAudit()
            check_invariants(self, self._leg_audit)

    # --------------------------------------------------------------------------------------- results
    def summary(self) -> dict[str, Any]:
        """Outcome of the episode so far: on-time rate, cost breakdown, distance, lateness, ETA error.

        The on-time rate is on-time deliveries over orders with a known outcome (delivered, rejected or
        failed): a rejected or failed order counts as not served on time; ``on_time_rate_<option>`` is the
        same over the orders of one service option (nan when there is none). ``revenue`` is the price of
        every delivered order (``orders.prices``, by option), ``profit`` the revenue minus the cost.
        Delivery attempts: ``delivered_door`` / ``delivered_pickup_point`` / ``failed`` orders, and the
        ``failed_attempts`` (customer absent); ``cost_failures``: their penalties and those of failed orders.
        Returns (``orders.returns_share``) count among the orders and, once back at the center, among the
        delivered ones (on time when collected by their due time; no revenue); ``returns`` and
        ``on_time_rate_return`` report them apart, and the per-option rates leave them out.
        """
        arrived = self.orders[: self.n_arrived]
        delivered = [o for o in arrived if o.status == OrderStatus.DELIVERED]
        settled = len(delivered) + self.n_rejected + self.n_failed
        cost = self.cost()
        eta_errors = [abs(o.eta_error_min) for o in delivered]
        live_errors = self.live_eta_errors() if self.track_eta else []
        prices = self.world.config.orders.prices
        price = {
            ServiceOption.SAME_DAY: prices.same_day,
            ServiceOption.WINDOW: prices.window,
            ServiceOption.EXPRESS: prices.express,
        }
        revenue = sum(price[o.option] for o in delivered if not o.is_return)
        by_option: dict[ServiceOption, list[int]] = {option: [0, 0] for option in ServiceOption}
        returns = [0, 0]  # settled, on time
        for o in arrived:  # settled (delivered, rejected or failed), on time
            if o.is_return:
                if o.status >= OrderStatus.DELIVERED:
                    returns[0] += 1
                    returns[1] += o.on_time
            elif o.status >= OrderStatus.DELIVERED:
                by_option[o.option][0] += 1
                by_option[o.option][1] += o.on_time
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
            "eta_live_abs_error_min": float(np.mean(np.abs(live_errors))) if live_errors else math.nan,
            **{
                f"on_time_rate_{option.name.lower()}": hits / n if n else math.nan
                for option, (n, hits) in by_option.items()
            },
            "revenue": revenue,
            "profit": revenue - cost.total,
            "returns": sum(o.is_return for o in arrived),
            "on_time_rate_return": returns[1] / returns[0] if returns[0] else math.nan,
            "delivered_door": sum(o.locker < 0 and not o.is_return for o in delivered),
            "delivered_pickup_point": sum(o.locker >= 0 for o in delivered),
            "failed": self.n_failed,
            "failed_attempts": self.n_failed_attempts,
            "cost_failures": cost.failures,
            **self._by_mode(delivered),
        }

    def _by_mode(self, delivered: list[Order]) -> dict[str, float]:
        """Vehicle modes: ``delivered_<mode>`` (orders delivered by vehicles of that mode) and ``km_<mode>``
        (km driven or flown), for van, cargo_bike and drone."""
        out: dict[str, float] = {}
        for mode in MODES:
            out[f"delivered_{mode}"] = sum(self.vehicles[o.vehicle].mode_name == mode for o in delivered)
        for mode in MODES:
            out[f"km_{mode}"] = sum(v.dist_km for v in self.vehicles if v.mode_name == mode)
        return out

    def live_eta_errors(self, lead_min: float = LIVE_ETA_LEAD_MIN) -> list[float]:
        """``travel.live_eta``: actual minus live ETA of each delivered order, taking the ETA in force
        ``lead_min`` before the delivery (its last update made by then); orders promised later than that
        (dispatched less than ``lead_min`` before their delivery) have no such ETA and are left out."""
        in_force: dict[int, float] = {}
        for time_min, order_id, eta in self.eta_log:  # in time order
            order = self.orders[order_id]
            if order.status == OrderStatus.DELIVERED and time_min <= order.served_min - lead_min + 1e-9:
                in_force[order_id] = eta
        return [self.orders[i].served_min - eta for i, eta in sorted(in_force.items())]
