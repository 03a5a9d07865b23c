"""Egress through the executor's API and the provider: who may ask for what, and what gets counted.

No test here lets code open a connection (that is ``test_egress_gvisor.py``, inside a namespace
the test owns): these check refusals made before anything runs, and the bookkeeping.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from selfmanaged_support import Executor, assert_clean_shutdown, start_executor

from sandbox_core import ExecutionRequest
from sandbox_core.client import SandboxClient
from sandbox_core.testing.isolation import check_isolation
from sandbox_selfmanaged import provider
from sandbox_selfmanaged.errors import EgressPolicyError
from sandbox_selfmanaged.service.metrics import Metrics


@pytest.fixture(scope="module")
def egress_executor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Executor]:
    running = start_executor(
        tmp_path_factory.mktemp("egress-executor"),
        "--languages", "python", "--python-pool-size", "1",
        "--egress-allow", "api.example.com:443", "--egress-allow", "*.files.example.org:443",
    )
    yield running
    assert_clean_shutdown(running)


def test_an_executor_without_an_allowlist_refuses_any_network(executor: Executor) -> None:
    response = executor.http.post("/v1/execute", json={"code": "pass", "network": ["api.example.com:443"]})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "network"]
    assert "allows no egress" in response.json()["detail"][0]["msg"]


def test_requests_may_only_narrow_the_operators_allowlist(egress_executor: Executor) -> None:
    for wider in (["api.example.com:8443"], ["other.example.com:443"], ["*.example.com:443"], ["127.0.0.1:443"]):
        response = egress_executor.http.post("/v1/execute", json={"code": "pass", "network": wider})
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"] == ["body", "network"]
    result = egress_executor.execute("print('no connection made')", network=["x.files.example.org:443"])
    assert result["status"] == "success", result
    assert result["metadata"]["egress"] == {"allowed": 0, "refused": 0, "bytes_sent": 0, "bytes_received": 0, "attempts": []}


def test_sandboxes_of_an_egress_executor_see_the_proxy_settings(egress_executor: Executor) -> None:
    code = "import os\ndef main():\n    return [os.environ.get('HTTPS_PROXY'), open('/etc/hosts').read(), os.listdir('/run/egress')]\n"
    value = egress_executor.execute(code)["value"]
    assert value[0] == "http://127.0.0.1:3128"
    assert "127.0.0.2\tapi.example.com" in value[1]
    assert value[2] == ["egress.sock"]


def test_input_files_with_a_network_allowlist_are_refused_not_run_offline(egress_executor: Executor) -> None:
    # Input files run in a one-use session sandbox, which has no egress socket: running the code
    # there would silently drop the allowlist the request asked for.
    response = egress_executor.http.post(
        "/v1/execute",
        json={"code": "pass", "network": ["api.example.com:443"], "files": {"data.txt": base64.b64encode(b"x").decode()}},
    )
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", "network"]
    assert "input files" in response.json()["detail"][0]["msg"]


def test_the_provider_checks_its_configured_allowlist_before_sending() -> None:
    config = {"endpoints": ["http://127.0.0.1:9"], "network_allowlist": ["api.example.com:443"]}
    request = ExecutionRequest(code="pass", network=["other.example.com:443"])
    with pytest.raises(EgressPolicyError, match="network_allowlist"):
        provider.sandbox_execute(request, config, "self_managed", None)
    problems = provider.sandbox_validate_config({"endpoints": [], "network_allowlist": ["127.0.0.1:443"]})
    assert [problem.field for problem in problems] == ["network_allowlist"]
    assert provider.sandbox_provider_info().egress


def test_egress_reports_are_counted_in_metrics() -> None:
    metrics = Metrics(lambda: {}, lambda: {})
    metrics.count_egress({"allowed": 2, "refused": 3, "bytes_sent": 10, "bytes_received": 20})
    metrics.count_egress(None)
    text = metrics.render().decode()
    assert 'sandbox_executor_egress_connections_total{outcome="refused"} 3.0' in text
    assert 'sandbox_executor_egress_bytes_total{direction="received"} 20.0' in text


def test_the_isolation_case_passes_through_the_real_proxy(egress_executor: Executor) -> None:
    client = SandboxClient(provider="self_managed", config={"endpoints": [egress_executor.url], "token": egress_executor.token})
    (report,) = check_isolation(client.execute, cases=["egress_proxy_refuses_host"])
    assert report.verdict.value == "pass", report.evidence
    assert "127.0.0.1:3128" in report.evidence and "403 Forbidden" in report.evidence
