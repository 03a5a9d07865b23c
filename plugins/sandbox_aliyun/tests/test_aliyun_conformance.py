"""The conformance kit, with the provider loaded from its installed entry point and the real
agentrun-sdk talking HTTP to the local fake AgentRun server, in both isolation modes."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest
from fake_agentrun import FakeAgentRun

from sandbox_core.testing import ProviderConformance, SessionConformance

OUTPUT_LIMIT = 4096


class TestAliyunConformance(ProviderConformance):
    supports_javascript = True
    supports_timeout = True
    supports_output_limit = True
    supports_artifacts = True

    @pytest.fixture
    def provider_name(self) -> str:
        return "aliyun_codeinterpreter"

    @pytest.fixture
    def provider_config(self, fake_agentrun: FakeAgentRun) -> Mapping[str, Any]:
        return fake_agentrun.config(max_output_bytes=OUTPUT_LIMIT)

    @pytest.fixture
    def unreachable_config(self, fake_agentrun: FakeAgentRun) -> Mapping[str, Any]:
        """The AgentRun endpoint on a closed local port: the hooks must report it, not raise."""
        return fake_agentrun.config(endpoint="http://127.0.0.1:1")

    @pytest.fixture
    def output_limit_bytes(self) -> int:
        return OUTPUT_LIMIT

    @pytest.fixture
    def invalid_configs(self, fake_agentrun: FakeAgentRun) -> Sequence[tuple[Mapping[str, Any], str]]:
        good = fake_agentrun.config()
        return [
            ({**good, "timeout": 31}, "timeout"),
            ({**good, "access_key_id": "not a key id"}, "access_key_id"),
            ({**good, "isolation": "shared"}, "isolation"),
            ({**good, "pool_size": 99}, "pool_size"),
            ({**good, "sandbox_idle_timeout": 60, "pool_idle_timeout": 60}, "sandbox_idle_timeout"),
            ({**good, "region": "mars-north-1"}, "region"),
            ({**good, "account_id": "not-a-number"}, "account_id"),
            ({**good, "endpoint": "http://agentrun.example.com"}, "endpoint"),
            ({k: v for k, v in good.items() if k != "access_key_secret"}, "access_key_secret"),
            ({**good, "max_output_bytes": 10}, "max_output_bytes"),
        ]


class TestAliyunStrictConformance(TestAliyunConformance):
    """The same contract with a new sandbox per execution (``isolation: strict``)."""

    @pytest.fixture
    def provider_config(self, fake_agentrun: FakeAgentRun) -> Mapping[str, Any]:
        return fake_agentrun.config(max_output_bytes=OUTPUT_LIMIT, isolation="strict")


class TestAliyunSessionConformance(SessionConformance):
    """The kit's session tests: a session is a sandbox with one persistent context, whatever the isolation."""

    supports_sessions = True

    @pytest.fixture
    def provider_name(self) -> str:
        return "aliyun_codeinterpreter"

    @pytest.fixture
    def provider_config(self, fake_agentrun: FakeAgentRun) -> Mapping[str, Any]:
        return fake_agentrun.config()

    @pytest.fixture
    def live_sessions(self, fake_agentrun: FakeAgentRun) -> Callable[[], int]:
        """Contexts alive in the fake: a session keeps one, a one-shot execution deletes its own."""
        return fake_agentrun.store.live_contexts
