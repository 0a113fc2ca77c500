"""Policy specs: a heuristic name (with options: ``reopt:time=0.5``), a trained model zip, ``learned`` (the
shipped best learned policy), a ``dispatch+routing`` pair or ``dispatch+reopt`` (any dispatch policy under
periodic re-optimization), checked up front and turned into a picklable factory that each worker calls."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agents.base import Policy, SpecOption, WavePolicy, parse_spec
from agents.evaluation.common import EvaluationError
from agents.heuristics import HEURISTICS, is_heuristic, make_heuristic
from agents.heuristics.waves import WAVE_HEURISTICS, make_wave_heuristic, wave_budget
from agents.learned.shipped import NAME as SHIPPED_NAME
from lastmile_env.config import ConfigError


def resolve_policy(spec: str) -> Callable[[], Policy | WavePolicy]:
    """A factory for the policy named by ``spec``, checked before any work and called in each worker.

    A spec is a heuristic name (``HEURISTICS``, options after colons: ``reopt:time=0.5``,
    ``reopt:iterations=200``), the path of a trained model zip (``train.py``'s checkpoints and
    ``final.zip``), loaded as a ``LearnedPolicy`` in each worker, or ``learned``: the shipped best learned
    dispatch policy (``agents.learned.shipped``; its rows keep the name ``learned``). ``dispatch+reopt``
    (e.g. ``model.zip+reopt``, ``learned+reopt:time=0.5``) lets the dispatch spec decide every order while
    PyVRP re-optimizes the plans every 30 min (``ReoptPolicy(dispatch=...)``). ``dispatch+routing`` (e.g.
    ``insertion+nearest_next``, ``model.zip+routing_model.zip``) pairs a dispatch spec with a routing one
    (``agents.routing.ROUTING_HEURISTICS`` with options, or a trained routing model zip); the pair plays
    the simulator in routing mode, the router choosing every vehicle's next stop.
    A wave policy (``agents.heuristics.waves``: ``greedy``, ``lazy``, ``urgent_routes``; any as
    ``wave:NAME``, e.g. ``wave:random``; options after colons, ``urgent_routes:slack=20:safety=10``) or
    ``learned_epoch[:options]`` (the shipped learned wave policy, ``make_learned_epoch``) plays the
    scenario in wave mode (``dispatch.mode: wave``).
    """
    if spec == SHIPPED_NAME:
        return _resolve_shipped()
    if "+" in spec:
        dispatch_spec, _, second = spec.rpartition("+")
        if second.split(":")[0] == "reopt":
            return _resolve_reoptimized(dispatch_spec, second, spec)
        return _resolve_pair(spec)
    valid = ", ".join([*HEURISTICS, *(f"wave:{w}" for w in WAVE_HEURISTICS), LEARNED_EPOCH])
    if is_heuristic(spec):
        _check_constructs(make_heuristic, spec)
        return functools.partial(make_heuristic, spec)
    if spec.split(":")[0] == LEARNED_EPOCH:
        _check_constructs(make_learned_epoch, spec)
        return functools.partial(make_learned_epoch, spec)
    wave_spec = _wave_spec(spec)
    if wave_spec is not None:
        _check_constructs(make_wave_heuristic, wave_spec)
        return functools.partial(_make_wave_policy, wave_spec, spec)
    path = Path(spec)
    if path.suffix == ".zip":
        if not path.is_file():
            raise EvaluationError(f"policy {spec!r}: no such model file")
        return functools.partial(_load_learned, str(path))
    if os.sep in spec or path.suffix or path.exists():
        raise EvaluationError(
            f"policy {spec!r} looks like a file but is not a trained model zip; valid policy names: {valid}"
        )
    raise EvaluationError(
        f"unknown policy {spec!r}; valid names: {valid}, {SHIPPED_NAME}, or a trained model .zip"
    )


def _check_constructs(make: Callable[[str], Any], spec: str) -> None:
    """Build the heuristic once now, so that a bad option fails before any work (heuristics are cheap)."""
    try:
        make(spec)
    except ValueError as exc:
        raise EvaluationError(str(exc)) from None


def _resolve_shipped() -> Callable[[], Policy | WavePolicy]:
    """``learned``: the policy ``experiments/dispatch/learned.yaml`` names, under the name ``learned``."""
    from agents.learned.shipped import shipped_learned

    try:
        shipped = shipped_learned()
    except ConfigError as exc:
        raise EvaluationError(f"policy {SHIPPED_NAME!r}: {exc}") from None
    if shipped.spec == SHIPPED_NAME or SHIPPED_NAME in shipped.spec.split("+"):
        raise EvaluationError(f"policy {SHIPPED_NAME!r}: the manifest names itself")
    return functools.partial(_renamed, resolve_policy(shipped.spec), SHIPPED_NAME)


def _renamed(make: Callable[[], Policy | WavePolicy], name: str) -> Policy | WavePolicy:
    policy = make()
    policy.name = name
    return policy


def _resolve_reoptimized(dispatch_spec: str, reopt_spec: str, spec: str) -> Callable[[], Policy]:
    """``dispatch+reopt[:options]``: the dispatch spec decides, ``ReoptPolicy`` re-optimizes."""
    if not dispatch_spec:
        raise EvaluationError(f"policy {spec!r}: no dispatch policy before '+reopt'")
    _refuse_wave(dispatch_spec, spec, "re-optimize")
    dispatch = resolve_policy(dispatch_spec)
    _check_constructs(make_heuristic, reopt_spec)
    return functools.partial(_make_reoptimized, dispatch, reopt_spec, spec)


LEARNED_EPOCH = "learned_epoch"  # the shipped learned wave policy (experiments/euro2022/learned_epoch)
_LEARNED_EPOCH_OPTIONS: dict[str, dict[str, SpecOption]] = {
    LEARNED_EPOCH: {
        "iterations": ("max_iterations", int),
        "slack": ("slack_min", float),
        "safety": ("safety_min", float),
    }
}


def make_learned_epoch(spec: str) -> WavePolicy:
    """``learned_epoch[:slack=..][:safety=..][:iterations=..]``: the shipped learned wave policy with its
    margins (``agents.learned.epoch_policy.LearnedWave``) and PyVRP iterations per solve, named ``spec``."""
    from agents.learned.epoch_policy import SHIPPED_EPOCH_MODEL, learned_wave

    _, params = parse_spec(spec, _LEARNED_EPOCH_OPTIONS, "policy")
    budget = wave_budget(spec, params.pop("max_iterations", None), "policy")
    policy = learned_wave(SHIPPED_EPOCH_MODEL, budget, **params)
    policy.name = spec
    return policy


def _wave_spec(spec: str) -> str | None:
    """The wave heuristic's spec (``name[:options]``) that ``spec`` names (``urgent_routes:slack=20``,
    ``wave:random``), or None when it names no wave heuristic."""
    wave_spec = spec.removeprefix("wave:")
    if wave_spec.split(":")[0] in WAVE_HEURISTICS and (spec.startswith("wave:") or not is_heuristic(spec)):
        return wave_spec
    return None


def _refuse_wave(dispatch_spec: str, spec: str, what: str) -> None:
    if _wave_spec(dispatch_spec) is not None:
        raise EvaluationError(f"policy {spec!r}: a wave policy makes no per-order decisions to {what}")


def _make_reoptimized(dispatch: Callable[[], Any], reopt_spec: str, name: str) -> Policy:
    policy = make_heuristic(reopt_spec, dispatch=dispatch())
    policy.name = name
    return policy


def describe_solver_budgets(specs: Sequence[str]) -> dict[str, str]:
    """Spec -> the PyVRP budget of each solver it runs (``reopt``, ``reopt_route``), for the report; specs
    without a solver are left out."""
    from agents.routing import is_routing_heuristic, make_routing_heuristic

    out = {}
    for spec in specs:
        if spec == SHIPPED_NAME:
            from agents.learned.shipped import shipped_learned

            parts = shipped_learned().spec.split("+")
        else:
            parts = spec.split("+")
        budgets = []
        for part in parts:
            name = part.split(":")[0]
            if name.startswith("reopt") and is_heuristic(part):
                budgets.append(f"{name} {make_heuristic(part).budget.describe()}")  # type: ignore[attr-defined]
            elif name.startswith("reopt") and is_routing_heuristic(part):
                budgets.append(f"{name} {make_routing_heuristic(part).budget.describe()}")  # type: ignore[attr-defined]
            elif name == LEARNED_EPOCH:
                budgets.append(f"{name} {make_learned_epoch(part).budget.describe()} per center and solve")
            elif (wave := _wave_spec(part)) is not None:
                budget = make_wave_heuristic(wave).budget.describe()
                budgets.append(f"{wave.split(':')[0]} {budget} per center and solve")
        if budgets:
            out[spec] = ", ".join(budgets)
    return out


def _make_wave_policy(wave_spec: str, spec: str) -> WavePolicy:
    """A wave policy (``agents.heuristics.waves``, with its options) under the name it was asked for."""
    policy: WavePolicy = make_wave_heuristic(wave_spec)
    policy.name = spec
    return policy


def _resolve_pair(spec: str) -> Callable[[], Policy]:
    """``dispatch+routing``: factories for both halves, checked now (see ``resolve_policy``)."""
    from agents.routing import ROUTING_HEURISTICS, is_routing_heuristic, make_routing_heuristic

    dispatch_spec, _, routing_spec = spec.rpartition("+")
    _refuse_wave(dispatch_spec, spec, "pair with routing")
    dispatch = resolve_policy(dispatch_spec)
    router: Callable[[], Any]
    if is_routing_heuristic(routing_spec):
        _check_constructs(make_routing_heuristic, routing_spec)
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


def short_labels(policies: Sequence[str]) -> list[str]:
    """Short, distinct labels for plots: a heuristic keeps its name, a model path becomes its file stem with
    as many parent folders as it takes to tell it from the others (``runs/a/model.zip`` -> ``a/model``)."""
    parts = [Path(p).with_suffix("").parts if p.endswith(".zip") or "/" in p else (p,) for p in policies]
    depth = [1] * len(policies)
    while True:
        labels = ["/".join(ps[-d:]) for ps, d in zip(parts, depth, strict=True)]
        clashes = {lab for lab in labels if labels.count(lab) > 1}
        grow = [i for i, lab in enumerate(labels) if lab in clashes and depth[i] < len(parts[i])]
        if not grow:
            return labels
        for i in grow:
            depth[i] += 1
