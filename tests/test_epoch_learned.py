"""The learned wave (epoch) policy: one feature encoding shared with the env, prize-collecting wave routing,
the policy's must-go guarantee and determinism, training end to end on truncated EURO Meets NeurIPS 2022
days (never on a final-phase seed), and one-line errors for bad model files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml

import lastmile_env  # noqa: F401  (registers the envs)
import train
from agents.evaluation import EvaluationError
from agents.evaluation.euro2022 import make_wave_policy, play_day
from agents.learned.epoch_policy import EpochNet, LearnedWave, load_epoch_model, save_epoch_model
from agents.learned.epoch_training import Day, go_epochs, load_epoch_config, make_days, truncate
from lastmile_env.config import REPO_ROOT, ConfigError
from lastmile_env.epoch_env import wave_features
from lastmile_env.sim import Simulator, world_for
from lastmile_env.solver_budget import SolverBudget
from lastmile_env.sources import euro2022 as E
from lastmile_env.wave_routing import dispatch_wave, solve_wave

N201 = E.DATA_DIR / "instances" / "ORTEC-VRPTW-ASYM-6a265c9a-d1-n201-k13.txt"
FAST = SolverBudget(max_iterations=50)


def small_day(seed: int = 5, per_epoch: int = 8) -> tuple[E.Instance, E.Requests]:
    inst = E.read_instance(N201)
    return inst, truncate(E.sample_requests(inst, seed), per_epoch)


def tiny_net(seed: int = 0) -> EpochNet:
    torch.manual_seed(seed)
    return EpochNet(hidden=8)


@pytest.mark.parametrize("instance", [None, str(N201)])
def test_the_env_observes_exactly_wave_features(instance: str | None) -> None:
    kwargs = {"instance": instance} if instance else {"scenario": "small"}
    env = gym.make("LastMile-EpochDispatch-v0", max_requests=64, solver_iterations=50, **kwargs)
    obs, _ = env.reset(seed=3)
    for _ in range(2):
        mine = wave_features(env.unwrapped.sim, 64)
        assert obs.keys() == mine.keys()
        for key in obs:
            np.testing.assert_array_equal(obs[key], mine[key])
        assert obs["request_mask"].sum() > 0
        obs, *_ = env.step(np.zeros(64, dtype=np.int8))


def test_prizes_make_orders_optional_and_bad_prizes_are_refused() -> None:
    inst, requests = small_day()
    sim = Simulator(world_for(E.scenario(inst, N201)), 0, generator=E.RequestStream(requests))
    sim.next_decision()
    ids = [o.id for o in sim.pool]
    must = {o.id for o, m in zip(sim.pool, sim.must_dispatch(), strict=True) if m}
    free = [i for i in ids if i not in must]
    assert len(free) >= 2
    routes, unrouted = solve_wave(sim, ids, FAST, prizes={i: 0.0 for i in free})
    routed = {i for _, r in routes for i in r}
    assert must <= routed and set(free) <= set(unrouted)  # a prize of 0 buys no detour
    routes, unrouted = solve_wave(sim, ids, FAST, prizes={i: 1e6 for i in free})
    assert not unrouted  # a prize far above any detour: everything goes
    with pytest.raises(ValueError, match="prizes of orders"):
        solve_wave(sim, ids, FAST, prizes={free[0]: -1.0})
    with pytest.raises(ValueError, match="prizes of orders"):
        solve_wave(sim, free[:1], FAST, prizes={free[1]: 1.0})  # not being routed


@pytest.mark.parametrize("mode", ["prize", "threshold"])
def test_the_learned_policy_sends_every_must_go_request_and_is_deterministic(mode: str) -> None:
    inst, requests = small_day()

    def day() -> tuple[list[list[int]], int]:
        policy = LearnedWave(tiny_net(), mode=mode, budget=FAST)  # type: ignore[arg-type]
        sim = Simulator(world_for(E.scenario(inst, N201)), 0, generator=E.RequestStream(requests))
        choices = []
        while sim.next_decision() is not None:
            chosen = policy.choose(sim)
            must = {o.id for o, m in zip(sim.pool, sim.must_dispatch(), strict=True) if m}
            assert must <= set(chosen) <= {o.id for o in sim.pool}
            choices.append(chosen)
            dispatch_wave(sim, chosen, FAST)
        result = E.validate_day(inst, requests, E.dispatched_routes(sim))
        assert result.valid, result.problems
        return choices, result.cost

    assert day() == day()


def test_labels_come_from_the_hindsight_routes() -> None:
    inst, requests = small_day(per_epoch=6)
    go = go_epochs(Day(inst, str(N201), 5, requests), SolverBudget(max_iterations=200))
    assert (go >= requests.epoch).all()  # a request goes once it has arrived, never before
    _, routes = E.solve_hindsight(inst, requests, SolverBudget(max_iterations=200), seed=1)
    for route in routes:  # a route's requests go together, when its last one arrives
        assert set(go[route]) == {requests.epoch[route].max()}


def write_config(path: Path, **fields: object) -> Path:
    base = {
        "task": "euro2022_epoch",
        "instances": [str(N201.relative_to(REPO_ROOT))],
        "train_seeds": [1, 2],
        "val_seeds": [3],
        "requests_per_epoch": 5,
        "hindsight_iterations": 200,
        "rollout_iterations": 30,
        "solver_iterations": 30,
        "epochs": 3,
        "prize_scales": [0.2],
        "thresholds": [0.5],
        "dagger_rounds": 1,
    }
    path.write_text(yaml.safe_dump({**base, **fields}))
    return path


def train_cli(capsys: pytest.CaptureFixture[str], runs: Path, *args: str) -> tuple[int, str]:
    """``train.py --runs-dir RUNS ...`` in this process: (exit code, stderr)."""
    code = train.main([*args, "--runs-dir", str(runs), "--no-progress"])
    return code, capsys.readouterr().err.strip()


def test_training_runs_end_to_end_and_the_model_plays_a_day(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path / "tiny.yaml")
    code, err = train_cli(capsys, tmp_path / "runs", "--config", str(config))
    assert code == 0, err
    (run,) = (tmp_path / "runs").iterdir()
    assert {"model.pt", "config.yaml", "validation.md", "training.json"} <= {p.name for p in run.iterdir()}
    assert "greedy" in (run / "validation.md").read_text()
    net, settings = load_epoch_model(run / "model.pt")
    assert settings["mode"] in ("prize", "threshold") and settings["info"]["train_days"]
    policy = make_wave_policy(str(run / "model.pt"), FAST)
    inst, requests = small_day(seed=9, per_epoch=5)
    assert play_day(inst, N201, requests, policy, 9).valid
    assert train_cli(capsys, tmp_path / "again", "--config", str(config))[0] == 0
    (run2,) = (tmp_path / "again").iterdir()
    net2, _ = load_epoch_model(run2 / "model.pt")
    for a, b in zip(net.state_dict().values(), net2.state_dict().values(), strict=True):
        assert torch.equal(a, b)  # the same config trains the same weights


def test_training_refuses_final_phase_seeds_and_rl_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = train_cli(
        capsys, tmp_path / "runs", "--config", str(write_config(tmp_path / "c.yaml", val_seeds=[630]))
    )
    assert code == 2 and "630" in err and "final-phase" in err and err.count("\n") == 0
    code, err = train_cli(
        capsys,
        tmp_path / "runs",
        "--config",
        str(write_config(tmp_path / "d.yaml")),
        "--total-timesteps",
        "5",
    )
    assert code == 2 and "--total-timesteps" in err
    with pytest.raises(ConfigError, match="final-phase"):
        cfg = load_epoch_config(write_config(tmp_path / "e.yaml", train_seeds=[630]))
        make_days(cfg, [N201], cfg.train_seeds)
    code, err = train_cli(
        capsys, tmp_path / "runs", "--config", str(write_config(tmp_path / "f.yaml", val_seeds=[1]))
    )
    assert code == 2 and "share" in err
    assert not (tmp_path / "runs").exists()  # refused before any run folder


def test_bad_model_files_fail_in_one_line(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a model")
    with pytest.raises(EvaluationError, match="not an epoch dispatch model"):
        make_wave_policy(str(garbage), FAST)
    with pytest.raises(EvaluationError, match="not found"):
        make_wave_policy(str(tmp_path / "none.pt"), FAST)
    other = tmp_path / "other.pt"
    torch.save({"format": "something else"}, other)
    with pytest.raises(EvaluationError, match="not an epoch dispatch model"):
        make_wave_policy(str(other), FAST)
    wrong = save_epoch_model(tmp_path / "wrong.pt", tiny_net(), "prize", 0.2, 0.5, {})
    payload = torch.load(wrong, weights_only=True)
    payload["request_features"] = ["something"]
    torch.save(payload, wrong)
    with pytest.raises(EvaluationError, match="other wave features"):
        make_wave_policy(str(wrong), FAST)
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "evaluate.py"),
            "--benchmark",
            "euro2022",
            "--policies",
            f"greedy,{garbage}",
            "--out",
            str(tmp_path / "out"),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and "garbage.pt" in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()  # refused before any work


def test_the_shipped_model_plays_a_valid_day() -> None:
    policy = make_wave_policy("learned_epoch", FAST)
    assert policy.name == "learned_epoch"
    inst, requests = small_day(seed=11, per_epoch=10)
    assert play_day(inst, N201, requests, policy, 11).valid


def test_learned_on_wave_days_is_the_manifest_s_wave_policy(monkeypatch, tmp_path) -> None:
    from agents.learned import shipped

    policy = make_wave_policy("learned", FAST)
    assert policy.name == "learned" and type(policy) is type(make_wave_policy("learned_epoch", FAST))
    broken = tmp_path / "learned.yaml"
    broken.write_text("policy: x.zip\nwave_policy: missing/model.pt\n")
    monkeypatch.setattr(shipped, "SHIPPED_FILE", broken)
    with pytest.raises(EvaluationError, match=r"model missing/model.pt not found"):
        make_wave_policy("learned", FAST)


def test_the_learned_wave_policy_takes_margins_and_names_bad_ones() -> None:
    from agents.evaluation.policies import make_learned_epoch, resolve_policy

    policy = make_learned_epoch("learned_epoch:slack=20:safety=10:iterations=25")
    assert isinstance(policy, LearnedWave)
    assert (policy.slack_min, policy.safety_min, policy.budget.max_iterations) == (20.0, 10.0, 25)
    assert policy.name == "learned_epoch:slack=20:safety=10:iterations=25"
    bad = {
        "learned_epoch:slack=-5": "slack_min must be a finite number of minutes >= 0, got -5.0",
        "learned_epoch:safety=nan": "safety_min must be a finite number of minutes >= 0, got nan",
        "learned_epoch:iterations=0": "iterations must be at least 1",
        "learned_epoch:mode=threshold": "bad option 'mode=threshold'",
    }
    for spec, message in bad.items():
        with pytest.raises(EvaluationError, match=message) as info:
            resolve_policy(spec)
        assert "\n" not in str(info.value)


def test_the_learned_wave_policy_with_margins_plays_a_city_day_deterministically() -> None:
    from agents.base import run_episode
    from agents.evaluation.policies import make_learned_epoch
    from lastmile_env.config import load_scenario

    world = world_for(load_scenario("small", {"dispatch.mode": "wave", "dispatch.wave_min": 60}))
    runs = []
    for _ in range(2):
        policy = make_learned_epoch("learned_epoch:slack=20:safety=10:iterations=50")
        sim = run_episode(Simulator(world, 4, debug=True), policy, 4)
        assert sim.done and not sim.pool
        runs.append((sim.summary()["cost"], [(o.vehicle, o.delivered_min) for o in sim.orders]))
    assert runs[0] == runs[1]
