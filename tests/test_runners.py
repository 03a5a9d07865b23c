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


def run_job(job: Job, language: str = "python", tmp_path: Any = None) -> ExecutionResult:
    """Run one job through a runner directly (no provider), for job fields providers do not expose."""
    interpreter = sys.executable if language == "python" else "node"
    process = subprocess.run(
        [interpreter, str(runner_path(language))], input=job.encode(), capture_output=True, timeout=60, cwd=tmp_path, check=False
    )
    stdout, stderr = ResultStream(job.marker), BoundedCapture()
    stdout.feed(process.stdout)
    stderr.feed(process.stderr)
    return build_result(provider="direct", stdout=stdout, stderr=stderr, exit_code=process.returncode, execution_time=0.0)


# -- Python ---------------------------------------------------------------------------------------


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
