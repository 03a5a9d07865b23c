"""Pooled and strict isolation, code contexts, streamed output and rich results, against the fake E2B."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import pytest
from fake_e2b import FakeE2BServer

from sandbox_core import SandboxClient
from sandbox_core.model import ExecutionResult, ExecutionStatus

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==")


@pytest.fixture
def client(e2b_config: dict[str, Any]) -> Iterator[SandboxClient]:
    with closing(SandboxClient(provider="e2b", config=e2b_config)) as made:
        yield made


def _run(client: SandboxClient, code: str, **kwargs: Any) -> ExecutionResult:
    kwargs.setdefault("timeout", 20)
    return client.execute(code, **kwargs)


def _wait_for(condition: Any, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())


def test_pooled_sandbox_is_reused_with_a_fresh_context(fake_e2b: FakeE2BServer, client: SandboxClient) -> None:
    first = _run(client, "import builtins, os\nbuiltins.leaked = 42\nshared = 1\ndef main():\n    return os.getcwd()\n")
    second = _run(
        client,
        "import builtins, os\n"
        "def main(folder):\n"
        "    return [hasattr(builtins, 'leaked'), 'shared' in globals(), os.path.exists(folder)]\n",
        arguments={"folder": first.value},
    )
    assert first.status is second.status is ExecutionStatus.SUCCESS, (first, second)
    assert first.metadata["sandbox_reused"] is False and second.metadata["sandbox_reused"] is True
    assert first.metadata["sandbox_id"] == second.metadata["sandbox_id"]
    assert first.metadata["context_id"] != second.metadata["context_id"]
    assert first.metadata["isolation"] == "pooled"
    assert second.value == [False, False, False], "kernel state or the working folder leaked"
    sandbox = fake_e2b.cloud.get(first.metadata["sandbox_id"])
    assert sandbox is not None and not sandbox.contexts, "the code contexts were not removed"
    # Leasing renews the E2B lifetime, so a reused sandbox does not end under its execution.
    assert any(sandbox_id == sandbox.sandbox_id for sandbox_id, _ in fake_e2b.cloud.timeouts)


def test_pooled_reuse_shares_the_vm_file_system(client: SandboxClient) -> None:
    """What the docs say pooled reuse shares: files outside the per-execution folder."""
    # In the fake a sandbox's "/" is a folder on this machine, two levels above its $HOME.
    shared = "import os\nPATH = os.path.join(os.environ['HOME'], '..', '..', 'tmp', 'shared-by-reuse.txt')\n"
    write = shared + "def main():\n    open(PATH, 'w').write('hello')\n"
    read = shared + "def main():\n    return os.path.exists(PATH)\n"
    assert _run(client, write).ok
    result = _run(client, read)
    assert result.metadata["sandbox_reused"] is True and result.value is True, result


def test_strict_isolation_never_reuses(fake_e2b: FakeE2BServer, e2b_config: dict[str, Any]) -> None:
    with closing(SandboxClient(provider="e2b", config={**e2b_config, "isolation": "strict"})) as client:
        results = [_run(client, "print('x')") for _ in range(3)]
        assert not fake_e2b.cloud.running(), "strict isolation kept a sandbox alive"
    assert all(r.ok and r.metadata["sandbox_reused"] is False and r.metadata["isolation"] == "strict" for r in results)
    sandboxes = [r.metadata["sandbox_id"] for r in results]
    assert len(set(sandboxes)) == 3 and set(sandboxes) <= set(fake_e2b.cloud.killed)


def test_timed_out_sandbox_is_not_reused(fake_e2b: FakeE2BServer, client: SandboxClient) -> None:
    late = _run(client, "import time\nprint('partial', flush=True)\ntime.sleep(30)\nprint('never')\n", timeout=1)
    assert late.status is ExecutionStatus.TIMEOUT, late
    assert late.stdout == "partial\n"
    assert late.metadata["sandbox_id"] in fake_e2b.cloud.killed
    after = _run(client, "print('fine')")
    assert after.ok and after.metadata["sandbox_id"] != late.metadata["sandbox_id"]
    assert after.metadata["sandbox_reused"] is False


def test_kernel_that_dies_is_an_error_and_its_sandbox_is_dropped(fake_e2b: FakeE2BServer, client: SandboxClient) -> None:
    result = _run(client, "import os\nprint('bye')\nos._exit(0)\n")
    assert result.status is ExecutionStatus.ERROR, result
    assert result.stdout == "bye\n" and "kernel died" in result.stderr
    assert result.metadata["sandbox_id"] in fake_e2b.cloud.killed


def test_provider_failure_discards_the_sandbox(fake_e2b: FakeE2BServer, client: SandboxClient) -> None:
    warm = _run(client, "print('warm')")
    fake_e2b.cloud.fail_uploads = True
    try:
        failed = _run(client, "print('never uploaded')")
    finally:
        fake_e2b.cloud.fail_uploads = False
    assert failed.status is ExecutionStatus.PROVIDER_ERROR, failed
    assert failed.metadata["sandbox_id"] == warm.metadata["sandbox_id"]
    assert failed.metadata["sandbox_id"] in fake_e2b.cloud.killed, "a sandbox in an unknown state went back to the pool"


def test_pooled_sandbox_that_ended_while_idle_is_replaced(fake_e2b: FakeE2BServer, client: SandboxClient) -> None:
    first = _run(client, "print(1)")
    fake_e2b.cloud.kill(first.metadata["sandbox_id"])  # e.g. its E2B lifetime ran out
    second = _run(client, "print(2)")
    assert second.ok, second
    assert second.metadata["sandbox_id"] != first.metadata["sandbox_id"]
    assert second.metadata["sandbox_replaced"] == first.metadata["sandbox_id"]


def test_idle_sandboxes_expire(fake_e2b: FakeE2BServer, e2b_config: dict[str, Any]) -> None:
    with closing(SandboxClient(provider="e2b", config={**e2b_config, "pool_idle_timeout": 1})) as client:
        sandbox_id = _run(client, "print('warm')").metadata["sandbox_id"]
        assert fake_e2b.cloud.get(sandbox_id) is not None, "the sandbox was not kept warm"
        assert _wait_for(lambda: sandbox_id in fake_e2b.cloud.killed, 5), "the idle sandbox was never killed"


def test_pool_size_zero_keeps_nothing(fake_e2b: FakeE2BServer, e2b_config: dict[str, Any]) -> None:
    with closing(SandboxClient(provider="e2b", config={**e2b_config, "pool_size": 0})) as client:
        result = _run(client, "print('x')")
        assert result.ok and result.metadata["sandbox_id"] in fake_e2b.cloud.killed


def test_output_is_streamed_and_assembled_in_order(client: SandboxClient) -> None:
    code = (
        "import sys, time\n"
        "for i in range(300):\n"
        "    print(i)\n"
        "    sys.stderr.write(f'e{i}\\n')\n"
        "    if i % 50 == 0:\n"
        "        time.sleep(0.01)\n"
    )
    result = _run(client, code)
    assert result.ok, result
    assert result.stdout == "".join(f"{i}\n" for i in range(300))
    assert result.stderr == "".join(f"e{i}\n" for i in range(300))


def test_png_from_display_and_from_the_output_folder(client: SandboxClient) -> None:
    code = (
        "import base64, os\n"
        f"PNG = base64.b64decode({base64.b64encode(PNG).decode()!r})\n"
        "class Chart:\n"
        "    def _repr_png_(self):\n"
        "        return PNG\n"
        "def main():\n"
        "    display(Chart())\n"
        "    with open(os.path.join(os.environ['SANDBOX_OUTPUT_DIR'], 'saved.png'), 'wb') as f:\n"
        "        f.write(PNG)\n"
        "    return 'drawn'\n"
    )
    result = _run(client, code)
    assert result.status is ExecutionStatus.SUCCESS, result
    assert result.value == "drawn"
    artifacts = {a.name: a for a in result.artifacts}
    assert set(artifacts) == {"saved.png", "result-1.png"}
    for artifact in artifacts.values():
        assert artifact.mime_type == "image/png" and artifact.content == PNG and artifact.size == len(PNG)


def test_rich_results_beyond_the_artifact_budget_are_skipped(client: SandboxClient) -> None:
    code = (
        "class Big:\n"
        "    def _repr_png_(self):\n"
        "        return b'\\x89PNG' + b'0' * (11 << 20)\n"
        "display(Big())\n"
    )
    result = _run(client, code)
    assert result.ok, result
    assert not result.artifacts and result.metadata["skipped_artifacts"] == ["result-1.png"]


def test_javascript_runs_in_its_own_folder_on_a_pooled_sandbox(client: SandboxClient) -> None:
    code = "const fs = require('fs');\nfunction main() {\n  fs.writeFileSync('left.txt', 'x');\n  return process.cwd();\n}\n"
    first = _run(client, code, language="javascript")
    second = _run(client, code, language="javascript")
    assert first.ok and second.ok, (first, second)
    assert first.value != second.value
    assert second.metadata["sandbox_reused"] is True and "context_id" not in second.metadata


def test_shutdown_hook_kills_the_idle_sandboxes(fake_e2b: FakeE2BServer, client: SandboxClient) -> None:
    from sandbox_e2b import provider

    sandbox_id = _run(client, "print('warm')").metadata["sandbox_id"]
    assert fake_e2b.cloud.get(sandbox_id) is not None
    provider.sandbox_shutdown()
    assert sandbox_id in fake_e2b.cloud.killed
    assert _run(client, "print('again')").ok  # a later execution starts a new pool


def test_configs_share_a_pool_only_when_account_endpoint_template_and_pool_settings_agree(
    e2b_config: dict[str, Any],
) -> None:
    from sandbox_e2b.pool import get_pool
    from sandbox_e2b.provider import SCHEMA

    pool = get_pool(SCHEMA.validate(e2b_config))
    assert get_pool(SCHEMA.validate(dict(e2b_config))) is pool
    assert get_pool(SCHEMA.validate({**e2b_config, "languages": ["python"]})) is pool  # not a connection field
    for changed in ({"api_url": "http://127.0.0.1:1"}, {"api_key": "another"}, {"template": "t2"}, {"isolation": "strict"}):
        assert get_pool(SCHEMA.validate({**e2b_config, **changed})) is not pool, changed
