"""The shipped best learned dispatch policy, by one name: ``learned``.

``experiments/dispatch/learned.yaml`` says what ``learned`` is: a policy spec as ``evaluate.py`` takes it
(a model zip, or a composition such as ``model.zip+reopt``), with model paths relative to the repository
root, and one line on where it comes from. ``evaluate.py --policies learned``, ``lastmile demo`` and
anything else that wants "the best learned policy" read it here, so shipping a better one is a change of
that file alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from lastmile_env.config import REPO_ROOT, ConfigError, read_yaml_mapping

SHIPPED_FILE = REPO_ROOT / "experiments" / "dispatch" / "learned.yaml"
NAME = "learned"


@dataclass(frozen=True)
class ShippedPolicy:
    """``spec``: the policy spec with absolute model paths; ``listed``: as the manifest lists it (paths
    relative to the repository root); ``description``: what it is, in a line."""

    spec: str
    listed: str
    description: str


def shipped_learned() -> ShippedPolicy:
    """The shipped best learned dispatch policy; ConfigError names a missing or broken manifest or model."""
    data = read_yaml_mapping(SHIPPED_FILE, "the shipped learned policy manifest")
    spec, description = data.get("policy"), data.get("description", "")
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"{SHIPPED_FILE}: 'policy' must be a policy spec, got {spec!r}")
    parts = [_model_path(part) if part.endswith(".zip") else part for part in spec.strip().split("+")]
    return ShippedPolicy("+".join(parts), spec.strip(), str(description))


def _model_path(listed: str) -> str:
    """A model file the manifest lists relative to the repository root, as an absolute path; ConfigError
    when it is not there."""
    path = REPO_ROOT / listed
    if not path.is_file():
        raise ConfigError(f"{SHIPPED_FILE}: model {listed} not found under {REPO_ROOT}")
    return str(path)


def shipped_learned_wave() -> str:
    """The shipped best learned wave (when-to-dispatch) policy, ``wave_policy`` of the same manifest: a wave
    policy name or a model file (``.pt``, made absolute); what ``learned`` plays on wave days (the EURO
    Meets NeurIPS 2022 benchmark). ConfigError names a missing entry or model."""
    data = read_yaml_mapping(SHIPPED_FILE, "the shipped learned policy manifest")
    spec = data.get("wave_policy")
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"{SHIPPED_FILE}: 'wave_policy' must be a wave policy name or model, got {spec!r}")
    spec = spec.strip()
    return _model_path(spec) if spec.endswith(".pt") else spec
