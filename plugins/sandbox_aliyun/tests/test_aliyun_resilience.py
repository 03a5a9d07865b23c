"""What the provider survives on the service side, against the fake AgentRun's admin hooks: a pooled
sandbox deleted behind its back, deletes throttled for a while, and an interpreter reply whose
stdout was re-cut into chunks and lines on its way."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fake_agentrun import FakeAgentRun

from sandbox_aliyun.limits import THROTTLE_ATTEMPTS
from sandbox_aliyun.remote import read_envelope
from sandbox_aliyun.state import PENDING_DELETES
from sandbox_core.client import SandboxClient
from sandbox_core.model import ExecutionStatus

PROVIDER = "aliyun_codeinterpreter"


@pytest.fixture
def client_for(fake_agentrun: FakeAgentRun) -> Iterator[Callable[..., SandboxClient]]:
    clients: list[SandboxClient] = []

    def make(config: dict[str, Any]) -> SandboxClient:
        clients.append(SandboxClient(provider=PROVIDER, config=config))
        return clients[-1]

    yield make
    fake_agentrun.store.deletes_throttled = False
    fake_agentrun.store.reshape_stdout = None
    fake_agentrun.store.reshape_reply.clear()
    for client in clients:
        client.close()
    assert not fake_agentrun.store.live, "a test left sandboxes alive after its clients were closed"


def _wait_until_gone(fake: FakeAgentRun, sandbox_ids: set[str], seconds: float = 90.0) -> set[str]:
    """The sandboxes among ``sandbox_ids`` still alive or awaiting deletion once none is, or ``seconds`` passed."""

    def left() -> set[str]:
        return sandbox_ids & (set(fake.store.live) | set(PENDING_DELETES.pending()))

    deadline = time.monotonic() + seconds
    while left() and time.monotonic() < deadline:
        time.sleep(0.2)
    return left()


# -- a pooled sandbox the service deleted while it was idle -----------------------------------------


def test_a_pooled_sandbox_deleted_behind_the_providers_back_is_replaced_transparently(
    fake_agentrun: FakeAgentRun, client_for: Callable[..., SandboxClient]
) -> None:
    client = client_for(fake_agentrun.config())
    first = client.execute("def main():\n    return 1\n")
    gone = first.metadata["sandbox_id"]
    fake_agentrun.store.delete(gone)  # its lifetime ended, or an operator deleted it in the console

    second = client.execute("def main():\n    return 2\n")

    assert second.ok and second.value == 2, second
    assert second.metadata["sandbox_replaced"] == gone
    assert second.metadata["sandbox_id"] != gone and second.metadata["sandbox_reused"] is False
    assert client.execute("def main():\n    return 3\n").metadata["sandbox_id"] == second.metadata["sandbox_id"]


def test_health_after_the_pooled_sandbox_vanished_is_healthy(
    fake_agentrun: FakeAgentRun, client_for: Callable[..., SandboxClient]
) -> None:
    client = client_for(fake_agentrun.config())
    fake_agentrun.store.delete(client.execute("print('warm')").metadata["sandbox_id"])
    status = client.health()
    assert status.healthy, status.message


def test_a_failure_after_the_code_started_is_never_retried(
    fake_agentrun: FakeAgentRun, client_for: Callable[..., SandboxClient]
) -> None:
    client = client_for(fake_agentrun.config())
    warm = client.execute("print('warm')")
    executions_before = len(fake_agentrun.store.executed_timeouts)
    fake_agentrun.store.fail_next_executes_after_running(1)

    result = client.execute("print('must run once')")

    assert result.status is ExecutionStatus.PROVIDER_ERROR, result
    assert result.error is not None and "HTTP 500" in result.error.message
    assert len(fake_agentrun.store.executed_timeouts) == executions_before + 1, "the code was sent twice"
    assert result.metadata["sandbox_id"] == warm.metadata["sandbox_id"] and "sandbox_replaced" not in result.metadata
    assert warm.metadata["sandbox_id"] in fake_agentrun.store.deleted  # its state is unknown: not reused


def test_throttling_on_a_pooled_sandbox_is_not_retried_on_a_new_one(
    fake_agentrun: FakeAgentRun, client_for: Callable[..., SandboxClient]
) -> None:
    client = client_for(fake_agentrun.config())
    client.execute("print('warm')")
    created_before = len(fake_agentrun.store.created)
    # Every try of the context creation: the account is throttled, a new sandbox would not help.
    fake_agentrun.store.throttle_next(THROTTLE_ATTEMPTS)

    result = client.execute("print(1)")

    assert result.status is ExecutionStatus.PROVIDER_ERROR, result
    assert result.error is not None and "throttling" in result.error.message
    assert len(fake_agentrun.store.created) == created_before and "sandbox_replaced" not in result.metadata


# -- deletes the service throttles ------------------------------------------------------------------


def test_a_sandbox_whose_deletes_were_throttled_is_deleted_later_without_a_new_execution(
    fake_agentrun: FakeAgentRun, client_for: Callable[..., SandboxClient]
) -> None:
    client = client_for(fake_agentrun.config(isolation="strict"))
    fake_agentrun.store.deletes_throttled = True
    try:
        result = client.execute("def main():\n    return 'done'\n")
        assert result.value == "done", result  # a refused delete does not fail the execution
        sandbox_id = result.metadata["sandbox_id"]
        assert sandbox_id in fake_agentrun.store.live
        status = client.health()
        assert sandbox_id in status.details["undeleted_sandboxes"], status
        assert sandbox_id in status.message
        probe_id = status.details["sandbox_id"]
    finally:
        fake_agentrun.store.deletes_throttled = False
    executions = len(fake_agentrun.store.executed_timeouts)

    assert _wait_until_gone(fake_agentrun, {sandbox_id, probe_id}) == set()

    assert len(fake_agentrun.store.executed_timeouts) == executions  # deleted with no execution's help
    assert sandbox_id not in client.health().details["undeleted_sandboxes"]


def test_undeleted_sandboxes_are_retried_at_shutdown(
    fake_agentrun: FakeAgentRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(PENDING_DELETES, "first_delay", 3600.0)  # the background retry would come too late
    client = SandboxClient(provider=PROVIDER, config=fake_agentrun.config(isolation="strict"))
    fake_agentrun.store.deletes_throttled = True
    try:
        sandbox_id = client.execute("print('x')").metadata["sandbox_id"]
    finally:
        fake_agentrun.store.deletes_throttled = False
    assert sandbox_id in fake_agentrun.store.live and sandbox_id in PENDING_DELETES.pending()

    client.close()

    assert sandbox_id not in fake_agentrun.store.live
    assert sandbox_id not in PENDING_DELETES.pending()


# -- the result envelope, whatever happened to the lines on the way ----------------------------------


def _chunks(text: str, seed: int = 7) -> list[str]:
    pieces, rng, index = [], random.Random(seed), 0
    while index < len(text):
        step = rng.randint(1, 9)
        pieces.append(text[index : index + step])
        index += step
    return pieces


RESHAPES: dict[str, Callable[[str], list[str]]] = {
    "split-lines-dropping-ends": lambda text: text.splitlines(),
    "split-lines-keeping-ends": lambda text: text.splitlines(keepends=True),
    "chunked": _chunks,
    "chunked-then-split-into-lines": lambda text: [line for chunk in _chunks(text) for line in chunk.splitlines()],
    "crlf": lambda text: [text.replace("\n", "\r\n")],
    "one-line-per-item-with-newlines-added": lambda text: [line + "\n" for line in text.splitlines()],
}


@pytest.mark.parametrize("reshape", RESHAPES.values(), ids=RESHAPES.keys())
def test_the_result_survives_a_reply_recut_into_chunks_and_lines(
    fake_agentrun: FakeAgentRun, client_for: Callable[..., SandboxClient], reshape: Callable[[str], list[str]]
) -> None:
    client = client_for(fake_agentrun.config())
    fake_agentrun.store.reshape_stdout = reshape
    code = "def main(n):\n    print('line one\\x1eand\\x1cmore')\n    print('two')\n    return {'n': n, 'text': 'a\\x1eb\\r\\nc'}\n"

    result = client.execute(code, arguments={"n": 5})

    assert result.ok, result
    assert result.value == {"n": 5, "text": "a\x1eb\r\nc"}
    assert result.stdout == "line one\x1eand\x1cmore\ntwo\n"


SHAPE_CHANGES: dict[str, tuple[str, Callable[[Any], Any], str]] = {
    "execute-without-results": ("execute", lambda reply: {"output": reply["results"]}, "no 'results' list (its keys: output)"),
    "execute-as-a-list": ("execute", lambda reply: reply["results"], "is a list, not a JSON object"),
    "context-without-id": (
        "create_context",
        lambda reply: {k: v for k, v in reply.items() if k != "id"},
        "has no context 'id' (it held: cwd, language)",
    ),
}


@pytest.mark.parametrize("change", SHAPE_CHANGES.values(), ids=SHAPE_CHANGES.keys())
def test_a_reply_of_another_shape_is_an_error_naming_what_changed(
    fake_agentrun: FakeAgentRun, client_for: Callable[..., SandboxClient], change: tuple[str, Any, str]
) -> None:
    route, reshape, named = change
    client = client_for(fake_agentrun.config(isolation="strict"))
    fake_agentrun.store.reshape_reply[route] = reshape
    try:
        result = client.execute("print(1)")
    finally:
        fake_agentrun.store.reshape_reply.clear()

    assert result.status is ExecutionStatus.PROVIDER_ERROR, result
    assert result.error is not None and named in result.error.message
    assert "reply format may have changed" in result.error.message


def test_a_cut_off_envelope_is_named_as_such() -> None:
    marker = "sandbox-aliyun-envelope-0123"
    reply = {"results": [{"type": "stdout", "text": f"\n{marker}\neyJleGl0X2NvZGUiOiAw"}]}
    with pytest.raises(Exception, match="cut-off result"):
        read_envelope(reply, marker)
