"""The interfaces every dispatch and routing policy implements, and the loop that runs them on a simulator.

A policy acts on the simulator's domain view (the pending order, the vehicles, their plans and the
insertion rule's placements), never on arrays: a learned policy carries its own observation encoder. So
evaluation, training comparisons and the server call ``policy.act(sim)`` the same way for a heuristic and
for a network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from lastmile_env.sim.simulator import Simulator
from lastmile_env.sim.types import DecisionKind
from lastmile_env.solver_budget import SolverBudget
from lastmile_env.wave_routing import dispatch_wave

REJECT = -1  # refuse the order (the rejection penalty is paid)
DEFER = -2  # decide at the next dispatch tick (Simulator.defer)
WAIT = -1  # routing: hold the vehicle until a parcel of its plan is ready (Simulator.wait)


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


@runtime_checkable
class RoutingPolicy(Protocol):
    """Decides the next stop of ``sim.routing_vehicle`` (routing mode): an index into its planned stops
    ``sim.vehicles[sim.routing_vehicle].route`` (valid ones: ``sim.route_mask()``) or ``WAIT``."""

    name: str

    def reset(self, seed: int | None = None) -> None:
        """Start an episode (seed any randomness of the policy)."""

    def route(self, sim: Simulator) -> int:
        """The next stop of the pending vehicle. May look at anything in ``sim``; changes nothing except
        through ``sim.replan`` of that vehicle's plan (re-optimization)."""
        ...


@runtime_checkable
class WavePolicy(Protocol):
    """Decides which pooled orders go at a wave (``dispatch.mode: wave``; the EURO Meets NeurIPS 2022
    epoch decision): ``choose`` returns order ids of ``sim.pool``; the orders of ``sim.must_dispatch()``
    go in any case. The chosen batch is routed by PyVRP within the policy's ``budget``
    (``lastmile_env.wave_routing.dispatch_wave``), with the policy's ``safety_min`` when it has one."""

    name: str
    budget: SolverBudget
    seed: int  # PyVRP's seed

    def reset(self, seed: int | None = None) -> None:
        """Start an episode (seed any randomness of the policy)."""

    def choose(self, sim: Simulator) -> list[int]:
        """The pooled orders to send now. May look at anything in ``sim``; changes nothing."""
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


def apply_route(sim: Simulator, decision: int) -> None:
    """Carry out a routing policy's decision on the simulator."""
    if decision == WAIT:
        sim.wait()
    elif decision >= 0:
        sim.route(decision)
    else:
        raise ValueError(f"unknown routing decision {decision}: a stop index or WAIT ({WAIT})")


def run_episode(
    sim: Simulator,
    policy: Policy | WavePolicy,
    seed: int | None = None,
    router: RoutingPolicy | None = None,
) -> Simulator:
    """Play a whole shift: the policy decides every order (or, a ``WavePolicy`` on a simulator in wave
    mode, every wave); returns the finished simulator.

    With a routing policy (``router``, or the policy's own ``router`` attribute, as a dispatch+routing
    pair has) the simulator must be in routing mode and the router decides every vehicle's next stop.
    """
    policy.reset(seed)
    if isinstance(policy, WavePolicy) or sim.wave_mode:
        if not (isinstance(policy, WavePolicy) and sim.wave_mode):
            raise ValueError(
                f"policy {policy.name!r} and the simulator disagree on the decision: a wave policy needs a "
                "simulator in wave mode (dispatch.mode: wave) and a dispatch policy one in order mode"
            )
        safety_min = getattr(policy, "safety_min", 0.0)  # optional: ``agents.heuristics.waves``
        while sim.next_decision() is not None:
            dispatch_wave(sim, policy.choose(sim), policy.budget, policy.seed, safety_min=safety_min)
        return sim
    assert not isinstance(policy, WavePolicy)
    if router is None:
        router = getattr(policy, "router", None)
    else:
        router.reset(seed)
    if router is None:
        while sim.advance() is not None:
            apply(sim, policy.act(sim))
        return sim
    if not sim.routing:
        raise ValueError(f"routing policy {router.name!r} needs a simulator in routing mode (routing=True)")
    while (decision := sim.next_decision()) is not None:
        if decision.kind == DecisionKind.DISPATCH:
            apply(sim, policy.act(sim))
        else:
            apply_route(sim, router.route(sim))
    return sim


# A spec option: its name after the policy's (``reopt:time=0.5``), the constructor argument it sets, and
# the argument's type.
SpecOption = tuple[str, type]


def parse_spec(spec: str, options: dict[str, dict[str, SpecOption]], what: str) -> tuple[str, dict[str, Any]]:
    """``name[:key=value]...`` as the policy name and its constructor arguments.

    ``options[name]`` maps the keys a policy accepts to (argument, type), e.g. ``reopt:time=0.5`` to
    ``("reopt", {"time_limit_s": 0.5})``. Unknown names, keys and values fail with one line naming them.
    """
    name, *items = spec.split(":")
    if name not in options:
        raise ValueError(f"unknown {what} {name!r}; valid: {', '.join(options)}")
    accepted = options[name]
    params: dict[str, Any] = {}
    for item in items:
        key, eq, raw = item.partition("=")
        if key not in accepted or not eq:
            valid = ", ".join(f"{k}=..." for k in accepted) or "none"
            raise ValueError(f"{what} {spec!r}: bad option {item!r}; {name} takes {valid}")
        argument, kind = accepted[key]
        try:
            params[argument] = kind(raw)
        except ValueError:
            noun = "an integer" if kind is int else "a number"
            raise ValueError(f"{what} {spec!r}: {key} must be {noun}, got {raw!r}") from None
    return name, params


def dispatch_policy(spec: str | Path | Policy) -> Policy:
    """A dispatch policy from a heuristic name (``agents.heuristics``), the path of a trained dispatch model
    ``.zip``, or a policy object (anything with ``reset(seed)`` and ``act(sim)``), checked now."""
    if not isinstance(spec, str | Path):
        if not (callable(getattr(spec, "act", None)) and callable(getattr(spec, "reset", None))):
            raise ValueError(f"dispatch must be a policy name, a model .zip or a policy, got {spec!r}")
        return spec
    if str(spec).endswith(".zip"):
        from agents.learned.policy import LearnedPolicy

        return LearnedPolicy.load(spec)
    from agents.heuristics import make_heuristic

    return make_heuristic(str(spec))


class PolicyRule:
    """A dispatch policy as the routing env's dispatch rule (``lastmile_env.dispatch_rules``): it carries
    out the policy's decision on the simulator and reseeds the policy at each episode."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    def reset(self, seed: int | None = None) -> None:
        self.policy.reset(seed)

    def __call__(self, sim: Simulator) -> None:
        apply(sim, self.policy.act(sim))


def dispatch_rule(spec: str | Path | Policy) -> PolicyRule:
    """``RoutingEnv(dispatch=dispatch_rule("regret"))``: a name, a model zip or a policy (as
    ``dispatch_policy``) as the routing env's dispatch rule."""
    return PolicyRule(dispatch_policy(spec))
