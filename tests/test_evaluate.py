"""Evaluation: output schema, paired seeds, parallel == serial, CI math, name errors, suites and the CLI."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import yaml
from scipy import stats

import lastmile_cli as cli
from agents.evaluation import (
    EPISODE_COLUMNS,
    SUMMARY_METRICS,
    EvaluationError,
    EvaluationResult,
    evaluate,
    evaluate_suite,
    load_suite,
    mean_ci,
    resolve_policy,
)
from lastmile_env.config import REPO_ROOT, ConfigError, load_scenario

POLICIES = ["random", "nearest", "insertion"]
EPISODES = 3
QUIET: dict[str, Any] = {"hindsight_time_limit_s": 0.0, "progress": False}


def _read_csv(path: Path, drop: tuple[str, ...] = ()) -> list[dict[str, str]]:
    with path.open() as f:
        return [{k: v for k, v in row.items() if k not in drop} for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def serial(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EvaluationResult, Path]]:
    """One serial evaluation of the small scenario, written to disk, shared by the tests of this module."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LASTMILE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
        result = evaluate("small", POLICIES, episodes=EPISODES, seed=3, workers=1, **QUIET)
        out = tmp_path_factory.mktemp("eval_serial")
        result.write(out)
        yield result, out


# ------------------------------------------------------------------------------------------ outputs
def test_output_files_and_schema(serial: tuple[EvaluationResult, Path]) -> None:
    result, out = serial
    with (out / "episodes.csv").open() as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames or ()) == EPISODE_COLUMNS
        rows = list(reader)
    assert len(rows) == len(POLICIES) * EPISODES
    assert [r["policy"] for r in rows] == [p for p in POLICIES for _ in range(EPISODES)]

    summary = json.loads((out / "summary.json").read_text())
    for key in ("scenario", "policies", "episodes", "seeds", "reference", "hindsight", "summary", "config"):
        assert key in summary
    assert summary["policies"] == POLICIES and summary["reference"] == "insertion"
    assert summary["hindsight"]["computed"] is False
    for policy in POLICIES:
        entry = summary["summary"][policy]
        assert set(entry["metrics"]) == set(SUMMARY_METRICS)
        assert set(entry["metrics"]["cost"]) == {"mean", "ci_low", "ci_high", "half_width", "n"}
        assert entry["metrics"]["hindsight_gap"]["mean"] is None  # nan is written as null
        vs = entry["vs_reference"]
        if policy == "insertion":
            assert vs is None
        else:
            assert {"cost", "cost_per_delivered", "on_time_rate", "cost_rel_pct"} <= set(vs)

    markdown = (out / "summary.md").read_text()
    assert markdown == result.markdown()
    for policy in POLICIES:
        assert f"| `{policy}` |" in markdown
    assert "not computed" in markdown
    for name in ("metrics.png", "route_map.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_paired_seeds(serial: tuple[EvaluationResult, Path]) -> None:
    """Every policy plays the same days: same seeds, same number of orders per episode."""
    result, _ = serial
    for k in range(EPISODES):
        rows = [r for r in result.rows if r["episode"] == k]
        assert {r["seed"] for r in rows} == {3 + k}
        assert len({r["orders"] for r in rows}) == 1
    assert len({r["orders"] for r in result.rows}) > 1  # ... and different days differ


def test_parallel_equals_serial(serial: tuple[EvaluationResult, Path], tmp_path: Path) -> None:
    result, out = serial
    parallel = evaluate("small", POLICIES, episodes=EPISODES, seed=3, workers=2, **QUIET)
    parallel.write(tmp_path)
    drop = ("wall_s",)
    assert _read_csv(tmp_path / "episodes.csv", drop) == _read_csv(out / "episodes.csv", drop)
    assert parallel.route_map_policy == result.route_map_policy
    assert parallel.route_map is not None and result.route_map is not None
    assert np.array_equal(parallel.route_map, result.route_map)


# --------------------------------------------------------------------------------------- statistics
def test_mean_ci_matches_scipy() -> None:
    sample = [1.0, 2.0, 3.0, 4.0]
    ci = mean_ci(sample)
    low, high = stats.t.interval(0.95, len(sample) - 1, loc=np.mean(sample), scale=stats.sem(sample))
    assert ci.n == 4 and ci.mean == pytest.approx(2.5)
    assert (ci.low, ci.high) == (pytest.approx(low), pytest.approx(high))
    assert ci.half_width == pytest.approx(3.182446305284263 * np.std(sample, ddof=1) / 2.0)
    assert mean_ci([*sample, math.nan]) == ci  # nan (e.g. nothing delivered) is dropped
    one = mean_ci([5.0])
    assert one.mean == 5.0 and math.isnan(one.half_width) and one.n == 1
    assert mean_ci([]).n == 0 and math.isnan(mean_ci([]).mean)


def test_paired_difference_against_reference(serial: tuple[EvaluationResult, Path]) -> None:
    result, _ = serial
    cost = {(r["policy"], r["episode"]): r["cost"] for r in result.rows}
    diffs = [cost["random", k] - cost["insertion", k] for k in range(EPISODES)]
    rel = [100 * (cost["random", k] - cost["insertion", k]) / cost["insertion", k] for k in range(EPISODES)]
    vs = result.summary["random"]["vs_reference"]
    assert vs["cost"]["mean"] == pytest.approx(np.mean(diffs))
    assert vs["cost"]["half_width"] == pytest.approx(mean_ci(diffs).half_width)
    assert vs["cost_rel_pct"]["mean"] == pytest.approx(np.mean(rel))


def test_insertion_no_worse_than_random() -> None:
    """A floor: the cheapest-insertion policy never costs more than random dispatch on average."""
    result = evaluate(
        "small", ["random", "insertion"], episodes=5, seed=0, workers=1, route_map=False, **QUIET
    )
    mean_cost = {p: result.summary[p]["metrics"]["cost"]["mean"] for p in result.policies}
    assert mean_cost["insertion"] <= mean_cost["random"]
    assert result.summary["random"]["vs_reference"]["cost"]["mean"] >= 0


# ------------------------------------------------------------------------------------------ hindsight
def test_hindsight_gap_from_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """The gap is (cost - hindsight) / hindsight per episode; a failing solver is reported, not raised."""
    seen: list[int] = []

    def bound(world: Any, orders: list[Any], seed: int = 0, **budget: Any) -> SimpleNamespace:
        seen.append(len(orders))
        return SimpleNamespace(cost=100.0, solver_time_s=0.0)

    monkeypatch.setitem(sys.modules, "agents.hindsight", SimpleNamespace(hindsight_bound=bound))
    result = evaluate(
        "small", ["insertion"], episodes=2, workers=1, hindsight_time_limit_s=0.5, progress=False
    )
    assert result.hindsight_computed and result.hindsight_note is None
    assert seen == [r["orders"] for r in result.rows]
    for row in result.rows:
        assert row["hindsight_cost"] == 100.0
        assert row["hindsight_gap"] == pytest.approx((row["cost"] - 100.0) / 100.0)
    assert "Gap to hindsight: (cost" in result.markdown()
    assert "no policy can foresee" not in result.markdown()  # no travel noise, no absences on small

    def broken(world: Any, orders: list[Any], seed: int = 0, **budget: Any) -> SimpleNamespace:
        raise RuntimeError("solver exploded")

    monkeypatch.setitem(sys.modules, "agents.hindsight", SimpleNamespace(hindsight_bound=broken))
    result = evaluate(
        "small", ["insertion"], episodes=1, workers=1, hindsight_time_limit_s=0.5, progress=False
    )
    assert not result.hindsight_computed and "solver exploded" in (result.hindsight_note or "")
    assert math.isnan(result.rows[0]["hindsight_gap"])


def test_hindsight_disabled_or_missing(serial: tuple[EvaluationResult, Path]) -> None:
    result, _ = serial
    assert not result.hindsight_computed and "disabled" in (result.hindsight_note or "")
    assert all(math.isnan(r["hindsight_gap"]) for r in result.rows)


def test_real_hindsight_bound() -> None:
    pytest.importorskip("agents.hindsight")
    result = evaluate(
        "small", ["insertion"], episodes=1, workers=1, hindsight_time_limit_s=0.5, progress=False
    )
    row = result.rows[0]
    assert result.hindsight_computed, result.hindsight_note
    assert row["hindsight_cost"] > 0 and math.isfinite(row["hindsight_gap"])
    assert result.hindsight_budget is not None and "0.5 s wall-clock" in result.hindsight_budget
    assert "0.5 s wall-clock" in result.markdown()


def test_every_policy_and_the_hindsight_bound_are_identical_serial_and_parallel(tmp_path: Path) -> None:
    """With the default (iteration) budgets, reopt, reopt_route and the hindsight bound give the same rows
    whatever the worker count; the report says which budgets were used."""
    from agents.heuristics import HEURISTICS
    from agents.hindsight import HINDSIGHT_ITERATIONS

    policies = [*HEURISTICS, "learned", "learned+reopt", "insertion+reopt_route"]
    runs = []
    for workers in (1, 2):
        result = evaluate("small", policies, episodes=2, seed=11, workers=workers, progress=False)
        result.write(tmp_path / str(workers))
        runs.append(_read_csv(tmp_path / str(workers) / "episodes.csv", ("wall_s",)))
    assert runs[0] == runs[1]
    assert all(row["hindsight_cost"] not in ("", "nan") for row in runs[0])
    assert result.hindsight_budget == f"{HINDSIGHT_ITERATIONS} iterations"
    assert result.solver_budgets["reopt"] == "reopt 50 iterations"
    assert result.solver_budgets["insertion+reopt_route"] == "reopt_route 30 iterations"
    assert "insertion" not in result.solver_budgets
    report = result.markdown()
    assert f"PyVRP budget per day: {HINDSIGHT_ITERATIONS} iterations" in report
    assert "`reopt_myopic`: reopt_myopic 50 iterations" in report
    assert json.loads((tmp_path / "2" / "summary.json").read_text())["hindsight"]["budget"] == (
        f"{HINDSIGHT_ITERATIONS} iterations"
    )


def test_policy_specs_with_options_compositions_and_the_shipped_name() -> None:
    result = evaluate(
        "small",
        ["insertion", "reopt:time=0.05", "insertion_myopic+reopt:iterations=5", "learned"],
        episodes=1,
        workers=1,
        **QUIET,
    )
    assert [r["policy"] for r in result.rows] == result.policies
    assert result.solver_budgets["reopt:time=0.05"].startswith("reopt 0.05 s wall-clock")
    assert result.solver_budgets["insertion_myopic+reopt:iterations=5"] == "reopt 5 iterations"
    policy = resolve_policy("insertion_myopic+reopt:iterations=5")()
    assert policy.name == "insertion_myopic+reopt:iterations=5"
    assert policy.dispatch.name == "insertion_myopic"  # type: ignore[attr-defined]
    assert resolve_policy("learned")().name == "learned"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"policies": ["reopt:time=0"]}, "time limit must be > 0"),
        ({"policies": ["reopt:speed=2"]}, "bad option 'speed=2'"),
        ({"policies": ["+reopt"]}, "no dispatch policy before '\\+reopt'"),
        ({"policies": ["insertion+reopt:nope=1"]}, "bad option 'nope=1'"),
        ({"policies": ["insertion+reopt_route:time=-1"]}, "time limit must be > 0"),
        ({"policies": ["insertion"], "hindsight_iterations": 10, "hindsight_time_limit_s": 1.0}, "not both"),
        ({"policies": ["insertion"], "hindsight_iterations": -1}, "iterations must be >= 0"),
        ({"policies": ["insertion"], "hindsight_time_limit_s": -1.0}, "time limit must be >= 0"),
    ],
)
def test_bad_specs_and_budgets_fail_before_any_work(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(EvaluationError, match=message):
        evaluate("small", episodes=1, progress=False, **kwargs)


# ---------------------------------------------------------------------------------------- bad input
def test_unknown_policy_lists_valid_names() -> None:
    with pytest.raises(EvaluationError, match=r"unknown policy 'nope'; valid names: .*insertion"):
        evaluate("small", ["insertion", "nope"], episodes=1, **QUIET)
    with pytest.raises(EvaluationError, match=r"not a trained model zip; valid policy names: .*insertion"):
        resolve_policy("runs/ppo/model.onnx")
    with pytest.raises(EvaluationError, match="no such model file"):
        resolve_policy("runs/ppo/missing.zip")
    with pytest.raises(EvaluationError, match="listed twice"):
        evaluate("small", ["insertion", "insertion"], episodes=1, **QUIET)
    with pytest.raises(EvaluationError, match="reference policy 'insertion' is not among"):
        evaluate("small", ["random"], episodes=1, **QUIET)
    with pytest.raises(EvaluationError, match="episodes must be >= 1"):
        evaluate("small", ["insertion"], episodes=0, **QUIET)


def test_unknown_scenario_and_suite_list_valid_names(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown scenario 'nope'; valid names: .*small"):
        evaluate("nope", ["insertion"], episodes=1, **QUIET)
    with pytest.raises(EvaluationError, match=r"unknown suite 'nope'; valid names: .*standard"):
        load_suite("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nscenarios: [small, atlantis]\n")
    with pytest.raises(EvaluationError, match=r"unknown scenario 'atlantis'; valid names: .*default"):
        evaluate_suite(bad, ["insertion"], episodes=1, **QUIET)
    with pytest.raises(EvaluationError, match=r"suite file not found: .*missing\.yaml"):
        load_suite(tmp_path / "missing.yaml")
    bad.write_text("name: [unclosed\n")
    with pytest.raises(EvaluationError, match=r"suite file .*bad\.yaml is not valid YAML"):
        load_suite(bad)
    bad.write_text("- small\n")
    with pytest.raises(EvaluationError, match=r"suite file .*bad\.yaml must hold a mapping"):
        load_suite(bad)


def test_standard_suite_scenarios_load() -> None:
    suite = load_suite("standard")
    assert suite.scenarios == (
        "sparse",
        "default",
        "peak",
        "tight_windows",
        "hetero_fleet",
        "aguascalientes",
        "realistic",
        "default_5vans",
        "default_7vans",
        "default_volume150",
        "static_day",
    )
    for name in suite.scenarios:
        assert load_scenario(name).name == name
    fleet = load_scenario("hetero_fleet").fleet
    assert {t.name: (t.capacity, t.speed_factor) for t in fleet.types} == {
        "van": (24, 1.0),
        "cargo_bike": (6, 1.2),
        "truck": (60, 0.8),
    }


# ----------------------------------------------------------------------------------------- suites
def test_suite_writes_one_folder_per_scenario(tmp_path: Path) -> None:
    bigger = tmp_path / "small_bigger.yaml"
    config = yaml.safe_load((REPO_ROOT / "configs" / "scenario" / "small.yaml").read_text())
    config["fleet"]["size"] = 4
    bigger.write_text(yaml.safe_dump(config))
    suite_file = tmp_path / "mini.yaml"
    suite_file.write_text(f"name: mini\ndescription: two small cities\nscenarios: [small, {bigger}]\n")
    result = evaluate_suite(suite_file, ["random", "insertion"], episodes=2, workers=1, **QUIET)
    result.write(tmp_path / "out")
    assert [r.scenario for r in result.results] == ["small", "small_bigger"]
    for name in ("small", "small_bigger"):
        assert (tmp_path / "out" / name / "episodes.csv").is_file()
    table = (tmp_path / "out" / "suite.md").read_text()
    for scenario in ("small", "small_bigger"):
        for policy in ("random", "insertion"):
            assert f"| {scenario} | `{policy}` |" in table
    assert set(json.loads((tmp_path / "out" / "suite.json").read_text())["scenarios"]) == {
        "small",
        "small_bigger",
    }


# -------------------------------------------------------------------------------------------- CLI
def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "LASTMILE_CACHE_DIR": str(tmp_path / "cache")}


def test_cli_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "eval"
    args = ["--scenario", "small", "--policies", "random,insertion", "--episodes", "2", "--workers", "2"]
    args += ["--hindsight-time-limit", "0", "--out", str(out), "--no-progress", "env.fleet.size=4"]
    proc = subprocess.run(
        [sys.executable, "evaluate.py", *args],
        cwd=REPO_ROOT,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "| `insertion` |" in proc.stdout and "| `random` |" in proc.stdout
    for name in ("episodes.csv", "summary.json", "summary.md", "metrics.png", "route_map.png"):
        assert (out / name).stat().st_size > 0
    assert json.loads((out / "summary.json").read_text())["config"]["fleet"]["size"] == 4


def test_cli_bad_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    proc = subprocess.run(
        [sys.executable, "evaluate.py", "--scenario", "small", "--episodes", "0", "--out", str(tmp_path)],
        cwd=REPO_ROOT,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "episodes must be >= 1" in proc.stderr
    # The same script behind `lastmile evaluate`, in-process.
    for argv, message in (
        (["--policies", "insertion,nope"], "unknown policy 'nope'"),
        (["--scenario", "atlantis"], "unknown scenario 'atlantis'"),
        (["--suite", "nope"], "unknown suite 'nope'"),
        (["fleet.size=3"], "start with 'env.'"),
    ):
        assert cli.main(["evaluate", *argv, "--out", str(tmp_path)]) == 2
        assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing ran, nothing written


def test_trained_model_zip_is_a_policy(tmp_path: Path) -> None:
    from agents.learned.training import load_experiment, train

    exp = load_experiment(REPO_ROOT / "configs" / "experiment" / "smoke.yaml", total_timesteps=128)
    model = train(exp, tmp_path / "runs", progress=False) / "final.zip"
    result = evaluate("small", ["insertion", str(model)], episodes=2, **QUIET)
    rows = [r for r in result.rows if r["policy"] == str(model)]
    assert len(rows) == 2 and all(r["delivered"] + r["rejected"] == r["orders"] for r in rows)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "manifest not found"),
        ("policy: [1, 2]\n", "'policy' must be a policy spec"),
        ("policy: experiments/dispatch/nope.zip\n", "model experiments/dispatch/nope.zip not found"),
        ("policy: learned+reopt\n", "names itself"),
    ],
)
def test_a_broken_shipped_manifest_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str | None, message: str
) -> None:
    from agents.learned import shipped

    manifest = tmp_path / "learned.yaml"
    if text is not None:
        manifest.write_text(text)
    monkeypatch.setattr(shipped, "SHIPPED_FILE", manifest)
    with pytest.raises(EvaluationError, match=f"policy 'learned': .*{message}"):
        resolve_policy("learned")
