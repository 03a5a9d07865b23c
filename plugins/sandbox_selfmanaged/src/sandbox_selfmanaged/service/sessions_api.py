"""The executor's session routes (see :mod:`sandbox_selfmanaged.sessions`).

======================================  ======================================================
``POST /v1/sessions``                   open a session → 201 ``{"id", ...}``; 503 at ``--max-sessions``
``GET /v1/sessions``                    the open sessions
``POST /v1/sessions/{id}/execute``      run code in it → ``ExecutionResult.to_dict()``
``PUT /v1/sessions/{id}/files/{path}``  write a file (the raw body) into its working folder → 204
``GET /v1/sessions/{id}/files/{path}``  read a file → the raw bytes; 404 when there is none
``GET /v1/sessions/{id}/files``         its files: ``[{"path", "size"}]``
``DELETE /v1/sessions/{id}``            end it → 204 (also when it is already gone)
======================================  ======================================================

A session that is gone (closed, expired, killed for memory, or the executor restarted) answers
410, so a client tells it from a missing file (404). Paths are checked as the core checks them
(:mod:`sandbox_core.files`): 422 otherwise.

``POST /v1/sessions/{id}/execute`` with ``Accept: application/x-ndjson`` answers with output
events while the code runs, then the result, as ``POST /v1/execute`` does (see :mod:`.events`).
A client that leaves before its answer (mid-stream, or while waiting for the JSON document)
stops the execution; as on a timeout, the session's interpreter is replaced (its names are lost,
its files kept) and the session stays open.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import Callable, Mapping
from typing import Any, Literal

import anyio
import attrs
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry, Gauge
from pydantic import BaseModel, ConfigDict, Field

from sandbox_core.errors import SessionGoneError
from sandbox_core.files import check_files, check_path
from sandbox_core.model import ExecutionRequest, ExecutionResult
from sandbox_core.sessions import DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_LIFETIME, SessionSpec
from sandbox_selfmanaged import EVENTS_MEDIA_TYPE
from sandbox_selfmanaged.errors import LimitError
from sandbox_selfmanaged.limits import Limits, resolve
from sandbox_selfmanaged.sandbox import Cancellation
from sandbox_selfmanaged.service.events import EventInbox, EventStreamResponse, cancel_on_disconnect, wants_events
from sandbox_selfmanaged.service.models import LimitsIn
from sandbox_selfmanaged.sessions import SessionManager

logger = logging.getLogger(__name__)
EVENTS_DESCRIPTION = "NDJSON output events, then the result (with Accept: application/x-ndjson)"


class SessionOpenIn(BaseModel):
    """A new session: its language and runtime, its timeouts, and the limits of its sandbox."""

    model_config = ConfigDict(extra="forbid", strict=True)

    language: Literal["python"] = "python"
    runtime: str | None = Field(None, description="Runtime (package set); default: the language's default")
    idle_timeout: float = Field(DEFAULT_IDLE_TIMEOUT, gt=0, description="Seconds unused after which the session ends")
    max_lifetime: float = Field(DEFAULT_MAX_LIFETIME, gt=0, description="Seconds after which the session ends regardless")
    limits: LimitsIn | None = None


class SessionExecuteIn(BaseModel):
    """One execution in a session; ``files`` (name to base64 content) are written into its working folder first."""

    model_config = ConfigDict(extra="forbid", strict=True)

    code: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    timeout: float | None = Field(None, gt=0, description="Wall-clock seconds of this execution (default: the operator's)")
    files: dict[str, str] = Field(default_factory=dict)


def _gone(exc: SessionGoneError) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=410)


def _invalid(field: str, message: str) -> JSONResponse:
    return JSONResponse({"detail": [{"loc": ["body", field], "msg": message, "type": "value_error"}]}, status_code=422)


def with_files(request: ExecutionRequest, files: Mapping[str, str]) -> ExecutionRequest:
    """``request`` with base64 ``files`` decoded and checked; :class:`LimitError` (422) names what is wrong."""
    try:
        decoded = {name: base64.b64decode(data, validate=True) for name, data in files.items()}
        return attrs.evolve(request, files=check_files(decoded))
    except (ValueError, binascii.Error) as exc:
        field, _, reason = str(exc).partition(": ")
        raise LimitError(field if reason else "files", reason or str(exc)) from None


def _nothing() -> None:
    """A session's sandbox outlives its executions: there is nothing to release after one."""


async def _execute_streaming(http: Request, manager: SessionManager, session_id: str, request: ExecutionRequest,
                             limits: Limits) -> Response:
    """Run ``request`` in the session, answering with its output events, then its result.

    As for one-shot executions, the response starts with the first event (or the result), so a
    session that is gone before the code runs still answers 410.
    """
    cancel = Cancellation()
    watcher = asyncio.ensure_future(cancel_on_disconnect(http, cancel))
    inbox = EventInbox()

    def run() -> tuple[ExecutionResult, Callable[[], None]]:
        return manager.execute(session_id, request, limits, inbox.post, cancel), _nothing

    task = asyncio.ensure_future(anyio.to_thread.run_sync(run))

    def over(_done: asyncio.Future[tuple[ExecutionResult, Callable[[], None]]]) -> None:
        watcher.cancel()
        if cancel.is_set():
            logger.info("client disconnected mid-stream: session %s's execution was stopped and its interpreter replaced",
                        session_id)
        cancel.close()
        inbox.done()

    task.add_done_callback(over)
    await inbox.first()
    if task.done() and not task.cancelled():
        failure = task.exception()
        if failure is not None:
            raise failure  # before any output: the route's error status (410, ...)
    return EventStreamResponse(inbox, task, cancel, lambda _result: None)


def add_session_routes(
    app: FastAPI, manager: SessionManager, defaults: Limits, maximums: Limits, registry: CollectorRegistry
) -> None:
    """Add the routes of the module docstring to ``app`` and the open-sessions gauge to ``registry``."""
    Gauge("sandbox_executor_sessions_open", "Sessions open (one sandbox each)", registry=registry).set_function(manager.count)

    @app.exception_handler(SessionGoneError)
    async def _session_gone(_request: Request, exc: SessionGoneError) -> JSONResponse:
        return _gone(exc)

    @app.post("/v1/sessions", status_code=201, summary="Open a session (a dedicated gVisor sandbox)")
    async def open_session(body: SessionOpenIn) -> JSONResponse:
        requested = body.limits.model_dump(exclude_none=True) if body.limits else None
        limits = resolve(defaults, maximums, timeout=None, requested=requested)
        try:
            spec = SessionSpec(body.language, body.runtime, body.idle_timeout, body.max_lifetime)
        except ValueError as exc:
            field, _, reason = str(exc).partition(": ")
            raise LimitError(field, reason) from None
        manager.engine.served.resolve(spec.language, spec.runtime)  # unknown runtime: 422 before booting
        session = await anyio.to_thread.run_sync(manager.open, spec, limits)
        return JSONResponse({"id": session.id, **spec.to_dict(), "limits": limits.to_dict()}, status_code=201)

    @app.get("/v1/sessions", summary="The open sessions")
    async def list_sessions() -> dict[str, Any]:
        return {"sessions": manager.describe(), "max_sessions": manager.max_sessions}

    @app.post(
        "/v1/sessions/{session_id}/execute",
        responses={200: {"content": {EVENTS_MEDIA_TYPE: {"schema": {"type": "string", "description": EVENTS_DESCRIPTION}}}}},
        summary="Run code in a session",
    )
    async def execute(session_id: str, body: SessionExecuteIn, http: Request) -> Response:
        session = manager.get(session_id)
        limits = resolve(defaults, maximums, timeout=body.timeout, requested=None)
        try:
            request = ExecutionRequest(
                code=body.code,
                language=session.spec.language,
                timeout=limits.timeout,
                arguments=body.arguments,
                runtime=session.spec.runtime,
            )
        except ValueError as exc:
            field, _, reason = str(exc).partition(": ")
            raise LimitError(field if reason else "request", reason or str(exc)) from None
        request = with_files(request, body.files)
        per_execution = attrs.evolve(session.limits, timeout=limits.timeout)
        if wants_events(http):
            return await _execute_streaming(http, manager, session_id, request, per_execution)
        with Cancellation() as cancel:
            watcher = asyncio.ensure_future(cancel_on_disconnect(http, cancel))
            try:
                result = await anyio.to_thread.run_sync(manager.execute, session_id, request, per_execution, None, cancel)
            finally:
                watcher.cancel()
            if cancel.is_set():
                logger.info("client disconnected: session %s's execution was stopped and its interpreter replaced", session_id)
        return JSONResponse(result.to_dict())

    @app.put("/v1/sessions/{session_id}/files/{path:path}", status_code=204, summary="Write a file into a session")
    async def upload(session_id: str, path: str, http: Request) -> Response:
        data = await http.body()
        try:
            check_files({path: data})
        except ValueError as exc:
            return _invalid("path", str(exc).partition(": ")[2] or str(exc))
        try:
            await anyio.to_thread.run_sync(manager.upload, session_id, path, data)
        except ValueError as exc:
            return _invalid("path", str(exc))
        return Response(status_code=204)

    @app.get("/v1/sessions/{session_id}/files/{path:path}", summary="Read a file of a session")
    async def download(session_id: str, path: str) -> Response:
        try:
            check_path(path)
        except ValueError as exc:
            return _invalid("path", str(exc).partition(": ")[2])
        try:
            data = await anyio.to_thread.run_sync(manager.download, session_id, path)
        except FileNotFoundError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=404)
        except ValueError as exc:
            return _invalid("path", str(exc))
        return Response(data, media_type="application/octet-stream")

    @app.get("/v1/sessions/{session_id}/files", summary="The files of a session")
    async def list_files(session_id: str) -> dict[str, Any]:
        files = await anyio.to_thread.run_sync(manager.list_files, session_id)
        return {"files": [f.to_dict() for f in files]}

    @app.delete("/v1/sessions/{session_id}", status_code=204, summary="End a session")
    async def close(session_id: str) -> Response:
        await anyio.to_thread.run_sync(manager.close, session_id)
        return Response(status_code=204)
