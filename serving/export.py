"""``lastmile export``: a training checkpoint -> ``policy.onnx`` + its manifest, verified against torch.

The exported graph is ``DispatchNet`` behind its input preprocessing (every feature clipped to the
observation space's ``[-CLIP, CLIP]``), a pure function of four float32 arrays -- ``order (B, 9)``,
``vehicles (B, V, 14)``, ``global (B, 7)``, ``action_mask (B, V + 1 [+ 1])`` -- to the masked ``logits`` and
the ``value``, with the batch ``B`` and the fleet size ``V`` dynamic (the network has no layer that depends
on ``V``). The observation itself comes from the simulator (``DispatchObservation``), which the runtime
runs as well; it is not part of the graph.

Before anything is written the export checks itself: onnxruntime must reproduce torch's logits and values
within ``atol + rtol * |torch|`` (``numpy.allclose``'s rule: float32 kernels differ by a step or two, and a
step of a logit near 1,000 is 6e-5) and pick the same action (argmax) on every checked observation: random
observations (several fleet sizes and batch sizes) and observations recorded at real decision points of
``small`` and ``default`` episodes; otherwise ExportError, and no file.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
import yaml
from torch import nn

from agents.learned.model import MASKED_LOGIT as TORCH_MASKED_LOGIT
from agents.learned.model import N_GLOBAL, N_ORDER, N_VEHICLE, DispatchNet
from agents.learned.policy import LearnedPolicy
from lastmile_env.config import load_scenario
from lastmile_env.observations import CLIP, DispatchObservation
from lastmile_env.sim.simulator import Simulator
from lastmile_env.sim.world import world_for
from serving.manifest import (
    INPUT_NAMES,
    MASKED_LOGIT,
    OUTPUT_NAMES,
    SCHEMA_VERSION,
    Manifest,
    default_manifest_path,
    io_specs,
    sha256_file,
)

OPSET = 18
TOLERANCE = 1e-5  # absolute
RTOL = 1e-5  # relative to torch's value: ~80 float32 steps, far below any change a weight makes
RANDOM_FLEETS = (1, 3, 20, 57)  # fleet sizes of the random observations (the graph must not fix V)
RECORD_SCENARIOS = ("small", "default")
RECORD_DECISIONS = 24  # decision points recorded per scenario

assert TORCH_MASKED_LOGIT == MASKED_LOGIT, "serving.manifest.MASKED_LOGIT must follow agents.learned.model"


class ExportError(RuntimeError):
    """The exported model does not reproduce the checkpoint's network (or could not be exported)."""


class ExportedPolicy(nn.Module):
    """What goes into the ONNX file: input clipping, then the network; four arrays in, two out."""

    def __init__(self, net: DispatchNet) -> None:
        super().__init__()
        self.net = net

    def forward(
        self, order: torch.Tensor, vehicles: torch.Tensor, global_: torch.Tensor, action_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net(
            order.clamp(-CLIP, CLIP), vehicles.clamp(-CLIP, CLIP), global_.clamp(-CLIP, CLIP), action_mask
        )


Batch = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def random_batches(defer: bool, seed: int = 0) -> list[Batch]:
    """Random observations (features beyond the clip range included) with random valid-action masks."""
    rng = np.random.default_rng(seed)
    batches = []
    for n_vehicles in RANDOM_FLEETS:
        for size in (1, 5):
            n_actions = n_vehicles + 1 + int(defer)
            mask = (rng.uniform(size=(size, n_actions)) < 0.6).astype(np.float32)
            mask[:, n_vehicles] = 1.0  # reject is always valid
            batches.append(
                (
                    rng.normal(0.0, 3.0, (size, N_ORDER)).astype(np.float32),
                    rng.normal(0.0, 3.0, (size, n_vehicles, N_VEHICLE)).astype(np.float32),
                    rng.normal(0.0, 3.0, (size, N_GLOBAL)).astype(np.float32),
                    mask,
                )
            )
    return batches


def recorded_batches(
    policy: LearnedPolicy, scenarios: Iterable[str] = RECORD_SCENARIOS, decisions: int = RECORD_DECISIONS
) -> list[Batch]:
    """Observations of real decision points: the first ``decisions`` of a seed-0 episode of each scenario,
    played by the policy itself; one batch per scenario."""
    from agents.base import apply

    batches = []
    for name in scenarios:
        world = world_for(load_scenario(name))
        encoder = DispatchObservation(world, defer=policy.net.with_defer)
        sim = Simulator(world, seed=0)
        rows: list[dict[str, np.ndarray]] = []
        while len(rows) < decisions and sim.advance() is not None:
            obs = encoder.encode(sim)
            assert isinstance(obs, dict)
            rows.append(obs)
            apply(sim, policy.act(sim))
        batches.append(
            (
                np.stack([r["order"] for r in rows]),
                np.stack([r["vehicles"] for r in rows]),
                np.stack([r["global"] for r in rows]),
                np.stack([r["action_mask"] for r in rows]).astype(np.float32),
            )
        )
    return batches


def compare(
    module: nn.Module,
    session: ort.InferenceSession,
    batches: Sequence[Batch],
    atol: float = TOLERANCE,
    rtol: float = RTOL,
) -> dict[str, Any]:
    """Largest absolute and relative differences between torch and onnxruntime, whether every output is
    within ``atol + rtol * |torch|``, and argmax agreement, over the batches."""
    worst_logit = worst_value = worst_relative = 0.0
    rows = same_argmax = 0
    within = True
    for batch in batches:
        with torch.no_grad():
            logits, value = (t.numpy() for t in module(*(torch.from_numpy(a) for a in batch)))
        ort_logits, ort_value = session.run(list(OUTPUT_NAMES), dict(zip(INPUT_NAMES, batch, strict=True)))
        for ours, theirs in ((ort_logits, logits), (ort_value, value)):
            diff = np.abs(ours.astype(np.float64) - theirs)
            within = within and bool(np.all(diff <= atol + rtol * np.abs(theirs)))
            worst_relative = max(worst_relative, float(np.max(diff / np.maximum(np.abs(theirs), 1.0))))
        worst_logit = max(worst_logit, float(np.max(np.abs(ort_logits - logits))))
        worst_value = max(worst_value, float(np.max(np.abs(ort_value - value))))
        rows += len(logits)
        same_argmax += int(np.sum(np.argmax(ort_logits, axis=1) == logits.argmax(axis=1)))
    return {
        "observations": rows,
        "max_abs_diff_logits": worst_logit,
        "max_abs_diff_value": worst_value,
        "max_rel_diff": worst_relative,
        "within_tolerance": within,
        "same_argmax": same_argmax,
    }


def training_info(checkpoint: Path) -> dict[str, Any]:
    """The training run a checkpoint comes from: its folder, config and JSON state, where present."""
    info: dict[str, Any] = {"checkpoint": str(checkpoint.resolve())}
    run_dir = checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent
    state_path = checkpoint.with_suffix(".json")
    if not state_path.is_file():  # final.zip: the run's last checkpoint describes the same step
        states = sorted((run_dir / "checkpoints").glob("step_*.json"))
        state_path = states[-1] if states else state_path
    state: dict[str, Any] = json.loads(state_path.read_text()) if state_path.is_file() else {}
    config = state.get("config")
    if config is None and (run_dir / "config.yaml").is_file():
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
    if config is None and not state:
        return info  # a zip on its own: nothing more is known
    info.update(
        run_dir=str(run_dir.resolve()),
        run_name=run_dir.name,
        state_file=str(state_path.resolve()) if state else None,
        num_timesteps=state.get("num_timesteps"),
        saved_at=state.get("saved_at"),
        wall_time_s=state.get("wall_time_s"),
        scenario=(config or {}).get("scenario"),
        algo=((config or {}).get("algo") or {}).get("name"),
        seed=(config or {}).get("seed"),
        config=config,
    )
    return info


def _torch_export(module: ExportedPolicy, path: Path, defer: bool) -> None:
    """``torch.onnx.export`` (dynamo) with a dynamic batch and fleet size; quiet unless it fails."""
    batch, vehicles = torch.export.Dim("batch"), torch.export.Dim("vehicles")
    example = tuple(torch.from_numpy(a) for a in random_batches(defer)[3])  # batch 5, 3 vehicles
    dynamic_shapes = {
        "order": {0: batch},
        "vehicles": {0: batch, 1: vehicles},
        "global_": {0: batch},
        "action_mask": {0: batch, 1: vehicles + 1 + int(defer)},
    }
    chatter = io.StringIO()
    torch_log = logging.getLogger("torch.onnx")
    level = torch_log.level
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(chatter):
            warnings.simplefilter("ignore")
            torch_log.setLevel(logging.ERROR)  # e.g. "torchvision is not installed" on every export
            torch.onnx.export(
                module,
                example,
                str(path),
                input_names=list(INPUT_NAMES),
                output_names=list(OUTPUT_NAMES),
                dynamic_shapes=dynamic_shapes,
                opset_version=OPSET,
                dynamo=True,
                external_data=False,
            )
    except Exception as exc:
        raise ExportError(f"torch.onnx.export failed: {exc}\n{chatter.getvalue()}") from exc
    finally:
        torch_log.setLevel(level)


def export_onnx(
    checkpoint: str | Path,
    out: str | Path,
    manifest_path: str | Path | None = None,
    tolerance: float = TOLERANCE,
    record_scenarios: Iterable[str] = RECORD_SCENARIOS,
    rtol: float = RTOL,
) -> Manifest:
    """Export a checkpoint's network to ``out`` and write its manifest (default ``<out>.json``).

    Raises ExportError, writing nothing, when onnxruntime does not reproduce torch within
    ``tolerance + rtol * |torch|`` or picks another action on any checked observation.
    """
    checkpoint, out, scenarios = Path(checkpoint), Path(out), tuple(record_scenarios)
    manifest_out = Path(manifest_path) if manifest_path is not None else default_manifest_path(out)
    policy = LearnedPolicy.load(checkpoint)
    module = ExportedPolicy(policy.net).eval()
    defer = policy.net.with_defer
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        _torch_export(module, tmp, defer)
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        checks = {
            "random": compare(module, session, random_batches(defer), tolerance, rtol),
            "recorded": compare(module, session, recorded_batches(policy, scenarios), tolerance, rtol),
        }
        for name, check in checks.items():
            worst = max(check["max_abs_diff_logits"], check["max_abs_diff_value"])
            if not check["within_tolerance"]:
                raise ExportError(
                    f"onnxruntime differs from torch by {worst:.3g} (more than {tolerance:g} + "
                    f"{rtol:g} x |torch|) on the {name} observations: {check}"
                )
            if check["same_argmax"] != check["observations"]:
                raise ExportError(
                    f"onnxruntime picks another action than torch on "
                    f"{check['observations'] - check['same_argmax']} of the {name} observations: {check}"
                )
        opset = max(
            (
                o.version
                for o in onnx.load(str(tmp), load_external_data=False).opset_import
                if o.domain in ("", "ai.onnx")
            ),
            default=OPSET,
        )
        os.chmod(tmp, 0o644)  # mkstemp made it private; the model is not a secret
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    inputs, outputs, actions = io_specs(defer)
    manifest = Manifest(
        schema_version=SCHEMA_VERSION,
        model_file=out.name,
        model_sha256=sha256_file(out),
        opset=opset,
        defer=defer,
        hidden=policy.net.hidden,
        clip=CLIP,
        inputs=inputs,
        outputs=outputs,
        actions=actions,
        training=training_info(checkpoint),
        verification={"tolerance": tolerance, "rtol": rtol, "recorded_scenarios": list(scenarios), **checks},
        exported={
            "at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": ort.__version__,
        },
    )
    manifest_out.parent.mkdir(parents=True, exist_ok=True)
    manifest_out.write_text(manifest.model_dump_json(indent=2) + "\n")
    return manifest
