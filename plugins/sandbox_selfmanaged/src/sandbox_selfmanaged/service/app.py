"""The executor's HTTP API.

=============================  =====  ==========================================================
``GET /livez``                 open   the process is up (the only route without a token)
``GET /healthz``               token  can it produce sandboxes? runtime, pools per language; 503 if not
``GET /metrics``               token  Prometheus text
``POST /v1/execute``           token  run code → ``ExecutionResult.to_dict()``
``POST /run``                  token  the same in RAGFlow executor_manager's request/response shape
``GET /v1/runtimes``           token  the runtimes served: name, language, packages with versions
``/v1/sessions...``            token  stateful sessions (see :mod:`.sessions_api`)
``GET /openapi.json``          token  the OpenAPI document
=============================  =====  ==========================================================

``POST /v1/execute`` with ``Accept: application/x-ndjson`` streams the output as NDJSON events
while the code runs, then the same result (see :mod:`.events`).

"token": ``Authorization: Bearer <token>`` or ``X-Sandbox-Token: <token>``, or a peer in a network
the operator trusts (see :mod:`.gate`). Request errors get their own status codes: 400 malformed
JSON, 401 no/bad token, 408 a body sent too slowly, 413 body too large, 422 invalid field (strict
types: ``"64"`` is not an integer) or a limit above the operator's maximum, 503 (with
``Retry-After``) when the queue is full, request bodies use up their budget or sandboxes cannot be
booted. What the user's code did, errors included, is a 200 whose body says so: that is the
result contract. A client that disconnects before its result stops its execution (its sandbox is
killed and released at once).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
import attrs
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.background import BackgroundTask

from sandbox_core.errors import ConfigurationError
from sandbox_core.model import ExecutionRequest, ExecutionResult
from sandbox_core.policy import POLICY_ENV, CodePolicy, check
from sandbox_selfmanaged import EVENTS_MEDIA_TYPE, __version__
from sandbox_selfmanaged.engine import Engine, EngineConfig
from sandbox_selfmanaged.errors import ExecutionCancelled, ExecutorError, LimitError, SandboxUnavailableError
from sandbox_selfmanaged.limits import Limits, resolve
from sandbox_selfmanaged.runtimes import UnknownRuntimeError
from sandbox_selfmanaged.sandbox import Cancellation
from sandbox_selfmanaged.served_runtimes import RuntimeLanguageError
from sandbox_selfmanaged.service.admission import Admission, Busy
from sandbox_selfmanaged.service.bodies import parse_body, read_body
from sandbox_selfmanaged.service.events import EventInbox, EventStreamResponse, cancel_on_disconnect, wants_events
from sandbox_selfmanaged.service.gate import Gate, Network
from sandbox_selfmanaged.service.metrics import CONTENT_TYPE, Metrics
from sandbox_selfmanaged.service.models import (
    ExecuteIn,
    ExecutionResultOut,
    HealthOut,
    ProblemOut,
    RuntimeOut,
)
from sandbox_selfmanaged.service.ragflow import RunRequest, RunResponse, job_options, policy_refusal, to_ragflow
from sandbox_selfmanaged.service.responses import RelayedJSONResponse
from sandbox_selfmanaged.service.sessions_api import add_session_routes, with_files
from sandbox_selfmanaged.sessions import SessionManager

logger = logging.getLogger("sandbox_selfmanaged.service")

LIVENESS_PATH = "/livez"
SCHEMA_REF = "#/components/schemas/{model}"
RELEASE_FALLBACK_SECONDS = 5.0


async def _call(function: Callable[[], None]) -> None:
    function()  # cheap (a kill, a queue put, a notify): fine on the event loop


async def _admit(admission: Admission, watcher: asyncio.Future[None], cancel: Cancellation) -> None:
    """Take an execution slot, unless the client leaves first: then :class:`ExecutionCancelled`."""
    slot = asyncio.ensure_future(admission.acquire())
    await asyncio.wait({slot, watcher}, return_when=asyncio.FIRST_COMPLETED)
    if slot.done() or not cancel.is_set():
        await slot  # raises Busy when refused
        return
    slot.cancel()
    try:
        await slot
    except (asyncio.CancelledError, Busy):
        pass
    else:
        admission.release()  # granted just as the client left: pass it on
    raise ExecutionCancelled("the execution was not started: its client left while it waited for a slot")


@attrs.frozen
class ServiceConfig:
    """The service around the engine.

    :param token: token required on every route but ``/livez`` (None: no authentication, or
        only ``trusted_networks`` may call).
    :param trusted_networks: peers in these networks are served without a token.
    :param max_concurrency: executions running at once; further requests queue.
    :param queue_size: requests allowed to wait for a slot; beyond, 503 + ``Retry-After``.
    :param queue_timeout: seconds a request may wait for a slot before a 503.
    :param max_body_bytes: largest request body (code plus arguments); beyond, 413.
    :param max_held_bytes: request bodies all requests in progress may hold together (queued
        ones included); beyond, 503 (default: 8 × ``max_body_bytes``).
    :param body_timeout: longest pause while a request body arrives (then 408), and the grace
        before ``min_body_rate`` applies.
    :param min_body_rate: bytes per second a request body must average after the grace.
    :param ready_timeout: how long start-up waits for the warm pool before serving anyway.
    :param max_sessions: sessions (one dedicated sandbox each) open at once; beyond, 503.

    Memory of request handling is bounded by ``max_held_bytes`` (bodies are relayed to the
    sandbox as received, not copied or decoded); a response costs about the result frame it came
    in (bounded by the runner protocol) plus its output and artifacts: a ``main()`` value is
    relayed as its JSON text.
    """

    engine: EngineConfig = attrs.field(factory=EngineConfig)
    token: str | None = attrs.field(default=None, repr=False)
    max_concurrency: int = 8
    queue_size: int = 64
    queue_timeout: float = 60.0
    max_body_bytes: int = 32 << 20
    max_held_bytes: int | None = None
    trusted_networks: tuple[Network, ...] = ()
    body_timeout: float = 10.0
    min_body_rate: float = 32 * 1024
    ready_timeout: float = 60.0
    max_sessions: int = 16


def _problem(status: int, detail: Any, retry_after: float | None = None) -> JSONResponse:
    headers = {"Retry-After": str(max(1, round(retry_after)))} if retry_after is not None else None
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def _limit_problem(error: LimitError) -> JSONResponse:
    kind = "limit" if error.field.startswith("limits.") or error.field == "timeout" else "value_error"
    return _problem(422, [{"loc": ["body", *error.field.split(".")], "msg": error.reason, "type": kind}])


def create_app(config: ServiceConfig, engine: Engine | None = None) -> Gate:
    """The ASGI application: FastAPI behind the token/body-size :class:`Gate`."""
    engine = engine or Engine(config.engine)
    admission = Admission(config.max_concurrency, config.queue_size, config.queue_timeout)
    limiter = anyio.CapacityLimiter(admission.max_concurrency)

    def queue_state() -> dict[str, int]:
        return {
            "running": admission.running,
            "queued": admission.waiting,
            "rejected": admission.rejected,
            "body_bytes_held": gate.held_bytes,  # the gate is made last, before any request is served
        }

    metrics = Metrics(engine.health, queue_state)
    sessions = SessionManager(engine, config.max_sessions)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await anyio.to_thread.run_sync(engine.start)
        if not engine.problem:
            ready = await anyio.to_thread.run_sync(engine.wait_ready, config.ready_timeout)
            health = engine.health()
            if ready:
                logger.info("warm pool ready: %s", _pool_summary(health))
            else:
                logger.error("warm pool not ready: %s (%s)", health["message"], _pool_summary(health))
        try:
            yield
        finally:
            logger.info("shutting down: destroying every sandbox")
            await anyio.to_thread.run_sync(sessions.close_all)
            await anyio.to_thread.run_sync(engine.close)

    app = FastAPI(
        title="sandbox-executor",
        version=__version__,
        description="Runs untrusted code in single-use gVisor sandboxes for sandbox-core's self_managed provider.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.engine = engine
    app.state.admission = admission

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        status = 400 if any(e.get("type") == "json_invalid" for e in errors) else 422
        return _problem(status, _jsonable_errors(errors))

    @app.exception_handler(LimitError)
    async def _limit(_request: Request, exc: LimitError) -> JSONResponse:
        return _limit_problem(exc)

    @app.exception_handler(UnknownRuntimeError)
    @app.exception_handler(RuntimeLanguageError)
    async def _bad_runtime(_request: Request, exc: Exception) -> JSONResponse:
        return _problem(422, [{"loc": ["body", "runtime"], "msg": str(exc), "type": "value_error"}])

    @app.exception_handler(SandboxUnavailableError)
    async def _unavailable(_request: Request, exc: SandboxUnavailableError) -> JSONResponse:
        metrics.rejections.labels("unavailable").inc()
        return _problem(503, str(exc), exc.retry_after)

    @app.exception_handler(ExecutionCancelled)
    async def _cancelled(_request: Request, exc: ExecutionCancelled) -> JSONResponse:
        logger.info("client disconnected: %s", exc)
        return _problem(499, str(exc))  # nobody reads it: the connection is gone

    @app.exception_handler(Busy)
    async def _busy(_request: Request, exc: Busy) -> JSONResponse:
        metrics.rejections.labels("queue_full").inc()
        return _problem(503, str(exc), exc.retry_after)

    async def run(
        http: Request, request: ExecutionRequest, limits: Limits, job_options: dict[str, Any] | None = None
    ) -> tuple[ExecutionResult, BackgroundTask]:
        """Execute, and the task that releases the sandbox once the response is out.

        If the response is never sent (the client left), a timer releases it anyway. If the
        client leaves while it waits or its code runs, the execution is dropped or stopped:
        :class:`ExecutionCancelled`.
        """
        with Cancellation() as cancel:
            watcher = asyncio.ensure_future(cancel_on_disconnect(http, cancel))
            try:
                await _admit(admission, watcher, cancel)
                try:
                    started = time.monotonic()
                    result, release = await anyio.to_thread.run_sync(engine.run, request, limits, cancel, job_options, limiter=limiter)
                finally:
                    admission.release()
            except ExecutionCancelled:
                metrics.executions.labels(request.language, "cancelled").inc()
                raise
            finally:
                watcher.cancel()
        asyncio.get_running_loop().call_later(RELEASE_FALLBACK_SECONDS, release)
        record(request, result, started)
        return result, BackgroundTask(_call, release)

    def record(request: ExecutionRequest, result: ExecutionResult, started: float) -> None:
        """Count and log a finished execution."""
        metrics.executions.labels(request.language, result.status.value).inc()
        metrics.latency.labels(request.language).observe(time.monotonic() - started)
        metrics.count_egress(result.metadata.get("egress"))
        logger.info(
            "execution sandbox=%s language=%s status=%s exit_code=%s seconds=%.4f queue=%.4f",
            result.metadata.get("sandbox_id"), request.language, result.status.value, result.exit_code,
            result.execution_time, result.metadata.get("queue_seconds", 0.0),
        )

    async def run_streaming(http: Request, request: ExecutionRequest, limits: Limits) -> Response:
        """Like :func:`run`, answering with output events while the code runs (see :mod:`.events`).

        The response starts with the first event, or with the result when there is none, so a
        refusal before the code runs is still an error status. Until the result is written, a
        client that leaves stops the execution (its sandbox is killed and released).
        """
        cancel = Cancellation()
        watcher = asyncio.ensure_future(cancel_on_disconnect(http, cancel))
        try:
            await _admit(admission, watcher, cancel)
        except BaseException as exc:
            watcher.cancel()
            cancel.close()
            if isinstance(exc, ExecutionCancelled):
                metrics.executions.labels(request.language, "cancelled").inc()
            raise
        inbox = EventInbox()
        started = time.monotonic()
        task = asyncio.ensure_future(
            anyio.to_thread.run_sync(engine.run, request, limits, cancel, None, inbox.post, limiter=limiter)
        )

        def over(done: asyncio.Future[tuple[ExecutionResult, Callable[[], None]]]) -> None:
            admission.release()
            watcher.cancel()
            cancel.close()
            inbox.done()
            failure = None if done.cancelled() else done.exception()
            if isinstance(failure, ExecutionCancelled):
                logger.info("client disconnected mid-stream: %s", failure)
                metrics.executions.labels(request.language, "cancelled").inc()
            elif failure is None and not done.cancelled():
                asyncio.get_running_loop().call_later(RELEASE_FALLBACK_SECONDS, done.result()[1])

        task.add_done_callback(over)
        await inbox.first()
        if task.done() and not task.cancelled():
            failure = task.exception()
            if failure is not None:
                raise failure  # before any output: the route's error status (503, 499, ...)
        return EventStreamResponse(inbox, task, cancel, lambda result: record(request, result, started))

    def build(
        code: str,
        language: str,
        arguments: Mapping[str, Any],
        timeout: float | None,
        requested: dict[str, Any] | None,
        runtime: str | None = None,
        network: list[str] | None = None,
    ) -> tuple[ExecutionRequest, Limits]:
        limits = resolve(config.engine.defaults, config.engine.maximums, timeout=timeout, requested=requested)
        try:
            request = ExecutionRequest(
                code=code, language=language, timeout=limits.timeout, arguments=arguments, runtime=runtime, network=network
            )
            engine.egress_policy(request.network)  # beyond the operator's allowlist: 422 before queueing
        except ValueError as exc:
            field, _, reason = str(exc).partition(": ")
            raise LimitError(field if reason else "request", reason or str(exc)) from None
        engine.served.resolve(request.language, request.runtime)  # unknown runtime: 422 before queueing
        return request, limits

    @app.get(LIVENESS_PATH, summary="Liveness probe (no token needed)")
    async def livez() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/healthz", response_model=HealthOut, responses={503: {"model": HealthOut}}, summary="Can the executor produce sandboxes?")
    async def healthz() -> JSONResponse:
        health = engine.health()
        health["requests"] = queue_state()
        return JSONResponse(health, status_code=200 if health["healthy"] else 503)

    @app.get("/metrics", response_class=Response, summary="Prometheus metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    @app.post(
        "/v1/execute",
        response_model=ExecutionResultOut,
        responses={
            200: {"content": {EVENTS_MEDIA_TYPE: {"schema": {"type": "string", "description": "NDJSON output events, then the result"}}}},
            **{status: {"model": ProblemOut} for status in (400, 401, 408, 413, 422, 503)},
        },
        openapi_extra=_json_body(ExecuteIn),
        summary="Run code in a fresh gVisor sandbox",
    )
    async def execute(http: Request) -> Response:
        body, arguments = parse_body(await read_body(http), ExecuteIn)
        requested = body.limits.model_dump(exclude_none=True) if body.limits else None
        request, limits = build(body.code, body.language, arguments or {}, body.timeout, requested, body.runtime, body.network)
        if body.files and request.network:  # a one-use session sandbox has no egress socket: never drop the policy
            raise LimitError("network", "input files run in a one-use sandbox without egress; send no files with a network allowlist")
        if body.files:  # input files: a one-use session sandbox takes them (the warm pool's runner has no files)
            once = await anyio.to_thread.run_sync(sessions.run_once, with_files(request, body.files), limits)
            return RelayedJSONResponse(once.to_dict())
        if wants_events(http):
            return await run_streaming(http, request, limits)
        result, release = await run(http, request, limits)
        return RelayedJSONResponse(result.to_dict(), background=release)

    add_session_routes(app, sessions, config.engine.defaults, config.engine.maximums, metrics.registry)

    @app.get("/v1/runtimes", response_model=list[RuntimeOut], summary="The runtimes (package sets) this executor serves")
    async def runtimes() -> list[dict[str, Any]]:
        return [{"name": name, **entry} for name, entry in engine.served.describe().items()]

    try:
        run_policy = CodePolicy().rules()
    except ConfigurationError as exc:
        raise ExecutorError(str(exc)) from None
    if run_policy is not None:
        logger.warning("/run refuses code by the %r code policy (%s)", run_policy[0], POLICY_ENV)

    @app.post(
        "/run",
        response_model=RunResponse,
        responses={status: {"model": ProblemOut} for status in (400, 401, 408, 413, 422, 503)},
        openapi_extra=_json_body(RunRequest),
        summary="RAGFlow executor_manager compatible execution",
    )
    async def ragflow_run(http: Request) -> Response:
        body, arguments = parse_body(await read_body(http), RunRequest)
        request, limits = build(body.code(), body.core_language(), arguments or {}, None, None)
        if run_policy is not None:
            violations = check(request.code, request.language, run_policy[1])
            if violations:
                return JSONResponse(policy_refusal(violations))
        result, release = await run(http, request, limits, job_options())
        return RelayedJSONResponse(to_ragflow(result), background=release)

    original_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        """FastAPI's document plus the schemas of the bodies the routes read themselves."""
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = original_openapi()  # cached by FastAPI as app.openapi_schema
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        for model in (ExecuteIn, RunRequest):
            schema = model.model_json_schema(ref_template=SCHEMA_REF)
            schemas.update(schema.pop("$defs", {}))
            schemas[model.__name__] = schema
        return document

    app.openapi = openapi  # type: ignore[method-assign]

    gate = Gate(
        app,
        token=config.token,
        open_paths={LIVENESS_PATH},
        max_body_bytes=config.max_body_bytes,
        max_held_bytes=config.max_held_bytes,
        trusted_networks=config.trusted_networks,
        body_timeout=config.body_timeout,
        min_body_rate=config.min_body_rate,
        on_refusal=lambda reason: metrics.rejections.labels(reason).inc(),
    )
    return gate


def _json_body(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI for a route that reads its JSON body itself (see :mod:`.bodies`)."""
    schema = {"$ref": SCHEMA_REF.format(model=model.__name__)}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _jsonable_errors(errors: Any) -> list[dict[str, Any]]:
    cleaned = []
    for error in errors:
        entry = {k: v for k, v in dict(error).items() if k in ("loc", "msg", "type")}
        entry["loc"] = [str(part) for part in entry.get("loc", ())]
        cleaned.append(entry)
    return cleaned


def _pool_summary(health: dict[str, Any]) -> str:
    parts = []
    for language, entry in health.get("languages", {}).items():
        pool = entry.get("pool")
        if pool:
            parts.append(f"{language} {pool['ready']}/{pool['target']} ready")
        else:
            parts.append(f"{language} unavailable")
    return ", ".join(parts) or "no pools"
