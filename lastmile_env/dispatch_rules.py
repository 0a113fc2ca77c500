"""Dispatch rules: what decides each arriving order while an agent plays the routing decisions.

The routing env (``LastMile-Routing-v0``) takes any callable ``rule(sim)`` that makes the pending dispatch
decision on the simulator (``sim.assign(v)``, ``sim.reject()`` or ``sim.defer()``), with an optional
``reset(seed)`` called at each episode start. The env package keeps one rule of its own, the default:
cheapest insertion, rejecting whenever that costs more than the rejection penalty (the choice of the
``insertion_myopic`` heuristic; ``insertion`` rejects only when no vehicle is on time either). Any policy
of ``agents`` plays as a rule through ``agents.base.dispatch_rule`` (a name, a model zip or a policy).
"""

from __future__ import annotations

from typing import Protocol

from lastmile_env.sim.simulator import Simulator


class DispatchRule(Protocol):
    """Makes the simulator's pending dispatch decision."""

    def __call__(self, sim: Simulator) -> None: ...


def cheapest_insertion_vehicle(sim: Simulator, reject: bool = True) -> int | None:
    """The vehicle whose cheapest feasible insertion of the pending order adds the least cost (ties: the
    lower index); None (reject) when no vehicle can take it or, with ``reject``, when even that costs more
    than the scenario's rejection penalty."""
    best: int | None = None
    best_cost = float("inf")
    for v in range(len(sim.vehicles)):
        found = sim.insertion(v)
        if found is not None and found.delta_cost < best_cost:
            best, best_cost = v, found.delta_cost
    if best is not None and reject and best_cost > sim.world.config.costs.reject_penalty:
        return None
    return best


def cheapest_insertion(sim: Simulator) -> None:
    """The default dispatch rule: the cheapest insertion's vehicle, or reject (see
    ``cheapest_insertion_vehicle``)."""
    vehicle = cheapest_insertion_vehicle(sim)
    if vehicle is None:
        sim.reject()
    else:
        sim.assign(vehicle)
