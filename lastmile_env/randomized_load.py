"""Randomized load: each episode of the dispatch env on a fleet size and an order volume drawn at random.

A policy trained on one fleet and one order rate learns that day's balance of capacity and demand; one that
must hold across loads (few vans, a busy day) is trained on days drawn across them. ``RandomizedLoad``
wraps ``LastMile-Dispatch-v0`` made with ``max_vehicles`` (so the spaces are the same for every fleet
size): at every reset it draws the fleet size from ``LoadRanges.fleet_sizes`` and a volume multiplier
uniformly from ``LoadRanges.volume`` (the scenario's base order rate ``orders.rate_per_hour`` times it; the
peaks multiply that rate, so the whole day scales), and plays the episode on the env's scenario with those
two overrides. The draws come from the wrapper's own generator, seeded by ``reset(seed=s)``: the same seed
gives the same sequence of loads (and days) on any machine.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from lastmile_env.env import DispatchEnv

_STREAM = 0x10AD  # the load draws' own stream, apart from the env's day seeds


@dataclass(frozen=True)
class LoadRanges:
    """The loads drawn: ``fleet_sizes`` (chosen uniformly) and ``volume`` (low, high: the order-rate
    multiplier, uniform in between; equal ends fix it). ValueError names a bad one."""

    fleet_sizes: tuple[int, ...]
    volume: tuple[float, float] = (1.0, 1.0)

    def __post_init__(self) -> None:
        if not self.fleet_sizes:
            raise ValueError("fleet_sizes is empty: give at least one fleet size")
        bad = [n for n in self.fleet_sizes if isinstance(n, bool) or not isinstance(n, int) or n < 1]
        if bad:
            raise ValueError(f"fleet_sizes must be whole numbers >= 1, got {bad}")
        low, high = self.volume
        if not (math.isfinite(low) and math.isfinite(high)) or low <= 0 or high < low:
            raise ValueError(f"volume must be [low, high] with 0 < low <= high, got [{low}, {high}]")

    @classmethod
    def of(cls, fleet_sizes: Sequence[int], volume: Sequence[float] = (1.0, 1.0)) -> LoadRanges:
        """From lists (a YAML config's); ValueError names a bad one."""
        if len(volume) != 2:
            raise ValueError(f"volume must be [low, high], got {list(volume)}")
        return cls(tuple(fleet_sizes), (float(volume[0]), float(volume[1])))

    @property
    def max_fleet(self) -> int:
        return max(self.fleet_sizes)

    def draw(self, rng: np.random.Generator) -> tuple[int, float]:
        """One episode's fleet size and volume multiplier."""
        fleet = self.fleet_sizes[int(rng.integers(len(self.fleet_sizes)))]
        low, high = self.volume
        return fleet, float(rng.uniform(low, high)) if high > low else low


def load_overrides(base_rate_per_hour: float, fleet_size: int, volume: float) -> dict[str, Any]:
    """The scenario overrides of one load: the fleet size and the base order rate scaled by ``volume``."""
    return {"fleet.size": fleet_size, "orders.rate_per_hour": base_rate_per_hour * volume}


class RandomizedLoad(gym.Wrapper):
    """The dispatch env with every episode's fleet size and order volume drawn from ``ranges``.

    Args:
        env: ``LastMile-Dispatch-v0`` made with ``max_vehicles`` >= the largest fleet size drawn.
        ranges: the fleet sizes and the volume range.

    ``info["load"]`` after a reset says what was drawn: ``{"fleet_size": n, "volume": m}``.
    """

    def __init__(self, env: gym.Env, ranges: LoadRanges) -> None:
        super().__init__(env)
        dispatch = env.unwrapped
        if not isinstance(dispatch, DispatchEnv):
            raise TypeError(f"RandomizedLoad wraps the dispatch env, got {type(dispatch).__name__}")
        slots = dispatch.encoder.max_vehicles
        if slots is None or slots < ranges.max_fleet:
            raise ValueError(
                f"max_vehicles of the env ({slots}) must be at least the largest fleet size drawn "
                f"({ranges.max_fleet})"
            )
        self.ranges = ranges
        self._base_rate = dispatch.config.orders.rate_per_hour
        self._rng: np.random.Generator | None = None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        if seed is not None:
            self._rng = np.random.default_rng([_STREAM, seed])
        elif self._rng is None:  # never seeded: fresh entropy, as gymnasium does for an unseeded reset
            self._rng = np.random.default_rng()
        fleet, volume = self.ranges.draw(self._rng)
        overrides = load_overrides(self._base_rate, fleet, volume)
        obs, info = self.env.reset(seed=seed, options={**(options or {}), "scenario_overrides": overrides})
        info["load"] = {"fleet_size": fleet, "volume": volume}
        return obs, info
