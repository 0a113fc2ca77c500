"""Reward functions: each maps the simulator's ledger before and after a step to a float.

A ``RewardFn`` is any callable ``(before: Ledger, after: Ledger) -> float``; choose one by name with
``make_reward`` (env argument ``reward=``).
"""

from __future__ import annotations

from collections.abc import Callable

from lastmile_env.sim.types import Ledger

RewardFn = Callable[[Ledger, Ledger], float]


class CostReward:
    """Dense: minus the increase of the expected episode cost (committed cost + every remaining plan's cost).

    The increase is the chosen vehicle's insertion cost, or the rejection penalty. Travel is deterministic,
    so the rewards of an episode sum to exactly minus its final cost. ``scale`` divides the reward (PPO
    learns best with rewards of order one).
    """

    def __init__(self, scale: float = 1.0) -> None:
        if not scale > 0:
            raise ValueError(f"reward scale must be > 0, got {scale}")
        self.scale = scale

    def __call__(self, before: Ledger, after: Ledger) -> float:
        return -(after.expected_cost - before.expected_cost) / self.scale


class OnTimeReward:
    """Sparse: +1 for each delivery on time, -1 for each late delivery, rejection or failed order, as they
    happen."""

    def __call__(self, before: Ledger, after: Ledger) -> float:
        on_time = after.n_on_time - before.n_on_time
        missed = (after.n_late - before.n_late) + (after.n_rejected - before.n_rejected)
        missed += after.n_failed - before.n_failed
        return float(on_time - missed)


def make_reward(reward: str | RewardFn, scale: float = 1.0) -> RewardFn:
    """A reward function by name (``cost`` divided by ``scale``, ``on_time``) or the callable itself."""
    if callable(reward):
        return reward
    if reward == "cost":
        return CostReward(scale)
    if reward == "on_time":
        return OnTimeReward()
    raise ValueError(f"unknown reward {reward!r}; valid: cost, on_time")
