"""Heuristic dispatch policies, by name."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from agents.base import Policy
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
    "insertion_always": functools.partial(InsertionPolicy, reject=False),
    "regret": RegretPolicy,
    "reopt": ReoptPolicy,
}


def make_heuristic(name: str, **params: Any) -> Policy:
    """A heuristic policy by name; unknown names fail with the list of valid ones."""
    if name not in HEURISTICS:
        raise ValueError(f"unknown policy {name!r}; valid: {', '.join(HEURISTICS)}")
    return HEURISTICS[name](**params)
