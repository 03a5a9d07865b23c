"""The failure vocabulary of ``provider_error`` results: built by one helper, read back from JSON."""

from __future__ import annotations

import json

import pytest

from sandbox_core.failures import Failure, FailureKind, failure_of, provider_failure
from sandbox_core.model import ExecutionResult, ExecutionStatus


def test_provider_failure_records_kind_and_retry_advice() -> None:
    result = provider_failure("demo", "the backend is busy", FailureKind.THROTTLED, retry_after=7, endpoint="http://x")
    assert result.status is ExecutionStatus.PROVIDER_ERROR
    assert result.error is not None and result.error.message == "the backend is busy"
    assert result.metadata == {"endpoint": "http://x", "failure": {"kind": "throttled", "retry_after": 7.0}}
    rebuilt = ExecutionResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert failure_of(rebuilt) == Failure(FailureKind.THROTTLED, 7.0)


def test_kind_may_be_given_by_name_and_retry_after_may_be_absent() -> None:
    result = provider_failure("demo", "key refused", "auth")
    assert result.metadata["failure"] == {"kind": "auth", "retry_after": None}
    assert failure_of(result) == Failure(FailureKind.AUTH)


def test_an_unknown_kind_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match="'flaky'"):
        provider_failure("demo", "?", "flaky")


def test_failure_of_other_results_is_none() -> None:
    assert failure_of(ExecutionResult(status=ExecutionStatus.SUCCESS, metadata={"failure": {"kind": "auth"}})) is None
    assert failure_of(ExecutionResult.provider_failure("demo", "untagged")) is None
    garbled = ExecutionResult.provider_failure("demo", "odd", failure={"kind": "nonsense"})
    assert failure_of(garbled) is None


def test_the_vocabulary() -> None:
    assert [kind.value for kind in FailureKind] == ["auth", "throttled", "unavailable", "lost", "bad_config", "internal"]
