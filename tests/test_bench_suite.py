"""The benchmark suite (``benchmarks/suite.py``): its table, fits and options (no timing is asserted)."""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from tests.conftest import benchmark_script


def _suite() -> ModuleType:
    return benchmark_script("suite")


def test_fit_slope_recovers_the_exponent() -> None:
    suite = _suite()
    xs = [10, 50, 100, 200]
    assert suite.fit_slope(xs, [3.0 * x**1.0 for x in xs]) == pytest.approx(1.0)
    assert suite.fit_slope(xs, [7.0 * x**0.5 for x in xs]) == pytest.approx(0.5)
    assert suite.fit_slope(xs, [5.0 for _ in xs]) == pytest.approx(0.0, abs=1e-12)


def test_speed_section_prints_and_records_one_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = _suite()
    out = tmp_path / "suite.md"
    argv = ["--sections", "speed", "--scenarios", "small", "--repeats", "1", "--steps", "20"]
    assert suite.main([*argv, "--orgym", "no", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    text = out.read_text()
    assert "| speed | CartPole-v1" in printed and "LastMile-Dispatch-v0 `small`" in printed
    assert "Command: `python benchmarks/suite.py --sections speed" in text
    assert "OR-Gym VehicleRouting-v0 not measured: skipped (--orgym no)" in text
    assert "load average" in text


def test_scaling_plot_is_written(tmp_path: Path) -> None:
    suite = _suite()
    path = tmp_path / "scaling.png"
    xs = [10.0, 50.0, 100.0, 200.0]
    suite.plot_scaling({"fleet": (xs, [2 * x for x in xs]), "graph": (xs, [30.0] * 4)}, path)
    assert path.stat().st_size > 1000


def test_targets_say_by_how_much_they_are_missed() -> None:
    lines = _suite().targets({"default": 5_000.0, "cartpole": 100_000.0, "orgym": 2_500.0})
    assert lines[0] == "- `default` >= 20,000 steps/s: missed (25.0% of it)."
    assert "missed (x0.0500, 50.0% of it)" in lines[1]
    assert lines[2] == "- `default` >= 3x OR-Gym VehicleRouting-v0: missed (x2.00, 67% of it)."


def test_the_cartpole_target_reads_the_paired_ratio_when_measured() -> None:
    # 9,000 / 100,000 is 0.09, but the runs paired with their own CartPole run gave 0.104: that one counts
    found = {"default": 9_000.0, "cartpole": 100_000.0, "default_vs_cartpole": 0.104}
    assert _suite().targets(found)[1] == "- `default` >= 1/10 of CartPole-v1: met."
    found["default_vs_cartpole"] = 0.08
    assert "missed (x0.0800, 80.0% of it)" in _suite().targets(found)[1]


def test_unknown_section_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _suite().main(["--sections", "speed,warp", "--out", str(tmp_path / "x.md")]) == 2
    assert "unknown section(s) warp" in capsys.readouterr().err


def test_masked_random_actions_are_uniform_over_the_valid_ones() -> None:
    suite = _suite()
    masks = np.array([[0, 1, 0, 1, 1], [1, 0, 0, 0, 0], [0, 0, 0, 0, 1]], dtype=np.int8)
    rng = np.random.default_rng(0)
    drawn = np.stack([suite.masked_random_actions(rng, masks) for _ in range(3000)])
    assert (drawn[:, 1] == 0).all() and (drawn[:, 2] == 4).all()
    counts = np.bincount(drawn[:, 0], minlength=5)
    assert counts[[0, 2]].sum() == 0 and (np.abs(counts[[1, 3, 4]] - 1000) < 100).all()


def test_vector_rows_compare_with_the_same_policy(tmp_path: Path) -> None:
    suite = _suite()
    out = tmp_path / "suite.md"
    argv = ["--sections", "speed", "--scenarios", "default", "--repeats", "1", "--steps", "20"]
    assert suite.main([*argv, "--vector-envs", "2", "--orgym", "no", "--out", str(out)]) == 0
    text = out.read_text()
    assert "random masked policy by random keys: steps/s" in text
    assert "N = 2 bare `DispatchEnv`s stepped in turn" in text
    assert "x the single env (random keys);" in text and "x its floor" in text
    assert "- vector env (N = 2) >= 3x the single env's decisions/s per core:" in text
    share = re.search(r"spent in compiled \(numba\) code, whole days \| (\d+)% \|", text)
    assert share is not None and 0 < int(share.group(1)) < 100, text
    assert "; any design that runs each day's kernels reaches at most x" in text


def test_kernels_timed_times_the_kernels_and_puts_them_back() -> None:
    from lastmile_env import kernels

    suite = _suite()
    leg, search = kernels.leg, kernels.fleet_cheapest_insertion
    env = suite.dispatch_env("small")
    with suite.kernels_timed() as spent:
        assert kernels.leg is not leg
        suite.steps_per_second(env, 20, 0, masked=True, keys=True)
    assert spent[0] > 0
    assert kernels.leg is leg and kernels.fleet_cheapest_insertion is search


def test_ppo_section_pairs_its_runs(tmp_path: Path) -> None:
    out = tmp_path / "suite.md"
    argv = ["--sections", "ppo", "--repeats", "2", "--ppo-steps", "64", "--out", str(out)]
    assert _suite().main(argv) == 0
    text = out.read_text()
    assert re.search(
        r"SB3 PPO on `default` \(flat obs\): env steps/s \| [\d,]+ \| [\d.]+ \(paired runs; ", text
    )
    assert "- SB3 PPO on `default` >= 0.70 of PPO on CartPole-v1 (paired runs): " in text
    assert "2 runs of each alternating" in text


FAKE_ORGYM = """
import sys
print("[5, 5]", flush=True)
for n, line in enumerate(sys.stdin):
    if n == 2:
        sys.exit("the fake env broke")
    print(1000.0 * (n + 1), flush=True)
"""


def test_orgym_runs_are_paired_with_the_dispatch_env_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    # OR-Gym's process plays one run per request, just after each run of the dispatch env, and each
    # ratio is taken against its own run: here 1,000 then 2,000 steps/s; its third run fails, and the
    # pairs before it are kept
    suite = _suite()
    monkeypatch.setattr(suite, "ORGYM_CHILD", FAKE_ORGYM)
    orgym = suite.OrGym(Path(sys.executable))
    assert orgym.grid == [5, 5]
    settings = suite.Settings(
        repeats=3, steps=20, scenarios=["small"], quick=True, eval_scenario="small", eval_episodes=1,
        ppo_steps=0, plot=Path("x.png"), orgym="auto", vector_envs=0,
    )  # fmt: skip
    rates = iter([3000.0, 8000.0, 5000.0])
    monkeypatch.setattr(
        suite, "steps_per_second", lambda env, *a, **k: 50_000.0 if env == "cp" else next(rates)
    )
    rate, vs_cartpole, vs_orgym = suite.paired_rates("env", "cp", settings, orgym)
    assert (rate, vs_cartpole, vs_orgym) == (5000.0, 0.1, 3.5)  # medians of (0.06, 0.16, 0.1) and (3, 4)
    assert orgym.rates == [1000.0, 2000.0]
    assert re.fullmatch(r"VehicleRouting-v0 failed: .*the fake env broke.*", orgym.error)
    assert math.isnan(orgym.rate(20))  # it stays stopped
    orgym.close()


def test_a_silent_orgym_process_times_out_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    suite = _suite()
    monkeypatch.setattr(suite, "ORGYM_CHILD", 'import time; print("[5, 5]", flush=True); time.sleep(60)')
    monkeypatch.setattr(suite.OrGym, "TIMEOUT_S", 0.5)
    orgym = suite.OrGym(Path(sys.executable))
    assert math.isnan(orgym.rate(20))
    assert orgym.error == "VehicleRouting-v0 gave no answer within 0.5 s"
    orgym.close()


def test_an_orgym_failure_mid_section_keeps_the_rows(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # the warm-up and the first pair run; the second pair's OR-Gym run fails: the table keeps every row
    suite = _suite()
    monkeypatch.setattr(suite, "ORGYM_CHILD", FAKE_ORGYM)
    monkeypatch.setattr(suite, "orgym_python", lambda: (Path(sys.executable), ""))
    out = tmp_path / "suite.md"
    argv = ["--sections", "speed", "--scenarios", "small", "--repeats", "2", "--steps", "20"]
    assert suite.main([*argv, "--vector-envs", "0", "--orgym", "build", "--out", str(out)]) == 0
    text = out.read_text()
    assert "| speed | OR-Gym VehicleRouting-v0 (1 vehicle, 5x5 grid, gym 0.19)" in text
    assert re.search(r"LastMile-Dispatch-v0 `small`.* x CartPole \(paired runs\); [0-9.]+ x OR-Gym", text)
    assert "OR-Gym VehicleRouting-v0 stopped (VehicleRouting-v0 failed: " in text
    assert "the fake env broke" in text
