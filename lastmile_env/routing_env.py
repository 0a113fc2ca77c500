"""The routing env: which planned stop a free vehicle serves next. A Gymnasium adapter over the simulator in
routing mode (``Simulator(..., routing=True)``); it re-implements no travel, insertion or cost."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from lastmile_env.config import ScenarioConfig, load_scenario, with_dispatch_mode
from lastmile_env.dispatch_rules import DispatchRule, cheapest_insertion
from lastmile_env.env import InvalidActionError, check_env_options, episode_info
from lastmile_env.generators import default_generator
from lastmile_env.observations import CLIP, pack
from lastmile_env.rewards import RewardFn, make_reward
from lastmile_env.sim.simulator import Simulator
from lastmile_env.sim.types import DecisionKind, Ledger, OrderStatus, ServiceOption, StopKind
from lastmile_env.sim.world import World, world_for

STOP_FEATURES = (
    "present",  # 1 for a planned stop in this slot, 0 for padding
    "valid",  # 1 if it may be served next (the action mask)
    "is_pickup",  # 1 pickup at a center, 0 delivery
    "plan_position",  # its index in the current plan / 10
    "is_first",  # 1 for the plan's first stop (what the planned route would do)
    "drive_h",  # free-flow hours from the vehicle to the stop, by the vehicle's mode and speed
    "due_in_h",  # hours until the parcel's due time (a pickup carries its delivery's)
    "slack_h",  # due - (now + drive [+ center to door for a pickup, by the vehicle's mode]), hours
    "opens_in_h",  # hours until the parcel is ready (pickup) or the window opens (delivery)
    "planned_in_h",  # hours until its service starts in the current plan
    "planned_late",  # 1 if the current plan delivers it late (deliveries)
    "delta_cost",  # plan cost change if served next / rejection penalty (0 when not valid)
    "delta_late",  # lateness cost change if served next / rejection penalty (0 when not valid)
    "size_share",  # parcel size / vehicle capacity
    "x",  # stop location scaled to [0, 1] over the map
    "y",
    "is_window",  # 1 for a time-window order
    "here",  # 1 if the stop is where the vehicle is
)
ROUTE_VEHICLE_FEATURES = (
    "x",  # where the vehicle is, scaled to [0, 1]
    "y",
    "load_share",  # load / capacity
    "stops_planned",  # planned stops / 10
    "plan_left_h",  # hours until its plan brings it back to its center
    "shift_left_h",  # hours until its shift ends
    "plan_cost",  # cost of its remaining plan / rejection penalty
    "plan_late",  # lateness cost of its remaining plan / rejection penalty
    "valid_stops",  # stops that may be served next / 10
    "can_wait",  # 1 if waiting is valid
    "at_home",  # 1 if it is at its center
)
ROUTE_GLOBAL_FEATURES = (
    "shift_share",  # now / shift end
    "backlog",  # accepted orders not yet delivered / (5 x fleet size)
    "on_time_rate",  # so far (1 before any outcome)
    "waiting_share",  # waiting vehicles / fleet size
    "arrivals_share",  # arrived orders / expected orders of the day
)


class RoutingObservation:
    """Dict observation (``stops``, ``vehicle``, ``global``, ``action_mask``) of a routing decision, or its
    flat variant. Actions: one per stop slot (the plan's first ``max_stops`` stops, in plan order), then
    wait. The features of a stop do not depend on its slot, so a scorer shared over slots is permutation
    invariant; ``encode(sim, n_slots=...)`` gives any number of slots (a learned policy sees every stop)."""

    def __init__(self, world: World, max_stops: int = 32, flat: bool = False) -> None:
        if max_stops < 1:
            raise ValueError(f"max_stops must be >= 1, got {max_stops}")
        self.world = world
        self.max_stops = max_stops
        self.flat = flat
        self.n_actions = max_stops + 1
        xy = world.xy_km
        self._xy_min = xy.min(axis=0)
        self._xy_span = np.maximum(xy.max(axis=0) - self._xy_min, 1e-9)
        cfg = world.config
        self._expected_orders = max(1.0, cfg.orders.rate_per_hour * cfg.orders.last_arrival_min / 60.0)
        self._penalty = max(cfg.costs.reject_penalty, 1e-9)

        def box(shape: tuple[int, ...]) -> spaces.Box:
            return spaces.Box(-CLIP, CLIP, shape=shape, dtype=np.float32)

        self.dict_space = spaces.Dict(
            {
                "stops": box((max_stops, len(STOP_FEATURES))),
                "vehicle": box((len(ROUTE_VEHICLE_FEATURES),)),
                "global": box((len(ROUTE_GLOBAL_FEATURES),)),
                "action_mask": spaces.MultiBinary(self.n_actions),
            }
        )
        n_flat = (
            max_stops * len(STOP_FEATURES)
            + len(ROUTE_VEHICLE_FEATURES)
            + len(ROUTE_GLOBAL_FEATURES)
            + self.n_actions
        )
        self.space: spaces.Space = box((n_flat,)) if flat else self.dict_space

    def mask(self, sim: Simulator, n_slots: int | None = None) -> np.ndarray:
        """Valid actions: the stops that may be next (first ``n_slots`` of the plan), then wait. When no
        routing decision is pending (the end of the day) only wait is set, as a placeholder."""
        slots = self.max_stops if n_slots is None else n_slots
        mask = np.zeros(slots + 1, dtype=np.int8)
        if sim.routing_vehicle is None:
            mask[slots] = 1
            return mask
        stops = sim.route_mask()[:slots]
        mask[: len(stops)] = stops
        mask[slots] = sim.can_wait()
        return mask

    def encode(self, sim: Simulator, n_slots: int | None = None) -> dict[str, np.ndarray] | np.ndarray:
        """The observation of the pending routing decision (zeros, wait only, when none is pending)."""
        slots = self.max_stops if n_slots is None else n_slots
        stop_f = np.zeros((slots, len(STOP_FEATURES)), dtype=np.float32)
        vehicle_f = np.zeros(len(ROUTE_VEHICLE_FEATURES), dtype=np.float32)
        mask = self.mask(sim, slots)
        world, now, pen = self.world, sim.now, self._penalty
        vid = sim.routing_vehicle
        if vid is not None:
            v = sim.vehicles[vid]
            plan = sim.plan(vid)
            speed = v.speed_factor
            times = world.time_modes[v.mode]  # the free-flow minutes of the vehicle's mode (0: vans' roads)
            for i, stop in enumerate(v.route[:slots]):
                order = sim.orders[stop.order]
                row = stop_f[i]
                pickup = stop.kind == StopKind.PICKUP
                drive_h = float(times[v.node, stop.loc]) / speed / 60.0
                to_door_h = float(times[order.center, order.loc]) / speed / 60.0 if pickup else 0.0
                due_h = (order.due_min - now) / 60.0
                opens = order.ready_min if pickup else order.earliest_min
                row[0:10] = (
                    1.0,
                    float(mask[i]),
                    float(pickup),
                    i / 10.0,
                    float(i == 0),
                    drive_h,
                    due_h,
                    due_h - drive_h - to_door_h,
                    max(0.0, opens - now) / 60.0,
                    (plan.starts_min[i] - now) / 60.0,
                )
                row[10] = float(not pickup and plan.starts_min[i] > order.due_min + 1e-9)
                if mask[i]:
                    chosen = sim.price_route(i)
                    row[11] = (chosen.cost - plan.cost) / pen
                    row[12] = (chosen.late_cost - plan.late_cost) / pen
                row[13] = order.size / v.capacity
                row[14:16] = (world.xy_km[stop.loc] - self._xy_min) / self._xy_span
                row[16] = float(order.option == ServiceOption.WINDOW)
                row[17] = float(stop.loc == v.node)
            vehicle_f[:] = (
                *((world.xy_km[v.node] - self._xy_min) / self._xy_span),
                v.load / v.capacity,
                len(v.route) / 10.0,
                (plan.end_min - now) / 60.0,
                (v.shift_end_min - now) / 60.0,
                plan.cost / pen,
                plan.late_cost / pen,
                float(mask[:slots].sum()) / 10.0,
                float(mask[slots]),
                float(v.node == v.home),
            )
        settled = sim.n_on_time + sim.n_late + sim.n_rejected
        global_f = np.array(
            [
                now / world.config.fleet.shift_end_min,
                sim.n_open / (5.0 * len(sim.vehicles)),
                sim.n_on_time / settled if settled else 1.0,
                sum(v.waiting for v in sim.vehicles) / len(sim.vehicles),
                sim.n_arrived / self._expected_orders,
            ],
            dtype=np.float32,
        )
        return pack({"stops": stop_f, "vehicle": vehicle_f, "global": global_f}, mask, self.flat)


class RoutingEnv(gym.Env):
    """
    ## Description
    Dynamic last-mile routing. Orders arrive over a shift and a dispatch rule (cheapest insertion by
    default; any heuristic or trained dispatch model through `agents.base.dispatch_rule`) gives each to a
    vehicle, whose plan gets its pickup
    and delivery. Whenever a vehicle is free with planned stops (it finished a stop or its way home, was
    given an order while idle, or a parcel it waited for became ready), the agent picks the stop it serves
    next, or makes it wait. The simulator then runs (dispatching arrivals with the dispatch rule) until the
    next routing decision.

    ## Action Space
    `Discrete(max_stops + 1)`: `i < max_stops` serves the plan's stop `i` next (the stop moves to the front
    of the plan, the others keep their order); `max_stops` waits until a parcel of the plan is ready or
    the plan changes. Valid: deliveries of parcels on board, pickups of ready parcels that keep the plan
    within capacity, and wait while some parcel of the plan is not ready. Only the plan's first
    `max_stops` stops are offered (the first is always among them).

    ## Observation Space
    A `Dict` (or, with `observation="flat"`, one `Box` of the same arrays):

    | key           | shape              | content                                                          |
    |---------------|--------------------|------------------------------------------------------------------|
    | `stops`       | (max_stops, 18)    | per planned stop: kind, plan position, drive, due, slack, ready, |
    |               |                    | planned start, cost change if next, ... (`STOP_FEATURES`)        |
    | `vehicle`     | (11,)              | position, load, plan length / end / cost, shift left, can wait   |
    | `global`      | (5,)               | time of day, backlog, on-time rate, waiting share, arrivals      |
    | `action_mask` | (max_stops + 1,)   | 1 for valid actions                                              |

    ## Rewards
    As in the dispatch env: `reward="cost"`, minus the increase of the expected episode cost (committed +
    planned) since the previous step, dispatch decisions and waiting time included; the rewards of an
    episode sum to exactly minus its final cost. `reward="on_time"` or any `(Ledger, Ledger) -> float`.

    ## Episode End
    Terminated when the shift is over and every accepted order is delivered (waiting cannot loop: it is
    valid only while a parcel of the plan is still to become ready). Truncated by `TimeLimit`
    (`max_episode_steps`, 20,000 decisions for the registered id). With `skip_forced=True` (default)
    decisions with a single valid action are played without asking the agent.

    ## Arguments
    `scenario`, `overrides`, `observation` (`"dict"`/`"flat"`), `dispatch` (a `DispatchRule`: a callable
    `rule(sim)` deciding the pending order, with an optional `reset(seed)`; default
    `lastmile_env.dispatch_rules.cheapest_insertion`; `agents.base.dispatch_rule("regret")` or
    `dispatch_rule("model.zip")` for a heuristic or a trained model), `max_stops` (32), `skip_forced`,
    `reward`, `reward_scale`, `invalid_action` (`"penalize"`, the default: an invalid action plays the
    plan's first valid stop, or waits, minus `invalid_action_penalty` (default 0), and `info` says
    `invalid_action`; `"raise"`: InvalidActionError), `debug`. Masking (`action_masks()`, MaskablePPO)
    remains the intended use; the lenient default lets generic checkers and unmasked agents step
    random actions.

    The joint setting (dispatch and routing both learned in one episode) is not offered as one env: the two
    decisions have different action spaces and observations. A trained dispatch model plays inside this env
    through `dispatch=dispatch_rule("model.zip")`, and `evaluate.py` plays any pair
    (`model.zip+routing_model.zip`).

    ## Version History
    * v0: initial version.
    """

    metadata = {"render_modes": []}  # noqa: RUF012  (Gymnasium's convention)

    def __init__(
        self,
        scenario: str | Path | ScenarioConfig = "default",
        overrides: dict[str, Any] | None = None,
        observation: str = "dict",
        dispatch: DispatchRule | None = None,
        max_stops: int = 32,
        skip_forced: bool = True,
        reward: str | RewardFn = "cost",
        reward_scale: float = 1.0,
        invalid_action: str = "penalize",
        invalid_action_penalty: float = 0.0,
        debug: bool = False,
    ) -> None:
        check_env_options(observation, invalid_action)
        # A wave-mode scenario (static_day) is played one order at a time here, as evaluate.py plays dispatch
        # policies on it; LastMile-EpochDispatch-v0 plays its waves.
        self.config = with_dispatch_mode(load_scenario(scenario, overrides), "order")
        self.world: World = world_for(self.config)
        self.generator = default_generator(self.world)
        self.encoder = RoutingObservation(self.world, max_stops=max_stops, flat=observation == "flat")
        self.observation_space = self.encoder.space
        self.action_space = gym.spaces.Discrete(self.encoder.n_actions)
        if dispatch is not None and not callable(dispatch):
            raise ValueError(
                "dispatch must be a dispatch rule, a callable rule(sim) that decides the pending order "
                f"(agents.base.dispatch_rule({dispatch!r}) for a policy name or model zip), got {dispatch!r}"
            )
        self.dispatch: DispatchRule = dispatch if dispatch is not None else cheapest_insertion
        self.skip_forced = skip_forced
        self.reward_fn = make_reward(reward, scale=reward_scale)
        self.invalid_action = invalid_action
        self.invalid_action_penalty = invalid_action_penalty
        self.debug = debug
        self.sim: Simulator | None = None
        self._ledger = Ledger(0.0, 0, 0, 0, 0.0)
        self._final_pending = False
        self.forced_decisions = 0

    @property
    def wait_action(self) -> int:
        return self.encoder.max_stops

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        episode_seed = seed if seed is not None else int(self.np_random.integers(2**63 - 1))
        self.sim = Simulator(
            self.world, episode_seed, generator=self.generator, debug=self.debug, routing=True
        )
        reset_rule = getattr(self.dispatch, "reset", None)
        if callable(reset_rule):
            reset_rule(episode_seed)
        # The rewards count from an empty ledger, so that they sum to minus the day's cost even though
        # orders are dispatched (and stops served) before the first routing decision.
        self._ledger = Ledger(0.0, 0, 0, 0, 0.0)
        self.forced_decisions = 0
        self._run()
        self._final_pending = self.sim.done  # a day without a routing decision: one step ends it
        return self.encoder.encode(self.sim), self._info()

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        sim = self._require_sim()
        valid, penalty = True, 0.0
        if self._final_pending:
            self._final_pending = False
        elif sim.routing_vehicle is None:
            raise RuntimeError("the episode is over: call reset()")
        else:
            a = int(action)
            mask = self.encoder.mask(sim)
            valid = 0 <= a < len(mask) and bool(mask[a])
            if not valid:
                if self.invalid_action == "raise":
                    raise InvalidActionError(
                        f"action {action!r} is not valid for vehicle {sim.routing_vehicle}: valid actions "
                        f"are {np.flatnonzero(mask).tolist()} (0..{self.wait_action - 1} planned stops, "
                        f"{self.wait_action} wait)"
                    )
                a, penalty = int(np.flatnonzero(mask)[0]), self.invalid_action_penalty
            if a == self.wait_action:
                sim.wait()
            else:
                sim.route(a)
            self._run()
        after = sim.ledger()
        reward = self.reward_fn(self._ledger, after) - penalty
        self._ledger = after
        info = self._info()
        info["invalid_action"] = not valid
        return self.encoder.encode(sim), float(reward), sim.done, False, info

    def action_masks(self) -> np.ndarray:
        """Valid actions as booleans (the method sb3-contrib's MaskablePPO calls)."""
        return self.encoder.mask(self._require_sim()).astype(bool)

    def _run(self) -> None:
        """Run the day to the next routing decision for the agent: dispatch decisions go to the dispatch
        rule, forced routing decisions (one valid action) are played when ``skip_forced``."""
        sim = self._require_sim()
        while (decision := sim.next_decision()) is not None:
            if decision.kind == DecisionKind.DISPATCH:
                self.dispatch(sim)
                continue
            if not self.skip_forced:
                return
            mask = self.encoder.mask(sim)
            if mask.sum() != 1:
                return
            self.forced_decisions += 1
            a = int(np.flatnonzero(mask)[0])
            if a == self.wait_action:
                sim.wait()
            else:
                sim.route(a)

    def _require_sim(self) -> Simulator:
        if self.sim is None:
            raise RuntimeError("call reset() before step()")
        return self.sim

    def _info(self) -> dict[str, Any]:
        sim = self._require_sim()
        return {
            **episode_info(sim),
            "vehicle": -1 if sim.routing_vehicle is None else sim.routing_vehicle,
            "on_board": sum(o.status == OrderStatus.ON_BOARD for o in sim.arrived_orders),
        }
