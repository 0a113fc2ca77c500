"""The ``lastmile`` command end to end: the main job and bad input."""

from __future__ import annotations

import subprocess
import sys

from lastmile_env.config import REPO_ROOT

LASTMILE = [sys.executable, "-m", "lastmile_cli"]


def test_demo_evaluates_the_shipped_model():
    out = subprocess.run(
        [*LASTMILE, "demo", "--scenario", "small", "--episodes", "2", "--workers", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT,
    )
    assert out.returncode == 0, out.stderr
    assert "SHIPPED learned policy" in out.stdout and "model_default_300k.zip" in out.stdout
    assert "`insertion`" in out.stdout and "`nearest`" in out.stdout and "`learned`" in out.stdout
    # The shipped full results are the default scenario's: another scenario is pointed to its own command.
    assert "Full results" not in out.stdout and "evaluate.py --scenario small" in out.stdout


def test_bad_override_exits_2_with_a_message():
    out = subprocess.run(
        [*LASTMILE, "demo", "fleet.size=3"], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT
    )
    assert out.returncode == 2 and "start with 'env.'" in out.stderr


def test_bench_prints_and_records_the_table(tmp_path):
    out_file = tmp_path / "speed.md"
    out = subprocess.run(
        [
            *LASTMILE,
            "bench",
            "--sections",
            "speed",
            "--orgym",
            "no",
            "--steps",
            "50",
            "--repeats",
            "1",
            "--scenarios",
            "small",
            "--out",
            str(out_file),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT,
    )
    assert out.returncode == 0, out.stderr
    assert "LastMile-Dispatch-v0 `small`" in out.stdout and "CartPole-v1" in out.stdout
    assert "Command: `python benchmarks/suite.py --sections speed" in out_file.read_text()
