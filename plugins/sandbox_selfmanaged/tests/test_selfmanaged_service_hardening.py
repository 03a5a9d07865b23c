"""The executor under hostile requests: memory amplification, slow clients, oversized chunked
bodies, the token in its environment, loose types, and who may call it without a token.

Real executors (``start_executor``); every attack is bounded in size, count and time.
"""

from __future__ import annotations

import concurrent.futures
import select
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
from selfmanaged_support import Executor, assert_clean_shutdown, start_executor

MIB = 1 << 20


def _status(pid: int, field: str) -> int:
    """A ``/proc/<pid>/status`` memory figure in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def _reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS


# -- memory: user JSON is relayed as text, never built as Python objects -------------------------

def _adversarial_body(lists: int = 10_000_000) -> bytes:
    """30 MB of arguments that would be about 900 MB as Python lists."""
    return b'{"code": "def main(**arguments):\\n    return 1\\n", "arguments": {"a": [' + b"[]," * (lists - 1) + b"[]]}}"


ADVERSARIAL_VALUE = "def main():\n    return [[]] * 7_800_000\n"
"""A 31 MB return value, about 500 MB as Python lists."""
MEMORY_BOUND = 200 * MIB


def test_user_json_does_not_amplify_executor_memory(tmp_path: Path) -> None:
    executor = start_executor(
        tmp_path, "--languages", "python", "--pool-size", "2", "--max-concurrency", "4", "--acquire-timeout", "180",
    )
    try:
        executor.assert_healthy()
        body = _adversarial_body()
        pid = executor.process.pid
        idle = _status(pid, "VmRSS")
        _reset_peak(pid)

        def hostile_body(_: int) -> httpx.Response:
            return executor.http.post("/v1/execute", content=body, headers={"Content-Type": "application/json"})

        def hostile_value(_: int) -> httpx.Response:
            return executor.http.post("/v1/execute", json={"code": ADVERSARIAL_VALUE, "timeout": 240, "limits": {"memory_mb": 768}})

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            bodies = list(pool.map(hostile_body, range(4)))
            values = list(pool.map(hostile_value, range(4)))
        growth = _status(pid, "VmHWM") - idle
        assert growth < MEMORY_BOUND, f"executor memory grew by {growth / MIB:.0f} MiB (idle {idle / MIB:.0f} MiB)"
        for response in bodies:
            assert response.status_code == 200, response.text[:500]
        for response in values:
            assert response.status_code == 200, response.text[:500]
            assert response.content.count(b"[], ") == 7_800_000 - 1, response.content[:300]
            assert b'"status":"success"' in response.content
        executor.assert_healthy()
    finally:
        assert_clean_shutdown(executor)


# -- slow clients: deadlines for headers and bodies, and a budget of bytes really received --------


def _trickle(port: int, head: bytes, started: threading.Barrier, *, byte: bytes = b" ", give_up: float = 60.0) -> bytes | None:
    """Send ``head``, then one ``byte`` every half second until the server answers or closes.

    Returns what the server sent (b"" for a close without an answer), None if it still held the
    connection open after ``give_up`` seconds.
    """
    deadline = time.monotonic() + give_up
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(head)
        started.wait()
        while time.monotonic() < deadline:
            readable, _, _ = select.select([sock], [], [], 0.5)
            try:
                if readable:
                    return sock.recv(65536)
                sock.sendall(byte)
            except OSError:
                return b""
    return None


def test_slow_clients_are_cut_off_and_others_served(tmp_path: Path) -> None:
    executor = start_executor(
        tmp_path, "--languages", "python", "--pool-size", "1",
        "--header-timeout", "2", "--body-timeout", "2", "--min-body-rate", "65536",
    )
    try:
        port = int(executor.url.rsplit(":", 1)[1])
        body_head = (
            f"POST /v1/execute HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {executor.token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {32 * MIB}\r\n\r\n{{\"code\": \""
        ).encode()
        half_headers = b"POST /v1/execute HTTP/1.1\r\nHost: x\r\nX-Slow: "
        started = threading.Barrier(10)
        with concurrent.futures.ThreadPoolExecutor(9) as pool:
            slow = [pool.submit(_trickle, port, body_head, started) for _ in range(8)]
            stalled = pool.submit(_trickle, port, half_headers, started, byte=b"a")
            started.wait()
            time.sleep(0.5)  # let the server read their headers
            # While they trickle (8 x 32 MiB announced: the whole default body budget), normal
            # requests are served.
            for number in range(3):
                result = executor.execute(f"def main():\n    return {number}\n")
                assert result["status"] == "success" and result["value"] == number, result
            answers = [future.result() for future in slow]
            header_answer = stalled.result()
        for answer in answers:
            assert answer is not None, "a slow body was never cut off"
            assert answer.startswith(b"HTTP/1.1 408"), answer
        assert header_answer is not None, "half-sent headers held the connection open"
        assert header_answer == b"" or header_answer.startswith(b"HTTP/1.1 408"), header_answer
        assert 'sandbox_executor_rejections_total{reason="slow_body"} 8.0' in executor.http.get("/metrics").text
        executor.assert_healthy()
    finally:
        assert_clean_shutdown(executor)


# -- oversized chunked body -----------------------------------------------------------------------


def test_chunked_body_over_the_limit_gets_413(executor: Executor) -> None:
    port = int(executor.url.rsplit(":", 1)[1])
    chunk = b"x" * MIB
    answer = b""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            f"POST /v1/execute HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {executor.token}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        )
        for _ in range(100):  # 100 MB at most; stop as soon as the server answers
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            try:
                sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
            except OSError:
                break
        sock.settimeout(30)
        try:
            while len(answer) < 65536 and (data := sock.recv(65536)):  # the server closes after it
                answer += data
        except OSError:
            pass
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert b"larger than" in answer
    assert 'sandbox_executor_rejections_total{reason="body_too_large"}' in executor.http.get("/metrics").text
    executor.assert_healthy()


# -- the token is not in the executor's environment -----------------------------------------------


def test_token_is_not_in_the_executor_environment(executor: Executor) -> None:
    assert executor.token
    environ = Path(f"/proc/{executor.process.pid}/environ").read_bytes()
    assert executor.token.encode() not in environ
    assert b"SANDBOX_EXECUTOR_TOKEN=" not in environ
    executor.assert_healthy()  # and the token still works


# -- strict types at the boundary ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"code": "pass", "limits": {"memory_mb": "64"}}, ["body", "limits", "memory_mb"]),
        ({"code": "pass", "limits": {"processes": True}}, ["body", "limits", "processes"]),
        ({"code": "pass", "limits": {"max_output_bytes": 4096.0}}, ["body", "limits", "max_output_bytes"]),
        ({"code": "pass", "timeout": "5"}, ["body", "timeout"]),
        ({"code": "pass", "timeout": True}, ["body", "timeout"]),
        ({"code": 5}, ["body", "code"]),
        ({"code": "pass", "language": ["python"]}, ["body", "language"]),
        ({"code": "pass", "arguments": [1]}, ["body", "arguments"]),
        ({"code": "pass", "arguments": {"not a name": 1}}, ["body", "arguments"]),
    ],
)
def test_strict_types_are_refused_naming_the_field(executor: Executor, body: dict[str, object], loc: list[str]) -> None:
    response = executor.http.post("/v1/execute", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == loc, response.text


def test_ragflow_run_refuses_wrong_types(executor: Executor) -> None:
    response = executor.http.post("/run", json={"code_b64": "cGFzcw==", "arguments": ["x"]})
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["body", "arguments"], response.text


# -- who may call: the token headers RAGFlow sends, and trusted networks ---------------------------


def test_token_headers_ragflow_sends(executor: Executor) -> None:
    code = {"code": "def main():\n    return 'in'\n"}
    for headers in ({"Authorization": f"Bearer {executor.token}"}, {"X-Sandbox-Token": str(executor.token)}):
        with httpx.Client(base_url=executor.url, headers=headers, trust_env=False, timeout=60) as client:
            response = client.post("/v1/execute", json=code)
            assert response.status_code == 200 and response.json()["value"] == "in", (headers.keys(), response.text)
    for headers in ({"X-Sandbox-Token": "wrong"}, {"Authorization": f"Basic {executor.token}"}, {"X-Sandbox-Token": ""}):
        with httpx.Client(base_url=executor.url, headers=headers, trust_env=False) as client:
            assert client.post("/v1/execute", json=code).status_code == 401, headers.keys()


def test_unauthenticated_from_a_trusted_network(tmp_path: Path) -> None:
    # Listening beyond loopback without a token is allowed only with the flag; loopback peers
    # are in the trusted network here, so a token-less request works.
    executor = start_executor(
        tmp_path, "--languages", "python", "--pool-size", "1", "--host", "0.0.0.0",
        "--allow-unauthenticated-from", "127.0.0.0/8", token=None,
    )
    try:
        assert executor.execute("def main():\n    return 'trusted'\n")["value"] == "trusted"
        assert "WITHOUT a token" in executor.log()
    finally:
        assert_clean_shutdown(executor)


def test_token_still_required_outside_the_trusted_networks(tmp_path: Path) -> None:
    executor = start_executor(tmp_path, "--languages", "python", "--pool-size", "1", "--allow-unauthenticated-from", "10.0.0.0/8")
    try:
        code = {"code": "def main():\n    return 1\n"}
        with httpx.Client(base_url=executor.url, trust_env=False) as anonymous:
            assert anonymous.post("/v1/execute", json=code).status_code == 401
            spoofed = anonymous.post("/v1/execute", json=code, headers={"X-Forwarded-For": "10.0.0.5"})
            assert spoofed.status_code == 401, "X-Forwarded-For must not make a peer trusted"
        assert executor.execute("def main():\n    return 1\n")["value"] == 1
    finally:
        assert_clean_shutdown(executor)


def test_bad_trusted_network_is_a_usage_error(tmp_path: Path) -> None:
    executor = start_executor(tmp_path, "--allow-unauthenticated-from", "10.0.0.0/8,not-a-net", wait="none")
    try:
        assert executor.process.wait(60) == 2
        assert "not a network" in executor.log() and "not-a-net" in executor.log()
    finally:
        executor.stop()
