"""The records of the provider contract: requests, results, health, and their JSON form."""

from __future__ import annotations

import json

import attrs
import pytest

from sandbox_core.model import Artifact, ErrorInfo, ExecutionRequest, ExecutionResult, ExecutionStatus, HealthStatus


def test_a_result_survives_its_json_form() -> None:
    result = ExecutionResult(
        status="error",
        stdout="out ✓",
        stderr="err",
        exit_code=1,
        value={"a": [1, None, True]},
        error=ErrorInfo(type="ValueError", message="bad", traceback="Traceback ..."),
        stdout_truncated=True,
        execution_time=0.5,
        provider="p",
        artifacts=[Artifact(name="x.bin", mime_type="application/octet-stream", size=3, content=b"\x00\xff\x10")],
        metadata={"runtime": "r"},
    )
    data = json.loads(json.dumps(result.to_dict()))
    assert data["status"] == "error" and data["artifacts"][0]["content_base64"] == "AP8Q"
    assert ExecutionResult.from_dict(data) == result
    assert set(data) >= {
        "status", "stdout", "stderr", "exit_code", "value", "error", "stdout_truncated",
        "stderr_truncated", "execution_time", "provider", "artifacts", "metadata",
    }


def test_results_are_immutable_and_ok_means_success() -> None:
    result = ExecutionResult(status=ExecutionStatus.SUCCESS)
    assert result.ok and not ExecutionResult(status="timeout").ok
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        result.stdout = "changed"  # type: ignore[misc]
    with pytest.raises(ValueError):
        ExecutionResult(status="finished")


def test_a_provider_failure() -> None:
    result = ExecutionResult.provider_failure("p", "backend down", endpoint="http://h")
    assert result.status is ExecutionStatus.PROVIDER_ERROR
    assert (result.error.type, result.error.message, result.metadata) == ("ProviderError", "backend down", {"endpoint": "http://h"})


@pytest.mark.parametrize(("given", "language"), [("py", "python"), ("Python3", "python"), ("JS", "javascript"), ("node", "javascript")])
def test_language_aliases(given: str, language: str) -> None:
    assert ExecutionRequest(code="", language=given).language == language


def test_request_checks() -> None:
    assert ExecutionRequest(code="", timeout="2.5").timeout == 2.5
    assert ExecutionRequest(code="").timeout is None  # no timeout given: the provider's default applies
    assert ExecutionRequest(code="", timeout=None).timeout is None
    with pytest.raises(ValueError, match="^language: 'ruby' is not supported; choose one of: python, javascript"):
        ExecutionRequest(code="", language="ruby")
    with pytest.raises(ValueError, match="^timeout:"):
        ExecutionRequest(code="", timeout=-1)
    with pytest.raises(ValueError, match="^arguments:"):
        ExecutionRequest(code="", arguments=[1])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="^arguments: 'class-name'"):
        ExecutionRequest(code="", arguments={"class-name": 1})


def test_an_artifact_repr_does_not_dump_its_content() -> None:
    artifact = Artifact(name="big.bin", mime_type="application/octet-stream", size=10_000, content=b"z" * 10_000)
    assert "zzz" not in repr(artifact) and "10000 bytes" in repr(artifact)


def test_health_status_json() -> None:
    assert HealthStatus(healthy=False, message="down").to_dict() == {"healthy": False, "message": "down", "latency": None, "details": {}}
