"""The vectorized dispatch env (``DispatchVectorEnv``) and its SB3 adapter: registration, every sub-env's day
identical to the single env's with the same seed (through the autoreset into the next day), truncation,
bad input, and MaskablePPO training on it."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from sb3_contrib import MaskablePPO
from stable_baselines3.common.vec_env import VecMonitor

import lastmile_env  # noqa: F401  (registers the ids)
from lastmile_env.env import DispatchEnv
from lastmile_env.sb3_vec import SB3VecEnv
from lastmile_env.vector_env import DispatchVectorEnv


def test_make_vec_returns_the_vector_env() -> None:
    venv = gym.make_vec(
        "LastMile-Dispatch-v0", num_envs=4, vectorization_mode="vector_entry_point", scenario="small"
    )
    assert isinstance(venv, DispatchVectorEnv)
    assert venv.max_episode_steps == 10_000  # the registered limit
    obs, info = venv.reset(seed=0)
    assert obs in venv.observation_space
    assert obs["vehicles"].shape[0] == 4
    assert info["cost"].shape == (4,) and info["_cost"].all()
    np.testing.assert_array_equal(venv.action_masks(), obs["action_mask"].astype(bool))


@pytest.mark.parametrize("observation", ["dict", "flat"])
def test_every_sub_env_plays_the_single_env_day(observation: str) -> None:
    """Sub-env i of reset(seed=s) is DispatchEnv reset(seed=s + i), then reset() after each day: the same
    observations, rewards and flags, step by step, across the autoreset into the next day."""
    n, seed = 3, 20
    venv = DispatchVectorEnv(num_envs=n, scenario="small", observation=observation)
    singles = [DispatchEnv("small", observation=observation) for _ in range(n)]
    obs, _ = venv.reset(seed=seed)
    single_obs = [env.reset(seed=seed + i)[0] for i, env in enumerate(singles)]
    rngs = [np.random.default_rng(i) for i in range(n)]
    days_done = np.zeros(n, dtype=int)

    def same(batched: object, i: int, single: object) -> None:
        if isinstance(single, dict):
            assert isinstance(batched, dict)
            for key in single:
                np.testing.assert_array_equal(batched[key][i], single[key])
        else:
            np.testing.assert_array_equal(np.asarray(batched)[i], single)

    def same_info(batched: dict[str, np.ndarray], i: int, single: dict[str, object]) -> None:
        """Sub-env i's entries of the vector info are the single env's info: its keys and values, exactly."""
        keys = {key for key in batched if not key.startswith(("_", "final_")) and batched[f"_{key}"][i]}
        assert keys == set(single)
        for key, value in single.items():
            assert batched[key][i] == value and batched[key].dtype == np.asarray(value).dtype, key

    for i in range(n):
        same(obs, i, single_obs[i])
    while days_done.min() < 2:
        masks = venv.action_masks()
        actions = np.array([int(rngs[i].choice(np.flatnonzero(masks[i]))) for i in range(n)])
        obs, rewards, terminated, truncated, info = venv.step(actions)
        assert not truncated.any()
        for i, env in enumerate(singles):
            o, r, term, _, single_info = env.step(actions[i])
            assert rewards[i] == r and terminated[i] == term
            if term:
                assert info["_final_obs"][i]
                final = info["final_obs"][i]
                for key in o if isinstance(o, dict) else [None]:
                    np.testing.assert_array_equal(
                        final if key is None else final[key], o if key is None else o[key]
                    )
                assert info["final_info"]["cost"][i] == env.sim.summary()["cost"]  # type: ignore[union-attr]
                same_info(info["final_info"], i, single_info)
                o, single_info = env.reset()
                days_done[i] += 1
            same(obs, i, o)
            same_info(info, i, single_info)


def test_truncation_after_max_episode_steps() -> None:
    venv = DispatchVectorEnv(num_envs=2, max_episode_steps=5, scenario="small")
    venv.reset(seed=1)
    reject = np.full(2, venv.envs[0].reject_action)
    for _ in range(4):
        _, _, terminated, truncated, info = venv.step(reject)
        assert not truncated.any() and "final_obs" not in info
    _, _, terminated, truncated, info = venv.step(reject)
    assert truncated.all() and not terminated.any() and info["_final_obs"].all()
    assert (venv._elapsed == 0).all()


def test_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match="num_envs"):
        DispatchVectorEnv(num_envs=0, scenario="small")
    with pytest.raises(ValueError, match="max_episode_steps"):
        DispatchVectorEnv(num_envs=1, max_episode_steps=0, scenario="small")
    venv = DispatchVectorEnv(num_envs=2, scenario="small")
    with pytest.raises(ValueError, match="seeds"):
        venv.reset(seed=[1, 2, 3])
    venv.reset(seed=0)
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        venv.step(np.zeros(3, dtype=int))


def test_partial_reset_keeps_the_other_days() -> None:
    venv = DispatchVectorEnv(num_envs=2, scenario="small")
    obs, _ = venv.reset(seed=3)
    obs, *_ = venv.step(np.full(2, venv.envs[0].reject_action))
    again, _ = venv.reset(seed=3, options={"reset_mask": np.array([True, False])})
    fresh, _ = DispatchEnv("small").reset(seed=3)
    np.testing.assert_array_equal(again["order"][0], fresh["order"])
    np.testing.assert_array_equal(again["order"][1], obs["order"][1])


def test_maskable_ppo_trains_on_the_sb3_adapter() -> None:
    venv = SB3VecEnv(DispatchVectorEnv(num_envs=4, scenario="small", observation="flat"))
    venv.seed(7)
    first = venv.reset()
    np.testing.assert_array_equal(
        first,
        SB3VecEnv(DispatchVectorEnv(num_envs=4, scenario="small", observation="flat")).venv.reset(seed=7)[0],
    )
    masks = np.stack(venv.env_method("action_masks"))
    np.testing.assert_array_equal(masks, venv.action_masks())
    model = MaskablePPO("MlpPolicy", VecMonitor(venv), n_steps=64, batch_size=64, n_epochs=1, seed=0)
    model.learn(total_timesteps=4 * 64 * 2)
    assert model.num_timesteps == 4 * 64 * 2
    reject = venv.venv.envs[0].reject_action
    venv.reset()
    ended = False
    while not ended:  # rejecting everything ends the days: SB3's terminal observation and flags
        _, _, dones, infos = venv.step(np.full(4, reject))
        ended = bool(dones.any())
    for i in np.flatnonzero(dones):
        assert infos[i]["terminal_observation"].shape == venv.observation_space.shape
        assert infos[i]["TimeLimit.truncated"] is False


def test_training_config_vector_env_plays_the_same_days(tmp_path) -> None:
    from agents.learned.policy import LearnedPolicy
    from agents.learned.training import load_experiment, make_vec_env, train
    from lastmile_env.config import REPO_ROOT

    smoke = REPO_ROOT / "configs" / "experiment" / "smoke.yaml"
    exp = load_experiment(smoke, ["n_envs=2", "vector_env=true"], total_timesteps=256, **{"eval.every": 128})
    plain = load_experiment(smoke, ["n_envs=2"])
    vector, dummy = make_vec_env(exp.load_scenario(), exp, 5), make_vec_env(plain.load_scenario(), plain, 5)
    first, expected = vector.reset(), dummy.reset()
    for key in expected:
        np.testing.assert_array_equal(first[key], expected[key])
    vector.close()
    dummy.close()
    policy = LearnedPolicy.load(train(exp, tmp_path, progress=False) / "final.zip")
    assert policy.net is not None


def test_vector_env_is_for_the_dispatch_task() -> None:
    from agents.learned.training import load_experiment
    from lastmile_env.config import REPO_ROOT, ConfigError

    with pytest.raises(ConfigError, match="vector_env"):
        load_experiment(
            REPO_ROOT / "configs" / "experiment" / "smoke.yaml", ["task=routing", "vector_env=true"]
        )


@pytest.mark.parametrize(
    ("observation", "max_vehicles"), [("dict", None), ("flat", None), ("flat", 12), ("dict", 12)]
)
def test_batched_action_masks_are_the_sub_envs_masks(observation: str, max_vehicles: int | None) -> None:
    """``action_masks()`` reads the batched observation (the flat one's mask sits before a padded fleet's
    vehicle mask): the same as every sub-env's own ``action_masks()``, step after step, through autoresets."""
    venv = DispatchVectorEnv(num_envs=3, scenario="small", observation=observation, max_vehicles=max_vehicles)
    with pytest.raises(RuntimeError, match="reset"):
        venv.action_masks()
    venv.reset(seed=4)
    rng = np.random.default_rng(0)
    for _ in range(120):
        masks = venv.action_masks()
        assert masks.dtype == np.bool_ and masks.shape == (3, venv.n_actions)
        np.testing.assert_array_equal(masks, np.stack([env.action_masks() for env in venv.envs]))
        venv.step(np.array([rng.choice(np.flatnonzero(m)) for m in masks]))


def test_infos_keep_their_keys_and_types_when_some_days_reset() -> None:
    """A step where one day ends and is reset: that sub-env's info is the new day's reset info (no
    ``invalid_action``: its mask is false and its value False), the others' the step's."""
    venv = DispatchVectorEnv(num_envs=2, max_episode_steps=3, scenario="small")
    venv.reset(seed=0)
    venv.step(np.full(2, venv.envs[0].reject_action))
    venv.reset(seed=9, options={"reset_mask": np.array([True, False])})  # sub-env 0 is now 1 step behind
    venv.step(np.full(2, venv.envs[0].reject_action))
    _, _, _, truncated, info = venv.step(np.full(2, venv.envs[0].reject_action))
    assert truncated.tolist() == [False, True]
    assert info["_invalid_action"].tolist() == [True, False]
    assert info["invalid_action"].dtype == np.bool_ and info["invalid_action"].tolist() == [False, False]
    assert info["_cost"].all() and info["delivered"].dtype == np.int64
    assert info["_final_info"].tolist() == [False, True] and info["final_info"]["_invalid_action"][1]
    assert info["time_min"][1] == venv.envs[1]._info()["time_min"]


def test_first_reset_resets_every_sub_env() -> None:
    venv = DispatchVectorEnv(num_envs=2, scenario="small")
    with pytest.raises(ValueError, match="first reset"):
        venv.reset(seed=0, options={"reset_mask": np.array([True, False])})


def test_sb3_adapter_infos_and_masks_are_the_sub_envs() -> None:
    """SB3's per-env info dicts hold the sub-envs' info values as Python scalars;
    ``env_method("action_masks")`` (MaskablePPO's call) gives each sub-env's mask."""
    venv = SB3VecEnv(DispatchVectorEnv(num_envs=3, scenario="small", observation="flat"))
    venv.seed(2)
    venv.reset()
    rng = np.random.default_rng(1)
    for _ in range(30):
        masks = venv.env_method("action_masks")
        for env, mask in zip(venv.venv.envs, masks, strict=True):
            np.testing.assert_array_equal(mask, env.action_masks())
        assert [m.shape for m in venv.env_method("action_masks", indices=[2])] == [masks[2].shape]
        _, _, _, infos = venv.step(np.array([rng.choice(np.flatnonzero(m)) for m in masks]))
        for env, entry in zip(venv.venv.envs, infos, strict=True):
            expected = {**env._info(), "invalid_action": False}
            assert entry == expected
            assert all(type(entry[key]) is type(value) for key, value in expected.items())


def test_an_invalid_action_is_named_and_counts_only_the_days_stepped() -> None:
    """Under ``invalid_action="raise"`` a sub-env's invalid action raises the single env's error; the
    sub-envs stepped before it count their decision, the others do not."""
    from lastmile_env.env import InvalidActionError

    venv = DispatchVectorEnv(num_envs=3, max_episode_steps=50, scenario="small", invalid_action="raise")
    venv.reset(seed=0)
    reject = venv.envs[0].reject_action
    actions = np.array([reject, venv.n_actions, reject])  # sub-env 1's action is outside the action space
    with pytest.raises(InvalidActionError, match="not valid"):
        venv.step(actions)
    assert venv._elapsed.tolist() == [1, 0, 0]


def test_sb3_infos_are_per_env_python_scalars_and_rows() -> None:
    from lastmile_env.sb3_vec import _unbatch

    info = {
        "cost": np.array([1.5, 2.5]),
        "_cost": np.array([True, True]),
        "orders": np.array([3, 4]),
        "_orders": np.array([False, True]),  # only env 1 reported it
        "xy": np.arange(6.0).reshape(2, 3),
        "_xy": np.array([True, True]),
    }
    out = _unbatch(info, 2)
    assert out[0]["cost"] == 1.5 and type(out[0]["cost"]) is float
    assert "orders" not in out[0] and out[1]["orders"] == 4 and type(out[1]["orders"]) is int
    assert isinstance(out[1]["xy"], np.ndarray) and out[1]["xy"].tolist() == [3.0, 4.0, 5.0]
