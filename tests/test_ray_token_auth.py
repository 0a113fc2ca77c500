"""The README's cluster how-to with Ray's token authentication: a head started by ``ray start --head`` with
``RAY_AUTH_MODE=token``; a client with the token runs tasks, one without it gets the error naming the cause.
Slow (starts a real head node): ``python -m pytest -m slow tests/test_ray_token_auth.py``."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lastmile_env.config import REPO_ROOT

pytestmark = pytest.mark.slow

CLIENT = """
from agents.evaluation import EvaluationError, connect_ray
try:
    ray = connect_ray({address!r})
    print("RESULT", ray.get(ray.remote(lambda: 41 + 1).remote()))
except EvaluationError as exc:
    print("ERROR", exc)
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def head(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A token-authenticated head node on free ports; yields (address, token); every process of it is
    stopped by pid afterwards (``ray stop`` would stop other users' Ray too)."""
    pytest.importorskip("ray")
    ray_bin = Path(sys.executable).parent / "ray"
    port, client_port, token = _free_port(), _free_port(), secrets.token_hex(16)
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    command = [str(ray_bin), "start", "--head", f"--port={port}", f"--ray-client-server-port={client_port}"]
    command += ["--num-cpus=1", "--include-dashboard=false", "--disable-usage-stats"]
    started = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    try:
        assert started.returncode == 0, started.stderr
        yield f"127.0.0.1:{port}", token
    finally:
        pattern = f"(:|port=){port}( |$)"  # the head's own processes: they name its GCS port
        mine = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()
        for pid in (int(p) for p in mine if int(p) != os.getpid()):
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    break
                time.sleep(0.2)


def _client(address: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", CLIENT.format(address=address)],
        cwd=REPO_ROOT,
        env={**env, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=180,
    )
    return done.stdout


def test_token_authenticated_head_serves_a_client_with_the_token_only(head):
    address, token = head
    without = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    refused = _client(address, without)
    assert "ERROR cannot connect to the Ray cluster" in refused and "export RAY_AUTH_MODE=token" in refused
    allowed = _client(address, {**without, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token})
    assert "RESULT 42" in allowed, allowed
