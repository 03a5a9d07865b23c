"""The ``e2b`` provider against the real E2B service: runs only when ``E2B_API_KEY`` is set.

Each test creates real sandboxes (billed by the second) and kills them; run with ``-rs`` to see
why they are skipped otherwise.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from contextlib import closing

import pytest

from sandbox_core import SandboxClient
from sandbox_core.model import ExecutionStatus

pytestmark = pytest.mark.skipif(
    not os.environ.get("E2B_API_KEY"), reason="E2B_API_KEY is not set: the real-E2B integration tests are skipped"
)

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==")


@pytest.fixture(params=["pooled", "strict"])
def client(request: pytest.FixtureRequest) -> Iterator[SandboxClient]:
    config = {"api_key": os.environ["E2B_API_KEY"], "isolation": request.param}
    if os.environ.get("E2B_DOMAIN"):
        config["domain"] = os.environ["E2B_DOMAIN"]
    with closing(SandboxClient(provider="e2b", config=config)) as made:
        yield made


def test_health(client: SandboxClient) -> None:
    status = client.health()
    assert status.healthy, status.message


def test_python_main_value_and_reuse(client: SandboxClient) -> None:
    first = client.execute("x = 1\ndef main(a, b):\n    print('adding')\n    return a + b\n", arguments={"a": 1, "b": 2}, timeout=60)
    second = client.execute("def main():\n    return 'x' in globals()\n", timeout=60)
    assert first.status is ExecutionStatus.SUCCESS, first
    assert first.value == 3 and first.stdout == "adding\n"
    assert second.value is False, second
    if first.metadata["isolation"] == "pooled":
        assert second.metadata["sandbox_reused"] is True
    else:
        assert second.metadata["sandbox_id"] != first.metadata["sandbox_id"]


def test_matplotlib_chart_is_an_artifact(client: SandboxClient) -> None:
    code = (
        "import matplotlib\n"
        "import matplotlib.pyplot as plt\n"
        "def main():\n"
        "    plt.plot([1, 2, 3], [1, 4, 9])\n"
        "    plt.show()\n"
        "    return 'plotted'\n"
    )
    result = client.execute(code, timeout=120)
    assert result.status is ExecutionStatus.SUCCESS, result
    assert any(a.mime_type == "image/png" and a.content.startswith(PNG[:8]) for a in result.artifacts), result.artifacts


def test_timeout_keeps_partial_output(client: SandboxClient) -> None:
    result = client.execute("import time\nprint('started', flush=True)\ntime.sleep(60)\n", timeout=5)
    assert result.status is ExecutionStatus.TIMEOUT, result
    assert "started" in result.stdout


def test_javascript(client: SandboxClient) -> None:
    result = client.execute("function main(args) {\n  return args.n * 2;\n}\n", language="javascript", arguments={"n": 21}, timeout=60)
    assert result.status is ExecutionStatus.SUCCESS, result
    assert result.value == 42
