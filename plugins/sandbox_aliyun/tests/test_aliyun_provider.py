"""The provider's own behaviour, end to end through agentrun-sdk and the local fake AgentRun:
credentials (config and environment), failures of the service, the warm pool and strict
isolation, throttling, the 30-second clamp, health, concurrency, and that no sandbox is leaked."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fake_agentrun import FakeAgentRun

from sandbox_aliyun.limits import THROTTLE_ATTEMPTS
from sandbox_aliyun.state import PENDING_DELETES
from sandbox_core.client import SandboxClient
from sandbox_core.errors import ConfigValidationError
from sandbox_core.model import ExecutionResult, ExecutionStatus
from sandbox_core.registry import get_registry

PROVIDER = "aliyun_codeinterpreter"


@pytest.fixture
def client_for(fake_agentrun: FakeAgentRun) -> Iterator[Any]:
    """Clients on the process-wide registry; closing them (at the end) deletes their pooled sandboxes."""
    clients: list[SandboxClient] = []

    def make(config: dict[str, Any]) -> SandboxClient:
        clients.append(SandboxClient(provider=PROVIDER, config=config))
        return clients[-1]

    yield make
    for client in clients:
        client.close()
    assert not fake_agentrun.store.live, "a test left sandboxes alive after its clients were closed"


def _everything_shown(result: ExecutionResult) -> str:
    return json.dumps(result.to_dict(), ensure_ascii=False)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _without(config: dict[str, Any], *fields: str) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in fields}


# -- credentials ---------------------------------------------------------------------------------


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
    assert "the config's access_key_id and access_key_secret" in result.error.message
    assert config["access_key_id"] in result.error.message  # the key id helps; it is not a secret
    assert not health.healthy and "Aliyun rejected the access key" in health.message
    assert result.metadata["failure"] == {"kind": "auth", "retry_after": None}
    assert health.details["failure"]["kind"] == "auth"
    assert len(fake_agentrun.store.created) == created_before
    assert any(record.name == "agentrun-logger" for record in caplog.records)  # the SDK's debug log was seen
    logged = "\n".join(record.getMessage() for record in caplog.records)
    for secret in {config["access_key_secret"], fake_agentrun.credentials.access_key_secret}:
        assert secret not in _everything_shown(result)
        assert secret not in health.message
        assert secret not in logged


def test_credentials_left_empty_come_from_the_environment(
    fake_agentrun: FakeAgentRun, client_for: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = fake_agentrun.credentials
    monkeypatch.setenv("AGENTRUN_ACCESS_KEY_ID", credentials.access_key_id)
    monkeypatch.setenv("AGENTRUN_ACCESS_KEY_SECRET", credentials.access_key_secret)
    monkeypatch.setenv("AGENTRUN_ACCOUNT_ID", credentials.account_id)
    config = _without(fake_agentrun.config(), "access_key_id", "access_key_secret", "account_id")

    result = client_for(config).execute("def main():\n    return 'from env'\n")

    assert result.value == "from env", result
    seen = {request["key_id"] for request in fake_agentrun.requests[-4:]}
    assert seen == {credentials.access_key_id}


def test_a_value_in_the_config_wins_over_the_environment(
    fake_agentrun: FakeAgentRun, client_for: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTRUN_ACCESS_KEY_ID", "LTAI5tWRONGKEYFROMENV0000")
    monkeypatch.setenv("AGENTRUN_ACCESS_KEY_SECRET", "wrong-secret-from-env")
    assert client_for(fake_agentrun.config()).execute("def main():\n    return 1\n").value == 1


def test_rejected_environment_credentials_say_where_they_came_from(
    fake_agentrun: FakeAgentRun, client_for: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTRUN_ACCESS_KEY_ID", fake_agentrun.credentials.access_key_id)
    monkeypatch.setenv("AGENTRUN_ACCESS_KEY_SECRET", "wrong-secret-from-env")
    config = _without(fake_agentrun.config(), "access_key_id", "access_key_secret")

    result = client_for(config).execute("print(1)")

    assert result.status is ExecutionStatus.PROVIDER_ERROR, result
    assert result.error is not None and "AGENTRUN_ACCESS_KEY_SECRET in the environment" in result.error.message
    assert "wrong-secret-from-env" not in _everything_shown(result)


def test_credentials_missing_everywhere_name_the_field_and_the_variable(fake_agentrun: FakeAgentRun) -> None:
    config = _without(fake_agentrun.config(), "access_key_secret", "account_id")
    client = SandboxClient(provider=PROVIDER, config=fake_agentrun.config())
    with pytest.raises(ConfigValidationError) as caught:
        client.validate_config(PROVIDER, config)
    problems = {p.field: p.message for p in caught.value.problems}
    assert set(problems) == {"access_key_secret", "account_id"}
    assert "AGENTRUN_ACCESS_KEY_SECRET" in problems["access_key_secret"]
    assert "AGENTRUN_ACCOUNT_ID" in problems["account_id"]


def test_a_timeout_over_the_service_limit_is_refused_with_the_reason(fake_agentrun: FakeAgentRun) -> None:
    client = SandboxClient(provider=PROVIDER, config=fake_agentrun.config())
    with pytest.raises(ConfigValidationError) as caught:
        client.validate_config(PROVIDER, fake_agentrun.config(timeout=45))
    assert "AgentRun stops every execution after 30s" in str(caught.value)


# -- the wire and the service's failures ---------------------------------------------------------


def test_signed_requests_reach_the_fake_with_the_configured_key(fake_agentrun: FakeAgentRun, client_for: Any) -> None:
    seen = len(fake_agentrun.requests)
    client = client_for(fake_agentrun.config())
    result = client.execute("print('signed')")
    assert result.ok, result
    calls = fake_agentrun.requests[seen:]
    paths = [f"{c['method']} {c['path'].replace(result.metadata['sandbox_id'], 'SB')}" for c in calls]
    context = result.metadata["context_id"]
    assert paths == [
        "POST /sandboxes",
        "GET /sandboxes/SB",
        "GET /sandboxes/SB/health",
        "POST /sandboxes/SB/contexts",
        "POST /sandboxes/SB/contexts/execute",
        f"DELETE /sandboxes/SB/contexts/{context}",
    ]
    assert {c["key_id"] for c in calls} == {fake_agentrun.credentials.access_key_id}
    assert {c["status"] for c in calls} == {200}
    client.close()
    assert fake_agentrun.requests[-1]["method"] == "DELETE"
    assert result.metadata["sandbox_id"] in fake_agentrun.store.deleted


def test_unreachable_service_is_a_provider_error(fake_agentrun: FakeAgentRun, client_for: Any) -> None:
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    client = client_for(fake_agentrun.config(endpoint=endpoint))

    result = client.execute("print(1)")
    health = client.health()

    assert result.status is ExecutionStatus.PROVIDER_ERROR, result
    assert result.error is not None and "cannot reach AgentRun" in result.error.message
    assert endpoint in result.error.message
    assert not health.healthy and "cannot reach AgentRun" in health.message
    assert result.metadata["failure"]["kind"] == "unavailable"
    assert fake_agentrun.credentials.access_key_secret not in _everything_shown(result)


def test_unknown_template_names_the_template(fake_agentrun: FakeAgentRun, client_for: Any) -> None:
    result = client_for(fake_agentrun.config(template_name="no-such-template")).execute("print(1)")
    assert result.status is ExecutionStatus.PROVIDER_ERROR, result
    assert result.error is not None and "'no-such-template' was not found" in result.error.message
    assert result.metadata["failure"]["kind"] == "bad_config"


def test_runtime_maps_to_its_template(fake_agentrun: FakeAgentRun, client_for: Any) -> None:
    template = fake_agentrun.credentials.template_name
    client = client_for(fake_agentrun.config(template_name="no-such-template", runtime_templates={"data": template}))
    result = client.execute("print('mapped')", runtime="data")
    assert result.ok, result
    assert result.metadata["template_name"] == template
    refused = client.execute("print(1)", runtime="pandas")
    assert refused.status is ExecutionStatus.PROVIDER_ERROR and refused.error is not None
    assert "unknown runtime 'pandas'" in refused.error.message and "data" in refused.error.message
    assert refused.metadata["failure"]["kind"] == "bad_config"


def test_a_template_without_node_is_a_config_problem(
    fake_agentrun: FakeAgentRun, client_for: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    environment = fake_agentrun.store._environment
    monkeypatch.setattr(
        type(fake_agentrun.store), "_environment", staticmethod(lambda sandbox: {**environment(sandbox), "PATH": str(tmp_path)})
    )
    result = client_for(fake_agentrun.config(isolation="strict")).execute("console.log(1)", language="javascript")
    assert result.status is ExecutionStatus.PROVIDER_ERROR, result
    assert result.error is not None and "no interpreter for javascript" in result.error.message
    assert result.metadata["failure"]["kind"] == "bad_config"


def test_throttled_requests_are_retried_until_they_succeed(fake_agentrun: FakeAgentRun, client_for: Any) -> None:
    client = client_for(fake_agentrun.config())
    assert client.execute("print('warm')").ok  # a pooled sandbox exists: the next calls are context ones
    throttled_before = len(fake_agentrun.store.throttled)
    fake_agentrun.store.throttle_next(THROTTLE_ATTEMPTS - 1)

    result = client.execute("def main():\n    return 'after backing off'\n")

    assert result.value == "after backing off", result
    assert result.metadata["throttle_retries"] == THROTTLE_ATTEMPTS - 1
    throttled = fake_agentrun.store.throttled[throttled_before:]
    assert len(throttled) == THROTTLE_ATTEMPTS - 1
    assert all(path.endswith("/contexts") for path in throttled)  # the same request, tried again


def test_throttling_that_does_not_end_is_a_provider_error(fake_agentrun: FakeAgentRun, client_for: Any) -> None:
    fake_agentrun.store.throttle_next(THROTTLE_ATTEMPTS)
    created_before = len(fake_agentrun.store.created)

    result = client_for(fake_agentrun.config(isolation="strict")).execute("print(1)")

    assert result.status is ExecutionStatus.PROVIDER_ERROR, result
    assert result.error is not None and "AgentRun is throttling this account" in result.error.message
    assert f"after {THROTTLE_ATTEMPTS} attempts" in result.error.message
    assert result.metadata["failure"]["kind"] == "throttled"
    assert len(fake_agentrun.store.created) == created_before


def test_a_failed_execute_deletes_the_sandbox(fake_agentrun: FakeAgentRun, client_for: Any) -> None:
    template = fake_agentrun.credentials.execute_fails_template
    result = client_for(fake_agentrun.config(template_name=template)).execute("print(1)")

    assert result.status is ExecutionStatus.PROVIDER_ERROR, result
    assert result.error is not None and "AgentRun refused executing" in result.error.message
    assert "HTTP 500" in result.error.message
    assert result.metadata["sandbox_id"] in fake_agentrun.store.deleted
    assert fake_agentrun.store.live_contexts() == 0


def test_a_failed_delete_is_reported_not_raised(
    fake_agentrun: FakeAgentRun, client_for: Any, caplog: pytest.LogCaptureFixture
) -> None:
    template = fake_agentrun.credentials.delete_fails_template
    config = fake_agentrun.config(template_name=template, isolation="strict")
    result = client_for(config).execute("def main():\n    return 7\n")

    assert result.ok and result.value == 7, result
    sandbox_id = result.metadata["sandbox_id"]
    assert sandbox_id in fake_agentrun.store.live
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and sandbox_id in r.getMessage()]
    assert warnings and "retrying in the background for up to 120s" in warnings[0]
    assert fake_agentrun.credentials.access_key_secret not in warnings[0]
    assert sandbox_id in PENDING_DELETES.pending()
    fake_agentrun.store.delete(sandbox_id)  # what the service's idle timeout would do


# -- the pool and strict isolation ---------------------------------------------------------------


def test_a_pooled_sandbox_serves_the_next_execution_in_a_fresh_context(
    fake_agentrun: FakeAgentRun, client_for: Any
) -> None:
    client = client_for(fake_agentrun.config())
    leave = (
        "import os, tempfile\n"
        "for path in ('left-in-cwd', os.path.expanduser('~/left-in-home'), os.path.join(tempfile.gettempdir(), 'left-in-tmp')):\n"
        "    open(path, 'w').write('x')\n"
    )
    look = (
        "import os, tempfile\n"
        "def main():\n"
        "    return [os.path.exists(p) for p in ('left-in-cwd', os.path.expanduser('~/left-in-home'),\n"
        "                                         os.path.join(tempfile.gettempdir(), 'left-in-tmp'))]\n"
    )
    first, second = client.execute(leave), client.execute(look)

    assert first.ok and second.ok, (first, second)
    assert first.metadata["sandbox_reused"] is False and second.metadata["sandbox_reused"] is True
    assert first.metadata["sandbox_id"] == second.metadata["sandbox_id"]
    assert first.metadata["context_id"] != second.metadata["context_id"]
    assert second.value == [False, False, False]  # the job folder, home and temp went with the first job
    assert fake_agentrun.store.live_contexts() == 0
    assert first.metadata["isolation"] == "pooled"
    assert first.metadata["throttle_retries"] == second.metadata["throttle_retries"] == 0


def test_strict_isolation_never_reuses_a_sandbox(fake_agentrun: FakeAgentRun, client_for: Any) -> None:
    client = client_for(fake_agentrun.config(isolation="strict"))
    results = [client.execute("def main():\n    return 1\n") for _ in range(3)]

    ids = [r.metadata["sandbox_id"] for r in results]
    assert all(r.value == 1 for r in results), results
    assert len(set(ids)) == 3
    assert not any(r.metadata["sandbox_reused"] for r in results)
    assert set(ids) <= set(fake_agentrun.store.deleted) and not set(ids) & set(fake_agentrun.store.live)


def test_a_sandbox_whose_code_timed_out_is_not_reused(fake_agentrun: FakeAgentRun, client_for: Any) -> None:
    client = client_for(fake_agentrun.config())
    timed_out = client.execute("import time\nprint('slow', flush=True)\ntime.sleep(30)\n", timeout=1)
    after = client.execute("print('next')")

    assert timed_out.status is ExecutionStatus.TIMEOUT and timed_out.stdout == "slow\n", timed_out
    assert after.ok and after.metadata["sandbox_reused"] is False, after
    assert after.metadata["sandbox_id"] != timed_out.metadata["sandbox_id"]
    assert timed_out.metadata["sandbox_id"] in fake_agentrun.store.deleted


def test_idle_pooled_sandboxes_are_deleted_after_the_pool_idle_timeout(
    fake_agentrun: FakeAgentRun, client_for: Any
) -> None:
    client = client_for(fake_agentrun.config(pool_idle_timeout=5, sandbox_idle_timeout=30))
    sandbox_id = client.execute("print('then idle')").metadata["sandbox_id"]
    assert sandbox_id in fake_agentrun.store.live
    deadline = time.monotonic() + 20
    while sandbox_id in fake_agentrun.store.live and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sandbox_id in fake_agentrun.store.deleted, "the idle sandbox was not deleted"


def test_errors_leave_no_sandbox_after_shutdown(fake_agentrun: FakeAgentRun) -> None:
    client = SandboxClient(provider=PROVIDER, config=fake_agentrun.config())
    outcomes = [
        client.execute("raise ValueError('boom')").status,
        client.execute("import time\ntime.sleep(30)\n", timeout=1).status,
        client.execute("print(", language="python").status,
        client.execute("def main():\n    return 2\n").status,
    ]
    assert outcomes == [ExecutionStatus.ERROR, ExecutionStatus.TIMEOUT, ExecutionStatus.ERROR, ExecutionStatus.SUCCESS]
    assert fake_agentrun.store.live  # one warm sandbox, waiting for more work

    get_registry().shutdown()

    assert not fake_agentrun.store.live and fake_agentrun.store.live_contexts() == 0
    client.close()


def test_twenty_parallel_executions(fake_agentrun: FakeAgentRun, client_for: Any) -> None:
    client = client_for(fake_agentrun.config(pool_size=3))
    code = "def main(n):\n    print('job', n)\n    return n * n\n"

    with ThreadPoolExecutor(20) as workers:
        results = list(workers.map(lambda n: client.execute(code, arguments={"n": n}), range(20)))

    assert [r.value for r in results] == [n * n for n in range(20)], [r for r in results if not r.ok]
    assert [r.stdout for r in results] == [f"job {n}\n" for n in range(20)]
    assert len(fake_agentrun.store.live) <= 3  # the pool keeps at most pool_size idle sandboxes
    assert fake_agentrun.store.live_contexts() == 0


# -- timeouts, health, output --------------------------------------------------------------------


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


def test_no_timeout_gets_the_configured_limit_without_a_note(fake_agentrun: FakeAgentRun, client_for: Any) -> None:
    result = client_for(fake_agentrun.config(timeout=5)).execute("print('quick')")
    assert result.metadata["timeout"] == 5 and "timeout_clamped" not in result.metadata


def test_health_runs_a_real_probe(fake_agentrun: FakeAgentRun, client_for: Any) -> None:
    executed_before = len(fake_agentrun.store.executed_timeouts)
    status = client_for(fake_agentrun.config()).health()
    assert status.healthy, status.message
    assert status.latency is not None and status.latency > 0
    assert "ran a probe in created sandbox" in status.message
    assert len(fake_agentrun.store.executed_timeouts) == executed_before + 1


def test_an_output_flood_is_stopped_and_flagged(fake_agentrun: FakeAgentRun, client_for: Any) -> None:
    client = client_for(fake_agentrun.config(max_output_bytes=2048))
    result = client.execute("while True:\n    print('x' * 1000)\n", timeout=20)

    assert result.status is ExecutionStatus.OUTPUT_LIMIT, result
    assert result.stdout_truncated and len(result.stdout.encode()) <= 2048
    assert result.metadata["flooded"] is True
    assert result.execution_time < 10
    assert result.metadata["sandbox_id"] in fake_agentrun.store.deleted  # a flood's sandbox is not reused
