"""Sweeps (experiments/sweep.py): expansion, validation before any work, the smoke sweep end to end, --ray
errors (the Ray backend itself: tests/test_ray_backend.py)."""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from experiments.sweep import (
    SweepSpec,
    expand,
    load_sweep,
    prepare,
    result_rows,
    results_markdown,
    run_local,
)
from lastmile_env.config import REPO_ROOT, ConfigError

SWEEP = REPO_ROOT / "experiments" / "sweep.py"
SMOKE = REPO_ROOT / "experiments" / "sweeps" / "smoke.yaml"
VALID = {
    "base": "configs/experiment/smoke.yaml",
    "scenarios": ["small"],
    "algorithms": ["maskable_ppo"],
    "seeds": [0],
    "total_timesteps": 64,
}


def sweep_cmd(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SWEEP), *args], capture_output=True, text=True, timeout=timeout, cwd=cwd
    )


def write_sweep(path: Path, **changes: object) -> Path:
    path.write_text(yaml.safe_dump({**VALID, **changes}))
    return path


def test_expansion_is_the_cross_product_in_a_fixed_order(tmp_path):
    spec = SweepSpec.model_validate(
        {
            **VALID,
            "scenarios": ["small", "configs/scenario/sparse.yaml"],
            "algorithms": ["maskable_ppo", "a2c"],
            "seeds": [3, 0],
            "overrides": {"algo.learning_rate": 5.0e-4, "env.fleet.size": 4},
        }
    )
    names = [run.name for run in expand(spec)]
    assert names == [
        f"{scenario}__{algo}__{seed}"
        for scenario in ("small", "sparse")
        for algo in ("maskable_ppo", "a2c")
        for seed in (3, 0)
    ]
    tasks = prepare(spec, tmp_path)
    assert [t.run.name for t in tasks] == names
    first, last = tasks[0].config, tasks[-1].config
    assert (first["scenario"], first["algo"]["name"], first["seed"]) == ("small", "maskable_ppo", 3)
    assert last["scenario"] == str(REPO_ROOT / "configs/scenario/sparse.yaml")
    assert (last["algo"]["name"], last["seed"]) == ("a2c", 0)
    for task in tasks:
        c = task.config
        assert c["total_timesteps"] == 64 and c["torch_threads"] == 1
        assert c["algo"]["learning_rate"] == 5.0e-4 and c["env"] == {"fleet.size": 4}
    assert not list(tmp_path.iterdir())  # prepare validates, it writes nothing


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"algorithm": ["ppo"]}, "algorithm", "Extra inputs are not permitted"),
        ({"algorithms": ["dqn"]}, "algorithms.0", "maskable_ppo"),
        ({"seeds": [0, 0]}, "seeds", "listed twice: 0"),
        ({"seeds": []}, "seeds", "at least 1"),
        ({"evaluation": {"episodes": 0}}, "evaluation.episodes", "greater than or equal to 1"),
        ({"evaluation": {"baselines": ["best"]}}, "evaluation.baselines", "unknown heuristic 'best'"),
        ({"evaluation": {"days": 3}}, "evaluation.days", "Extra inputs are not permitted"),
        ({"overrides": {"seed": 3}}, "overrides", "set by the sweep's seeds"),
    ],
)
def test_a_bad_sweep_file_fails_naming_the_field(tmp_path, changes, field, message):
    path = write_sweep(tmp_path / "bad.yaml", **changes)
    with pytest.raises(ConfigError) as info:
        load_sweep(path)
    text = str(info.value)
    assert f"  {field}: " in text and message in text, text


def test_a_bad_run_config_fails_before_any_work_on_the_command_line(tmp_path):
    path = write_sweep(tmp_path / "bad.yaml", overrides={"algo.learning_rate": -1})
    out = sweep_cmd(str(path), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert "run small__maskable_ppo__0" in out.stderr and "algo.learning_rate" in out.stderr
    assert not (tmp_path / "out").exists()


def test_a_failed_run_is_reported_not_raised(tmp_path):
    spec = SweepSpec.model_validate(VALID)
    (task,) = prepare(spec, tmp_path)
    broken = dataclasses.replace(task, config={**task.config, "n_envs": 0})  # fails inside the task
    done = []
    (outcome,) = run_local([broken], 1, lambda i, o: done.append(i))
    assert done == [0] and outcome.error is not None and "n_envs" in outcome.error
    assert "Traceback" in Path(task.log_path).read_text()
    rows = result_rows([outcome], spec.evaluation.baselines)
    assert rows[0]["status"] == "failed" and math.isnan(rows[0]["learned_cost_per_delivered"])
    assert "failed: ConfigError" in results_markdown(spec, rows)


def test_dry_run_prints_the_expanded_runs(tmp_path):
    out = sweep_cmd(str(SMOKE), "--dry-run", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "small__maskable_ppo__0" in out.stdout and "small__maskable_ppo__1" in out.stdout
    assert not (tmp_path / "out").exists()


def test_smoke_sweep_end_to_end_with_two_workers(tmp_path):
    spec = load_sweep(SMOKE)
    out_dir = tmp_path / "out"
    out = sweep_cmd(str(SMOKE), "--out", str(out_dir), "--workers", "2", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    with (out_dir / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["run"] for r in rows] == [run.name for run in expand(spec)]  # expansion order
    for row in rows:
        assert row["status"] == "ok" and row["error"] == ""
        assert int(row["timesteps"]) == spec.total_timesteps
        for col in ("learned_cost_per_delivered", "insertion_cost_per_delivered", "train_wall_s"):
            assert math.isfinite(float(row[col])) and float(row[col]) > 0
        assert math.isfinite(float(row["rel_cost_per_delivered_vs_insertion_pct"]))
        assert (Path(row["run_dir"]) / "final.zip").is_file()
        assert (Path(row["run_dir"]) / "eval" / "episodes.csv").is_file()
    plot = out_dir / "learning_curves.png"
    assert plot.is_file() and plot.stat().st_size > 0
    report = (out_dir / "results.md").read_text()
    assert report.count("| small | maskable_ppo |") == len(rows) + 1  # the runs, then the mean over seeds
    assert load_sweep(out_dir / "sweep.yaml") == spec


def test_ray_without_ray_installed_names_the_extra(tmp_path):
    hidden = tmp_path / "no_ray"
    (hidden / "ray").mkdir(parents=True)
    (hidden / "ray" / "__init__.py").write_text("raise ImportError(\"No module named 'ray'\")\n")
    out = subprocess.run(
        [sys.executable, str(SWEEP), str(SMOKE), "--ray", "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(hidden), str(REPO_ROOT)])},
    )
    assert out.returncode == 2, out.stderr
    assert "pip install 'lastmile[ray]'" in out.stderr
    assert not (tmp_path / "out").exists()


def test_unreachable_ray_address_is_named(tmp_path):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'lastmile[ray]')")
    out = sweep_cmd(str(SMOKE), "--ray-address", "127.0.0.1:9", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert "cannot reach the Ray cluster at 127.0.0.1:9" in out.stderr
    assert not (tmp_path / "out").exists()
