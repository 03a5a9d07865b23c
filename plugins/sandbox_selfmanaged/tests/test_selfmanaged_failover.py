"""Failover of the ``self_managed`` provider never runs code twice and never loses a result.

The provider moves to another executor only when the request provably did not run where it was
sent (connection refused, 503 from admission). A disconnect after the request was sent, or a 5xx
from inside an executor, is a ``provider_error`` naming the endpoint and saying the outcome is
unknown. Small real HTTP servers stand in for executors that misbehave in one exact way; the
kill test uses two real executors and a real ``kill -9`` under load.
"""

from __future__ import annotations

import http.server
import json
import re
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import pytest
from selfmanaged_support import Executor, assert_clean_shutdown, free_port, start_executor

from sandbox_core import SandboxClient
from sandbox_core.model import ExecutionResult, ExecutionStatus


class _StubExecutor(http.server.ThreadingHTTPServer):
    """An HTTP server answering ``POST /v1/execute`` in one fixed way, counting the requests."""

    daemon_threads = True

    def __init__(self, behaviour: str) -> None:
        super().__init__(("127.0.0.1", 0), _StubHandler)
        self.behaviour = behaviour
        self.posts = 0
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


class _StubHandler(http.server.BaseHTTPRequestHandler):
    server: _StubExecutor

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.server.posts += 1
        behaviour = self.server.behaviour
        if behaviour == "disconnect":
            # The whole request was read, as an executor killed mid-execution would have.
            self.close_connection = True
            self.connection.close()
            return
        if behaviour == "ok":
            self._answer(200, ExecutionResult(status=ExecutionStatus.SUCCESS, stdout="ran\n").to_dict())
        elif behaviour == "busy":
            self._answer(503, {"detail": "the execution queue is full"}, {"Retry-After": "0"})
        else:
            self._answer(int(behaviour), {"detail": "internal error"})

    def _answer(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", "Content-Length": str(len(data)), **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


@contextmanager
def _stub(behaviour: str) -> Iterator[_StubExecutor]:
    server = _StubExecutor(behaviour)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def _execute(endpoints: list[str], **config: Any) -> ExecutionResult:
    """One execution through sandbox-core; the first attempt goes to ``endpoints[0]`` (a new client)."""
    with closing(SandboxClient(provider="self_managed", config={"endpoints": endpoints, "retries": 2, **config})) as client:
        return client.execute("print('hello')", timeout=5)


@pytest.mark.parametrize("status", [500, 502, 504])
def test_a_server_error_after_acceptance_is_not_retried_elsewhere(status: int) -> None:
    with _stub(str(status)) as failing, _stub("ok") as healthy:
        result = _execute([failing.url, healthy.url])
    assert result.status is ExecutionStatus.PROVIDER_ERROR, result
    assert result.error is not None
    assert result.error.message.startswith(f"{failing.url}: failed inside with HTTP {status}")
    assert "outcome is unknown" in result.error.message
    assert result.metadata["endpoint"] == failing.url
    assert (failing.posts, healthy.posts) == (1, 0)


def test_a_disconnect_after_the_request_was_sent_is_not_retried_elsewhere() -> None:
    with _stub("disconnect") as dying, _stub("ok") as healthy:
        result = _execute([dying.url, healthy.url])
    assert result.status is ExecutionStatus.PROVIDER_ERROR, result
    assert result.error is not None
    message = result.error.message
    assert message.startswith(f"{dying.url}: the connection broke after the request was sent"), message
    assert "RemoteProtocolError" in message and "outcome is unknown" in message
    assert (dying.posts, healthy.posts) == (1, 0)


def test_a_refusal_from_admission_moves_to_the_next_executor() -> None:
    with _stub("busy") as busy, _stub("ok") as healthy:
        result = _execute([busy.url, healthy.url])
    assert result.status is ExecutionStatus.SUCCESS, result
    assert result.metadata["endpoint"] == healthy.url
    assert any("unavailable (503)" in attempt for attempt in result.metadata["failed_attempts"])
    assert (busy.posts, healthy.posts) == (1, 1)


def test_a_refused_connection_moves_to_the_next_executor() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with _stub("ok") as healthy:
        result = _execute([dead, healthy.url])
    assert result.status is ExecutionStatus.SUCCESS, result
    assert result.metadata["endpoint"] == healthy.url
    assert healthy.posts == 1


# -- a real kill -9 under load ------------------------------------------------------------------

IN_FLIGHT = 6
SLEEP_CODE = "import time\ntime.sleep({seconds})\nprint('finished {tag}')\n"


def _running(executor: Executor) -> int:
    return int(executor.health().json()["requests"]["running"])


def _executions(executor: Executor) -> int:
    """How many executions ``executor`` finished, whatever their status (from its /metrics)."""
    text = executor.http.get("/metrics").text
    return int(sum(float(v) for v in re.findall(r"^sandbox_executor_executions_total\{[^}]*\} (\S+)$", text, re.M)))


def test_killing_an_executor_under_load_runs_nothing_twice_and_loses_nothing(tmp_path: Path) -> None:
    flags = ("--languages", "python", "--python-pool-size", "3", "--max-concurrency", "8")
    token = "failover-test-token"
    (tmp_path / "victim").mkdir()
    (tmp_path / "survivor").mkdir()
    victim = start_executor(tmp_path / "victim", *flags, token=token)
    survivor = start_executor(tmp_path / "survivor", *flags, token=token)
    config = {"endpoints": [victim.url, survivor.url], "token": token, "retries": 2}
    try:
        with closing(SandboxClient(provider="self_managed", config=config)) as client, ThreadPoolExecutor(IN_FLIGHT) as pool:
            futures = [
                pool.submit(client.execute, SLEEP_CODE.format(seconds=20, tag=index), timeout=60) for index in range(IN_FLIGHT)
            ]
            # Round-robin spreads them; kill the victim once every execution is running somewhere.
            deadline = time.monotonic() + 120
            while (killed := _running(victim)) + _running(survivor) < IN_FLIGHT or not killed:
                assert time.monotonic() < deadline, (victim.log()[-2000:], survivor.log()[-2000:])
                assert not any(f.done() for f in futures), [f.result().to_dict() for f in futures if f.done()]
                time.sleep(0.05)
            victim.process.send_signal(signal.SIGKILL)
            victim.process.wait()
            results = [future.result(timeout=180) for future in futures]

        succeeded = [r for r in results if r.status is ExecutionStatus.SUCCESS]
        unknown = [r for r in results if r.status is ExecutionStatus.PROVIDER_ERROR]
        assert len(succeeded) + len(unknown) == IN_FLIGHT, [r.to_dict() for r in results]
        # Nothing lost: what ran on the survivor finished there; each execution the kill cut off
        # answers that its outcome is unknown, naming the victim and the broken connection.
        assert len(unknown) == killed, [r.to_dict() for r in results]
        assert all(r.metadata["endpoint"] == survivor.url and r.stdout.startswith("finished") for r in succeeded)
        for result in unknown:
            assert result.error is not None
            message = result.error.message
            assert message.startswith(f"{victim.url}: the connection broke after the request was sent"), message
            assert "outcome is unknown" in message
        # Nothing twice: the survivor ran only what was sent to it, none of the victim's again.
        assert _executions(survivor) == IN_FLIGHT - killed
    finally:
        victim.http.close()
        if victim.process.poll() is None:
            victim.process.kill()
            victim.process.wait()
        assert_clean_shutdown(survivor)
        # A successor on the victim's state directory removes the sandboxes the kill left.
        assert_clean_shutdown(start_executor(tmp_path / "victim", "--languages", "python", "--python-pool-size", "1", token=token))


def test_metrics_are_counted_per_execution(executor: Executor) -> None:
    """The kill test counts executions through /metrics; check that count moves by one per run."""
    before = _executions(executor)
    assert executor.execute("print(1)")["status"] == "success"
    assert _executions(executor) == before + 1
