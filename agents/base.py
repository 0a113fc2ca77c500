"""The one interface every dispatch policy implements, and the loop that runs a policy on a simulator.

A policy acts on the simulator's domain view (the pending order, the vehicles, their plans and the
insertion rule's placements), never on arrays: a learned policy carries its own observation encoder. So
evaluation, training comparisons and the server call ``policy.act(sim)`` the same way for a heuristic and
for a network.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from lastmile_env.sim.simulator import Simulator

REJECT = -1  # refuse the order (the rejection penalty is paid)
DEFER = -2  # decide at the next dispatch tick (Simulator.defer)


@runtime_checkable
class Policy(Protocol):
    """Decides the simulator's current order: a vehicle index, ``REJECT`` or ``DEFER``."""

    name: str

    def reset(self, seed: int | None = None) -> None:
        """Start an episode (seed any randomness of the policy)."""

    def act(self, sim: Simulator) -> int:
        """The decision for ``sim.current``. May look at anything in ``sim``; changes nothing except through
        ``sim.prioritize`` (which pending order to decide first) and ``sim.replan`` (re-optimization)."""
        ...


TIE_LOGIT = 1e-6  # network scores closer than this are a tie


def decision_from_logits(logits: np.ndarray, n_vehicles: int) -> int:
    """A network's decision from its masked logits (``V`` vehicles, reject, [defer]): the best action, ties
    (identical vehicles score within float noise) to the lowest index, so that torch and the exported ONNX
    model decide alike."""
    action = int(np.flatnonzero(logits >= logits.max() - TIE_LOGIT)[0])
    if action < n_vehicles:
        return action
    return REJECT if action == n_vehicles else DEFER


def apply(sim: Simulator, decision: int) -> None:
    """Carry out a policy's decision on the simulator."""
    if decision == REJECT:
        sim.reject()
    elif decision == DEFER:
        sim.defer()
    elif decision >= 0:
        sim.assign(decision)
    else:
        raise ValueError(
            f"unknown decision {decision}: a vehicle index, REJECT ({REJECT}) or DEFER ({DEFER})"
        )


def run_episode(sim: Simulator, policy: Policy, seed: int | None = None) -> Simulator:
    """Play a whole shift: the policy decides every order; returns the finished simulator."""
    policy.reset(seed)
    while sim.advance() is not None:
        apply(sim, policy.act(sim))
    return sim
