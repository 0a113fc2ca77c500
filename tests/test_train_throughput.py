"""``benchmarks/train_throughput.py``: a short run of the training config prints its rate and the learner's
share (no timing is asserted), for the plain and the vector env; bad options are named."""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType

import pytest

from lastmile_env.config import REPO_ROOT
from tests.conftest import benchmark_script

SMOKE = str(REPO_ROOT / "configs" / "experiment" / "smoke.yaml")


def _script() -> ModuleType:
    return benchmark_script("train_throughput")


@pytest.mark.parametrize("overrides", [[], ["n_envs=2", "vector_env=true"]])
def test_a_short_run_prints_the_rate_and_the_learner_share(
    overrides: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert _script().main(["--config", SMOKE, "--steps", "64", "--repeats", "1", *overrides]) == 0
    line = capsys.readouterr().out
    share = re.search(r"learner share (\d+)% \(gradient updates (\d+)%\)", line)
    assert share is not None and 0 < int(share.group(2)) <= int(share.group(1)) < 100, line
    assert re.search(r"env alone [\d,]+ steps/s", line), line


def test_bad_options_are_named(capsys: pytest.CaptureFixture[str]) -> None:
    assert _script().main(["--config", SMOKE, "--steps", "0"]) == 2
    assert "--steps and --repeats must be positive" in capsys.readouterr().err
    assert _script().main(["--config", "no/such.yaml"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_the_code_measured_is_the_code_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--code``'s ``lastmile_env`` is the one imported (the repo's own was, from the working directory)."""
    assert _script().main(["--config", SMOKE, "--code", str(tmp_path)]) == 2
    assert "no lastmile_env package in" in capsys.readouterr().err
    (tmp_path / "lastmile_env").mkdir()
    (tmp_path / "lastmile_env" / "__init__.py").write_text("raise ImportError('the copy was imported')\n")
    with pytest.raises(SystemExit, match="training run failed: ImportError: the copy was imported"):
        _script().main(["--config", SMOKE, "--steps", "64", "--repeats", "1", "--code", str(tmp_path)])
