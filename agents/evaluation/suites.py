"""Suites: named lists of scenarios evaluated together (``configs/suite/*.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agents.evaluation.common import EvaluationError
from lastmile_env.config import REPO_ROOT, ConfigError, available_scenarios, read_yaml_mapping

SUITE_DIR = REPO_ROOT / "configs" / "suite"


def available_suites() -> list[str]:
    """Names of the suites shipped under ``configs/suite``."""
    return sorted(p.stem for p in SUITE_DIR.glob("*.yaml"))


@dataclass(frozen=True)
class Suite:
    """A named list of scenarios evaluated together (``configs/suite/*.yaml``)."""

    name: str
    description: str
    scenarios: tuple[str, ...]


def load_suite(suite: str | Path) -> Suite:
    """Load a suite by name (``"standard"``) or YAML path; unknown names (of the suite or of one of its
    scenarios) fail with the valid ones."""
    path = Path(suite)
    if path.suffix not in (".yaml", ".yml"):
        path = SUITE_DIR / f"{suite}.yaml"
        if not path.is_file():
            raise EvaluationError(
                f"unknown suite {str(suite)!r}; valid names: {', '.join(available_suites())} "
                "(or a path to a .yaml file)"
            )
    try:
        data = read_yaml_mapping(path, "suite file")
    except ConfigError as exc:
        raise EvaluationError(str(exc)) from exc
    if set(data) - {"name", "description", "scenarios"}:
        raise EvaluationError(f"suite file {path} must hold a mapping with name, description and scenarios")
    scenarios = data.get("scenarios")
    if not isinstance(scenarios, list) or not scenarios or not all(isinstance(s, str) for s in scenarios):
        raise EvaluationError(f"suite {path}: 'scenarios' must be a non-empty list of scenario names")
    if len(set(scenarios)) != len(scenarios):
        raise EvaluationError(f"suite {path}: a scenario is listed twice in {scenarios}")
    name = str(data.get("name", path.stem))
    for scenario in scenarios:
        if Path(scenario).suffix not in (".yaml", ".yml") and scenario not in available_scenarios():
            raise EvaluationError(
                f"suite {name}: unknown scenario {scenario!r}; "
                f"valid names: {', '.join(available_scenarios())}"
            )
    return Suite(name, str(data.get("description", "")), tuple(scenarios))
