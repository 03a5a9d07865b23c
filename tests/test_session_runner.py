"""The session runner's failure rules, through the local provider: a dying interpreter, floods, forged reports."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandbox_core.client import SandboxClient
from sandbox_core.errors import SessionGoneError
from sandbox_core.model import ExecutionStatus
from sandbox_core.registry import ProviderRegistry
from sandbox_core.sessions import Session
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
