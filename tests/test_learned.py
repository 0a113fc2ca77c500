"""The dispatch network and LearnedPolicy: permutation invariance, masking, any fleet size, full episodes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from sb3_contrib import MaskablePPO
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv

from agents.base import DEFER, REJECT, Policy, run_episode
from agents.learned.model import (
    N_GLOBAL,
    N_ORDER,
    N_VEHICLE,
    DispatchNet,
    DispatchPolicy,
    MaskableDispatchPolicy,
    dispatch_net,
)
from agents.learned.policy import LearnedPolicy
from lastmile_env.config import load_scenario
from lastmile_env.env import DispatchEnv
from lastmile_env.sim import Simulator, check_invariants, world_for


def random_batch(batch: int, n_vehicles: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    mask = (torch.rand(batch, n_vehicles + 1, generator=g) < 0.6).float()
    mask[:, -1] = 1.0  # reject is always valid
    return (
        torch.randn(batch, N_ORDER, generator=g),
        torch.randn(batch, n_vehicles, N_VEHICLE, generator=g),
        torch.randn(batch, N_GLOBAL, generator=g),
        mask,
    )


def scrambled_net(hidden: int = 16, defer: bool = False) -> DispatchNet:
    """A net with large random weights, so logits differ clearly between vehicles (init outputs are tiny)."""
    torch.manual_seed(0)
    net = DispatchNet(hidden, defer=defer)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 0.5)
    return net


def test_permuting_vehicles_permutes_logits_and_keeps_value():
    net = scrambled_net()
    order, vehicles, global_, mask = random_batch(5, 9)
    perm = torch.randperm(9, generator=torch.Generator().manual_seed(1))
    logits, value = net(order, vehicles, global_, mask)
    p_logits, p_value = net(order, vehicles[:, perm], global_, mask[:, torch.cat([perm, torch.tensor([9])])])
    torch.testing.assert_close(p_logits[:, :9], logits[:, perm])
    torch.testing.assert_close(p_logits[:, 9], logits[:, 9])  # reject
    torch.testing.assert_close(p_value, value)
    assert logits[:, :9][mask[:, :9] > 0].std() > 0.1  # the check is not vacuous


@pytest.mark.parametrize("n_vehicles", [1, 3, 20, 57])
def test_any_fleet_size(n_vehicles):
    logits, value = scrambled_net()(*random_batch(4, n_vehicles))
    assert logits.shape == (4, n_vehicles + 1)
    assert value.shape == (4, 1)


def test_defer_logit_comes_last_and_is_masked():
    order, vehicles, global_, mask = random_batch(6, 4)
    mask = torch.cat([mask, torch.tensor([[1.0], [0.0]] * 3)], dim=1)  # defer valid in every other row
    logits, _ = scrambled_net(defer=True)(order, vehicles, global_, mask)
    assert logits.shape == (6, 6)
    assert (logits[1::2, 5] < -1e7).all() and (logits[::2, 5] > -1e7).all()


def test_masked_actions_get_zero_probability():
    env = DispatchEnv("small")
    order, vehicles, global_, mask = random_batch(64, 3, seed=2)
    obs = {"order": order, "vehicles": vehicles, "global": global_, "action_mask": mask}
    for policy_class in (MaskableDispatchPolicy, DispatchPolicy):
        policy = policy_class(env.observation_space, env.action_space, lambda _: 3e-4)
        with torch.no_grad():
            # PPO / A2C: the mask in the observation alone; MaskablePPO: also the env's action masks
            masks = mask.numpy() if policy_class is MaskableDispatchPolicy else None
            dist = policy.get_distribution(obs, masks) if masks is not None else policy.get_distribution(obs)
            probs = dist.distribution.probs  # type: ignore[union-attr]
        assert float(probs[mask == 0].max()) == 0.0
        torch.testing.assert_close(probs.sum(dim=1), torch.ones(64))
        assert float(probs[mask == 1].min()) > 0.0


@pytest.fixture(scope="module", params=[False, True], ids=["no_defer", "defer"])
def saved_model(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, MaskablePPO]:
    """An (untrained) MaskablePPO dispatch model on the 3-van `small` scenario, saved like a checkpoint;
    with and without the env's defer action."""
    vec_env = DummyVecEnv([lambda: DispatchEnv("small", defer=request.param)])
    model = MaskablePPO(
        MaskableDispatchPolicy, vec_env, policy_kwargs={"features_extractor_kwargs": {"hidden": 24}}, seed=0
    )
    with torch.no_grad():  # a decisive policy: argmax ties would make the comparison below fragile
        dispatch_net(model.policy).load_state_dict(scrambled_net(24, defer=request.param).state_dict())
    path = tmp_path_factory.mktemp("model") / "model.zip"
    model.save(path)
    return path, model


def test_learned_policy_plays_a_full_episode_holding_invariants(saved_model):
    path, model = saved_model
    policy = LearnedPolicy.load(path)
    assert isinstance(policy, Policy) and policy.name == "learned"
    assert policy.net.hidden == 24
    assert policy.net.with_defer == (model.action_space.n == 5)
    world = world_for(load_scenario("small"))
    sim = run_episode(Simulator(world, 3, debug=True), policy, seed=3)  # debug: invariants at every step
    check_invariants(sim)
    s = sim.summary()
    assert sim.done and s["orders"] > 0
    assert s["delivered"] + s["rejected"] == s["orders"]


def test_learned_policy_matches_the_sb3_model(saved_model):
    """Same encoder, same net: LearnedPolicy decides what the trained model's deterministic predict does."""
    path, model = saved_model
    policy = LearnedPolicy.load(path)
    env = DispatchEnv("small", defer=policy.net.with_defer)
    obs, _ = env.reset(seed=5)
    done, decisions = False, set()
    while not done:
        action, _ = model.predict(obs, deterministic=True, action_masks=env.action_masks())
        expected = {env.reject_action: REJECT, env.defer_action: DEFER}.get(int(action), int(action))
        assert env.sim is not None
        assert policy.act(env.sim) == expected
        decisions.add(expected)
        obs, _, done, _, _ = env.step(int(action))
    assert len(decisions) > 1


def test_learned_policy_runs_on_another_fleet_size(saved_model):
    policy = LearnedPolicy.load(saved_model[0])  # trained on 3 vans
    for size in (1, 8):
        world = world_for(load_scenario("small", {"fleet.size": size}))
        sim = run_episode(Simulator(world, 0), policy, seed=0)
        assert sim.done and len(sim.vehicles) == size
        fresh = Simulator(world, 0)
        fresh.advance()
        assert len(policy.logits(fresh)) == size + 1 + policy.net.with_defer


def test_load_rejects_a_model_without_dispatch_net(tmp_path):
    model = PPO("MultiInputPolicy", DummyVecEnv([lambda: DispatchEnv("small")]), n_steps=8, batch_size=8)
    model.save(tmp_path / "mlp.zip")
    with pytest.raises(ValueError, match="DispatchNet"):
        LearnedPolicy.load(tmp_path / "mlp.zip")


def test_argmax_is_deterministic_and_valid():
    policy = LearnedPolicy(scrambled_net())
    world = world_for(load_scenario("small"))
    a = run_episode(Simulator(world, 1), policy).summary()
    b = run_episode(Simulator(world, 1), policy).summary()
    assert (a["cost"], a["rejected"], a["on_time"]) == (b["cost"], b["rejected"], b["on_time"])
