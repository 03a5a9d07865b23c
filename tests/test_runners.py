"""The Python and JavaScript runners, run for real through ``UnsandboxedSubprocessProvider``."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from sandbox_core.client import SandboxClient
from sandbox_core.model import ExecutionResult, ExecutionStatus
from sandbox_core.registry import ProviderRegistry
from sandbox_core.runner import BoundedCapture, Job, ResultStream, build_result, runner_path
from sandbox_core.testing import UnsandboxedSubprocessProvider

needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")


@pytest.fixture(scope="module")
def client() -> Iterator[SandboxClient]:
    registry = ProviderRegistry(discover=False)
    registry.register("local", UnsandboxedSubprocessProvider())
    client = SandboxClient(provider="local", config={"max_output_bytes": 4096}, registry=registry)
    yield client
    client.close()


def run(client: SandboxClient, code: str, language: str = "python", **kwargs: Any) -> ExecutionResult:
    return client.execute(code, language=language, timeout=kwargs.pop("timeout", 20), **kwargs)


def run_job(job: Job, language: str = "python", tmp_path: Any = None, timeout: float = 60) -> ExecutionResult:
    """Run one job through a runner directly (no provider), for job fields providers do not expose."""
    interpreter = sys.executable if language == "python" else "node"
    process = subprocess.run(
        [interpreter, str(runner_path(language))], input=job.encode(), capture_output=True, timeout=timeout, cwd=tmp_path, check=False
    )
    stdout, stderr = ResultStream(job.marker, max_frame_bytes=job.max_frame_bytes), BoundedCapture()
    stdout.feed(process.stdout)
    stderr.feed(process.stderr)
    return build_result(provider="direct", stdout=stdout, stderr=stderr, exit_code=process.returncode, execution_time=0.0)


# -- Python ---------------------------------------------------------------------------------------


def test_python_runner_imports_no_json_or_re_for_a_trivial_job(tmp_path: Any) -> None:
    """Every import costs dearly inside gVisor (``json`` pulls ``re`` and ``enum``: ≈ 31 ms of CPU)."""
    code = "import sys\ndef main(x):\n    return [x, [m for m in ('json', 're', 'enum') if m in sys.modules]]\n"
    job = Job(code=code, arguments={"x": [1, 2.5, None, True, "é\x1e"]}, output_dir=str(tmp_path / "out"))
    process = subprocess.run(
        [sys.executable, "-I", "-S", str(runner_path("python"))], input=job.encode(), capture_output=True, timeout=60, check=False
    )
    stdout, stderr = ResultStream(job.marker), BoundedCapture()
    stdout.feed(process.stdout)
    stderr.feed(process.stderr)
    result = build_result(provider="direct", stdout=stdout, stderr=stderr, exit_code=process.returncode, execution_time=0.0)
    assert result.status is ExecutionStatus.SUCCESS, result
    assert result.value == [[1, 2.5, None, True, "é\x1e"], []]


def test_python_child_ending_without_a_report_is_seen_while_its_own_child_holds_the_report_pipe(tmp_path: Any) -> None:
    """The runner learns of its child's end from the kernel, not from the report pipe's end of file."""
    code = (
        "import os, time\n"
        "if os.fork() == 0:\n"  # keeps every inherited pipe open but stdout/stderr, for 25 s at most
        "    os.close(1)\n"
        "    os.close(2)\n"
        "    time.sleep(25)\n"
        "    os._exit(0)\n"
        "os._exit(3)\n"
    )
    result = run_job(Job(code=code, output_dir=str(tmp_path / "out")), timeout=15)
    assert (result.status, result.exit_code) == (ExecutionStatus.ERROR, 3), result
    assert result.error is not None and result.error.type == "ProcessExited", result.error


def test_python_run_name_is_the_codes_name(tmp_path: Any) -> None:
    code = "ran = []\nif __name__ == '__main__':\n    ran.append('block')\ndef main():\n    return [__name__, ran]\n"
    job = Job(code=code, output_dir=str(tmp_path / "out"))
    assert run_job(job).value == ["__main__", ["block"]]
    job = Job(code=code, output_dir=str(tmp_path / "out"), run_name="__sandbox__")
    assert run_job(job).value == ["__sandbox__", []]


def test_python_artifacts_come_back_with_their_mime_type(client: SandboxClient) -> None:
    code = (
        "import os\n"
        "out = os.environ['SANDBOX_OUTPUT_DIR']\n"
        "os.makedirs(os.path.join(out, 'sub'))\n"
        "files = {'report.csv': b'a,b\\n1,2\\n', 'chart.png': b'\\x89PNG\\r\\n', 'data.json': b'{}',\n"
        "         'blob.zzzunknown': b'\\x00\\x01', 'sub/notes.txt': 'héllo'.encode()}\n"
        "for name, content in files.items():\n"
        "    with open(os.path.join(out, name), 'wb') as f:\n"
        "        f.write(content)\n"
    )
    result = run(client, code)
    assert result.status is ExecutionStatus.SUCCESS, result
    found = {a.name: (a.mime_type, a.content, a.size) for a in result.artifacts}
    assert found == {
        "report.csv": ("text/csv", b"a,b\n1,2\n", 8),
        "chart.png": ("image/png", b"\x89PNG\r\n", 6),
        "data.json": ("application/json", b"{}", 2),
        "blob.zzzunknown": ("application/octet-stream", b"\x00\x01", 2),
        "sub/notes.txt": ("text/plain", "héllo".encode(), 6),
    }


def test_python_artifacts_over_the_budget_are_skipped_and_listed(client: SandboxClient) -> None:
    code = (
        "import os\n"
        "out = os.environ['SANDBOX_OUTPUT_DIR']\n"
        "open(os.path.join(out, 'big.bin'), 'wb').write(b'x' * (9 << 20))\n"
        "open(os.path.join(out, 'small.txt'), 'w').write('ok')\n"
    )
    result = run(client, code)
    assert [a.name for a in result.artifacts] == ["small.txt"]
    assert result.metadata["skipped_artifacts"] == ["big.bin"]


def test_python_user_code_sees_an_empty_stdin(client: SandboxClient) -> None:
    result = run(client, "import sys\ndef main():\n    return sys.stdin.read()\n")
    assert result.status is ExecutionStatus.SUCCESS and result.value == "", result
    result = run(client, "input()\n")
    assert result.status is ExecutionStatus.ERROR and result.error.type == "EOFError", result


@pytest.mark.parametrize(
    ("code", "status", "exit_code"),
    [
        ("import sys\nprint('a')\nsys.exit()\n", ExecutionStatus.SUCCESS, 0),
        ("import sys\nprint('a')\nsys.exit(0)\n", ExecutionStatus.SUCCESS, 0),
        ("import sys\nprint('a')\nsys.exit(4)\n", ExecutionStatus.ERROR, 4),
        ("print('a')\nraise SystemExit(2)\n", ExecutionStatus.ERROR, 2),
        ("import sys\ndef main():\n    print('a')\n    sys.exit(5)\n", ExecutionStatus.ERROR, 5),
    ],
)
def test_python_sys_exit_codes(client: SandboxClient, code: str, status: ExecutionStatus, exit_code: int) -> None:
    result = run(client, code)
    assert (result.status, result.exit_code) == (status, exit_code), result
    assert result.stdout == "a\n"
    assert result.error is None


def test_python_sys_exit_with_a_message(client: SandboxClient) -> None:
    result = run(client, "import sys\nsys.exit('giving up')\n")
    assert (result.status, result.exit_code) == (ExecutionStatus.ERROR, 1)
    assert "giving up" in result.stderr


def test_python_hard_exit_without_a_frame(client: SandboxClient) -> None:
    result = run(client, "import os\nprint('before', flush=True)\nos._exit(7)\n")
    assert (result.status, result.exit_code) == (ExecutionStatus.ERROR, 7), result
    assert result.error.type == "ProcessExited" and "7" in result.error.message
    assert result.stdout == "before\n"


def test_python_traceback_shows_user_lines_only(client: SandboxClient) -> None:
    result = run(client, "def f():\n    return 1 / 0\n\ndef main():\n    return f()\n")
    assert result.error.type == "ZeroDivisionError"
    assert 'File "<code>", line 2, in f' in result.error.traceback
    assert "return 1 / 0" in result.error.traceback
    assert "python_runner" not in result.error.traceback
    assert "ZeroDivisionError" in result.stderr


def test_python_prints_are_flushed_before_the_frame(client: SandboxClient) -> None:
    code = "import sys\nsys.stdout.write('no newline')\nsys.stderr.write('err')\ndef main():\n    return 1\n"
    result = run(client, code)
    assert (result.stdout, result.stderr, result.value) == ("no newline", "err", 1)


def test_python_flood_is_truncated_and_stopped(client: SandboxClient) -> None:
    result = run(client, "while True:\n    print('y' * 1000)\n", timeout=20)
    assert result.status is ExecutionStatus.OUTPUT_LIMIT, result
    assert result.stdout_truncated and len(result.stdout.encode()) <= 4096
    assert result.execution_time < 15


# -- JavaScript -----------------------------------------------------------------------------------


@needs_node
def test_javascript_artifacts_come_back_with_their_mime_type(client: SandboxClient) -> None:
    code = (
        "const fs = require('fs');\nconst path = require('path');\n"
        "function main() {\n"
        "  const out = process.env.SANDBOX_OUTPUT_DIR;\n"
        "  fs.writeFileSync(path.join(out, 'table.csv'), 'a,b\\n');\n"
        "  fs.writeFileSync(path.join(out, 'pic.png'), Buffer.from([137, 80, 78, 71]));\n"
        "  fs.writeFileSync(path.join(out, 'raw.qqq'), 'x');\n"
        "  return 'written';\n"
        "}\n"
    )
    result = run(client, code, "javascript")
    assert result.status is ExecutionStatus.SUCCESS and result.value == "written", result
    found = {a.name: (a.mime_type, a.content) for a in result.artifacts}
    assert found == {
        "table.csv": ("text/csv", b"a,b\n"),
        "pic.png": ("image/png", b"\x89PNG"),
        "raw.qqq": ("application/octet-stream", b"x"),
    }


@needs_node
def test_javascript_user_code_sees_an_empty_stdin(client: SandboxClient) -> None:
    result = run(client, "function main() { return require('fs').readFileSync(0, 'utf8'); }\n", "javascript")
    assert result.status is ExecutionStatus.SUCCESS and result.value == "", result


@needs_node
@pytest.mark.parametrize(
    ("exit_call", "status", "exit_code"),
    [
        ("process.exit(3)", ExecutionStatus.ERROR, 3),
        ("process.exit(0)", ExecutionStatus.SUCCESS, 0),
        ("process.exit()", ExecutionStatus.SUCCESS, 0),
    ],
)
def test_javascript_process_exit(client: SandboxClient, exit_call: str, status: ExecutionStatus, exit_code: int) -> None:
    result = run(client, f"console.log('before');\n{exit_call};\nconsole.log('after');\n", "javascript")
    assert (result.status, result.exit_code) == (status, exit_code), result
    assert result.stdout == "before\n"


@needs_node
def test_javascript_process_exit_code_property(client: SandboxClient) -> None:
    result = run(client, "console.log('before');\nprocess.exitCode = 2;\nconsole.log('after');\n", "javascript")
    assert (result.status, result.exit_code) == (ExecutionStatus.ERROR, 2), result
    assert result.stdout == "before\nafter\n"


@needs_node
def test_javascript_process_exit_inside_main(client: SandboxClient) -> None:
    result = run(client, "function main() { console.log('in main'); process.exit(6); }\n", "javascript")
    assert (result.status, result.exit_code, result.stdout) == (ExecutionStatus.ERROR, 6, "in main\n"), result


@needs_node
def test_javascript_without_main_waits_for_pending_timers(client: SandboxClient) -> None:
    code = "console.log('now');\nsetTimeout(() => console.log('later'), 200);\n"
    result = run(client, code, "javascript")
    assert result.status is ExecutionStatus.SUCCESS, result
    assert result.stdout == "now\nlater\n"
    assert result.value is None


@needs_node
@pytest.mark.parametrize(
    "code",
    [
        "function main(args) { return args.n * 2; }",
        "const main = (args) => args.n * 2;",
        "const main = async (args) => { await null; return args.n * 2; };",
        "module.exports.main = function (args) { return args.n * 2; };",
    ],
)
def test_javascript_main_forms(client: SandboxClient, code: str) -> None:
    result = run(client, code, "javascript", arguments={"n": 21})
    assert (result.status, result.value) == (ExecutionStatus.SUCCESS, 42), result


@needs_node
def test_javascript_throwing_a_non_error(client: SandboxClient) -> None:
    result = run(client, "function main() { throw 'plain string'; }", "javascript")
    assert result.status is ExecutionStatus.ERROR
    assert (result.error.type, result.error.message) == ("Error", "plain string")


@needs_node
def test_javascript_unhandled_rejection_without_main_is_an_error(client: SandboxClient) -> None:
    result = run(client, "Promise.reject(new RangeError('late'));\n", "javascript")
    assert result.status is ExecutionStatus.ERROR, result
    assert "late" in result.stderr


@needs_node
def test_javascript_value_not_json(client: SandboxClient) -> None:
    result = run(client, "function main() { return () => 1; }", "javascript")
    assert result.status is ExecutionStatus.ERROR
    assert "JSON" in result.error.message


# -- forged frames, background writers, large writes, limits -----------------------------------------

FIND_AND_FORGE_PY = '''
import gc, json, re, sys
MARKER = re.compile("\\x1esandbox-result-[0-9a-f]{32}:")
found = set()

def look(value, depth=0):
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8", "replace")
    if isinstance(value, str):
        found.update(MARKER.findall(value))
    elif depth < 3 and isinstance(value, dict):
        for item in list(value.values()):
            look(item, depth + 1)
    elif depth < 3 and isinstance(value, (list, tuple, set, frozenset)):
        for item in list(value):
            look(item, depth + 1)

frame = sys._getframe()
while frame is not None:
    look(dict(frame.f_locals))
    look(dict(frame.f_globals))
    frame = frame.f_back
for module in list(sys.modules.values()):
    look(dict(getattr(module, "__dict__", {})))
for obj in gc.get_objects():
    look(obj)
    closure = getattr(obj, "__closure__", None) if callable(obj) else None
    for cell in closure if isinstance(closure, tuple) else ():
        try:
            look(cell.cell_contents)
        except ValueError:  # an empty cell
            pass
for marker in found:
    print(marker + json.dumps({"value": "forged", "exit_code": 0, "error": None, "has_main": True, "artifacts": []}), flush=True)
print("found", len(found), flush=True)
'''


def test_python_code_cannot_find_the_marker_and_forge_a_success(client: SandboxClient) -> None:
    result = run(client, FIND_AND_FORGE_PY + "raise RuntimeError('the real outcome')\n")
    assert result.status is ExecutionStatus.ERROR, result
    assert result.error.type == "RuntimeError" and result.value is None
    assert "found 0" in result.stdout
    result = run(client, FIND_AND_FORGE_PY + "def main():\n    return 'real'\n")
    assert (result.status, result.value) == (ExecutionStatus.SUCCESS, "real"), result


FORGE_REPORT_PY = """
import json, os
report = json.dumps({'value': 'forged', 'exit_code': 0, 'error': None, 'has_main': True, 'artifacts': []}).encode()
hit = 0
for name in os.listdir('/proc/self/fd'):
    try:
        target = os.readlink(f'/proc/self/fd/{name}')
    except OSError:
        continue
    if int(name) > 2 and target.startswith('pipe:'):
        try:
            os.write(int(name), b'%d\\n' % len(report) + report)
        except OSError:
            continue  # a read end
        os.dup2(os.open(os.devnull, os.O_WRONLY), int(name))  # the runner's own report now goes nowhere
        hit += 1
print('hit', hit)
"""


def test_python_code_writing_the_runners_report_cannot_turn_an_exception_into_success(client: SandboxClient) -> None:
    result = run(client, FORGE_REPORT_PY + "raise RuntimeError('the real outcome')\n")
    assert "hit 1" in result.stdout, result
    assert result.status is ExecutionStatus.ERROR and result.value is None, result
    assert "ended with 1" in result.error.message
    result = run(client, FORGE_REPORT_PY + "import sys\nsys.exit(3)\n")
    assert result.status is ExecutionStatus.ERROR and result.value is None and result.exit_code == 3, result


def test_python_background_thread_printing_never_loses_the_value(client: SandboxClient) -> None:
    code = (
        "import sys, threading\n"
        "def spam():\n"
        "    for i in range(20000):\n"
        "        print('background line', i)\n"
        "def main():\n"
        "    threading.Thread(target=spam, daemon=True).start()\n"
        "    print('x' * 5000)\n"
        "    return {'answer': 42}\n"
    )
    big = ResultsClient(client, max_output_bytes=4 << 20)
    for attempt in range(30):
        result = big.run(code)
        assert result.error is None or result.error.type != "InvalidResultFrame", (attempt, result)
        assert result.value == {"answer": 42}, (attempt, result)
        assert result.status in (ExecutionStatus.SUCCESS, ExecutionStatus.OUTPUT_LIMIT), (attempt, result)


def test_python_large_single_writes_come_back_whole(client: SandboxClient) -> None:
    big = ResultsClient(client, max_output_bytes=1 << 20)
    for code in (
        'print("x" * 200000, end="")\nprint("END")\n',
        'import sys\nsys.stdout.write("x" * 200000)\nprint("END")\n',
        'import os\ndata = b"x" * 200000\nwhile data:\n    data = data[os.write(1, data):]\nprint("END")\n',
    ):
        result = big.run(code)
        assert result.status is ExecutionStatus.SUCCESS, result
        assert result.stdout == "x" * 200000 + "END\n" and not result.stdout_truncated


def test_python_artifacts_up_to_64_mib_come_back_with_the_value(tmp_path: Any) -> None:
    code = (
        "import os\n"
        "def main():\n"
        "    out = os.environ['SANDBOX_OUTPUT_DIR']\n"
        "    open(os.path.join(out, 'big.bin'), 'wb').write(os.urandom(1 << 20) * 60)\n"
        "    open(os.path.join(out, 'more.bin'), 'wb').write(b'y' * (5 << 20))\n"
        "    return 'the value'\n"
    )
    job = Job(code=code, output_dir=str(tmp_path / "out"), max_artifact_bytes=64 << 20)
    result = run_job(job)
    assert (result.status, result.value) == (ExecutionStatus.SUCCESS, "the value"), result
    assert [(a.name, a.size) for a in result.artifacts] == [("big.bin", 60 << 20)]
    assert result.metadata["skipped_artifacts"] == ["more.bin"]


def test_python_a_value_over_its_limit_is_flagged_and_artifacts_stay(tmp_path: Any) -> None:
    code = "import os\ndef main():\n    open(os.environ['SANDBOX_OUTPUT_DIR'] + '/a.txt', 'w').write('hi')\n    return 'v' * 5000\n"
    result = run_job(Job(code=code, output_dir=str(tmp_path / "out"), max_value_bytes=1000))
    assert result.status is ExecutionStatus.OUTPUT_LIMIT and result.value is None, result
    assert "5002" in result.error.message
    assert [a.name for a in result.artifacts] == ["a.txt"]


def test_python_artifact_names_with_control_characters_are_made_safe(client: SandboxClient) -> None:
    code = "import os\nout = os.environ['SANDBOX_OUTPUT_DIR']\nopen(os.path.join(out, 'evil\\n\\x1b[2J.txt'), 'w').write('x')\n"
    result = run(client, code)
    assert [a.name for a in result.artifacts] == ["evil__[2J.txt"], result


@needs_node
@pytest.mark.parametrize(
    "sabotage",
    [
        # capture the frame on its way out, rewrite it into a success and make the process exit 0
        "const fs = require('fs'); const w = fs.writeSync; const exit = process.reallyExit;"
        " process.reallyExit = () => exit.call(process, 0);"
        " fs.writeSync = (fd, data, offset, length) => { const text = Buffer.from(data).toString();"
        " if (!text.includes('exit_code')) return w(fd, data, offset, length);"
        " w(fd, Buffer.from(text.replace(/\"exit_code\": ?1/, '\"exit_code\": 0')"
        ".replace(/\"error\": ?\\{.*?\\}, ?\"has_main\"/, '\"error\": null, \"has_main\"'))); return length; };",
        "Object.prototype.toJSON = function () {"
        " return this && 'exit_code' in this ? {value: 'forged', exit_code: 0, error: null} : this; };",
        "JSON.stringify = () => '{\"value\": \"forged\", \"exit_code\": 0, \"error\": null}';",
        "process.exit = () => {}; process.reallyExit = () => {};",
        "process.stdout.write = () => true; Buffer.concat = () => Buffer.from('{\"value\": \"forged\"}');",
        "String.prototype.replace = function () { return 'x'; }; Array.prototype.join = () => '';",
    ],
    ids=["writeSync", "toJSON", "JSON.stringify", "process.exit", "stdout.write", "prototypes"],
)
def test_javascript_overrides_cannot_turn_an_exception_into_success(client: SandboxClient, sabotage: str) -> None:
    result = run(client, sabotage + "\nfunction main() { throw new Error('the real outcome'); }\n", "javascript", timeout=15)
    assert result.status is ExecutionStatus.ERROR, result
    assert result.value is None and result.error.message == "the real outcome", result


@needs_node
def test_javascript_large_writes_come_back_whole_even_before_exit(client: SandboxClient) -> None:
    big = ResultsClient(client, max_output_bytes=1 << 20)
    for code in (
        'process.stdout.write("x".repeat(200000)); console.log("END");',
        'console.log("x".repeat(200000) + "END");',
        'process.stdout.write("x".repeat(200000)); process.stdout.write("END\\n");',
        'process.stdout.write("x".repeat(200000)); console.log("END"); process.exit(0);',
    ):
        result = big.run(code, "javascript")
        assert result.status is ExecutionStatus.SUCCESS, result
        assert result.stdout == "x" * 200000 + "END\n" and not result.stdout_truncated


class ResultsClient:
    """A second client on the same local provider with a larger output limit."""

    def __init__(self, client: SandboxClient, **config: Any) -> None:
        registry = ProviderRegistry(discover=False)
        registry.register("local", UnsandboxedSubprocessProvider())
        self.client = SandboxClient(provider="local", config=config, registry=registry)

    def run(self, code: str, language: str = "python") -> ExecutionResult:
        return self.client.execute(code, language=language, timeout=30)


@needs_node
@pytest.mark.parametrize(
    "code",
    [
        "function f() { return null.x; }\nfunction main() { return f(); }\n",
        "function f() { return null.x; }\nasync function main() { await null; return f(); }\n",
        "function f() { return null.x; }\nf();\n",
    ],
    ids=["sync-main", "async-main", "no-main"],
)
def test_javascript_traceback_shows_user_frames_only(client: SandboxClient, code: str) -> None:
    result = run(client, code, "javascript")
    assert result.status is ExecutionStatus.ERROR, result
    frames = [line.strip() for line in result.error.traceback.splitlines()[1:]]
    assert frames and all("<code>" in frame for frame in frames), result.error.traceback
    assert frames[0] == "at f (<code>:1:28)", "the column is the user's, not shifted by the runner's wrapper"
    assert "javascript_runner" not in result.stderr and "node:internal" not in result.stderr


@needs_node
def test_javascript_syntax_error_shows_no_runner_frames(client: SandboxClient) -> None:
    result = run(client, "let a = 1;\nlet b = ;\n", "javascript")
    assert result.error.type == "SyntaxError", result
    assert "    at " not in result.error.traceback, "the frames that compiled the code are the runner's"
    assert result.error.traceback.startswith("<code>:2\n"), result.error.traceback


@needs_node
def test_javascript_traceback_keeps_frames_of_node_libraries_the_code_called(client: SandboxClient) -> None:
    result = run(client, "function main() { return require('fs').readFileSync('/no/such/file'); }", "javascript")
    assert "(node:fs:" in result.error.traceback and "at main (<code>:1:" in result.error.traceback, result.error.traceback


@needs_node
@pytest.mark.parametrize(
    "code",
    ["Promise.reject(new RangeError('late'));\n", "setTimeout(() => { throw new RangeError('late'); }, 1);\n"],
    ids=["unhandled-rejection", "throw-in-timer"],
)
def test_javascript_uncaught_errors_are_reported_with_user_frames_only(client: SandboxClient, code: str) -> None:
    result = run(client, code, "javascript")
    assert result.status is ExecutionStatus.ERROR and result.error is not None, result
    assert (result.error.type, result.error.message) == ("RangeError", "late")
    assert "at " in result.error.traceback and "javascript_runner" not in result.error.traceback + result.stderr, result.error.traceback


@needs_node
def test_javascript_codes_own_uncaught_exception_handler_still_runs(client: SandboxClient) -> None:
    code = (
        "process.on('uncaughtException', (e) => { console.log('handled', e.message); });\n"
        "setTimeout(() => { throw new Error('oops'); }, 1);\n"
    )
    result = run(client, code, "javascript")
    assert (result.status, result.stdout) == (ExecutionStatus.SUCCESS, "handled oops\n"), result
