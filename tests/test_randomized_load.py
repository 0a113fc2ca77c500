"""Training across load (issue 15, "robust across load"): the dispatch env padded to a fixed number of
vehicle slots, per-episode randomized fleet size and order volume, and a model that plays any fleet."""

from __future__ import annotations

import json
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import lastmile_env  # noqa: F401  (registers the ids)
from agents.base import run_episode
from agents.heuristics import make_heuristic
from agents.learned.model import DispatchNet
from agents.learned.policy import LearnedPolicy
from agents.learned.training import evaluate, load_experiment
from lastmile_env.config import REPO_ROOT, ConfigError, load_scenario, training_scenario_warning
from lastmile_env.env import DispatchEnv, InvalidActionError
from lastmile_env.randomized_load import LoadRanges, RandomizedLoad
from lastmile_env.sim import Simulator, world_for

SMOKE = REPO_ROOT / "configs" / "experiment" / "smoke.yaml"
ROBUST = REPO_ROOT / "configs" / "experiment" / "dispatch_robust.yaml"


def first_feasible(env: gym.Env) -> int:
    return int(np.flatnonzero(env.unwrapped.action_masks())[0])


# ---------------------------------------------------------------------------------------------------------
# The padded env


@pytest.mark.parametrize("observation", ["dict", "flat"])
def test_checkers_pass_on_the_padded_env(observation):
    gym_check_env(DispatchEnv("small", observation=observation, max_vehicles=6), skip_render_check=True)
    sb3_check_env(DispatchEnv("small", observation=observation, max_vehicles=6), warn=True)


def test_padded_slots_are_masked_and_empty_and_the_day_is_the_same():
    """``small`` has 3 vans; padded to 6, every observation is the unpadded one plus 3 empty, masked slots,
    reject moves to action 6, and the same decisions give the same rewards and the same day."""
    padded, plain = DispatchEnv("small", max_vehicles=6), DispatchEnv("small")
    assert plain.world.n_vehicles == 3 and "vehicle_mask" not in plain.observation_space.spaces
    obs_p, _ = padded.reset(seed=5)
    obs_u, _ = plain.reset(seed=5)
    rng, done, steps = np.random.default_rng(0), False, 0
    while not done:
        assert padded.observation_space.contains(obs_p)
        np.testing.assert_array_equal(obs_p["vehicle_mask"], [1, 1, 1, 0, 0, 0])
        np.testing.assert_array_equal(obs_p["vehicles"][:3], obs_u["vehicles"])
        assert not obs_p["vehicles"][3:].any()
        np.testing.assert_array_equal(obs_p["action_mask"][3:6], 0)  # padded slots: never valid
        np.testing.assert_array_equal(obs_p["action_mask"][[0, 1, 2, 6]], obs_u["action_mask"])
        for key in ("order", "global"):
            np.testing.assert_array_equal(obs_p[key], obs_u[key])
        a = int(rng.choice(np.flatnonzero(obs_u["action_mask"])))  # 3 is reject unpadded
        obs_p, r_p, done, _, info_p = padded.step(6 if a == 3 else a)
        obs_u, r_u, done_u, _, info_u = plain.step(a)
        assert (r_p, done, info_p) == (r_u, done_u, info_u)
        steps += 1
    assert steps > 10 and padded.reject_action == 6


def test_a_padded_slot_is_an_invalid_action():
    strict = DispatchEnv("small", max_vehicles=6, invalid_action="raise")
    strict.reset(seed=1)
    with pytest.raises(InvalidActionError, match="valid actions are"):
        strict.step(4)
    lenient = DispatchEnv("small", max_vehicles=6)
    lenient.reset(seed=1)
    _, _, _, _, info = lenient.step(4)
    assert info["invalid_action"] and info["rejected"] == 1  # played as a rejection


def test_spaces_are_fixed_across_fleet_sizes():
    envs = [DispatchEnv("default", {"fleet.size": n}, max_vehicles=25) for n in (5, 7, 20, 25)]
    for env in envs:
        assert env.observation_space == envs[0].observation_space
        assert env.action_space == envs[0].action_space == gym.spaces.Discrete(26)
        obs, _ = env.reset(seed=0)
        assert env.observation_space.contains(obs)
        assert obs["vehicle_mask"].sum() == env.world.n_vehicles


def test_reset_with_scenario_overrides_plays_that_scenario_for_one_episode():
    env = DispatchEnv("small", max_vehicles=6)
    obs, _ = env.reset(seed=2, options={"scenario_overrides": {"fleet.size": 5}})
    assert len(env.unwrapped.sim.vehicles) == 5 and obs["vehicle_mask"].sum() == 5
    obs, _ = env.reset(seed=2)
    assert len(env.sim.vehicles) == 3 and obs["vehicle_mask"].sum() == 3
    with pytest.raises(ValueError, match="max_vehicles"):
        DispatchEnv("small").reset(seed=0, options={"scenario_overrides": {"fleet.size": 4}})


def test_the_network_gives_padded_and_unpadded_observations_the_same_logits():
    torch.manual_seed(0)
    net = DispatchNet(hidden=16)
    padded, plain = DispatchEnv("small", max_vehicles=7), DispatchEnv("small")
    obs_p, obs_u = padded.reset(seed=3)[0], plain.reset(seed=3)[0]
    for _ in range(20):

        def batch(obs):
            return {k: torch.as_tensor(v, dtype=torch.float32).unsqueeze(0) for k, v in obs.items()}

        (logits_p, value_p), (logits_u, value_u) = (
            net.forward_obs(batch(obs_p)),
            net.forward_obs(batch(obs_u)),
        )
        torch.testing.assert_close(logits_p[0, [0, 1, 2, 7]], logits_u[0])
        torch.testing.assert_close(value_p, value_u)
        assert (logits_p[0, 3:7] < -1e7).all()  # padded slots: masked logits
        a = int(logits_u[0].argmax())
        obs_p = padded.step(7 if a == 3 else a)[0]
        obs_u = plain.step(a)[0]


# ---------------------------------------------------------------------------------------------------------
# Randomized load


def loads(seed: int, n: int) -> list[tuple[int, float, int, float]]:
    """``n`` resets of a randomized-load env seeded once: the drawn load, the fleet and order rate played."""
    env = RandomizedLoad(DispatchEnv("small", max_vehicles=6), LoadRanges((2, 4, 6), (0.5, 2.0)))
    out = []
    for i in range(n):
        _, info = env.reset(seed=seed if i == 0 else None)
        world = env.unwrapped.world
        out.append(
            (
                info["load"]["fleet_size"],
                info["load"]["volume"],
                world.n_vehicles,
                world.config.orders.rate_per_hour,
            )
        )
    return out


def test_the_load_draws_are_seeded():
    base_rate = load_scenario("small").orders.rate_per_hour
    first = loads(7, 6)
    assert first == loads(7, 6)  # the same seed: the same loads, in the same order
    assert first != loads(8, 6)
    for fleet, volume, n_vehicles, rate in first:
        assert fleet in (2, 4, 6) and 0.5 <= volume <= 2.0
        assert n_vehicles == fleet and rate == pytest.approx(base_rate * volume)
    assert len({f for f, *_ in loads(0, 30)}) == 3  # every choice is drawn


def test_a_fixed_volume_draws_no_multiplier():
    env = RandomizedLoad(DispatchEnv("small", max_vehicles=3), LoadRanges((3,), (1.0, 1.0)))
    _, info = env.reset(seed=0)
    assert info["load"] == {"fleet_size": 3, "volume": 1.0}


@pytest.mark.parametrize(
    ("make", "names"),
    [
        (lambda: DispatchEnv("small", max_vehicles=2), "max_vehicles (2) is smaller than the fleet"),
        (lambda: DispatchEnv("small", max_vehicles=2.5), "max_vehicles"),
        (lambda: LoadRanges(()), "fleet_sizes is empty"),
        (lambda: LoadRanges((3, 0)), "fleet_sizes"),
        (lambda: LoadRanges((3,), (-1.0, 1.0)), "volume"),
        (lambda: LoadRanges((3,), (1.5, 1.0)), "volume"),
        (lambda: LoadRanges.of((3,), (1.0,)), "volume"),
        (lambda: RandomizedLoad(DispatchEnv("small"), LoadRanges((3,))), "max_vehicles"),
        (lambda: RandomizedLoad(DispatchEnv("small", max_vehicles=4), LoadRanges((3, 5))), "max_vehicles"),
    ],
)
def test_bad_load_options_name_the_problem(make, names):
    with pytest.raises(ValueError, match=names.replace("(", r"\(").replace(")", r"\)")):
        make()


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (["load.enabled=true", "load.fleet_sizes=[]"], "load.fleet_sizes"),
        (["load.enabled=true", "load.fleet_sizes=[3, 0]"], "load.fleet_sizes"),
        (["load.enabled=true", "load.volume=[-1, 1.2]"], "load.volume"),
        (["load.enabled=true", "load.volume=[1.2]"], "load.volume"),
        (["load.enabled=true", "load.max_vehicles=3", "load.fleet_sizes=[2, 5]"], "load.max_vehicles"),
        (["load.enabled=true", "load.eval_loads=[[0, 1.0]]"], "load.eval_loads"),
        (["load.enabled=true", "vector_env=true", "n_envs=2"], "vector_env"),
    ],
)
def test_bad_load_config_fails_naming_the_field(overrides, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_experiment(SMOKE, overrides)


def test_the_shipped_robust_config_is_valid():
    exp = load_experiment(ROBUST)
    assert exp.load.enabled and exp.load.slots(exp.load_scenario()) == 25


# ---------------------------------------------------------------------------------------------------------
# End to end: train.py with randomized load, then the model on fleets it never had as its own


def test_train_with_randomized_load_end_to_end(tmp_path):
    cmd = [
        sys.executable, str(REPO_ROOT / "train.py"), "--no-progress", "--config", str(SMOKE),
        "--runs-dir", str(tmp_path), "--total-timesteps", "256", "checkpoint_every=128", "eval.every=128",
        "eval.seeds=[10000]", "load.enabled=true", "load.fleet_sizes=[2, 4]", "load.volume=[0.8, 1.5]",
        "load.eval_loads=[[2, 1.0], [4, 1.5]]",
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    assert sum("eval on 1 days x 2 loads" in line for line in out.stdout.splitlines()) == 2
    (run_dir,) = tmp_path.iterdir()
    best = json.loads((run_dir / "best.json").read_text())
    assert best["eval_loads"] == [[2, 1.0], [4, 1.5]] and len(best["relative_cost_per_delivered"]) == 2
    assert best["selection"] == pytest.approx(sum(best["relative_cost_per_delivered"]) / 2)
    policy = LearnedPolicy.load(run_dir / "best.zip")
    # played unpadded (as evaluate.py plays it) on fleets of other sizes, the padded size's included
    for fleet in (1, 4, 9):
        world = world_for(load_scenario("small", {"fleet.size": fleet}))
        summary = run_episode(Simulator(world, 10_000), policy, 10_000).summary()
        assert summary["orders"] > 0 and summary["delivered"] + summary["rejected"] == summary["orders"]
    # best.json describes best.zip: its relative cost at the first evaluation load, played again
    world = world_for(load_scenario("small", {"fleet.size": 2}))
    learned = evaluate(policy, world, [10_000])["cost_per_delivered"]
    baseline = evaluate(make_heuristic("insertion"), world, [10_000])["cost_per_delivered"]
    assert learned / baseline - 1.0 == pytest.approx(best["relative_cost_per_delivered"][0], rel=1e-12)


def test_no_out_of_distribution_warning_within_the_trained_load_range():
    """A model trained across loads meets 5 vans and 1.5x the orders within its ranges: no warning; a fleet
    or a volume outside them, or a model trained on one load, still warns."""
    robust = {"config": load_experiment(ROBUST).model_dump(mode="json")}
    single = {"config": load_experiment(SMOKE, ["scenario=default"]).model_dump(mode="json")}
    for scenario in ("default", "default_5vans", "default_7vans", "default_volume150"):
        assert training_scenario_warning(robust, load_scenario(scenario)) is None
    assert "fleet.size" in str(training_scenario_warning(single, load_scenario("default_5vans")))
    for overrides, field in (
        ({"fleet.size": 30}, "fleet.size"),
        ({"orders.rate_per_hour": 80}, "rate_per_hour"),
    ):
        assert field in str(training_scenario_warning(robust, load_scenario("default", overrides)))
