"""The executor's sessions: one dedicated gVisor sandbox each, whose session runner serves many jobs.

A session's sandbox is booted for it (never taken from the warm pool: its state must be its own)
with ``session_runner.py`` as its program, under the limits asked at opening; every execution in
it gets the same per-execution limits as a one-shot one (timeout, output, artifacts), and memory
is the sandbox's. Files travel through the runner's stdin into the sandbox's working folder (a
tmpfs inside the sandbox, counted by its memory limit): no host folder is shared with it, so one
session can never see another's files or the host's. The :class:`SessionManager` holds them all:
it enforces ``--max-sessions``, ends sessions idle for their ``idle_timeout`` or older than their
``max_lifetime`` (a reaper thread), ends a session whose sandbox was killed for memory or stopped
answering, and ends them all when the executor stops. Session ids are random and live in this
process only, so an executor restart ends every session (its clients get 404: session gone).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from sandbox_core.errors import SessionGoneError
from sandbox_core.model import ExecutionRequest, ExecutionResult
from sandbox_core.runner.protocol import DEFAULT_OUTPUT_DIR
from sandbox_core.runner.session_channel import SessionChannel
from sandbox_core.sessions import FileInfo, SessionSpec
from sandbox_core.streaming import OutputCallback
from sandbox_selfmanaged import PROVIDER_NAME, RUNTIME_NAME
from sandbox_selfmanaged.engine import SESSION_RUNNER, Engine
from sandbox_selfmanaged.errors import LimitError, SandboxBootError, SandboxUnavailableError
from sandbox_selfmanaged.limits import Limits
from sandbox_selfmanaged.rootfs import RUNNER_DIR
from sandbox_selfmanaged.sandbox import Cancellation, LanguageRuntime, Sandbox

logger = logging.getLogger(__name__)

REAP_SECONDS = 0.5
"""How often the reaper looks for expired sessions."""
ID_BYTES = 16


class SessionUnavailableError(SandboxUnavailableError):
    """No session can be opened now (the cap is reached, or its sandbox could not boot)."""


@attrs.define(eq=False)
class ExecutorSession:
    """One session: its sandbox, the channel to its runner, its limits and clocks."""

    id: str
    spec: SessionSpec
    limits: Limits
    sandbox: Sandbox
    channel: SessionChannel
    opened_at: float
    used_at: float
    lock: threading.Lock = attrs.field(factory=threading.Lock)
    executions: int = 0

    def expired(self, now: float) -> str | None:
        """Why the session must end now (idle or too old), or None."""
        if now - self.opened_at > self.spec.max_lifetime:
            return f"it reached its max_lifetime of {self.spec.max_lifetime:g}s"
        if now - self.used_at > self.spec.idle_timeout:
            return f"it was idle for its idle_timeout of {self.spec.idle_timeout:g}s"
        return None

    def describe(self, now: float) -> dict[str, Any]:
        return {
            "id": self.id,
            **self.spec.to_dict(),
            "sandbox_id": self.sandbox.id,
            "age_seconds": round(now - self.opened_at, 3),
            "idle_seconds": round(now - self.used_at, 3),
            "executions": self.executions,
        }


def session_runtime(runtime: LanguageRuntime) -> LanguageRuntime:
    """``runtime`` (a Python one) with the session runner as its program and the Python runner beside it."""
    session_path = f"{RUNNER_DIR}/{SESSION_RUNNER}"
    argv = tuple(session_path if arg == runtime.runner_path else arg for arg in runtime.argv)
    host_copy = str(Path(runtime.runner_host_path).with_name(SESSION_RUNNER))
    return attrs.evolve(
        runtime,
        argv=argv,
        runner_host_path=host_copy,
        runner_path=session_path,
        mounts=((runtime.runner_host_path, runtime.runner_path), *runtime.mounts),
    )


class SessionManager:
    """Every session of one executor; see the module docstring. Thread-safe."""

    def __init__(self, engine: Engine, max_sessions: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.engine = engine
        self.max_sessions = max_sessions
        self._clock = clock
        self._sessions: dict[str, ExecutorSession] = {}
        self._opening = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reaper = threading.Thread(target=self._reap, name="session-reaper", daemon=True)
        self._reaper.start()

    def count(self) -> int:
        """Sessions open now (the metrics gauge)."""
        with self._lock:
            return len(self._sessions)

    def describe(self) -> list[dict[str, Any]]:
        now = self._clock()
        with self._lock:
            sessions = list(self._sessions.values())
        return [s.describe(now) for s in sessions]

    # -- opening --------------------------------------------------------------------------------

    def open(self, spec: SessionSpec, limits: Limits) -> ExecutorSession:
        """Boot a sandbox for a new session. Raises :class:`SessionUnavailableError` (503) when none can be had."""
        engine = self.engine
        if engine.problem or engine.layout is None or engine.runsc is None or engine.supervisor is None:
            raise SessionUnavailableError(engine.problem or "the engine is not started", retry_after=30)
        if spec.language != "python":
            raise ValueError(f"language: sessions run python only on this executor, not {spec.language}")
        key = engine.served.resolve(spec.language, spec.runtime)
        runtime = engine.runtimes.get(key)
        if runtime is None:
            raise SessionUnavailableError(f"{spec.language} is unavailable on this executor", retry_after=30)
        with self._lock:
            if len(self._sessions) + self._opening >= self.max_sessions:
                raise SessionUnavailableError(
                    f"this executor holds its maximum of {self.max_sessions} sessions (--max-sessions); close some or try another",
                    retry_after=5,
                )
            self._opening += 1
        try:
            sandbox = engine.boot_sandbox(session_runtime(runtime), limits)
        except SandboxBootError as exc:
            raise SessionUnavailableError(f"the session's sandbox could not boot: {exc}", retry_after=5) from None
        finally:
            with self._lock:
                self._opening -= 1
        stdin, stdout, stderr = sandbox.take_stdio()
        channel = SessionChannel(stdin, stdout, stderr, sandbox.kill, PROVIDER_NAME)
        now = self._clock()
        session = ExecutorSession(secrets.token_hex(ID_BYTES), spec, limits, sandbox, channel, now, now)
        with self._lock:
            self._sessions[session.id] = session
        logger.info("session %s opened: sandbox %s, runtime %s", session.id, sandbox.id, runtime.name or runtime.language)
        return session

    def get(self, session_id: str) -> ExecutorSession:
        with self._lock:
            session = self._sessions.get(session_id)
        if session is None:
            raise SessionGoneError(f"session {session_id} does not exist on this executor (closed, expired, or the executor restarted)")
        return session

    # -- using ----------------------------------------------------------------------------------

    def execute(
        self,
        session_id: str,
        request: ExecutionRequest,
        limits: Limits,
        on_output: OutputCallback | None = None,
        cancel: Cancellation | None = None,
    ) -> ExecutionResult:
        """Run ``request`` in the session; per-execution ``limits`` as for a one-shot execution.

        ``on_output`` gets the output as it is read (in this thread: it must be quick). When
        ``cancel`` is raised (the client left) the execution stops and the session's interpreter
        is replaced, as on a timeout: the session stays open, its names are lost, its files kept.
        """
        session = self.get(session_id)
        cgroups, path = self.engine.cgroups, session.sandbox.cgroups_path
        with session.lock:
            result, ended = session.channel.execute(
                request,
                output_dir=DEFAULT_OUTPUT_DIR,
                max_output_bytes=limits.max_output_bytes,
                max_artifact_bytes=limits.max_artifact_bytes,
                timeout=limits.timeout,
                metadata={
                    "runtime": RUNTIME_NAME,
                    "sandbox_id": session.sandbox.id,
                    "session_id": session.id,
                    "sandbox_runtime": session.sandbox.runtime.name or None,
                    "language_version": session.sandbox.runtime.version,
                },
                memory_exceeded=(lambda: cgroups.oom_kills(path) > 0) if path is not None else None,
                on_output=on_output,
                cancel_fd=cancel.fileno() if cancel is not None else -1,
            )
            session.executions += 1
            session.used_at = self._clock()
        if ended:
            self.close(session_id, f"it ended during an execution: {session.channel.gone}")
        return result

    def _file_call(self, session_id: str, call: Callable[[ExecutorSession], Any]) -> Any:
        session = self.get(session_id)
        with session.lock:
            try:
                return call(session)
            finally:
                session.used_at = self._clock()
                if session.channel.gone is not None:
                    self.close(session_id, session.channel.gone)

    def upload(self, session_id: str, path: str, data: bytes) -> None:
        self._file_call(session_id, lambda s: s.channel.upload(path, data))

    def download(self, session_id: str, path: str) -> bytes:
        data: bytes = self._file_call(session_id, lambda s: s.channel.download(path))
        return data

    def list_files(self, session_id: str) -> list[FileInfo]:
        files: list[FileInfo] = self._file_call(session_id, lambda s: s.channel.list_files())
        return files

    def run_once(self, request: ExecutionRequest, limits: Limits) -> ExecutionResult:
        """Run a one-shot ``request`` that carries input files in a session of its own, then end it."""
        if request.language != "python":
            raise LimitError("files", "input files are supported for python only on this executor")
        spec = SessionSpec(language=request.language, runtime=request.runtime, idle_timeout=limits.timeout + 60)
        session = self.open(spec, limits)
        try:
            return self.execute(session.id, request, limits)
        finally:
            self.close(session.id, "its one execution is over")

    # -- ending ---------------------------------------------------------------------------------

    def close(self, session_id: str, reason: str = "it was closed") -> bool:
        """End a session and destroy its sandbox; False when there was no such session."""
        with self._lock:
            session = self._sessions.pop(session_id, None)
        if session is None:
            return False
        session.channel.end(f"session {session_id} ended: {reason}")
        if self.engine.janitor is not None:
            self.engine.janitor.dispose(session.sandbox)
        else:
            session.sandbox.destroy()
        logger.info("session %s ended (%s): sandbox %s destroyed", session_id, reason, session.sandbox.id)
        return True

    def close_all(self) -> None:
        """End every session and stop the reaper (the executor is stopping)."""
        self._stop.set()
        with self._lock:
            ids = list(self._sessions)
        for session_id in ids:
            self.close(session_id, "the executor is stopping")

    def _reap(self) -> None:
        while not self._stop.wait(REAP_SECONDS):
            now = self._clock()
            with self._lock:
                due = [(s.id, s.expired(now)) for s in self._sessions.values() if not s.lock.locked()]
            for session_id, reason in due:
                if reason is not None:
                    self.close(session_id, reason)
