"""The dispatch server over real HTTP (uvicorn on 127.0.0.1, a free port): auth, validation, size limit,
fallback, health, manifest, decision logs, parity with the in-process policy, and a torch-free runtime."""

from __future__ import annotations

import copy
import json
import math
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch

from agents.base import DEFER, apply, run_episode
from agents.heuristics.reopt import ReoptPolicy
from agents.heuristics.rules import InsertionPolicy
from agents.learned.policy import LearnedPolicy
from lastmile_env.config import REPO_ROOT, load_scenario
from lastmile_env.observations import DispatchObservation
from lastmile_env.sim import Simulator
from serving.app import TOKEN_ENV, create_app, resolve_token, running
from serving.runtime import Dispatcher
from serving.schema import DispatchRequest
from serving.snapshot import apply_response, record_requests, snapshot_request
from tests.test_export import export_smoke_model
from tests.test_vehicle_modes import MIXED

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_BODY = 64 * 1024


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(checkpoint, policy.onnx), shared with test_export within a session."""
    return export_smoke_model(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def dispatcher(model: tuple[Path, Path]) -> Dispatcher:
    d = Dispatcher(model[1], "small")
    d.warm_up()
    return d


@pytest.fixture(scope="module")
def client(dispatcher: Dispatcher) -> Iterator[httpx.Client]:
    """An HTTP client of a server running in a thread for this module, with auth on."""
    app = create_app(dispatcher, token=TOKEN, max_body_bytes=MAX_BODY)
    with running(app) as base_url, httpx.Client(base_url=base_url, headers=AUTH, timeout=10.0) as http:
        yield http


@pytest.fixture
def request_body(dispatcher: Dispatcher) -> dict[str, Any]:
    """A realistic snapshot: the 12th decision of a small episode (vehicles busy, plans with stops)."""
    body = record_requests(Simulator(dispatcher.world, 3), InsertionPolicy(), limit=12)[-1]
    assert body["orders"] and any(v["stops"] for v in body["vehicles"])
    return body


def test_health_is_open_and_names_the_model(client, dispatcher):
    response = httpx.get(client.base_url.join("/healthz"))
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "scenario": "small",
        "model_sha256": dispatcher.manifest.model_sha256,
        "schema_version": 1,
    }


def test_model_endpoint_serves_the_manifest(client, model):
    response = client.get("/v1/model")
    assert response.status_code == 200
    manifest = json.loads(model[1].with_name("policy.onnx.json").read_text())
    assert response.json() == {
        **manifest,
        "warnings": [],
        "reoptimize_every_min": None,
    }  # on its training scenario


def test_scenario_and_openapi(client):
    info = client.get("/v1/scenario").json()
    assert [v["id"] for v in info["fleet"]] == ["v0", "v1", "v2"] and info["centers"][0]["index"] == 0
    schema = client.get("/openapi.json").json()
    assert "/v1/dispatch" in schema["paths"] and "DispatchRequest" in schema["components"]["schemas"]


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}], ids=str
)
def test_auth_is_required_on_v1(client, request_body, headers):
    with httpx.Client(base_url=client.base_url, headers=headers) as anonymous:
        for response in (anonymous.get("/v1/model"), anonymous.post("/v1/dispatch", json=request_body)):
            assert response.status_code == 401
            assert response.headers["www-authenticate"] == "Bearer"


def test_token_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, "from-env")
    assert resolve_token(None) == "from-env" and resolve_token("flag") == "flag"
    monkeypatch.setenv(TOKEN_ENV, "")
    assert resolve_token(None) is None


def test_decision_is_the_model_s_with_plan_eta_and_log(client, dispatcher, request_body, caplog):
    caplog.set_level("INFO", logger="lastmile.serving.decisions")
    response = client.post("/v1/dispatch", json=request_body, headers={"X-Request-ID": "req-42"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["request_id"] == "req-42" and response.headers["x-request-id"] == "req-42"
    assert body["policy"] == "learned" and body["fallback_reason"] is None and body["decision"] == "assign"
    in_process = dispatcher.decide(DispatchRequest.model_validate(request_body), log_decision=False)
    assert body == {**in_process.model_dump(), "request_id": "req-42", "latency_ms": body["latency_ms"]}

    # The plan and ETA are the simulator's: the same as applying the decision to the live simulator.
    sim = Simulator(dispatcher.world, 3)
    record_requests(sim, InsertionPolicy(), limit=11)
    sim.advance()
    assert snapshot_request(sim) == request_body
    order = sim.current
    vehicle = sim.vehicles[apply_response(sim, body)]
    plan = ([vehicle.current] if vehicle.current else []) + vehicle.route
    assert order is not None and body["eta_min"] == order.promised_eta_min
    assert [(s["order_id"], s["kind"]) for s in body["stops"]] == [
        (f"o{s.order}", "pickup" if s.kind == 0 else "delivery") for s in plan
    ]

    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "lastmile.serving.decisions"]
    logged = next(line for line in lines if line["request_id"] == "req-42")
    assert logged["vehicle"] == body["vehicle_id"] and logged["policy"] == "learned"
    assert logged["latency_ms"] > 0 and logged["decision"] == "assign"


def mutate(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``body`` with the dotted ``path`` set (``vehicles.0.load``)."""
    out = copy.deepcopy(body)
    *parents, last = path.split(".")
    node: Any = out
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    node[int(last) if last.isdigit() else last] = value
    return out


def busy_vehicle(body: dict[str, Any]) -> int:
    return next(i for i, v in enumerate(body["vehicles"]) if v["stops"])


def wrong_load(body: dict[str, Any]) -> dict[str, Any]:
    """The load of a vehicle off by one from the parcels its plan says are on board."""
    i = busy_vehicle(body)
    load = body["vehicles"][i]["load"]
    return mutate(
        body, f"vehicles.{i}.load", load + 1 if load < body["vehicles"][i]["capacity"] else load - 1
    )


def as_return(body: dict[str, Any], **promise: Any) -> dict[str, Any]:
    """The new order as a return with the given promise (no window, no deadline when none is given)."""
    new = {k: v for k, v in body["new_order"].items() if k not in ("deadline_min", "window")}
    return {**body, "new_order": {**new, "kind": "return", **promise}}


def without_promise(body: dict[str, Any]) -> dict[str, Any]:
    new = {k: v for k, v in body["new_order"].items() if k not in ("deadline_min", "window")}
    return {**body, "new_order": new}


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        (lambda b: mutate(b, "vehicles.0.id", "v99"), "vehicles[0].id", "unknown vehicle"),
        (lambda b: mutate(b, "vehicles.1.id", "v0"), "vehicles[1].id", "listed twice"),
        (lambda b: mutate(b, "vehicles.0.load", 11), "vehicles[0].load", "exceeds the capacity"),
        (lambda b: mutate(b, "vehicles.0.capacity", 12), "vehicles[0].capacity", "capacity 10"),
        (lambda b: mutate(b, "vehicles.0.type", "truck"), "vehicles[0].type", "'van'"),
        (lambda b: mutate(b, "vehicles.0.node", 987654), "vehicles[0].node", "not on the scenario's graph"),
        (lambda b: mutate(b, "new_order.node", "nowhere"), "new_order.node", "not on the scenario's graph"),
        (lambda b: mutate(b, "new_order.center", 5), "new_order.center", "not a center"),
        (lambda b: mutate(b, "now_min", -1.0), "now_min", "greater than or equal to 0"),
        (lambda b: mutate(b, "new_order.size", "big"), "new_order.size", "integer"),
        (lambda b: mutate(b, "vehicles.0.free_at_min", math.nan), "vehicles[0].free_at_min", "finite"),
        (without_promise, "new_order", "exactly one of deadline_min"),
        (as_return, "new_order.window", "a return needs its collection window"),
        (
            lambda b: as_return(b, window={"start_min": 300, "end_min": 360}, deadline_min=400),
            "new_order.deadline_min",
            "give no deadline_min",
        ),
        (lambda b: mutate(b, "orders.0.kind", "exchange"), "orders[0].kind", "'delivery' or 'return'"),
        (
            lambda b: mutate(b, f"vehicles.{busy_vehicle(b)}.stops.0.order_id", "ghost"),
            "stops[0].order_id",
            "unknown order 'ghost'",
        ),
        (wrong_load, "load", "the parcels on board"),
        (
            lambda b: {**b, "orders": [*b["orders"], {**b["orders"][0], "id": "lost"}]},
            "orders[",
            "no vehicle",
        ),
        (lambda b: mutate(b, "counters.orders_arrived", 1), "counters.orders_arrived", "fewer than"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_inconsistent_requests_get_422_naming_the_field(client, request_body, change, field, message):
    response = client.post(
        "/v1/dispatch",
        content=json.dumps(change(request_body)),  # json.dumps writes NaN as the (non-standard) literal
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text
    problems = response.json()["detail"]
    assert any(field in p["field"] and message in p["msg"] for p in problems), problems
    assert client.get("/healthz").status_code == 200


def test_simulator_invariant_errors_are_422_with_their_message(client, dispatcher):
    """Two pickups of 6 on a van of 10: only the simulator's invariant check sees the overload."""
    depot, address = dispatcher.node_id(0), dispatcher.node_id(int(dispatcher.world.addresses[0]))
    order = {"center": 0, "node": address, "size": 6, "ready_min": 0, "earliest_min": 0, "due_min": 100}
    orders = [{**order, "id": name, "service_min": 2} for name in ("a", "b")]
    overloaded = [{"order_id": o, "kind": k} for k in ("pickup", "delivery") for o in ("a", "b")]
    body = {
        "now_min": 0,
        "vehicles": [
            {"id": f"v{i}", "capacity": 10, "node": depot, "load": 0, "stops": overloaded if i == 0 else []}
            for i in range(3)
        ],
        "orders": orders,
        "new_order": {"node": address, "size": 1, "deadline_min": 120},
    }
    response = client.post("/v1/dispatch", json=body)
    assert response.status_code == 422
    problem = response.json()["detail"][0]
    assert "InvariantError" in problem["msg"] and "capacity 10" in problem["msg"]


def test_malformed_json_is_422(client):
    response = client.post("/v1/dispatch", content=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 422


def test_bodies_over_the_limit_get_413(client, request_body):
    padded = {**request_body, "orders": request_body["orders"] * 0}
    big = json.dumps(padded).encode() + b" " * MAX_BODY
    response = client.post("/v1/dispatch", content=big, headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and "exceeds" in response.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit applies as the body streams in
        yield json.dumps(padded).encode()
        for _ in range(MAX_BODY // 1024 + 1):
            yield b" " * 1024

    response = client.post("/v1/dispatch", content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert client.get("/healthz").status_code == 200


def test_fleet_not_served_by_the_model_falls_back_to_insertion(client, dispatcher, request_body):
    """A vehicle left out of the request (with its orders): the insertion heuristic decides, and says so."""
    dropped = request_body["vehicles"][2]
    gone = {s["order_id"] for s in [*dropped["stops"], *filter(None, [dropped.get("current_stop")])]}
    partial = {
        **request_body,
        "vehicles": request_body["vehicles"][:2],
        "orders": [o for o in request_body["orders"] if o["id"] not in gone],
    }
    response = client.post("/v1/dispatch", json=partial)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["policy"] == "insertion"
    assert "v2" in body["fallback_reason"] and "whole fleet" in body["fallback_reason"]
    snap = dispatcher.snapshot(DispatchRequest.model_validate(partial))
    expected = InsertionPolicy().act(snap.sim)
    assert body["vehicle_id"] == (snap.vehicle_ids[expected] if expected >= 0 else None)


def test_a_failing_model_falls_back_to_insertion(client, dispatcher, request_body, monkeypatch):
    class Broken:
        def run(self, *args: Any) -> None:
            raise RuntimeError("no kernel for this input")

    monkeypatch.setattr(dispatcher, "session", Broken())
    body = client.post("/v1/dispatch", json=request_body).json()
    assert body["policy"] == "insertion" and "model failed" in body["fallback_reason"]
    assert "no kernel for this input" in body["fallback_reason"]


def test_defer_answers_when_to_ask_again(dispatcher, request_body, monkeypatch):
    """A network with the defer action: the order comes back at the next dispatch tick."""
    monkeypatch.setattr(dispatcher, "_model_action", lambda sim: (DEFER, None))
    response = dispatcher.decide(DispatchRequest.model_validate(request_body), log_decision=False)
    tick = dispatcher.config.dispatch.tick_min
    assert response.decision == "defer" and response.vehicle_id is None and response.stops == []
    assert response.decide_again_at_min == (math.floor(request_body["now_min"] / tick) + 1) * tick


def test_http_replay_makes_the_in_process_policy_s_decisions(client, dispatcher, model):
    """A seeded small episode played through the server decides like ``LearnedPolicy`` in process.

    At every decision point of the replay the server's decision equals ``LearnedPolicy.act`` on the same
    state. The one exception is a tie between vehicles whose observations are identical (e.g. idle at the
    same center): their logits are equal, but torch's CPU kernels return them a few 1e-10 apart, so the
    in-process argmax picks by float noise, while onnxruntime returns exact ties and argmax the first. Tied
    vehicles are interchangeable, so the whole episode played by the server and the one played by the
    in-process policy (independently, same seed) end with the same outcome for every order.
    """
    torch.set_num_threads(1)
    policy = LearnedPolicy.load(model[0])
    encoder = DispatchObservation(dispatcher.world)
    seed = 0
    replay = Simulator(dispatcher.world, seed)
    decisions = ties = 0
    while replay.advance() is not None:
        expected, logits = policy.act(replay), policy.logits(replay)
        observed = encoder.encode(replay)
        assert isinstance(observed, dict)
        response = client.post("/v1/dispatch", json=snapshot_request(replay))
        assert response.status_code == 200 and response.json()["policy"] == "learned"
        decided = apply_response(replay, response.json())
        decisions += 1
        if decided != expected:  # only a tie between identical vehicles
            ties += 1
            assert decided >= 0 and expected >= 0, (decided, expected)
            assert np.array_equal(observed["vehicles"][decided], observed["vehicles"][expected])
            assert abs(float(logits[decided]) - float(logits[expected])) < 1e-6
    assert decisions > 20 and ties <= decisions // 10

    reference = run_episode(Simulator(dispatcher.world, seed), policy)
    outcome = [(o.status, o.promised_eta_min, o.delivered_min) for o in replay.orders]
    assert outcome == [(o.status, o.promised_eta_min, o.delivered_min) for o in reference.orders]
    assert replay.summary()["cost"] == pytest.approx(reference.summary()["cost"], rel=1e-12)


def test_default_scenario_parity_in_process(model):
    """The dispatcher on ``default`` (20 vans, 2 centers): the first 60 decisions equal LearnedPolicy's."""
    dispatcher = Dispatcher(model[1], "default")
    policy = LearnedPolicy.load(model[0])
    sim = Simulator(dispatcher.world, 1)
    for _ in range(60):
        assert sim.advance() is not None
        expected = policy.act(sim)
        response = dispatcher.decide(
            DispatchRequest.model_validate(snapshot_request(sim)), log_decision=False
        )
        assert apply_response(sim, response.model_dump()) == expected


def test_runtime_imports_neither_torch_nor_sb3(model):
    """The runtime's whole import chain (and a decision) in a fresh interpreter: no torch, no SB3."""
    script = (
        "import sys\n"
        "from serving.app import create_app\n"
        "from serving.runtime import Dispatcher\n"
        f"d = Dispatcher({str(model[1])!r}, 'small')\n"
        "d.warm_up()\n"
        "create_app(d)\n"
        "heavy = ('torch', 'stable_baselines3', 'sb3_contrib')\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in heavy)\n"
        "print('LOADED', bad)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "LOADED []" in result.stdout


def test_serve_cli_with_two_worker_processes(model, request_body):
    """``lastmile serve --workers 2``: two processes behind one port answer alike; the token comes from the
    environment; SIGTERM stops the supervisor and its workers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "lastmile_cli", "serve", "--model", str(model[1])]
    command += ["--scenario", "small", "--port", str(port), "--workers", "2"]
    server = subprocess.Popen(
        command, cwd=REPO_ROOT, env={**os.environ, TOKEN_ENV: TOKEN}, stderr=subprocess.PIPE, text=True
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120.0
        while True:
            assert server.poll() is None, server.communicate()[1]
            try:
                if httpx.get(f"{base}/healthz", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.2)
        with httpx.Client(base_url=base, headers=AUTH, timeout=30.0) as http:
            answers = [http.post("/v1/dispatch", json=request_body) for _ in range(6)]
            unauthorized = http.post("/v1/dispatch", json=request_body, headers={"Authorization": "x"})
        assert unauthorized.status_code == 401
        assert {r.status_code for r in answers} == {200}
        decisions = {(r.json()["decision"], r.json()["vehicle_id"], r.json()["eta_min"]) for r in answers}
        assert len(decisions) == 1
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert server.stderr is not None
    loaded = set(re.findall(r"process (\d+): model ", server.stderr.read()))
    assert len(loaded) == 2, loaded  # one line per worker process


def test_serve_cli_rejects_zero_workers(model):
    result = subprocess.run(
        [sys.executable, "-m", "lastmile_cli", "serve", "--model", str(model[1]), "--workers", "0"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "workers must be >= 1" in result.stderr


def return_body(dispatcher: Dispatcher) -> dict[str, Any]:
    """Every van idle at center 0; v0 plans an open return "r" (collected at one address in [20, 80], back
    to center 0); the new order "n" is a return at another address in [30, 90]."""
    world = dispatcher.world
    depot = dispatcher.node_id(0)
    first, second = (dispatcher.node_id(int(a)) for a in world.addresses[:2])
    ret = {"id": "r", "kind": "return", "center": 0, "node": first, "size": 2, "ready_min": 20,
           "earliest_min": 20, "due_min": 80, "service_min": 3}  # fmt: skip
    plan = [{"order_id": "r", "kind": "pickup"}, {"order_id": "r", "kind": "delivery"}]
    return {
        "now_min": 10,
        "vehicles": [
            {"id": f"v{i}", "capacity": 10, "node": depot, "load": 0, "stops": plan if i == 0 else []}
            for i in range(world.n_vehicles)
        ],
        "orders": [ret],
        "new_order": {"id": "n", "kind": "return", "node": second, "size": 1,
                      "window": {"start_min": 30, "end_min": 90}},
    }  # fmt: skip


def test_a_return_is_decided_and_its_stops_planned(client, dispatcher, monkeypatch):
    """Returns in the snapshot: collected at the customer's node (pickup), dropped at the center."""
    body = return_body(dispatcher)
    response = client.post("/v1/dispatch", json=body)
    assert response.status_code == 200, response.text

    world = dispatcher.world
    snap = dispatcher.snapshot(DispatchRequest.model_validate(body))
    first, second = (int(a) for a in world.addresses[:2])
    new_center = int(world.nearest_depot[second])
    assert [(o.is_return, o.center, o.loc, o.ready_min, o.due_min) for o in snap.sim.orders] == [
        (True, first, 0, 20.0, 80.0),
        (True, second, new_center, 30.0, 90.0),
    ]

    monkeypatch.setattr(dispatcher, "_model_action", lambda sim: (0, None))  # v0: both returns on one van
    decided = dispatcher.decide(DispatchRequest.model_validate(body), log_decision=False)
    assert decided.decision == "assign" and decided.vehicle_id == "v0"
    stops = {(s.order_id, s.kind): s for s in decided.stops}
    assert set(stops) == {("r", "pickup"), ("r", "delivery"), ("n", "pickup"), ("n", "delivery")}
    assert (stops["r", "pickup"].node, stops["r", "delivery"].node) == (
        body["orders"][0]["node"],
        body["vehicles"][0]["node"],
    )
    assert stops["n", "pickup"].node == body["new_order"]["node"]
    assert stops["n", "delivery"].node == dispatcher.node_id(new_center)
    order = [(s.order_id, s.kind) for s in decided.stops]
    for oid in "rn":  # collected before it is dropped, in its window
        assert order.index((oid, "pickup")) < order.index((oid, "delivery"))
    assert (
        30.0 <= stops["n", "pickup"].planned_min <= 90.0 and 20.0 <= stops["r", "pickup"].planned_min <= 80.0
    )
    assert decided.eta_min == stops["n", "pickup"].planned_min  # a return's ETA: its collection


def test_snapshots_with_returns_rebuild_the_live_decision_point(model):
    """On small with 30% returns, every decision point of a day as a snapshot: the same observation, plans
    and insertion options as the live simulator, and the model's decision (up to ties of identical vans)."""
    from lastmile_env.config import load_scenario

    dispatcher = Dispatcher(model[1], load_scenario("small", {"orders.returns_share": 0.3}))
    policy = LearnedPolicy.load(model[0])
    sim = Simulator(dispatcher.world, 1)
    returns = 0
    while sim.advance() is not None:
        request = DispatchRequest.model_validate(snapshot_request(sim))
        snap = dispatcher.snapshot(request)
        rebuilt, ids = snap.sim, snap.order_ids  # the snapshot numbers its orders afresh
        live, again = dispatcher.observe(sim), dispatcher.observe(rebuilt)
        assert all(np.array_equal(live[k], again[k]) for k in live)
        for v in sim.vehicles:
            assert rebuilt.plan(v.id).cost == pytest.approx(sim.plan(v.id).cost, rel=1e-12)
            got = [(s.kind, ids[s.order], s.loc) for s in rebuilt.vehicles[v.id].route]
            assert got == [(s.kind, f"o{s.order}", s.loc) for s in v.route]
        returns += sim.current.is_return
        expected = policy.act(sim)
        decided = apply_response(sim, dispatcher.decide(request, log_decision=False).model_dump())
        if decided != expected:
            assert decided >= 0 and expected >= 0
            assert np.array_equal(live["vehicles"][0][decided], live["vehicles"][0][expected])
    assert returns > 3


# ----------------------------------------------------------------------------------- battery vehicles
MIXED_FLEET = dict(MIXED, **{"orders.returns_share": 0.3})  # vans, bikes and a drone (4 km range), returns


@pytest.fixture(scope="module")
def mixed(model: tuple[Path, Path]) -> Dispatcher:
    """``small`` with vans, cargo bikes and a drone (v5: one parcel, 4 km per charge, 20 min to recharge),
    and returns (collected at the customer: the drone's sortie then goes on from its last door)."""
    return Dispatcher(model[1], load_scenario("small", MIXED_FLEET))


@pytest.fixture(scope="module")
def mixed_client(mixed: Dispatcher) -> Iterator[httpx.Client]:
    with running(create_app(mixed)) as base_url, httpx.Client(base_url=base_url, timeout=10.0) as http:
        yield http


DRONE = 5  # the drone's fleet slot in ``mixed``


def drone_places(d: Dispatcher) -> tuple[int, int]:
    """Key indices of X, the address farthest from the drone's center, and Y, the address farthest from X
    on a way X -> Y -> center that a charged battery flies."""
    spec = d.world.vehicles[DRONE]
    km = d.world.dist_modes[spec.mode]
    addresses = [int(a) for a in d.world.addresses]
    x = max(addresses, key=lambda a: km[spec.home, a])
    y = max((a for a in addresses if km[x, a] + km[a, spec.home] <= spec.range_km), key=lambda a: km[x, a])
    return x, y


def drone_body(d: Dispatcher, flown_km: float | None = None) -> dict[str, Any]:
    """At 60 min: every van and bike idle at the center; the drone delivering order "d" at X (free there at
    62); the new order a return collected at Y (a return's pickup is at the customer: the drone goes on to
    Y from X without a charge). ``flown_km`` is the drone's (None: left out, a full battery at X)."""
    x, y = drone_places(d)
    vehicles = [
        {"id": f"v{i}", "capacity": s.capacity, "node": d.node_id(s.home), "load": 0}
        for i, s in enumerate(d.world.vehicles)
    ]
    vehicles[DRONE].update(
        node=d.node_id(x), load=1, current_stop={"order_id": "d", "kind": "delivery"}, free_at_min=62.0
    )
    if flown_km is not None:
        vehicles[DRONE]["flown_km"] = flown_km
    delivery = {"id": "d", "center": 0, "node": d.node_id(x), "size": 1, "ready_min": 30,
                "earliest_min": 30, "due_min": 120, "service_min": 2}  # fmt: skip
    new = {"id": "r", "kind": "return", "node": d.node_id(y), "size": 1,
           "window": {"start_min": 60, "end_min": 200}}  # fmt: skip
    return {"now_min": 60.0, "vehicles": vehicles, "orders": [delivery], "new_order": new}


def test_scenario_lists_each_slot_s_mode_and_battery(client, mixed):
    vans = client.get("/v1/scenario").json()["fleet"]
    assert {(v["mode"], v["range_km"], v["recharge_min"]) for v in vans} == {("van", None, None)}
    fleet = [(s.mode, s.range_km, s.recharge_min) for s in mixed.scenario_info().fleet]
    assert fleet == [("van", None, None)] * 3 + [("cargo_bike", None, None)] * 2 + [("drone", 4.0, 20.0)]
    vehicle = client.get("/openapi.json").json()["components"]["schemas"]["VehicleIn"]["properties"]
    assert "range_km" in vehicle["flown_km"]["description"]


def test_a_drone_s_flown_km_masks_an_order_beyond_its_battery(mixed, mixed_client):
    """The drone at X has flown there from its center: it can fly home but not collect a return at Y on
    the way, which a charged drone at X can (and, being the cheapest, is given by the insertion heuristic)."""
    spec = mixed.world.vehicles[DRONE]
    km = mixed.world.dist_modes[spec.mode]
    x, y = drone_places(mixed)
    out = float(km[spec.home, x])  # the straight flight out from its center
    assert out + km[x, spec.home] <= spec.range_km < out + km[x, y] + km[y, spec.home]
    charged, flown = drone_body(mixed), drone_body(mixed, flown_km=out)
    masks = []
    for body in (charged, flown):
        sim = mixed.snapshot(DispatchRequest.model_validate(body)).sim
        masks.append(mixed.observe(sim)["action_mask"][0])
        assert (sim.insertion(DRONE) is not None) == (body is charged)
        assert (InsertionPolicy().act(sim) == DRONE) == (body is charged)
    assert masks[0][DRONE] == 1 and masks[1][DRONE] == 0
    assert np.array_equal(np.delete(masks[0], DRONE), np.delete(masks[1], DRONE))  # the others as before
    response = mixed_client.post("/v1/dispatch", json=flown)
    assert response.status_code == 200, response.text
    assert response.json()["vehicle_id"] != f"v{DRONE}"


def idle_drone(at_home: bool, **state: Any) -> Callable[[Dispatcher], dict[str, Any]]:
    """``drone_body`` with the drone idle (no orders) at X or at its center, in the given state."""

    def change(d: Dispatcher) -> dict[str, Any]:
        body = drone_body(d)
        node = body["vehicles"][0 if at_home else DRONE]["node"]
        body["orders"] = []
        body["vehicles"][DRONE] = {"id": f"v{DRONE}", "capacity": 1, "node": node, "load": 0, **state}
        return body

    return change


def test_a_recharging_drone_is_returning_or_idle_at_its_center_until_charged(mixed):
    """Charged at 75: ``returning`` with the end of the charge (as the simulator keeps a drone that landed)
    and idle at the center free at 75 are the same state; free now, the drone would leave earlier."""
    etas = []
    for state in ({"returning": True, "free_at_min": 75.0}, {"free_at_min": 75.0}, {}):
        sim = mixed.snapshot(DispatchRequest.model_validate(idle_drone(True, **state)(mixed))).sim
        etas.append(sim.insertion(DRONE).eta_min)
    assert etas[0] == etas[1] > etas[2]


def test_snapshots_with_drones_rebuild_the_live_decision_point(mixed):
    """A mixed-fleet day with returns, every decision point as a snapshot (the drone's flown_km and its
    recharges included): the same observation, plans and insertion options as the live simulator."""
    sim = Simulator(mixed.world, 1)
    flown = returning = 0
    while sim.advance() is not None:
        body = snapshot_request(sim)
        assert not any("flown_km" in v for v in body["vehicles"][:DRONE])  # vans and bikes: no battery
        flown += "flown_km" in body["vehicles"][DRONE]
        returning += body["vehicles"][DRONE].get("returning", False)  # flying home or recharging there
        request = DispatchRequest.model_validate(body)
        rebuilt = mixed.snapshot(request).sim
        live, again = mixed.observe(sim), mixed.observe(rebuilt)
        assert all(np.array_equal(live[k], again[k]) for k in live)
        assert rebuilt.vehicles[DRONE].flown_km == sim.vehicles[DRONE].flown_km
        for v in sim.vehicles:
            assert rebuilt.plan(v.id).cost == pytest.approx(sim.plan(v.id).cost, rel=1e-12)
            ours, theirs = sim.insertion(v.id), rebuilt.insertion(v.id)
            assert (ours is None) == (theirs is None)
            if ours is not None and theirs is not None:
                assert ours.eta_min == pytest.approx(theirs.eta_min, rel=1e-12)
        apply_response(sim, mixed.decide(request, log_decision=False).model_dump())
    assert flown > 0 and returning > 0


def drone_with(**state: Any) -> Callable[[Dispatcher], dict[str, Any]]:
    """``drone_body`` with the drone's (or, with ``slot``, another vehicle's) fields set."""

    def change(d: Dispatcher) -> dict[str, Any]:
        body = drone_body(d)
        body["vehicles"][state.get("slot", DRONE)].update((k, v) for k, v in state.items() if k != "slot")
        return body

    return change


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        (drone_with(flown_km=-0.5), f"vehicles[{DRONE}].flown_km", "greater than or equal to 0"),
        (drone_with(flown_km=math.inf), f"vehicles[{DRONE}].flown_km", "finite"),
        (drone_with(slot=0, flown_km=0.5), "vehicles[0].flown_km", "fleet slot v0 (van, van) has no battery"),
        (drone_with(slot=3, flown_km=0.5), "vehicles[3].flown_km", "(bike, cargo_bike) has no battery"),
        (
            drone_with(flown_km=4.5),
            f"vehicles[{DRONE}].flown_km",
            "beyond the range of fleet slot v5 (4.0 km",
        ),
        (drone_with(flown_km=3.9), f"vehicles[{DRONE}].flown_km", "flight home to its center would exceed"),
        (idle_drone(True, flown_km=1.0), f"vehicles[{DRONE}].flown_km", "flown_km is 0 there"),
        (idle_drone(True, free_at_min=81.0), f"vehicles[{DRONE}].free_at_min", "recharge time (20.0 min)"),
        (idle_drone(False, free_at_min=70.0), f"vehicles[{DRONE}].free_at_min", "recharges at its center"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_impossible_battery_states_get_422_naming_the_field(mixed, mixed_client, change, field, message):
    response = mixed_client.post(
        "/v1/dispatch", content=json.dumps(change(mixed)), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    problems = response.json()["detail"]
    assert any(p["field"] == field and message in p["msg"] for p in problems), problems


def test_van_requests_are_unchanged_by_the_battery_field(client, request_body):
    """No flown_km in a van-only snapshot; 0 (a van's only value) decides as leaving it out does."""
    assert not any("flown_km" in v for v in request_body["vehicles"])
    zero = copy.deepcopy(request_body)
    for v in zero["vehicles"]:
        v["flown_km"] = 0
    decided = [client.post("/v1/dispatch", json=body).json() for body in (request_body, zero)]
    same = ("decision", "vehicle_id", "eta_min", "stops", "policy")
    assert [{k: d[k] for k in same} for d in decided[1:]] == [{k: decided[0][k] for k in same}]


def _reopt_day(world: Any, decisions: int) -> Simulator:
    """A day of the world played by cheapest insertion up to its ``decisions``-th decision."""
    sim = Simulator(world, 1)
    policy = InsertionPolicy()
    for _ in range(decisions):
        assert sim.advance() is not None
        apply(sim, policy.act(sim))
    assert sim.advance() is not None
    return sim


def test_reoptimize_replans_the_fleet_as_the_reopt_policy_does(client, dispatcher):
    live = _reopt_day(dispatcher.world, 20)  # 13 planned stops, where re-optimizing saves 1.97
    body = snapshot_request(live, counters=False)
    del body["new_order"]  # POST /v1/reoptimize: the fleet as it stands
    response = client.post("/v1/reoptimize", json=body)
    assert response.status_code == 200, response.text
    out = response.json()
    assert out["solver"] == "50 iterations" and "decide;dur=" in response.headers["Server-Timing"]
    # The simulator's own re-optimization of the live day, on the same plans: the same outcome.
    before = sum(live.plan(v.id).cost for v in live.vehicles)
    ReoptPolicy(seed=0).reoptimize(live)
    assert out["cost_before"] == pytest.approx(before)
    assert out["cost_after"] == pytest.approx(sum(live.plan(v.id).cost for v in live.vehicles))
    assert out["applied"] and out["cost_after"] < out["cost_before"]
    expected = [
        {"vehicle_id": f"v{v.id}", "stops": [f"o{s.order}:{s.kind.name.lower()}" for s in (
            [v.current] if v.current is not None else []) + v.route]}
        for v in live.vehicles
    ]  # fmt: skip
    got = [
        {"vehicle_id": p["vehicle_id"], "stops": [f"{s['order_id']}:{s['kind']}" for s in p["stops"]]}
        for p in out["plans"]
    ]
    assert got == expected
    assert client.post("/v1/reoptimize", json=body).json()["plans"] == out["plans"]  # deterministic
    assert len(dispatcher._reopt.records) == 1  # a long-running server keeps no record per request


def test_reoptimize_refuses_a_new_order_and_bad_snapshots_naming_the_field(client, request_body):
    response = client.post("/v1/reoptimize", json=request_body)  # a dispatch body: new_order is extra
    assert response.status_code == 422 and response.json()["detail"][0]["field"] == "new_order"
    body = {k: v for k, v in request_body.items() if k != "new_order"}
    body["orders"] = body["orders"][1:]
    response = client.post("/v1/reoptimize", json=body)
    assert response.status_code == 422 and "unknown order" in response.json()["detail"][0]["msg"]


def test_model_info_says_how_often_the_served_policy_reoptimizes(model):
    d = Dispatcher(model[1], "small", reoptimize_every_min=30.0, reopt_iterations=20)
    with running(create_app(d)) as base_url:
        assert httpx.get(f"{base_url}/v1/model").json()["reoptimize_every_min"] == 30.0
    with pytest.raises(ValueError, match="reoptimize_every_min must be positive"):
        Dispatcher(model[1], "small", reoptimize_every_min=0.0)


def test_serve_cli_checks_the_reoptimization_options(model):
    result = subprocess.run(
        [sys.executable, "-m", "lastmile_cli", "serve", "--model", str(model[1]), "--reoptimize-every", "-5"],
        capture_output=True, text=True, timeout=120, cwd=REPO_ROOT,
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--reoptimize-every must be > 0 minutes, got -5.0" in result.stderr
