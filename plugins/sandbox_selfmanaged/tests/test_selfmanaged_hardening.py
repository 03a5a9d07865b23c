"""What failures, busy pools, departing clients and a dead executor do to sandboxes (real gVisor).

Every test bounds its waits and the code it runs (sleeps end at a timeout, loops are killed): if
the engine misbehaved, the test fails instead of leaving work behind.

Three tests drive the real :class:`~sandbox_selfmanaged.engine.Engine` in a process of their own
(``engine_faults.py``: the engine makes its process a child subreaper and reaps every child,
which must not happen inside pytest), with one fault injected where no request can reach.
"""

from __future__ import annotations

import base64
import concurrent.futures
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from selfmanaged_support import RUNSC, Executor, assert_clean_shutdown, require_gvisor, start_executor

from sandbox_selfmanaged.cgroups import Cgroups
from sandbox_selfmanaged.engine import EngineConfig

DRIVER = Path(__file__).with_name("engine_faults.py")


def _drive(scenario: str, tmp_path: Path) -> dict[str, Any]:
    require_gvisor()
    process = subprocess.run(
        [sys.executable, str(DRIVER), scenario, str(tmp_path / "state")],
        capture_output=True, text=True, timeout=300, check=False,
    )
    lines = [line for line in process.stdout.splitlines() if line.startswith("REPORT ")]
    assert lines, f"the driver failed (rc {process.returncode}):\n{process.stderr[-4000:]}"
    assert process.returncode == 0, process.stderr[-4000:]
    assert os.listdir(tmp_path / "state") == [], "the engine left files behind"
    return json.loads(lines[-1][len("REPORT "):])


def _pool(executor: Executor, language: str = "python") -> dict[str, Any]:
    return executor.health().json()["languages"][language]["pool"]


def _wait_for(condition: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not within {seconds:g}s: {what}"
        time.sleep(0.1)


# -- a failure after a sandbox was taken ----------------------------------------------------------


def test_a_result_that_cannot_be_built_releases_the_sandbox_and_the_pool_refills(tmp_path: Path) -> None:
    report = _drive("result_fails", tmp_path)
    assert report["ready"] is True
    first = report["first"]
    assert first.get("status") == "provider_error", first
    assert "could not read the sandbox's result" in first["error"] and "not iterable" in first["error"]
    assert first["stdout"] == "before the failure\n"
    assert report["settled"] is True, "the used sandbox was not destroyed, or the pool did not refill"
    assert report["health"] is True
    assert report["second"] == {"status": "success", "error": None, "stdout": "after\n"}


def test_a_pool_that_cannot_produce_a_sandbox_is_unhealthy(tmp_path: Path) -> None:
    report = _drive("stall", tmp_path)
    assert report["first"]["status"] == "success"
    stalled = report["stalled"]
    assert stalled["healthy"] is False, stalled
    assert "python" in stalled["message"] and "waited" in stalled["message"]
    assert report["second"]["status"] == "success", report["second"]
    assert report["health_after"] is True


def test_an_executor_whose_boots_keep_failing_for_a_language_is_unhealthy(tmp_path: Path) -> None:
    report = _drive("failing_boots", tmp_path)
    assert report["first"]["status"] == "success", report["first"]
    failing = report["failing"]
    assert failing["healthy"] is False, failing
    assert "javascript: the last 3 boots failed" in failing["message"] and "injected failure" in failing["message"]
    assert failing["python"]["status"] == "success"
    assert report["health_after"] is True


# -- starvation -----------------------------------------------------------------------------------


def test_a_request_gets_a_sandbox_while_the_pool_is_lent_out(tmp_path: Path) -> None:
    busy = start_executor(
        tmp_path, "--languages", "python", "--python-pool-size", "2", "--max-concurrency", "8", "--acquire-timeout", "10",
    )
    try:
        with concurrent.futures.ThreadPoolExecutor(3) as threads:
            long_runs = [threads.submit(busy.execute, "import time\ntime.sleep(60)\n", timeout=20) for _ in range(3)]
            _wait_for(lambda: _pool(busy)["busy"] == 3, 60, "three long executions running")
            short = busy.execute("def main():\n    return 'served'\n")
            longs = [future.result() for future in long_runs]
        assert short["status"] == "success" and short["value"] == "served", short
        assert all(result["status"] == "timeout" for result in longs)
        assert short["metadata"]["queue_seconds"] < min(result["execution_time"] for result in longs)
    finally:
        assert_clean_shutdown(busy)


# -- a client that leaves -------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["/v1/execute", "/run"])
def test_a_client_that_disconnects_stops_its_execution(tmp_path: Path, route: str) -> None:
    served = start_executor(tmp_path, "--languages", "python", "--python-pool-size", "1", "--default-timeout", "60")
    code = "import time\nprint('started', flush=True)\ntime.sleep(60)\n"
    body: dict[str, Any] = {"code": code, "timeout": 60}
    if route == "/run":
        body = {"code_b64": base64.b64encode(code.encode()).decode(), "language": "python"}
    try:
        leaving = httpx.Client(base_url=served.url, headers=served.http.headers, timeout=3, trust_env=False)
        with pytest.raises(httpx.ReadTimeout):
            leaving.post(route, json=body)
        leaving.close()
        _wait_for(lambda: _pool(served)["busy"] == 0, 20, "the sandbox of the departed client released")
        assert served.health().json()["requests"]["running"] == 0
        assert "client disconnected" in served.log()
        assert 'sandbox_executor_executions_total{language="python",status="cancelled"} 1.0' in served.http.get("/metrics").text
        assert served.execute("print('next')")["stdout"] == "next\n"
    finally:
        assert_clean_shutdown(served)


def test_a_request_whose_client_left_stops_waiting_for_a_sandbox(tmp_path: Path) -> None:
    report = _drive("cancel_waiting", tmp_path)
    assert report["first"]["status"] == "success"
    assert report["cancelled"].get("raised", "").startswith("ExecutionCancelled: the execution was not started"), report["cancelled"]
    assert report["waiting_after"] == 0
    assert report["second"]["status"] == "success", report["second"]


def test_a_client_that_disconnects_while_queued_leaves_the_queue(tmp_path: Path) -> None:
    served = start_executor(tmp_path, "--languages", "python", "--python-pool-size", "1", "--max-concurrency", "1", "--queue-size", "4")

    def requests() -> dict[str, int]:
        return dict(served.health().json()["requests"])

    try:
        with concurrent.futures.ThreadPoolExecutor(1) as threads:
            holder = threads.submit(served.execute, "import time\ntime.sleep(60)\n", timeout=20)
            _wait_for(lambda: requests()["running"] == 1, 60, "the slot taken")
            leaving = httpx.Client(base_url=served.url, headers=served.http.headers, timeout=3, trust_env=False)
            with pytest.raises(httpx.ReadTimeout):
                leaving.post("/v1/execute", json={"code": "print('never runs')"})
            leaving.close()
            _wait_for(lambda: requests()["queued"] == 0, 10, "the departed client's request out of the queue")
            assert not holder.done(), "the slot was freed by the long execution, not by the departure"
            assert holder.result()["status"] == "timeout"
        assert "its client left while it waited for a slot" in served.log()
    finally:
        assert_clean_shutdown(served)


# -- a dead executor ------------------------------------------------------------------------------


def _sandbox_processes(state_dir: Path) -> list[int]:
    """Processes in this executor's sandbox cgroups, or whose command line names its runsc root."""
    parent = EngineConfig(state_dir=state_dir).resolved_cgroup_parent()
    found = []
    for directory in Cgroups().directories(parent):
        for procs in directory.rglob("cgroup.procs") if directory.is_dir() else ():
            try:
                found += [int(pid) for pid in procs.read_text().split()]
            except OSError:
                continue  # removed while we looked
    needle = f"--root={state_dir / 'runsc'}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if needle in argv:
            found.append(int(entry.name))
    return found


def test_sandboxes_die_with_their_executor(tmp_path: Path) -> None:
    doomed = start_executor(tmp_path, "--languages", "python", "--python-pool-size", "1")
    with concurrent.futures.ThreadPoolExecutor(1) as threads:
        running = threads.submit(doomed.http.post, "/v1/execute", json={"code": "while True:\n    pass\n", "timeout": 60})
        _wait_for(lambda: _pool(doomed)["busy"] == 1, 60, "the execution running")
        assert _sandbox_processes(doomed.state_dir)
        doomed.process.send_signal(signal.SIGKILL)
        doomed.process.wait()
        with pytest.raises(httpx.TransportError):
            running.result()
    doomed.http.close()
    _wait_for(lambda: not _sandbox_processes(doomed.state_dir), 15, "every sandbox process of the killed executor gone")
    successor = start_executor(tmp_path, "--languages", "python", "--python-pool-size", "1")
    try:
        assert "left by a previous executor" in successor.log()
        assert successor.execute("print('fresh')")["stdout"] == "fresh\n"
    finally:
        assert_clean_shutdown(successor)


# -- runsc unusable for a while -------------------------------------------------------------------


def test_leftovers_of_a_broken_runsc_are_cleaned_once_it_works_again(tmp_path: Path) -> None:
    require_gvisor()
    runsc = tmp_path / "bin" / "runsc"
    runsc.parent.mkdir()
    shutil.copy2(RUNSC, runsc)
    flaky = start_executor(
        tmp_path, "--runsc", str(runsc), "--languages", "python", "--python-pool-size", "1",
        "--runtimes", "",  # one pool of fresh boots (no plain twin, no checkpoint restores) for the counts below
    )
    bundles = flaky.state_dir / "bundles"
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as threads:
            used = threads.submit(flaky.execute, "import time\ntime.sleep(5)\n", timeout=20)
            _wait_for(lambda: _pool(flaky)["busy"] == 1, 60, "the execution running")
            runsc.chmod(0o644)
            sandbox_id = used.result()["metadata"]["sandbox_id"]
        _wait_for(lambda: _pool(flaky)["boot_failures"] >= 1, 30, "a boot failing while runsc cannot run")
        # The used sandbox's own `runsc run` process (started while runsc could run) tears it down
        # when it is killed, so nothing of it waits for a working runsc; the boots that failed meanwhile do.
        _wait_for(lambda: not (bundles / sandbox_id).exists(), 30, "the used sandbox removed by its own runsc run")
        assert flaky.health().status_code == 503
        runsc.chmod(0o755)

        def clean() -> bool:
            listed = subprocess.run(
                [str(runsc), "--root", str(flaky.state_dir / "runsc"), "list", "-quiet"], capture_output=True, text=True, check=False
            )
            return sandbox_id not in listed.stdout and sorted(os.listdir(bundles)) == sorted(listed.stdout.split())

        _wait_for(clean, 60, "the used sandbox and the bundles of failed boots removed")
        _wait_for(lambda: flaky.health().status_code == 200, 60, "healthy again")
        assert flaky.execute("print('back')")["stdout"] == "back\n"
    finally:
        runsc.chmod(0o755)
        assert_clean_shutdown(flaky)
