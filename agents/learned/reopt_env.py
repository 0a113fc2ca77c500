"""Training a dispatcher that works with re-optimization: the dispatch env with PyVRP inside its loop.

``ReoptimizingEnv`` wraps ``LastMile-Dispatch-v0``: whenever sim time reaches the next multiple of the
interval, ``ReoptPolicy.reoptimize`` re-plans every stop that has not started (exactly as ``reopt`` and
``learned+reopt`` do in evaluation) before the network sees the next order, so the network learns on the
plans it will face when it is played as ``model.zip+reopt``. The re-optimization's saving happens between
two steps and is in neither step's reward: a step's reward stays the consequence of its action.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np

from agents.heuristics.reopt import ReoptPolicy
from lastmile_env.env import DispatchEnv


class ReoptimizingEnv(gym.Wrapper):
    """``LastMile-Dispatch-v0`` with ``reopt``'s periodic re-optimization between decisions.

    Args:
        env: a dispatch env (``gym.make("LastMile-Dispatch-v0", ...)``).
        reopt: the re-optimizer (its interval and PyVRP budget); its own dispatch rule is not used.
    """

    def __init__(self, env: gym.Env, reopt: ReoptPolicy) -> None:
        super().__init__(env)
        if not isinstance(env.unwrapped, DispatchEnv):
            raise TypeError(f"ReoptimizingEnv wraps the dispatch env, got {type(env.unwrapped).__name__}")
        self.reopt = reopt
        self._next_min = math.inf

    @property
    def dispatch_env(self) -> DispatchEnv:
        env = self.env.unwrapped
        assert isinstance(env, DispatchEnv)
        return env

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self.reopt.reset(kwargs.get("seed"))
        self._next_min = self.reopt.interval_min
        return self._replanned(obs), info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        if not terminated:
            obs = self._replanned(obs)
        return obs, float(reward), terminated, truncated, info

    def action_masks(self) -> np.ndarray:
        return self.dispatch_env.action_masks()

    def _replanned(self, obs: Any) -> Any:
        """Re-optimize when the interval is due (as ``ReoptPolicy.act`` does); the observation of the
        re-planned state, or ``obs`` when nothing changed."""
        env = self.dispatch_env
        sim = env.sim
        if sim is None or sim.current is None or sim.now < self._next_min - 1e-9:
            return obs
        changed = self.reopt.reoptimize(sim)
        self._next_min = (math.floor(sim.now / self.reopt.interval_min + 1e-9) + 1) * self.reopt.interval_min
        return env.encoder.encode(sim) if changed else obs
