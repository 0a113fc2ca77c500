"""Load test of ``lastmile serve``: decisions per second and p50 / p99 latency at 1, 10 and 50 clients.

    python benchmarks/serve_load.py [--checkpoint RUN.zip | --model policy.onnx] [--requests 600]
                                    [--clients 1,10,50] [--workers 1,2] [--out FILE.md]

Bounded and loopback only: for each ``--workers`` value the script starts ``lastmile serve --scenario default
--workers W`` as a subprocess on a free port of 127.0.0.1 (bearer auth on, one JSON log line per decision to
a temp file), sends a fixed number of requests per concurrency level, stops the server; then it exits. The
requests are realistic snapshots, recorded at every decision point of a ``default`` episode (seed 0,
insertion heuristic: ~110 open orders mid-day), sent round robin. Clients are asyncio tasks, one keep-alive
connection each (a lean HTTP/1.1 writer and reader, so that the load generator takes little of the CPUs it
shares with the server); latency is end to end at the client. Without ``--model`` the script exports
``--checkpoint`` (default: a smoke-trained network of the production width, 64) to a temp folder first. The
server's own time per decision (``latency_ms`` in each response: snapshot -> simulator -> network -> plan)
is reported next to it."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
from fastapi import FastAPI

from agents.heuristics.rules import InsertionPolicy
from lastmile_env.config import REPO_ROOT, load_scenario
from lastmile_env.sim import Simulator, world_for
from serving.app import SETTINGS_ENV, TOKEN_ENV, app_from_env
from serving.runtime import Dispatcher
from serving.schema import DispatchRequest, DispatchResponse
from serving.snapshot import record_requests

TOKEN = "serve-load-benchmark"


@dataclass
class Level:
    clients: int
    requests: int
    seconds: float
    latencies_ms: list[float]
    server_ms: list[float]
    errors: int
    timing_ms: list[float]  # the Server-Timing header's ``total``: the server's own time per request
    server_cpu_s: float = math.nan  # CPU time the server process spent on the level
    client_cpu_s: float = math.nan  # CPU time of this process (the clients) on the level

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def percentile(self, q: float, server: bool = False) -> float:
        return float(np.percentile(self.server_ms if server else self.latencies_ms, q))

    def timing_percentile(self, q: float) -> float:
        return float(np.percentile(self.timing_ms, q)) if self.timing_ms else math.nan


HISTOGRAM_EDGES_MS = (0.5, 1, 2, 3, 4, 6, 8, 10, 15, 20, 50)


def histogram_row(label: str, values: list[float]) -> str:
    """A Markdown row: the share of requests in each bucket of ``HISTOGRAM_EDGES_MS``."""
    counts = np.histogram(values, bins=[0.0, *HISTOGRAM_EDGES_MS, math.inf])[0]
    shares = counts / max(1, len(values)) * 100
    return f"| {label} | " + " | ".join(f"{s:.1f}" if s else "" for s in shares) + " |"


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def process_tree_cpu_s(root: int) -> float:
    """User + system CPU seconds so far of a process and its live descendants (the server's supervisor and
    workers; Linux ``/proc``, nan elsewhere)."""
    stats = {}
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            stats[int(entry.name)] = fields
    if root not in stats:
        return math.nan
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, fields in stats.items() if int(fields[1]) == parent and pid not in tree]
        tree.update(children)
        frontier += children
    ticks = sum(int(stats[pid][11]) + int(stats[pid][12]) for pid in tree)
    return ticks / os.sysconf("SC_CLK_TCK")


def measure(port: int, bodies: list[bytes], clients: int, requests: int, server_pid: int) -> Level:
    """One level, with the CPU time the server and the clients spent on it."""
    server_before, client_before = process_tree_cpu_s(server_pid), time.process_time()
    level = asyncio.run(run_level("127.0.0.1", port, bodies, clients, requests))
    level.server_cpu_s = process_tree_cpu_s(server_pid) - server_before
    level.client_cpu_s = time.process_time() - client_before
    return level


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def prepare_model(args: argparse.Namespace, workdir: Path) -> tuple[Path, str]:
    """The ONNX model to serve and a description of where it came from."""
    if args.model:
        return Path(args.model), f"`{args.model}`"
    from agents.learned.training import load_experiment, train
    from serving.export import export_onnx

    checkpoint = args.checkpoint
    source = f"`{checkpoint}`"
    if checkpoint is None:
        smoke = REPO_ROOT / "configs" / "experiment" / "smoke.yaml"
        exp = load_experiment(smoke, ["model.hidden=64", "eval.every=0"], total_timesteps=128)
        checkpoint = train(exp, workdir / "runs", progress=False) / "final.zip"
        source = "a smoke-trained network (hidden 64, the production width)"
    out = workdir / "policy.onnx"
    export_onnx(checkpoint, out)
    return out, source


def floor_app() -> FastAPI:
    """The HTTP floor: ``lastmile serve``'s app (middleware, auth, one-pass parsing and validation of the
    request, response serialization) with the decision taken out, answering a fixed rejection. Served by
    uvicorn with ``--factory`` in its own processes; the settings come from the environment as for
    ``serving.app.app_from_env``."""

    def no_decision(
        self: Dispatcher, request: DispatchRequest, request_id: str = "", log_decision: bool = True
    ) -> DispatchResponse:
        return DispatchResponse.model_construct(
            request_id=request_id,
            decision="reject",
            policy="learned",
            model_sha256=self.manifest.model_sha256,
            latency_ms=0.0,
        )

    Dispatcher.decide = no_decision  # type: ignore[method-assign]
    return app_from_env()


def start_server(
    model: Path, port: int, workers: int, log_path: Path, floor: bool = False
) -> subprocess.Popen[bytes]:
    """``lastmile serve --workers W`` on the port (or the HTTP floor app, ``floor_app``), once healthy."""
    command = [sys.executable, "-m", "lastmile_cli", "serve", "--model", str(model)]
    command += ["--scenario", "default", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--workers", str(workers)]
    settings = {"model": str(model), "scenario": "default", "manifest": None, "max_body_bytes": 1 << 20}
    if floor:
        command = [sys.executable, "-m", "uvicorn", "serve_load:floor_app", "--factory", "--app-dir"]
        command += [str(Path(__file__).parent), "--port", str(port), "--workers", str(workers)]
        command += ["--log-level", "warning", "--no-access-log"]
    env = {**os.environ, TOKEN_ENV: TOKEN, SETTINGS_ENV: json.dumps({**settings, "log_level": "warning"})}
    with open(log_path, "wb") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT)
    deadline = time.monotonic() + 120.0
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited ({server.returncode}); see {log_path}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1.0).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.2)
    server.terminate()
    raise RuntimeError(f"the server did not come up in 120 s; see {log_path}")


class Connection:
    """One keep-alive HTTP/1.1 connection on asyncio streams: a load generator that costs the machine little
    CPU per request (the clients share the CPUs with the server; a full HTTP client costs ~1.5 ms each)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str) -> None:
        self.reader, self.writer = reader, writer
        self.head = (
            f"POST /v1/dispatch HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Content-Type: application/json\r\nContent-Length: "
        ).encode()

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer, f"{host}:{port}")

    async def post(self, body: bytes) -> tuple[int, bytes, float | None]:
        """Send one dispatch request; returns the status code, the response body and the Server-Timing
        header's ``total`` in ms (None without it)."""
        self.writer.write(self.head + str(len(body)).encode() + b"\r\n\r\n" + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = next(
            int(line.split(b":", 1)[1]) for line in lines if line.lower().startswith(b"content-length:")
        )
        timing = next((line for line in lines if line.lower().startswith(b"server-timing:")), None)
        total = None
        if timing is not None:
            parts = dict(p.strip().split(b";dur=") for p in timing.split(b":", 1)[1].split(b","))
            total = float(parts[b"total"])
        return status, await self.reader.readexactly(length), total

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


async def run_level(host: str, port: int, bodies: list[bytes], clients: int, requests: int) -> Level:
    """``requests`` decisions sent by ``clients`` concurrent connections, each waiting for its answer."""
    counter = itertools.count()
    latencies: list[float] = []
    server_ms: list[float] = []
    timing_ms: list[float] = []
    errors = 0
    connections = [await Connection.open(host, port) for _ in range(clients)]

    async def client(connection: Connection) -> None:
        nonlocal errors
        while (i := next(counter)) < requests:
            started = time.perf_counter()
            status, body, total = await connection.post(bodies[i % len(bodies)])
            latencies.append((time.perf_counter() - started) * 1e3)
            if total is not None:
                timing_ms.append(total)
            answer = json.loads(body) if status == 200 else {}
            if answer.get("policy") != "learned":
                errors += 1
            else:
                server_ms.append(answer["latency_ms"])

    started = time.perf_counter()
    await asyncio.gather(*(client(c) for c in connections))
    seconds = time.perf_counter() - started
    for connection in connections:
        await connection.close()
    return Level(clients, requests, seconds, latencies, server_ms, errors, timing_ms)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model", help="an exported policy.onnx (its manifest next to it)")
    source.add_argument("--checkpoint", help="a training zip to export first")
    parser.add_argument("--requests", type=int, default=600, help="requests per concurrency level")
    parser.add_argument("--clients", default="1,10,50", help="concurrency levels")
    parser.add_argument("--workers", default="1,2", help="server processes, one server per value")
    parser.add_argument(
        "--floor", default="1,2", help="worker counts to measure the HTTP floor at (no decision; '' for none)"
    )
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "serve_load.md")
    args = parser.parse_args()
    levels = [int(c) for c in args.clients.split(",")]
    worker_counts = [int(w) for w in args.workers.split(",")]
    floor_counts = [int(w) for w in args.floor.split(",")] if args.floor else []

    results: list[tuple[int, Level]] = []  # (server workers, level)
    floors: list[tuple[int, Level]] = []  # the same for the HTTP floor
    log_lines = 0
    with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp:
        workdir = Path(tmp)
        model, model_source = prepare_model(args, workdir)
        requests = record_requests(Simulator(world_for(load_scenario("default")), 0), InsertionPolicy())
        bodies = [json.dumps(r).encode() for r in requests]
        load_before = os.getloadavg()
        for floor, workers in [(False, w) for w in worker_counts] + [(True, w) for w in floor_counts]:
            port, log_path = free_port(), workdir / f"server-{workers}-{floor}.log"
            server = start_server(model, port, workers, log_path, floor)
            try:
                # Warm-up: connections, caches, and every worker process past its first requests.
                asyncio.run(run_level("127.0.0.1", port, bodies, 2 * workers, 50 * workers))
                measured = [measure(port, bodies, c, args.requests, server.pid) for c in levels]
            finally:
                server.terminate()
                server.wait(timeout=30)
            (floors if floor else results).extend((workers, level) for level in measured)
            log_lines += sum(1 for line in log_path.open() if line.startswith('{"event": "decision"'))

    open_orders = [len(r["orders"]) for r in requests]
    header = [
        "| workers | clients | requests | errors | decisions/s | p50 ms | p99 ms | server p50 ms "
        "| server p99 ms | Server-Timing p50 ms | Server-Timing p99 ms | server CPU ms/req "
        "| client CPU ms/req |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def row(workers: int, level: Level) -> str:
        server_cpu, client_cpu = (
            cpu / level.requests * 1e3 for cpu in (level.server_cpu_s, level.client_cpu_s)
        )
        return (
            f"| {workers} | {level.clients} | {level.requests} | {level.errors} | {level.rate:,.0f} | "
            f"{level.percentile(50):.1f} | {level.percentile(99):.1f} | "
            f"{level.percentile(50, server=True):.2f} | {level.percentile(99, server=True):.2f} | "
            f"{level.timing_percentile(50):.2f} | {level.timing_percentile(99):.2f} | "
            f"{server_cpu:.2f} | {client_cpu:.2f} |"
        )

    lines = [
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        f"load average before the run {load_before[0]:.2f} (other processes share the CPUs).",
        f"Server: `lastmile serve --scenario default --workers W` (uvicorn with uvloop and httptools, auth "
        f"on, one JSON log line per decision: {log_lines} written); model: {model_source}.",
        f"Requests: {len(bodies)} snapshots recorded at the decision points of a `default` episode "
        f"(20 vans; {statistics.mean(open_orders):.0f} open orders on average, up to {max(open_orders)}; "
        f"{statistics.mean(len(b) for b in bodies) / 1024:.0f} kB on average), round robin; "
        f"{args.requests} requests per level after a warm-up. Clients on the same machine (asyncio, one "
        "keep-alive connection each, each sends its next request as soon as it has its answer).",
        "",
        *header,
    ]
    lines += [row(workers, level) for workers, level in results]
    lines += [
        "",
        "p50 / p99: end-to-end latency at the client. server p50 / p99: the server's own time per decision "
        "(`latency_ms`: rebuilding the simulator from the snapshot, encoding, the network, applying the "
        "decision), without JSON parsing, validation and HTTP. Server-Timing: the header every response "
        "carries, `total` = the route's own time (reading and validating the body, the decision, the "
        "response), without the wait for the event loop and the kernel. server / client CPU: CPU time of "
        "the server processes / of the clients (this process) per request, over the level.",
    ]
    if floors:
        lines += [
            "",
            "HTTP floor, same run: the same app (middleware, auth, one-pass parsing and validation of the "
            "same requests, response) with the decision taken out (`floor_app` in this script):",
            "",
            *header,
            *(row(workers, level) for workers, level in floors),
        ]
    edges = ["< 0.5", *(f"< {e:g}" for e in HISTOGRAM_EDGES_MS[1:]), f">= {HISTOGRAM_EDGES_MS[-1]:g}"]
    lines += [
        "",
        "Server-Timing `total` per request, % of the level's requests in each bucket (ms):",
        "",
        "| server, clients | " + " | ".join(edges) + " |",
        "|---|" + "---:|" * len(edges),
        *(histogram_row(f"{w} worker(s), {lv.clients}", lv.timing_ms) for w, lv in results),
        *(histogram_row(f"floor {w} worker(s), {lv.clients}", lv.timing_ms) for w, lv in floors),
    ]
    at_10 = [(w, level) for w, level in results if level.clients == 10]
    floor_at_10 = {w: level for w, level in floors if level.clients == 10}
    for workers, level in at_10:
        server_p99, p99 = level.timing_percentile(99), level.percentile(99)
        floor = floor_at_10.get(workers)
        versus = (
            f"end-to-end p99 {p99:.1f} ms vs the HTTP floor's {floor.percentile(99):.1f} ms "
            f"({p99 / floor.percentile(99):.2f}x; target within 1.5x: "
            f"**{'met' if p99 <= 1.5 * floor.percentile(99) else 'missed'}**)"
            if floor is not None
            else f"end-to-end p99 {p99:.1f} ms (no floor measured at {workers} worker(s))"
        )
        lines += [
            "",
            f"{workers} worker(s), 10 clients: server-side p99 (Server-Timing) {server_p99:.2f} ms (target "
            f"< 10 ms: **{'met' if server_p99 < 10.0 else 'missed'}**); {versus}.",
        ]
    table = "\n".join(lines)
    print(table)
    command = "python benchmarks/serve_load.py " + " ".join(
        f"--{k} {v}"
        for k, v in (
            ("model", args.model),
            ("checkpoint", args.checkpoint),
            ("requests", args.requests),
            ("workers", args.workers),
            ("floor", args.floor),
        )
        if v is not None
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        f"# Dispatch server load\n\nCommand: `{command} --clients {args.clients}`\n\n{table}\n"
    )
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
