"""Fixtures of the Aliyun provider tests: one fake AgentRun server for the session.

The provider runs for real (entry point, agentrun-sdk, HTTP, signatures) against
:mod:`fake_agentrun`, a local stand-in for the AgentRun data plane. Nothing is patched or mocked.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fake_agentrun import FakeAgentRun, running_fake  # noqa: E402


@pytest.fixture(scope="session")
def fake_agentrun() -> Iterator[FakeAgentRun]:
    with running_fake() as fake:
        yield fake
