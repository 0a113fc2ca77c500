"""Gymnasium adapters over the simulator. They translate actions and observations and re-implement nothing."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from lastmile_env.config import ScenarioConfig, load_scenario, with_dispatch_mode
from lastmile_env.generators import default_generator
from lastmile_env.observations import DispatchObservation
from lastmile_env.rewards import RewardFn, make_reward
from lastmile_env.sim.insertion import InsertionRule
from lastmile_env.sim.simulator import Simulator
from lastmile_env.sim.types import Ledger
from lastmile_env.sim.world import World, world_for


class InvalidActionError(ValueError):
    """An action outside the action mask (or the action space)."""


def check_env_options(observation: str, invalid_action: str) -> None:
    """The options every lastmile env shares; ValueError names a bad one."""
    if observation not in ("dict", "flat"):
        raise ValueError(f"observation must be 'dict' or 'flat', got {observation!r}")
    if invalid_action not in ("raise", "penalize"):
        raise ValueError(f"invalid_action must be 'raise' or 'penalize', got {invalid_action!r}")


def episode_info(sim: Simulator) -> dict[str, Any]:
    """An env's ``info``: running totals (cheap: counters only). The full outcome is ``sim.summary()``.

    ``on_time_rate`` is 1.0 until the first outcome (no order missed yet), so infos stay comparable.
    """
    on_time, settled = sim.n_on_time, sim.n_settled
    return {
        "on_time_rate": on_time / settled if settled else 1.0,
        "cost": sim.cost().total,
        "expected_cost": sim.expected_cost,
        "delivered": on_time + sim.n_late,
        "rejected": sim.n_rejected,
        "failed": sim.n_failed,
        "orders": sim.n_arrived,
        "time_min": sim.now,
    }


class DispatchEnv(gym.Env):
    """
    ## Description
    Dynamic last-mile dispatch. Orders arrive over a shift at a city's fulfillment centers; a fleet of
    vehicles collects the parcels at the centers and delivers them over a road graph. At every order arrival
    the agent picks the vehicle that takes the order, or rejects it. The order's pickup and delivery go into
    that vehicle's plan by the scenario's insertion rule (cheapest feasible insertion by default); the
    simulator then runs until the next order arrives.

    ## Action Space
    `Discrete(V + 1)`: `0 .. V-1` give the order to that vehicle, `V` rejects it. Vehicles that cannot take
    the order (capacity, back by their shift end, a drone's battery range) are masked out; reject is always
    valid. With `defer=True`, `Discrete(V + 2)`: action `V + 1` defers the order to the next dispatch tick
    (`dispatch.tick_min`), where deferred orders are decided again one at a time; it is masked once the
    order would wait longer than `dispatch.max_defer_min`.

    ## Observation Space
    A `Dict` (or, with `observation="flat"`, one `Box` concatenating the same arrays):

    | key           | shape    | content                                                                    |
    |---------------|----------|----------------------------------------------------------------------------|
    | `order`       | (9,)     | size, hours to ready / due / window start, window flag, x, y, center to    |
    |               |          | door hours, hours waited                                                   |
    | `vehicles`    | (V, 14)  | position, free in, load, plan, and the order's insertion: feasible, cost,   |
    |               |          | added km, ETA, on time; time to the order's center (by the vehicle's       |
    |               |          | mode), capacity, home                                                      |
    | `global`      | (7,)     | time of day, backlog, on-time rate, rejected share, idle share, arrivals,   |
    |               |          | deferred orders                                                            |
    | `action_mask` | (A,)     | 1 for valid actions (see `observations.py` for every feature's scaling)    |

    ## Rewards
    `reward="cost"` (default): minus the increase of the expected episode cost (distance + driver time +
    lateness + rejection). The rewards of an episode sum to minus its final cost. `reward="on_time"`: +1 per
    on-time delivery, -1 per late delivery or rejection. Any callable `(Ledger, Ledger) -> float` works too.

    ## Starting State
    The first order of the day is pending; every vehicle is idle at its center. The scenario's city is fixed
    by its `layout_seed`; the `reset` seed draws the day's orders.

    ## Episode End
    Terminated when no order is left to arrive and every accepted order is delivered (the simulator runs
    the remaining deliveries after the last decision). Truncated by the `TimeLimit` wrapper
    (`max_episode_steps`, 10,000 decisions for the registered id).

    ## Arguments
    `scenario` (name, YAML path or `ScenarioConfig`), `overrides` (dotted keys, e.g. `{"fleet.size": 30}`),
    `observation` (`"dict"` or `"flat"`), `defer` (add the defer action), `reward`, `reward_scale` (for
    `"cost"`), `insertion` (an
    `InsertionRule`), `invalid_action` (`"penalize"`, the default: an invalid action is a rejection plus
    `invalid_action_penalty` (default 0), flagged in `info["invalid_action"]`; `"raise"`:
    InvalidActionError; masking stays the intended use, the lenient default lets generic checkers and
    unmasked agents step random actions), `render_mode` (`"rgb_array"`), `debug` (check invariants after
    every step), `max_vehicles` (pad the fleet to that many vehicle slots: the spaces are then the same for
    every fleet size up to it; padded slots have zero features and are always masked, reject is action
    `max_vehicles`, and the observation gains `vehicle_mask`, 1 for a real vehicle; default: no padding, the
    spaces fit the scenario's fleet exactly).

    `reset(options={"scenario_overrides": {...}})` plays that episode on the env's scenario with these
    dotted overrides (e.g. `{"fleet.size": 7, "orders.rate_per_hour": 50}`); a fleet of another size needs
    `max_vehicles` at least that size, so that the spaces stay fixed. A reset without the option plays the
    env's own scenario. `lastmile_env.randomized_load.RandomizedLoad` draws such overrides per episode.

    ## Version History
    * v0: initial version.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}  # noqa: RUF012  (Gymnasium's convention)

    def __init__(
        self,
        scenario: str | Path | ScenarioConfig = "default",
        overrides: dict[str, Any] | None = None,
        observation: str = "dict",
        defer: bool = False,
        reward: str | RewardFn = "cost",
        reward_scale: float = 1.0,
        insertion: InsertionRule | None = None,
        invalid_action: str = "penalize",
        invalid_action_penalty: float = 0.0,
        render_mode: str | None = None,
        debug: bool = False,
        max_vehicles: int | None = None,
    ) -> None:
        check_env_options(observation, invalid_action)
        if max_vehicles is not None and (isinstance(max_vehicles, bool) or not isinstance(max_vehicles, int)):
            raise ValueError(f"max_vehicles must be a whole number of vehicle slots, got {max_vehicles!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}"
            )
        # A wave-mode scenario (static_day) is played one order at a time here, as evaluate.py plays dispatch
        # policies on it; LastMile-EpochDispatch-v0 plays its waves.
        self.config = with_dispatch_mode(load_scenario(scenario, overrides), "order")
        self.world: World = world_for(self.config)
        self.generator = default_generator(self.world)  # an order log is read and checked here, once
        self.encoder = DispatchObservation(
            self.world, flat=observation == "flat", defer=defer, max_vehicles=max_vehicles
        )
        # the env's own scenario; reset(options={"scenario_overrides": ...}) plays another for one episode
        self._own = (self.config, self.world, self.generator, self.encoder)
        self.observation_space = self.encoder.space
        self.action_space = gym.spaces.Discrete(self.encoder.n_actions)
        self.reward_fn = make_reward(reward, scale=reward_scale)
        self.insertion = insertion
        self.invalid_action = invalid_action
        self.invalid_action_penalty = invalid_action_penalty
        self.render_mode = render_mode
        self.debug = debug
        self.sim: Simulator | None = None
        self._renderer: Any = None

    def spawn(self) -> DispatchEnv:
        """A fresh env with this one's arguments (no episode, unseeded) that shares its config, world, order
        generator, encoder, reward function and insertion rule instead of building them again (the vector
        env's sub-envs). Those are read-only here; a stateful callable passed as ``reward`` or
        ``insertion`` would be shared too."""
        twin = copy.copy(self)
        twin.sim, twin._renderer = None, None
        twin._np_random, twin._np_random_seed = None, None
        return twin

    @property
    def reject_action(self) -> int:
        return self.encoder.n_slots

    @property
    def defer_action(self) -> int | None:
        return self.encoder.n_slots + 1 if self.encoder.defer else None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        self._play_scenario((options or {}).get("scenario_overrides"))
        # reset(seed=s) plays day s, the same day as Simulator(world, s) in evaluation; later resets
        # without a seed draw the next day from the env's seeded generator.
        episode_seed = seed if seed is not None else int(self.np_random.integers(2**63 - 1))
        self.sim = Simulator(
            self.world, episode_seed, generator=self.generator, insertion=self.insertion, debug=self.debug
        )
        # The rewards count from an empty ledger, so that they sum to minus the day's cost even where the
        # day starts with a cost planned (a roster's vehicle away from its center plans its way home).
        self._ledger = Ledger(0.0, 0, 0, 0, 0.0)
        self.sim.advance()
        return self.encoder.encode(self.sim), self._info()

    def _play_scenario(self, overrides: Any) -> None:
        """The config, world, order generator and encoder of the next episode: the env's own, or its
        scenario with ``overrides`` (the spaces must not change: ValueError names what does not fit)."""
        previous = self.world
        self._use_scenario(overrides)
        if self.world is not previous and self._renderer is not None:  # drawn for the other city
            self._renderer.close()
            self._renderer = None

    def _use_scenario(self, overrides: Any) -> None:
        if not overrides:
            self.config, self.world, self.generator, self.encoder = self._own
            return
        if not isinstance(overrides, dict):
            raise ValueError(f"options['scenario_overrides'] must be a mapping, got {overrides!r}")
        own_config, _, _, own_encoder = self._own
        config = with_dispatch_mode(load_scenario(own_config, overrides), "order")
        world = world_for(config)
        if own_encoder.max_vehicles is None and world.n_vehicles != own_encoder.n_slots:
            raise ValueError(
                f"scenario_overrides give a fleet of {world.n_vehicles} vehicles, the env's spaces have "
                f"{own_encoder.n_slots}: make the env with max_vehicles >= {world.n_vehicles}"
            )
        self.config, self.world, self.generator = config, world, default_generator(world)
        self.encoder = DispatchObservation(
            world, flat=own_encoder.flat, defer=own_encoder.defer, max_vehicles=own_encoder.max_vehicles
        )

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        sim = self._require_sim()
        if sim.current is None:
            raise RuntimeError("the episode is over: call reset()")
        a = int(action)
        reject = self.reject_action
        penalty = 0.0
        valid = self.encoder.valid(sim, a)
        if not valid:
            if self.invalid_action == "raise":
                mask = self.encoder.mask(sim)
                defer = "" if self.defer_action is None else f", {self.defer_action} defer"
                raise InvalidActionError(
                    f"action {action!r} is not valid for order {sim.current.id}: valid actions are "
                    f"{np.flatnonzero(mask).tolist()} (0..{reject - 1} vehicles, {reject} reject{defer})"
                )
            a, penalty = reject, self.invalid_action_penalty
        if a < reject:  # valid: a vehicle that can take the order
            sim.assign(a)
        elif a == reject:
            sim.reject()
        else:
            sim.defer()
        sim.advance()
        before, self._ledger = self._ledger, sim.ledger()  # this step's ledger is the next one's before
        reward = self.reward_fn(before, self._ledger) - penalty
        info = episode_info(sim)
        info["invalid_action"] = not valid
        return self.encoder.encode(sim), float(reward), sim.done, False, info

    def action_masks(self) -> np.ndarray:
        """Valid actions as booleans (the method sb3-contrib's MaskablePPO calls)."""
        return self.encoder.mask(self._require_sim()).astype(bool)

    def render(self) -> np.ndarray | None:
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; pass render_mode='rgb_array'")
            return None
        from lastmile_env.render import Renderer

        if self._renderer is None:
            self._renderer = Renderer(self.world)
        return self._renderer.rgb_array(self._require_sim())

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def _require_sim(self) -> Simulator:
        if self.sim is None:
            raise RuntimeError("call reset() before step()")
        return self.sim

    def _info(self) -> dict[str, Any]:
        return episode_info(self._require_sim())
