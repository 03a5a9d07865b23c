"""sandbox-core's conformance kit, run against the installed ``self_managed`` entry point and a real executor."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from selfmanaged_support import Executor

from sandbox_core.testing import ProviderConformance

OUTPUT_LIMIT = 64 * 1024


class TestSelfManagedConformance(ProviderConformance):
    supports_javascript = True
    supports_timeout = True
    supports_output_limit = True
    supports_artifacts = True

    @pytest.fixture
    def provider_name(self) -> str:
        return "self_managed"

    @pytest.fixture
    def provider_config(self, executor: Executor) -> Mapping[str, Any]:
        return {"endpoints": [executor.url], "token": executor.token, "max_output_bytes": OUTPUT_LIMIT}

    @pytest.fixture
    def unreachable_config(self, executor: Executor) -> Mapping[str, Any]:
        """The only executor on a closed local port: the hooks must report it, not raise."""
        return {"endpoints": ["http://127.0.0.1:1"], "token": executor.token, "retries": 0}

    @pytest.fixture
    def output_limit_bytes(self) -> int:
        return OUTPUT_LIMIT

    @pytest.fixture
    def invalid_configs(self) -> Sequence[tuple[Mapping[str, Any], str]]:
        return [
            ({}, "endpoints"),
            ({"endpoints": ["ftp://127.0.0.1:8808"]}, "endpoints"),
            ({"endpoints": ["http://10.1.2.3:8808"]}, "token"),
            ({"endpoints": ["http://127.0.0.1:8808"], "retries": -1}, "retries"),
            ({"endpoints": ["http://127.0.0.1:8808"], "memory_mb": 1}, "memory_mb"),
            ({"endpoints": ["http://127.0.0.1:8808", "http://127.0.0.1:8808"]}, "endpoints.1"),
        ]
