"""The provider's own behaviour, end to end through agentrun-sdk and the local fake AgentRun:
credentials, an unreachable service, sandbox release, the 30-second clamp, health, metadata."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from fake_agentrun import FakeAgentRun

from sandbox_core.client import SandboxClient
from sandbox_core.model import ExecutionResult, ExecutionStatus

PROVIDER = "aliyun_codeinterpreter"


@pytest.fixture
def client_for() -> Iterator[Any]:
    clients: list[SandboxClient] = []

    def make(config: dict[str, Any]) -> SandboxClient:
        clients.append(SandboxClient(provider=PROVIDER, config=config))
        return clients[-1]

    yield make
    for client in clients:
        client.close()


def _everything_shown(result: ExecutionResult) -> str:
    return json.dumps(result.to_dict(), ensure_ascii=False)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    "override",
    [
        {"access_key_secret": "wrong-secret-0123456789"},
        {"access_key_id": "LTAI5tNOSUCHKEY000000000"},
    ],
    ids=["wrong-secret", "unknown-key-id"],
)
def test_rejected_credentials_are_a_provider_error_that_never_shows_the_secret(
    fake_agentrun: FakeAgentRun, client_for: Any, caplog: pytest.LogCaptureFixture, override: dict[str, str]
) -> None:
    import agentrun.utils.log  # noqa: F401  (it sets its logger's level on import: import first, then lower it)

    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="agentrun-logger")
    created_before = len(fake_agentrun.store.created)
    config = fake_agentrun.config(**override)
    client = client_for(config)

    result = client.execute("print('never runs')")
    health = client.health()

    assert result.status is ExecutionStatus.PROVIDER_ERROR, result
    assert result.error is not None and "Aliyun rejected the access key" in result.error.message
    assert config["access_key_id"] in result.error.message  # the key id helps; it is not a secret
    assert not health.healthy and "Aliyun rejected the access key" in health.message
    assert len(fake_agentrun.store.created) == created_before
    assert any(record.name == "agentrun-logger" for record in caplog.records)  # the SDK's debug log was seen
    logged = "\n".join(record.getMessage() for record in caplog.records)
    for secret in {config["access_key_secret"], fake_agentrun.credentials.access_key_secret}:
        assert secret not in _everything_shown(result)
        assert secret not in health.message
        assert secret not in logged


def test_signed_requests_reach_the_fake_with_the_configured_key(fake_agentrun: FakeAgentRun, client_for: Any) -> None:
    seen = len(fake_agentrun.requests)
    result = client_for(fake_agentrun.config()).execute("print('signed')")
    assert result.ok, result
    calls = fake_agentrun.requests[seen:]
    assert [c["method"] for c in calls] == ["POST", "GET", "GET", "POST", "DELETE"]
    assert {c["key_id"] for c in calls} == {fake_agentrun.credentials.access_key_id}
    assert {c["status"] for c in calls} == {200}


def test_unreachable_service_is_a_provider_error(fake_agentrun: FakeAgentRun, client_for: Any) -> None:
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    client = client_for(fake_agentrun.config(endpoint=endpoint))

    result = client.execute("print(1)")
    health = client.health()

    assert result.status is ExecutionStatus.PROVIDER_ERROR, result
    assert result.error is not None and "cannot reach AgentRun" in result.error.message
    assert endpoint in result.error.message
    assert not health.healthy and "cannot reach AgentRun" in health.message
    assert fake_agentrun.credentials.access_key_secret not in _everything_shown(result)


def test_unknown_template_names_the_template(fake_agentrun: FakeAgentRun, client_for: Any) -> None:
    result = client_for(fake_agentrun.config(template_name="no-such-template")).execute("print(1)")
    assert result.status is ExecutionStatus.PROVIDER_ERROR, result
    assert result.error is not None and "'no-such-template' was not found" in result.error.message


def test_every_execution_gets_a_fresh_sandbox_that_is_released(fake_agentrun: FakeAgentRun, client_for: Any) -> None:
    client = client_for(fake_agentrun.config())
    write = "import os\nopen(os.path.expanduser('~/left-behind'), 'w').write('x')\nprint('wrote')\n"
    look = "import os\nprint(os.path.exists(os.path.expanduser('~/left-behind')))\n"
    results = [
        client.execute(write),
        client.execute(look),
        client.execute("raise ValueError('boom')"),
        client.execute("import time\nprint('slow', flush=True)\ntime.sleep(30)\n", timeout=1),
    ]

    assert [r.status for r in results] == [
        ExecutionStatus.SUCCESS,
        ExecutionStatus.SUCCESS,
        ExecutionStatus.ERROR,
        ExecutionStatus.TIMEOUT,
    ], results
    assert results[1].stdout == "False\n"  # nothing of the first execution survived
    ids = [r.metadata["sandbox_id"] for r in results]
    assert len(set(ids)) == len(ids)
    assert all(r.metadata["released"] is True for r in results)
    assert set(ids) <= set(fake_agentrun.store.deleted)
    assert not set(ids) & set(fake_agentrun.store.live)


def test_metadata_names_runtime_region_and_sandbox(fake_agentrun: FakeAgentRun, client_for: Any) -> None:
    result = client_for(fake_agentrun.config()).execute("print('meta')", timeout=5)
    assert result.ok, result
    assert result.metadata["runtime"] == "aliyun-agentrun"
    assert result.metadata["region"] == fake_agentrun.credentials.region
    assert result.metadata["sandbox_id"].startswith("sb-")
    assert result.metadata["context_id"].startswith("ctx-")
    assert result.metadata["timeout"] == 5
    assert "timeout_clamped" not in result.metadata


def test_timeouts_above_the_hard_limit_are_clamped_with_a_note(fake_agentrun: FakeAgentRun, client_for: Any) -> None:
    result = client_for(fake_agentrun.config()).execute("print('quick')", timeout=45)

    assert result.ok, result
    assert result.metadata["timeout"] == 30
    clamp = result.metadata["timeout_clamped"]
    assert clamp["requested"] == 45 and clamp["applied"] == 30
    assert "30s" in clamp["reason"]
    assert float(fake_agentrun.store.executed_timeouts[-1]) <= 30  # what the service was asked for


def test_timeouts_above_the_configured_limit_name_the_setting(fake_agentrun: FakeAgentRun, client_for: Any) -> None:
    result = client_for(fake_agentrun.config(timeout=5)).execute("print('quick')", timeout=10)
    assert result.metadata["timeout"] == 5
    assert "setting is 5s" in result.metadata["timeout_clamped"]["reason"]


def test_health_runs_a_real_probe_and_releases_its_sandbox(fake_agentrun: FakeAgentRun, client_for: Any) -> None:
    created_before = len(fake_agentrun.store.created)
    status = client_for(fake_agentrun.config()).health()
    assert status.healthy, status.message
    assert status.latency is not None and status.latency > 0
    assert "released" in status.message
    probe_ids = fake_agentrun.store.created[created_before:]
    assert len(probe_ids) == 1 and probe_ids[0] in fake_agentrun.store.deleted


def test_a_failed_execute_still_releases_the_sandbox(fake_agentrun: FakeAgentRun, client_for: Any) -> None:
    template = fake_agentrun.credentials.execute_fails_template
    result = client_for(fake_agentrun.config(template_name=template)).execute("print(1)")

    assert result.status is ExecutionStatus.PROVIDER_ERROR, result
    assert result.error is not None and "AgentRun refused executing" in result.error.message
    assert "HTTP 500" in result.error.message
    assert result.metadata["released"] is True
    assert result.metadata["sandbox_id"] in fake_agentrun.store.deleted


def test_a_failed_delete_is_reported_not_raised(
    fake_agentrun: FakeAgentRun, client_for: Any, caplog: pytest.LogCaptureFixture
) -> None:
    template = fake_agentrun.credentials.delete_fails_template
    result = client_for(fake_agentrun.config(template_name=template)).execute("def main():\n    return 7\n")

    assert result.ok and result.value == 7, result
    assert result.metadata["released"] is False
    sandbox_id = result.metadata["sandbox_id"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and sandbox_id in r.getMessage()]
    assert warnings and "reclaims it after 60s idle" in warnings[0]
    assert fake_agentrun.credentials.access_key_secret not in warnings[0]


def test_an_output_flood_is_stopped_and_flagged(fake_agentrun: FakeAgentRun, client_for: Any) -> None:
    client = client_for(fake_agentrun.config(max_output_bytes=2048))
    result = client.execute("while True:\n    print('x' * 1000)\n", timeout=20)

    assert result.status is ExecutionStatus.OUTPUT_LIMIT, result
    assert result.stdout_truncated and len(result.stdout.encode()) <= 2048
    assert result.metadata["flooded"] is True
    assert result.execution_time < 10
