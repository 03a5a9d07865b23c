"""The session runner's failure rules, through the local provider: a dying interpreter, floods, forged reports."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox_core.client import SandboxClient
from sandbox_core.errors import SessionGoneError
from sandbox_core.model import ExecutionRequest, ExecutionResult, ExecutionStatus
from sandbox_core.registry import ProviderRegistry
from sandbox_core.runner.protocol import new_marker
from sandbox_core.runner.session_channel import SessionChannel, encode_message, session_runner_path
from sandbox_core.sessions import Session
from sandbox_core.streaming import OutputEvent
from sandbox_core.testing import UnsandboxedSubprocessProvider


@pytest.fixture
def session() -> Iterator[Session]:
    registry = ProviderRegistry(discover=False)
    registry.register("local", UnsandboxedSubprocessProvider())
    client = SandboxClient(provider="local", config={"max_output_bytes": 4096}, registry=registry)
    with client.session() as opened:
        yield opened
    client.close()


def test_an_interpreter_that_exits_is_replaced(session: Session) -> None:
    session.execute("kept = 1\n")
    session.upload("file.txt", b"stays")
    result = session.execute("import os\nos._exit(3)\n")
    assert (result.status, result.exit_code) == (ExecutionStatus.ERROR, 3), result
    assert result.error is not None and result.error.type == "InterpreterExited"
    assert result.metadata["session_restarted"] is True
    assert session.execute("print('kept' in globals(), open('file.txt').read())\n").stdout == "False stays\n"


def test_sys_exit_does_not_end_the_interpreter(session: Session) -> None:
    session.execute("kept = 1\n")
    result = session.execute("import sys\nsys.exit(4)\n")
    assert (result.status, result.exit_code, result.metadata["session_restarted"]) == (ExecutionStatus.ERROR, 4, False)
    assert session.execute("print(kept)\n").stdout == "1\n"


def test_a_flood_ends_the_session(session: Session) -> None:
    result = session.execute("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n")
    assert result.status is ExecutionStatus.OUTPUT_LIMIT and result.stdout_truncated, result
    assert "more than 16384 bytes of output" in result.metadata["session_ended"]
    with pytest.raises(SessionGoneError):
        session.execute("1\n")


def test_garbage_in_the_report_pipe_restarts_the_interpreter(session: Session) -> None:
    # The code finds the pipe the interpreter reports on and writes something that is not a report.
    code = (
        "import os\n"
        "for fd in range(3, 64):\n"
        "    try:\n"
        "        if os.stat(fd).st_mode & 0o170000 == 0o010000:\n"
        "            os.write(fd, b'not a report\\n')\n"
        "    except OSError:\n"
        "        pass\n"
    )
    result = session.execute(code)
    assert result.status is ExecutionStatus.ERROR and result.metadata["session_restarted"] is True, result
    assert session.execute("print('alive')\n").stdout == "alive\n"


def test_main_of_an_earlier_execution_is_not_called_again(session: Session) -> None:
    assert session.execute("def main():\n    return 'first'\n").value == "first"
    later = session.execute("x = 2\n")
    assert later.value is None and later.metadata["has_main"] is False


def test_output_streams_while_the_code_runs_and_stops_at_the_limit(session: Session) -> None:
    events: list[OutputEvent] = []
    result = session.execute("import time\nprint('first', flush=True)\ntime.sleep(1)\nprint('second', flush=True)\n",
                             on_output=events.append)
    assert "".join(e.text for e in events) == result.stdout == "first\nsecond\n", (events, result)
    second = next(e for e in events if "second" in e.text)
    assert second.at - events[0].at >= 0.8, events
    events.clear()
    flooded = session.execute("import sys\nsys.stdout.write('é' * 5000)\nsys.stdout.flush()\n", on_output=events.append)
    assert flooded.stdout_truncated and "".join(e.text for e in events) == flooded.stdout, flooded


def test_a_cancelled_execution_stops_at_once_and_replaces_the_interpreter(tmp_path: Path) -> None:
    process = subprocess.Popen([sys.executable, str(session_runner_path())], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, cwd=tmp_path, start_new_session=True)
    assert process.stdin is not None and process.stdout is not None and process.stderr is not None
    fds = [os.dup(stream.fileno()) for stream in (process.stdin, process.stdout, process.stderr)]
    channel = SessionChannel(*fds, kill=process.kill, provider="local")
    stop_r, stop_w = os.pipe()
    try:
        channel.execute(ExecutionRequest(code="kept = 1\n"), output_dir=str(tmp_path / "out"))
        result, ended = channel.execute(
            ExecutionRequest(code="import time\nprint('started', flush=True)\ntime.sleep(60)\n", timeout=60),
            output_dir=str(tmp_path / "out"),
            on_output=lambda event: "\n" in event.text and os.write(stop_w, b"!"),  # the caller leaves once it printed
            cancel_fd=stop_r,
        )
        assert not ended and result.metadata["cancelled"] is True and result.metadata["session_restarted"] is True, result
        assert result.stdout == "started\n" and result.error is not None and result.error.type == "ExecutionCancelled"
        after, _ = channel.execute(ExecutionRequest(code="print('kept' in globals())\n"), output_dir=str(tmp_path / "out"))
        assert after.stdout == "False\n", after
        channel._send_cancel(new_marker())  # one that reaches the runner just after its job ended
        late, _ = channel.execute(ExecutionRequest(code="print('clean')\n"), output_dir=str(tmp_path / "out"))
        assert late.stdout == "clean\n", late
    finally:
        channel.end("the test is over")
        for fd in (stop_r, stop_w):
            os.close(fd)
        process.wait(10)
        for stream in (process.stdin, process.stdout, process.stderr):
            stream.close()


def test_async_session_stream_yields_events_then_the_result() -> None:
    registry = ProviderRegistry(discover=False)
    registry.register("local", UnsandboxedSubprocessProvider())
    client = SandboxClient(provider="local", config={}, registry=registry)

    async def collect() -> list[OutputEvent | ExecutionResult]:
        async with client.asession() as session:
            await session.execute("kept = 'state'\n")
            return [item async for item in session.astream("import sys\nprint(kept, flush=True)\nsys.stderr.write('e\\n')\n")]

    try:
        *events, result = asyncio.run(collect())
    finally:
        client.close()
    assert isinstance(result, ExecutionResult) and result.stdout == "state\n" and result.stderr == "e\n", result
    for stream in ("stdout", "stderr"):
        assert "".join(e.text for e in events if isinstance(e, OutputEvent) and e.stream == stream) == getattr(result, stream)


def test_the_end_of_stdin_during_a_job_ends_the_runner_and_its_interpreter(tmp_path: Path) -> None:
    process = subprocess.Popen([sys.executable, str(session_runner_path())], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               cwd=tmp_path, start_new_session=True)
    assert process.stdin is not None and process.stdout is not None
    code = "import os, time\nprint(os.getpid(), flush=True)\ntime.sleep(60)\n"
    process.stdin.write(encode_message(new_marker(), "execute", {"code": code, "timeout": 60}))
    process.stdin.flush()
    interpreter = int(process.stdout.readline())
    process.stdin.close()  # the host is gone while the job runs
    assert process.wait(10) == 0
    deadline = time.monotonic() + 10
    while _alive(interpreter) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(interpreter), "the interpreter outlived its runner"
    process.stdout.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rpartition(")")[2].split()[0] != "Z"
