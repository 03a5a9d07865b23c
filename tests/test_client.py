"""SandboxClient with providers defined in the test: validation, provider failures, threads, asyncio."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from sandbox_core import ExecutionRequest, ExecutionResult, HealthStatus, hookimpl
from sandbox_core.client import SandboxClient
from sandbox_core.errors import (
    ConfigurationError,
    ConfigValidationError,
    FieldProblem,
    ProviderError,
    ProviderNotFoundError,
    ProviderUnavailableError,
)
from sandbox_core.model import ExecutionStatus
from sandbox_core.registry import ProviderRegistry
from sandbox_core.schema import ConfigField, ConfigSchema, Secret

TOKEN = "sk-live-8f3a9c2e7d"


class FakeProvider:
    """A provider whose behaviour is chosen by the code it is asked to run."""

    def __init__(self) -> None:
        self.barrier: threading.Barrier | None = None

    @hookimpl
    def sandbox_config_schema(self) -> ConfigSchema:
        return ConfigSchema(
            [
                ConfigField("greeting", "string", default="hi"),
                ConfigField("count", "integer", default=1, minimum=0),
                ConfigField("token", "secret"),
            ]
        )

    @hookimpl
    def sandbox_validate_config(self, config: Mapping[str, Any]) -> Sequence[FieldProblem]:
        if config["greeting"] == "forbidden":
            return [FieldProblem("greeting", "that greeting is not allowed")]
        return []

    @hookimpl
    def sandbox_execute(self, request: ExecutionRequest, config: Mapping[str, Any], provider_name: str) -> Any:
        token = config["token"].reveal() if config.get("token") else ""
        if request.code == "crash":
            raise RuntimeError(f"backend refused credentials {token}")
        if request.code == "unavailable":
            raise ProviderUnavailableError(f"no executor answered for token={token}")
        if request.code == "misconfigured":
            raise ConfigurationError("the backend wants another setting")
        if request.code == "nothing":
            return None
        if request.code == "dict":
            return {"status": "success"}
        if request.code == "barrier":
            assert self.barrier is not None
            self.barrier.wait(timeout=10)
        if request.code == "jitter":
            time.sleep(random.random() / 100)
        return ExecutionResult(
            status="success",
            stdout=f"{config['greeting']}\n",
            value={"arguments": dict(request.arguments), "secret_is_wrapped": isinstance(config.get("token"), Secret)},
            exit_code=0,
        )

    @hookimpl
    def sandbox_health(self, config: Mapping[str, Any]) -> HealthStatus:
        if config["greeting"] == "sick":
            raise OSError(f"cannot reach backend with {config['token'].reveal()}")
        return HealthStatus(healthy=True, message="fine")


class NoHealthProvider:
    @hookimpl
    def sandbox_config_schema(self) -> ConfigSchema:
        return ConfigSchema([])

    @hookimpl
    def sandbox_execute(self, request: ExecutionRequest) -> ExecutionResult:
        return ExecutionResult(status="success", exit_code=0)


@pytest.fixture
def registry() -> ProviderRegistry:
    registry = ProviderRegistry(discover=False)
    registry.register("fake", FakeProvider())
    registry.register("no_health", NoHealthProvider())
    return registry


def make(registry: ProviderRegistry, config: Mapping[str, Any] | None = None, provider: str = "fake") -> SandboxClient:
    return SandboxClient(provider=provider, config={"token": TOKEN} if config is None else config, registry=registry)


def test_an_explicit_provider_and_config(registry: ProviderRegistry) -> None:
    client = make(registry, {"greeting": "hello", "token": TOKEN})
    result = client.execute("print()", arguments={"x": [1, None]})
    assert result.status is ExecutionStatus.SUCCESS
    assert result.stdout == "hello\n"
    assert result.value == {"arguments": {"x": [1, None]}, "secret_is_wrapped": True}
    assert result.provider == "fake"  # filled in by the client when the provider leaves it empty
    assert result.execution_time > 0
    assert client.provider == "fake"
    assert client.settings is None  # an explicit provider and config need no settings store


def test_config_errors_name_the_fields(registry: ProviderRegistry) -> None:
    client = make(registry, {"count": "-1", "colour": "red"})
    with pytest.raises(ConfigValidationError) as caught:
        client.execute("print()")
    assert set(caught.value.fields) == {"count", "colour"}
    assert caught.value.provider == "fake"


def test_the_providers_own_checks_name_the_field(registry: ProviderRegistry) -> None:
    with pytest.raises(ConfigValidationError) as caught:
        make(registry, {"greeting": "forbidden"}).execute("print()")
    assert caught.value.fields == ("greeting",)
    assert "not allowed" in str(caught.value)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"language": "cobol"}, "language"), ({"timeout": 0}, "timeout"), ({"arguments": {"not valid": 1}}, "arguments")],
)
def test_bad_requests_name_the_field(registry: ProviderRegistry, kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}:"):
        make(registry).execute("print()", **kwargs)


def test_an_unknown_provider_lists_the_installed_ones(registry: ProviderRegistry) -> None:
    with pytest.raises(ProviderNotFoundError, match=r"choose one of: fake, no_health; is the package"):
        make(registry, {}, provider="nope").execute("print()")


@pytest.mark.parametrize(("code", "clue"), [("crash", "RuntimeError"), ("unavailable", "no executor answered")])
def test_a_provider_failure_is_a_provider_error_result_without_the_secret(
    registry: ProviderRegistry, code: str, clue: str
) -> None:
    result = make(registry).execute(code)
    assert result.status is ExecutionStatus.PROVIDER_ERROR
    assert result.provider == "fake"
    assert result.error is not None and clue in result.error.message
    assert TOKEN not in result.error.message and "********" in result.error.message
    assert TOKEN not in repr(result) and TOKEN not in str(result.to_dict())
    kind = "internal" if code == "crash" else "unavailable"
    assert result.metadata["failure"] == {"kind": kind, "retry_after": None}


def test_a_provider_bug_is_logged_and_kept_with_its_traceback_without_the_secret(
    registry: ProviderRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("DEBUG"):
        result = make(registry).execute("crash")
    trace = result.metadata["traceback"]
    assert "Traceback (most recent call last)" in trace and "in sandbox_execute" in trace
    assert 'raise RuntimeError(f"backend refused credentials {token}")' in trace
    assert trace.rstrip().endswith("RuntimeError: backend refused credentials ********")
    errors = [r for r in caplog.records if r.levelname == "ERROR" and r.name == "sandbox_core.client"]
    assert len(errors) == 1 and "in sandbox_execute" in errors[0].getMessage()
    assert "provider 'fake' failed: RuntimeError" in errors[0].getMessage()
    assert TOKEN not in caplog.text and TOKEN not in trace
    assert result.metadata["failure"] == {"kind": "internal", "retry_after": None}


@pytest.mark.parametrize("code", ["nothing", "dict"])
def test_a_provider_returning_no_result_is_a_provider_error(registry: ProviderRegistry, code: str) -> None:
    result = make(registry).execute(code)
    assert result.status is ExecutionStatus.PROVIDER_ERROR
    got = "None" if code == "nothing" else "a dict"
    assert result.error.message == f"provider 'fake' returned {got} from sandbox_execute, expected ExecutionResult"


def test_a_configuration_error_from_the_provider_is_raised(registry: ProviderRegistry) -> None:
    with pytest.raises(ConfigurationError, match="another setting"):
        make(registry).execute("misconfigured")


def test_many_threads_through_one_client(registry: ProviderRegistry) -> None:
    client = make(registry)

    def one(i: int) -> Any:
        return client.execute("jitter", arguments={"i": i}).value["arguments"]["i"]

    with ThreadPoolExecutor(max_workers=32) as pool:
        assert list(pool.map(one, range(200))) == list(range(200))


def test_executions_really_run_concurrently(registry: ProviderRegistry) -> None:
    """Threads are not serialized by the client: 8 executions meet inside the provider at once."""
    provider = registry.load("fake")
    provider.barrier = threading.Barrier(8)
    client = make(registry)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: client.execute("barrier"), range(8)))
    assert all(r.status is ExecutionStatus.SUCCESS for r in results), results


def test_aexecute_from_asyncio(registry: ProviderRegistry) -> None:
    provider = registry.load("fake")
    provider.barrier = threading.Barrier(4)
    client = make(registry)

    async def main() -> list[ExecutionResult]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        task = asyncio.create_task(ticker())
        results = await asyncio.gather(*(client.aexecute("barrier", arguments={"i": i}) for i in range(4)))
        task.cancel()
        assert ticks > 0  # the loop kept running while the executions waited for each other
        return list(results)

    results = asyncio.run(main())
    assert [r.value["arguments"]["i"] for r in results] == [0, 1, 2, 3]


def test_health(registry: ProviderRegistry) -> None:
    assert make(registry).health() == HealthStatus(healthy=True, message="fine")
    sick = make(registry, {"greeting": "sick", "token": TOKEN}).health()
    assert not sick.healthy and "OSError" in sick.message and TOKEN not in sick.message
    missing = make(registry, {}, provider="no_health").health()
    assert not missing.healthy and "no health check" in missing.message


def test_the_config_schema_must_be_a_config_schema() -> None:
    class Sloppy:
        @hookimpl
        def sandbox_config_schema(self) -> Any:
            return {"fields": []}

        @hookimpl
        def sandbox_execute(self) -> None:
            return None

    registry = ProviderRegistry(discover=False)
    registry.register("sloppy", Sloppy())
    with pytest.raises(ProviderError, match="returned a dict from sandbox_config_schema, expected ConfigSchema"):
        make(registry, {}, provider="sloppy").execute("x")


def test_the_lazy_top_level_api() -> None:
    import sandbox_core

    assert sandbox_core.SandboxClient is SandboxClient
    with pytest.raises(AttributeError):
        sandbox_core.no_such_name  # noqa: B018


class TwoKeyProvider:
    """Two secrets, the first a prefix of the second, and a backend that quotes whatever it was given."""

    @hookimpl
    def sandbox_config_schema(self) -> ConfigSchema:
        return ConfigSchema([ConfigField("key", "secret"), ConfigField("admin_key", "secret")])

    @hookimpl
    def sandbox_validate_config(self, config: Mapping[str, Any]) -> Sequence[FieldProblem]:
        key = config["key"].reveal()
        return [FieldProblem("key", f"{key!r} is not a key")] if len(key) < 4 else []

    @hookimpl
    def sandbox_execute(self, request: ExecutionRequest, config: Mapping[str, Any]) -> ExecutionResult:
        raise RuntimeError(f"refused {config['admin_key'].reveal()} and {config['key'].reveal()}")


def test_a_secret_that_is_a_prefix_of_another_leaves_no_tail_visible() -> None:
    registry = ProviderRegistry(discover=False)
    registry.register("two", TwoKeyProvider())
    client = SandboxClient(provider="two", config={"key": "sk-live", "admin_key": "sk-live-ADMIN-tail"}, registry=registry)
    result = client.execute("x")
    assert result.error is not None and result.error.message.endswith("refused ******** and ********"), result.error.message
    assert "tail" not in result.metadata["traceback"]


def test_a_short_secret_quoted_by_the_providers_checks_is_masked() -> None:
    registry = ProviderRegistry(discover=False)
    registry.register("two", TwoKeyProvider())
    client = SandboxClient(provider="two", config={"key": "k3y", "admin_key": "long-admin-key"}, registry=registry)
    with pytest.raises(ConfigValidationError) as caught:
        client.execute("x")
    assert "k3y" not in str(caught.value) and "'********' is not a key" in str(caught.value)
