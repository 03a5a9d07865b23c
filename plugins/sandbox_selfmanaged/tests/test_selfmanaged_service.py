"""The sandbox-executor HTTP API against real gVisor: contract, status codes, auth, back-pressure."""

from __future__ import annotations

import base64
import concurrent.futures
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
from selfmanaged_support import (
    EXECUTOR,
    GVISOR,
    RUNSC,
    Executor,
    assert_clean_shutdown,
    child_pids,
    free_port,
    start_executor,
)

# -- the result contract --------------------------------------------------------------------------


def test_execute_returns_the_result_contract(executor: Executor) -> None:
    code = "def main(a, b):\n    print('adding')\n    return {'sum': a + b, 'ok': True, 'none': None}\n"
    result = executor.execute(code, arguments={"a": 1, "b": 2})
    assert result["status"] == "success"
    assert result["value"] == {"sum": 3, "ok": True, "none": None}
    assert result["stdout"] == "adding\n" and result["exit_code"] == 0
    assert result["provider"] == "self_managed"
    metadata = result["metadata"]
    assert metadata["runtime"] == "gvisor"
    assert metadata["runsc_version"].startswith("runsc version")
    assert metadata["platform"] == GVISOR.platform  # what --platform auto takes from this runsc
    assert metadata["sandbox_id"].startswith("sbx-") and len(metadata["sandbox_id"]) == 20
    assert 0 < result["execution_time"] < 10


def test_javascript_async_main(executor: Executor) -> None:
    code = "async function main(args) {\n  await new Promise((r) => setTimeout(r, 5));\n  return {twice: args.n * 2, text: args.text};\n}\n"
    result = executor.execute(code, "javascript", arguments={"n": 21, "text": "héllo ✓"})
    assert result["status"] == "success", result
    assert result["value"] == {"twice": 42, "text": "héllo ✓"}


def test_user_error_is_a_200_with_error_status(executor: Executor) -> None:
    result = executor.execute("def main():\n    raise ValueError('bad input')\n")
    assert result["status"] == "error"
    assert result["error"]["type"] == "ValueError" and result["error"]["message"] == "bad input"
    assert "Traceback" in result["stderr"]


def test_artifacts_come_back(executor: Executor) -> None:
    code = "import os\ndef main():\n    open(os.path.join(os.environ['SANDBOX_OUTPUT_DIR'], 'table.csv'), 'w').write('a,b\\n1,2\\n')\n"
    result = executor.execute(code)
    assert result["status"] == "success", result
    [artifact] = result["artifacts"]
    assert artifact["name"] == "table.csv" and artifact["mime_type"] == "text/csv"
    assert base64.b64decode(artifact["content_base64"]) == b"a,b\n1,2\n"


def test_megabytes_of_arguments(executor: Executor) -> None:
    blob = "é" * (1 << 20)
    result = executor.execute("def main(blob):\n    return len(blob)\n", arguments={"blob": blob})
    assert result["status"] == "success" and result["value"] == len(blob)


def test_requested_limits_are_applied(executor: Executor) -> None:
    code = (
        "import resource\n"
        "def main():\n"
        "    return [resource.getrlimit(resource.RLIMIT_NPROC)[0], resource.getrlimit(resource.RLIMIT_FSIZE)[0],"
        " len(bytearray(300 << 20))]\n"
    )
    result = executor.execute(code, limits={"processes": 24, "max_file_bytes": 1 << 20, "memory_mb": 512})
    assert result["status"] == "success", result
    assert result["value"] == [24, 1 << 20, 300 << 20]
    assert result["metadata"]["limits"]["memory_mb"] == 512


# -- request errors -------------------------------------------------------------------------------


def test_status_codes_of_request_errors(executor: Executor) -> None:
    http = executor.http
    malformed = http.post("/v1/execute", content=b'{"code": ', headers={"Content-Type": "application/json"})
    assert malformed.status_code == 400, malformed.text
    above = http.post("/v1/execute", json={"code": "pass", "limits": {"memory_mb": 1 << 20}})
    assert above.status_code == 422 and above.json()["detail"][0]["loc"] == ["body", "limits", "memory_mb"], above.text
    too_long = http.post("/v1/execute", json={"code": "pass", "timeout": 100000})
    assert too_long.status_code == 422 and "timeout" in too_long.text
    unknown = http.post("/v1/execute", json={"code": "pass", "language": "cobol"})
    assert unknown.status_code == 422
    bad_name = http.post("/v1/execute", json={"code": "pass", "arguments": {"not an identifier": 1}})
    assert bad_name.status_code == 422 and bad_name.json()["detail"][0]["loc"] == ["body", "arguments"]
    extra = http.post("/v1/execute", json={"code": "pass", "surprise": True})
    assert extra.status_code == 422
    huge = http.post("/v1/execute", json={"code": "pass", "arguments": {"blob": "x" * (9 << 20)}})
    assert huge.status_code == 413, huge.text


def test_auth_is_required_everywhere_but_liveness(executor: Executor) -> None:
    anonymous = httpx.Client(base_url=executor.url, trust_env=False)
    wrong = httpx.Client(base_url=executor.url, headers={"Authorization": "Bearer not-the-token"}, trust_env=False)
    with anonymous, wrong:
        assert anonymous.get("/livez").status_code == 200
        guarded = (("GET", "/healthz"), ("GET", "/metrics"), ("GET", "/openapi.json"), ("POST", "/v1/execute"), ("POST", "/run"))
        for client in (anonymous, wrong):
            for method, path in guarded:
                response = client.request(method, path, json={"code": "print(1)"} if method == "POST" else None)
                assert response.status_code == 401, (path, response.status_code)
                assert response.headers["www-authenticate"] == "Bearer"


def test_health_reports_runtime_and_pools(executor: Executor) -> None:
    response = executor.health()
    assert response.status_code == 200
    health = response.json()
    assert health["status"] == "ok" and health["healthy"] is True
    assert health["runtime"]["name"] == "gvisor" and health["runtime"]["platform"] == GVISOR.platform
    assert health["runtime"]["cgroups"] in ("v1", "v2", "hybrid")
    for language, target in (("python", 2), ("javascript", 1)):
        pool = health["languages"][language]["pool"]
        assert pool["target"] == target
        assert {"ready", "booting", "busy", "waiting"} <= set(pool)


def test_metrics_text(executor: Executor) -> None:
    executor.execute("print('counted')")
    text = executor.http.get("/metrics").text
    assert 'sandbox_executor_executions_total{language="python",status="success"}' in text
    assert "sandbox_executor_execution_seconds_bucket" in text
    assert 'sandbox_executor_pool_ready{language="python"}' in text
    assert 'sandbox_executor_pool_busy{language="javascript"}' in text
    assert "sandbox_executor_up 1.0" in text


def test_openapi_document(executor: Executor) -> None:
    document = executor.http.get("/openapi.json").json()
    assert {"/v1/execute", "/run", "/healthz", "/livez", "/metrics"} <= set(document["paths"])


# -- RAGFlow compatibility ------------------------------------------------------------------------


def _run(executor: Executor, code: str, language: str = "python", **arguments: object) -> httpx.Response:
    body = {"code_b64": base64.b64encode(code.encode()).decode(), "language": language, "arguments": arguments}
    return executor.http.post("/run", json=body)


def test_ragflow_run_success_shape(executor: Executor) -> None:
    response = _run(executor, "def main(x):\n    print('hi')\n    return {'x': x}\n", x=[1, "two"])
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "success" and body["exit_code"] == 0
    assert body["stdout"] == "hi\n" and body["stderr"] == ""
    assert body["result"] == {"present": True, "value": {"x": [1, "two"]}, "type": "json"}
    assert body["time_used_ms"] > 0 and body["artifacts"] == []
    assert {"detail", "memory_used_kb", "resource_limit_type", "unauthorized_access_type", "runtime_error_type"} <= set(body)


def test_ragflow_run_nodejs_and_errors(executor: Executor) -> None:
    node = _run(executor, "function main(args) { return args.a + 1; }", "nodejs", a=41).json()
    assert node["status"] == "success" and node["result"]["value"] == 42
    failing = _run(executor, "def main():\n    raise RuntimeError('boom')\n").json()
    assert failing["status"] == "program_error" and failing["exit_code"] == 1
    assert failing["runtime_error_type"] == "nonzero_exit" and "boom" in failing["stderr"]
    assert failing["detail"] == "boom"
    memory = _run(executor, "x = bytearray(4 << 30)\n").json()
    assert memory["status"] in ("resource_limit_exceeded", "program_error"), memory
    invalid = executor.http.post("/run", json={"code_b64": "%%% not base64", "language": "python"})
    assert invalid.status_code == 422
    language = executor.http.post("/run", json={"code_b64": "cGFzcw==", "language": "ruby"})
    assert language.status_code == 422


# -- back-pressure, start-up and shutdown ---------------------------------------------------------


def test_back_pressure_503_with_retry_after(tmp_path: Path) -> None:
    small = start_executor(
        tmp_path, "--max-concurrency", "1", "--queue-size", "0", "--languages", "python", "--python-pool-size", "1",
        "--max-request-bytes", "1000000", "--max-held-request-bytes", "1500000",
        "--body-timeout", "60",  # the stalled upload below must not time out on a slow machine
    )
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            slow = pool.submit(small.execute, "import time\ntime.sleep(3)\n", timeout=20)
            deadline = time.monotonic() + 10
            while small.http.get("/healthz").json()["requests"]["running"] < 1 and time.monotonic() < deadline:
                time.sleep(0.02)
            refused = small.http.post("/v1/execute", json={"code": "print(1)"})
            assert refused.status_code == 503, refused.text
            assert int(refused.headers["retry-after"]) >= 1
            assert "capacity" in refused.json()["detail"]
            assert slow.result()["status"] == "success"
        assert 'sandbox_executor_rejections_total{reason="queue_full"} 1.0' in small.http.get("/metrics").text
        assert small.execute("print('after')")["stdout"] == "after\n"
        # An unfinished upload holds most of the body budget with what it has sent: a second big
        # body is refused, not buffered.
        port = int(small.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as slow_upload:
            slow_upload.sendall(
                f"POST /v1/execute HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {small.token}\r\n"
                "Content-Type: application/json\r\nContent-Length: 900000\r\n\r\n{\"code\": \"".encode() + b"x" * 850_000
            )
            deadline = time.monotonic() + 30
            while held_body_bytes(small) < 850_000:
                assert time.monotonic() < deadline, "the unfinished upload's bytes were not counted"
                time.sleep(0.05)
            big = small.http.post("/v1/execute", json={"code": "pass", "arguments": {"blob": "x" * 700_000}})
            assert big.status_code == 503 and big.headers["retry-after"] == "1", big.text
        deadline = time.monotonic() + 10
        measured = {"code": "def main(blob):\n    return len(blob)\n", "arguments": {"blob": "x" * 700_000}}
        while small.http.post("/v1/execute", json=measured).status_code != 200:
            assert time.monotonic() < deadline, "the body budget was not given back"
            time.sleep(0.1)
    finally:
        assert_clean_shutdown(small)


def held_body_bytes(executor: Executor) -> float:
    """What the executor's metrics say its requests in progress hold of their bodies."""
    for line in executor.http.get("/metrics").text.splitlines():
        if line.startswith("sandbox_executor_requests_body_bytes_held "):
            return float(line.split()[1])
    raise AssertionError("no sandbox_executor_requests_body_bytes_held metric")


def test_the_runsc_comes_from_RUNSC_when_no_flag_names_one(tmp_path: Path) -> None:
    named = start_executor(tmp_path, wait="live", extra_env={"RUNSC": "/nonexistent/from-env/runsc"})
    try:
        assert "runsc not found at /nonexistent/from-env/runsc" in named.health().json()["message"]
    finally:
        assert named.stop() == 0


def test_runsc_missing_is_reported_plainly(tmp_path: Path) -> None:
    broken = start_executor(tmp_path, "--runsc", "/nonexistent/runsc", wait="live")
    try:
        expected = "runsc not found at /nonexistent/runsc: install the Debian package runsc"
        assert expected in broken.log()
        health = broken.health()
        assert health.status_code == 503
        assert expected in health.json()["message"] and health.json()["healthy"] is False
        refused = broken.http.post("/v1/execute", json={"code": "print(1)"})
        assert refused.status_code == 503 and expected in refused.json()["detail"]
        assert "retry-after" in refused.headers
        assert "pool busy" not in broken.log().lower()
    finally:
        assert broken.stop() == 0
        assert os.listdir(broken.state_dir) == []


def test_refuses_a_public_address_without_token(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_")}
    process = subprocess.run(
        [EXECUTOR, "serve", "--host", "0.0.0.0", "--port", str(free_port()), "--state-dir", str(tmp_path / "state")],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert process.returncode == 2
    assert "refusing to serve on 0.0.0.0 without a token" in process.stderr
    assert not (tmp_path / "state").exists()


def test_start_up_removes_what_a_crashed_executor_left(tmp_path: Path) -> None:
    crashed = start_executor(tmp_path, "--languages", "python", "--python-pool-size", "2")
    crashed.http.close()
    sandbox_pids = child_pids(crashed.process.pid)
    assert sandbox_pids
    crashed.process.send_signal(signal.SIGKILL)
    crashed.process.wait()
    listed = subprocess.run(
        [RUNSC, "--root", str(crashed.state_dir / "runsc"), "list", "-quiet"], capture_output=True, text=True, check=False
    )
    leftovers = listed.stdout.split()
    assert len(leftovers) >= 2, "the crashed executor should have left its warm sandboxes (and their plain twins)"
    successor = start_executor(tmp_path, "--languages", "python", "--python-pool-size", "1")
    try:
        log = successor.log()
        for container_id in leftovers:
            assert f"deleting sandbox {container_id} left by a previous executor" in log
        assert successor.execute("print('fresh')")["stdout"] == "fresh\n"
        for pid in sandbox_pids:
            assert not _running(pid), f"process {pid} of the crashed executor still runs"
    finally:
        assert_clean_shutdown(successor)


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_liveness_is_cheap(executor: Executor) -> None:
    started = time.monotonic()
    assert httpx.get(executor.url + "/livez", trust_env=False).json() == {"status": "alive"}
    assert time.monotonic() - started < 1


def test_boot_failure_reports_what_runsc_said(tmp_path: Path) -> None:
    failing = start_executor(tmp_path, "--platform", "no-such-platform", "--languages", "python", wait="live")
    try:
        health = failing.health()
        assert health.status_code == 503
        message = health.json()["message"]
        assert "gVisor could not start a sandbox" in message and "unknown platform: no-such-platform" in message
        refused = failing.http.post("/v1/execute", json={"code": "print(1)"})
        assert refused.status_code == 503 and "unknown platform" in refused.json()["detail"]
        assert "gVisor could not start a sandbox" in failing.log()
    finally:
        assert_clean_shutdown(failing)


def _runsc_listing_systrap(folder: Path) -> Path:
    """The real runsc behind a wrapper whose ``flags`` lists systrap, as releases since 2023 do."""
    folder.mkdir(parents=True)
    wrapper = folder / "runsc"
    wrapper.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = flags ]; then\n'
        "  printf '  -platform string\\n    \\tspecifies which platform to use: systrap (default), ptrace, kvm. (default \"systrap\")\\n'\n"
        "  exit 0\n"
        "fi\n"
        f'exec {RUNSC} "$@"\n'
    )
    wrapper.chmod(0o755)
    return wrapper


def test_the_platform_is_detected_from_the_runsc_and_can_be_forced(tmp_path: Path) -> None:
    """A wrapper lists systrap: ``auto`` then puts systrap on the command line, and ``--platform
    ptrace`` wins. A runsc without systrap (Debian 12's release-20221219) refuses it at boot, saying
    so; one with it (release-20240729 and later) runs the code on it."""
    wrapper = _runsc_listing_systrap(tmp_path / "bin")
    (tmp_path / "auto").mkdir()
    (tmp_path / "forced").mkdir()
    detected = start_executor(tmp_path / "auto", "--runsc", str(wrapper), "--languages", "python", "--python-pool-size", "1", wait="live")
    try:
        health = detected.health().json()
        assert health["runtime"]["platform"] == "systrap"
        if "systrap" in GVISOR.platforms:
            assert detected.execute("print(1)")["metadata"]["platform"] == "systrap"
        else:
            assert "unknown platform: systrap" in health["message"]
    finally:
        assert_clean_shutdown(detected)
    forced = start_executor(
        tmp_path / "forced", "--runsc", str(wrapper), "--platform", "ptrace", "--languages", "python", "--python-pool-size", "1"
    )
    try:
        assert forced.execute("print(1)")["metadata"]["platform"] == "ptrace"
    finally:
        assert_clean_shutdown(forced)
