"""Sessions of the local test provider: one plain ``session_runner.py`` process each. NOT A SANDBOX.

Each session is a child process in a folder of its own under the system's temporary folder; a
reaper thread ends sessions idle for their ``idle_timeout`` or older than their ``max_lifetime``.
Handles are only meaningful in the process that opened them (this provider keeps no server).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from typing import Any

import attrs

from sandbox_core.errors import NotSupportedError, SessionGoneError
from sandbox_core.model import ExecutionRequest, ExecutionResult
from sandbox_core.runner.session_channel import SessionChannel, session_runner_path
from sandbox_core.sessions import FileInfo, SessionSpec
from sandbox_core.streaming import OutputCallback
from sandbox_core.timeouts import request_seconds

REAP_SECONDS = 0.25
"""How often the reaper looks for expired sessions."""


@attrs.define(eq=False)
class LocalSession:
    """One session: its process, channel, folder and clocks."""

    process: subprocess.Popen[bytes]
    channel: SessionChannel
    workdir: str
    spec: SessionSpec
    opened_at: float
    used_at: float
    lock: threading.Lock = attrs.field(factory=threading.Lock)

    def expired(self, now: float) -> bool:
        return now - self.used_at > self.spec.idle_timeout or now - self.opened_at > self.spec.max_lifetime


class LocalSessions:
    """Every session the local provider holds in this process; see the module docstring."""

    def __init__(self) -> None:
        self._sessions: dict[str, LocalSession] = {}
        self._lock = threading.Lock()
        self._reaper: threading.Thread | None = None

    def count(self) -> int:
        """Sessions alive now (the conformance kit counts them to check that close frees them)."""
        with self._lock:
            return len(self._sessions)

    def open(self, spec: SessionSpec, config: Mapping[str, Any], provider_name: str) -> str:
        if spec.language != "python":
            raise NotSupportedError(provider_name, f"{spec.language} sessions")
        workdir = tempfile.mkdtemp(prefix="sandbox-local-session-")
        os.mkdir(os.path.join(workdir, "work"))
        process = subprocess.Popen(
            [config["python"], str(session_runner_path())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=os.path.join(workdir, "work"),
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": workdir, "LANG": "C.UTF-8"},
            start_new_session=True,
        )
        streams = (process.stdin, process.stdout, process.stderr)
        fds = []
        for stream in streams:  # the channel owns copies of the pipes; the Popen objects let theirs go
            assert stream is not None
            fds.append(os.dup(stream.fileno()))
            stream.close()

        def kill() -> None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        channel = SessionChannel(fds[0], fds[1], fds[2], kill, provider_name)
        now = time.monotonic()
        handle = f"local/{secrets.token_hex(12)}"
        with self._lock:
            self._sessions[handle] = LocalSession(process, channel, workdir, spec, now, now)
            if self._reaper is None:
                self._reaper = threading.Thread(target=self._reap, name="local-session-reaper", daemon=True)
                self._reaper.start()
        return handle

    def _get(self, handle: str) -> LocalSession:
        with self._lock:
            session = self._sessions.get(handle)
        if session is None:
            raise SessionGoneError(f"session {handle} does not exist (closed, expired, or opened by another process)")
        return session

    def execute(
        self, handle: str, request: ExecutionRequest, config: Mapping[str, Any], on_output: OutputCallback | None = None
    ) -> ExecutionResult:
        session = self._get(handle)
        with session.lock:
            output_dir = os.path.join(session.workdir, "output")
            result, ended = session.channel.execute(
                request,
                output_dir=output_dir,
                max_output_bytes=int(config["max_output_bytes"]),
                timeout=min(request_seconds(request), float(config["max_timeout"])),
                metadata={"runtime": "unsandboxed-subprocess"},
                on_output=on_output,
            )
            session.used_at = time.monotonic()
        if ended:
            self.close(handle)
        return result

    def upload(self, handle: str, path: str, data: bytes) -> None:
        session = self._get(handle)
        with session.lock:
            session.channel.upload(path, data)
            session.used_at = time.monotonic()

    def download(self, handle: str, path: str) -> bytes:
        session = self._get(handle)
        with session.lock:
            data = session.channel.download(path)
            session.used_at = time.monotonic()
        return data

    def list_files(self, handle: str) -> list[FileInfo]:
        session = self._get(handle)
        with session.lock:
            files = session.channel.list_files()
            session.used_at = time.monotonic()
        return files

    def close(self, handle: str) -> None:
        with self._lock:
            session = self._sessions.pop(handle, None)
        if session is None:
            return
        session.channel.end("the session was closed")
        session.process.wait()
        shutil.rmtree(session.workdir, ignore_errors=True)

    def close_all(self) -> None:
        with self._lock:
            handles = list(self._sessions)
        for handle in handles:
            self.close(handle)

    def _reap(self) -> None:
        while True:
            time.sleep(REAP_SECONDS)
            now = time.monotonic()
            with self._lock:
                if not self._sessions:  # nothing to watch: the next open starts a new reaper
                    self._reaper = None
                    return
                expired = [h for h, s in self._sessions.items() if s.expired(now) and not s.lock.locked()]
            for handle in expired:
                self.close(handle)
