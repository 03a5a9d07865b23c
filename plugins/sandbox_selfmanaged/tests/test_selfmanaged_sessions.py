"""Sessions on real gVisor: the kit's session tests, a pandas data session, limits, and no leaks.

One executor for the module (no warm pool: sessions boot their own sandboxes), at most three
sessions at once. Leak checks look at the executor itself: its session list and the runsc
containers in its state directory.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest
from selfmanaged_support import RUNSC, Executor, assert_clean_shutdown, start_executor

from sandbox_core.client import SandboxClient
from sandbox_core.errors import ProviderUnavailableError, SessionGoneError
from sandbox_core.model import ExecutionResult, ExecutionStatus
from sandbox_core.streaming import OutputEvent
from sandbox_core.testing import SessionConformance

MAX_SESSIONS = 3


@pytest.fixture(scope="module")
def session_executor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Executor]:
    running = start_executor(
        tmp_path_factory.mktemp("sessions"),
        "--python-pool-size", "0",
        "--javascript-pool-size", "0",
        "--languages", "python",
        "--max-sessions", str(MAX_SESSIONS),
    )
    yield running
    assert_clean_shutdown(running)


def open_sessions(executor: Executor) -> int:
    response = executor.http.get("/v1/sessions")
    assert response.status_code == 200, response.text
    return len(response.json()["sessions"])


def containers(executor: Executor) -> list[str]:
    listing = subprocess.run([RUNSC, "--root", str(executor.state_dir / "runsc"), "list", "-quiet"],
                             capture_output=True, text=True, check=False)
    return listing.stdout.split()


def wait_until(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def assert_nothing_left(executor: Executor) -> None:
    assert wait_until(lambda: open_sessions(executor) == 0 and containers(executor) == [], 15), (
        f"left behind: {open_sessions(executor)} sessions, containers {containers(executor)}"
    )


def config_of(executor: Executor) -> dict[str, Any]:
    return {"endpoints": [executor.url], "token": executor.token}


@pytest.fixture
def client(session_executor: Executor) -> Iterator[SandboxClient]:
    with closing(SandboxClient(provider="self_managed", config=config_of(session_executor))) as sandbox:
        yield sandbox
    assert_nothing_left(session_executor)


class TestSelfManagedSessions(SessionConformance):
    supports_sessions = True

    @pytest.fixture
    def provider_name(self) -> str:
        return "self_managed"

    @pytest.fixture
    def provider_config(self, session_executor: Executor) -> dict[str, Any]:
        return config_of(session_executor)

    @pytest.fixture
    def live_sessions(self, session_executor: Executor) -> Callable[[], int]:
        return lambda: open_sessions(session_executor)


CSV = b"city,temperature\nOslo,4.5\nLima,19.0\nCairo,28.5\nOslo,6.5\n"


def test_pandas_session_with_chart(client: SandboxClient, session_executor: Executor) -> None:
    with client.session(runtime="python") as session:
        session.upload("data/weather.csv", CSV)
        loaded = session.execute("import pandas as pd\nframe = pd.read_csv('data/weather.csv')\nprint(len(frame))\n")
        assert loaded.stdout == "4\n", loaded
        computed = session.execute(
            "means = frame.groupby('city')['temperature'].mean()\n"
            "def main(city):\n    return float(means[city])\n",
            arguments={"city": "Oslo"},
        )
        assert computed.value == 5.5, computed
        plotted = session.execute(
            "import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
            "means.plot(kind='bar')\nplt.savefig('chart.png')\n"
            "import shutil, os\nshutil.copy('chart.png', os.environ['SANDBOX_OUTPUT_DIR'])\n"
            "def main():\n    return sorted(means.index)\n"
        )
        assert plotted.status is ExecutionStatus.SUCCESS, plotted
        assert plotted.value == ["Cairo", "Lima", "Oslo"]
        charts = [a for a in plotted.artifacts if a.name.endswith(".png")]
        assert charts and charts[0].content.startswith(b"\x89PNG"), plotted.artifacts
        assert session.download("chart.png").startswith(b"\x89PNG")
        with client.session(runtime="python") as other:
            seen = other.execute("import os\nprint('frame' in globals(), os.listdir('.'))\n")
            assert seen.stdout == "False []\n", seen


def test_one_shot_files(client: SandboxClient) -> None:
    result = client.execute("def main():\n    return open('in/numbers.txt').read().split()\n", files={"in/numbers.txt": b"1 2 3"})
    assert result.value == ["1", "2", "3"], result


def test_memory_kill_ends_the_session(client: SandboxClient) -> None:
    session = client.session()
    session.execute("kept = 1\n")
    result = session.execute("blocks = []\nwhile True:\n    blocks.append(bytearray(16 << 20))\n", timeout=60)
    assert result.status is ExecutionStatus.MEMORY_LIMIT, result
    with pytest.raises(SessionGoneError):
        session.execute("kept\n")
    session.close()


def test_max_sessions(client: SandboxClient) -> None:
    opened = [client.session() for _ in range(MAX_SESSIONS)]
    try:
        with pytest.raises(ProviderUnavailableError, match="max-sessions"):
            client.session()
    finally:
        for session in opened:
            session.close()


def test_idle_sessions_are_reaped(client: SandboxClient, session_executor: Executor) -> None:
    session = client.session(idle_timeout=1)
    session.execute("x = 1\n")
    assert_nothing_left(session_executor)
    with pytest.raises(SessionGoneError):
        session.execute("x\n")


def test_client_shutdown_ends_its_sessions(session_executor: Executor) -> None:
    sandbox = SandboxClient(provider="self_managed", config=config_of(session_executor))
    sandbox.session().execute("x = 1\n")
    sandbox.session().execute("y = 2\n")
    assert open_sessions(session_executor) == 2
    sandbox.close()
    assert_nothing_left(session_executor)


def _child(script: str, executor: Executor, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "SELF_MANAGED_CONFIG": json.dumps(config_of(executor))}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), *args], env=env, stdout=subprocess.PIPE, text=True)


def test_crashed_client_leaves_nothing_for_long(session_executor: Executor) -> None:
    child = _child(
        """
        import json, os, signal, sys
        from sandbox_core.client import SandboxClient
        client = SandboxClient(provider="self_managed", config=json.loads(os.environ["SELF_MANAGED_CONFIG"]))
        session = client.session(idle_timeout=2)
        session.execute("x = 1\\n")
        print(session.id, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """,
        session_executor,
    )
    assert child.stdout is not None
    session_id = child.stdout.readline().strip()
    assert child.wait(60) == -signal.SIGKILL
    assert session_id.startswith("self_managed:")
    assert open_sessions(session_executor) == 1
    assert_nothing_left(session_executor)


def test_attach_from_another_process(client: SandboxClient, session_executor: Executor) -> None:
    with client.session() as session:
        session.execute("greeting = 'made in the first process'\n")
        session.upload("note.txt", b"shared file")
        child = _child(
            """
            import json, os, sys
            from sandbox_core.client import SandboxClient
            client = SandboxClient(provider="self_managed", config=json.loads(os.environ["SELF_MANAGED_CONFIG"]))
            attached = client.attach_session(sys.argv[1])
            result = attached.execute("print(greeting, open('note.txt').read())\\n")
            print(json.dumps(result.stdout))
            """,
            session_executor,
            session.id,
        )
        out, _ = child.communicate(timeout=60)
        assert json.loads(out) == "made in the first process shared file\n"


def test_executor_restart_ends_sessions(tmp_path: Path) -> None:
    first = start_executor(tmp_path, "--python-pool-size", "0", "--javascript-pool-size", "0", "--languages", "python")
    command = list(first.process.args)  # type: ignore[arg-type]
    sandbox = SandboxClient(provider="self_managed", config=config_of(first))
    session = sandbox.session()
    session.execute("x = 1\n")
    assert_clean_shutdown(first)
    env = {key: value for key, value in os.environ.items() if not key.startswith("SANDBOX_")}
    env["SANDBOX_EXECUTOR_TOKEN"] = first.token or ""
    with open(tmp_path / "executor.log", "ab") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    second = Executor(process, first.url, first.token, first.state_dir, first.log_path)
    try:
        assert wait_until(lambda: _healthy(second), 60), second.log()[-2000:]
        with pytest.raises(SessionGoneError):
            session.execute("x\n")
        session.close()
    finally:
        sandbox.close()
        assert_clean_shutdown(second)


def _healthy(executor: Executor) -> bool:
    try:
        return executor.health().status_code == 200
    except Exception:
        return False


SANDBOX_CLI = str(Path(sys.executable).with_name("sandbox"))


@pytest.fixture
def cli_env(session_executor: Executor, tmp_path: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("SANDBOX_")}
    env["SANDBOX_DATABASE_URL"] = f"sqlite:///{tmp_path / 'settings.db'}"
    done = subprocess.run([SANDBOX_CLI, "config", "set", "self_managed", "--json", json.dumps(config_of(session_executor)), "--activate"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return env


def _sandbox(env: dict[str, str], *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([SANDBOX_CLI, *args], env=env, input=stdin, capture_output=True, timeout=120)


def test_session_commands(cli_env: dict[str, str], session_executor: Executor, tmp_path: Path) -> None:
    created = _sandbox(cli_env, "session", "new", "--idle-timeout", "60", "--json")
    assert created.returncode == 0, created.stderr
    session_id = json.loads(created.stdout)["id"]
    (tmp_path / "numbers.csv").write_bytes(b"1\n2\n3\n")
    assert _sandbox(cli_env, "session", "upload", session_id, str(tmp_path / "numbers.csv")).returncode == 0
    ran = _sandbox(cli_env, "session", "exec", session_id, "-c", "total = sum(int(n) for n in open('numbers.csv'))\n")
    assert ran.returncode == 0, ran.stderr
    ran = _sandbox(cli_env, "session", "exec", session_id, "--json", "-", stdin=b"open('total.txt', 'w').write(str(total))\n")
    assert ran.returncode == 0 and json.loads(ran.stdout)["status"] == "success", ran.stdout
    ran = _sandbox(cli_env, "session", "exec", session_id, "--json", "-c", "def main(k):\n    return total * k\n", "--arg", "k=2")
    assert json.loads(ran.stdout)["value"] == 12, ran.stdout
    listed = _sandbox(cli_env, "session", "list", session_id, "--json")
    assert {f["path"] for f in json.loads(listed.stdout)} == {"numbers.csv", "total.txt"}
    fetched = _sandbox(cli_env, "session", "download", session_id, "total.txt", "-o", "-")
    assert fetched.stdout == b"6"
    assert _sandbox(cli_env, "session", "close", session_id).returncode == 0
    gone = _sandbox(cli_env, "session", "exec", session_id, "-c", "total")
    assert gone.returncode != 0 and b"session" in gone.stderr
    assert open_sessions(session_executor) == 0


def test_repl_in_a_terminal(cli_env: dict[str, str], session_executor: Executor) -> None:
    import pty

    master, slave = pty.openpty()
    process = subprocess.Popen([SANDBOX_CLI, "repl"], env=cli_env, stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    seen = b""

    def read_until(text: bytes, seconds: float = 60) -> None:
        nonlocal seen
        deadline = time.monotonic() + seconds
        while text not in seen and time.monotonic() < deadline:
            try:
                seen += os.read(master, 4096)
            except OSError:
                break
        assert text in seen, seen.decode(errors="replace")

    try:
        read_until(b">>> ")
        os.write(master, b"answer = 6 * 7\n")
        read_until(b">>> ", 60)
        os.write(master, b"for i in range(2):\n")
        read_until(b"... ")
        os.write(master, b"    answer += i\n\n")
        os.write(master, b"answer\n")
        read_until(b"43")
        os.write(master, b"\x04")
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:
            process.kill()
        os.close(master)
    assert wait_until(lambda: open_sessions(session_executor) == 0, 15)


# -- streaming (issue 16 in sessions) --------------------------------------------------------------

NDJSON = "application/x-ndjson"
TWO_LINES = "import time\nprint('first', flush=True)\ntime.sleep(1)\nprint('second', flush=True)\n"


def test_session_output_arrives_while_the_code_runs(client: SandboxClient) -> None:
    events: list[OutputEvent] = []
    with client.session() as session:
        result = session.execute(TWO_LINES, on_output=events.append)
    assert result.ok and result.stdout == "first\nsecond\n", result
    assert [e.text for e in events] == ["first\n", "second\n"]
    assert events[1].at - events[0].at >= 0.8, [e.at for e in events]


def test_session_stream_yields_events_then_the_result(client: SandboxClient) -> None:
    with client.session() as session:
        *events, result = session.stream("import sys\nfor i in range(3):\n    print(i, flush=True)\nsys.stderr.write('e\\n')\n")
    assert isinstance(result, ExecutionResult) and result.stdout == "0\n1\n2\n", result
    for stream in ("stdout", "stderr"):
        assert "".join(e.text for e in events if isinstance(e, OutputEvent) and e.stream == stream) == getattr(result, stream)


def test_a_session_flood_streams_up_to_the_limit_and_is_flagged(session_executor: Executor) -> None:
    limit = 64 * 1024
    config = {**config_of(session_executor), "max_output_bytes": limit}
    events: list[OutputEvent] = []
    with closing(SandboxClient(provider="self_managed", config=config)) as flooding, flooding.session() as session:
        result = session.execute("import sys\nwhile True:\n    sys.stdout.write('z' * 65535 + '\\n')\n", on_output=events.append)
    assert result.status is ExecutionStatus.OUTPUT_LIMIT and result.stdout_truncated, result
    streamed = "".join(e.text for e in events if e.stream == "stdout")
    assert streamed == result.stdout and len(streamed.encode()) <= limit


def _open(executor: Executor) -> str:
    response = executor.http.post("/v1/sessions", json={"idle_timeout": 120})
    assert response.status_code == 201, response.text
    session_id: str = response.json()["id"]
    return session_id


def test_the_session_route_streams_ndjson_only_when_asked(session_executor: Executor) -> None:
    session_id = _open(session_executor)
    try:
        code = "import sys\nprint('out', flush=True)\nsys.stderr.write('err\\n')\ndef main():\n    return 7\n"
        route = f"/v1/sessions/{session_id}/execute"
        with session_executor.http.stream("POST", route, json={"code": code}, headers={"Accept": NDJSON}) as response:
            response.read()
        assert response.status_code == 200 and response.headers["content-type"].startswith(NDJSON), response.text
        *events, last = [json.loads(line) for line in response.text.split("\n") if line]
        assert {e["type"] for e in events} == {"output"} and last["type"] == "result"
        plain = session_executor.http.post(route, json={"code": code}, headers={"Accept": "application/json"})
        assert plain.headers["content-type"] == "application/json"
        for field in ("status", "stdout", "stderr", "value", "exit_code", "error"):
            assert last["result"][field] == plain.json()[field], field
        for stream in ("stdout", "stderr"):
            assert "".join(e["text"] for e in events if e["stream"] == stream) == last["result"][stream]
        gone = session_executor.http.post("/v1/sessions/00ff/execute", json={"code": "1"}, headers={"Accept": NDJSON})
        assert gone.status_code == 410, gone.text
    finally:
        session_executor.http.delete(f"/v1/sessions/{session_id}")


def test_leaving_a_session_stream_stops_the_code_and_restarts_the_interpreter(session_executor: Executor) -> None:
    session_id = _open(session_executor)
    route = f"/v1/sessions/{session_id}/execute"
    try:
        assert session_executor.http.post(route, json={"code": "kept = 1\n"}).json()["status"] == "success"
        code = "import time\nprint('started', flush=True)\ntime.sleep(15)\nprint('never')\n"
        leaving = httpx.Client(base_url=session_executor.url, headers=session_executor.http.headers, timeout=30, trust_env=False)
        with leaving.stream("POST", route, json={"code": code, "timeout": 40}, headers={"Accept": NDJSON}) as response:
            first = json.loads(next(response.iter_lines()))
            assert first == {**first, "type": "output", "stream": "stdout", "text": "started\n"}
        leaving.close()  # mid-stream: the result line never came
        after = session_executor.http.post(route, json={"code": "print('kept' in globals())\n", "timeout": 30}).json()
        assert (after["stdout"], after["stderr"]) == ("False\n", ""), after  # stopped at once, its interpreter replaced
        assert "client disconnected mid-stream" in session_executor.log()
        assert open_sessions(session_executor) >= 1
    finally:
        session_executor.http.delete(f"/v1/sessions/{session_id}")


def test_session_exec_prints_output_as_it_comes(cli_env: dict[str, str], session_executor: Executor) -> None:
    created = _sandbox(cli_env, "session", "new", "--idle-timeout", "60")
    assert created.returncode == 0, created.stderr
    session_id = created.stdout.decode().strip()
    on_executor = session_id.rpartition("/")[2]

    def executions() -> int:
        listed = session_executor.http.get("/v1/sessions").json()["sessions"]
        return int(next(s["executions"] for s in listed if s["id"] == on_executor))

    try:
        code = "import time\nprint('first', flush=True)\ntime.sleep(30)\nprint('never')\n"
        process = subprocess.Popen([SANDBOX_CLI, "session", "exec", session_id, "--timeout", "60", "-c", code], env=cli_env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert process.stdout is not None and process.stdout.readline() == b"first\n"
            assert executions() == 0, "'first' came only once the execution was over"
        finally:
            process.kill()  # the client leaves mid-stream: the execution stops, the session stays
            process.communicate(timeout=60)
        assert wait_until(lambda: executions() == 1, 15), "the execution went on after its client left"
        events = _sandbox(cli_env, "session", "exec", session_id, "--events", "-c", TWO_LINES)
        *lines, last = [json.loads(line) for line in events.stdout.splitlines()]
        assert [e["text"] for e in lines] == ["first\n", "second\n"] and last["type"] == "result", events.stdout
        assert lines[1]["at"] - lines[0]["at"] >= 0.8, lines
    finally:
        _sandbox(cli_env, "session", "close", session_id)


def test_leaving_before_a_plain_session_answer_stops_the_code_too(session_executor: Executor) -> None:
    session_id = _open(session_executor)
    route = f"/v1/sessions/{session_id}/execute"
    try:
        assert session_executor.http.post(route, json={"code": "kept = 1\n"}).json()["status"] == "success"
        leaving = httpx.Client(base_url=session_executor.url, headers=session_executor.http.headers, timeout=3, trust_env=False)
        with pytest.raises(httpx.ReadTimeout):
            leaving.post(route, json={"code": "import time\ntime.sleep(15)\n", "timeout": 40})
        leaving.close()  # gave up waiting: the connection is gone
        after = session_executor.http.post(route, json={"code": "print('kept' in globals())\n", "timeout": 30}).json()
        assert (after["stdout"], after["stderr"]) == ("False\n", ""), after
    finally:
        session_executor.http.delete(f"/v1/sessions/{session_id}")
