"""The manifest written next to an exported ``policy.onnx``, and the checks a server runs before loading it.

The manifest is the contract between the exported network and whoever feeds it: which snapshot schema and
observation layout it was exported for (``SCHEMA_VERSION`` and the feature names of
``lastmile_env.observations``), what its inputs, outputs and actions are, the model file's sha256 and the
training run it came from. A server refuses a model whose manifest does not match the code it runs.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from lastmile_env.observations import CLIP, GLOBAL_FEATURES, ORDER_FEATURES, VEHICLE_FEATURES

SCHEMA_VERSION = 1
"""Version of the dispatch snapshot schema and observation layout shared by export, runtime and clients;
bump it whenever either changes, so that a server never feeds a model observations it was not trained on."""

MASKED_LOGIT = -1e8  # the logit of a masked action (agents.learned.model.MASKED_LOGIT, kept free of torch)
INPUT_NAMES = ("order", "vehicles", "global", "action_mask")
OUTPUT_NAMES = ("logits", "value")


class ManifestError(ValueError):
    """A model file and its manifest do not belong together or do not match this code."""


class TensorSpec(BaseModel):
    """One input or output array: symbolic shape, dtype and, for feature axes, the feature names."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    shape: list[str | int]
    dtype: str = "float32"
    features: list[str] | None = None
    meaning: str = ""


class ActionSpec(BaseModel):
    """What each index of the logits means (``V`` is the number of vehicles of the request)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    count: str  # "vehicles + 1" or "vehicles + 2"
    vehicles: str = "indices 0 .. V-1: give the order to that vehicle (the fleet's order)"
    reject: str = "index V: reject the order"
    defer: str | None = None  # "index V + 1: ..." when the network has the defer head
    masked_logit: float = MASKED_LOGIT
    decision: str = "argmax of the logits (masked actions get masked_logit, so never win)"


class Manifest(BaseModel):
    """``policy.onnx.json``: see the module docstring."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int
    model_file: str
    model_sha256: str
    opset: int
    defer: bool
    hidden: int
    clip: float = Field(description="every observation feature is clipped to [-clip, clip] inside the graph")
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]
    actions: ActionSpec
    training: dict[str, Any] = Field(default_factory=dict)
    verification: dict[str, Any] = Field(default_factory=dict)
    exported: dict[str, Any] = Field(default_factory=dict)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def default_manifest_path(model_path: str | Path) -> Path:
    """``policy.onnx`` -> ``policy.onnx.json``."""
    path = Path(model_path)
    return path.with_name(path.name + ".json")


def io_specs(defer: bool) -> tuple[dict[str, TensorSpec], dict[str, TensorSpec], ActionSpec]:
    """Inputs, outputs and actions of the exported graph, from the observation encoder's feature names."""
    actions = "vehicles + 2" if defer else "vehicles + 1"
    inputs = {
        "order": TensorSpec(shape=["batch", len(ORDER_FEATURES)], features=list(ORDER_FEATURES)),
        "vehicles": TensorSpec(
            shape=["batch", "vehicles", len(VEHICLE_FEATURES)], features=list(VEHICLE_FEATURES)
        ),
        "global": TensorSpec(shape=["batch", len(GLOBAL_FEATURES)], features=list(GLOBAL_FEATURES)),
        "action_mask": TensorSpec(
            shape=["batch", actions], meaning="1 valid, 0 masked (DispatchObservation.mask), as float32"
        ),
    }
    outputs = {
        "logits": TensorSpec(shape=["batch", actions], meaning="masked logits: vehicles, reject[, defer]"),
        "value": TensorSpec(shape=["batch", 1], meaning="the critic's value (reward units of training)"),
    }
    action_spec = ActionSpec(
        count=actions,
        defer="index V + 1: decide the order again at the next dispatch tick" if defer else None,
    )
    return inputs, outputs, action_spec


def load_manifest(model_path: str | Path, manifest_path: str | Path | None = None) -> Manifest:
    """Read and check a model's manifest: schema version, observation layout and the model file's sha256.

    Raises ManifestError naming what does not match (a model exported by other code, or a different file).
    """
    model_path = Path(model_path)
    path = Path(manifest_path) if manifest_path is not None else default_manifest_path(model_path)
    if not model_path.is_file():
        raise ManifestError(f"model file not found: {model_path}")
    if not path.is_file():
        raise ManifestError(f"manifest not found: {path} (written by `lastmile export` next to the model)")
    try:
        manifest = Manifest.model_validate_json(path.read_text())
    except ValueError as exc:
        raise ManifestError(f"{path}: not a valid model manifest: {exc}") from None
    if manifest.schema_version != SCHEMA_VERSION:
        raise ManifestError(
            f"{path}: schema version {manifest.schema_version}, this code serves version {SCHEMA_VERSION}; "
            "export the checkpoint again"
        )
    inputs, outputs, actions = io_specs(manifest.defer)
    if manifest.inputs != inputs or manifest.outputs != outputs or manifest.actions != actions:
        raise ManifestError(
            f"{path}: the model's observation layout or actions differ from lastmile_env.observations; "
            "export the checkpoint again"
        )
    if manifest.clip != CLIP:
        raise ManifestError(f"{path}: features clipped to {manifest.clip}, the encoder clips to {CLIP}")
    digest = sha256_file(model_path)
    if digest != manifest.model_sha256:
        raise ManifestError(
            f"{model_path}: sha256 {digest} does not match the manifest's {manifest.model_sha256}"
        )
    return manifest
