"""The settings-driven client: live reconfiguration across processes, cost per execution, audit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import peewee
import pytest

from sandbox_core import ExecutionRequest, ExecutionResult, execute_code, hookimpl
from sandbox_core.client import SandboxClient
from sandbox_core.errors import ConfigValidationError, NoProviderSelectedError
from sandbox_core.model import ExecutionStatus
from sandbox_core.registry import ProviderRegistry
from sandbox_core.schema import ConfigField, ConfigSchema
from sandbox_core.settings import SettingsStore

TOKEN = "tok-audit-51ab7e"


class EchoProvider:
    @hookimpl
    def sandbox_config_schema(self) -> ConfigSchema:
        return ConfigSchema([ConfigField("greeting", "string", default="hi"), ConfigField("token", "secret")])

    @hookimpl
    def sandbox_execute(self, request: ExecutionRequest, config: Mapping[str, Any], provider_name: str) -> ExecutionResult:
        if request.code == "crash":
            raise RuntimeError("backend down")
        return ExecutionResult(
            status="success",
            stdout=f"{config['greeting']} OUTPUT-MARK-{request.arguments.get('n')}\n",
            value=dict(request.arguments),
            exit_code=0,
            provider=provider_name,
        )


@pytest.fixture
def registry() -> ProviderRegistry:
    registry = ProviderRegistry(discover=False)
    registry.register("echo", EchoProvider())
    registry.register("other", EchoProvider())
    return registry


@pytest.fixture
def store(sandbox_settings: SettingsStore) -> SettingsStore:
    sandbox_settings.save_provider_config("echo", {"greeting": "v1", "token": TOKEN}, activate=True)
    return sandbox_settings


@pytest.fixture
def client(store: SettingsStore, registry: ProviderRegistry) -> Iterator[Callable[..., SandboxClient]]:
    made: list[SandboxClient] = []

    def make(refresh_interval: float) -> SandboxClient:
        settings = SettingsStore(os.environ["SANDBOX_DATABASE_URL"])
        made.append(SandboxClient(settings=settings, registry=registry, refresh_interval=refresh_interval))
        return made[-1]

    yield make
    for one in made:
        one.close()


def in_another_process(code: str) -> None:
    program = (
        "import os, sys\n"
        "from sandbox_core.settings import SettingsStore\n"
        "store = SettingsStore(os.environ['SANDBOX_DATABASE_URL'])\n" + code + "\nstore.close()\n"
    )
    subprocess.run([sys.executable, "-c", program], check=True, timeout=60, env=os.environ.copy())


def greeting(client: SandboxClient) -> str:
    return client.execute("x").stdout.split()[0]


def test_a_config_saved_by_another_process_is_picked_up_without_a_restart(client: Callable[..., SandboxClient]) -> None:
    interval = 1.0
    live = client(interval)
    started = time.monotonic()
    assert greeting(live) == "v1"
    in_another_process("store.save_provider_config('echo', {'greeting': 'v2'})")
    if time.monotonic() - started < interval * 0.8:
        assert greeting(live) == "v1"  # the snapshot is trusted until the interval has passed
    time.sleep(max(0.0, started + interval + 0.1 - time.monotonic()))
    assert greeting(live) == "v2"
    in_another_process("store.save_provider_config('other', {'greeting': 'v3'}, activate=True)")
    time.sleep(interval + 0.1)
    result = live.execute("x")
    assert (result.provider, result.stdout.split()[0]) == ("other", "v3")
    assert live.provider == "other"


def test_with_a_long_refresh_interval_executions_cost_no_database_query(
    client: Callable[..., SandboxClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    queries: list[str] = []
    original = peewee.Database.execute_sql

    def counting(self: peewee.Database, sql: str, *args: Any, **kwargs: Any) -> Any:
        queries.append(sql)
        return original(self, sql, *args, **kwargs)

    monkeypatch.setattr(peewee.Database, "execute_sql", counting)
    live = client(3600)
    versions = count_calls(monkeypatch, live.settings, "version")
    assert greeting(live) == "v1"
    assert queries and versions == [1]  # the first execution reads the settings
    queries.clear()
    for n in range(50):
        assert live.execute("x", arguments={"n": n}).value == {"n": n}
    assert queries == []
    assert versions == [1]


def test_with_a_short_refresh_interval_only_the_version_is_read(
    client: Callable[..., SandboxClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    live = client(0)
    assert greeting(live) == "v1"
    versions = count_calls(monkeypatch, live.settings, "version")
    configs = count_calls(monkeypatch, live.settings, "provider_config")
    for _ in range(20):
        live.execute("x")
    assert versions == [20] and configs == [0]


def count_calls(monkeypatch: pytest.MonkeyPatch, target: Any, name: str) -> list[int]:
    counter = [0]
    original = getattr(target, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        counter[0] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(target, name, wrapper)
    return counter


def test_threads_execute_while_the_config_changes(client: Callable[..., SandboxClient], store: SettingsStore) -> None:
    live = client(0)
    errors: list[BaseException] = []
    seen: set[str] = set()
    stop = threading.Event()

    def work() -> None:
        try:
            while not stop.is_set():
                result = live.execute("x")
                assert result.status is ExecutionStatus.SUCCESS, result
                seen.add(result.stdout.split()[0])
        except BaseException as exc:  # reported below
            errors.append(exc)
            stop.set()

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for n in range(10):
        store.save_provider_config("echo", {"greeting": f"g{n}"})
        time.sleep(0.02)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors[0]
    assert "g9" in seen or greeting(live) == "g9"


def test_no_provider_selected_says_how_to_select_one(client: Callable[..., SandboxClient], store: SettingsStore) -> None:
    store.set("sandbox.provider_type", "")
    with pytest.raises(NoProviderSelectedError) as caught:
        client(0).execute("x")
    assert "sandbox config use" in str(caught.value)
    assert "echo" in str(caught.value) and "other" in str(caught.value)


def test_execute_code_uses_the_settings_database(
    store: SettingsStore, register_provider: Callable[[str, object], object]
) -> None:
    register_provider("echo", EchoProvider())
    store.set("sandbox.provider_type", "")
    with pytest.raises(NoProviderSelectedError, match="sandbox config use"):
        execute_code("x")
    store.set_active_provider("echo")
    result = execute_code("x", arguments={"n": 1})
    assert (result.provider, result.stdout) == ("echo", "v1 OUTPUT-MARK-1\n")


def test_a_stored_config_is_validated(client: Callable[..., SandboxClient], store: SettingsStore) -> None:
    store.save_provider_config("echo", {"greeting": 5, "colour": "red"})
    with pytest.raises(ConfigValidationError) as caught:
        client(0).execute("x")
    assert set(caught.value.fields) == {"greeting", "colour"}


def test_the_audit_log_records_each_execution_and_nothing_sensitive(
    client: Callable[..., SandboxClient], store: SettingsStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    audit_file = tmp_path / "audit.jsonl"
    store.set_json("sandbox.audit", {"enabled": True, "path": str(audit_file)})
    live = client(0)
    caplog.set_level("INFO", logger="sandbox_core.audit")
    code = "print('CODE-MARK-77')"
    for n in range(3):
        assert live.execute(code, arguments={"n": n, "secret_arg": "ARG-MARK-99"}, requested_by=f"agent-{n}").ok
    assert live.execute("crash", requested_by="agent-crash").status is ExecutionStatus.PROVIDER_ERROR
    text = audit_file.read_text(encoding="utf-8")
    lines = [json.loads(line) for line in text.splitlines()]
    assert [line["actor"] for line in lines] == ["agent-0", "agent-1", "agent-2", "agent-crash"]
    assert [line["status"] for line in lines] == ["success"] * 3 + ["provider_error"]
    for line in lines:
        assert line["provider"] == "echo" and line["event"] == "execute" and line["language"] == "python"
        assert isinstance(line["duration"], float) and line["duration"] >= 0
        assert line["time"].endswith("+00:00")
    assert lines[0]["argument_count"] == 2 and lines[0]["code_bytes"] == len(code)
    audit_records = "\n".join(r.getMessage() for r in caplog.records if r.name == "sandbox_core.audit")
    for leaked in ("CODE-MARK", "ARG-MARK", "OUTPUT-MARK", "secret_arg", TOKEN, "v1", "backend down"):
        assert leaked not in text
        assert leaked not in audit_records
        # The provider's exception is logged (at ERROR, by the client) for its operator; nothing else is.
        assert leaked not in caplog.text or leaked == "backend down"
    assert len([r for r in caplog.records if r.name == "sandbox_core.audit"]) == 4
    # Switched off in the settings: the live client stops writing.
    store.set_json("sandbox.audit", {"enabled": False, "path": str(audit_file)})
    live.execute("x")
    assert len(audit_file.read_text(encoding="utf-8").splitlines()) == 4
