"""The when-to-dispatch decision as a Gymnasium env: at each wave (epoch), which open requests go now."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from lastmile_env.config import ScenarioConfig, load_scenario
from lastmile_env.env import episode_info
from lastmile_env.generators import OrderGenerator, default_generator
from lastmile_env.observations import CLIP
from lastmile_env.sim.simulator import Simulator
from lastmile_env.sim.world import World, world_for
from lastmile_env.solver_budget import SolverBudget
from lastmile_env.wave_routing import WAVE_ITERATIONS, WaveOutcome, dispatch_wave

REQUEST_FEATURES = (
    "due_h",  # hours from now to the due time (window end)
    "opens_h",  # hours from now until the window opens (0 when open)
    "to_door_h",  # driving hours from the order's center to its door
    "to_center_h",  # driving hours back
    "service_h",  # hours at the door
    "size",  # parcel size / the largest vehicle capacity
    "waited_h",  # hours since it arrived
    "must",  # 1 when it must go at this wave
    "x",  # position relative to its center / the world's extent
    "y",
    "nearest_h",  # driving hours to the nearest other open request (either way)
    "slack_h",  # hours it could still wait: due - (leave after the next wave + direct trip); < 0: must go
)
GLOBAL_FEATURES = (
    "time_of_day",  # now / shift end
    "pool",  # open requests / max_requests
    "waves_left",  # share of the day's waves still to come
    "last_wave",  # 1 at the last wave (everything goes)
    "idle",  # share of the fleet at its center and free by the wave's departure
)
HOURS = 10.0  # hour features are divided by this (a shift)


def wave_features(sim: Simulator, max_requests: int) -> dict[str, np.ndarray]:
    """The when-to-dispatch observation of ``sim``'s pending wave: per open request, oldest first, the
    ``REQUEST_FEATURES`` (``max_requests`` rows, the newest beyond them not observed), the row mask, the
    must-go flags and the ``GLOBAL_FEATURES``; all zeros when no wave is pending. The one encoding of a wave
    decision: the env observes it and a learned wave policy (``agents.learned.epoch_policy``) scores it."""
    n = max_requests
    rows = np.zeros((n, len(REQUEST_FEATURES)), dtype=np.float32)
    present = np.zeros(n, dtype=np.int8)
    must_row = np.zeros(n, dtype=np.int8)
    glob = np.zeros(len(GLOBAL_FEATURES), dtype=np.float32)
    if sim.wave_pending:
        world, now = sim.world, sim.now
        cfg = world.config.dispatch
        scale_km = float(np.ptp(world.xy_km, axis=0).max()) or 1.0
        n_waves = max(1, round((sim.last_wave_min - cfg.wave_start_min) / cfg.wave_min) + 1)
        pool = sim.pool[:n]
        must = sim.must_dispatch()[:n]
        k = len(pool)
        centers = np.array([o.center for o in pool])
        locs = np.array([o.loc for o in pool])
        t = world.time_arr
        to_door = t[centers, locs]
        between = t[np.ix_(locs, locs)]
        nearest = np.minimum(between, between.T)
        np.fill_diagonal(nearest, np.inf)
        leave_next = now + cfg.wave_min + cfg.wave_margin_min
        cap = float(world.max_capacity)
        for i, o in enumerate(pool):
            rows[i] = (
                (o.due_min - now) / 60.0 / HOURS,
                max(o.earliest_min - now, 0.0) / 60.0 / HOURS,
                to_door[i] / 60.0 / HOURS,
                t[o.loc, o.center] / 60.0 / HOURS,
                o.service_min / 60.0 / HOURS,
                o.size / cap,
                (now - o.arrival_min) / 60.0 / HOURS,
                float(must[i]),
                (world.xy_km[o.loc, 0] - world.xy_km[o.center, 0]) / scale_km,
                (world.xy_km[o.loc, 1] - world.xy_km[o.center, 1]) / scale_km,
                (nearest[i].min() if k > 1 else 0.0) / 60.0 / HOURS,
                (o.due_min - max(leave_next, o.ready_min) - to_door[i]) / 60.0 / HOURS,
            )
        present[:k] = 1
        must_row[:k] = must
        leave = now + cfg.wave_margin_min
        idle = sum(1 for v in sim.vehicles if sim.plan(v.id).end_min <= leave + 1e-9)
        wave_index = round((now - cfg.wave_start_min) / cfg.wave_min)
        glob[:] = (
            now / world.config.fleet.shift_end_min,
            len(sim.pool) / n,
            (n_waves - 1 - wave_index) / n_waves,
            float(now >= sim.last_wave_min - 1e-9),
            idle / len(sim.vehicles),
        )
    np.clip(rows, -CLIP, CLIP, out=rows)
    np.clip(glob, -CLIP, CLIP, out=glob)
    return {"requests": rows, "request_mask": present, "must_dispatch": must_row, "global": glob}


class EpochDispatchEnv(gym.Env):
    """
    ## Description
    When to dispatch. Orders (requests) arrive over the day and wait in a pool at their fulfillment center;
    at each wave (an hourly epoch by default) the agent chooses which open requests go now. The chosen
    requests, with every request that must go now, are routed by PyVRP as a VRPTW (depot-loaded clients,
    the center's available vehicles, a deterministic iteration budget by default) and handed to the
    simulator, which prices and executes the routes; the others wait for the next wave. This is the
    decision of the EURO Meets NeurIPS 2022 dynamic VRPTW, and of wave-based depots.

    Two kinds of day: a lastmile scenario (`scenario`, run in wave mode: `dispatch.mode: wave`, whose
    `wave_min` / `wave_start_min` / `wave_margin_min` set the waves), or a competition instance
    (`instance`: a VRPLIB file; `reset(seed=s)` plays the dynamic day of `instance_seed = s`, exactly
    the competition's requests, epochs and must-dispatch rule; `variant="static"` plays the static one).

    ## Action Space
    `MultiBinary(max_requests)`: 1 sends the request in that row now. Rows beyond the pool are ignored and
    a must-dispatch request goes in any case (`action_masks()` says so, for MaskablePPO: two entries per row,
    [wait, go]).

    ## Observation Space
    A `Dict` (`wave_features(sim, max_requests)`, the one encoding, which learned wave policies use too):

    | key             | shape                | content                                                    |
    |-----------------|----------------------|------------------------------------------------------------|
    | `requests`      | (max_requests, 12)   | per open request, oldest first (`REQUEST_FEATURES`)        |
    | `request_mask`  | (max_requests,)      | 1 for a row holding a request                              |
    | `must_dispatch` | (max_requests,)      | 1 for a request that must go now                           |
    | `global`        | (5,)                 | time of day, pool size, waves left, last wave, idle fleet  |

    With more than `max_requests` open requests the newest are not observed: they wait (unless they must
    go) and `info["unobserved"]` counts them.

    ## Rewards
    Minus the expected cost the wave adds: the routes' plans (distance, driver time, lateness) plus the
    penalty of any must-go request no route could take, times `reward_scale`. The rewards of a day sum to
    minus its cost; on a competition day the cost is the total driving duration in seconds (its score).

    ## Starting State
    The first wave with open requests; every vehicle idle at its center.

    ## Episode End
    Terminated after the last wave, once every route is driven. No truncation: a day has a fixed number of
    waves.

    ## Arguments
    `scenario` (name, YAML path or `ScenarioConfig`; default `static_day`), `overrides` (dotted keys),
    `instance` (a competition instance file, instead of a scenario), `variant` (`"dynamic"` or `"static"`,
    with `instance`), `max_requests` (observation rows), `solver_iterations` / `solver_time_limit_s` /
    `solver_seed` (PyVRP's budget per wave: 2000 iterations by default, so results are the same on any
    machine; a time limit instead makes them depend on the machine), `reward_scale`, `debug` (check the
    simulator's invariants after every step).

    ## Version History
    * v0: initial version.
    """

    metadata = {"render_modes": []}  # noqa: RUF012  (Gymnasium's convention)

    def __init__(
        self,
        scenario: str | Path | ScenarioConfig = "static_day",
        overrides: dict[str, Any] | None = None,
        *,
        instance: str | Path | None = None,
        variant: str = "dynamic",
        max_requests: int = 512,
        solver_iterations: int | None = None,
        solver_time_limit_s: float | None = None,
        solver_seed: int = 1,
        reward_scale: float = 1.0,
        debug: bool = False,
    ) -> None:
        if variant not in ("dynamic", "static"):
            raise ValueError(f"variant must be 'dynamic' or 'static', got {variant!r}")
        if max_requests < 1:
            raise ValueError(f"max_requests must be >= 1, got {max_requests}")
        self.budget = SolverBudget.of(solver_iterations, solver_time_limit_s, WAVE_ITERATIONS)
        self.solver_seed = solver_seed
        self.instance = None
        self.static = False
        if instance is not None:
            from lastmile_env.sources import euro2022

            self.instance = euro2022.read_instance(instance)
            self.static = variant == "static"
            self.config = euro2022.scenario(self.instance, instance, static=self.static)
        else:
            self.config = load_scenario(scenario, {"dispatch.mode": "wave", **(overrides or {})})
        self.world: World = world_for(self.config)
        self._generator: OrderGenerator | None = None if self.instance else default_generator(self.world)
        self.max_requests = max_requests
        self.reward_scale = reward_scale
        self.debug = debug
        n = max_requests
        self.observation_space = spaces.Dict(
            {
                "requests": spaces.Box(-CLIP, CLIP, (n, len(REQUEST_FEATURES)), np.float32),
                "request_mask": spaces.MultiBinary(n),
                "must_dispatch": spaces.MultiBinary(n),
                "global": spaces.Box(-CLIP, CLIP, (len(GLOBAL_FEATURES),), np.float32),
            }
        )
        self.action_space = spaces.MultiBinary(n)
        self.sim: Simulator | None = None
        self.last_wave: WaveOutcome | None = None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        episode_seed = seed if seed is not None else int(self.np_random.integers(2**31 - 1))
        generator = self._generator
        if self.instance is not None:
            from lastmile_env.sources import euro2022

            requests = (
                euro2022.static_requests(self.instance)
                if self.static
                else euro2022.sample_requests(self.instance, episode_seed)
            )
            generator = euro2022.RequestStream(requests)
        self.sim = Simulator(self.world, episode_seed, generator=generator, debug=self.debug)
        self.sim.next_decision()
        self.last_wave = None
        return self._observe(), self._info()

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        sim = self._require_sim()
        if not sim.wave_pending:
            raise RuntimeError("the episode is over: call reset()")
        go = np.asarray(action).reshape(-1)
        if go.shape != (self.max_requests,):
            raise ValueError(f"action must have {self.max_requests} entries (MultiBinary), got {go.shape}")
        pool = sim.pool[: self.max_requests]
        chosen = [o.id for o, g in zip(pool, go[: len(pool)], strict=True) if g]
        self.last_wave = dispatch_wave(sim, chosen, self.budget, self.solver_seed)
        sim.next_decision()
        reward = -self.last_wave.cost * self.reward_scale
        return self._observe(), float(reward), sim.done, False, self._info()

    def action_masks(self) -> np.ndarray:
        """For MaskablePPO: per row, [wait allowed, go allowed]: a must-dispatch request cannot wait, an
        empty row cannot go."""
        sim = self._require_sim()
        n = self.max_requests
        mask = np.ones((n, 2), dtype=bool)
        if sim.wave_pending:
            k = min(len(sim.pool), n)
            mask[:k, 0] = ~sim.must_dispatch()[:k]
            mask[k:, 1] = False
        return mask.reshape(-1)

    def _observe(self) -> dict[str, np.ndarray]:
        return wave_features(self._require_sim(), self.max_requests)

    def _info(self) -> dict[str, Any]:
        sim = self._require_sim()
        info = episode_info(sim)
        info["unobserved"] = max(0, len(sim.pool) - self.max_requests) if sim.wave_pending else 0
        if self.last_wave is not None:
            info["routes"] = [ids for _, ids in self.last_wave.routes]
            info["wave_rejected"] = self.last_wave.rejected
        return info

    def _require_sim(self) -> Simulator:
        if self.sim is None:
            raise RuntimeError("call reset() before step()")
        return self.sim
