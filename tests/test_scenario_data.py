"""A user's own data in a scenario: paths next to the YAML, checked at load, rosters."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

import evaluate
from lastmile_env.config import ORDER_LOGS_DIR, SCENARIO_DIR, ConfigError, load_scenario
from lastmile_env.sim import build_world
from tests.conftest import write_line_graph


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_relative_paths_resolve_next_to_the_scenario_file_first(tmp_path: Path) -> None:
    # A map next to the YAML named like a shipped map: the one next to the YAML wins.
    write_line_graph(tmp_path / "aguascalientes_drive.graphml")
    np.save(tmp_path / "m.npy", np.array([[0, 60], [90, 0]]))
    (tmp_path / "day.csv").write_text((ORDER_LOGS_DIR / "small_day.csv").read_text())
    scenario = write_yaml(
        tmp_path / "mine.yaml",
        {
            "graph": {"kind": "file", "path": "aguascalientes_drive.graphml"},
            "depots": {"nodes": ["D"]},
            "orders": {"log": {"path": "day.csv"}},
        },
    )
    cfg = load_scenario(scenario)
    assert cfg.graph.path == tmp_path / "aguascalientes_drive.graphml"
    assert cfg.orders.log is not None and cfg.orders.log.path == tmp_path / "day.csv"
    assert build_world(cfg).graph.number_of_nodes() == 3
    matrix = write_yaml(tmp_path / "matrix.yaml", {"graph": {"kind": "matrix", "path": "m.npy", "unit": "s"}})
    assert build_world(load_scenario(matrix)).dist_km[1][0] == 90.0
    # Not next to the YAML: the usual look-up (the shipped maps directory) still applies.
    shipped = write_yaml(
        tmp_path / "sub.yaml", {"graph": {"kind": "file", "path": "West-Oakland_drive.graphml"}}
    )
    assert load_scenario(shipped).graph.path == Path("West-Oakland_drive.graphml")


def test_a_bad_order_log_fails_the_evaluation_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copy(SCENARIO_DIR / "small_replay.yaml", tmp_path / "replay.yaml")
    rows = (ORDER_LOGS_DIR / "small_day.csv").read_text().splitlines()
    rows[1] = rows[1].replace(",6,2,", ",999,2,")  # line 2: a node that is not on the map
    (tmp_path / "small_day.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    code = evaluate.main(
        [
            "--scenario",
            str(tmp_path / "replay.yaml"),
            "--policies",
            "nearest",
            "--episodes",
            "1",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "small_day.csv" in err and "line 2" in err and "Traceback" not in err
    assert not out.exists()


def test_order_log_errors_are_config_errors() -> None:
    from lastmile_env.sources.order_log import OrderLogError

    assert issubclass(OrderLogError, ConfigError)
