"""Fixtures of the E2B provider tests: one fake E2B server for the session, the real SDK against it.

The server checks its API key and records every sandbox created and killed; tests read
``fake_e2b.cloud``. At the end, once the provider registry has shut the providers down (which
kills the pooled sandboxes), no sandbox and no code context may be left alive.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fake_e2b import TEST_API_KEY, FakeE2BServer

from sandbox_core.registry import get_registry


@pytest.fixture(scope="session")
def fake_e2b(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeE2BServer]:
    server = FakeE2BServer(tmp_path_factory.mktemp("fake-e2b"), TEST_API_KEY).start()
    yield server
    get_registry().shutdown()
    leftovers = [sandbox.sandbox_id for sandbox in server.cloud.running()]
    contexts = server.cloud.live_contexts()
    server.stop()
    assert not leftovers, f"sandboxes left alive: {leftovers}"
    assert not contexts, f"{contexts} code contexts left alive"


@pytest.fixture
def e2b_config(fake_e2b: FakeE2BServer) -> dict[str, Any]:
    """A working config pointing the SDK at the fake server."""
    return {"api_key": TEST_API_KEY, "api_url": fake_e2b.url, "sandbox_url": fake_e2b.url, "request_timeout": 10}
