"""Output streaming through the executor and the provider, for real (gVisor): events while the code
runs, the NDJSON route, floods, and clients that leave mid-stream."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from selfmanaged_support import Executor

from sandbox_core import ExecutionResult, OutputEvent
from sandbox_core.client import SandboxClient
from sandbox_selfmanaged.service.events import EventInbox

NDJSON = "application/x-ndjson"
LIMIT = 64 * 1024


@pytest.fixture
def client(executor: Executor) -> Iterator[SandboxClient]:
    sandbox = SandboxClient(
        provider="self_managed", config={"endpoints": [executor.url], "token": executor.token, "max_output_bytes": LIMIT}
    )
    yield sandbox
    sandbox.close()


def lines(response: httpx.Response) -> list[dict[str, Any]]:
    return [json.loads(line) for line in response.text.split("\n") if line]


def metric(executor: Executor, status: str) -> float:
    text = executor.http.get("/metrics").text
    found = re.search(rf'sandbox_executor_executions_total{{language="python",status="{status}"}} (\S+)', text)
    return float(found.group(1)) if found else 0.0


def wait_for(condition: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not within {seconds:g}s: {what}"
        time.sleep(0.1)


def test_events_that_arrive_together_keep_their_order() -> None:
    async def written() -> list[str]:
        inbox = EventInbox()
        for text in ("42", "\n", "7"):
            inbox.post(OutputEvent("stdout", text))
        await asyncio.sleep(0)  # the posts land in the queue before the response looks at it
        await inbox.first()
        inbox.done()
        texts: list[str] = []
        ended = False
        while not ended:
            events, ended = await inbox.batch()
            texts.extend(e.text for e in events)
        return texts

    assert "".join(asyncio.run(written())) == "42\n7"


def test_a_line_printed_a_second_earlier_arrives_a_second_earlier(client: SandboxClient) -> None:
    events: list[OutputEvent] = []
    received: list[float] = []

    def record(event: OutputEvent) -> None:
        received.append(time.time())
        events.append(event)

    code = "import time\nprint('first', flush=True)\ntime.sleep(1)\nprint('second', flush=True)\n"
    result = client.execute(code, on_output=record)
    assert result.ok and result.stdout == "first\nsecond\n", result
    assert [e.text for e in events] == ["first\n", "second\n"]
    assert events[1].at - events[0].at >= 0.8, [e.at for e in events]
    assert received[1] - received[0] >= 0.8, received


def test_the_ndjson_stream_holds_events_then_the_same_result(executor: Executor) -> None:
    code = "import sys\nprint('out', flush=True)\nsys.stderr.write('err\\n')\ndef main():\n    return {'ok': True}\n"
    with executor.http.stream("POST", "/v1/execute", json={"code": code}, headers={"Accept": NDJSON}) as response:
        response.read()
    assert response.status_code == 200 and response.headers["content-type"].startswith(NDJSON)
    *events, last = lines(response)
    assert {e["type"] for e in events} == {"output"} and last["type"] == "result"
    result = last["result"]
    plain = executor.execute(code)
    for field in ("status", "stdout", "stderr", "value", "exit_code", "error", "stdout_truncated", "stderr_truncated"):
        assert result[field] == plain[field], field
    for stream in ("stdout", "stderr"):
        assert "".join(e["text"] for e in events if e["stream"] == stream) == result[stream]


def test_without_the_accept_header_the_answer_is_one_json_document(executor: Executor) -> None:
    response = executor.http.post("/v1/execute", json={"code": "print('hi')"}, headers={"Accept": "application/json"})
    assert response.headers["content-type"] == "application/json"
    assert response.json()["stdout"] == "hi\n"


def test_a_refusal_before_the_code_runs_keeps_its_status(executor: Executor) -> None:
    response = executor.http.post("/v1/execute", json={"code": "print(1)", "runtime": "no-such-runtime"}, headers={"Accept": NDJSON})
    assert response.status_code == 422 and "no-such-runtime" in response.text


def test_a_flood_streams_up_to_the_limit_and_is_flagged(client: SandboxClient, executor: Executor) -> None:
    status = f"/proc/{executor.process.pid}/status"

    def peak() -> int:
        with open(status) as lines:
            return next(int(line.split()[1]) for line in lines if line.startswith("VmHWM:")) * 1024

    before = peak()
    events: list[OutputEvent] = []
    code = "import sys\nchunk = 'z' * 65535 + '\\n'\nfor _ in range(4096):\n    sys.stdout.write(chunk)\n"  # 256 MiB
    result = client.execute(code, timeout=60, on_output=events.append)
    assert result.status.value == "output_limit" and result.stdout_truncated, result.status
    streamed = "".join(e.text for e in events if e.stream == "stdout")
    assert streamed == result.stdout and len(streamed.encode()) <= LIMIT
    assert peak() - before < 64 << 20, "the executor's memory grew with the flood"


def test_a_client_that_leaves_mid_stream_stops_the_code_and_frees_the_sandbox(executor: Executor) -> None:
    cancelled = metric(executor, "cancelled")
    code = "import time\nprint('started', flush=True)\ntime.sleep(60)\nprint('never')\n"
    leaving = httpx.Client(base_url=executor.url, headers=executor.http.headers, timeout=30, trust_env=False)
    with leaving.stream("POST", "/v1/execute", json={"code": code, "timeout": 60}, headers={"Accept": NDJSON}) as response:
        first = json.loads(next(response.iter_lines()))
        assert first == {**first, "type": "output", "stream": "stdout", "text": "started\n"}
    leaving.close()  # mid-stream: the result line never came
    wait_for(lambda: metric(executor, "cancelled") == cancelled + 1, 20, "the execution counted as cancelled")
    wait_for(lambda: executor.health().json()["languages"]["python"]["pool"]["busy"] == 0, 20, "the sandbox released")
    assert executor.health().json()["requests"]["running"] == 0
    assert "client disconnected mid-stream" in executor.log()
    assert executor.execute("print('next')")["stdout"] == "next\n"


def test_stream_yields_events_then_the_result(client: SandboxClient) -> None:
    *events, result = client.stream("for i in range(3):\n    print(i, flush=True)\n")
    assert isinstance(result, ExecutionResult) and result.stdout == "0\n1\n2\n"
    assert "".join(e.text for e in events if isinstance(e, OutputEvent)) == result.stdout
