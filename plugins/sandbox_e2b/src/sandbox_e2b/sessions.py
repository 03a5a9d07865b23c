"""E2B sessions: a sandbox with one persistent code context, reachable from any process by its handle.

A session's handle is ``"<sandbox id>/<context id>"``. Any process with the same config reaches
the session from it: it connects to the sandbox (an envd token comes with the connection) and
keeps the connection for later calls. The session's working folder is the sandbox user's home,
:data:`SESSION_FOLDER`, which is also the code context's working directory; files go through envd
(the SDK's ``files`` API).

Lifetime, enforced by E2B itself so that no sandbox outlives a client that vanished: the
sandbox's E2B lifetime is set to ``idle_timeout`` (never past the end of ``max_lifetime``) when
the session opens, and renewed at every call, so E2B kills a session nobody used for
``idle_timeout`` seconds, and every session at its ``max_lifetime``. The session's end and idle
timeout travel in the sandbox's metadata, so that every process renews it the same way.

An execution runs the job through sandbox-core's runner in the context's own globals, so names
persist from one execution to the next. A timeout restarts the context (E2B's restart: its names
are lost, its files kept) and says so in ``metadata["session_restarted"]``. Close kills the
sandbox; ``sandbox_shutdown`` kills the sessions this process opened
(:data:`sandbox_e2b.state.OPEN_SESSIONS`).
"""

from __future__ import annotations

import logging
import math
import posixpath
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from sandbox_core.errors import NotSupportedError, SessionGoneError
from sandbox_core.model import ExecutionRequest, ExecutionResult, ExecutionStatus
from sandbox_core.pooling import runtime_template
from sandbox_core.schema import secret_values
from sandbox_core.sessions import FileInfo, SessionSpec
from sandbox_core.streaming import OutputCallback
from sandbox_core.timeouts import request_seconds
from sandbox_e2b import RUNTIME_NAME
from sandbox_e2b.errors import E2BUnavailableError, describe
from sandbox_e2b.execution import SESSION_DRIVER, Unclean, fail, run_python, upload_job, write_files
from sandbox_e2b.pool import LIFETIME_MARGIN, SANDBOX_METADATA, kill, sdk_options
from sandbox_e2b.state import OPEN_SESSIONS

if TYPE_CHECKING:
    from e2b_code_interpreter import Sandbox

logger = logging.getLogger(__name__)

SESSION_FOLDER = "/home/user"
"""The session's working folder: the code context's working directory, where files go."""
END_KEY = "sandbox_core_session_end"
"""Sandbox metadata: when the session ends (``time.time()`` seconds), from its ``max_lifetime``."""
IDLE_KEY = "sandbox_core_session_idle"
"""Sandbox metadata: the session's idle timeout in seconds."""
LIST_DEPTH = 32
"""How deep :func:`list_files` looks into the working folder."""


@attrs.define(eq=False)
class _Live:
    """A session this process has reached: the SDK's sandbox object and what its renewals need."""

    handle: str
    sandbox: Sandbox
    context_id: str
    ends_at: float
    idle_timeout: float
    lock: threading.Lock = attrs.field(factory=threading.Lock)
    """One call at a time per session (its context runs one block at a time anyway)."""


_reached: dict[str, _Live] = {}
_reached_lock = threading.Lock()


def _lifetime(idle_timeout: float, ends_at: float, at_least: float = 0.0) -> int:
    """Seconds of E2B lifetime to give the sandbox now: the idle timeout (or more, for a running
    execution), never past the session's end."""
    return max(1, math.ceil(min(max(idle_timeout, at_least), ends_at - time.time())))


def open_session(spec: SessionSpec, config: Mapping[str, Any], provider_name: str) -> str:
    """Create the session's sandbox and code context; its handle."""
    from e2b_code_interpreter import Sandbox

    if spec.language != "python":
        raise NotSupportedError(provider_name, f"{spec.language} sessions (E2B sessions run Python)")
    template = runtime_template(config, spec.runtime, "e2b") if spec.runtime is not None else str(config["template"])
    secrets = secret_values(config)
    ends_at = time.time() + spec.max_lifetime
    metadata = {**SANDBOX_METADATA, END_KEY: f"{ends_at:.3f}", IDLE_KEY: f"{spec.idle_timeout:g}"}
    try:
        sandbox = Sandbox.create(
            template=template, timeout=_lifetime(spec.idle_timeout, ends_at), metadata=metadata, **sdk_options(config)
        )
    except Exception as exc:
        raise E2BUnavailableError(describe(exc, action="creating a session's sandbox", secrets=secrets)) from None
    try:
        context_id = str(sandbox.create_code_context(cwd=SESSION_FOLDER, language="python").id)
    except Exception as exc:
        kill(sandbox, secrets)
        raise E2BUnavailableError(describe(exc, action="creating a session's code context", secrets=secrets)) from None
    handle = f"{sandbox.sandbox_id}/{context_id}"
    with _reached_lock:
        _reached[handle] = _Live(handle, sandbox, context_id, ends_at, spec.idle_timeout)
    OPEN_SESSIONS.add(handle, lambda: kill(sandbox, secrets))
    logger.info("opened E2B session %s from template %s", handle, template)
    return handle


def _gone(handle: str, why: str) -> SessionGoneError:
    with _reached_lock:
        _reached.pop(handle, None)
    OPEN_SESSIONS.discard(handle)
    return SessionGoneError(f"e2b session {handle} is gone ({why}): open a new session")


def _is_gone(exc: BaseException) -> bool:
    from e2b import SandboxNotFoundException, SandboxNotRunningException

    return isinstance(exc, (SandboxNotFoundException, SandboxNotRunningException))


def _reach(handle: str, config: Mapping[str, Any]) -> _Live:
    """The session of ``handle``, connecting to its sandbox when this process has not yet."""
    from e2b_code_interpreter import Sandbox

    with _reached_lock:
        live = _reached.get(handle)
    if live is not None:
        return live
    sandbox_id, _, context_id = handle.partition("/")
    if not sandbox_id or not context_id or "/" in context_id:
        raise SessionGoneError(f"{handle!r} is not an e2b session handle (<sandbox id>/<context id>)")
    try:
        sandbox = Sandbox.connect(sandbox_id, **sdk_options(config))
        metadata = sandbox.get_info().metadata
    except Exception as exc:
        if _is_gone(exc):
            raise _gone(handle, "its sandbox ended: closed, idle or past its max_lifetime") from None
        raise E2BUnavailableError(describe(exc, action="reaching a session", secrets=secret_values(config))) from None
    try:
        ends_at, idle_timeout = float(metadata[END_KEY]), float(metadata[IDLE_KEY])
    except (KeyError, TypeError, ValueError):
        raise SessionGoneError(f"sandbox {sandbox_id} is not a sandbox-core session") from None
    live = _Live(handle, sandbox, context_id, ends_at, idle_timeout)
    with _reached_lock:
        return _reached.setdefault(handle, live)


def _renew(live: _Live, config: Mapping[str, Any], at_least: float = 0.0) -> None:
    """Restart the session's idle clock (E2B's lifetime); :class:`SessionGoneError` past its end or when gone."""
    if live.ends_at <= time.time():
        kill(live.sandbox, secret_values(config))
        raise _gone(live.handle, "it reached its max_lifetime")
    try:
        live.sandbox.set_timeout(_lifetime(live.idle_timeout, live.ends_at, at_least))
    except Exception as exc:
        if _is_gone(exc):
            raise _gone(live.handle, "its sandbox ended: closed, idle or past its max_lifetime") from None
        raise E2BUnavailableError(describe(exc, action="renewing a session", secrets=secret_values(config))) from None


def execute(
    handle: str,
    request: ExecutionRequest,
    config: Mapping[str, Any],
    provider_name: str,
    on_output: OutputCallback | None,
) -> ExecutionResult:
    """Run ``request`` in the session's context; a timeout restarts the context."""
    live = _reach(handle, config)
    secrets = secret_values(config)
    metadata: dict[str, Any] = {"runtime": RUNTIME_NAME, "sandbox_id": live.sandbox.sandbox_id, "context_id": live.context_id}
    restarted: list[bool] = []

    def restart() -> None:
        try:
            live.sandbox.restart_code_context(live.context_id)
            restarted.append(True)
        except Exception as exc:
            logger.warning("%s", describe(exc, action=f"restarting session {handle}", secrets=secrets).message)

    with live.lock:
        _renew(live, config, request_seconds(request) + LIFETIME_MARGIN)
        try:
            folder, job = upload_job(live.sandbox, request, secrets)
            write_files(live.sandbox, SESSION_FOLDER, request.files, secrets)
            result = run_python(
                live.sandbox, live.context_id, folder, job, request, config, provider_name, metadata, restart, on_output,
                driver=SESSION_DRIVER,
            )
        except Unclean as failed:
            if live.sandbox.is_running():
                return fail(provider_name, failed.problem, **metadata)
            raise _gone(handle, "its sandbox ended under the code") from None
        if result.status is not ExecutionStatus.TIMEOUT and result.metadata.get("kernel_lost"):
            restart()
        _renew(live, config)
    if restarted:
        result = attrs.evolve(result, metadata={**result.metadata, "session_restarted": True})
    return result


def upload(handle: str, path: str, data: bytes, config: Mapping[str, Any]) -> None:
    live = _reach(handle, config)
    with live.lock:
        _renew(live, config)
        try:
            live.sandbox.files.write(posixpath.join(SESSION_FOLDER, path), data)
        except Exception as exc:
            raise _failure(live, exc, f"uploading {path}", config) from None


def download(handle: str, path: str, config: Mapping[str, Any]) -> bytes:
    from e2b import FileNotFoundException

    live = _reach(handle, config)
    with live.lock:
        _renew(live, config)
        try:
            return bytes(live.sandbox.files.read(posixpath.join(SESSION_FOLDER, path), format="bytes"))
        except FileNotFoundException:
            raise FileNotFoundError(f"{path}: no such file in the session's working folder") from None
        except Exception as exc:
            raise _failure(live, exc, f"downloading {path}", config) from None


def list_files(handle: str, config: Mapping[str, Any]) -> list[FileInfo]:
    """The regular files under the working folder, named relative to it.

    Paths are cut relative to the folder the sandbox reports its top entries in (envd reports the
    paths it resolved).
    """
    from e2b import FileType

    live = _reach(handle, config)
    with live.lock:
        _renew(live, config)
        try:
            entries = live.sandbox.files.list(SESSION_FOLDER, depth=LIST_DEPTH)
        except Exception as exc:
            raise _failure(live, exc, "listing files", config) from None
    if not entries:
        return []
    base = min((posixpath.dirname(entry.path) for entry in entries), key=len)
    return [
        FileInfo(path=posixpath.relpath(entry.path, base), size=entry.size)
        for entry in entries
        if entry.type == FileType.FILE
    ]


def _failure(live: _Live, exc: Exception, action: str, config: Mapping[str, Any]) -> Exception:
    if _is_gone(exc):
        return _gone(live.handle, "its sandbox ended: closed, idle or past its max_lifetime")
    return E2BUnavailableError(describe(exc, action=action, secrets=secret_values(config)))


def close(handle: str, config: Mapping[str, Any]) -> None:
    """Kill the session's sandbox; a session already gone, or a handle never seen, is fine."""
    from e2b_code_interpreter import Sandbox

    with _reached_lock:
        _reached.pop(handle, None)
    OPEN_SESSIONS.discard(handle)
    sandbox_id = handle.partition("/")[0]
    if not sandbox_id:
        return
    try:
        Sandbox.kill(sandbox_id, **sdk_options(config))
    except Exception as exc:
        problem = describe(exc, action=f"killing session {handle}", secrets=secret_values(config))
        logger.warning("%s; E2B ends it when its lifetime runs out", problem.message)
