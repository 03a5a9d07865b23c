"""A local stand-in for AgentRun's data plane, spoken to by the REAL agentrun-sdk over HTTP.

- :mod:`.signing` — verifies the SDK's ``AGENTRUN4-HMAC-SHA256`` request signatures.
- :mod:`.state` — sandboxes and their lifecycle; runs the code it receives as local subprocesses.
- :mod:`.app` — the Starlette app with the data-plane routes the provider uses.
- :mod:`.server` — runs the app with uvicorn on 127.0.0.1 and a free port, in a thread.

It is a test double for the cloud, not a sandbox: the tests only send the conformance kit's benign
code through it.
"""

from __future__ import annotations

from .server import FakeAgentRun, running_fake
from .state import Credentials

__all__ = ["Credentials", "FakeAgentRun", "running_fake"]
