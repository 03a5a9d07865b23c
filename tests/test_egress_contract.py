"""The ``network`` field of a request: syntax checked in the core, refused for providers that cannot enforce it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from sandbox_core import ExecutionRequest, ExecutionResult, ProviderInfo, hookimpl
from sandbox_core.client import SandboxClient
from sandbox_core.model import ExecutionStatus
from sandbox_core.registry import ProviderRegistry
from sandbox_core.schema import ConfigSchema


class Recorder:
    """A provider that records the requests it gets; ``egress`` says whether it claims to enforce ``network``."""

    def __init__(self, egress: bool) -> None:
        self.egress = egress
        self.requests: list[ExecutionRequest] = []

    @hookimpl
    def sandbox_provider_info(self) -> ProviderInfo:
        return ProviderInfo(description="records", egress=self.egress)

    @hookimpl
    def sandbox_config_schema(self) -> ConfigSchema:
        return ConfigSchema([])

    @hookimpl
    def sandbox_execute(self, request: ExecutionRequest, config: Mapping[str, Any], provider_name: str) -> ExecutionResult:
        self.requests.append(request)
        return ExecutionResult(status=ExecutionStatus.SUCCESS, provider=provider_name)


def client_for(provider: Recorder) -> SandboxClient:
    registry = ProviderRegistry(discover=False)
    registry.register("recorder", provider)
    return SandboxClient(registry=registry, provider="recorder", config={})


def test_no_network_is_the_default() -> None:
    assert ExecutionRequest(code="pass").network == ()
    assert ExecutionRequest(code="pass", network=None).network == ()


@pytest.mark.parametrize(
    "network",
    ["api.example.com:443", b"api.example.com:443", [443], ["api.example.com:443\n"], [""], ["x" * 400], ["h:1"] * 257],
)
def test_malformed_network_fields_are_refused(network: Any) -> None:
    with pytest.raises(ValueError, match="^network: "):
        ExecutionRequest(code="pass", network=network)


def test_a_provider_that_cannot_enforce_a_network_policy_never_gets_one() -> None:
    provider = Recorder(egress=False)
    client = client_for(provider)
    with pytest.raises(ValueError, match="cannot enforce a network allowlist"):
        client.execute("pass", network=["api.example.com:443"])
    assert provider.requests == []
    client.execute("pass")
    assert provider.requests[0].network == ()


def test_a_provider_that_enforces_egress_gets_the_list() -> None:
    provider = Recorder(egress=True)
    client_for(provider).execute("pass", network=["api.example.com:443"])
    assert provider.requests[0].network == ("api.example.com:443",)
