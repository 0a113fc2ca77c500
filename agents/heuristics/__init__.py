"""Heuristic dispatch policies, by name.

A name may carry options after a colon, e.g. ``reopt:time=0.5`` (PyVRP stopped by wall-clock seconds
instead of its default iteration budget), ``reopt:iterations=300:interval=15``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from agents.base import Policy, SpecOption, parse_spec
from agents.heuristics.reopt import ReoptPolicy
from agents.heuristics.rules import (
    InsertionPolicy,
    LeastLoadedPolicy,
    NearestPolicy,
    RandomPolicy,
    RegretPolicy,
)

HEURISTICS: dict[str, Callable[..., Policy]] = {
    "random": RandomPolicy,
    "nearest": NearestPolicy,
    "least_loaded": LeastLoadedPolicy,
    "insertion": InsertionPolicy,
    "insertion_myopic": functools.partial(InsertionPolicy, rejection="myopic"),
    "insertion_always": functools.partial(InsertionPolicy, rejection="never"),
    "regret": RegretPolicy,
    "reopt": ReoptPolicy,
    "reopt_myopic": functools.partial(ReoptPolicy, rejection="myopic"),
}

_REOPT_OPTIONS: dict[str, SpecOption] = {
    "iterations": ("max_iterations", int),
    "time": ("time_limit_s", float),
    "interval": ("interval_min", float),
}
# The options each heuristic's name accepts after a colon (see the module docstring).
SPEC_OPTIONS: dict[str, dict[str, SpecOption]] = {
    name: _REOPT_OPTIONS if name.startswith("reopt") else {} for name in HEURISTICS
}


def is_heuristic(spec: str) -> bool:
    """Whether ``spec`` names a heuristic (with or without options)."""
    return spec.split(":")[0] in HEURISTICS


def make_heuristic(spec: str, **params: Any) -> Policy:
    """A heuristic policy by name (``name[:key=value]...``); unknown names or options fail with one line
    listing the valid ones."""
    name, options = parse_spec(spec, SPEC_OPTIONS, "policy")
    return HEURISTICS[name](**{**options, **params})
