"""The Ray backend: the same seeds give the same result tables on a local Ray instance as on the local
process pool, for an evaluation (one Ray task per scenario, policy and episode) and for a sweep (one per
run); ``evaluate.py`` names the missing extra. Ray starts once (``num_cpus=2``) for the comparison."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agents.evaluation import evaluate
from experiments.sweep import SweepSpec, prepare, result_rows, run_local, run_ray
from lastmile_env.config import REPO_ROOT


def _rows(result) -> str:  # NaN-aware comparison of the episode rows, wall times aside
    return json.dumps([{k: v for k, v in r.items() if k != "wall_s"} for r in result.rows])


def test_ray_runs_match_the_local_pool(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'lastmile[ray]')")
    from agents.evaluation import connect_ray

    assert not ray.is_initialized()
    connect_ray("local", num_cpus=2)
    try:
        common = {"episodes": 2, "seed": 7, "hindsight_time_limit_s": 0, "progress": False}
        pool = evaluate("small", ["insertion", "nearest", "regret"], workers=2, **common)
        on_ray = evaluate("small", ["insertion", "nearest", "regret"], ray=True, **common)
        assert _rows(on_ray) == _rows(pool)
        assert len(pool.rows) == 6 and all(math.isfinite(r["cost"]) for r in pool.rows)
        assert on_ray.route_map is not None and (on_ray.route_map == pool.route_map).all()

        spec = SweepSpec.model_validate(
            {
                "base": "configs/experiment/smoke.yaml",
                "scenarios": ["small"],
                "algorithms": ["maskable_ppo"],
                "seeds": [0],
                "total_timesteps": 64,
                "evaluation": {"episodes": 1, "baselines": ["insertion"]},
            }
        )
        local = run_local(prepare(spec, tmp_path / "local"), 1, lambda i, o: None)
        done: list[int] = []
        remote = run_ray(prepare(spec, tmp_path / "ray"), 1, lambda i, o: done.append(i))
        assert done == [0] and remote[0].error is None, remote[0].error
        assert (Path(str(remote[0].run_dir)) / "final.zip").is_file()

        def table(outcomes) -> list[dict[str, object]]:
            rows = result_rows(outcomes, spec.evaluation.baselines)
            return [{k: v for k, v in r.items() if not k.endswith("wall_s") and k != "run_dir"} for r in rows]

        assert json.dumps(table(remote)) == json.dumps(table(local))
    finally:
        ray.shutdown()


def test_evaluate_cli_without_ray_names_the_extra(tmp_path: Path) -> None:
    hidden = tmp_path / "no_ray"
    (hidden / "ray").mkdir(parents=True)
    (hidden / "ray" / "__init__.py").write_text("raise ImportError(\"No module named 'ray'\")\n")
    out = subprocess.run(
        [sys.executable, str(REPO_ROOT / "evaluate.py"), "--scenario", "small", "--episodes", "1", "--ray",
         "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(hidden), str(REPO_ROOT)])},
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert "pip install 'lastmile[ray]'" in out.stderr
    assert not (tmp_path / "out").exists()


def test_a_refused_connection_names_token_authentication(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cluster started by ``ray start --head`` (token auth on since Ray 2.59) refuses a client without
    ``RAY_AUTH_MODE=token``: the error says so. (The head node itself is not started here.)"""
    import socket

    ray = pytest.importorskip("ray")
    from agents.evaluation import EvaluationError, connect_ray

    def refuse(**kwargs: object) -> None:
        raise ConnectionError("Failed to connect to GCS")

    with socket.socket() as listener:  # something listens, so the reachability check passes
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        monkeypatch.setattr(ray, "is_initialized", lambda: False)
        monkeypatch.setattr(ray, "init", refuse)
        monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
        with pytest.raises(EvaluationError, match=r"export RAY_AUTH_MODE=token and the cluster's token"):
            connect_ray(address)
        monkeypatch.setenv("RAY_AUTH_MODE", "token")  # set: the hint would be noise
        with pytest.raises(EvaluationError) as raised:
            connect_ray(address)
        assert "RAY_AUTH_MODE" not in str(raised.value)
