"""Output events through the core: the fallback for providers that do not stream, relaying and
completing the events of those that do, and a callback that raises."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pytest

from sandbox_core import ExecutionRequest, ExecutionResult, ProviderInfo, hookimpl
from sandbox_core.client import SandboxClient
from sandbox_core.registry import ProviderRegistry
from sandbox_core.schema import ConfigSchema
from sandbox_core.streaming import OutputCallback, OutputEvent


class Plain:
    """Does not stream, yet names ``on_output``: it must get None (the core emits the output)."""

    def __init__(self) -> None:
        self.given: list[Any] = []

    @hookimpl
    def sandbox_config_schema(self) -> ConfigSchema:
        return ConfigSchema([])

    @hookimpl
    def sandbox_execute(self, request: ExecutionRequest, on_output: OutputCallback | None) -> ExecutionResult:
        self.given.append(on_output)
        return ExecutionResult(status="success", stdout="one\ntwo\n", stderr="warn\n", exit_code=0)


class Legacy:
    """Written before streaming existed: never names ``on_output``."""

    @hookimpl
    def sandbox_config_schema(self) -> ConfigSchema:
        return ConfigSchema([])

    @hookimpl
    def sandbox_execute(self, request: ExecutionRequest) -> ExecutionResult:
        return ExecutionResult(status="success", stdout="legacy\n", exit_code=0)


class Streamer:
    """Streams its output in pieces; ``code`` says how many of them it leaves out of the stream."""

    @hookimpl
    def sandbox_provider_info(self) -> ProviderInfo:
        return ProviderInfo(description="streams", streaming=True)

    @hookimpl
    def sandbox_config_schema(self) -> ConfigSchema:
        return ConfigSchema([])

    @hookimpl
    def sandbox_execute(self, request: ExecutionRequest, on_output: OutputCallback | None) -> ExecutionResult:
        pieces = ["a\n", "b\n", "c\n"]
        withheld = int(request.code or "0")
        assert on_output is not None
        for piece in pieces[: len(pieces) - withheld]:
            on_output(OutputEvent("stdout", piece))
        on_output(OutputEvent("stderr", "e\n"))
        return ExecutionResult(status="success", stdout="".join(pieces), stderr="e\n", exit_code=0)


@pytest.fixture
def registry() -> ProviderRegistry:
    registry = ProviderRegistry(discover=False)
    registry.register("plain", Plain())
    registry.register("legacy", Legacy())
    registry.register("streamer", Streamer())
    return registry


def client(registry: ProviderRegistry, provider: str) -> SandboxClient:
    return SandboxClient(provider=provider, config={}, registry=registry)


def joined(events: list[OutputEvent], stream: str) -> str:
    return "".join(e.text for e in events if e.stream == stream)


def test_a_provider_that_does_not_stream_gets_none_and_its_output_comes_as_events_after(registry: ProviderRegistry) -> None:
    events: list[OutputEvent] = []
    result = client(registry, "plain").execute("x", on_output=events.append)
    plain = registry.load("plain")
    assert isinstance(plain, Plain) and plain.given == [None]
    assert joined(events, "stdout") == result.stdout == "one\ntwo\n"
    assert joined(events, "stderr") == result.stderr == "warn\n"


def test_a_provider_written_before_streaming_still_works(registry: ProviderRegistry) -> None:
    events: list[OutputEvent] = []
    result = client(registry, "legacy").execute("x", on_output=events.append)
    assert result.ok and [(e.stream, e.text) for e in events] == [("stdout", "legacy\n")]


def test_without_a_callback_nothing_changes(registry: ProviderRegistry) -> None:
    plain = registry.load("plain")
    assert client(registry, "plain").execute("x").stdout == "one\ntwo\n"
    assert isinstance(plain, Plain) and plain.given == [None]


def test_a_streaming_providers_events_are_relayed_in_order(registry: ProviderRegistry) -> None:
    events: list[OutputEvent] = []
    client(registry, "streamer").execute("0", on_output=events.append)
    assert [e.text for e in events if e.stream == "stdout"] == ["a\n", "b\n", "c\n"]
    assert joined(events, "stderr") == "e\n"


def test_what_a_streaming_provider_left_out_is_completed_from_the_result(registry: ProviderRegistry) -> None:
    events: list[OutputEvent] = []
    result = client(registry, "streamer").execute("2", on_output=events.append)
    assert [e.text for e in events if e.stream == "stdout"] == ["a\n", "b\nc\n"]
    assert joined(events, "stdout") == result.stdout


def test_a_callback_that_raises_is_dropped_and_the_result_is_intact(
    registry: ProviderRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[OutputEvent] = []

    def fragile(event: OutputEvent) -> None:
        calls.append(event)
        raise RuntimeError("the display went away")

    with caplog.at_level(logging.WARNING, logger="sandbox_core.streaming"):
        result = client(registry, "streamer").execute("0", on_output=fragile)
    assert result.ok and result.stdout == "a\nb\nc\n"
    assert len(calls) == 1
    assert "on_output callback raised" in caplog.text


def test_events_are_checked_and_have_a_json_form() -> None:
    with pytest.raises(ValueError, match="stream"):
        OutputEvent("stdin", "x")
    event = OutputEvent("stderr", "oops\n", at=12.5)
    data: Mapping[str, Any] = event.to_dict()
    assert data == {"type": "output", "stream": "stderr", "text": "oops\n", "at": 12.5}
    assert OutputEvent.from_dict(data) == event
