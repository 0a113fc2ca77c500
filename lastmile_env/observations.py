"""Observation encoders: the simulator's state at a dispatch decision -> arrays.

Every feature is scaled to roughly [-1, 1] (times in hours, loads as a share of capacity, costs as a share of
the rejection penalty) and clipped to ``[-CLIP, CLIP]``, so the spaces are bounded boxes.
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

from lastmile_env.sim.simulator import Simulator
from lastmile_env.sim.types import ServiceOption
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
    "center_to_door_h",  # free-flow hours from its center to the address
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
    "to_center_h",  # free-flow hours from where it is free to the order's center
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


class DispatchObservation:
    """Dict observation (``order``, ``vehicles``, ``global``, ``action_mask``) or its flat variant.

    Actions: one per vehicle, then reject, then (with ``defer``) defer to the next dispatch tick.
    """

    def __init__(self, world: World, flat: bool = False, defer: bool = False) -> None:
        self.world = world
        self.flat = flat
        self.defer = defer
        n_vehicles = world.n_vehicles
        self.n_actions = n_vehicles + 1 + int(defer)
        xy = world.xy_km
        self._xy_min = xy.min(axis=0)
        self._xy_span = np.maximum(xy.max(axis=0) - self._xy_min, 1e-9)
        self._max_cap = float(world.max_capacity)
        cfg = world.config
        hours = cfg.orders.last_arrival_min / 60.0
        self._expected_orders = max(1.0, cfg.orders.rate_per_hour * hours)
        self._reject_penalty = max(cfg.costs.reject_penalty, 1e-9)

        def box(shape: tuple[int, ...]) -> spaces.Box:
            return spaces.Box(-CLIP, CLIP, shape=shape, dtype=np.float32)

        self.dict_space = spaces.Dict(
            {
                "order": box((len(ORDER_FEATURES),)),
                "vehicles": box((n_vehicles, len(VEHICLE_FEATURES))),
                "global": box((len(GLOBAL_FEATURES),)),
                "action_mask": spaces.MultiBinary(self.n_actions),
            }
        )
        n_flat = (
            len(ORDER_FEATURES) + n_vehicles * len(VEHICLE_FEATURES) + len(GLOBAL_FEATURES) + self.n_actions
        )
        self.space: spaces.Space = box((n_flat,)) if flat else self.dict_space

    def mask(self, sim: Simulator) -> np.ndarray:
        """Valid actions: each vehicle that can take the pending order, reject (always valid), and defer
        while the order may still wait for the next tick."""
        n_vehicles = len(sim.vehicles)
        mask = np.zeros(self.n_actions, dtype=np.int8)
        mask[n_vehicles] = 1
        if sim.current is not None:
            mask[:n_vehicles] = sim.feasible_vehicles()
            if self.defer:
                mask[n_vehicles + 1] = sim.can_defer()
        return mask

    def encode(self, sim: Simulator) -> dict[str, np.ndarray] | np.ndarray:
        """The observation of the pending decision (zeros and reject-only when the episode is over)."""
        world, now = self.world, sim.now
        order_f = np.zeros(len(ORDER_FEATURES), dtype=np.float32)
        vehicle_f = np.zeros((len(sim.vehicles), len(VEHICLE_FEATURES)), dtype=np.float32)
        mask = self.mask(sim)
        order = sim.current
        for v in sim.vehicles:
            row = vehicle_f[v.id]
            start_min, node, load = sim.plan_start(v.id)
            plan = sim.plan(v.id)
            row[0:2] = (world.xy_km[node] - self._xy_min) / self._xy_span
            row[2] = (start_min - now) / 60.0
            row[3] = load / v.capacity
            row[4] = len(v.route) / 10.0
            row[5] = (plan.end_min - now) / 60.0
            row[12] = v.capacity / self._max_cap
            if order is None:
                continue
            row[11] = world.time_min[node][order.center] / 60.0
            row[13] = float(v.home == order.center)
            ins = sim.insertion(v.id)
            if ins is not None:
                row[6] = 1.0
                row[7] = ins.delta_cost / self._reject_penalty
                row[8] = ins.delta_dist_km / 10.0
                row[9] = (ins.eta_min - now) / 60.0
                row[10] = float(ins.on_time(order))
        if order is not None:
            order_f[:] = (
                order.size / self._max_cap,
                (order.ready_min - now) / 60.0,
                (order.due_min - now) / 60.0,
                max(0.0, order.earliest_min - now) / 60.0,
                float(order.option == ServiceOption.WINDOW),
                *((world.xy_km[order.loc] - self._xy_min) / self._xy_span),
                world.time_min[order.center][order.loc] / 60.0,
                (now - order.arrival_min) / 60.0,
            )
        settled = sim.n_on_time + sim.n_late + sim.n_rejected
        global_f = np.array(
            [
                now / world.config.fleet.shift_end_min,
                sim.n_open / (5.0 * len(sim.vehicles)),
                sim.n_on_time / settled if settled else 1.0,
                sim.n_rejected / max(1, sim.n_arrived),
                sum(v.idle for v in sim.vehicles) / len(sim.vehicles),
                sim.n_arrived / self._expected_orders,
                (len(sim.pending) - (order is not None) + len(sim.deferred)) / len(sim.vehicles),
            ],
            dtype=np.float32,
        )
        parts = {
            "order": np.clip(order_f, -CLIP, CLIP),
            "vehicles": np.clip(vehicle_f, -CLIP, CLIP),
            "global": np.clip(global_f, -CLIP, CLIP),
            "action_mask": mask,
        }
        if not self.flat:
            return parts
        return np.concatenate(
            [parts["order"], parts["vehicles"].ravel(), parts["global"], mask.astype(np.float32)]
        )
