"""The routing network (permutation and padding invariance), its policy, and train.py's routing config end to
end (a few hundred steps), then the trained model in evaluate as a dispatch+routing pair."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from agents.base import run_episode
from agents.evaluation import evaluate
from agents.heuristics import make_heuristic
from agents.learned.routing_model import N_RGLOBAL, N_RVEHICLE, N_STOP, PRESENT, RoutingNet
from agents.learned.routing_policy import LearnedRoutingPolicy, is_routing_model
from agents.learned.training import load_experiment
from lastmile_env.config import REPO_ROOT, ConfigError, load_scenario
from lastmile_env.sim import Simulator, world_for

SMOKE = REPO_ROOT / "configs" / "experiment" / "routing_smoke.yaml"


def random_batch(batch: int, k: int, present: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    stops = torch.randn(batch, k, N_STOP, generator=g)
    stops[:, :, PRESENT] = 0.0
    stops[:, :present, PRESENT] = 1.0
    stops[:, present:] = 0.0
    mask = torch.zeros(batch, k + 1)
    mask[:, :present] = 1.0
    mask[:, k] = 1.0
    return (
        stops,
        torch.randn(batch, N_RVEHICLE, generator=g),
        torch.randn(batch, N_RGLOBAL, generator=g),
        mask,
    )


def test_permuting_stops_permutes_logits_and_keeps_wait_and_value():
    torch.manual_seed(0)
    net = RoutingNet(hidden=16, heads=2).eval()
    stops, vehicle, global_, mask = random_batch(3, 6, present=6)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    with torch.no_grad():
        logits, value = net(stops, vehicle, global_, mask)
        logits_p, value_p = net(stops[:, perm], vehicle, global_, torch.cat([mask[:, perm], mask[:, 6:]], 1))
    torch.testing.assert_close(logits_p[:, :6], logits[:, perm], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits_p[:, 6], logits[:, 6], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(value_p, value, atol=1e-5, rtol=1e-5)


def test_padding_slots_change_nothing():
    torch.manual_seed(0)
    net = RoutingNet(hidden=16, heads=2).eval()
    stops, vehicle, global_, mask = random_batch(2, 10, present=4)
    with torch.no_grad():
        logits, value = net(stops, vehicle, global_, mask)
        short, value_short = net(stops[:, :4], vehicle, global_, torch.cat([mask[:, :4], mask[:, 10:]], 1))
    torch.testing.assert_close(short[:, :4], logits[:, :4], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(short[:, 4], logits[:, 10], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(value_short, value, atol=1e-5, rtol=1e-5)
    assert (logits[:, 4:10] < -1e7).all()  # padding is masked


def test_empty_observation_gives_finite_outputs():
    net = RoutingNet(hidden=16, heads=2).eval()
    stops, vehicle, global_, mask = random_batch(1, 5, present=0)
    with torch.no_grad():
        logits, value = net(stops, vehicle, global_, mask)
    assert torch.isfinite(logits).all() and torch.isfinite(value).all()
    assert int(logits.argmax()) == 5


def test_untrained_policy_plays_a_day_with_any_plan_length():
    torch.manual_seed(0)
    router = LearnedRoutingPolicy(RoutingNet(hidden=16, heads=2).eval())
    world = world_for(load_scenario("small"))
    sim = run_episode(
        Simulator(world, 2, routing=True, debug=True), make_heuristic("insertion"), 2, router=router
    )
    s = sim.summary()
    assert s["delivered"] + s["rejected"] == s["orders"]


def test_routing_config_validation():
    with pytest.raises(ConfigError, match="not a routing heuristic"):
        load_experiment(SMOKE, ["eval.baseline=insertion"])
    with pytest.raises(ConfigError, match="divisible"):
        load_experiment(SMOKE, ["model.hidden=30", "model.heads=4"])
    with pytest.raises(ConfigError, match="unknown dispatch rule"):
        load_experiment(SMOKE, ["routing.dispatch=teleport"])
    assert load_experiment(SMOKE).task == "routing"


def test_train_py_routing_config_end_to_end(tmp_path):
    out = subprocess.run(
        [
            *(sys.executable, str(REPO_ROOT / "train.py"), "--no-progress", "--config", str(SMOKE)),
            *("--runs-dir", str(tmp_path), "--total-timesteps", "256"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "eval on 1 days" in out.stdout and "planned" in out.stdout
    (run_dir,) = list(tmp_path.iterdir())
    assert run_dir.name.startswith("routing__small__maskable_ppo__0__")
    final = run_dir / "final.zip"
    assert is_routing_model(final)
    router = LearnedRoutingPolicy.load(final)
    assert router.net.hidden == 32 and router.net.heads == 2
    result = evaluate(
        "small",
        ["insertion+planned", f"insertion+{final}"],
        episodes=1,
        seed=3,
        workers=1,
        reference="insertion+planned",
        hindsight_time_limit_s=0.0,
        progress=False,
        route_map=False,
    )
    rows = result.rows
    assert (
        rows[0]["orders"] == rows[1]["orders"]
        and rows[1]["delivered"] + rows[1]["rejected"] == rows[1]["orders"]
    )
    assert np.isfinite(rows[1]["cost"])
