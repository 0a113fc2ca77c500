"""The instruction-count benchmark (``benchmarks/instructions.py``): its table and its errors."""

from __future__ import annotations

import shutil
from types import ModuleType

import pytest

from tests.conftest import benchmark_script


def _instructions() -> ModuleType:
    return benchmark_script("instructions")


def test_table_gives_each_env_against_cartpole() -> None:
    text = _instructions().table({"CartPole-v1": 80_000.0, "default": 640_000.0}, 300)
    assert "300 steps per env" in text
    assert "| CartPole-v1 | 80,000 | 1.0000 |" in text
    assert "| `default` | 640,000 | 0.1250 |" in text


def test_bad_options_exit_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    module = _instructions()
    assert module.main(["--steps", "0"]) == 2
    assert capsys.readouterr().err.startswith("instructions.py: --steps must be at least 1")
    monkeypatch.setattr(module.shutil, "which", lambda tool: f"/usr/bin/{tool}")  # as if valgrind were there
    assert module.main(["--scenarios", "default,nowhere"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("instructions.py: unknown scenario(s) nowhere; valid: ") and err.count("\n") == 1
    monkeypatch.setattr(module.shutil, "which", lambda tool: None)
    assert module.main([]) == 2
    assert "valgrind and callgrind_control not found" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("valgrind") is None, reason="needs valgrind")
def test_a_count_is_the_same_on_a_second_run() -> None:
    module = _instructions()
    first, second = module.count("CartPole-v1", 50), module.count("CartPole-v1", 50)
    assert first > 1_000
    assert abs(first - second) / first < 0.01


def test_reset_counts_follow_the_step_table(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # --resets N adds instructions per seeded reset, counted by the same callgrind runner
    module = _instructions()
    monkeypatch.setattr(module.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    runs = []

    def fake(child: str, name: str, n: int, python: str = "") -> int:
        runs.append((child is module.RESET_CHILD, name, n))
        return 1_000 * n

    monkeypatch.setattr(module, "callgrind", fake)
    assert module.main(["--scenarios", "default", "--steps", "10", "--resets", "4"]) == 0
    out = capsys.readouterr().out
    assert runs == [(False, "CartPole-v1", 10), (False, "default", 10), (True, "default", 4)]
    assert "4 seeded resets per scenario:" in out and "| `default` | 1,000 |" in out
    assert module.main(["--resets", "-1"]) == 2
    assert "--resets 0 or more" in capsys.readouterr().err


def test_reset_cost_times_resets_and_rejects_bad_options(capsys: pytest.CaptureFixture[str]) -> None:
    module = benchmark_script("reset_cost")
    assert module.main(["--scenario", "small", "--resets", "2", "--rounds", "1"]) == 0
    assert capsys.readouterr().out.startswith("small: ")
    assert module.main(["--rounds", "0"]) == 2
    assert capsys.readouterr().err == "reset_cost.py: --resets and --rounds must be at least 1\n"
    assert module.main(["--scenario", "nowhere"]) == 2
    assert capsys.readouterr().err.startswith("reset_cost.py: unknown scenario 'nowhere'; valid: ")
