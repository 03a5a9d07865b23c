"""Against the real AgentRun service, when credentials are given; skipped (with the reason) otherwise.

Set AGENTRUN_ACCESS_KEY_ID, AGENTRUN_ACCESS_KEY_SECRET, AGENTRUN_ACCOUNT_ID and
AGENTRUN_TEMPLATE_NAME (a CodeInterpreter template), and optionally AGENTRUN_REGION. The values are
read once here and passed in the config: the other tests clear these variables.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from sandbox_core.client import SandboxClient
from sandbox_core.model import ExecutionStatus

REQUIRED = ("AGENTRUN_ACCESS_KEY_ID", "AGENTRUN_ACCESS_KEY_SECRET", "AGENTRUN_ACCOUNT_ID", "AGENTRUN_TEMPLATE_NAME")
MISSING = [name for name in REQUIRED if not os.environ.get(name)]
CONFIG = {
    "access_key_id": os.environ.get("AGENTRUN_ACCESS_KEY_ID", ""),
    "access_key_secret": os.environ.get("AGENTRUN_ACCESS_KEY_SECRET", ""),
    "account_id": os.environ.get("AGENTRUN_ACCOUNT_ID", ""),
    "template_name": os.environ.get("AGENTRUN_TEMPLATE_NAME", ""),
    "region": os.environ.get("AGENTRUN_REGION", "cn-hangzhou"),
}

pytestmark = pytest.mark.skipif(
    bool(MISSING), reason=f"real AgentRun service not configured: set {', '.join(MISSING)} to run these tests"
)


@pytest.fixture
def client() -> Iterator[SandboxClient]:
    client = SandboxClient(provider="aliyun_codeinterpreter", config=CONFIG)
    yield client
    client.close()  # deletes the pooled sandboxes


def test_health(client: SandboxClient) -> None:
    status = client.health()
    assert status.healthy, status.message


def test_python_and_javascript(client: SandboxClient) -> None:
    python = client.execute("def main(a, b):\n    return {'sum': a + b}\n", arguments={"a": 1, "b": 2})
    assert python.value == {"sum": 3}, python
    javascript = client.execute("function main(args) { return args.x * 2; }", language="javascript", arguments={"x": 21})
    assert javascript.value == 42, javascript
    assert javascript.metadata["sandbox_reused"] is True


def test_timeout_keeps_partial_output(client: SandboxClient) -> None:
    result = client.execute("import time\nprint('started', flush=True)\ntime.sleep(60)\n", timeout=3)
    assert result.status is ExecutionStatus.TIMEOUT and "started" in result.stdout, result
