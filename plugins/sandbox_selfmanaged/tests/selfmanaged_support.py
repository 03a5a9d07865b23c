"""Helpers of the self-managed tests: real ``sandbox-executor`` processes on free loopback ports.

Nothing is mocked. The session executor is started once (small warm pool, its own state dir)
and stopped at the end, asserting that it shut down cleanly and left its state directory empty,
no runsc container and no cgroup behind. Tests that need other flags start their own with
:func:`start_executor`.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox_selfmanaged.cgroups import Cgroups
from sandbox_selfmanaged.engine import EngineConfig
from sandbox_selfmanaged.runsc_platform import check_gvisor

GVISOR = check_gvisor()
"""Whether real gVisor sandboxes can run here (``$RUNSC`` or runsc on PATH, root, cgroups), decided once."""
RUNSC = GVISOR.binary or "/usr/bin/runsc"
EXECUTOR = str(Path(sys.executable).with_name("sandbox-executor"))


def require_gvisor() -> None:
    """Skip, with the reason and what to do, where real gVisor sandboxes cannot run."""
    if GVISOR.problem is not None:
        pytest.skip(f"gVisor {GVISOR.describe()}")


def child_pids(pid: int) -> list[int]:
    """Children of every thread of ``pid`` (orphans adopted by a subreaper included)."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return children


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Executor:
    """A running ``sandbox-executor serve`` and helpers to call it."""

    def __init__(self, process: subprocess.Popen[bytes], url: str, token: str | None, state_dir: Path, log_path: Path) -> None:
        self.process = process
        self.url = url
        self.token = token
        self.state_dir = state_dir
        self.log_path = log_path
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=url, headers=headers, timeout=120, trust_env=False)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def execute(self, code: str, language: str = "python", **fields: Any) -> dict[str, Any]:
        """POST /v1/execute and return the result dict (asserting a 200)."""
        response = self.http.post("/v1/execute", json={"code": code, "language": language, **fields})
        assert response.status_code == 200, (response.status_code, response.text)
        return response.json()

    def health(self) -> httpx.Response:
        return self.http.get("/healthz")

    def assert_healthy(self) -> None:
        response = self.health()
        assert response.status_code == 200, response.text
        result = self.execute("def main():\n    return 'still fine'\n")
        assert result["status"] == "success" and result["value"] == "still fine", result

    def stop(self, timeout: float = 60) -> int:
        self.http.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError(f"executor did not stop within {timeout}s:\n{self.log()[-3000:]}") from None
        return self.process.returncode


def start_executor(
    tmp_path: Path,
    *args: str,
    token: str | None = "auto",
    wait: str = "healthy",
    timeout: float = 90,
    extra_env: dict[str, str] | None = None,
) -> Executor:
    """Start an executor with ``args`` (on a free port, its own state dir under ``tmp_path``).

    ``wait``: "healthy" (GET /healthz answers 200), "live" (GET /livez answers) or "none".
    ``extra_env``: variables added to its environment (the caller's ``SANDBOX_*`` ones never are).
    """
    require_gvisor()
    port = free_port()
    state_dir = tmp_path / "state"
    log_path = tmp_path / "executor.log"
    if token == "auto":
        token = secrets.token_urlsafe(24)
    env = {key: value for key, value in os.environ.items() if not key.startswith("SANDBOX_")}
    env.update(extra_env or {})
    if token:
        env["SANDBOX_EXECUTOR_TOKEN"] = token
    command = [EXECUTOR, "serve", "--host", "127.0.0.1", "--port", str(port), "--state-dir", str(state_dir), *args]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    executor = Executor(process, f"http://127.0.0.1:{port}", token, state_dir, log_path)
    if wait == "none":
        return executor
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"executor exited with {process.returncode}:\n{executor.log()[-3000:]}")
        try:
            if wait == "live" and executor.http.get("/livez").status_code == 200:
                return executor
            if wait == "healthy" and executor.health().status_code == 200:
                return executor
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    executor.stop()
    raise AssertionError(f"executor not {wait} within {timeout}s:\n{executor.log()[-3000:]}")


def _command_lines() -> list[tuple[int, bytes]]:
    lines = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                lines.append((int(entry.name), (entry / "cmdline").read_bytes()))
            except OSError:
                continue
    return lines


def assert_clean_shutdown(executor: Executor) -> None:
    """The executor stopped with 0 and left no file, container, process (watchdog included) or cgroup behind."""
    code = executor.stop()
    assert code == 0, executor.log()[-3000:]
    assert executor.state_dir.is_dir()
    assert sorted(os.listdir(executor.state_dir)) == [], "state dir not empty after shutdown"
    listing = subprocess.run(
        [RUNSC, "--root", str(executor.state_dir / "runsc"), "list", "-quiet"], capture_output=True, text=True, check=False
    )
    assert listing.stdout.strip() == "", listing.stdout
    assert "engine stopped" in executor.log()
    survivors = [pid for pid, argv in _command_lines() if str(executor.state_dir).encode() in argv]
    assert survivors == [], f"processes naming the state dir outlived the executor: {survivors}"
    cgroups = Cgroups()
    parent = EngineConfig(state_dir=executor.state_dir).resolved_cgroup_parent().strip("/")
    leftovers = [p for p in (cgroups.root / c / parent for c in ("", "memory", "pids", "cpu")) if p.exists()] if cgroups.available else []
    assert leftovers == [], f"cgroups left behind: {leftovers}"
