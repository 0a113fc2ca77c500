"""One error path for every command line: a bad scenario, map, order log, model, checkpoint or output path
is ONE line naming the file and the problem, exit code 2, no traceback (``--debug`` shows it)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import evaluate
import train
from agents.learned.training import load_experiment
from agents.learned.training import train as train_run
from lastmile_cli import main as lastmile
from lastmile_env.config import REPO_ROOT

GRAPHML_WITHOUT_XY = """<?xml version="1.0" encoding="UTF-8"?>
<graphml xmlns="http://graphml.graphdrawing.org/xmlns">
<key id="d0" for="edge" attr.name="length" attr.type="double"/>
<graph edgedefault="directed"><node id="a"/><node id="b"/>
<edge source="a" target="b"><data key="d0">10</data></edge>
<edge source="b" target="a"><data key="d0">10</data></edge>
</graph></graphml>
"""
ROUTING_MODEL = REPO_ROOT / "experiments" / "routing" / "model_routing_default_25k.zip"
DISPATCH_MODEL = REPO_ROOT / "experiments" / "dispatch" / "model_default_300k.zip"
QUICK = ["--scenario", "small", "--episodes", "1", "--workers", "1", "--hindsight-time-limit", "0"]


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bad")
    files = {
        "empty.graphml": b"",
        "not_xml.graphml": b"not xml at all",
        "corrupt.graphml": b"<graphml><graph",
        "no_xy.graphml": GRAPHML_WITHOUT_XY.encode(),
        "bad.osm.bz2": b"BZhgarbage",
        "binary.csv": bytes(range(256)) * 8,
        "bad.csv": b"garbage\n1,2\n",
        "model.zip": b"not a zip",
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return {name: folder / name for name in files}


@pytest.mark.parametrize(
    ("file", "expected"),
    [
        ("empty.graphml", "cannot read GraphML"),
        ("not_xml.graphml", "cannot read GraphML"),
        ("corrupt.graphml", "cannot read GraphML"),
        ("no_xy.graphml", "no numeric 'x'"),
        ("bad.osm.bz2", "cannot read this OSM file"),
    ],
)
def test_evaluate_a_bad_map(bad_files, tmp_path, capsys, file, expected):
    overrides = ["env.graph.kind=file", f"env.graph.path={bad_files[file]}"]
    assert evaluate.main([*QUICK, "--out", str(tmp_path / "out"), *overrides]) == 2
    line = one_line_error(capsys)
    assert str(bad_files[file]) in line and expected in line


@pytest.mark.parametrize(("file", "expected"), [("binary.csv", "not UTF-8"), ("bad.csv", "missing column")])
def test_evaluate_a_bad_order_log(bad_files, tmp_path, capsys, file, expected):
    override = f"env.orders.log={{path: {bad_files[file]}}}"
    assert evaluate.main([*QUICK, "--out", str(tmp_path / "out"), override]) == 2
    line = one_line_error(capsys)
    assert str(bad_files[file]) in line and expected in line


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["env.orders.rate_per_hour=1e9"], "orders a day, more than the 200,000"),
        (["env.graph.rows=3000", "env.graph.cols=3000"], "9,000,000 nodes"),
        (
            ["env.fleet.types=[{capacity: 1}]", "env.orders.size={low: 5, high: 6}"],
            "no vehicle can serve any order",
        ),
    ],
)
def test_evaluate_a_scenario_too_large_or_that_no_vehicle_can_serve(tmp_path, capsys, overrides, expected):
    assert evaluate.main([*QUICK, "--out", str(tmp_path / "out"), *overrides]) == 2
    line = one_line_error(capsys)
    assert "small.yaml" in line and expected in line


@pytest.mark.parametrize(
    ("policy", "expected"), [("model.zip", "wasn't a zip-file"), ("routing", "a routing model")]
)
def test_evaluate_a_bad_model(bad_files, tmp_path, capsys, policy, expected):
    path = bad_files["model.zip"] if policy == "model.zip" else ROUTING_MODEL
    assert evaluate.main([*QUICK, "--policies", str(path), "--out", str(tmp_path / "out")]) == 2
    line = one_line_error(capsys)
    assert str(path) in line and expected in line


def test_evaluate_out_onto_a_file_and_debug_shows_the_traceback(tmp_path, capsys):
    existing = tmp_path / "report.md"
    existing.write_text("keep me")
    assert evaluate.main([*QUICK, "--out", str(existing)]) == 2
    assert "exists and is not a folder" in one_line_error(capsys)
    assert evaluate.main([*QUICK, "--out", str(existing), "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("evaluate.py: error: --out")
    assert existing.read_text() == "keep me"


def test_evaluate_warns_when_a_model_plays_another_scenario_than_its_training_one(tmp_path, capsys):
    out = tmp_path / "out"
    assert evaluate.main([*QUICK, "--policies", f"insertion,{DISPATCH_MODEL}", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "warning:" in captured.err and "trained on scenario 'default'; 'small' differs in" in captured.err
    assert "> warning:" in captured.out and "> warning:" in (out / "summary.md").read_text()


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    smoke = REPO_ROOT / "configs" / "experiment" / "smoke.yaml"
    exp = load_experiment(smoke, total_timesteps=128, **{"checkpoint_every": 128})
    return train_run(exp, tmp_path_factory.mktemp("runs"), progress=False)


@pytest.mark.parametrize(
    ("broken", "expected"), [(".json", "not valid JSON"), (".zip", "not a readable zip")]
)
def test_train_resume_from_a_corrupt_checkpoint(trained_run, tmp_path, capsys, broken, expected):
    run_dir = tmp_path / "run"
    shutil.copytree(trained_run, run_dir)
    target = next((run_dir / "checkpoints").glob(f"step_*{broken}"))
    target.write_bytes(b"{truncated" if broken == ".json" else b"PK\x03\x04garbage")
    assert train.main(["--resume", str(run_dir), "--no-progress"]) == 2
    line = one_line_error(capsys)
    assert str(target) in line and expected in line


def test_train_a_scenario_too_large(capsys):
    argv = ["--config", "configs/experiment/smoke.yaml", "env.graph.rows=3000", "env.graph.cols=3000"]
    assert train.main(argv) == 2
    assert "small.yaml: graph: Value error, a 3000 x 3000 grid has 9,000,000 nodes" in one_line_error(capsys)


def test_lastmile_export_a_non_zip_model(bad_files, tmp_path, capsys):
    assert lastmile(["export", str(bad_files["model.zip"]), "--out", str(tmp_path / "p.onnx")]) == 2
    line = one_line_error(capsys)
    assert str(bad_files["model.zip"]) in line and "zip" in line


def test_solomon_an_unknown_instance_is_one_line():
    result = subprocess.run(
        [sys.executable, "-m", "lastmile_env.solomon", "NOPE1"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "instance not found: NOPE1" in result.stderr
