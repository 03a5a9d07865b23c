"""sandbox-core's conformance kit, through the installed ``e2b`` entry point and the real E2B SDK,
against the local fake E2B server, in both isolation modes."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest
from fake_e2b import FakeE2BServer

from sandbox_core.testing import ProviderConformance, SessionConformance
from sandbox_e2b.sessions import END_KEY

OUTPUT_LIMIT = 64 * 1024


class TestE2BConformancePooled(ProviderConformance):
    supports_javascript = True
    supports_timeout = True
    supports_output_limit = True
    supports_artifacts = True

    @pytest.fixture
    def provider_name(self) -> str:
        return "e2b"

    isolation = "pooled"

    @pytest.fixture
    def provider_config(self, e2b_config: dict[str, Any]) -> Mapping[str, Any]:
        return {**e2b_config, "max_output_bytes": OUTPUT_LIMIT, "isolation": self.isolation}

    @pytest.fixture
    def unreachable_config(self, e2b_config: dict[str, Any]) -> Mapping[str, Any]:
        """Both E2B APIs on a closed local port: the hooks must report it, not raise."""
        return {**e2b_config, "api_url": "http://127.0.0.1:1", "sandbox_url": "http://127.0.0.1:1", "isolation": self.isolation}

    @pytest.fixture
    def output_limit_bytes(self) -> int:
        return OUTPUT_LIMIT

    @pytest.fixture
    def invalid_configs(self) -> Sequence[tuple[Mapping[str, Any], str]]:
        return [
            ({}, "api_key"),
            ({"api_key": "k", "api_url": "ftp://127.0.0.1:1"}, "api_url"),
            ({"api_key": "k", "sandbox_url": "http://127.0.0.1:1/some/path"}, "sandbox_url"),
            ({"api_key": "k", "domain": "https://e2b.app"}, "domain"),
            ({"api_key": "k", "request_timeout": 0}, "request_timeout"),
            ({"api_key": "k", "sandbox_timeout": 5}, "sandbox_timeout"),
            ({"api_key": "k", "max_output_bytes": 10}, "max_output_bytes"),
            ({"api_key": "k", "languages": ["cobol"]}, "languages"),
            ({"api_key": "k", "isolation": "shared"}, "isolation"),
            ({"api_key": "k", "pool_size": 17}, "pool_size"),
            ({"api_key": "k", "pool_idle_timeout": 0}, "pool_idle_timeout"),
        ]


class TestE2BConformanceStrict(TestE2BConformancePooled):
    isolation = "strict"


class TestE2BSessionConformance(SessionConformance):
    """The kit's session tests: a session is a sandbox with one code context, whatever the isolation."""

    supports_sessions = True

    @pytest.fixture
    def provider_name(self) -> str:
        return "e2b"

    @pytest.fixture
    def provider_config(self, e2b_config: dict[str, Any]) -> Mapping[str, Any]:
        return e2b_config

    @pytest.fixture
    def live_sessions(self, fake_e2b: FakeE2BServer) -> Callable[[], int]:
        """Session sandboxes alive in the fake (they carry the session's end in their metadata)."""
        return lambda: sum(END_KEY in sandbox.metadata for sandbox in fake_e2b.cloud.running())
