"""Training end to end (library and command line), kill-and-resume, determinism, config validation."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from agents.learned.policy import LearnedPolicy
from agents.learned.training import evaluate, latest_checkpoint, load_experiment, resume, train
from lastmile_env.config import REPO_ROOT, ConfigError
from lastmile_env.sim.world import world_for

SMOKE = REPO_ROOT / "configs" / "experiment" / "smoke.yaml"


def train_cmd(*args: str) -> list[str]:
    return [sys.executable, str(REPO_ROOT / "train.py"), "--no-progress", *args]


def event_files(run_dir: Path) -> list[Path]:
    return sorted(run_dir.glob("events.out.tfevents.*"))


def only_run(runs_dir: Path) -> Path:
    runs = list(runs_dir.iterdir())
    assert len(runs) == 1, runs
    return runs[0]


def test_library_training_writes_checkpoints_events_and_final(tmp_path):
    exp = load_experiment(SMOKE, total_timesteps=256, **{"checkpoint_every": 128, "eval.every": 128})
    run_dir = train(exp, tmp_path, progress=False)
    assert run_dir.name.startswith("small__maskable_ppo__0__")
    assert event_files(run_dir)
    found = latest_checkpoint(run_dir)
    assert found is not None
    zip_path, state = found
    assert state["num_timesteps"] == 256 and zip_path.name == "step_0000000256.zip"
    assert state["config"]["total_timesteps"] == 256
    assert state["tensorboard_dir"] == str(run_dir.resolve())
    assert not list(run_dir.rglob("*.tmp"))
    policy = LearnedPolicy.load(run_dir / "final.zip")
    assert policy.net.hidden == exp.model.hidden
    # best.zip: the evaluated model with the lowest cost on the evaluation days, and best.json says which
    best = json.loads((run_dir / "best.json").read_text())
    assert best["num_timesteps"] in (128, 256) and best["eval_seeds"] == exp.eval.seeds
    again = evaluate(LearnedPolicy.load(run_dir / "best.zip"), world_for(exp.load_scenario()), exp.eval.seeds)
    assert again["cost_per_delivered"] == best["cost_per_delivered"]


def test_command_line_training_with_two_envs(tmp_path):
    out = subprocess.run(
        train_cmd(
            "--config", str(SMOKE), "--runs-dir", str(tmp_path), "--n-envs", "2", "--total-timesteps", "512"
        ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    run_dir = only_run(tmp_path)
    assert event_files(run_dir) and (run_dir / "final.zip").is_file()
    assert sum("eval on 2 days" in line for line in out.stdout.splitlines()) == 2  # one line per eval
    found = latest_checkpoint(run_dir)
    assert found is not None and found[1]["num_timesteps"] == 512
    assert found[1]["config"]["n_envs"] == 2


def test_resume_after_sigkill_continues_the_step_count(tmp_path):
    proc = subprocess.Popen(
        train_cmd("--config", str(SMOKE), "--runs-dir", str(tmp_path), "--total-timesteps", "1000000"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob("*/checkpoints/step_*.json")):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "no checkpoint within 60 s"
            time.sleep(0.02)
        time.sleep(0.3)  # kill at an arbitrary later moment, possibly mid-checkpoint
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    run_dir = only_run(tmp_path)
    found = latest_checkpoint(run_dir)
    assert found is not None
    killed_at = found[1]["num_timesteps"]
    assert killed_at >= 128 and not (run_dir / "final.zip").exists()

    target = killed_at + 256
    out = subprocess.run(
        train_cmd("--resume", str(run_dir), "--total-timesteps", str(target)),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert f"step {killed_at:,} / {target:,}" in out.stdout  # continued from the checkpoint's step count
    found = latest_checkpoint(run_dir)
    assert found is not None and found[1]["num_timesteps"] >= target
    assert found[1]["wall_time_s"] > 0
    assert len(event_files(run_dir)) == 2  # the same TensorBoard folder, one events file per process
    assert not list(run_dir.rglob("*.tmp"))
    assert (run_dir / "final.zip").is_file()


def test_training_with_the_defer_action(tmp_path):
    exp = load_experiment(SMOKE, ["defer=true"], total_timesteps=128, **{"eval.every": 128})
    policy = LearnedPolicy.load(train(exp, tmp_path, progress=False) / "final.zip")
    assert policy.net.with_defer


def test_incomplete_checkpoints_are_ignored(tmp_path):
    exp = load_experiment(SMOKE, total_timesteps=256, **{"checkpoint_every": 128, "eval.every": 0})
    run_dir = train(exp, tmp_path, progress=False)
    ckpt = run_dir / "checkpoints"
    (ckpt / "step_0000000384.zip").write_bytes(b"half a zip")  # killed before its JSON was written
    (ckpt / ".step_0000000512.zip.abc.tmp").write_bytes(b"half")  # killed mid-write
    (run_dir / ".best.zip.abc.tmp").write_bytes(b"half")  # killed while saving the best model
    found = latest_checkpoint(run_dir)
    assert found is not None and found[1]["num_timesteps"] == 256
    resume(run_dir, total_timesteps=384, progress=False)
    assert not list(run_dir.rglob("*.tmp"))  # resuming sweeps what the kill left


def test_same_seed_same_parameters(tmp_path):
    def final_params(runs_dir: Path, seed: int) -> dict[str, torch.Tensor]:
        exp = load_experiment(
            SMOKE, seed=seed, total_timesteps=256, **{"eval.every": 0, "checkpoint_every": 0}
        )
        return LearnedPolicy.load(train(exp, runs_dir, progress=False) / "final.zip").net.state_dict()

    a, b = final_params(tmp_path / "a", 7), final_params(tmp_path / "b", 7)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    c = final_params(tmp_path / "c", 8)
    assert any(not torch.equal(a[key], c[key]) for key in a)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (["algo.learning_rate=-1e-4"], "algo.learning_rate"),
        (["algo.lr=1e-4"], "algo.lr"),
        (["n_env=2"], "n_env"),
        (["eval.baseline=nearst"], "eval.baseline"),
        (["env.fleet.size=0"], "fleet.size"),
        (["env.fleet.sise=3"], "fleet.sise"),
    ],
)
def test_bad_overrides_fail_naming_the_field(overrides, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_experiment(SMOKE, overrides)


def test_flags_and_overrides_set_fields():
    assert load_experiment(SMOKE, ["seed=3", "algo.gamma=0.9"], seed=None).seed == 3
    exp = load_experiment(SMOKE, ["seed=3", "env.fleet.size=4"], seed=4, **{"algo.name": "a2c"})
    assert (exp.seed, exp.algo.name, exp.env, exp.load_scenario().fleet.size) == (
        4,
        "a2c",
        {"fleet.size": 4},
        4,
    )
    assert "batch_size" not in exp.algo.sb3_kwargs()  # PPO-only fields are not passed to A2C


def test_bad_yaml_fails_before_training(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(SMOKE.read_text().replace("n_epochs: 2", "n_epochs: 2\n  learning_rat: 0.1"))
    runs = tmp_path / "runs"
    out = subprocess.run(
        train_cmd("--config", str(bad), "--runs-dir", str(runs)), capture_output=True, text=True, check=False
    )
    assert out.returncode == 2
    assert "algo.learning_rat" in out.stderr and "Extra inputs are not permitted" in out.stderr
    assert not runs.exists()  # nothing started

    out = subprocess.run(
        train_cmd("--config", str(SMOKE), "--runs-dir", str(runs), "algo.learning_rate=-0.1"),
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 2 and "algo.learning_rate" in out.stderr
    assert not runs.exists()


def test_lastmile_train_is_the_same_command(tmp_path):
    from lastmile_cli import main

    assert main(["train", "--config", str(SMOKE), "--runs-dir", str(tmp_path), "algo.gamma=2"]) == 2
    assert main(["train", "--resume", str(tmp_path / "nothing")]) == 2
    assert (
        main(
            [
                "train",
                "--config",
                str(SMOKE),
                "--runs-dir",
                str(tmp_path),
                "--no-progress",
                "--total-timesteps",
                "128",
            ]
        )
        == 0
    )
    state = json.loads(sorted(only_run(tmp_path).glob("checkpoints/*.json"))[-1].read_text())
    assert state["num_timesteps"] == 128
