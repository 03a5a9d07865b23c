"""An in-process provider that runs the runner protocol in a plain subprocess. NOT A SANDBOX.

It exists so the core, the conformance kit and provider authors can exercise the full contract
(arguments, values, errors, timeouts, output limits, JavaScript) on any machine, with no backend.
It isolates nothing: never register it where untrusted code runs. It is deliberately not published
as an entry point; tests register it with the ``register_provider`` fixture.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from typing import IO, Any

from sandbox_core.errors import FieldProblem
from sandbox_core.files import input_limit_fields
from sandbox_core.hookspecs import hookimpl
from sandbox_core.model import ExecutionRequest, ExecutionResult, HealthStatus, ProviderInfo
from sandbox_core.runner import BoundedCapture, Job, ResultStream, build_result, runner_path
from sandbox_core.schema import ConfigField, ConfigSchema
from sandbox_core.sessions import FileInfo, SessionSpec
from sandbox_core.streaming import STREAMS, OutputCallback, StreamDecoder
from sandbox_core.testing.local_sessions import LocalSessions
from sandbox_core.timeouts import TimeoutSettings, request_seconds

FLOOD_FACTOR = 8
"""Output beyond this many times the limit stops the process: it is a flood, not output."""


def _pump(stream: IO[bytes], feed: Callable[[bytes], None], total: Callable[[], int], cap: int, on_flood: Callable[[], None]) -> None:
    while True:
        chunk = stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536)
        if not chunk:
            return
        feed(chunk)
        if total() > cap:
            on_flood()


class UnsandboxedSubprocessProvider:
    """Runs each execution as a local ``python3``/``node`` child process (see module docstring)."""

    def __init__(self) -> None:
        self.sessions = LocalSessions()

    @hookimpl
    def sandbox_provider_info(self) -> ProviderInfo:
        return ProviderInfo(
            description="Local subprocess, no isolation: for tests only",
            tags=("testing", "unsafe"),
            timeouts=TimeoutSettings(maximum_setting="max_timeout"),
            streaming=True,
            sessions=True,
            files=True,
        )

    @hookimpl
    def sandbox_config_schema(self) -> ConfigSchema:
        return ConfigSchema(
            [
                ConfigField("python", "string", label="Python interpreter", default=sys.executable),
                ConfigField("node", "string", label="Node.js interpreter", default="node"),
                ConfigField("max_output_bytes", "integer", label="Output limit (bytes)", default=1 << 20, minimum=64, maximum=1 << 30),
                ConfigField("max_timeout", "number", label="Longest timeout (s)", default=300, minimum=0.1, maximum=3600),
                *input_limit_fields(),
            ]
        )

    @hookimpl
    def sandbox_validate_config(self, config: Mapping[str, Any]) -> list[FieldProblem]:
        problems = []
        for key in ("python", "node"):
            if shutil.which(config[key]) is None:
                problems.append(FieldProblem(key, f"{config[key]!r} is not an executable on PATH"))
        return problems

    @hookimpl
    def sandbox_health(self, config: Mapping[str, Any]) -> HealthStatus:
        started = time.monotonic()
        result = self._run(ExecutionRequest(code="def main():\n    return 'ok'\n", timeout=10), config, "")
        latency = time.monotonic() - started
        if result.value == "ok":
            return HealthStatus(healthy=True, message="local interpreter answered", latency=latency)
        return HealthStatus(healthy=False, message=f"probe failed: {result.status.value} {result.stderr[-500:]}", latency=latency)

    @hookimpl
    def sandbox_execute(
        self, request: ExecutionRequest, config: Mapping[str, Any], provider_name: str, on_output: OutputCallback | None
    ) -> ExecutionResult:
        return self._run(request, config, provider_name, on_output)

    def _workdir(self) -> str:
        """A new, empty folder for one execution: its current directory, home and output folder."""
        return tempfile.mkdtemp(prefix="sandbox-local-")

    def _discard_workdir(self, workdir: str) -> None:
        shutil.rmtree(workdir, ignore_errors=True)

    def _run(
        self, request: ExecutionRequest, config: Mapping[str, Any], provider_name: str, on_output: OutputCallback | None = None
    ) -> ExecutionResult:
        interpreter = config["python"] if request.language == "python" else config["node"]
        timeout = min(request_seconds(request), float(config["max_timeout"]))
        limit = int(config["max_output_bytes"])
        workdir = self._workdir()
        for name, data in request.files.items():
            os.makedirs(os.path.dirname(os.path.join(workdir, name)), exist_ok=True)
            with open(os.path.join(workdir, name), "wb") as handle:
                handle.write(data)
        job = Job(code=request.code, arguments=request.arguments, output_dir=os.path.join(workdir, "output"))
        events = [StreamDecoder(stream, on_output) for stream in STREAMS] if on_output is not None else []
        stdout = ResultStream(job.marker, limit, on_output=events[0] if events else None)
        stderr = BoundedCapture(limit, on_kept=events[1] if events else None)
        flooded = threading.Event()
        started = time.monotonic()
        process = subprocess.Popen(
            [interpreter, str(runner_path(request.language))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=workdir,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": workdir, "LANG": "C.UTF-8"},
            start_new_session=True,
        )

        def kill() -> None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        def on_flood() -> None:
            flooded.set()
            kill()

        assert process.stdin and process.stdout and process.stderr
        cap = limit * FLOOD_FACTOR
        pumps = [
            threading.Thread(target=_pump, args=(process.stdout, stdout.feed, lambda: stdout.output.total, cap, on_flood), daemon=True),
            threading.Thread(target=_pump, args=(process.stderr, stderr.feed, lambda: stderr.total, cap, on_flood), daemon=True),
        ]
        for pump in pumps:
            pump.start()
        try:
            process.stdin.write(job.encode())
            process.stdin.close()
        except BrokenPipeError:
            pass
        timed_out = False
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
        kill()  # also ends anything the code left running in the background
        process.wait()
        for pump in pumps:
            pump.join(timeout=5)
        stdout.close()
        for decoder, capture in zip(events, (stdout.output, stderr)):
            decoder.close(cut=capture.truncated)
        elapsed = time.monotonic() - started
        self._discard_workdir(workdir)
        exit_code = process.returncode if process.returncode is not None and process.returncode >= 0 else None
        # Killed by us (timeout, flood): the signal is ours, not an exit code of the program.
        if exit_code is None and not (timed_out or flooded.is_set()):
            exit_code = 128 - (process.returncode or 0)
        return build_result(
            provider=provider_name,
            stdout=stdout,
            stderr=stderr,
            exit_code=exit_code,
            execution_time=elapsed,
            timed_out=timed_out,
            timeout=timeout,
            metadata={"runtime": "unsandboxed-subprocess", "flooded": flooded.is_set()},
        )

    # -- sessions (see local_sessions: one session runner process each) ---------------------------

    @hookimpl
    def sandbox_session_open(self, spec: SessionSpec, config: Mapping[str, Any], provider_name: str) -> str:
        return self.sessions.open(spec, config, provider_name)

    @hookimpl
    def sandbox_session_execute(
        self, handle: str, request: ExecutionRequest, config: Mapping[str, Any], on_output: OutputCallback | None
    ) -> ExecutionResult:
        return self.sessions.execute(handle, request, config, on_output)

    @hookimpl
    def sandbox_session_upload(self, handle: str, path: str, data: bytes) -> None:
        self.sessions.upload(handle, path, data)

    @hookimpl
    def sandbox_session_download(self, handle: str, path: str) -> bytes:
        return self.sessions.download(handle, path)

    @hookimpl
    def sandbox_session_list_files(self, handle: str) -> list[FileInfo]:
        return self.sessions.list_files(handle)

    @hookimpl
    def sandbox_session_close(self, handle: str) -> None:
        self.sessions.close(handle)

    @hookimpl
    def sandbox_shutdown(self) -> None:
        self.sessions.close_all()
