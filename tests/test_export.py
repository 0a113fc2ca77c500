"""ONNX export: the manifest, dynamic fleet and batch sizes, parity with torch, and loud failures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from agents.learned.model import N_GLOBAL, N_ORDER, N_VEHICLE
from agents.learned.policy import LearnedPolicy
from agents.learned.training import load_experiment, train
from lastmile_cli import main
from lastmile_env.config import REPO_ROOT
from lastmile_env.observations import GLOBAL_FEATURES, ORDER_FEATURES, VEHICLE_FEATURES
from serving import export as export_module
from serving.export import ExportedPolicy, ExportError, export_onnx, training_info
from serving.manifest import SCHEMA_VERSION, ManifestError, load_manifest, sha256_file

CLI_MODULE = "lastmile_cli"  # what the ``lastmile`` script runs
SMOKE = REPO_ROOT / "configs" / "experiment" / "smoke.yaml"


def export_smoke_model(base: Path) -> tuple[Path, Path]:
    """A smoke-trained checkpoint (small scenario) and its ``lastmile export``; made once per test session
    (``base`` is the session's temp folder) and shared by the export and serving tests."""
    out = base / "serving-model" / "policy.onnx"
    if not out.is_file():
        run_dir = train(load_experiment(SMOKE, total_timesteps=128), base / "serving-runs", progress=False)
        assert main(["export", str(run_dir / "final.zip"), "--out", str(out)]) == 0
    checkpoint = next((base / "serving-runs").glob("*/final.zip"))
    return checkpoint, out


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return export_smoke_model(tmp_path_factory.getbasetemp())


def random_obs(batch: int, n_vehicles: int, seed: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    mask = (rng.uniform(size=(batch, n_vehicles + 1)) < 0.5).astype(np.float32)
    mask[:, -1] = 1.0
    return (
        rng.normal(0, 2, (batch, N_ORDER)).astype(np.float32),
        rng.normal(0, 2, (batch, n_vehicles, N_VEHICLE)).astype(np.float32),
        rng.normal(0, 2, (batch, N_GLOBAL)).astype(np.float32),
        mask,
    )


def test_manifest_describes_model_run_and_checks(exported):
    checkpoint, model = exported
    manifest = load_manifest(model)  # checks schema version, layout and sha256
    raw = json.loads(model.with_name("policy.onnx.json").read_text())
    assert raw["schema_version"] == SCHEMA_VERSION and raw["model_sha256"] == sha256_file(model)
    assert raw["inputs"]["order"]["features"] == list(ORDER_FEATURES)
    assert raw["inputs"]["vehicles"]["features"] == list(VEHICLE_FEATURES)
    assert raw["inputs"]["global"]["features"] == list(GLOBAL_FEATURES)
    assert raw["inputs"]["vehicles"]["shape"] == ["batch", "vehicles", len(VEHICLE_FEATURES)]
    assert raw["actions"]["count"] == "vehicles + 1" and raw["actions"]["defer"] is None
    assert manifest.training["run_name"] == checkpoint.parent.name
    assert manifest.training["num_timesteps"] == 128 and manifest.training["scenario"] == "small"
    for check in ("random", "recorded"):
        result = manifest.verification[check]
        assert result["observations"] > 0
        assert max(result["max_abs_diff_logits"], result["max_abs_diff_value"]) <= 1e-5
    assert manifest.verification["recorded_scenarios"] == ["small", "default"]


@pytest.mark.parametrize(("batch", "n_vehicles"), [(1, 1), (3, 7), (2, 57)])
def test_onnx_runs_any_fleet_and_batch_like_torch(exported, batch, n_vehicles):
    checkpoint, model = exported
    module = ExportedPolicy(LearnedPolicy.load(checkpoint).net).eval()
    arrays = random_obs(batch, n_vehicles, seed=n_vehicles)
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    feeds = dict(zip(("order", "vehicles", "global", "action_mask"), arrays, strict=True))
    logits, value = session.run(None, feeds)
    with torch.no_grad():
        expected_logits, expected_value = module(*(torch.from_numpy(a) for a in arrays))
    assert logits.shape == (batch, n_vehicles + 1) and value.shape == (batch, 1)
    np.testing.assert_allclose(logits, expected_logits.numpy(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(value, expected_value.numpy(), atol=1e-5, rtol=0)
    assert np.all(logits[arrays[3] < 0.5] == -1e8)  # masking is inside the graph


def test_export_fails_loudly_and_writes_nothing_when_onnx_differs(exported, tmp_path, monkeypatch):
    checkpoint, _ = exported
    real_export = export_module._torch_export

    def export_a_different_net(module, path, defer):
        with torch.no_grad():
            module.net.reject[-1].bias.add_(1e-3)  # the file gets a slightly different network
        real_export(module, path, defer)
        with torch.no_grad():
            module.net.reject[-1].bias.sub_(1e-3)  # torch is checked with the checkpoint's

    monkeypatch.setattr(export_module, "_torch_export", export_a_different_net)
    with pytest.raises(ExportError, match="differs from torch"):
        export_onnx(checkpoint, tmp_path / "bad.onnx", record_scenarios=("small",))
    assert list(tmp_path.iterdir()) == []


def test_cli_export_reports_a_missing_checkpoint(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nope.zip"), "--out", str(tmp_path / "p.onnx")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err


def test_manifest_refuses_a_changed_model_or_schema(exported, tmp_path):
    _, model = exported
    copy = tmp_path / "policy.onnx"
    copy.write_bytes(model.read_bytes())
    manifest = json.loads(model.with_name("policy.onnx.json").read_text())
    (tmp_path / "policy.onnx.json").write_text(json.dumps(manifest))
    load_manifest(copy)
    with open(copy, "ab") as f:
        f.write(b"\0")
    with pytest.raises(ManifestError, match="sha256"):
        load_manifest(copy)
    copy.write_bytes(model.read_bytes())
    for change, message in (
        ({"schema_version": SCHEMA_VERSION + 1}, "schema version"),
        ({"inputs": {**manifest["inputs"], "order": {"shape": ["batch", 8]}}}, "observation layout"),
    ):
        (tmp_path / "policy.onnx.json").write_text(json.dumps({**manifest, **change}))
        with pytest.raises(ManifestError, match=message):
            load_manifest(copy)
    with pytest.raises(ManifestError, match="manifest not found"):
        load_manifest(copy, tmp_path / "missing.json")


def test_training_info_from_a_checkpoint_and_its_state(exported):
    checkpoint, _ = exported
    step = next((checkpoint.parent / "checkpoints").glob("step_*.zip"))
    info = training_info(step)
    assert info["state_file"] == str(step.with_suffix(".json").resolve())
    assert info["num_timesteps"] == 128 and info["algo"] == "maskable_ppo" and info["seed"] == 0
    assert info["run_dir"] == str(checkpoint.parent.resolve())


def readme_export_argv() -> list[str]:
    """The README's ``lastmile export`` command line, as a user copies it."""
    readme = (REPO_ROOT / "README.md").read_text()
    line = next(line for line in readme.splitlines() if line.startswith("lastmile export "))
    return line.split("#")[0].split()[1:]


@pytest.mark.parametrize("model", ["model_default_300k.zip", "model_realistic_300k.zip"])
def test_readme_export_command_exports_the_shipped_dispatch_models(model, tmp_path):
    argv = readme_export_argv()
    assert argv[:2] == ["export", "experiments/dispatch/model_default_300k.zip"] and "--out" in argv
    argv[1] = f"experiments/dispatch/{model}"
    argv[argv.index("--out") + 1] = str(tmp_path / "policy.onnx")
    done = subprocess.run(
        [sys.executable, "-m", CLI_MODULE, *argv], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "picks the same action" in done.stdout
    manifest = load_manifest(tmp_path / "policy.onnx")
    for check in ("random", "recorded"):
        result = manifest.verification[check]
        assert result["within_tolerance"] and result["same_argmax"] == result["observations"] > 0


def test_export_of_the_shipped_routing_model_is_refused_in_one_line(tmp_path, capsys):
    checkpoint = REPO_ROOT / "experiments" / "routing" / "model_routing_default_25k.zip"
    assert main(["export", str(checkpoint), "--out", str(tmp_path / "r.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "a routing model" in err and str(checkpoint) in err
    assert list(tmp_path.iterdir()) == []


class _FixedSession:
    """An onnxruntime stand-in answering fixed outputs (to test ``compare``'s tolerance rule)."""

    def __init__(self, logits: np.ndarray, value: np.ndarray) -> None:
        self.outputs = [logits, value]

    def run(self, names, feeds):
        return self.outputs


class _FixedModule(torch.nn.Module):
    def __init__(self, logits: np.ndarray, value: np.ndarray) -> None:
        super().__init__()
        self.outputs = (torch.from_numpy(logits), torch.from_numpy(value))

    def forward(self, *arrays):
        return self.outputs


def test_compare_accepts_float32_steps_on_large_logits_and_counts_argmax_changes():
    batch = random_obs(2, 2, seed=0)
    torch_logits = np.array([[1000.0, 990.0, -1e8], [5.0, 6.0, 1.0]], dtype=np.float32)
    value = np.zeros((2, 1), dtype=np.float32)
    near = torch_logits.copy()
    near[0, 0] = np.float32(1000.0) + np.float32(2.44140625e-4) * 2  # two float32 steps, 4.9e-4 absolute
    check = export_module.compare(_FixedModule(torch_logits, value), _FixedSession(near, value), [batch])
    assert check["within_tolerance"] and check["same_argmax"] == 2
    assert check["max_abs_diff_logits"] > 1e-5 and check["max_rel_diff"] < 1e-6
    strict = export_module.compare(
        _FixedModule(torch_logits, value), _FixedSession(near, value), [batch], rtol=0.0
    )
    assert not strict["within_tolerance"]
    swapped = torch_logits.copy()
    swapped[1] = [6.0, 5.0, 1.0]  # far outside any tolerance, and another action
    check = export_module.compare(_FixedModule(torch_logits, value), _FixedSession(swapped, value), [batch])
    assert not check["within_tolerance"] and check["same_argmax"] == 1
