"""E2B sessions and files against the fake: a sandbox with one persistent code context per session.

The sessions run through the registry's typed session calls (the core's boundary), the SDK for
real against :mod:`fake_e2b`, whose kernels are real Python processes; the fake counts the
sandboxes and code contexts left alive.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import pytest
from fake_e2b import FakeE2BServer

from sandbox_core import SandboxClient
from sandbox_core.errors import SessionGoneError
from sandbox_core.model import ExecutionRequest, ExecutionStatus
from sandbox_core.registry import get_registry
from sandbox_core.sessions import SessionSpec
from sandbox_core.streaming import OutputEvent
from sandbox_e2b.sessions import END_KEY

PROVIDER = "e2b"


@pytest.fixture
def config(e2b_config: dict[str, Any]) -> dict[str, Any]:
    return get_registry().config_schema(PROVIDER).validate(e2b_config)


@pytest.fixture
def opened(fake_e2b: FakeE2BServer, config: dict[str, Any]) -> Iterator[list[str]]:
    """Handles the test opens; all closed afterwards, and the fake must then hold none of them."""
    handles: list[str] = []
    yield handles
    for handle in handles:
        get_registry().session_close(PROVIDER, handle, config)
    alive = {sandbox.sandbox_id for sandbox in fake_e2b.cloud.running()}
    assert not alive & {handle.split("/")[0] for handle in handles}


def _open(opened: list[str], config: dict[str, Any], **spec: Any) -> str:
    handle = get_registry().session_open(PROVIDER, SessionSpec(**spec), config)
    opened.append(handle)
    return handle


def _run(handle: str, config: dict[str, Any], code: str, **request: Any) -> Any:
    return get_registry().session_execute(PROVIDER, handle, ExecutionRequest(code=code, **request), config)


def test_names_persist_across_executions_and_main_is_called_once_per_definition(
    opened: list[str], config: dict[str, Any]
) -> None:
    handle = _open(opened, config)
    assert _run(handle, config, "import math\ncounter = 41\n").ok
    second = _run(handle, config, "counter += 1\ndef main(n):\n    return counter + n + math.floor(0.5)\n", arguments={"n": 100})
    assert second.ok and second.value == 142, second
    third = _run(handle, config, "print(counter)\n")
    assert third.stdout == "42\n" and third.value is None  # main of the step before is not called again


def test_two_sessions_see_neither_names_nor_files_of_each_other(opened: list[str], config: dict[str, Any]) -> None:
    first, second = _open(opened, config), _open(opened, config)
    assert first.split("/")[0] != second.split("/")[0]
    get_registry().session_upload(PROVIDER, first, "mine.txt", b"first's", config)
    assert _run(first, config, "secret = 1\n").ok
    probe = _run(second, config, "import os\ndef main():\n    return ['secret' in globals(), os.path.exists('mine.txt')]\n")
    assert probe.value == [False, False], probe
    assert [info.path for info in get_registry().session_list_files(PROVIDER, second, config)] == []


def test_uploaded_files_are_read_by_code_and_files_the_code_writes_are_downloaded(
    opened: list[str], config: dict[str, Any]
) -> None:
    registry = get_registry()
    handle = _open(opened, config)
    registry.session_upload(PROVIDER, handle, "in/data.csv", b"x,y\n1,2\n3,4\n", config)
    code = (
        "import csv\n"
        "rows = list(csv.DictReader(open('in/data.csv')))\n"
        "with open('out/total.txt', 'w') as f:\n"
        "    f.write(str(sum(int(r['x']) + int(r['y']) for r in rows)))\n"
    )
    assert not _run(handle, config, "import os\nos.makedirs('out')\n").error
    assert _run(handle, config, code).ok
    assert registry.session_download(PROVIDER, handle, "out/total.txt", config) == b"10"
    listed = {info.path: info.size for info in registry.session_list_files(PROVIDER, handle, config)}
    assert listed == {"in/data.csv": 12, "out/total.txt": 2}
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        registry.session_download(PROVIDER, handle, "nope.txt", config)


def test_a_three_step_session_loads_computes_and_plots(opened: list[str], config: dict[str, Any]) -> None:
    """The issue's data session without pandas: load a CSV upload, compute, draw a chart artifact."""
    handle = _open(opened, config)
    get_registry().session_upload(PROVIDER, handle, "sales.csv", b"month,amount\njan,3\nfeb,5\nmar,4\n", config)
    load = _run(handle, config, "import csv\nrows = list(csv.DictReader(open('sales.csv')))\ndef main():\n    return len(rows)\n")
    compute = _run(handle, config, "total = sum(int(r['amount']) for r in rows)\ndef main():\n    return total\n")
    plot = _run(
        handle,
        config,
        "import os\n"
        "bars = ''.join(f'<rect x=\"{i * 20}\" y=\"0\" width=\"15\" height=\"{int(r[\"amount\"]) * 10}\"/>' "
        "for i, r in enumerate(rows))\n"
        "with open(os.path.join(os.environ['SANDBOX_OUTPUT_DIR'], 'chart.svg'), 'w') as f:\n"
        "    f.write(f'<svg xmlns=\"http://www.w3.org/2000/svg\">{bars}</svg>')\n"
        "def main():\n    return total\n",
    )
    assert (load.value, compute.value, plot.value) == (3, 12, 12), (load, compute, plot)
    (chart,) = plot.artifacts
    assert chart.name == "chart.svg" and chart.content.count(b"<rect") == 3


def test_one_shot_input_files_are_in_the_working_folder(fake_e2b: FakeE2BServer, config: dict[str, Any]) -> None:
    request = ExecutionRequest(
        code="def main():\n    return open('data/in.txt').read() + open('b.bin', 'rb').read().hex()\n",
        files={"data/in.txt": b"hello ", "b.bin": b"\x00\xff"},
    )
    result = get_registry().execute(PROVIDER, request, config)
    assert result.ok and result.value == "hello 00ff", result


def test_close_and_shutdown_leave_no_sandbox_or_context(fake_e2b: FakeE2BServer, config: dict[str, Any]) -> None:
    from sandbox_e2b import provider

    registry = get_registry()
    closed = registry.session_open(PROVIDER, SessionSpec(), config)
    left = registry.session_open(PROVIDER, SessionSpec(), config)
    assert _run(closed, config, "x = 1").ok and _run(left, config, "y = 2").ok
    live = {s.sandbox_id: len(s.contexts) for s in fake_e2b.cloud.running()}
    assert live[closed.split("/")[0]] == 1 and live[left.split("/")[0]] == 1

    registry.session_close(PROVIDER, closed, config)
    registry.session_close(PROVIDER, closed, config)  # idempotent
    assert fake_e2b.cloud.get(closed.split("/")[0]) is None
    with pytest.raises(SessionGoneError, match="open a new session"):
        _run(closed, config, "x")

    provider.sandbox_shutdown()
    assert fake_e2b.cloud.get(left.split("/")[0]) is None  # its sandbox, and so its context, is gone


def test_a_timeout_restarts_the_context_and_the_session_goes_on(
    fake_e2b: FakeE2BServer, opened: list[str], config: dict[str, Any]
) -> None:
    handle = _open(opened, config)
    assert _run(handle, config, "kept = 'before'\n").ok
    timed_out = _run(handle, config, "import time\nprint('started', flush=True)\ntime.sleep(30)\n", timeout=1)
    assert timed_out.status is ExecutionStatus.TIMEOUT and timed_out.metadata["session_restarted"] is True
    assert "started" in timed_out.stdout
    assert handle.split("/")[1] in fake_e2b.cloud.restarts
    after = _run(handle, config, "def main():\n    return 'kept' in globals()\n")
    assert after.ok and after.value is False and "session_restarted" not in after.metadata


def test_an_idle_session_is_ended_by_e2b_itself(fake_e2b: FakeE2BServer, opened: list[str], config: dict[str, Any]) -> None:
    handle = _open(opened, config, idle_timeout=1)
    assert _run(handle, config, "x = 1").ok
    sandbox_id = handle.split("/")[0]
    deadline = time.monotonic() + 30
    while sandbox_id not in fake_e2b.cloud.expired and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sandbox_id in fake_e2b.cloud.expired  # its E2B lifetime ran out: no client did anything
    with pytest.raises(SessionGoneError):
        _run(handle, config, "x")


def test_max_lifetime_caps_the_sandboxes_lifetime(fake_e2b: FakeE2BServer, opened: list[str], config: dict[str, Any]) -> None:
    handle = _open(opened, config, idle_timeout=600, max_lifetime=60)
    assert _run(handle, config, "x = 1").ok
    renewals = [lifetime for sandbox_id, lifetime in fake_e2b.cloud.timeouts if sandbox_id == handle.split("/")[0]]
    assert renewals and max(renewals) <= 60


def test_another_process_attaches_by_the_handle(opened: list[str], config: dict[str, Any], e2b_config: dict[str, Any]) -> None:
    handle = _open(opened, config)
    assert _run(handle, config, "shared = 'set by the first process'\n").ok
    script = (
        "import json, sys\n"
        "from sandbox_core.model import ExecutionRequest\n"
        "from sandbox_core.registry import get_registry\n"
        "registry = get_registry()\n"
        "handle, raw = sys.argv[1], json.loads(sys.argv[2])\n"
        "config = registry.config_schema('e2b').validate(raw)\n"
        "request = ExecutionRequest(code='def main():\\n    return shared')\n"
        "print(json.dumps(registry.session_execute('e2b', handle, request, config).value))\n"
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("SANDBOX_")}
    done = subprocess.run(
        [sys.executable, "-c", script, handle, json.dumps(e2b_config)], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == "set by the first process"
    assert _run(handle, config, "def main():\n    return shared\n").value == "set by the first process"


def test_output_streams_while_the_code_runs(fake_e2b: FakeE2BServer, e2b_config: dict[str, Any]) -> None:
    events: list[OutputEvent] = []
    with closing(SandboxClient(provider=PROVIDER, config=e2b_config)) as client:
        result = client.execute(
            "import time\nprint('first', flush=True)\ntime.sleep(1)\nprint('second', flush=True)\n", on_output=events.append
        )
    assert result.ok and result.stdout == "first\nsecond\n", result
    first = next(event for event in events if "first" in event.text)
    second = next(event for event in events if "second" in event.text)
    assert second.at - first.at >= 0.8  # the first arrived while the code slept, not with the result
    assert "".join(event.text for event in events if event.stream == "stdout") == result.stdout


def test_streamed_output_stops_at_the_output_limit(fake_e2b: FakeE2BServer, e2b_config: dict[str, Any]) -> None:
    events: list[OutputEvent] = []
    with closing(SandboxClient(provider=PROVIDER, config={**e2b_config, "max_output_bytes": 1024})) as client:
        result = client.execute("for i in range(2000):\n    print('x' * 20)\n", on_output=events.append)
    assert result.stdout_truncated
    streamed = "".join(event.text for event in events if event.stream == "stdout")
    assert len(streamed.encode()) <= 1024 and result.stdout.startswith(streamed)


WEATHER_CSV = b"city,temperature\nOslo,4.5\nLima,19.0\nCairo,28.5\nOslo,6.5\n"


def test_a_pandas_session_through_the_public_api(fake_e2b: FakeE2BServer, e2b_config: dict[str, Any]) -> None:
    """The issue's data session: upload a CSV, load it with pandas, compute, plot; a second session sees none of it."""
    with closing(SandboxClient(provider=PROVIDER, config=e2b_config)) as client:
        with client.session() as session:
            session.upload("data/weather.csv", WEATHER_CSV)
            loaded = session.execute("import pandas as pd\nframe = pd.read_csv('data/weather.csv')\nprint(len(frame))\n")
            assert loaded.stdout == "4\n", loaded
            computed = session.execute(
                "means = frame.groupby('city')['temperature'].mean()\ndef main(city):\n    return float(means[city])\n",
                arguments={"city": "Oslo"},
            )
            assert computed.value == 5.5, computed
            plotted = session.execute(
                "import matplotlib.pyplot as plt\naxes = means.plot(kind='bar')\n"
                "def main():\n    return sorted(means.index)\n"
            )
            assert plotted.ok and plotted.value == ["Cairo", "Lima", "Oslo"], plotted
            charts = [artifact for artifact in plotted.artifacts if artifact.mime_type == "image/png"]
            assert charts and charts[0].content.startswith(b"\x89PNG"), plotted.artifacts
            with client.session() as other:
                seen = other.execute("import os\nprint('frame' in globals(), os.listdir('.'))\n")
                assert seen.stdout == "False []\n", seen
    assert not [sandbox for sandbox in fake_e2b.cloud.running() if END_KEY in sandbox.metadata]


def test_closing_the_client_ends_the_sessions_it_opened(fake_e2b: FakeE2BServer, e2b_config: dict[str, Any]) -> None:
    client = SandboxClient(provider=PROVIDER, config=e2b_config)
    ids = [client.session().id, client.session().id]
    sandboxes = {session_id.split(":", 1)[1].split("/")[0] for session_id in ids}
    assert sandboxes <= {sandbox.sandbox_id for sandbox in fake_e2b.cloud.running()}
    client.close()
    assert not sandboxes & {sandbox.sandbox_id for sandbox in fake_e2b.cloud.running()}


def test_a_crashed_client_leaves_nothing_once_its_idle_timeout_passes(
    fake_e2b: FakeE2BServer, e2b_config: dict[str, Any]
) -> None:
    """A process opens a session through the public API and is SIGKILLed: E2B's lifetime ends the sandbox."""
    script = (
        "import json, os, signal, sys\n"
        "from sandbox_core import SandboxClient\n"
        "client = SandboxClient(provider='e2b', config=json.loads(sys.argv[1]))\n"
        "session = client.session(idle_timeout=1)\n"
        "session.execute('x = 1\\n')\n"
        "print(session.id, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("SANDBOX_")}
    child = subprocess.run(
        [sys.executable, "-c", script, json.dumps(e2b_config)], capture_output=True, text=True, env=env, timeout=120
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    sandbox_id = child.stdout.strip().split(":", 1)[1].split("/")[0]
    deadline = time.monotonic() + 30
    while sandbox_id not in fake_e2b.cloud.expired and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sandbox_id in fake_e2b.cloud.expired and fake_e2b.cloud.get(sandbox_id) is None
    assert not [sandbox for sandbox in fake_e2b.cloud.running() if END_KEY in sandbox.metadata]
