"""The executor under hostile requests: memory amplification, slow clients, oversized chunked
bodies, the token in its environment, loose types, and who may call it without a token.

Real executors (``start_executor``); every attack is bounded in size, count and time.
"""

from __future__ import annotations

import concurrent.futures
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

LISTS = 10_000_000
ADVERSARIAL_BODY = (
    b'{"code": "def main(**arguments):\\n    return 1\\n", "arguments": {"a": ['
    + b"[]," * (LISTS - 1)
    + b"[]]}}"
)
"""30 MB of arguments that would be about 900 MB as Python lists."""
ADVERSARIAL_VALUE = "def main():\n    return [[]] * 7_800_000\n"
"""A 31 MB return value, about 500 MB as Python lists."""
MEMORY_BOUND = 200 * MIB


def test_user_json_does_not_amplify_executor_memory(tmp_path: Path) -> None:
    executor = start_executor(tmp_path, "--languages", "python", "--pool-size", "2", "--max-concurrency", "4")
    try:
        executor.assert_healthy()
        pid = executor.process.pid
        idle = _status(pid, "VmRSS")
        _reset_peak(pid)

        def hostile_body(_: int) -> httpx.Response:
            return executor.http.post("/v1/execute", content=ADVERSARIAL_BODY, headers={"Content-Type": "application/json"})

        def hostile_value(_: int) -> httpx.Response:
            return executor.http.post("/v1/execute", json={"code": ADVERSARIAL_VALUE, "limits": {"memory_mb": 768}})

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            bodies = list(pool.map(hostile_body, range(4)))
            values = list(pool.map(hostile_value, range(4)))
        growth = _status(pid, "VmHWM") - idle
        for response in bodies:
            assert response.status_code == 200, response.text[:500]
        for response in values:
            assert response.status_code == 200, response.text[:500]
            assert response.content.count(b"[], ") == 7_800_000 - 1, response.content[:300]
            assert b'"status":"success"' in response.content
        assert growth < MEMORY_BOUND, f"executor memory grew by {growth / MIB:.0f} MiB (idle {idle / MIB:.0f} MiB)"
        executor.assert_healthy()
    finally:
        assert_clean_shutdown(executor)
