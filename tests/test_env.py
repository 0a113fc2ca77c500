"""The Gymnasium dispatch env: API conformance, determinism, paired arrivals, invariants under random play."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import lastmile_env  # noqa: F401  (registers the ids)
from lastmile_env.env import DispatchEnv, InvalidActionError
from lastmile_env.sim import check_invariants


def play(env: gym.Env, seed: int, choose) -> tuple[list, list[float], dict]:
    """Run one episode; ``choose(mask, step) -> action``. Returns actions, rewards and the final info."""
    env.reset(seed=seed)
    actions, rewards, step, done, info = [], [], 0, False, {}
    while not done:
        a = choose(env.unwrapped.action_masks(), step)
        _, r, terminated, truncated, info = env.step(a)
        actions.append(a)
        rewards.append(r)
        step += 1
        done = terminated or truncated
    return actions, rewards, info


def random_choice(seed: int):
    rng = np.random.default_rng(seed)
    return lambda mask, step: int(rng.choice(np.flatnonzero(mask)))


def test_make_by_name_and_by_path():
    env = gym.make("LastMile-Dispatch-v0", scenario="small")
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert set(info) >= {"on_time_rate", "cost"}
    path_env = gym.make("LastMile-Dispatch-v0", scenario="configs/scenario/small.yaml")
    obs2, _ = path_env.reset(seed=0)
    for key in obs:
        np.testing.assert_array_equal(obs[key], obs2[key])


@pytest.mark.parametrize("observation", ["dict", "flat"])
def test_gymnasium_check_env(observation):
    env = gym.make("LastMile-Dispatch-v0", scenario="small", observation=observation)
    gym_check_env(env.unwrapped, skip_render_check=True)


@pytest.mark.parametrize("observation", ["dict", "flat"])
def test_sb3_check_env(observation):
    sb3_check_env(DispatchEnv("small", observation=observation), warn=True)


def test_same_seed_same_trajectory():
    runs = []
    for _ in range(2):
        env = gym.make("LastMile-Dispatch-v0", scenario="small")
        actions, rewards, info = play(env, seed=3, choose=random_choice(11))
        runs.append((actions, rewards, info, [e for e in env.unwrapped.sim.events]))
    assert runs[0] == runs[1]


def test_policy_does_not_change_arrivals():
    """Separate RNG streams: the orders of a seed are the same whatever the agent does."""
    streams = []
    for choose in (random_choice(1), random_choice(2), lambda mask, step: len(mask) - 1):
        env = gym.make("LastMile-Dispatch-v0", scenario="small")
        play(env, seed=5, choose=choose)
        sim = env.unwrapped.sim
        streams.append([(o.arrival_min, o.loc, o.size, o.ready_min, o.due_min) for o in sim.orders])
    assert streams[0] == streams[1] == streams[2]


def test_rewards_sum_to_minus_final_cost():
    env = gym.make("LastMile-Dispatch-v0", scenario="small")
    _, rewards, info = play(env, seed=0, choose=random_choice(0))
    summary = env.unwrapped.sim.summary()
    assert sum(rewards) == pytest.approx(-summary["cost"], rel=1e-9)
    assert info["cost"] == pytest.approx(summary["cost"])
    assert summary["delivered"] + summary["rejected"] == summary["orders"]


def test_episode_terminates_with_everything_delivered():
    env = gym.make("LastMile-Dispatch-v0", scenario="small")
    obs, _ = env.reset(seed=1)
    done, terminated = False, False
    while not done:
        obs, _, terminated, truncated, _ = env.step(int(np.flatnonzero(obs["action_mask"])[0]))
        done = terminated or truncated
    assert terminated
    sim = env.unwrapped.sim
    assert all(v.idle and v.node == v.home for v in sim.vehicles)
    assert obs["action_mask"].tolist() == [0] * len(sim.vehicles) + [1]  # terminal: only reject


def test_step_cap_truncates():
    env = gym.make("LastMile-Dispatch-v0", scenario="small", max_episode_steps=3)
    env.reset(seed=0)
    results = [env.step(env.unwrapped.reject_action) for _ in range(3)]
    assert [r[3] for r in results] == [False, False, True]


# Drones whose battery reaches no address: every order's only valid action is reject.
NO_VEHICLE_REACHES = {"fleet.types": [{"mode": "drone", "speed_kmh": 60, "range_km": 0.01}]}


def test_invalid_action_is_penalized_by_default_or_raises():
    lenient = DispatchEnv("small", overrides=NO_VEHICLE_REACHES)
    lenient.reset(seed=0)
    _, reward, _, _, info = lenient.step(0)  # the default: a rejection, penalty 0
    assert info["invalid_action"] and reward == pytest.approx(-lenient.config.costs.reject_penalty)
    env = DispatchEnv("small", overrides=NO_VEHICLE_REACHES, invalid_action="raise")
    env.reset(seed=0)
    assert env.action_masks().tolist() == [False] * env.world.n_vehicles + [True]
    with pytest.raises(InvalidActionError, match="valid actions are"):
        env.step(0)
    with pytest.raises(InvalidActionError):
        env.step(99)
    penalized = DispatchEnv(
        "small",
        overrides=NO_VEHICLE_REACHES,
        invalid_action="penalize",
        invalid_action_penalty=5.0,
    )
    penalized.reset(seed=0)
    _, reward, _, _, info = penalized.step(0)
    assert info["invalid_action"] and reward == pytest.approx(-penalized.config.costs.reject_penalty - 5.0)


def test_on_time_reward_counts_outcomes():
    env = gym.make("LastMile-Dispatch-v0", scenario="small", reward="on_time")
    _, rewards, _ = play(env, seed=2, choose=random_choice(2))
    s = env.unwrapped.sim.summary()
    assert sum(rewards) == s["on_time"] - s["late"] - s["rejected"]


def test_bad_env_arguments():
    with pytest.raises(ValueError, match="observation"):
        DispatchEnv("small", observation="image")
    with pytest.raises(ValueError, match="invalid_action must be 'raise' or 'penalize', got 'ignore'"):
        DispatchEnv("small", invalid_action="ignore")
    with pytest.raises(ValueError, match="unknown reward"):
        DispatchEnv("small", reward="profit")
    with pytest.raises(RuntimeError, match="reset"):
        DispatchEnv("small").step(0)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    policy_seed=st.integers(0, 10_000),
    reject_share=st.floats(0, 0.5),
    fleet=st.integers(1, 4),
    capacity=st.integers(3, 12),
)
def test_invariants_hold_under_random_masked_play(seed, policy_seed, reject_share, fleet, capacity):
    env = DispatchEnv(
        "small",
        overrides={"fleet.size": fleet, "fleet.types": [{"capacity": capacity}], "orders.rate_per_hour": 12},
        debug=True,  # check_invariants after every decision and event batch
    )
    rng = np.random.default_rng(policy_seed)
    env.reset(seed=seed)
    done, last_time = False, 0.0
    while not done:
        mask = env.action_masks()
        reject = rng.uniform() < reject_share
        action = env.reject_action if reject else int(rng.choice(np.flatnonzero(mask)))
        _, _, terminated, truncated, info = env.step(action)
        assert info["time_min"] >= last_time
        last_time = info["time_min"]
        done = terminated or truncated
    sim = env.sim
    check_invariants(sim)
    assert sim.done
    assert all(o.status.name in ("DELIVERED", "REJECTED") for o in sim.orders)
    assert sim.expected_cost == pytest.approx(sim.cost().total)


def test_defer_action():
    env = DispatchEnv("small", defer=True, invalid_action="raise")
    gym_check_env(env, skip_render_check=True)
    obs, _ = env.reset(seed=4)
    n = env.world.n_vehicles
    assert env.action_space.n == n + 2 and env.defer_action == n + 1
    assert obs["action_mask"][n + 1] == 1
    first = env.sim.current.id
    obs, reward, *_ = env.step(env.defer_action)
    assert reward == 0.0 and [o.id for o in env.sim.deferred] == [first]
    assert obs["global"][-1] > 0  # deferred orders show in the observation
    # Keep deferring until the order can wait no longer: then its defer action is masked.
    seen_masked = False
    for _ in range(200):
        mask = env.action_masks()
        if env.sim.current.id == first and not mask[n + 1]:
            seen_masked = True
            break
        action = env.defer_action if mask[n + 1] else int(np.flatnonzero(mask)[0])
        env.step(action)
    assert seen_masked
    with pytest.raises(InvalidActionError, match="defer"):
        env.step(env.defer_action)


def test_observations_are_fresh_arrays():
    """Every observation is new arrays: one returned never changes later, and writing into it (users and
    SB3 keep observations) changes no later one, padded vehicle slots included."""
    env = DispatchEnv("small", max_vehicles=9)
    obs, _ = env.reset(seed=2)
    kept = []
    for _ in range(40):
        kept.append((obs, {key: value.copy() for key, value in obs.items()}))
        for value in obs.values():
            value[...] = 7  # a user scribbling over what it was given
        obs, _, terminated, truncated, _ = env.step(int(np.flatnonzero(env.action_masks())[0]))
        assert not np.any(obs["vehicles"][env.world.n_vehicles :])  # padded slots: zeros
        assert obs["vehicle_mask"].tolist() == [1] * env.world.n_vehicles + [0] * (9 - env.world.n_vehicles)
        assert not (terminated or truncated)
        ids = {id(value) for value in obs.values()}
        assert not ids & {id(value) for earlier, _ in kept for value in earlier.values()}
    for returned, _ in kept:
        assert all(np.all(value == 7) for value in returned.values())
    fresh = DispatchEnv("small", max_vehicles=9)
    first, _ = fresh.reset(seed=2)
    assert all(np.array_equal(first[key], kept[0][1][key]) for key in first)


@pytest.mark.parametrize("kwargs", [{"defer": True}, {"max_vehicles": 8}, {}])
def test_valid_agrees_with_the_mask(kwargs):
    """``encoder.valid(sim, a)`` is ``mask[a]`` for every action, out of range ones included, at every
    decision and after the last one."""
    env = DispatchEnv("small", **kwargs)
    obs, _ = env.reset(seed=6)
    rng = np.random.default_rng(0)
    actions = range(-2, env.encoder.n_actions + 2)
    done = False
    while not done:
        mask = obs["action_mask"]
        sim = env.sim
        assert [env.encoder.valid(sim, a) for a in actions] == [
            0 <= a < len(mask) and bool(mask[a]) for a in actions
        ]
        obs, _, terminated, truncated, _ = env.step(int(rng.choice(np.flatnonzero(mask))))
        done = terminated or truncated
    assert [env.encoder.valid(env.sim, a) for a in actions] == [a == env.reject_action for a in actions]


@pytest.mark.parametrize("scenario", ["small", "realistic"])
def test_open_and_waiting_counts_follow_the_orders(scenario):
    """``n_open``: accepted orders neither delivered nor failed; ``n_waiting``: orders deferred or in a tick
    batch besides the current one (random play with deferrals; ``realistic`` has failed attempts)."""
    from lastmile_env.sim.types import OrderStatus

    env = DispatchEnv(scenario, defer=True)
    obs, _ = env.reset(seed=1)
    rng = np.random.default_rng(3)
    done, waited = False, 0
    while not done:
        sim = env.sim
        statuses = [o.status for o in sim.orders[: sim.n_arrived]]
        assert sim.n_open == sum(s in (OrderStatus.ASSIGNED, OrderStatus.ON_BOARD) for s in statuses)
        assert sim.n_waiting == len(sim.pending) - (sim.current is not None) + len(sim.deferred)
        waited += sim.n_waiting
        obs, _, terminated, truncated, _ = env.step(int(rng.choice(np.flatnonzero(obs["action_mask"]))))
        done = terminated or truncated
    assert env.sim.n_open == 0 and waited > 0
