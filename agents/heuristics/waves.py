"""Wave (epoch) policies: which pooled orders go at a wave (``dispatch.mode: wave``).

``greedy``, ``lazy`` and ``random`` are the EURO Meets NeurIPS 2022 baselines as the competition defines
them (everything, only the must-go requests, the must-go requests and each other one with probability 1/2
drawn from ``default_rng(solver_seed)``); ``urgent_routes`` is this project's: plan the whole pool, send
the routes that carry a request that must go now, keep the others for a later wave.
Every chosen batch is routed by PyVRP within the policy's budget (``lastmile_env.wave_routing``).
"""

from __future__ import annotations

import numpy as np

from lastmile_env.sim.simulator import Simulator
from lastmile_env.wave_routing import SolverBudget, solve_wave


class _WavePolicy:
    name = "wave"

    def __init__(self, budget: SolverBudget | None = None) -> None:
        self.budget = budget or SolverBudget()

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

    def __init__(self, budget: SolverBudget | None = None, solver_seed: int = 1) -> None:
        super().__init__(budget)
        self.solver_seed = solver_seed
        self.rng = np.random.default_rng(solver_seed)

    def reset(self, seed: int | None = None) -> None:
        self.rng = np.random.default_rng(self.solver_seed)  # the competition reseeds per day, not per seed

    def choose(self, sim: Simulator) -> list[int]:
        draws = self.rng.binomial(1, p=0.5, size=len(sim.pool) + 1).astype(bool)[1:]
        must = sim.must_dispatch()
        return [o.id for o, m, d in zip(sim.pool, must, draws, strict=True) if m or d]


class UrgentRoutesWave(_WavePolicy):
    """Plan the whole pool, send the planned routes that carry an order that must go now (with the other
    orders on them), and keep the other routes' orders for a later wave, where more orders may join them.
    At the last wave everything goes."""

    name = "urgent_routes"

    def choose(self, sim: Simulator) -> list[int]:
        must = sim.must_dispatch()
        if must.all() or not must.any():
            return [o.id for o, m in zip(sim.pool, must, strict=True) if m]
        urgent = {o.id for o, m in zip(sim.pool, must, strict=True) if m}
        routes, _ = solve_wave(sim, [o.id for o in sim.pool], self.budget)
        return sorted({i for _, ids in routes if urgent.intersection(ids) for i in ids} | urgent)


WAVE_HEURISTICS = {
    "greedy": GreedyWave,
    "lazy": LazyWave,
    "random": RandomWave,
    "urgent_routes": UrgentRoutesWave,
}
