"""Layers only look down, and both envs pass the API checkers with their DEFAULT options."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from lastmile_env.config import REPO_ROOT

IMPORT_EVERYTHING = """
import importlib, json, pkgutil, sys
import lastmile_env
names = [m.name for m in pkgutil.walk_packages(lastmile_env.__path__, "lastmile_env.")]
for name in names:
    importlib.import_module(name)
print(json.dumps({"modules": names, "loaded": sorted(sys.modules)}))
"""


def test_the_env_package_imports_nothing_from_agents_or_serving():
    """Every module of lastmile_env imported in a fresh interpreter: no agents/ or serving/ module loaded
    (and the CLI, on top, is not part of it)."""
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_EVERYTHING], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert "lastmile_env.routing_env" in report["modules"] and "lastmile_env.solomon" in report["modules"]
    above = [m for m in report["loaded"] if m.split(".")[0] in ("agents", "serving", "lastmile_cli")]
    assert above == []


@pytest.mark.parametrize("env_id", ["LastMile-Dispatch-v0", "LastMile-Routing-v0"])
def test_both_envs_pass_the_checkers_with_default_options(env_id):
    env = gym.make(env_id)  # no options at all: the default scenario too
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the checkers' advice (e.g. on the Dict space); failures raise
        gym_check_env(env.unwrapped, skip_render_check=True)
        sb3_check_env(gym.make(env_id).unwrapped, warn=False)
