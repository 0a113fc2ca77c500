"""Evaluating a vehicle's plan: the one schedule computation that execution and insertion both use.

A plan starts where and when the vehicle is free, visits its stops in order (waiting for a parcel to be ready
at a pickup, for a window to open at a delivery), and ends back at the vehicle's center. Its cost is
distance + driver time (start to return) + lateness penalties of its deliveries. The arithmetic is in
``lastmile_env.kernels`` (compiled); this module turns stops into its arrays and back.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from lastmile_env import kernels
from lastmile_env.sim.types import Order, Stop, StopKind, Vehicle, as_named, has_battery
from lastmile_env.sim.world import World

if TYPE_CHECKING:
    from lastmile_env.sim.simulator import Simulator


# The stop kinds as module constants (the same objects): reading a member through its class costs ~1,000
# instructions in Python 3.11 (the hook of ``EnumType.__getattr__``), a global ~40.
_PICKUP, _DELIVERY = StopKind.PICKUP, StopKind.DELIVERY


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
    feasible: bool  # capacity respected, back by the vehicle's shift end, every sortie within range
    in_range: bool  # every sortie within the battery range (always, for a vehicle without one)
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
    return kernels.plan_cost(dist_km, duty_min, vehicle.cost_per_km, vehicle.cost_per_hour, late_cost)


def vehicle_params(vehicle: Vehicle) -> np.ndarray:
    """A vehicle as the kernels read it: (speed factor, home, shift end, cost per km, cost per minute,
    capacity, cost per hour, mode, range km, recharge minutes, 0, km flown since its last charge)."""
    return np.array(_param_row(vehicle), dtype=np.float64)


def _param_row(vehicle: Vehicle) -> list[float]:
    """``vehicle_params`` as a list: a fleet's rows convert to one array in one call (``FleetPlans.sync``)."""
    return [
        vehicle.speed_factor,
        vehicle.home,
        vehicle.shift_end_min,
        vehicle.cost_per_km,
        vehicle.cost_per_hour / 60.0,
        vehicle.capacity,
        vehicle.cost_per_hour,
        vehicle.mode,
        vehicle.range_km,
        vehicle.recharge_min,
        0.0,
        vehicle.flown_km,
    ]


def stop_values(order: Order, kind: StopKind, pickup_service_min: float) -> tuple[float, float, float, int]:
    """One stop as the kernels read it: ``(open_min, due_min, service_min, load_delta)``."""
    if kind == _PICKUP:
        if order.is_return:  # collected at the customer in its window
            return order.ready_min, order.due_min, order.service_min, order.size
        return order.ready_min, math.inf, pickup_service_min, order.size
    if order.returning or order.is_return:  # unloaded at the center: no window, no lateness
        return 0.0, math.inf, pickup_service_min, -order.size
    return order.earliest_min, order.due_min, order.service_min, -order.size


def stop_arrays(
    world: World, orders: Sequence[Order], stops: Sequence[Stop]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A plan's stops as the kernels' arrays: ``(loc, open_min, due_min, service_min, load_delta)``."""
    k = len(stops)
    loc = np.empty(k, dtype=np.int64)
    open_min, due_min, service_min = np.empty(k), np.empty(k), np.empty(k)
    load_delta = np.empty(k, dtype=np.int64)
    pickup_service = world.config.orders.pickup_service_min
    for m, stop in enumerate(stops):
        loc[m] = stop.loc
        open_min[m], due_min[m], service_min[m], load_delta[m] = stop_values(
            orders[stop.order], stop.kind, pickup_service
        )
    return loc, open_min, due_min, service_min, load_delta


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
    loc, open_min, due_min, service_min, load_delta = stop_arrays(world, orders, stops)
    nodes = np.empty(k + 2, dtype=np.int64)
    nodes[0], nodes[1 : k + 1], nodes[k + 1] = start_node, loc, vehicle.home
    late_fixed, late_per_min = world.late_costs
    arrive, begin, free = np.empty(k), np.empty(k), np.empty(k + 1)
    loads, cum_dist, cum_late = np.empty(k + 1, dtype=np.int64), np.empty(k + 1), np.empty(k + 1)
    end, service, cost, dist, late, feasible, in_range = kernels.evaluate(
        world.time_modes, world.dist_modes, world.mode_mults, world.config.shift_start_hour,
        vehicle_params(vehicle), start_min, start_node, start_load, loc, open_min, due_min, service_min,
        load_delta, late_fixed, late_per_min, arrive, begin, free, loads, cum_dist, cum_late,
    )  # fmt: skip
    return PlanEval(
        cost=cost,
        dist_km=dist,
        end_min=end,
        late_cost=late,
        service_min=service,
        feasible=feasible,
        in_range=in_range,
        nodes=nodes,
        stop_open_min=open_min,
        stop_due_min=due_min,
        stop_service_min=service_min,
        stop_load_delta=load_delta,
        arrive_min=arrive,
        starts_min=begin,
        frees_min=free,
        loads=loads,
        cum_dist_km=cum_dist,
        cum_late_cost=cum_late,
    )


# Python values written into a C-contiguous float64 array by ``pack(array, byte offset, *values)``: ints and
# bools as their exact float64, as numpy's assignment writes them, without numpy converting a sequence
# element by element (~4,300 instructions a 5-value row, ~2,100 this way).
_pack_state_row: Callable[..., None] = struct.Struct(f"{kernels.STATE_COLUMNS}d").pack_into
_STATE_ROW_BYTES = kernels.STATE_COLUMNS * 8
_pack_new_stops: Callable[..., None] = struct.Struct("10d").pack_into
_pack_order: Callable[..., None] = struct.Struct(f"{kernels.ORDER_COLUMNS}d").pack_into
_ORDER_BYTES = kernels.QUERY_ORDER * 8  # where the order starts in ``FleetPlans.query``


class FleetState(NamedTuple):
    """Every vehicle's plan start (``Simulator.plan_start``) and planned stops as arrays, and the number of
    idle vehicles (``Simulator.fleet_state``)."""

    start_min: np.ndarray  # (V,)
    start_node: np.ndarray  # (V,) int
    start_load: np.ndarray  # (V,) int
    n_stops: np.ndarray  # (V,) int: len(route)
    n_idle: int


def state_row(v: Vehicle) -> tuple[float, int, int, int, bool]:
    """A vehicle's state as the kernels read it (``kernels.STATE_COLUMNS``): ``(free_min, node, free_load,
    planned stops, idle)``."""
    return v.free_min, v.node, v.free_load, len(v.route), v.idle


def gather_state(vehicles: Sequence[Vehicle]) -> np.ndarray:
    """One pass over the fleet: ``state_row`` per vehicle, one float64 row each (the integers are small,
    so exact)."""
    rows = [state_row(v) for v in vehicles]
    return np.array(rows, dtype=np.float64).reshape(len(rows), kernels.STATE_COLUMNS)


def fleet_state(vehicles: Sequence[Vehicle], now: float) -> FleetState:
    """The fleet's ``FleetState`` gathered now."""
    n = len(vehicles)
    start_min, dirty = np.full(n, np.nan), np.zeros(n, dtype=np.bool_)
    start_node, start_load, n_stops = (np.zeros(n, dtype=np.int64) for _ in range(3))
    n_idle = kernels.fleet_starts(
        gather_state(vehicles), now, start_min, start_node, start_load, n_stops, dirty
    )
    return FleetState(start_min, start_node, start_load, n_stops, n_idle)


class FleetPlans:
    """Every vehicle's remaining plan packed into arrays, one row per vehicle, and each plan's schedule, for
    the kernels that work on the whole fleet in one call (``kernels.fleet_cheapest_insertion``).

    ``sync`` then ``search`` bring the rows up to date with the simulator: a row's stops are rebuilt
    (``stop_arrays``) only when its vehicle's route differs from the one it was built from (stops are
    immutable, so comparing the lists is exact and cheap), or lose their first stops in the kernel when the
    vehicle left for them (the row is then that many stops longer than the vehicle's gathered ``PLANNED``
    stops), and a row is flagged ``dirty`` (to be scheduled again by the kernel) when its stops or its start
    (``Simulator.plan_start``, computed in the kernel from the gathered ``state``) changed. Only the vehicles
    the simulator ``touch``-ed since the last sync are read again (their state into ``state``, their route
    compared): the simulator touches every vehicle it changes, so a sync costs Python per changed vehicle,
    not per vehicle.
    """

    def __init__(self) -> None:
        self._vehicles: list[Vehicle] | None = None
        self._touched: set[int] = set()  # vehicles changed since the last sync
        self._routes: list[list[Stop]] = []
        self.gathered = np.empty((0, kernels.STATE_COLUMNS))  # each vehicle's state (``gather_state``)
        self._battery: list[int] = []
        self.params = np.empty((0, kernels.VEHICLE_COLUMNS))
        # a search's query (``kernels.fleet_cheapest_insertion``): the late costs (``late_costs``, set by
        # ``sync``), then the new order (written by ``search``)
        self.query = np.zeros(kernels.QUERY_ORDER + kernels.ORDER_COLUMNS)
        self._new_stops = np.empty(10)  # ``insert``'s two stops: (loc, open, due, service, load delta) each
        self.capacity = 8  # stops per row at least; the first ``sync`` allocates the rows for its fleet
        self._alloc(0, self.capacity)

    def _alloc(self, n: int, capacity: int) -> None:
        # The arrays that the search always passes together are stacked: one kernel argument per stack.
        self.capacity = capacity
        self.row_ints = np.zeros((kernels.ROW_INTS, n), dtype=np.int64)
        self.nodes = np.zeros((n, capacity + 2), dtype=np.int64)
        self.stop_times = np.zeros((3, n, capacity))
        self.load_delta = np.zeros((n, capacity), dtype=np.int64)
        self.start_min = np.full(n, np.nan)
        self.n_idle = 0
        self.flags = np.zeros((2, n), dtype=np.bool_)
        self.flags[0] = True  # every row dirty
        self.prefix = np.zeros((3, n, capacity + 1))
        self.loads = np.zeros((n, capacity + 1), dtype=np.int64)
        self.summary = np.zeros((n, 5))  # cost, km, return time, lateness cost, service minutes
        self._name_views()
        self._routes = [[] for _ in range(n)]

    def _grow(self, capacity: int) -> None:
        """Rows for plans of up to ``capacity`` stops (a plan outgrew them), every row's stops and schedule
        copied over: no row is rebuilt or scheduled again."""
        extra = capacity - self.capacity
        for name in ("nodes", "stop_times", "load_delta", "prefix", "loads"):  # the arrays sized by capacity
            old = getattr(self, name)
            grown = np.zeros((*old.shape[:-1], old.shape[-1] + extra), dtype=old.dtype)
            grown[..., : old.shape[-1]] = old
            setattr(self, name, grown)
        self.capacity = capacity
        self._name_views()

    def _name_views(self) -> None:
        """The stacks' rows as named views: what the Python code and the other kernels read."""
        self.counts = self.row_ints[kernels.ROW_COUNTS]
        self.start_node = self.row_ints[kernels.ROW_START_NODE]
        self.start_load = self.row_ints[kernels.ROW_START_LOAD]
        self.n_stops = self.row_ints[kernels.ROW_N_STOPS]
        self.open_min, self.due_min, self.service_min = self.stop_times
        self.dirty, self.feasible = self.flags
        self.free, self.cum_dist, self.cum_late = self.prefix
        self.late_costs = self.query[: kernels.QUERY_ORDER]  # (late fixed, late per minute), set by ``sync``

    def __getstate__(self) -> dict[str, object]:
        """Pickled and deep-copied without the named views of its stacks (a copied view would no longer be
        its stack's row); ``__setstate__`` names them again."""
        arrays = {id(value) for value in self.__dict__.values() if isinstance(value, np.ndarray)}
        return {
            name: value
            for name, value in self.__dict__.items()
            if not (isinstance(value, np.ndarray) and id(value.base) in arrays)
        }

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._name_views()

    def _write(
        self, world: World, orders: Sequence[Order], vid: int, route: list[Stop], priced: PlanEval | None
    ) -> None:
        """Rebuild row ``vid`` from ``route``, reading its stop arrays from ``priced`` (the simulator's last
        pricing of that route) when there is one rather than building them again."""
        k = len(route)
        if priced is None:
            loc, open_min, due_min, service_min, load_delta = stop_arrays(world, orders, route)
        else:  # the same arrays, built when the route was priced
            loc, open_min, due_min = priced.nodes[1 : k + 1], priced.stop_open_min, priced.stop_due_min
            service_min, load_delta = priced.stop_service_min, priced.stop_load_delta
        self.nodes[vid, 1 : k + 1] = loc
        self.open_min[vid, :k] = open_min
        self.due_min[vid, :k] = due_min
        self.service_min[vid, :k] = service_min
        self.load_delta[vid, :k] = load_delta
        self.counts[vid] = k
        self.dirty[vid] = True
        self._routes[vid] = list(route)

    def touch(self, vid: int) -> None:
        """Vehicle ``vid``'s state or route changed: the next ``sync`` reads it again."""
        self._touched.add(vid)

    def sync(self, sim: Simulator) -> None:
        """Bring every row's stops up to date with ``sim``'s vehicles (dropped first stops are left to the
        next ``search``) and gather the touched vehicles' state; ``search`` then computes every plan's start
        at ``sim.now`` (the state the observation reads too: ``state``)."""
        vehicles = sim.vehicles
        n = len(vehicles)
        if vehicles is not self._vehicles or n != len(self._routes):  # a new fleet: read it whole
            self._vehicles = vehicles
            self._alloc(n, self.capacity)
            self.params = np.array([_param_row(v) for v in vehicles], dtype=np.float64).reshape(
                n, kernels.VEHICLE_COLUMNS
            )
            self._battery = [v.id for v in vehicles if has_battery(v)]
            self.query[: kernels.QUERY_ORDER] = sim.world.late_costs
            self.gathered = gather_state(vehicles)
            touched: Iterable[int] = range(n)
            longest = int(self.gathered[:, kernels.PLANNED].max()) if n else 0
        else:
            touched = self._touched
            gathered, longest = self.gathered, 0
            for vid in touched:
                v = vehicles[vid]
                k = len(v.route)  # state_row(v), written out: this runs for every touched vehicle
                _pack_state_row(gathered, vid * _STATE_ROW_BYTES, v.free_min, v.node, v.free_load, k, v.idle)
                if k > longest:
                    longest = k
        self._touched = set()
        if longest > self.capacity:  # a plan outgrew the rows: twice as long
            self._grow(2 * longest)
        for vid in self._battery:  # a battery's state is part of the plan's start
            flown = vehicles[vid].flown_km
            if self.params[vid, kernels.FLOWN_KM] != flown:
                self.params[vid, kernels.FLOWN_KM] = flown
                self.dirty[vid] = True
        routes = self._routes
        for vid in touched:
            route, built = vehicles[vid].route, routes[vid]
            if route == built:
                continue
            dropped = len(built) - len(route)
            if dropped > 0 and route == built[dropped:]:  # its first stops became legs (driven or under way)
                del built[:dropped]  # the kernel moves the stops up (``kernels.shift_row``): counts > PLANNED
            else:
                self._write(sim.world, sim.orders, vid, route, sim.priced_route(vid))

    def search(
        self, world: World, now: float, new: Sequence[float], tie: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """``kernels.fleet_cheapest_insertion`` of the order ``new`` (its ``kernels.ORDER_COLUMNS`` values,
        written into ``query``: no array built per search) over the synced rows at ``now``: the
        rows are brought fully up to date and scheduled, and stay so (``state``, ``insert``); returns the
        kernel's result stacks, per vehicle ``i``, ``j`` (ints) and cost and km increases, ETAs and current
        plans' return times (floats), in new arrays (the caller may keep them: ``Simulator.fleet_insertions``
        caches them)."""
        _pack_order(self.query, _ORDER_BYTES, *new)
        n = self.counts.shape[0]
        found_ints = np.empty((kernels.FOUND_INTS, n), dtype=np.int64)
        found_floats = np.empty((kernels.FOUND_FLOATS, n))
        self.n_idle = kernels.fleet_cheapest_insertion(
            world.time_modes, world.dist_modes, world.mode_mults, world.config.shift_start_hour, self.params,
            self.query, self.row_ints, self.nodes, self.stop_times, self.load_delta, self.gathered, now,
            self.start_min, self.flags, self.prefix, self.loads, self.summary, tie, found_ints, found_floats,
        )  # fmt: skip
        return found_ints, found_floats

    def untracked(self, vehicles: Sequence[Vehicle]) -> list[int]:
        """The vehicles whose gathered state or route no longer matches them though they were not touched
        since the last sync (a simulator that changed a vehicle without ``touch``: a bug)."""
        if vehicles is not self._vehicles or len(vehicles) != len(self._routes):
            return []  # the next sync reads the fleet whole
        found = []
        for vid, v in enumerate(vehicles):
            if vid not in self._touched and (
                state_row(v) != tuple(self.gathered[vid]) or v.route != self._routes[vid]
            ):
                found.append(vid)
        return found

    def state(self) -> FleetState:
        """The fleet's state as of the last ``sync`` (the arrays themselves: read only)."""
        state = (self.start_min, self.start_node, self.start_load, self.n_stops, self.n_idle)
        return as_named(FleetState, state)

    def insert(
        self, world: World, vid: int, route: list[Stop], i: int, j: int, order: Order, served: int
    ) -> tuple[float, float] | None:
        """Commit an order's insertion into row ``vid`` (current: scheduled by the search just run), its
        pickup after ``i`` and its delivery after ``j`` old stops, ``route`` being the new plan's stops;
        returns the new plan's cost and the service start of its stop ``served``, bit for bit those of
        ``evaluate_plan`` of ``route`` (``kernels.insert_into_row``), and the row stays current. None when
        the row is not current (the caller prices the plan; ``sync`` rebuilds the row)."""
        if self.dirty.item(vid):
            return None
        k = self.counts.item(vid)
        if k + 2 > self.capacity:  # no room for two more stops
            self._grow(2 * (k + 2))
        pickup_service = world.config.orders.pickup_service_min
        new_stops = self._new_stops  # written in place: no new array per insertion
        p_open, p_due, p_service, p_delta = stop_values(order, _PICKUP, pickup_service)
        d_open, d_due, d_service, d_delta = stop_values(order, _DELIVERY, pickup_service)
        _pack_new_stops(
            new_stops, 0, order.center, p_open, p_due, p_service, p_delta,
            order.loc, d_open, d_due, d_service, d_delta,
        )  # fmt: skip
        cost, start = kernels.insert_into_row(
            world.time_modes, world.dist_modes, world.mode_mults, world.config.shift_start_hour, self.params,
            self.late_costs, vid, self.row_ints, self.nodes, self.stop_times, self.load_delta, self.start_min,
            self.prefix, self.loads, self.summary, self.flags, i, j, new_stops, served,
        )  # fmt: skip
        self._routes[vid] = list(route)
        return cost, start
