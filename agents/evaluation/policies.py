"""Policy specs: a heuristic name, a trained model zip or a ``dispatch+routing`` pair, checked up front and
turned into a picklable factory that each worker calls."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agents.base import Policy, WavePolicy
from agents.evaluation.common import EvaluationError
from agents.heuristics import HEURISTICS, make_heuristic
from agents.heuristics.waves import WAVE_HEURISTICS


def resolve_policy(spec: str) -> Callable[[], Policy | WavePolicy]:
    """A factory for the policy named by ``spec``, checked before any work and called in each worker.

    A spec is a heuristic name (``HEURISTICS``) or the path of a trained model zip (``train.py``'s
    checkpoints and ``final.zip``), loaded as a ``LearnedPolicy`` in each worker. ``dispatch+routing``
    (e.g. ``insertion+nearest_next``, ``model.zip+routing_model.zip``) pairs a dispatch spec with a routing
    one (``agents.routing.ROUTING_HEURISTICS`` or a trained routing model zip); the pair plays the
    simulator in routing mode, the router choosing every vehicle's next stop. A wave policy
    (``agents.heuristics.waves``: ``greedy``, ``lazy``, ``urgent_routes``; any as ``wave:NAME``, e.g.
    ``wave:random``) plays the scenario in wave mode (``dispatch.mode: wave``).
    """
    if "+" in spec:
        return _resolve_pair(spec)
    if spec in HEURISTICS:
        return functools.partial(make_heuristic, spec)
    wave_name = spec.removeprefix("wave:")
    if wave_name in WAVE_HEURISTICS and (spec.startswith("wave:") or spec not in HEURISTICS):
        return functools.partial(_make_wave_policy, wave_name, spec)
    valid = ", ".join([*HEURISTICS, *(f"wave:{w}" for w in WAVE_HEURISTICS)])
    path = Path(spec)
    if path.suffix == ".zip":
        if not path.is_file():
            raise EvaluationError(f"policy {spec!r}: no such model file")
        return functools.partial(_load_learned, str(path))
    if os.sep in spec or path.suffix or path.exists():
        raise EvaluationError(
            f"policy {spec!r} looks like a file but is not a trained model zip; valid policy names: {valid}"
        )
    raise EvaluationError(f"unknown policy {spec!r}; valid names: {valid}, or a trained model .zip")


def _make_wave_policy(name: str, spec: str) -> WavePolicy:
    """A wave policy (``agents.heuristics.waves``) under the name it was asked for."""
    policy: WavePolicy = WAVE_HEURISTICS[name]()
    policy.name = spec
    return policy


def _resolve_pair(spec: str) -> Callable[[], Policy]:
    """``dispatch+routing``: factories for both halves, checked now (see ``resolve_policy``)."""
    from agents.routing import ROUTING_HEURISTICS, make_routing_heuristic

    dispatch_spec, _, routing_spec = spec.partition("+")
    dispatch = resolve_policy(dispatch_spec)
    if dispatch_spec.removeprefix("wave:") in WAVE_HEURISTICS and dispatch_spec not in HEURISTICS:
        raise EvaluationError(
            f"policy {spec!r}: a wave policy makes no per-order decisions to pair with routing"
        )
    router: Callable[[], Any]
    if routing_spec in ROUTING_HEURISTICS:
        router = functools.partial(make_routing_heuristic, routing_spec)
    elif routing_spec.endswith(".zip") and Path(routing_spec).is_file():
        router = functools.partial(_load_learned_router, routing_spec)
    else:
        raise EvaluationError(
            f"policy {spec!r}: unknown routing policy {routing_spec!r}; valid: "
            f"{', '.join(ROUTING_HEURISTICS)}, or a trained routing model .zip (as dispatch+routing)"
        )
    return functools.partial(_make_pair, dispatch, router, spec)


def _make_pair(dispatch: Callable[[], Any], router: Callable[[], Any], name: str) -> Policy:
    from agents.routing import PairedPolicy

    return PairedPolicy(dispatch(), router(), name)


def _load_learned_router(path: str) -> Any:
    """A trained routing policy for one worker process (one torch thread)."""
    import torch

    from agents.learned.routing_policy import LearnedRoutingPolicy

    torch.set_num_threads(1)
    return LearnedRoutingPolicy.load(path)


def _load_learned(path: str) -> Policy:
    """A trained policy for one worker process (one torch thread: workers already fill the cores)."""
    import torch

    from agents.learned.policy import LearnedPolicy

    torch.set_num_threads(1)
    return LearnedPolicy.load(path)


def _parse_policies(policies: Sequence[str] | str) -> list[str]:
    specs = [p.strip() for p in policies.split(",")] if isinstance(policies, str) else list(policies)
    specs = [p for p in specs if p]
    if not specs:
        raise EvaluationError(f"no policy given; valid names: {', '.join(HEURISTICS)}")
    dup = sorted({p for p in specs if specs.count(p) > 1})
    if dup:
        raise EvaluationError(f"policy listed twice: {', '.join(dup)}")
    for spec in specs:
        resolve_policy(spec)
    return specs
