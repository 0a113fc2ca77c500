"""The speed work must not change what the env computes.

A seeded episode of `default` under a seeded random masked policy is pinned to the values the simulator
produced before the whole-fleet kernels (recorded with the per-vehicle insertion search and the per-vehicle
observation loop), and the whole-fleet insertion search is checked against the per-vehicle rule, vehicle by
vehicle, along an episode.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import lastmile_env  # noqa: F401  (registers the env)
from lastmile_env import load_scenario
from lastmile_env.env import DispatchEnv
from lastmile_env.sim import CheapestInsertion, Insertion, Simulator, world_for
from lastmile_env.sim.types import Order


def test_seeded_default_episode_is_pinned() -> None:
    env = gym.make("LastMile-Dispatch-v0", scenario="default")
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    totals = {k: float(np.asarray(v, dtype=np.float64).sum()) for k, v in obs.items()}
    steps, reward, done = 0, 0.0, False
    while not done:
        obs, r, terminated, truncated, _ = env.step(int(rng.choice(np.flatnonzero(obs["action_mask"]))))
        for k, v in obs.items():
            totals[k] += float(np.asarray(v, dtype=np.float64).sum())
        reward += r
        steps += 1
        done = terminated or truncated
    s = env.unwrapped.sim.summary()  # type: ignore[attr-defined]
    assert steps == 433
    assert (s["orders"], s["delivered"], s["on_time"], s["late"], s["rejected"]) == (433, 408, 402, 6, 25)
    assert s["cost"] == pytest.approx(6785.856236061278, rel=1e-12)
    assert s["distance_km"] == pytest.approx(1700.0194446199462, rel=1e-12)
    assert s["eta_abs_error_min"] == pytest.approx(11.515020283151594, rel=1e-12)
    assert reward == pytest.approx(-6785.856236061277, rel=1e-12)
    assert totals["order"] == pytest.approx(2453.550257215975, rel=1e-12)
    assert totals["vehicles"] == pytest.approx(83750.48662756494, rel=1e-12)
    assert totals["global"] == pytest.approx(1212.1694164620712, rel=1e-12)
    assert totals["action_mask"] == 9094.0


class _PerVehicle:
    """The cheapest insertion without its whole-fleet method: the simulator falls back to one call per
    vehicle and the observation to the per-vehicle results."""

    def __init__(self) -> None:
        self.rule = CheapestInsertion()

    def __call__(self, sim: Simulator, vehicle_id: int, order: Order) -> Insertion | None:
        return self.rule(sim, vehicle_id, order)


@pytest.mark.parametrize("scenario", ["small", "hetero_fleet"])
def test_fleet_search_equals_the_per_vehicle_rule(scenario: str) -> None:
    world = world_for(load_scenario(scenario))
    sim = Simulator(world, 3)
    rule = CheapestInsertion()
    rng = np.random.default_rng(3)
    checked = 0
    while (order := sim.advance()) is not None:
        fleet = sim.fleet_insertions()
        for v in range(len(sim.vehicles)):
            assert fleet.insertion(v) == rule(sim, v, order)
            assert fleet.plan_end_min[v] == sim.plan(v).end_min
            checked += 1
        feasible = np.flatnonzero(fleet.feasible)
        sim.assign(int(rng.choice(feasible))) if feasible.size and rng.random() < 0.9 else sim.reject()
    assert checked > 50


def test_observations_equal_with_and_without_the_fleet_kernel() -> None:
    fast = DispatchEnv("small", defer=True)
    slow = DispatchEnv("small", defer=True, insertion=_PerVehicle())
    obs_a, _ = fast.reset(seed=5)
    obs_b, _ = slow.reset(seed=5)
    rng = np.random.default_rng(5)
    done = False
    while not done:
        for key in obs_a:
            np.testing.assert_array_equal(obs_a[key], obs_b[key])
        action = int(rng.choice(np.flatnonzero(obs_a["action_mask"])))
        obs_a, r_a, done, _, _ = fast.step(action)
        obs_b, r_b, _, _, _ = slow.step(action)
        assert r_a == r_b
    for key in obs_a:
        np.testing.assert_array_equal(obs_a[key], obs_b[key])
