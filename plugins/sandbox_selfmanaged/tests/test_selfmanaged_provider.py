"""The ``self_managed`` provider through sandbox-core's client: load spreading, failover, secrets."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import pytest
from selfmanaged_support import Executor, free_port, start_executor

from sandbox_core import SandboxClient
from sandbox_core.errors import ConfigValidationError
from sandbox_core.failures import FailureKind, failure_of
from sandbox_core.model import ExecutionStatus


def _client(**config: Any) -> SandboxClient:
    return SandboxClient(provider="self_managed", config=config)


@pytest.fixture(scope="module")
def overloaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Executor]:
    """An executor that answers every execution with 503 (its runsc is missing); no token needed."""
    broken = start_executor(tmp_path_factory.mktemp("overloaded"), "--runsc", "/nonexistent/runsc", token=None, wait="live")
    yield broken
    broken.stop()


def test_entry_point_is_registered() -> None:
    [entry] = [ep for ep in importlib.metadata.entry_points(group="sandbox_core.providers") if ep.name == "self_managed"]
    assert entry.value == "sandbox_selfmanaged.provider"


def test_provider_module_is_light() -> None:
    probe = "import json, sys\nimport sandbox_selfmanaged.provider\nprint(json.dumps(sorted(sys.modules)))"
    loaded = set(json.loads(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout))
    assert not loaded & {"fastapi", "uvicorn", "starlette", "httpx", "pydantic", "prometheus_client"}


def test_executes_through_sandbox_core(executor: Executor) -> None:
    with closing(_client(endpoints=[executor.url], token=executor.token)) as client:
        result = client.execute("def main(n):\n    return n * 2\n", arguments={"n": 21})
    assert result.status is ExecutionStatus.SUCCESS, result
    assert result.value == 42 and result.provider == "self_managed"
    assert result.metadata["runtime"] == "gvisor" and result.metadata["endpoint"] == executor.url


def test_spreads_load_over_endpoints(executor: Executor) -> None:
    port = executor.url.rsplit(":", 1)[1]
    endpoints = [executor.url, f"http://localhost:{port}"]
    with closing(_client(endpoints=endpoints, token=executor.token)) as client:
        used = {client.execute("print(1)").metadata["endpoint"] for _ in range(4)}
    assert used == set(endpoints)


def test_skips_dead_and_overloaded_endpoints(executor: Executor, overloaded: Executor) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    config = {"endpoints": [dead, overloaded.url, executor.url], "token": executor.token}
    with closing(_client(**config)) as client:
        for _ in range(3):
            result = client.execute("print('made it')")
            assert result.status is ExecutionStatus.SUCCESS, result
            assert result.metadata["endpoint"] == executor.url
        status = client.health()
    assert status.healthy
    assert status.message.startswith("1/3 executors healthy"), status.message
    assert "runsc not found" in status.message


def test_everything_down_is_a_provider_error_without_the_token(overloaded: Executor) -> None:
    token = "super-secret-token-value"
    dead = f"http://127.0.0.1:{free_port()}"
    with closing(_client(endpoints=[dead, overloaded.url], token=token, retries=1, request_timeout=1)) as client:
        started = time.monotonic()
        result = client.execute("print(1)", timeout=1)
        status = client.health()
    assert time.monotonic() - started < 30
    assert result.status is ExecutionStatus.PROVIDER_ERROR
    assert result.error is not None and "no sandbox-executor could take the execution" in result.error.message
    assert dead in result.error.message and "503" in result.error.message
    assert result.metadata["failure"]["kind"] == "unavailable" and result.metadata["failure"]["retry_after"] >= 1
    assert token not in json.dumps(result.to_dict()) and token not in status.message
    assert not status.healthy


def test_no_executor_answering_is_unavailable() -> None:
    dead = [f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"]
    with closing(_client(endpoints=dead, retries=0, request_timeout=1)) as client:
        result = client.execute("print(1)", timeout=1)
    assert result.status is ExecutionStatus.PROVIDER_ERROR, result
    assert result.error is not None and all(url in result.error.message for url in dead)
    failure = failure_of(result)
    assert failure is not None and failure.kind is FailureKind.UNAVAILABLE and failure.retry_after


def test_wrong_token_is_explained(executor: Executor) -> None:
    with closing(_client(endpoints=[executor.url], token="wrong", retries=0)) as client:
        result = client.execute("print(1)")
    assert result.status is ExecutionStatus.PROVIDER_ERROR
    assert result.error is not None and "refused the token (401)" in result.error.message
    assert result.metadata["failure"] == {"kind": "auth", "retry_after": None}


def test_request_limits_from_config(executor: Executor) -> None:
    with closing(_client(endpoints=[executor.url], token=executor.token, processes=12, max_output_bytes=2048)) as client:
        result = client.execute(
            "import resource\nprint('x' * 5000)\ndef main():\n    return resource.getrlimit(resource.RLIMIT_NPROC)[0]\n"
        )
    assert result.status is ExecutionStatus.OUTPUT_LIMIT and result.stdout_truncated
    assert result.value == 12


def test_limits_above_the_executor_maximum_are_a_clear_provider_error(executor: Executor) -> None:
    with closing(_client(endpoints=[executor.url], token=executor.token, memory_mb=60000)) as client:
        result = client.execute("print(1)")
    assert result.status is ExecutionStatus.PROVIDER_ERROR
    assert result.error is not None and "limits.memory_mb" in result.error.message and "422" in result.error.message
    assert result.metadata["failure"]["kind"] == "bad_config"


def test_an_explicit_30s_timeout_is_honoured_when_the_default_differs(executor: Executor) -> None:
    with closing(_client(endpoints=[executor.url], token=executor.token, default_timeout=5)) as client:
        explicit = client.execute("print(1)", timeout=30)
        unset = client.execute("print(1)")
    assert explicit.metadata["limits"]["timeout"] == 30 and explicit.metadata["timeout"] == 30
    assert unset.metadata["limits"]["timeout"] == 5 and unset.metadata["timeout"] == 5


def test_a_timeout_above_the_executor_maximum_is_a_clear_provider_error(executor: Executor) -> None:
    with closing(_client(endpoints=[executor.url], token=executor.token)) as client:
        result = client.execute("print(1)", timeout=100000)
    assert result.status is ExecutionStatus.PROVIDER_ERROR and result.metadata["failure"]["kind"] == "bad_config"
    assert result.error is not None and "timeout" in result.error.message and "422" in result.error.message
    assert result.metadata["timeout"] == 100000


def test_offline_validation() -> None:
    client = SandboxClient(provider="self_managed", config={"endpoints": ["http://127.0.0.1:8808"]})
    converted = client.validate_config("self_managed", {"endpoints": "http://127.0.0.1:8808,http://localhost:8809", "token": "tok-123"})
    assert converted["endpoints"] == ["http://127.0.0.1:8808", "http://localhost:8809"]
    assert "tok-123" not in repr(converted) and converted["token"].reveal() == "tok-123"
    with pytest.raises(ConfigValidationError) as caught:
        client.validate_config("self_managed", {"endpoints": ["http://10.0.0.5:8808/api"]})
    assert set(caught.value.fields) == {"endpoints.0", "token"}
