"""``lastmile serve``: the dispatch policy behind a small FastAPI app (torch-free, see ``serving.runtime``).

Endpoints: ``POST /v1/dispatch`` (a snapshot -> the decision), ``POST /v1/reoptimize`` (a snapshot -> every
vehicle's plan re-optimized by PyVRP: the served policy's periodic re-planning, ``reoptimize_every_min`` in
``GET /v1/model``), ``GET /v1/model`` (the manifest),
``GET /v1/scenario`` (centers, fleet slots and defaults for building requests), ``GET /healthz``, and
FastAPI's ``/openapi.json`` and ``/docs``. With a token (``--token`` or ``LASTMILE_TOKEN``) the ``/v1``
endpoints need ``Authorization: Bearer <token>`` (401 otherwise); ``/healthz`` stays open for probes.

Bodies over ``max_body_bytes`` get 413 before they are parsed, a body that is not declared JSON 415, and a
connection whose request headers do not arrive within ``header_timeout_s`` is closed (slow or half-open
clients hold no slot). A client that hangs up mid-request is logged in one INFO line. Every decision's
response carries ``Server-Timing`` (the server's own milliseconds: ``decide``, and ``total`` from the route's
start, reading the body included). Every request problem is a 4xx whose
``detail`` names the field (``loc`` / ``field``) and what is wrong (``msg``): pydantic's checks, the
dispatcher's (``SnapshotError``) and the simulator's invariants (``InvariantError`` / ``SimulationError``)
alike; nothing a client sends brings the server down. Every decision is logged as one JSON line (logger
``lastmile.serving.decisions``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field, ValidationError
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from lastmile_env.sim.invariants import InvariantError
from lastmile_env.sim.simulator import InfeasibleAssignment, SimulationError
from serving.manifest import Manifest, load_manifest
from serving.runtime import Dispatcher, SnapshotError, field_path
from serving.schema import (
    DispatchRequest,
    DispatchResponse,
    ErrorResponse,
    ReoptimizeResponse,
    ScenarioInfo,
    SnapshotIn,
)

DEFAULT_MAX_BODY_BYTES = 1 << 20  # a 20-vehicle snapshot is ~30 kB
DEFAULT_HEADER_TIMEOUT_S = 10.0
TOKEN_ENV = "LASTMILE_TOKEN"
log = logging.getLogger("lastmile.serving")


class ModelInfo(Manifest):
    """``GET /v1/model``: the manifest and what the server warns about it."""

    warnings: list[str] = Field(default_factory=list, description="e.g. served on another scenario")
    reoptimize_every_min: float | None = Field(
        None,
        description="the served policy re-plans the fleet this often: call POST /v1/reoptimize at that "
        "rhythm (null: the network alone decides, plans change only by dispatch decisions)",
    )


def _error(loc: Sequence[str | int], msg: str, kind: str = "value_error") -> JSONResponse:
    """A 422 in the shape of FastAPI's validation errors, with the field spelled out."""
    where = [p for p in loc if p != "body"]
    item = {"loc": list(loc), "field": field_path(tuple(where)) or "body", "msg": msg, "type": kind}
    return JSONResponse({"detail": [item]}, status_code=422)


_UNION_MEMBER_TAGS = {"int", "str", "constrained-int", "constrained-str"}  # pydantic's loc of a node id's
# alternatives: "new_order.node", not "new_order.node.constrained-int"


def _invalid(errors: Sequence[Any], prefix: tuple[str, ...] = ()) -> JSONResponse:
    """pydantic's errors as a 422 (FastAPI's own handler echoes the input, which may be NaN and then fails
    to serialize); ``field`` spells out where."""
    items = []
    for e in errors:
        loc = [*prefix, *(p for p in e["loc"] if p not in _UNION_MEMBER_TAGS)]
        where = tuple(p for p in loc if p != "body")
        items.append({"loc": loc, "field": field_path(where) or "body", "msg": e["msg"], "type": e["type"]})
    return JSONResponse({"detail": items}, status_code=422)


def _body(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI request body of a route that parses ``model`` itself."""
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema plus the request models that ``/v1/dispatch`` and ``/v1/reoptimize`` parse."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in (DispatchRequest, SnapshotIn):
            request = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(request.pop("$defs", {}))
            components[model.__name__] = request
        app.openapi_schema = schema
    return app.openapi_schema


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol, closing a connection whose request headers are not complete
    ``header_timeout_s`` after it opened or after the request's first byte (uvicorn has no such timeout:
    a client sending headers a byte at a time would hold its connection for ever). Between requests
    uvicorn's keep-alive timeout applies."""

    header_timeout_s = DEFAULT_HEADER_TIMEOUT_S
    _header_timer: asyncio.TimerHandle | None = None

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _start_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            log.info(
                "closed a connection from %s: no complete request headers in %gs",
                self.client,
                self.header_timeout_s,
            )
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_header_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._start_header_timer()  # a timer already running (the connection's first request) goes on

    def on_headers_complete(self) -> None:
        self._stop_header_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)


def http_protocol(header_timeout_s: float) -> type[HeaderTimeoutProtocol]:
    """The protocol class for uvicorn's ``http=`` with this header timeout."""
    if not header_timeout_s > 0:
        raise ValueError(f"header_timeout_s must be > 0, got {header_timeout_s}")
    return type("HeaderTimeoutProtocol", (HeaderTimeoutProtocol,), {"header_timeout_s": header_timeout_s})


def _is_json(content_type: str) -> bool:
    """``application/json`` or a ``+json`` type, any parameters (charset) aside."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


class _Unprocessable(Exception):
    """Carries a ready 4xx response out of a route."""

    def __init__(self, response: JSONResponse) -> None:
        super().__init__()
        self.response = response


class BodySizeLimit:
    """ASGI middleware: 413 for a body over ``max_bytes``, by its Content-Length or as it streams in."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = f"request body exceeds {self.max_bytes} bytes"
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await JSONResponse({"detail": too_large}, status_code=413)(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:  # FastAPI passes HTTPExceptions from reading the body on
                    raise HTTPException(status_code=413, detail=too_large)
            return message

        await self.app(scope, limited, send)


def create_app(
    dispatcher: Dispatcher, token: str | None = None, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
) -> FastAPI:
    """The FastAPI app serving one dispatcher (model + scenario); ``token`` enables bearer auth."""
    app = FastAPI(
        title="lastmile dispatch",
        version=f"schema {dispatcher.manifest.schema_version}",
        description=__doc__,
        responses={422: {"model": ErrorResponse, "description": "the request does not fit together"}},
    )
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    bearer = HTTPBearer(auto_error=False)
    unauthorized: dict[int | str, dict[str, Any]] = {
        401: {"description": "missing or invalid bearer token (when the server has a token)"}
    }

    async def authorize(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:  # noqa: B008
        if token is None:
            return
        if credentials is None or not secrets.compare_digest(
            credentials.credentials.encode(), token.encode()
        ):
            raise HTTPException(
                status_code=401,
                detail="missing or invalid bearer token",
                headers={"WWW-Authenticate": "Bearer"},
            )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _invalid(exc.errors())

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        """Liveness and what is loaded (no auth)."""
        return {
            "status": "ok",
            "scenario": dispatcher.config.name,
            "model_sha256": dispatcher.manifest.model_sha256,
            "schema_version": dispatcher.manifest.schema_version,
        }

    @app.get("/v1/model", dependencies=[Depends(authorize)], responses=unauthorized)
    async def model() -> ModelInfo:
        """The model's manifest (observation layout, actions, hash, training run, export checks) and
        ``warnings``: e.g. that the served scenario is not the one the model was trained on."""
        return ModelInfo(
            **dispatcher.manifest.model_dump(),
            warnings=dispatcher.warnings,
            reoptimize_every_min=dispatcher.reoptimize_every_min,
        )

    @app.get("/v1/scenario", dependencies=[Depends(authorize)], responses=unauthorized)
    async def scenario() -> ScenarioInfo:
        """Centers, fleet slots (the vehicle ids a request uses) and the defaults of the loaded scenario."""
        return dispatcher.scenario_info()

    posted: dict[int | str, dict[str, Any]] = {
        **unauthorized,
        413: {"description": "too large"},
        415: {"description": "the body is not declared JSON (Content-Type: application/json)"},
    }

    async def answer(request: Request, model: type[SnapshotIn], work: Any) -> Response:
        """Read and validate the body as ``model`` in one pass (pydantic's JSON parser: FastAPI would build
        Python objects first, then validate them, twice the work for a ~30 kB snapshot), run
        ``work(body, request_id)`` and serialize its response directly (its values come from the simulator:
        nothing to validate again). The work takes milliseconds of CPU, so it runs on the event loop: a
        thread pool would only add hand-offs (it holds the GIL). Every request problem is a 4xx."""
        started = time.perf_counter()
        request_id = request.headers.get("x-request-id", "")[:128] or uuid.uuid4().hex
        content_type = request.headers.get("content-type", "")
        if not _is_json(content_type):
            return JSONResponse(
                {"detail": f"Content-Type must be application/json, got {content_type[:100]!r}"},
                status_code=415,
            )
        try:
            raw = await request.body()
        except ClientDisconnect:  # nobody to answer: one quiet line, no traceback
            log.info("request %s: the client disconnected before sending the whole body", request_id)
            return Response(status_code=400)
        try:
            body = model.model_validate_json(raw)
        except ValidationError as exc:
            return _invalid(exc.errors(include_url=False, include_input=False), prefix=("body",))
        work_started = time.perf_counter()
        try:
            result = work(body, request_id)
        except SnapshotError as exc:
            raise _Unprocessable(_error(("body", *exc.loc), exc.msg)) from None
        except (InvariantError, SimulationError, InfeasibleAssignment) as exc:
            raise _Unprocessable(
                _error(("body",), f"{type(exc).__name__}: {exc}", "snapshot_invariant")
            ) from None
        finished = time.perf_counter()
        timing = (
            f"decide;dur={(finished - work_started) * 1e3:.3f}, total;dur={(finished - started) * 1e3:.3f}"
        )
        return Response(
            result.model_dump_json(),
            media_type="application/json",
            headers={"X-Request-ID": request_id, "Server-Timing": timing},
        )

    @app.post(
        "/v1/dispatch",
        response_model=DispatchResponse,
        dependencies=[Depends(authorize)],
        openapi_extra=_body(DispatchRequest),
        responses=posted,
    )
    async def dispatch(request: Request) -> Response:
        """Decide the snapshot's new order (a ``DispatchRequest``): a vehicle (its new plan and the promised
        ETA) or reject."""
        return await answer(request, DispatchRequest, dispatcher.decide)

    @app.post(
        "/v1/reoptimize",
        response_model=ReoptimizeResponse,
        dependencies=[Depends(authorize)],
        openapi_extra=_body(SnapshotIn),
        responses=posted,
    )
    async def reoptimize(request: Request) -> Response:
        """Re-plan the whole fleet of a snapshot (a ``SnapshotIn``: no new order) with PyVRP; the plans
        come back re-optimized when that lowers their expected cost, else as sent (``applied``). A policy
        served with ``reoptimize_every_min`` (``GET /v1/model``) expects this call at that rhythm."""
        return await answer(request, SnapshotIn, dispatcher.reoptimize)

    @app.exception_handler(_Unprocessable)
    async def unprocessable(request: Request, exc: _Unprocessable) -> JSONResponse:
        return exc.response

    return app


def configure_logging(level: str = "info") -> None:
    """Decision lines to stderr as bare JSON (one per line), the server's own messages with a prefix."""
    decisions = logging.getLogger("lastmile.serving.decisions")
    if not decisions.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        decisions.addHandler(handler)
        decisions.propagate = False
    logging.getLogger("lastmile.serving").setLevel(level.upper())
    if not logging.getLogger().handlers:
        logging.basicConfig(level=level.upper(), format="%(levelname)s %(name)s: %(message)s")


def resolve_token(token: str | None) -> str | None:
    """The bearer token: ``--token`` if given, else ``$LASTMILE_TOKEN``; None (or empty): no auth."""
    return token if token is not None else (os.environ.get(TOKEN_ENV) or None)


SETTINGS_ENV = "LASTMILE_SERVE_SETTINGS"  # how ``serve`` hands its settings to worker processes


def _load(settings: dict[str, Any]) -> FastAPI:
    """Load the model for the scenario, warm it up and build the app (once per server process)."""
    started = time.perf_counter()
    dispatcher = Dispatcher(
        settings["model"],
        settings["scenario"],
        settings["manifest"],
        reoptimize_every_min=settings.get("reoptimize_every_min"),
        reopt_iterations=settings.get("reopt_iterations"),
    )
    dispatcher.warm_up()
    token = resolve_token(None)
    log.info(
        "process %d: model %s (sha256 %s) on scenario %s loaded in %.1fs; auth %s",
        os.getpid(),
        settings["model"],
        dispatcher.manifest.model_sha256[:12],
        dispatcher.config.name,
        time.perf_counter() - started,
        "on" if token else "off",
    )
    for warning in dispatcher.warnings:
        log.warning("%s", warning)
    return create_app(dispatcher, token=token, max_body_bytes=settings["max_body_bytes"])


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_supervisor(supervisor_pid: int) -> None:
    """Make this worker process end when its supervisor does, however it dies (``kill -9`` included):
    orphaned workers would go on serving on the shared socket and the next ``serve`` could not bind it.

    On Linux the kernel sends SIGTERM (uvicorn's graceful shutdown) when the parent dies
    (``prctl(PR_SET_PDEATHSIG)``); elsewhere a daemon thread polls the parent's pid twice a second.
    """
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) == 0:
            if os.getppid() != supervisor_pid:  # it died before the prctl took effect
                os.kill(os.getpid(), signal.SIGTERM)
            return

    def watch() -> None:
        while os.getppid() == supervisor_pid:
            time.sleep(0.5)
        log.warning("process %d: the supervisor %d is gone; shutting down", os.getpid(), supervisor_pid)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="supervisor-watchdog", daemon=True).start()


def app_from_env() -> FastAPI:
    """uvicorn's app factory in each worker process of ``serve(workers > 1)``: the settings come from the
    environment the parent set (the token from ``LASTMILE_TOKEN``)."""
    settings = json.loads(os.environ[SETTINGS_ENV])
    if settings.get("supervisor_pid") is not None:  # set by serve(); absent under a bare uvicorn command
        die_with_supervisor(settings["supervisor_pid"])
    HeaderTimeoutProtocol.header_timeout_s = settings.get("header_timeout_s", DEFAULT_HEADER_TIMEOUT_S)
    configure_logging(settings["log_level"])
    return _load(settings)


def check_serve_options(
    host: str, port: int, max_body_bytes: int, workers: int, header_timeout_s: float
) -> None:
    """ValueError naming the option when one is out of range (before anything loads or binds)."""
    if not 0 <= port <= 65535:
        raise ValueError(f"--port must be in 0..65535 (0: any free port), got {port}")
    if max_body_bytes < 1:
        raise ValueError(f"--max-body-bytes must be >= 1, got {max_body_bytes}")
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    if not header_timeout_s > 0:
        raise ValueError(f"--header-timeout must be > 0 seconds, got {header_timeout_s}")
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise ValueError(f"--host {host!r} is not an address or a resolvable name ({exc})") from None


def serve(
    model: str | Path,
    scenario: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    token: str | None = None,
    manifest: str | Path | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    log_level: str = "info",
    workers: int = 1,
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S,
    reoptimize_every_min: float | None = None,
    reopt_iterations: int | None = None,
) -> None:
    """Serve the model for the scenario until interrupted (``lastmile serve``); ``reoptimize_every_min`` /
    ``reopt_iterations``: the served policy re-plans the fleet (``POST /v1/reoptimize``), see ``Dispatcher``.

    A decision holds the GIL for its few milliseconds of CPU, so one process uses one core; ``workers > 1``
    runs that many processes behind one socket (uvicorn's supervisor restarts a worker that dies), each
    with its own copy of the model and the scenario's world; the workers end with the supervisor. A bad
    option, model or manifest fails here (ValueError, ManifestError), before any worker starts.
    """
    check_serve_options(host, port, max_body_bytes, workers, header_timeout_s)
    if reoptimize_every_min is not None and not reoptimize_every_min > 0:
        raise ValueError(f"--reoptimize-every must be > 0 minutes, got {reoptimize_every_min}")
    if reopt_iterations is not None and reopt_iterations < 1:
        raise ValueError(f"--reopt-iterations must be >= 1, got {reopt_iterations}")
    configure_logging(log_level)
    load_manifest(model, manifest)  # ManifestError before anything starts
    settings = {
        "model": str(model),
        "scenario": str(scenario),
        "manifest": None if manifest is None else str(manifest),
        "max_body_bytes": max_body_bytes,
        "log_level": log_level,
        "header_timeout_s": header_timeout_s,
        "reoptimize_every_min": reoptimize_every_min,
        "reopt_iterations": reopt_iterations,
        "supervisor_pid": os.getpid(),
    }
    token = resolve_token(token)
    if token is not None:
        os.environ[TOKEN_ENV] = token
    else:
        os.environ.pop(TOKEN_ENV, None)
    log.info("listening on http://%s:%d with %d worker process(es)", host, port, workers)
    if workers == 1:
        uvicorn.run(
            _load(settings),
            host=host,
            port=port,
            log_level=log_level,
            access_log=False,
            http=http_protocol(header_timeout_s),
        )
        return
    os.environ[SETTINGS_ENV] = json.dumps(settings)
    uvicorn.run(
        "serving.app:app_from_env",
        factory=True,
        workers=workers,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        http=HeaderTimeoutProtocol,  # its timeout is set in each worker (app_from_env)
    )


@contextlib.contextmanager
def running(
    app: FastAPI, host: str = "127.0.0.1", header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a thread on a free port of ``host``; yields the base URL, then stops
    the server (for tests and benchmarks)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off", http=http_protocol(header_timeout_s)
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10.0
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10.0)
        sock.close()
