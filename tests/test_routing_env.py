"""LastMile-Routing-v0: API conformance, determinism, rewards, invariants under random masked play, and
dispatch+routing pairs in evaluate."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import lastmile_env  # noqa: F401  (registers the ids)
from agents.base import dispatch_rule
from agents.evaluation import EvaluationError, evaluate
from lastmile_env.env import InvalidActionError
from lastmile_env.routing_env import STOP_FEATURES, RoutingEnv
from lastmile_env.sim import check_invariants


def play(env: gym.Env, seed: int, policy_seed: int) -> tuple[list[int], list[float], list, dict]:
    rng = np.random.default_rng(policy_seed)
    obs, _ = env.reset(seed=seed)
    actions, rewards, observations, done, info = [], [], [obs], False, {}
    while not done:
        a = int(rng.choice(np.flatnonzero(env.unwrapped.action_masks())))
        obs, r, terminated, truncated, info = env.step(a)
        actions.append(a)
        rewards.append(r)
        observations.append(obs)
        done = terminated or truncated
    return actions, rewards, observations, info


@pytest.mark.parametrize("observation", ["dict", "flat"])
def test_gymnasium_check_env(observation):
    env = gym.make(
        "LastMile-Routing-v0", scenario="small", observation=observation, invalid_action="penalize"
    )
    gym_check_env(env.unwrapped, skip_render_check=True)


@pytest.mark.parametrize("observation", ["dict", "flat"])
def test_sb3_check_env(observation):
    sb3_check_env(RoutingEnv("small", observation=observation, invalid_action="penalize"), warn=False)


def test_same_seed_same_trajectory():
    runs = [play(gym.make("LastMile-Routing-v0", scenario="small"), seed=4, policy_seed=1) for _ in range(2)]
    assert runs[0][0] == runs[1][0] and runs[0][1] == runs[1][1]
    for a, b in zip(runs[0][2], runs[1][2], strict=True):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    other = play(gym.make("LastMile-Routing-v0", scenario="small"), seed=5, policy_seed=1)
    assert other[1] != runs[0][1]


@pytest.mark.parametrize("dispatch", ["insertion", "random"])
@pytest.mark.parametrize("seed", [0, 1])
def test_rewards_sum_to_minus_cost_and_every_order_is_settled(dispatch, seed):
    rule = dispatch_rule(dispatch)
    env = gym.make("LastMile-Routing-v0", scenario="small", dispatch=rule, reward_scale=10.0)
    _, rewards, observations, info = play(env, seed, policy_seed=seed)
    sim = env.unwrapped.sim
    assert sim.done
    assert sum(rewards) == pytest.approx(-info["cost"] / 10.0)
    s = sim.summary()
    assert s["delivered"] + s["rejected"] == s["orders"] == info["orders"]
    assert info["on_board"] == 0
    assert observations[-1]["action_mask"].tolist() == [0] * env.unwrapped.wait_action + [1]


@pytest.mark.parametrize("seed", [0, 3])
@pytest.mark.parametrize("capacity", [4, 10])
def test_invariants_hold_under_random_masked_actions(seed, capacity):
    env = RoutingEnv(
        "small",
        overrides={"fleet.types": [{"capacity": capacity}]},
        max_stops=4,
        skip_forced=False,
        debug=True,
    )
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    done, waits = False, 0
    while not done:
        mask = env.action_masks()
        assert mask.any()
        a = int(rng.choice(np.flatnonzero(mask)))
        waits += a == env.wait_action
        _, _, terminated, truncated, _ = env.step(a)
        done = terminated or truncated
        check_invariants(env.sim)
    assert waits > 0 and env.forced_decisions == 0


def test_observation_marks_the_plan_and_the_valid_stops():
    env = RoutingEnv("small")
    obs, info = env.reset(seed=0)
    assert isinstance(obs, dict) and info["vehicle"] >= 0
    route = env.sim.vehicles[info["vehicle"]].route
    stops = obs["stops"]
    col = {name: i for i, name in enumerate(STOP_FEATURES)}
    n = min(len(route), env.encoder.max_stops)
    assert stops[:n, col["present"]].tolist() == [1.0] * n
    assert not stops[n:].any()
    assert stops[:, col["valid"]].tolist() == obs["action_mask"][:-1].astype(float).tolist()
    assert stops[0, col["is_first"]] == 1.0 and not stops[1:, col["is_first"]].any()
    assert obs["action_mask"].sum() >= 2  # forced decisions are skipped by default


def test_invalid_action_raises_or_is_penalized():
    env = RoutingEnv("small")
    env.reset(seed=0)
    invalid = int(np.flatnonzero(~env.action_masks())[0])
    _, _, _, _, info = env.step(invalid)  # the default: penalized (by 0), the first valid action played
    assert info["invalid_action"]
    strict = RoutingEnv("small", invalid_action="raise")
    strict.reset(seed=0)
    with pytest.raises(InvalidActionError, match="not valid"):
        strict.step(invalid)
    lenient = RoutingEnv("small", invalid_action="penalize", invalid_action_penalty=5.0)
    lenient.reset(seed=0)
    _, _, _, _, info = lenient.step(invalid)
    assert info["invalid_action"]


def test_bad_arguments():
    with pytest.raises(ValueError, match="observation"):
        RoutingEnv("small", observation="image")
    with pytest.raises(ValueError, match="invalid_action must be 'raise' or 'penalize', got 'ignore'"):
        RoutingEnv("small", invalid_action="ignore")
    with pytest.raises(ValueError, match="unknown policy"):
        dispatch_rule("teleport")
    with pytest.raises(ValueError, match=r"dispatch must be a dispatch rule.*dispatch_rule\('insertion'\)"):
        RoutingEnv("small", dispatch="insertion")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_stops"):
        RoutingEnv("small", max_stops=0)


def test_evaluate_plays_dispatch_routing_pairs_on_paired_days():
    policies = ["insertion+planned", "insertion+nearest_next", "insertion+greedy"]
    result = evaluate(
        "small",
        policies,
        episodes=2,
        seed=7,
        workers=1,
        reference="insertion+planned",
        hindsight_time_limit_s=0.0,
        progress=False,
        route_map=False,
    )
    rows = {(r["policy"], r["episode"]): r for r in result.rows}
    for k in range(2):
        orders = {rows[(p, k)]["orders"] for p in policies}
        assert len(orders) == 1  # the same day for every pair
        assert all(rows[(p, k)]["seed"] == 7 + k for p in policies)
    assert result.summary["insertion+greedy"]["vs_reference"]["reference"] == "insertion+planned"
    with pytest.raises(EvaluationError, match="unknown routing policy"):
        evaluate("small", ["insertion+teleport"], episodes=1, workers=1, reference=None, progress=False)
