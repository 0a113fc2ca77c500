"""Insertion rules: where a dispatched order's pickup and delivery go in the vehicle's plan.

An ``InsertionRule`` is any callable ``(sim, vehicle_id, order) -> Insertion | None`` (None: no feasible
place). The default, ``CheapestInsertion``, tries every pair of positions and keeps the cheapest feasible
one; ``AppendInsertion`` is the simple alternative (pickup and delivery at the end of the plan).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple, Protocol

import numpy as np

from lastmile_env import kernels
from lastmile_env.sim.plan import vehicle_params
from lastmile_env.sim.types import Order, Stop, StopKind, as_named

if TYPE_CHECKING:
    from lastmile_env.sim.simulator import Simulator


TIE = 1e-9  # insertion costs closer than this are equal


# read once per assign: module constants, not class attributes (enum reads are slow in 3.11: see sim/plan.py)
_PICKUP, _DELIVERY = StopKind.PICKUP, StopKind.DELIVERY


class Insertion(NamedTuple):
    """Where an order would go in one vehicle's plan, and what that would change."""

    vehicle: int
    pickup_after: int  # old stops before the new pickup
    delivery_after: int  # old stops before the new delivery (>= pickup_after)
    delta_cost: float  # plan cost increase
    delta_dist_km: float
    eta_min: float  # planned service start at the customer: the promised ETA

    def on_time(self, order: Order) -> bool:
        return self.eta_min <= order.due_min + 1e-9

    def stops(self, route: list[Stop], order: Order) -> list[Stop]:
        """The new plan: ``route`` with the order's pickup and delivery inserted."""
        pickup = Stop(_PICKUP, order.id, order.center)
        delivery = Stop(_DELIVERY, order.id, order.loc)
        i, j = self.pickup_after, self.delivery_after
        return [*route[:i], pickup, *route[i:j], delivery, *route[j:]]


class InsertionRule(Protocol):
    def __call__(self, sim: Simulator, vehicle_id: int, order: Order) -> Insertion | None: ...


class FleetInsertion(NamedTuple):
    """An order's placement into every vehicle's plan at once (``Simulator.fleet_insertions``), one entry
    per vehicle; ``pickup_after`` is -1 where the vehicle cannot take the order (other fields then unset).

    Stored as two stacks, as ``kernels.fleet_cheapest_insertion`` writes them and ``dispatch_features``
    reads them (one numba argument each instead of one per column): ``ints`` (``pickup_after``,
    ``delivery_after``) and ``floats`` (``delta_cost``, ``delta_dist_km``, ``eta_min``, ``plan_end_min``);
    the named columns are views of them."""

    ints: np.ndarray  # (kernels.FOUND_INTS, V) int
    floats: np.ndarray  # (kernels.FOUND_FLOATS, V)

    @classmethod
    def of(
        cls,
        pickup_after: np.ndarray,
        delivery_after: np.ndarray,
        delta_cost: np.ndarray,
        delta_dist_km: np.ndarray,
        eta_min: np.ndarray,
        plan_end_min: np.ndarray,
    ) -> FleetInsertion:
        """The placement from its named columns (copied into new stacks)."""
        ints = np.array([pickup_after, delivery_after], dtype=np.int64).reshape(kernels.FOUND_INTS, -1)
        floats = np.array([delta_cost, delta_dist_km, eta_min, plan_end_min], dtype=np.float64)
        return cls(ints, floats.reshape(kernels.FOUND_FLOATS, -1))

    @property
    def pickup_after(self) -> np.ndarray:  # (V,) int: old stops before the new pickup, -1: infeasible
        return self.ints[kernels.FOUND_I]

    @property
    def delivery_after(self) -> np.ndarray:  # (V,) int
        return self.ints[kernels.FOUND_J]

    @property
    def delta_cost(self) -> np.ndarray:  # (V,)
        return self.floats[kernels.FOUND_COST]

    @property
    def delta_dist_km(self) -> np.ndarray:  # (V,)
        return self.floats[kernels.FOUND_KM]

    @property
    def eta_min(self) -> np.ndarray:  # (V,)
        return self.floats[kernels.FOUND_ETA]

    @property
    def plan_end_min(self) -> np.ndarray:  # (V,) when the vehicle's current plan brings it back to its center
        return self.floats[kernels.FOUND_END]

    @property
    def feasible(self) -> np.ndarray:
        return self.ints[kernels.FOUND_I] >= 0

    def takes(self, vehicle_id: int) -> bool:
        """Whether vehicle ``vehicle_id`` can take the order (``feasible[vehicle_id]``, no array built)."""
        return self.ints.item(_FOUND_I, vehicle_id) >= 0

    def insertion(self, vehicle_id: int) -> Insertion | None:
        # ``item`` reads a Python scalar directly (no numpy scalar or view in between): same values, cheaper
        ints, floats = self.ints, self.floats
        i = ints.item(_FOUND_I, vehicle_id)
        if i < 0:
            return None
        return as_named(
            Insertion,
            (
                vehicle_id,
                i,
                ints.item(_FOUND_J, vehicle_id),
                floats.item(_FOUND_COST, vehicle_id),
                floats.item(_FOUND_KM, vehicle_id),
                floats.item(_FOUND_ETA, vehicle_id),
            ),
        )


_FOUND_I, _FOUND_J = kernels.FOUND_I, kernels.FOUND_J  # module globals: cheaper reads on the hot path
_FOUND_COST, _FOUND_KM, _FOUND_ETA = kernels.FOUND_COST, kernels.FOUND_KM, kernels.FOUND_ETA


def price_insertion(sim: Simulator, vehicle_id: int, order: Order, i: int, j: int) -> Insertion | None:
    """Price one insertion with the reference schedule (``evaluate_plan``); None if infeasible."""
    candidate = Insertion(vehicle_id, i, j, 0.0, 0.0, 0.0)
    new = sim.price(vehicle_id, candidate.stops(sim.vehicles[vehicle_id].route, order))
    if not new.feasible:
        return None
    old = sim.plan(vehicle_id)
    return candidate._replace(
        delta_cost=new.cost - old.cost,
        delta_dist_km=new.dist_km - old.dist_km,
        eta_min=float(new.starts_min[i if order.is_return else j + 1]),  # a return: its collection
    )


def _order_values(sim: Simulator, order: Order) -> tuple[float, ...]:
    """The new order as the insertion kernels read it (a return: collected at the customer by its due,
    unloaded at the center): ``(center, loc, size, ready, delivery open, delivery due, pickup service,
    delivery service, pickup due)``. A return's unloading has no window (``stop_values``): it opens with the
    collection, which it follows."""
    pickup_service = sim.world.config.orders.pickup_service_min
    if order.is_return:
        return (
            order.center, order.loc, order.size, order.ready_min, order.ready_min, math.inf,
            order.service_min, pickup_service, order.due_min,
        )  # fmt: skip
    return (
        order.center, order.loc, order.size, order.ready_min, order.earliest_min, order.due_min,
        pickup_service, order.service_min, math.inf,
    )  # fmt: skip


def _order_array(sim: Simulator, order: Order) -> np.ndarray:
    """``_order_values`` as the array ``kernels.cheapest_insertion`` takes."""
    return np.array(_order_values(sim, order), dtype=np.float64)


class CheapestInsertion:
    """Cheapest feasible insertion over all pickup/delivery position pairs (pickup before delivery).

    Exact branch and bound (``kernels.cheapest_insertion``): pairs are priced in order of a lower bound on
    their added cost, resuming from the plan's prefix and stopping early once the new schedule rejoins the
    old one; ties go to the earliest positions. ``Simulator.assign`` prices the chosen plan again with
    ``evaluate_plan`` (the same arithmetic) before committing it.
    """

    def __call__(self, sim: Simulator, vehicle_id: int, order: Order) -> Insertion | None:
        vehicle = sim.vehicles[vehicle_id]
        old = sim.plan(vehicle_id)
        if not old.feasible:
            return None
        world = sim.world
        params = vehicle_params(vehicle)
        new = _order_array(sim, order)
        summary = np.array([old.cost, old.dist_km, old.end_min, old.late_cost, old.service_min])
        i, j, delta, delta_km, eta = kernels.cheapest_insertion(
            world.time_modes, world.dist_modes, world.mode_mults, world.config.shift_start_hour, params,
            np.array(world.late_costs), old.nodes, old.stop_open_min,
            old.stop_due_min, old.stop_service_min, old.stop_load_delta, old.frees_min, old.loads,
            old.cum_dist_km, old.cum_late_cost, summary, new, TIE,
        )  # fmt: skip
        if i < 0:
            return None
        return Insertion(vehicle_id, int(i), int(j), float(delta), float(delta_km), float(eta))

    def fleet(self, sim: Simulator, order: Order) -> FleetInsertion:
        """The same search for every vehicle in one compiled call (``kernels.fleet_cheapest_insertion``)
        over the simulator's packed plans (``sim.fleet_plans``): the result for vehicle ``v`` is exactly
        ``self(sim, v, order)``."""
        plans = sim.fleet_plans
        plans.sync(sim)
        return as_named(FleetInsertion, plans.search(sim.world, sim.now, _order_values(sim, order), TIE))


class AppendInsertion:
    """Pickup and delivery appended at the end of the plan (a simple, order-preserving rule)."""

    def __call__(self, sim: Simulator, vehicle_id: int, order: Order) -> Insertion | None:
        n = len(sim.vehicles[vehicle_id].route)
        return price_insertion(sim, vehicle_id, order, n, n)
