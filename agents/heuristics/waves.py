"""Wave (epoch) policies: which pooled orders go at a wave (``dispatch.mode: wave``).

``greedy``, ``lazy`` and ``random`` are the EURO Meets NeurIPS 2022 baselines as the competition defines
them (everything, only the must-go requests, the must-go requests and each other one with probability 1/2
drawn from ``default_rng(solver_seed)``); ``urgent_routes`` is this project's: plan the whole pool, send
the routes that carry a request that must go now, keep the others for a later wave.
Every chosen batch is routed by PyVRP within the policy's budget (``lastmile_env.wave_routing``).
"""

from __future__ import annotations

import numpy as np

from agents.base import SpecOption, parse_spec
from lastmile_env.sim.simulator import Simulator
from lastmile_env.solver_budget import SolverBudget
from lastmile_env.wave_routing import WAVE_ITERATIONS, WAVE_SEED, solve_wave


def _minutes(name: str, value: float) -> float:
    """A policy option in minutes: finite and >= 0, else one line naming it."""
    if not 0 <= value < float("inf"):
        raise ValueError(f"{name} must be a finite number of minutes >= 0, got {value}")
    return float(value)


class _WavePolicy:
    """``safety_min``: PyVRP plans every due time this many minutes early (``solve_wave``; run_episode and
    the evaluation route the policy's batches with it)."""

    name = "wave"

    def __init__(
        self, budget: SolverBudget | None = None, seed: int = WAVE_SEED, safety_min: float = 0.0
    ) -> None:
        self.budget = budget or SolverBudget(max_iterations=WAVE_ITERATIONS)
        self.seed = seed
        self.safety_min = _minutes("safety_min", safety_min)

    def reset(self, seed: int | None = None) -> None:
        return None

    def choose(self, sim: Simulator) -> list[int]:
        raise NotImplementedError


class GreedyWave(_WavePolicy):
    """Send every pooled order now (the competition's greedy baseline)."""

    name = "greedy"

    def choose(self, sim: Simulator) -> list[int]:
        return [o.id for o in sim.pool]


class LazyWave(_WavePolicy):
    """Send only the orders that must go now (the competition's lazy baseline)."""

    name = "lazy"

    def choose(self, sim: Simulator) -> list[int]:
        return [o.id for o, must in zip(sim.pool, sim.must_dispatch(), strict=True) if must]


class RandomWave(_WavePolicy):
    """The must-go orders plus each other one with probability 1/2: the competition's random baseline,
    including its stream (``default_rng(solver_seed)``, one draw per pooled order plus one for the depot at
    every wave), so that on the competition's days it sends exactly the competition's sets."""

    name = "random"

    def __init__(
        self,
        budget: SolverBudget | None = None,
        seed: int = WAVE_SEED,
        safety_min: float = 0.0,
        solver_seed: int = 1,
    ) -> None:
        super().__init__(budget, seed, safety_min)
        self.solver_seed = solver_seed
        self.rng = np.random.default_rng(solver_seed)

    def reset(self, seed: int | None = None) -> None:
        self.rng = np.random.default_rng(self.solver_seed)  # the competition reseeds per day, not per seed

    def choose(self, sim: Simulator) -> list[int]:
        draws = self.rng.binomial(1, p=0.5, size=len(sim.pool) + 1).astype(bool)[1:]
        must = sim.must_dispatch()
        return [o.id for o, m, d in zip(sim.pool, must, draws, strict=True) if m or d]


class UrgentRoutesWave(_WavePolicy):
    """Plan the whole pool, send the planned routes that carry an urgent order (with the other orders on
    them), and keep the other routes' orders for a later wave, where more orders may join them. At the last
    wave everything goes.

    An order is urgent when it must go now (``Simulator.must_dispatch``) or, with ``slack_min``, when its
    direct trip after the next wave would reach it within ``slack_min`` of its due time: a route with other
    stops takes longer than the direct trip, so without a margin the last-minute orders come late.
    """

    name = "urgent_routes"

    def __init__(
        self,
        budget: SolverBudget | None = None,
        seed: int = WAVE_SEED,
        safety_min: float = 0.0,
        slack_min: float = 0.0,
    ) -> None:
        super().__init__(budget, seed, safety_min)
        self.slack_min = _minutes("slack_min", slack_min)

    def choose(self, sim: Simulator) -> list[int]:
        must = sim.must_dispatch(self.slack_min)
        if must.all() or not must.any():
            return [o.id for o, m in zip(sim.pool, must, strict=True) if m]
        urgent = {o.id for o, m in zip(sim.pool, must, strict=True) if m}
        routes, _ = solve_wave(
            sim, [o.id for o in sim.pool], self.budget, self.seed, safety_min=self.safety_min
        )
        return sorted({i for _, ids in routes if urgent.intersection(ids) for i in ids} | urgent)


WAVE_HEURISTICS = {
    "greedy": GreedyWave,
    "lazy": LazyWave,
    "random": RandomWave,
    "urgent_routes": UrgentRoutesWave,
}
_WAVE_OPTIONS: dict[str, SpecOption] = {
    "iterations": ("max_iterations", int),
    "safety": ("safety_min", float),
}
# The options each wave policy's name accepts after a colon, e.g. ``urgent_routes:slack=20:safety=10``
# (``iterations``: PyVRP iterations per solve; ``safety``: ``safety_min``; ``slack``: ``slack_min``).
WAVE_SPEC_OPTIONS: dict[str, dict[str, SpecOption]] = {
    name: {**_WAVE_OPTIONS, **({"slack": ("slack_min", float)} if name == "urgent_routes" else {})}
    for name in WAVE_HEURISTICS
}


def wave_budget(spec: str, iterations: int | None, what: str) -> SolverBudget | None:
    """The PyVRP budget a wave policy's ``iterations`` option asks for (None: the policy's default); a count
    below 1 fails with one line naming ``what`` and ``spec``."""
    if iterations is None:
        return None
    if iterations < 1:
        raise ValueError(f"{what} {spec!r}: iterations must be at least 1, got {iterations}")
    return SolverBudget(max_iterations=iterations)


def make_wave_heuristic(spec: str) -> _WavePolicy:
    """A wave policy by name with its options (``name[:key=value]...``, ``WAVE_SPEC_OPTIONS``); unknown
    names, options or bad values fail with one line naming them."""
    name, params = parse_spec(spec, WAVE_SPEC_OPTIONS, "wave policy")
    budget = wave_budget(spec, params.pop("max_iterations", None), "wave policy")
    policy: _WavePolicy = WAVE_HEURISTICS[name](budget=budget, **params)
    return policy
