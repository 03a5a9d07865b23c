"""The session API of SandboxClient, against the local provider: capability errors, files, audit, policy, async."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from core_support import MinimalProvider

from sandbox_core.audit import AuditLog
from sandbox_core.client import SandboxClient
from sandbox_core.errors import NotSupportedError, SessionGoneError
from sandbox_core.model import ExecutionStatus
from sandbox_core.policy import CodePolicy, CodePolicyError
from sandbox_core.registry import ProviderRegistry
from sandbox_core.testing import UnsandboxedSubprocessProvider


@pytest.fixture
def local() -> UnsandboxedSubprocessProvider:
    return UnsandboxedSubprocessProvider()


@pytest.fixture
def client(local: UnsandboxedSubprocessProvider) -> Iterator[SandboxClient]:
    registry = ProviderRegistry(discover=False)
    registry.register("local", local)
    registry.register("plain", MinimalProvider())
    client = SandboxClient(provider="local", config={}, registry=registry)
    yield client
    client.close()


def test_provider_without_sessions_says_so(client: SandboxClient) -> None:
    plain = SandboxClient(provider="plain", config={}, registry=client.registry)
    with pytest.raises(NotSupportedError, match="not supported by provider 'plain': sessions"):
        plain.session()
    with pytest.raises(NotSupportedError, match="not supported by provider 'plain': input files"):
        plain.execute("pass", files={"a.txt": b"x"})
    with pytest.raises(NotSupportedError, match="sessions"):
        client.attach_session("plain:abc")


def test_one_shot_files_reach_the_working_folder(client: SandboxClient) -> None:
    result = client.execute("def main():\n    return open('in/data.csv').read()\n", files={"in/data.csv": b"a,b\n"})
    assert result.value == "a,b\n", result


def test_attach_refuses_malformed_ids(client: SandboxClient) -> None:
    for bad in ("no-colon", ":handle", "local:"):
        with pytest.raises(ValueError, match="^session_id: "):
            client.attach_session(bad)


def test_client_close_ends_its_sessions(local: UnsandboxedSubprocessProvider) -> None:
    registry = ProviderRegistry(discover=False)
    registry.register("local", local)
    client = SandboxClient(provider="local", config={}, registry=registry)
    session = client.session()
    session.execute("x = 1\n")
    assert local.sessions.count() == 1
    client.close()
    assert local.sessions.count() == 0
    with pytest.raises(SessionGoneError):
        session.execute("x\n")


def test_idle_sessions_expire_on_the_backend(client: SandboxClient, local: UnsandboxedSubprocessProvider) -> None:
    session = client.session(idle_timeout=0.5)
    session.execute("x = 1\n")
    for _ in range(100):
        if local.sessions.count() == 0:
            break
        time.sleep(0.05)
    assert local.sessions.count() == 0
    with pytest.raises(SessionGoneError):
        session.execute("x\n")


def test_audit_and_policy_see_session_executions(client: SandboxClient, tmp_path: Path) -> None:
    audit = AuditLog(path=str(tmp_path / "audit.log"))
    client.registry.add_plugin(audit, "audit-test")
    client.registry.add_plugin(CodePolicy("ragflow"), "policy-test")
    with client.session() as session:
        assert session.execute("x = 1\n").status is ExecutionStatus.SUCCESS
        with pytest.raises(CodePolicyError, match="import os"):
            session.execute("import os\n")
    records = [json.loads(line) for line in (tmp_path / "audit.log").read_text().splitlines()]
    assert [r["event"] for r in records] == ["session_execute"]
    assert records[0]["session"] == session.handle and "x = 1" not in json.dumps(records)


def test_async_session(client: SandboxClient) -> None:
    async def scenario() -> list[object]:
        async with client.asession() as session:
            await session.execute("total = 2\n")
            await session.upload("f.txt", b"ab")
            result = await session.execute("def main():\n    return total + len(open('f.txt').read())\n")
            files = await session.list_files()
            return [result.value, [f.path for f in files], await session.download("f.txt")]

    assert asyncio.run(scenario()) == [4, ["f.txt"], b"ab"]


def test_awaited_asession_and_bad_paths(client: SandboxClient) -> None:
    async def scenario() -> None:
        session = await client.asession()
        try:
            with pytest.raises(ValueError, match="^path: "):
                await session.upload("../escape", b"")
            with pytest.raises(ValueError, match="^path: "):
                await session.download("/etc/passwd")
        finally:
            await session.close()

    asyncio.run(scenario())


def test_input_file_limits_come_from_the_providers_config(local: UnsandboxedSubprocessProvider) -> None:
    registry = ProviderRegistry(discover=False)
    registry.register("local", local)
    limited = SandboxClient(provider="local", config={"max_input_file_bytes": 8, "max_input_bytes": 12}, registry=registry)
    try:
        with pytest.raises(ValueError, match=r"files: 'big.txt' has 9 bytes, more than max_input_file_bytes \(8\)"):
            limited.execute("pass", files={"big.txt": b"x" * 9})
        with pytest.raises(ValueError, match=r"files: 14 bytes in all, more than max_input_bytes \(12\)"):
            limited.execute("pass", files={"a.txt": b"x" * 7, "b.txt": b"y" * 7})
        assert limited.execute("def main():\n    return open('a.txt').read()\n", files={"a.txt": b"fits"}).value == "fits"
        with limited.session() as session:
            with pytest.raises(ValueError, match="max_input_file_bytes"):
                session.upload("big.txt", b"x" * 9)
            with pytest.raises(ValueError, match="max_input_file_bytes"):
                session.execute("pass", files={"big.txt": b"x" * 9})
            session.upload("small.txt", b"ok")
            assert session.download("small.txt") == b"ok"
    finally:
        limited.close()
