"""Observation encoders: the simulator's state at a dispatch decision -> arrays.

Every feature is scaled to roughly [-1, 1] (times in hours, loads as a share of capacity, costs as a share of
the rejection penalty) and clipped to ``[-CLIP, CLIP]``, so the spaces are bounded boxes.
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

from lastmile_env import kernels
from lastmile_env.sim.insertion import FleetInsertion
from lastmile_env.sim.simulator import Simulator
from lastmile_env.sim.types import ServiceOption, Vehicle
from lastmile_env.sim.world import World

CLIP = 10.0

ORDER_FEATURES = (
    "size_share",  # size / largest capacity
    "ready_in_h",  # hours until the parcel is ready
    "due_in_h",  # hours until the deadline / window end
    "opens_in_h",  # hours until the delivery may start (window start)
    "is_window",  # 1 for a time-window order, 0 for same-day
    "x",  # delivery address, scaled to [0, 1] over the map
    "y",
    "center_to_door_h",  # free-flow hours from its center to the address (the van road matrix: per order)
    "waited_h",  # hours since it arrived (deferred orders come back later)
)
VEHICLE_FEATURES = (
    "x",  # where the vehicle is free next, scaled to [0, 1]
    "y",
    "free_in_h",  # hours until it finishes its current stop
    "load_share",  # load when free / capacity
    "stops_planned",  # planned stops / 10
    "plan_left_h",  # hours until its plan brings it back to its center
    "feasible",  # 1 if it can take the order
    "insert_cost",  # insertion cost / rejection penalty (0 if infeasible)
    "insert_km",  # added km / 10 (0 if infeasible)
    "eta_in_h",  # hours until the planned delivery of the order (0 if infeasible)
    "on_time",  # 1 if the order would be on time with it
    "to_center_h",  # free-flow hours from where it is free to the order's center, by the vehicle's mode
    "capacity_share",  # capacity / largest capacity
    "home_is_center",  # 1 if the order's center is its home
)
GLOBAL_FEATURES = (
    "shift_share",  # now / shift end
    "backlog",  # accepted orders not yet delivered / (5 x fleet size)
    "on_time_rate",  # so far (1 before any outcome)
    "rejected_share",  # rejected / arrived
    "idle_share",  # idle vehicles / fleet size
    "arrivals_share",  # arrived orders / expected orders of the day
    "deferred_share",  # orders deferred or waiting in a tick batch / fleet size
)


def pack(features: dict[str, np.ndarray], mask: np.ndarray, flat: bool) -> dict[str, np.ndarray] | np.ndarray:
    """An observation from its feature arrays: each clipped to ``[-CLIP, CLIP]``, then the action mask; as a
    Dict, or (``flat``) every array raveled and concatenated in that order into one float32 vector."""
    # np.clip's values, bit for bit, without its dispatch overhead
    return assemble({key: np.minimum(np.maximum(v, -CLIP), CLIP) for key, v in features.items()}, mask, flat)


def assemble(
    parts: dict[str, np.ndarray], mask: np.ndarray, flat: bool, present: np.ndarray | None = None
) -> dict[str, np.ndarray] | np.ndarray:
    """``pack`` of feature arrays already clipped (and, for a padded fleet, ``present``: the vehicle mask,
    after the action mask)."""
    if flat:
        tail = [mask.astype(np.float32)] if present is None else [mask.astype(np.float32), present]
        return np.concatenate([*(p.ravel() for p in parts.values()), *tail])
    parts["action_mask"] = mask
    if present is not None:
        parts["vehicle_mask"] = present
    return parts


_NO_VEHICLES = np.empty(0, dtype=np.int64)  # no order pending: no vehicle can take one
# no order pending: ``kernels.dispatch_features``'s order fields (center -1: none), typed as an order's
_NO_ORDER = (-1, 0, 0, 0.0, 0.0, 0.0, False, 0.0)
# read once: on Python 3.11 an Enum class's attribute read (``ServiceOption.WINDOW``) goes through EnumType's
# ``__getattr__`` hook, ~900 instructions, a module global ~50
_WINDOW = ServiceOption.WINDOW


def _no_insertions(plan_end_min: np.ndarray) -> FleetInsertion:
    """No order pending: no vehicle's insertion; the plans' return times ``plan_end_min``."""
    none = np.full(plan_end_min.shape[0], np.nan)
    return FleetInsertion.of(np.full_like(none, -1), np.full_like(none, -1), none, none, none, plan_end_min)


class DispatchObservation:
    """Dict observation (``order``, ``vehicles``, ``global``, ``action_mask``) or its flat variant.

    Actions: one per vehicle slot, then reject, then (with ``defer``) defer to the next dispatch tick.

    ``max_vehicles`` pads the fleet to that many vehicle slots, so that the spaces are the same for every
    fleet size up to it (one model trained across fleet sizes): the slots past the fleet have zero features
    and are masked (never valid actions), reject is action ``max_vehicles``, and the observation gains
    ``vehicle_mask`` (``(max_vehicles,)``, 1 for a real vehicle), which ``DispatchNet`` uses to pool over the
    real vehicles only. Without it (the default) the observation is exactly the unpadded one.
    """

    def __init__(
        self, world: World, flat: bool = False, defer: bool = False, max_vehicles: int | None = None
    ) -> None:
        self.world = world
        self.flat = flat
        self.defer = defer
        self.max_vehicles = max_vehicles
        if max_vehicles is not None and max_vehicles < world.n_vehicles:
            raise ValueError(
                f"max_vehicles ({max_vehicles}) is smaller than the fleet of {world.config.name!r} "
                f"({world.n_vehicles} vehicles)"
            )
        n_vehicles = world.n_vehicles if max_vehicles is None else max_vehicles
        self.n_slots = n_vehicles  # vehicle actions: the fleet, or max_vehicles slots
        self.n_actions = n_vehicles + 1 + int(defer)
        xy = world.xy_km
        xy_min = xy.min(axis=0)
        xy_span = np.maximum(xy.max(axis=0) - xy_min, 1e-9)
        cfg = world.config
        hours = cfg.orders.last_arrival_min / 60.0
        expected = max(1.0, cfg.orders.rate_per_hour * hours)  # orders of a day
        reject_penalty = max(cfg.costs.reject_penalty, 1e-9)
        # the feature kernel's scales and the day's constants, one array (``kernels.dispatch_features``)
        self._scales = np.array(
            [*xy_min, *xy_span, world.max_capacity, reject_penalty, CLIP, cfg.fleet.shift_end_min, expected],
            dtype=np.float64,
        )
        # the observation's arrays zeroed, copied for each observation (a copy costs less than np.zeros);
        # padded vehicle slots stay zero
        self._zeros = (
            np.zeros(len(ORDER_FEATURES), dtype=np.float32),
            np.zeros((n_vehicles, len(VEHICLE_FEATURES)), dtype=np.float32),
            np.zeros(len(GLOBAL_FEATURES), dtype=np.float32),
            np.zeros(self.n_actions, dtype=np.int8),
        )
        self._fleet: list[Vehicle] | None = None  # the fleet whose (capacity, home, mode) rows are _fixed
        self._fixed = np.empty((3, 0), dtype=np.int64)

        def box(shape: tuple[int, ...]) -> spaces.Box:
            return spaces.Box(-CLIP, CLIP, shape=shape, dtype=np.float32)

        self.dict_space = spaces.Dict(
            {
                "order": box((len(ORDER_FEATURES),)),
                "vehicles": box((n_vehicles, len(VEHICLE_FEATURES))),
                "global": box((len(GLOBAL_FEATURES),)),
                "action_mask": spaces.MultiBinary(self.n_actions),
                **({} if max_vehicles is None else {"vehicle_mask": spaces.MultiBinary(n_vehicles)}),
            }
        )
        n_flat = (
            len(ORDER_FEATURES) + n_vehicles * len(VEHICLE_FEATURES) + len(GLOBAL_FEATURES) + self.n_actions
        ) + (0 if max_vehicles is None else n_vehicles)
        self.space: spaces.Space = box((n_flat,)) if flat else self.dict_space

    def mask(self, sim: Simulator) -> np.ndarray:
        """Valid actions: each vehicle that can take the pending order, reject (always valid), and defer
        while the order may still wait for the next tick."""
        reject = len(sim.vehicles) if self.max_vehicles is None else self.max_vehicles
        mask = np.zeros(self.n_actions, dtype=np.int8)
        if sim.current is None:
            kernels.action_mask(mask, reject, _NO_VEHICLES, False)
        else:  # sim.feasible_vehicles(), as an array; padded slots (n_vehicles .. reject - 1) stay 0
            pickup_after = sim.fleet_insertions().pickup_after
            kernels.action_mask(mask, reject, pickup_after, self.defer and sim.can_defer())
        return mask

    def valid(self, sim: Simulator, action: int) -> bool:
        """Whether ``action`` is valid now: ``mask(sim)[action]``, without building the mask."""
        n_vehicles = len(sim.vehicles)
        if 0 <= action < n_vehicles:  # a vehicle: valid if it can take the pending order
            return sim.current is not None and sim.fleet_insertions().takes(action)
        reject = n_vehicles if self.max_vehicles is None else self.max_vehicles
        if action == reject:
            return True
        # defer, while the order may still wait; a padded slot or an action out of range is never valid
        return self.defer and action == reject + 1 and sim.current is not None and sim.can_defer()

    def encode(self, sim: Simulator) -> dict[str, np.ndarray] | np.ndarray:
        """The observation of the pending decision (zeros and reject-only when the episode is over), every
        feature computed and clipped in one compiled pass (``kernels.dispatch_features``)."""
        world, now = self.world, sim.now
        order = sim.current
        vehicles = sim.vehicles
        n_vehicles = len(vehicles)
        if vehicles is not self._fleet or n_vehicles != self._fixed.shape[1]:  # a new day's fleet
            self._fleet = vehicles
            fixed = np.array([(v.capacity, v.home, v.mode) for v in vehicles], dtype=np.float64)
            self._fixed = fixed.reshape(n_vehicles, 3).astype(np.int64).T.copy()
        # with an order pending, its fleet search runs first: fleet_state is then the state it gathered
        fleet = None if order is None else sim.fleet_insertions()
        state = sim.fleet_state()
        zero_order, zero_vehicles, zero_global, zero_mask = self._zeros
        # fresh arrays each time: users (and SB3) keep the observations they are given
        order_f, vehicle_f, global_f = zero_order.copy(), zero_vehicles.copy(), zero_global.copy()
        mask = zero_mask.copy()
        reject = n_vehicles if self.max_vehicles is None else self.max_vehicles
        if order is not None and fleet is not None:
            pending = (
                order.center, order.loc, order.size, order.ready_min, order.due_min, order.earliest_min,
                order.option == _WINDOW, order.arrival_min,
            )  # fmt: skip
            defer = self.defer and sim.can_defer()
        else:  # the day is over: the fleet's rows and the counts, no order's columns
            plan_end = np.array([sim.plan(v.id).end_min for v in vehicles], dtype=np.float64)
            fleet, pending, defer = _no_insertions(plan_end), _NO_ORDER, False
        kernels.dispatch_features(
            order_f, vehicle_f, global_f, mask, world.xy_km, self._scales, world.time_modes, self._fixed,
            state.start_min, state.start_node, state.start_load, state.n_stops, fleet.ints, fleet.floats, now,
            *pending, sim.n_open, sim.n_on_time, sim.n_settled, sim.n_rejected, sim.n_arrived, sim.n_waiting,
            state.n_idle, reject, defer,
        )  # fmt: skip
        parts = {"order": order_f, "vehicles": vehicle_f, "global": global_f}
        if self.max_vehicles is None:
            return assemble(parts, mask, self.flat)
        present = np.zeros(self.max_vehicles, dtype=np.int8)
        present[:n_vehicles] = 1
        return assemble(parts, mask, self.flat, present)
