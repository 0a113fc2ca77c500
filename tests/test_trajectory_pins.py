"""Golden trajectories: seeded episodes hashed bit for bit, recorded before the speed work of issue 17.

Each case plays one seeded day and hashes everything the simulator decided and computed: the event log, the
legs driven (with their exact times), every order's outcome and promised ETA, the summary and the expected
cost (floats by ``repr``, which round-trips exactly). The env cases hash every observation array's bytes,
reward, flag and info. A speed change that alters one bit of one decision, cost or observation fails here.

The digests were generated from commit c761429 (before any change of issue 17). If a change is meant to
alter trajectories (a new event kind, a model change), regenerate them with
``PYTHONPATH=. python tests/test_trajectory_pins.py`` and say so in the commit.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import lastmile_env  # noqa: F401  (registers the ids)
from agents.base import run_episode
from agents.heuristics import make_heuristic
from lastmile_env import load_scenario
from lastmile_env.sim import Simulator, world_for
from lastmile_env.sim.world import World

_WORLDS: dict[str, World] = {}


def _world(scenario: str) -> World:
    if scenario not in _WORLDS:
        _WORLDS[scenario] = world_for(load_scenario(scenario))
    return _WORLDS[scenario]


class _Digest:
    """A SHA-256 over a stream of values, floats by ``repr`` (exact), arrays by dtype, shape and bytes."""

    def __init__(self) -> None:
        self._h = hashlib.sha256()

    def add(self, value: Any) -> None:
        if isinstance(value, np.ndarray):
            self._h.update(f"{value.dtype}{value.shape}".encode())
            self._h.update(np.ascontiguousarray(value).tobytes())
        elif isinstance(value, dict):
            for key in sorted(value):
                self.add(key)
                self.add(value[key])
        elif isinstance(value, (list, tuple)):
            self._h.update(b"[")
            for item in value:
                self.add(item)
            self._h.update(b"]")
        else:
            self._h.update(repr(value).encode() + b";")

    def hexdigest(self) -> str:
        return self._h.hexdigest()[:16]


def _sim_digest(sim: Simulator) -> str:
    d = _Digest()
    d.add([tuple(e) for e in sim.events])
    d.add(sim.legs)
    d.add(
        [
            (
                int(o.status),
                o.vehicle,
                o.decided_min,
                o.promised_eta_min,
                o.pickup_min,
                o.delivered_min,
                o.attempts,
                o.loc,
            )
            for o in sim.orders
        ]
    )
    d.add([(v.node, v.dist_km, v.duty_min, v.free_min) for v in sim.vehicles])
    d.add(sim.summary())
    d.add(sim.expected_cost)
    return d.hexdigest()


def _policy_episode(scenario: str, policy: str, seed: int) -> str:
    params: dict[str, Any] = {"max_iterations": 200, "interval_min": 60.0} if policy == "reopt" else {}
    sim = Simulator(_world(scenario), seed)
    return _sim_digest(run_episode(sim, make_heuristic(policy, **params), seed=seed))


def _env_episode(env_id: str, scenario: str, seed: int, **kwargs: Any) -> str:
    """A whole day of a random masked policy through the registered env; every step's output hashed."""
    env = gym.make(env_id, scenario=scenario, **kwargs)
    rng = np.random.default_rng(seed)
    obs, info = env.reset(seed=seed)
    d = _Digest()
    d.add(obs)
    d.add(info)
    done = False
    while not done:
        mask = env.unwrapped.action_masks()  # type: ignore[attr-defined]
        d.add(mask)
        obs, reward, terminated, truncated, info = env.step(int(rng.choice(np.flatnonzero(mask))))
        d.add((obs, reward, terminated, truncated, info))
        done = terminated or truncated
    d.add(_sim_digest(env.unwrapped.sim))  # type: ignore[attr-defined]
    return d.hexdigest()


CASES: dict[str, Callable[[], str]] = {
    **{
        f"{scenario}-{policy}-{seed}": (
            lambda scenario=scenario, policy=policy, seed=seed: _policy_episode(scenario, policy, seed)
        )
        for scenario in ("small", "default", "realistic", "hetero_fleet")
        # insertion_myopic: the insertion rule these pins were made with (``insertion`` now rejects for a
        # reason, an intended change of decisions, not of the simulator)
        for policy in ("insertion_myopic", "nearest", "regret", "random")
        for seed in (0, 7)
    },
    **{
        f"{scenario}-reopt-{seed}": (
            lambda scenario=scenario, seed=seed: _policy_episode(scenario, "reopt", seed)
        )
        for scenario in ("small", "hetero_fleet")
        for seed in (0,)
    },
    "env-dispatch-default-0": lambda: _env_episode("LastMile-Dispatch-v0", "default", 0),
    "env-dispatch-small-defer-3": lambda: _env_episode(
        "LastMile-Dispatch-v0", "small", 3, defer=True, observation="flat"
    ),
    "env-dispatch-hetero_fleet-1": lambda: _env_episode("LastMile-Dispatch-v0", "hetero_fleet", 1),
    "env-routing-small-2": lambda: _env_episode("LastMile-Routing-v0", "small", 2),
}

PINNED: dict[str, str] = {
    "default-insertion_myopic-0": "ba10f8d5803d31d2",
    "default-insertion_myopic-7": "5225d998b91d71e8",
    "default-nearest-0": "67ec6208e1bbfac7",
    "default-nearest-7": "ce0eda25e4f236f1",
    "default-random-0": "73aac17b960b7d79",
    "default-random-7": "d8ffe2a990969b60",
    "default-regret-0": "dc933127854bdc0f",
    "default-regret-7": "aa1d93b4092cd3e3",
    "env-dispatch-default-0": "da5640bb8e4d8d18",
    "env-dispatch-hetero_fleet-1": "b87d743e5707ad91",
    "env-dispatch-small-defer-3": "1078e479bc5ab704",
    "env-routing-small-2": "65494ecc4fefe1e5",
    "hetero_fleet-insertion_myopic-0": "161167161fb9a46d",
    "hetero_fleet-insertion_myopic-7": "c705ae48be4ffe9c",
    "hetero_fleet-nearest-0": "76644acfd5aebe60",
    "hetero_fleet-nearest-7": "3473bc9df8c8c4a0",
    "hetero_fleet-random-0": "33b19e01fbd091b1",
    "hetero_fleet-random-7": "70b6281f1849adec",
    "hetero_fleet-regret-0": "3f22687592c29754",
    "hetero_fleet-regret-7": "3a16303f2f052b04",
    "hetero_fleet-reopt-0": "46f8ffc079b7dfd2",
    "realistic-insertion_myopic-0": "0b5f5aec95baaa9a",
    "realistic-insertion_myopic-7": "fd7b9db5d694af07",
    "realistic-nearest-0": "fbfa06f9dfb2681d",
    "realistic-nearest-7": "c77e2a931f15df0e",
    "realistic-random-0": "2ba02235af05969b",
    "realistic-random-7": "e57065780e9ec337",
    "realistic-regret-0": "9d0a4717fa2219be",
    "realistic-regret-7": "f62dc9973930bbd5",
    "small-insertion_myopic-0": "552a30ecb524c2c5",
    "small-insertion_myopic-7": "9ee5341bc5b65e7f",
    "small-nearest-0": "a7a86e7bf0c0bd78",
    "small-nearest-7": "97680840402008e8",
    "small-random-0": "f6eceec9fdbee5ea",
    "small-random-7": "12e2133265c24c4a",
    "small-regret-0": "deb8905ea4be4fe6",
    "small-regret-7": "715aa8278d310ec2",
    "small-reopt-0": "903e7074a15006c2",  # re-pinned: reopt rejects for a reason (issue 15)
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_trajectory_is_pinned(case: str) -> None:
    assert CASES[case]() == PINNED[case], f"{case}: the seeded trajectory changed"


if __name__ == "__main__":  # regenerate: print the PINNED dict
    names = sys.argv[1:] or sorted(CASES)
    print("PINNED: dict[str, str] = {")
    for name in names:
        print(f'    "{name}": "{CASES[name]()}",', flush=True)
    print("}")
