"""The ``e2b`` provider through sandbox-core's client and the real E2B SDK, against the fake server:
lifecycle (every sandbox killed), error mapping, secrets, health, import lightness, the CLI.

Pooling, code contexts and rich results are in ``test_e2b_pool.py``."""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from fake_e2b import TEST_API_KEY as API_KEY
from fake_e2b import FakeE2BServer, free_port

from sandbox_core import SandboxClient
from sandbox_core.errors import ConfigValidationError
from sandbox_core.failures import FailureKind, failure_of
from sandbox_core.model import ExecutionResult, ExecutionStatus

WRONG_KEY = "e2b_wrong_0d1e2a3f4b5c6d7e8f9a0b1c2d3e4f5a"
PNG_BASE64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="


def _client(**config: Any) -> SandboxClient:
    return SandboxClient(provider="e2b", config=config)


def _execute(config: dict[str, Any], code: str, **kwargs: Any) -> ExecutionResult:
    with closing(_client(**config)) as client:
        return client.execute(code, **kwargs)


@pytest.fixture
def cloud_log(fake_e2b: FakeE2BServer) -> Iterator[FakeE2BServer]:
    """The fake server with its switches reset after the test."""
    yield fake_e2b
    fake_e2b.cloud.rate_limited = False
    fake_e2b.cloud.fail_uploads = False
    fake_e2b.cloud.fail_creates = False


def test_entry_point_is_registered() -> None:
    [entry] = [ep for ep in importlib.metadata.entry_points(group="sandbox_core.providers") if ep.name == "e2b"]
    assert entry.value == "sandbox_e2b.provider"
    assert entry.dist is not None and entry.dist.name == "sandbox-e2b"


def test_provider_module_does_not_import_the_sdk() -> None:
    probe = (
        "import json, sys\n"
        "import sandbox_e2b.provider as p\n"
        "p.sandbox_config_schema(); p.sandbox_provider_info(); p.sandbox_shutdown()\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    loaded = {name.split(".")[0] for name in json.loads(done.stdout)}
    assert "sandbox_e2b" in loaded
    assert not loaded & {"e2b", "e2b_code_interpreter", "httpx", "pyqwest", "connectrpc", "jsonschema"}


def test_default_template_is_the_sdks() -> None:
    from e2b_code_interpreter import Sandbox
    from e2b_code_interpreter.constants import DEFAULT_TEMPLATE as SDK_DEFAULT

    from sandbox_e2b import DEFAULT_TEMPLATE

    assert DEFAULT_TEMPLATE == SDK_DEFAULT == Sandbox.default_template


def test_result_metadata_and_sandbox_request(fake_e2b: FakeE2BServer, e2b_config: dict[str, Any]) -> None:
    config = {**e2b_config, "isolation": "strict"}
    result = _execute(config, "def main(n):\n    return n + 1\n", arguments={"n": 41}, timeout=5)
    assert result.status is ExecutionStatus.SUCCESS, result
    assert result.value == 42 and result.provider == "e2b"
    assert result.metadata["runtime"] == "e2b" and result.metadata["template"] == "code-interpreter-v1"
    assert result.metadata["isolation"] == "strict" and result.metadata["sandbox_reused"] is False
    assert result.metadata["context_id"]
    sandbox_id = result.metadata["sandbox_id"]
    assert sandbox_id in fake_e2b.cloud.killed
    request = fake_e2b.cloud.create_requests[fake_e2b.cloud.created.index(sandbox_id)]
    assert request["templateID"] == "code-interpreter-v1"
    assert request["timeout"] >= 5 + 60  # E2B ends it by itself should the kill fail
    assert request["metadata"] == {"created_by": "sandbox-core"}


def test_every_sandbox_is_killed_whatever_happens(cloud_log: FakeE2BServer, e2b_config: dict[str, Any]) -> None:
    cloud = cloud_log.cloud
    before = len(cloud.created)
    outcomes = [
        _execute(e2b_config, "print('fine')"),
        _execute(e2b_config, "raise RuntimeError('user bug')"),
        _execute(e2b_config, "import sys\nsys.exit(4)"),
        _execute(e2b_config, "import time\nprint('going', flush=True)\ntime.sleep(60)", timeout=1),
        _execute(e2b_config, "while True:\n    print('y' * 1000)", timeout=2),
    ]
    cloud.fail_uploads = True
    outcomes.append(_execute(e2b_config, "print('never uploaded')"))
    assert [r.status for r in outcomes] == [
        ExecutionStatus.SUCCESS,
        ExecutionStatus.ERROR,
        ExecutionStatus.ERROR,
        ExecutionStatus.TIMEOUT,
        ExecutionStatus.TIMEOUT,
        ExecutionStatus.PROVIDER_ERROR,
    ], outcomes
    assert outcomes[3].stdout == "going\n"
    assert outcomes[4].stdout_truncated and outcomes[4].stdout.startswith("y" * 1000)
    assert outcomes[5].error is not None and "uploading the job" in outcomes[5].error.message
    created = cloud.created[before:]
    assert len(created) == len(outcomes)
    assert set(created) <= set(cloud.killed)
    assert not cloud.running()


def test_timed_out_code_is_stopped_with_its_sandbox(fake_e2b: FakeE2BServer, e2b_config: dict[str, Any], tmp_path: Path) -> None:
    marker = tmp_path / "still-running"
    code = f"import time\ntime.sleep(1.5)\nopen({str(marker)!r}, 'w').write('late')\n"
    result = _execute(e2b_config, code, timeout=0.5)
    assert result.status is ExecutionStatus.TIMEOUT
    assert result.metadata["sandbox_id"] in fake_e2b.cloud.killed
    time.sleep(1.5)
    assert not marker.exists(), "the code kept running after its sandbox was killed"


def test_sandbox_killed_under_the_code_is_a_provider_error(fake_e2b: FakeE2BServer, e2b_config: dict[str, Any]) -> None:
    cloud = fake_e2b.cloud
    before = set(cloud.created)

    def kill_the_new_sandbox() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            fresh = [s for s in cloud.running() if s.sandbox_id not in before and s.executions]
            if fresh:
                cloud.kill(fresh[0].sandbox_id)
                return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_the_new_sandbox)
    killer.start()
    result = _execute(e2b_config, "import time\nprint('started', flush=True)\ntime.sleep(30)\n", timeout=20)
    killer.join()
    assert result.status is ExecutionStatus.PROVIDER_ERROR, result
    assert result.metadata["failure"] == {"kind": "lost", "retry_after": None}, result
    assert result.error is not None and "stopped or became unreachable" in result.error.message


def test_python_timeout_is_enforced_at_its_deadline(fake_e2b: FakeE2BServer, e2b_config: dict[str, Any], tmp_path: Path) -> None:
    """The SDK's streamed request would end only after about twice the timeout; the provider stops
    the code at the timeout itself. The code marks a step at 1.9 times the timeout: reaching it
    means the code still ran well past its deadline (a generous bound for a loaded machine)."""
    timeout = 3.0
    late = tmp_path / "late"
    code = (
        "import time\n"
        "start = time.monotonic()\n"
        "print('started', flush=True)\n"
        f"time.sleep({timeout * 1.9})\n"
        f"open({str(late)!r}, 'w').write(str(time.monotonic() - start))\n"
        "time.sleep(60)\n"
    )
    result = _execute(e2b_config, code, timeout=timeout)
    assert result.status is ExecutionStatus.TIMEOUT, result
    assert result.stdout == "started\n"
    assert result.execution_time < timeout * 1.9, f"ended after {result.execution_time:.1f}s"
    assert result.metadata["sandbox_id"] in fake_e2b.cloud.killed
    time.sleep(max(0.0, timeout * 1.9 + 1.5 - result.execution_time))
    assert not late.exists(), f"the code was still running {late.read_text()}s after it started"


def test_sandbox_killed_under_javascript_is_lost_not_a_timeout(fake_e2b: FakeE2BServer, e2b_config: dict[str, Any]) -> None:
    cloud = fake_e2b.cloud
    before = set(cloud.created)

    def kill_the_new_sandbox() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            fresh = [s for s in cloud.running() if s.sandbox_id not in before and s.pids]
            if fresh:
                time.sleep(0.3)  # let node start the code
                cloud.kill(fresh[0].sandbox_id)
                return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_the_new_sandbox)
    killer.start()
    code = "console.log('started');\nsetTimeout(() => console.log('late'), 30000);\n"
    result = _execute({**e2b_config, "isolation": "strict"}, code, language="javascript", timeout=20)
    killer.join()
    assert result.status is ExecutionStatus.PROVIDER_ERROR, result
    assert result.metadata["failure"]["kind"] == "lost", result.metadata
    assert result.error is not None and "stopped or became unreachable" in result.error.message


def test_twenty_parallel_executions(fake_e2b: FakeE2BServer, e2b_config: dict[str, Any]) -> None:
    code = "import os, time\ndef main(n):\n    print('run', n)\n    time.sleep(0.2)\n    return [n, os.getcwd()]\n"
    with closing(_client(**e2b_config)) as client, ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(lambda n: client.execute(code, arguments={"n": n}, timeout=30), range(20)))
        assert all(r.status is ExecutionStatus.SUCCESS for r in results), [r for r in results if not r.ok]
        # Two sandboxes stay warm (pool_size 2); the others were killed when their execution ended.
        assert len(fake_e2b.cloud.running()) <= 2
    assert [r.value[0] for r in results] == list(range(20))
    assert [r.stdout for r in results] == [f"run {n}\n" for n in range(20)]
    assert len({r.value[1] for r in results}) == 20, "two executions shared a working folder"
    sandboxes = {r.metadata["sandbox_id"] for r in results}
    assert sandboxes <= set(fake_e2b.cloud.killed)
    assert not fake_e2b.cloud.running() and not fake_e2b.cloud.live_contexts()


def test_sandbox_creation_failure_is_a_provider_error(cloud_log: FakeE2BServer, e2b_config: dict[str, Any]) -> None:
    cloud_log.cloud.fail_creates = True
    result = _execute(e2b_config, "print(1)")
    assert result.status is ExecutionStatus.PROVIDER_ERROR, result
    assert result.error is not None and "creating a sandbox" in result.error.message
    assert "sandbox_id" not in result.metadata and result.metadata["failure"]["kind"] == "internal"


def test_wrong_api_key_is_a_provider_error_that_never_shows_the_key(
    fake_e2b: FakeE2BServer, e2b_config: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = {**e2b_config, "api_key": WRONG_KEY}
    before = len(fake_e2b.cloud.created)
    result = _execute(config, "print(1)")
    with closing(_client(**config)) as client:
        status = client.health()
    assert result.status is ExecutionStatus.PROVIDER_ERROR
    assert result.error is not None and "E2B rejected the API key" in result.error.message
    assert result.metadata["failure"] == {"kind": "auth", "retry_after": None}
    assert status.details["failure"]["kind"] == "auth"
    assert not status.healthy and "E2B rejected the API key" in status.message
    assert len(fake_e2b.cloud.created) == before
    shown = json.dumps(result.to_dict()) + json.dumps(status.to_dict()) + caplog.text
    assert WRONG_KEY not in shown and API_KEY not in shown
    assert caplog.records, "nothing was logged, so the check above proves little"


def test_good_key_never_reaches_results_or_logs(e2b_config: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    result = _execute(e2b_config, "import os\nprint(sorted(k for k in os.environ if 'E2B' in k))")
    assert result.status is ExecutionStatus.SUCCESS, result
    assert result.stdout == "[]\n"  # the key is not handed to the code either
    assert API_KEY not in json.dumps(result.to_dict()) + caplog.text


def test_unreachable_e2b_is_a_provider_error(e2b_config: dict[str, Any]) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    config = {**e2b_config, "api_url": dead, "sandbox_url": dead}
    result = _execute(config, "print(1)")
    with closing(_client(**config)) as client:
        status = client.health()
    assert result.status is ExecutionStatus.PROVIDER_ERROR
    assert result.error is not None and "E2B could not be reached" in result.error.message
    assert result.metadata["failure"]["kind"] == "unavailable"
    assert not status.healthy and "could not be reached" in status.message


def test_rate_limit_is_a_provider_error_with_a_retry_hint(cloud_log: FakeE2BServer, e2b_config: dict[str, Any]) -> None:
    cloud_log.cloud.rate_limited = True
    result = _execute(e2b_config, "print(1)")
    assert result.status is ExecutionStatus.PROVIDER_ERROR
    assert result.error is not None and "rate limiting" in result.error.message and "retry in" in result.error.message
    failure = failure_of(result)
    assert failure is not None and failure.kind is FailureKind.THROTTLED and failure.retry_after


def test_unknown_template_is_explained(fake_e2b: FakeE2BServer, e2b_config: dict[str, Any]) -> None:
    result = _execute({**e2b_config, "template": "no-such-template"}, "print(1)")
    assert result.status is ExecutionStatus.PROVIDER_ERROR
    assert result.error is not None and "template" in result.error.message
    assert result.metadata["failure"]["kind"] == "bad_config"


def test_runtime_maps_to_its_template(fake_e2b: FakeE2BServer, e2b_config: dict[str, Any]) -> None:
    config = {**e2b_config, "isolation": "strict", "runtime_templates": {"data": "base"}}
    result = _execute(config, "def main():\n    return 1\n", runtime="data")
    assert result.status is ExecutionStatus.SUCCESS, result
    assert result.metadata["template"] == "base"
    before = len(fake_e2b.cloud.created)
    refused = _execute(config, "print(1)", runtime="pandas")
    assert refused.status is ExecutionStatus.PROVIDER_ERROR and refused.error is not None
    assert "unknown runtime 'pandas'" in refused.error.message and "data" in refused.error.message
    assert refused.metadata["failure"]["kind"] == "bad_config"
    assert len(fake_e2b.cloud.created) == before


def test_language_not_enabled_creates_no_sandbox(fake_e2b: FakeE2BServer, e2b_config: dict[str, Any]) -> None:
    before = len(fake_e2b.cloud.created)
    result = _execute({**e2b_config, "languages": ["python"]}, "console.log(1)", language="javascript")
    assert result.status is ExecutionStatus.PROVIDER_ERROR
    assert result.error is not None and "configured for python only" in result.error.message
    assert result.metadata["failure"]["kind"] == "bad_config"
    assert len(fake_e2b.cloud.created) == before


def test_health_reports_latency(e2b_config: dict[str, Any]) -> None:
    with closing(_client(**e2b_config)) as client:
        status = client.health()
    assert status.healthy, status.message
    assert status.latency is not None and 0 < status.latency < 5
    assert status.message.startswith("E2B API answered in")


def test_offline_validation() -> None:
    client = _client(api_key="k")
    converted = client.validate_config("e2b", {"api_key": "key-123", "languages": "python", "domain": "e2b.example.com"})
    assert converted["languages"] == ["python"] and converted["template"] == "code-interpreter-v1"
    assert converted["isolation"] == "pooled" and converted["pool_size"] == 2
    assert "key-123" not in repr(converted) and converted["api_key"].reveal() == "key-123"
    with pytest.raises(ConfigValidationError) as caught:
        client.validate_config("e2b", {"api_key": "k", "domain": "e2b.app:443", "api_url": "http://127.0.0.1:3000/v1"})
    assert set(caught.value.fields) == {"domain", "api_url"}


def test_cli_config_from_env_then_exec(fake_e2b: FakeE2BServer, tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("SANDBOX_", "E2B_"))}
    env.update(SANDBOX_DATABASE_URL=f"sqlite:///{tmp_path / 'settings.db'}", E2B_API_KEY=API_KEY)
    sandbox = str(Path(sys.executable).with_name("sandbox"))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sandbox, *args], capture_output=True, text=True, env=env, timeout=60)

    saved = run("config", "set", "e2b", "--from-env", f"api_url={fake_e2b.url}", f"sandbox_url={fake_e2b.url}", "--activate")
    assert saved.returncode == 0, saved.stderr
    assert "api_key" in saved.stdout and "now active" in saved.stdout
    shown = run("config", "show", "e2b", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["config"]["api_key"] == "********" and API_KEY not in shown.stdout
    executed = run("exec", "-c", "def main(a, b):\n    return a + b", "--arg", "a=1", "--arg", "b=2", "--json")
    assert executed.returncode == 0, executed.stderr
    outcome = json.loads(executed.stdout)
    assert outcome["status"] == "success" and outcome["value"] == 3 and outcome["provider"] == "e2b"
    png = (
        "import base64, os\n"
        "PNG = base64.b64decode('" + PNG_BASE64 + "')\n"
        "class Chart:\n"
        "    def _repr_png_(self):\n"
        "        return PNG\n"
        "def main(n):\n"
        "    display(Chart())\n"
        "    return n * 2\n"
    )
    executed = run("exec", "-c", png, "--arg", "n=21", "--provider", "e2b", "--json")
    assert executed.returncode == 0, executed.stderr
    outcome = json.loads(executed.stdout)
    assert outcome["status"] == "success" and outcome["value"] == 42, outcome
    [artifact] = outcome["artifacts"]
    assert artifact["name"] == "result-1.png" and artifact["mime_type"] == "image/png"
    assert artifact["content_base64"] == PNG_BASE64
    healthy = run("health", "--json")
    assert healthy.returncode == 0, healthy.stderr
    assert json.loads(healthy.stdout)["healthy"] is True
