"""Fixtures of the Aliyun provider tests: one fake AgentRun server for the session.

The provider runs for real (entry point, agentrun-sdk, HTTP, signatures) against
:mod:`fake_agentrun`, a local stand-in for the AgentRun data plane. Nothing is patched or mocked.
When the session ends, the providers are shut down as an application would and the fake must have
no sandbox or context left: a leaked cloud sandbox fails the run.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox_core.registry import get_registry

sys.path.insert(0, str(Path(__file__).parent))

from fake_agentrun import FakeAgentRun, running_fake  # noqa: E402


@pytest.fixture(scope="session")
def fake_agentrun() -> Iterator[FakeAgentRun]:
    with running_fake() as fake:
        yield fake
        get_registry().shutdown()
        assert not fake.store.live, f"sandboxes left alive: {sorted(fake.store.live)}"
        assert fake.store.live_contexts() == 0


@pytest.fixture(autouse=True)
def no_agentrun_credentials_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests choose where credentials come from; a developer's real AGENTRUN_* must not leak in."""
    for variable in ("AGENTRUN_ACCESS_KEY_ID", "AGENTRUN_ACCESS_KEY_SECRET", "AGENTRUN_ACCOUNT_ID", "AGENTRUN_SECURITY_TOKEN"):
        monkeypatch.delenv(variable, raising=False)
