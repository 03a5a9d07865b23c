"""The timeout rule: no timeout given means the provider's default; over a maximum is capped and said.

A provider declares its default and maximum in ``ProviderInfo.timeouts`` (fixed values or config
keys); the core applies the rule once, hands the provider the effective seconds and reports them in
every result's ``metadata["timeout"]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from sandbox_core import ExecutionRequest, ExecutionResult, hookimpl
from sandbox_core.client import SandboxClient
from sandbox_core.model import ProviderInfo
from sandbox_core.registry import ProviderRegistry
from sandbox_core.schema import ConfigField, ConfigSchema
from sandbox_core.timeouts import DEFAULT_TIMEOUT, TimeoutSettings, effective_timeout, request_seconds


class TimedProvider:
    """Returns the timeout it was handed; its default and maximum come from its config."""

    def __init__(self, settings: TimeoutSettings) -> None:
        self.settings = settings

    @hookimpl
    def sandbox_provider_info(self) -> ProviderInfo:
        return ProviderInfo(description="timed", timeouts=self.settings)

    @hookimpl
    def sandbox_config_schema(self) -> ConfigSchema:
        return ConfigSchema([ConfigField("default_timeout", "number", minimum=0.1), ConfigField("limit", "number", minimum=0.1)])

    @hookimpl
    def sandbox_execute(self, request: ExecutionRequest, config: Mapping[str, Any]) -> ExecutionResult:
        if request.code == "crash":
            raise RuntimeError("backend down")
        return ExecutionResult(status="success", exit_code=0, value=request.timeout)


def client(settings: TimeoutSettings, config: Mapping[str, Any] | None = None) -> SandboxClient:
    registry = ProviderRegistry(discover=False)
    registry.register("timed", TimedProvider(settings))
    return SandboxClient(provider="timed", config=dict(config or {}), registry=registry)


CONFIGURED = TimeoutSettings(
    default_setting="default_timeout",
    maximum_setting="limit",
    maximum=60,
    maximum_reason="the backend stops every execution after 60s",
)


def test_an_explicit_timeout_equal_to_the_core_default_is_honoured() -> None:
    result = client(CONFIGURED, {"default_timeout": 5}).execute("x", timeout=DEFAULT_TIMEOUT)
    assert result.value == DEFAULT_TIMEOUT
    assert result.metadata["timeout"] == DEFAULT_TIMEOUT and "timeout_clamped" not in result.metadata


def test_no_timeout_means_the_providers_default() -> None:
    assert client(CONFIGURED, {"default_timeout": 5}).execute("x").value == 5
    assert client(CONFIGURED).execute("x").metadata["timeout"] == DEFAULT_TIMEOUT
    assert client(TimeoutSettings(default=12)).execute("x").value == 12


def test_a_default_above_the_maximum_is_lowered_to_it_without_a_note() -> None:
    result = client(TimeoutSettings(default=90, maximum=45)).execute("x")
    assert result.value == 45 and result.metadata["timeout"] == 45 and "timeout_clamped" not in result.metadata


def test_over_the_hard_maximum_is_capped_with_the_providers_reason() -> None:
    result = client(CONFIGURED).execute("x", timeout=100)
    assert result.value == 60
    assert result.metadata["timeout_clamped"] == {
        "requested": 100.0, "applied": 60.0, "reason": "the backend stops every execution after 60s",
    }


def test_over_the_configured_maximum_names_the_setting() -> None:
    result = client(CONFIGURED, {"limit": 8}).execute("x", timeout=10)
    assert result.value == 8
    assert result.metadata["timeout_clamped"]["reason"] == "the provider's limit setting is 8s"


def test_a_configured_maximum_above_the_hard_one_gives_way() -> None:
    result = client(CONFIGURED, {"limit": 500}).execute("x", timeout=100)
    assert result.value == 60 and "60s" in result.metadata["timeout_clamped"]["reason"]


def test_a_provider_failure_reports_the_timeout_too() -> None:
    result = client(CONFIGURED, {"default_timeout": 7}).execute("crash")
    assert result.status.value == "provider_error" and result.metadata["timeout"] == 7


def test_no_declared_maximum_leaves_long_timeouts_alone() -> None:
    assert client(TimeoutSettings()).execute("x", timeout=3000).value == 3000


@pytest.mark.parametrize(
    ("requested", "config", "seconds", "clamped"),
    [(None, {}, DEFAULT_TIMEOUT, False), (10.0, {}, 10.0, False), (100.0, {}, 60.0, True), (None, {"default_timeout": 2}, 2.0, False)],
)
def test_the_rule_itself(requested: float | None, config: dict[str, Any], seconds: float, clamped: bool) -> None:
    effective = effective_timeout(requested, CONFIGURED, config)
    assert effective.seconds == seconds
    assert ("timeout_clamped" in effective.metadata()) is clamped


def test_request_seconds_falls_back_when_a_hook_is_called_directly() -> None:
    assert request_seconds(ExecutionRequest(code="")) == DEFAULT_TIMEOUT
    assert request_seconds(ExecutionRequest(code=""), 9) == 9
    assert request_seconds(ExecutionRequest(code="", timeout=4)) == 4


def test_settings_name_the_bad_field() -> None:
    with pytest.raises(ValueError, match="^maximum:"):
        TimeoutSettings(maximum=0)
    with pytest.raises(ValueError, match="^default:"):
        TimeoutSettings(default=float("inf"))
