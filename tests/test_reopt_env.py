"""The dispatch env with re-optimization in its loop (training a dispatcher for ``model.zip+reopt``)."""

from __future__ import annotations

import itertools
import math

import gymnasium as gym
import numpy as np
import pytest

import lastmile_env  # noqa: F401  (registers the envs)
from agents.heuristics.reopt import ReoptPolicy
from agents.learned.reopt_env import ReoptimizingEnv
from agents.learned.training import load_experiment
from lastmile_env.config import REPO_ROOT, ConfigError


def play(seed: int) -> tuple[list[float], ReoptimizingEnv]:
    env = ReoptimizingEnv(gym.make("LastMile-Dispatch-v0", scenario="small"), ReoptPolicy(max_iterations=5))
    obs, _ = env.reset(seed=seed)
    rewards, done = [], False
    while not done:
        mask = env.action_masks()
        obs, reward, done, _, _ = env.step(int(np.flatnonzero(mask)[0]))
        rewards.append(reward)
        if not done:  # the agent sees the plans as they stand, re-optimized or not
            fresh = env.dispatch_env.encoder.encode(env.dispatch_env.sim)
            assert all(np.array_equal(obs[k], fresh[k]) for k in fresh)
    return rewards, env


def test_reoptimizes_between_decisions_every_interval_and_is_seeded():
    rewards, env = play(4)
    records = env.reopt.records
    assert len(records) >= 3 and any(r.applied for r in records)
    times = [r.time_min for r in records]
    slots = [math.floor(t / env.reopt.interval_min + 1e-9) for t in times]  # at most once per interval
    assert slots[0] >= 1 and all(a < b for a, b in itertools.pairwise(slots)), times
    assert play(4)[0] == rewards


def test_only_wraps_the_dispatch_env():
    with pytest.raises(TypeError, match="wraps the dispatch env"):
        ReoptimizingEnv(gym.make("CartPole-v1"), ReoptPolicy())


def test_reopt_training_is_for_the_dispatch_task():
    config = REPO_ROOT / "configs" / "experiment" / "routing_smoke.yaml"
    with pytest.raises(ConfigError, match="task must be dispatch"):
        load_experiment(config, ["reopt.enabled=true"])
    exp = load_experiment(REPO_ROOT / "configs" / "experiment" / "smoke.yaml", ["reopt.enabled=true"])
    assert exp.reopt.policy().budget.max_iterations == exp.reopt.iterations
