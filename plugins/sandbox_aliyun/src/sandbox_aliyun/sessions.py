"""Aliyun sessions: an AgentRun sandbox with one persistent interpreter context.

A session's handle is ``"<sandbox id>/<context id>"``; any process with the same config reaches
the session from it (it connects to the sandbox and keeps the connection for later calls). The
working folder is :data:`SESSION_FOLDER`, the context's working directory; files go through
AgentRun's file API (``filesystem/upload``, ``filesystem/download``, ``filesystem``).

An execution runs the job through sandbox-core's runner in the context's own globals, so names
persist between executions; AgentRun's execute timeout stops it (the 30-second service limit and
the config's ``timeout`` cap it, as for one-shot executions). A timeout ends the context on the
service side: the session then gets a new context (its names are lost, its files kept) and the
result says ``metadata["session_restarted"]``. Another process holding the old handle finds the
sandbox's one live context itself.

Lifetime: the sandbox is created with ``sandboxIdleTimeoutSeconds`` set to the session's
``idle_timeout``, so AgentRun deletes a session nobody used, even when every client vanished.
AgentRun has no lifetime cap of its own: the process that opened the session deletes it at its
``max_lifetime`` (:data:`sandbox_aliyun.state.OPEN_SESSIONS`, a deadline thread); should that
process die first, the idle timeout still ends it. Close deletes the sandbox; ``sandbox_shutdown``
deletes the sessions this process opened.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import posixpath
import secrets
import threading
import time
from collections.abc import Mapping
from typing import Any

import attrs

from sandbox_aliyun import RUNTIME_NAME
from sandbox_aliyun.errors import AliyunProviderError, ResourceGoneError
from sandbox_aliyun.execution import connection_from, seconds_for
from sandbox_aliyun.limits import HARD_TIMEOUT, READY_TIMEOUT, REPORT_MARGIN, SANDBOX_HTTP_TIMEOUT, SERVICE_MARGIN
from sandbox_aliyun.remote import stdout_text
from sandbox_aliyun.session import Connection, InterpreterSandbox
from sandbox_aliyun.state import OPEN_SESSIONS
from sandbox_core.errors import NotSupportedError, SessionGoneError
from sandbox_core.failures import provider_failure
from sandbox_core.model import ExecutionRequest, ExecutionResult, ExecutionStatus
from sandbox_core.pooling import runtime_template
from sandbox_core.runner import BoundedCapture, Job, ResultStream, build_result, runner_source
from sandbox_core.sessions import FileInfo, SessionSpec

log = logging.getLogger(__name__)

SESSION_FOLDER = "/home/user"
"""The session's working folder: its context's working directory, where files go."""
LIST_DEPTH = 32
"""How deep :func:`list_files` looks into the working folder."""
MIN_IDLE_TIMEOUT = 1
"""Seconds: the shortest ``sandboxIdleTimeoutSeconds`` sent."""

DRIVER = """
def _sandbox_core_session(payload):
    import base64, json, signal, sys
    spec = json.loads(base64.b64decode(payload).decode("utf-8"))
    runner = {"__name__": "sandbox_core_runner", "__file__": "<sandbox-core-runner>"}
    exec(compile(spec["runner"], "<sandbox-core-runner>", "exec"), runner)
    job = json.loads(spec["job"])
    running, stopped = [True], []

    def stop(signum, stack):
        if running:
            stopped.append(True)
            raise SystemExit(1)

    try:
        previous = signal.signal(signal.SIGALRM, stop)
    except ValueError:  # not the main thread: the service's timeout alone stops the code
        previous = None
    else:
        signal.setitimer(signal.ITIMER_REAL, spec["timeout"])
    try:
        frame, value_json = runner["_run"](job, globals())
    except SystemExit:  # the stop landed after the code, in the runner's own work
        frame, value_json = {"exit_code": 1, "error": None}, "null"
    finally:
        running.clear()
        if previous is not None:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    if stopped:
        frame["timed_out"] = True
    rest = json.dumps(frame, ensure_ascii=False)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    sys.stdout.write(job["marker"] + '{"value": ' + value_json + ", " + rest[1:] + "\\n")
    sys.stdout.flush()
_sandbox_core_session(%r)
del _sandbox_core_session
"""
"""Runs one job in the context's globals (the driver is defined there), then writes the runner's
result frame after the user's output; the runner itself runs in a namespace of its own.

The driver stops the code itself at its timeout (a SIGALRM raising ``SystemExit`` in the
interpreter's main thread) and says so in the frame (``timed_out``), so that the output printed
so far comes back: AgentRun's reply to an execution its own timeout stopped holds none. The
service's timeout, a little later, still ends code that swallows the stop."""


@attrs.define(eq=False)
class _Live:
    """A session this process has reached: its sandbox and its current context."""

    handle: str
    sandbox: InterpreterSandbox
    context_id: str
    lock: threading.Lock = attrs.field(factory=threading.Lock)
    """One call at a time per session (its context runs one block at a time anyway)."""


_reached: dict[str, _Live] = {}
_reached_lock = threading.Lock()


def _connection(config: Mapping[str, Any], template: str | None = None) -> Connection:
    return connection_from({**config, "template_name": template} if template else config)


def open_session(spec: SessionSpec, config: Mapping[str, Any], provider_name: str) -> str:
    """Create the session's sandbox (idle timeout: the session's) and its context; the handle."""
    if spec.language != "python":
        raise NotSupportedError(provider_name, f"{spec.language} sessions (Aliyun sessions run Python)")
    template = runtime_template(config, spec.runtime, "aliyun") if spec.runtime is not None else None
    connection = attrs.evolve(_connection(config, template), idle_timeout=max(MIN_IDLE_TIMEOUT, math.ceil(spec.idle_timeout)))
    sandbox = InterpreterSandbox.open(connection, SANDBOX_HTTP_TIMEOUT, time.monotonic() + READY_TIMEOUT)
    try:
        context_id = sandbox.new_context()
    except BaseException:
        sandbox.release()
        raise
    handle = f"{sandbox.sandbox_id}/{context_id}"
    with _reached_lock:
        _reached[handle] = _Live(handle, sandbox, context_id)
    OPEN_SESSIONS.add(handle, sandbox.release, deadline=time.monotonic() + spec.max_lifetime)
    log.info("opened Aliyun session %s from template %s", handle, connection.template_name)
    return handle


def _gone(handle: str, why: str) -> SessionGoneError:
    with _reached_lock:
        _reached.pop(handle, None)
    OPEN_SESSIONS.discard(handle)
    return SessionGoneError(f"aliyun session {handle} is gone ({why}): open a new session")


def _reach(handle: str, config: Mapping[str, Any]) -> _Live:
    """The session of ``handle``, connecting to its sandbox when this process has not yet."""
    with _reached_lock:
        live = _reached.get(handle)
    if live is not None:
        return live
    sandbox_id, _, context_id = handle.partition("/")
    if not sandbox_id or not context_id or "/" in context_id:
        raise SessionGoneError(f"{handle!r} is not an aliyun session handle (<sandbox id>/<context id>)")
    try:
        sandbox = InterpreterSandbox.attach(_connection(config), SANDBOX_HTTP_TIMEOUT, sandbox_id)
    except ResourceGoneError:
        raise _gone(handle, "its sandbox was deleted: closed, idle or past its max_lifetime") from None
    with _reached_lock:
        return _reached.setdefault(handle, _Live(handle, sandbox, context_id))


def _current_context(live: _Live) -> str:
    """The session's live context after its own one vanished (another process restarted it)."""
    try:
        contexts = live.sandbox.contexts()
    except ResourceGoneError:
        raise _gone(live.handle, "its sandbox was deleted: closed, idle or past its max_lifetime") from None
    if len(contexts) != 1:
        raise _gone(live.handle, "its interpreter context is gone")
    live.context_id = contexts[0]
    return live.context_id


def execute(handle: str, request: ExecutionRequest, config: Mapping[str, Any], provider_name: str) -> ExecutionResult:
    """Run ``request`` in the session's context; a timeout gives the session a new context."""
    live = _reach(handle, config)
    timeout = seconds_for(request, config)
    meta: dict[str, Any] = {}
    job = Job(code=request.code, arguments=request.arguments, output_dir=f"/tmp/sandbox-core/{secrets.token_hex(8)}/output")
    payload = json.dumps({
        "runner": runner_source("python"),
        "job": job.encode().decode("utf-8"),
        "timeout": min(timeout, HARD_TIMEOUT - REPORT_MARGIN),
    })
    service_timeout = min(int(HARD_TIMEOUT), math.ceil(timeout + SERVICE_MARGIN))
    code = DRIVER % base64.b64encode(payload.encode("utf-8")).decode("ascii")
    meta.update(runtime=RUNTIME_NAME, sandbox_id=live.sandbox.sandbox_id)
    with live.lock:
        try:
            for name, data in request.files.items():
                live.sandbox.upload(posixpath.join(SESSION_FOLDER, name), data)
            started = time.monotonic()
            try:
                reply = live.sandbox.execute_python(code, live.context_id, service_timeout)
            except ResourceGoneError:  # the context (not the code) was missing: nothing ran
                reply = live.sandbox.execute_python(code, _current_context(live), service_timeout)
            elapsed = time.monotonic() - started
        except ResourceGoneError:
            raise _gone(handle, "its sandbox was deleted: closed, idle or past its max_lifetime") from None
        except AliyunProviderError as exc:
            return provider_failure(provider_name, str(exc), exc.kind, **meta)
        meta["context_id"] = live.context_id
        result = _result(reply, job, timeout, elapsed, int(config["max_output_bytes"]), provider_name, meta)
        if result.status is ExecutionStatus.TIMEOUT:
            _restart(live)
            result = attrs.evolve(result, metadata={**result.metadata, "session_restarted": True})
    return result


def _timed_out(reply: Any) -> bool:
    items = reply.get("results") if isinstance(reply, Mapping) else None
    return isinstance(items, list) and any(
        isinstance(item, Mapping) and item.get("type") == "error" and item.get("name") == "TimeoutError" for item in items
    )


def _result(
    reply: Any, job: Job, timeout: float, elapsed: float, limit: int, provider_name: str, meta: dict[str, Any]
) -> ExecutionResult:
    """The ExecutionResult of a session reply, by sandbox-core's shared rules."""
    stdout, stderr = ResultStream(job.marker, limit), BoundedCapture(limit)
    stdout.feed(stdout_text(reply, job.marker).encode("utf-8"))
    stdout.close()
    items = reply.get("results") if isinstance(reply, Mapping) else None
    errors = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, Mapping) and item.get("type") == "stderr":
            stderr.feed(str(item.get("text", "")).encode("utf-8"))
        elif isinstance(item, Mapping) and item.get("type") == "error":
            errors.append(str(item.get("traceback") or f"{item.get('name')}: {item.get('value')}"))
    frame = stdout.frame()
    timed_out = _timed_out(reply) or (frame is not None and frame.get("timed_out") is True)
    exit_code: int | None = None
    if not timed_out and frame is None:
        # The interpreter failed before the runner reported (the driver itself, a dead kernel).
        for text in errors:
            stderr.feed(text.encode("utf-8"))
        exit_code = 1
    return build_result(
        provider=provider_name,
        stdout=stdout,
        stderr=stderr,
        exit_code=exit_code,
        execution_time=elapsed,
        timed_out=timed_out,
        timeout=timeout,
        metadata=meta,
    )


def _restart(live: _Live) -> None:
    """Give the session a fresh context after a timeout (the service ended the old one, or should)."""
    live.sandbox.delete_context(live.context_id)
    live.context_id = live.sandbox.new_context()


def upload(handle: str, path: str, data: bytes, config: Mapping[str, Any]) -> None:
    live = _reach(handle, config)
    with live.lock:
        try:
            live.sandbox.upload(posixpath.join(SESSION_FOLDER, path), data)
        except ResourceGoneError:
            raise _gone(handle, "its sandbox was deleted: closed, idle or past its max_lifetime") from None


def download(handle: str, path: str, config: Mapping[str, Any]) -> bytes:
    live = _reach(handle, config)
    with live.lock:
        try:
            return live.sandbox.download(posixpath.join(SESSION_FOLDER, path))
        except ResourceGoneError:
            _check_alive(live)
            raise FileNotFoundError(f"{path}: no such file in the session's working folder") from None


def _check_alive(live: _Live) -> None:
    """:class:`SessionGoneError` when the session's sandbox is gone (a 404 may be the file's or the sandbox's)."""
    try:
        live.sandbox.contexts()
    except ResourceGoneError:
        raise _gone(live.handle, "its sandbox was deleted: closed, idle or past its max_lifetime") from None


def list_files(handle: str, config: Mapping[str, Any]) -> list[FileInfo]:
    live = _reach(handle, config)
    with live.lock:
        try:
            files = live.sandbox.list_files(SESSION_FOLDER, LIST_DEPTH)
        except ResourceGoneError:
            raise _gone(handle, "its sandbox was deleted: closed, idle or past its max_lifetime") from None
    return [FileInfo(path=path, size=size) for path, size in files]


def close(handle: str, config: Mapping[str, Any]) -> None:
    """Delete the session's sandbox; one already gone, or a handle never seen, is fine."""
    with _reached_lock:
        live = _reached.pop(handle, None)
    OPEN_SESSIONS.discard(handle)
    if live is not None:
        live.sandbox.release()
        return
    sandbox_id = handle.partition("/")[0]
    if not sandbox_id:
        return
    try:
        sandbox = InterpreterSandbox.attach(_connection(config), SANDBOX_HTTP_TIMEOUT, sandbox_id)
    except ResourceGoneError:
        return
    sandbox.release()
