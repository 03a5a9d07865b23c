"""Output and result frames through real gVisor: large writes, forged frames, background writers, big artifacts.

Under gVisor one write to the stdout pipe stops at 64 KiB; these tests hold the runners to
writing everything (or flagging what the output limit dropped), and to a result frame that user
code can neither forge nor garble.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from selfmanaged_support import Executor

BIG = 200_000
BIG_OUTPUT = {"max_output_bytes": 1 << 20}

LARGE_WRITES = [
    ("python", 'print("x" * 200000, end="")\nprint("END")\n', "stdout"),
    ("python", 'import sys\nsys.stdout.write("x" * 200000)\nprint("END")\n', "stdout"),
    ("python", 'import sys\nsys.stdout.buffer.write(b"x" * 200000)\nprint("END")\n', "stdout"),
    ("python", 'import os\ndata = b"x" * 200000\nwhile data:\n    data = data[os.write(1, data):]\nprint("END")\n', "stdout"),
    ("python", 'import sys\nsys.stderr.write("x" * 200000)\nsys.stderr.write("END\\n")\n', "stderr"),
    ("python", 'def main():\n    print("x" * 200000, end="")\n    print("END")\n    return 1\n', "stdout"),
    ("javascript", 'console.log("x".repeat(200000) + "END");', "stdout"),
    ("javascript", 'process.stdout.write("x".repeat(200000)); process.stdout.write("END\\n");', "stdout"),
    ("javascript", 'process.stdout.write("x".repeat(200000)); console.log("END"); process.exit(0);', "stdout"),
    ("javascript", 'function main() { process.stdout.write("x".repeat(200000) + "END\\n"); process.exit(0); }', "stdout"),
    ("javascript", 'console.error("x".repeat(200000) + "END");', "stderr"),
]


@pytest.mark.parametrize(("language", "code", "stream"), LARGE_WRITES, ids=[f"{c[0]}-{i}" for i, c in enumerate(LARGE_WRITES)])
def test_a_large_single_write_comes_back_whole(executor: Executor, language: str, code: str, stream: str) -> None:
    result = executor.execute(code, language, limits=BIG_OUTPUT)
    assert result["status"] == "success", {k: v for k, v in result.items() if k not in ("stdout", "stderr")}
    assert result[stream] == "x" * BIG + "END\n", (len(result[stream]), result[stream][-20:])
    assert not result["stdout_truncated"] and not result["stderr_truncated"]


@pytest.mark.parametrize("language", ["python", "javascript"])
def test_output_over_the_limit_is_flagged(executor: Executor, language: str) -> None:
    code = 'print("x" * 200000)\n' if language == "python" else 'console.log("x".repeat(200000));'
    result = executor.execute(code, language, limits={"max_output_bytes": 100_000})
    assert result["status"] == "output_limit" and result["stdout_truncated"], result["status"]
    assert result["stdout"] == "x" * 100_000


FIND_AND_FORGE = '''
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
raise RuntimeError("the real outcome")
'''


def test_python_code_cannot_forge_a_success_frame(executor: Executor) -> None:
    result = executor.execute(FIND_AND_FORGE)
    assert result["status"] == "error" and result["value"] is None, result
    assert result["error"]["type"] == "RuntimeError" and "found 0" in result["stdout"], (result["error"], result["stderr"][-2000:])
    executor.assert_healthy()


@pytest.mark.parametrize(
    "report",
    ['{"artifacts": 5}', '{"exit_code": "0", "value": 1}', '{"error": "x"}', "[1]", '{"value": 1', '{"value": "forged", "exit_code": 0}'],
)
def test_a_bad_or_forged_report_is_an_error_not_a_500(executor: Executor, report: str) -> None:
    """Code that writes its own report into the runner's report pipe (then hides the real one and
    fails) gets an error result, whatever the report holds; the executor stays healthy."""
    code = (
        "import os\n"
        f"report = {report!r}.encode()\n"
        "for name in os.listdir('/proc/self/fd'):\n"
        "    try:\n"
        "        target = os.readlink(f'/proc/self/fd/{name}')\n"
        "    except OSError:\n"
        "        continue\n"
        "    if int(name) > 2 and target.startswith('pipe:'):\n"
        "        try:\n"
        "            os.write(int(name), b'%d\\n' % len(report) + report)\n"
        "        except OSError:\n"
        "            continue\n"
        "        os.dup2(os.open(os.devnull, os.O_WRONLY), int(name))\n"
        "raise SystemExit(4)\n"
    )
    result = executor.execute(code)
    assert result["status"] == "error" and result["value"] is None, result
    assert result["error"]["type"] == "InvalidResultFrame", result["error"]
    executor.assert_healthy()


def test_python_background_thread_printing_never_loses_the_value(executor: Executor) -> None:
    code = (
        "import threading\n"
        "def spam():\n"
        "    for i in range(20000):\n"
        "        print('background line', i)\n"
        "def main():\n"
        "    threading.Thread(target=spam, daemon=True).start()\n"
        "    print('x' * 70000)\n"
        "    return {'answer': 42}\n"
    )
    for attempt in range(30):
        result = executor.execute(code, limits={"max_output_bytes": 4 << 20})
        assert result["value"] == {"answer": 42}, (attempt, result["status"], result["error"])
        assert result["status"] == "success", (attempt, result["status"], result["error"])


@pytest.mark.parametrize(
    "sabotage",
    [
        "const fs = require('fs'); const w = fs.writeSync; process.reallyExit = () => {};"
        " fs.writeSync = (fd, data, o, l) =>"
        " w(fd, Buffer.from(Buffer.from(data).toString().replace(/\"exit_code\": ?1/, '\"exit_code\": 0')));",
        "Object.prototype.toJSON = function () { return {value: 'forged', exit_code: 0, error: null}; };",
        "JSON.stringify = () => '{\"value\": \"forged\", \"exit_code\": 0, \"error\": null}';",
        "process.exit = () => {}; process.reallyExit = () => {}; process.once = () => {};",
    ],
    ids=["writeSync", "toJSON", "JSON.stringify", "exit"],
)
def test_javascript_overrides_cannot_forge_success_or_hang(executor: Executor, sabotage: str) -> None:
    result = executor.execute(sabotage + "\nfunction main() { throw new Error('the real outcome'); }\n", "javascript", timeout=10)
    assert result["status"] == "error" and result["value"] is None, result
    assert result["error"]["message"] == "the real outcome"


def test_a_60_mib_artifact_comes_back_with_the_value_when_the_limit_allows_it(executor: Executor) -> None:
    code = (
        "import os\n"
        "def main():\n"
        "    out = os.environ['SANDBOX_OUTPUT_DIR']\n"
        "    with open(os.path.join(out, 'big.bin'), 'wb') as f:\n"
        "        for _ in range(60):\n"
        "            f.write(b'z' * (1 << 20))\n"
        "    open(os.path.join(out, 'zz-over.bin'), 'wb').write(b'y' * (5 << 20))\n"
        "    return 'the value'\n"
    )
    limits: dict[str, Any] = {"max_artifact_bytes": 64 << 20, "memory_mb": 1024}
    result = executor.execute(code, limits=limits, timeout=120)
    assert (result["status"], result["value"]) == ("success", "the value"), {k: result[k] for k in ("status", "error")}
    assert [(a["name"], a["size"]) for a in result["artifacts"]] == [("big.bin", 60 << 20)]
    assert base64.b64decode(result["artifacts"][0]["content_base64"]) == b"z" * (60 << 20)
    assert result["metadata"]["skipped_artifacts"] == ["zz-over.bin"]


def test_javascript_background_process_printing_never_loses_the_value(executor: Executor) -> None:
    writer = (
        "const end = Date.now() + 3000;"
        ' const t = setInterval(() => { process.stdout.write("y".repeat(5000) + "\\\\n"); if (Date.now() > end) clearInterval(t); }, 1);'
    )
    code = (
        "const { spawn } = require('child_process');\n"
        "async function main() {\n"
        f"  spawn(process.execPath, ['-e', '{writer}'], {{ stdio: ['ignore', 'inherit', 'inherit'] }});\n"
        "  await new Promise((resolve) => setTimeout(resolve, 500));\n"
        "  return { answer: 42, padding: 'p'.repeat(2000000) };\n"
        "}\n"
    )
    for attempt in range(8):
        result = executor.execute(code, "javascript", limits={"max_output_bytes": 16 << 20}, timeout=60)
        assert result["value"] == {"answer": 42, "padding": "p" * 2_000_000}, (attempt, result["status"], result["error"])


def test_python_background_process_printing_never_loses_the_value(executor: Executor) -> None:
    """A process the code forked keeps writing (at most ~15 MB, below the flood cap) while the frame is written."""
    code = (
        "import os, time\n"
        "def main():\n"
        "    if os.fork() == 0:\n"
        "        end = time.monotonic() + 3\n"
        "        while time.monotonic() < end:\n"
        "            os.write(1, b'y' * 5000 + b'\\n')\n"
        "            time.sleep(0.001)\n"
        "        os._exit(0)\n"
        "    time.sleep(0.3)\n"
        "    return {'answer': 42, 'padding': 'p' * 2000000}\n"
    )
    for attempt in range(8):
        result = executor.execute(code, limits={"max_output_bytes": 16 << 20}, timeout=60)
        assert result["value"] == {"answer": 42, "padding": "p" * 2_000_000}, (attempt, result["status"], result["error"])
