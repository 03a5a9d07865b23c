"""The executor's HTTP API.

=============================  =====  ==========================================================
``GET /livez``                 open   the process is up (the only route without a token)
``GET /healthz``               token  can it produce sandboxes? runtime, pools per language; 503 if not
``GET /metrics``               token  Prometheus text
``POST /v1/execute``           token  run code → ``ExecutionResult.to_dict()``
``POST /run``                  token  the same in RAGFlow executor_manager's request/response shape
``GET /openapi.json``          token  the OpenAPI document
=============================  =====  ==========================================================

Request errors get their own status codes: 400 malformed JSON, 401 no/bad token, 413 body too
large, 422 invalid field or a limit above the operator's maximum, 503 (with ``Retry-After``) when
the queue is full or sandboxes cannot be booted. What the user's code did, errors included, is a
200 whose body says so: that is the result contract.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import attrs
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.background import BackgroundTask

from sandbox_core.errors import ConfigurationError
from sandbox_core.model import ExecutionRequest, ExecutionResult
from sandbox_core.policy import POLICY_ENV, CodePolicy, check
from sandbox_selfmanaged import __version__
from sandbox_selfmanaged.engine import Engine, EngineConfig
from sandbox_selfmanaged.errors import ExecutorError, LimitError, SandboxUnavailableError
from sandbox_selfmanaged.limits import Limits, resolve
from sandbox_selfmanaged.service.admission import Admission, Busy
from sandbox_selfmanaged.service.gate import Gate
from sandbox_selfmanaged.service.metrics import CONTENT_TYPE, Metrics
from sandbox_selfmanaged.service.models import (
    ExecuteIn,
    ExecutionResultOut,
    HealthOut,
    ProblemOut,
)
from sandbox_selfmanaged.service.ragflow import RunRequest, RunResponse, job_options, policy_refusal, to_ragflow

logger = logging.getLogger("sandbox_selfmanaged.service")

LIVENESS_PATH = "/livez"
RELEASE_FALLBACK_SECONDS = 5.0


async def _call(function: Callable[[], None]) -> None:
    function()  # cheap (a kill, a queue put, a notify): fine on the event loop


@attrs.frozen
class ServiceConfig:
    """The service around the engine.

    :param token: bearer token required on every route but ``/livez`` (None: no authentication).
    :param max_concurrency: executions running at once; further requests queue.
    :param queue_size: requests allowed to wait for a slot; beyond, 503 + ``Retry-After``.
    :param queue_timeout: seconds a request may wait for a slot before a 503.
    :param max_body_bytes: largest request body (code plus arguments); beyond, 413.
    :param max_held_bytes: request bodies all requests in progress may hold together (queued
        ones included); beyond, 503 (default: 8 × ``max_body_bytes``).
    :param ready_timeout: how long start-up waits for the warm pool before serving anyway.
    """

    engine: EngineConfig = attrs.field(factory=EngineConfig)
    token: str | None = attrs.field(default=None, repr=False)
    max_concurrency: int = 8
    queue_size: int = 64
    queue_timeout: float = 60.0
    max_body_bytes: int = 32 << 20
    max_held_bytes: int | None = None
    ready_timeout: float = 60.0


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
        return {"running": admission.running, "queued": admission.waiting, "rejected": admission.rejected}

    metrics = Metrics(engine.health, queue_state)

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

    @app.exception_handler(SandboxUnavailableError)
    async def _unavailable(_request: Request, exc: SandboxUnavailableError) -> JSONResponse:
        metrics.rejections.labels("unavailable").inc()
        return _problem(503, str(exc), exc.retry_after)

    @app.exception_handler(Busy)
    async def _busy(_request: Request, exc: Busy) -> JSONResponse:
        metrics.rejections.labels("queue_full").inc()
        return _problem(503, str(exc), exc.retry_after)

    async def run(
        request: ExecutionRequest, limits: Limits, job_options: dict[str, Any] | None = None
    ) -> tuple[ExecutionResult, BackgroundTask]:
        """Execute, and the task that releases the sandbox once the response is out.

        If the response is never sent (the client left), a timer releases it anyway.
        """
        async with admission.slot():
            started = time.monotonic()
            result, release = await anyio.to_thread.run_sync(engine.run, request, limits, job_options, limiter=limiter)
        asyncio.get_running_loop().call_later(RELEASE_FALLBACK_SECONDS, release)
        elapsed = time.monotonic() - started
        metrics.executions.labels(request.language, result.status.value).inc()
        metrics.latency.labels(request.language).observe(elapsed)
        logger.info(
            "execution sandbox=%s language=%s status=%s exit_code=%s seconds=%.4f queue=%.4f",
            result.metadata.get("sandbox_id"), request.language, result.status.value, result.exit_code,
            result.execution_time, result.metadata.get("queue_seconds", 0.0),
        )
        return result, BackgroundTask(_call, release)

    def build(code: str, language: str, arguments: dict[str, Any], timeout: float | None, requested: dict[str, Any] | None) -> tuple[ExecutionRequest, Limits]:
        limits = resolve(config.engine.defaults, config.engine.maximums, timeout=timeout, requested=requested)
        try:
            request = ExecutionRequest(code=code, language=language, timeout=limits.timeout, arguments=arguments)
        except ValueError as exc:
            field, _, reason = str(exc).partition(": ")
            raise LimitError(field if reason else "request", reason or str(exc)) from None
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
        responses={400: {"model": ProblemOut}, 401: {"model": ProblemOut}, 413: {"model": ProblemOut}, 422: {"model": ProblemOut}, 503: {"model": ProblemOut}},
        summary="Run code in a fresh gVisor sandbox",
    )
    async def execute(body: ExecuteIn) -> JSONResponse:
        requested = body.limits.model_dump(exclude_none=True) if body.limits else None
        request, limits = build(body.code, body.language, body.arguments, body.timeout, requested)
        result, release = await run(request, limits)
        return JSONResponse(result.to_dict(), background=release)

    try:
        run_policy = CodePolicy().rules()
    except ConfigurationError as exc:
        raise ExecutorError(str(exc)) from None
    if run_policy is not None:
        logger.warning("/run refuses code by the %r code policy (%s)", run_policy[0], POLICY_ENV)

    @app.post(
        "/run",
        response_model=RunResponse,
        responses={400: {"model": ProblemOut}, 401: {"model": ProblemOut}, 422: {"model": ProblemOut}, 503: {"model": ProblemOut}},
        summary="RAGFlow executor_manager compatible execution",
    )
    async def ragflow_run(body: RunRequest) -> JSONResponse:
        request, limits = build(body.code(), body.core_language(), body.arguments or {}, None, None)
        if run_policy is not None:
            violations = check(request.code, request.language, run_policy[1])
            if violations:
                return JSONResponse(policy_refusal(violations))
        result, release = await run(request, limits, job_options())
        return JSONResponse(to_ragflow(result), background=release)

    return Gate(
        app,
        token=config.token,
        open_paths={LIVENESS_PATH},
        max_body_bytes=config.max_body_bytes,
        max_held_bytes=config.max_held_bytes,
    )


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
