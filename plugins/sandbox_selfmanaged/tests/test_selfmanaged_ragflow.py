"""RAGFlow's own client against ``POST /run``: what an unchanged RAGFlow sees (real gVisor).

Requests are sent as RAGFlow's ``self_managed`` provider sends them (a JSON body of ``code_b64``,
``language`` and ``arguments``, a ``Content-Type`` header and no token), and results are read as
RAGFlow's code component reads them: an execution failed if and only if ``stderr`` is set and
``stdout`` is empty. The executor runs with ``--ragflow-defaults``, as the deploy recipe starts it.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from selfmanaged_support import EXECUTOR, Executor, assert_clean_shutdown, free_port, require_gvisor, start_executor

from sandbox_core.model import Artifact, ErrorInfo, ExecutionResult, ExecutionStatus
from sandbox_selfmanaged.service.ragflow import MAX_ARTIFACT_FILE_BYTES, to_ragflow

RECIPE = Path(__file__).resolve().parents[3] / "deploy" / "ragflow"


@pytest.fixture(scope="module")
def ragflow_executor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Executor]:
    """Token-less on loopback with RAGFlow's defaults; small pools to spare the machine."""
    running = start_executor(
        tmp_path_factory.mktemp("ragflow"),
        "--ragflow-defaults", "--python-pool-size", "1", "--javascript-pool-size", "1",
        token=None,
    )
    yield running
    assert_clean_shutdown(running)


def ragflow_run(executor: Executor, code: str, language: str = "python", arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    """What RAGFlow's self_managed provider does: POST {endpoint}/run, JSON, Content-Type only."""
    payload = {
        "code_b64": base64.b64encode(code.encode("utf-8")).decode("utf-8"),
        "language": language,
        "arguments": arguments or {},
    }
    response = httpx.post(
        f"{executor.url}/run",
        content=json.dumps(payload),
        headers={"Content-Type": "application/json"},
        timeout=120,
        trust_env=False,
    )
    assert response.status_code == 200, (response.status_code, response.text)
    body: dict[str, Any] = response.json()
    return body


def component_error(body: dict[str, Any]) -> str | None:
    """RAGFlow's code component rule: an error iff stderr is set and stdout is empty."""
    if body.get("stderr") and not body.get("stdout"):
        return str(body["stderr"])
    return None


# -- failures look like failures --------------------------------------------------------------------


def test_success_is_not_an_error(ragflow_executor: Executor) -> None:
    code = "def main(name):\n    print('hello', name)\n    return {'n': len(name)}\n"
    body = ragflow_run(ragflow_executor, code, arguments={"name": "Ada"})
    assert component_error(body) is None
    assert body["status"] == "success" and body["stdout"] == "hello Ada\n"
    assert body["result"] == {"present": True, "value": {"n": 3}, "type": "json"}
    assert body["full_stdout"] is None and body["full_stderr"] is None


def test_exception_after_a_print_is_an_error_with_the_traceback(ragflow_executor: Executor) -> None:
    code = "def main():\n    print('partial result')\n    raise ValueError('bad input')\n"
    body = ragflow_run(ragflow_executor, code)
    error = component_error(body)
    assert error is not None, body
    assert "ValueError: bad input" in error and "Traceback" in error
    assert body["status"] == "program_error" and body["stdout"] == ""
    assert body["full_stdout"] == "partial result\n" and "ValueError" in body["full_stderr"]


def test_nodejs_exception_after_a_log_is_an_error(ragflow_executor: Executor) -> None:
    code = "async function main(args) {\n  console.log('partial');\n  throw new Error('node failed');\n}\nmodule.exports = { main };\n"
    body = ragflow_run(ragflow_executor, code, "nodejs")
    error = component_error(body)
    assert error is not None and "node failed" in error, body
    assert body["full_stdout"] == "partial\n"


def test_silent_nonzero_exit_is_an_error_with_a_reason(ragflow_executor: Executor) -> None:
    body = ragflow_run(ragflow_executor, "import sys\nprint('about to fail')\nsys.exit(3)\n")
    assert component_error(body) == "the program exited with code 3", body
    assert body["exit_code"] == 3 and body["full_stdout"] == "about to fail\n"


def test_timeout_is_an_error_with_ragflows_reason(ragflow_executor: Executor) -> None:
    code = "import time\nprint('started', flush=True)\ntime.sleep(600)\n"
    body = ragflow_run(ragflow_executor, code)
    assert component_error(body) == "Execution timeout", body
    assert body["status"] == "resource_limit_exceeded" and body["resource_limit_type"] == "time"
    assert body["exit_code"] == -124 and body["full_stdout"] == "started\n"
    assert "10s" in body["detail"], "--ragflow-defaults gives RAGFlow's 10 s timeout"


def test_memory_kill_is_an_error_with_ragflows_reason(ragflow_executor: Executor) -> None:
    code = """
blocks = []
for step in range(32):  # 16 MiB steps, up to twice RAGFlow's 256 MiB limit
    blocks.append(bytearray(16 << 20))
    print("allocated", (step + 1) * 16, "MiB", flush=True)
print("survived")
"""
    body = ragflow_run(ragflow_executor, code)
    assert component_error(body) == "Memory limit exceeded (killed by OOM)", body
    assert body["status"] == "resource_limit_exceeded" and body["resource_limit_type"] == "memory"
    assert "allocated 16 MiB" in body["full_stdout"] and "survived" not in body["full_stdout"]


def test_rarer_failures_are_errors_too() -> None:
    """The mapping itself, for outcomes that are slow or hard to provoke in a sandbox."""
    traceback = "Traceback (most recent call last):\nValueError: late\n"
    cut = ExecutionResult(
        status=ExecutionStatus.ERROR, stdout="so far\n", stderr="noise " * 10, stderr_truncated=True, exit_code=1,
        error=ErrorInfo(type="ValueError", message="late", traceback=traceback),
    )
    body = to_ragflow(cut)
    assert component_error(body) == ("noise " * 10).rstrip() + "\n" + traceback, "a cut-off traceback is added back"
    flood = ExecutionResult(status=ExecutionStatus.OUTPUT_LIMIT, stdout="x" * 100, stdout_truncated=True, exit_code=0)
    assert component_error(to_ragflow(flood)) == "Output limit exceeded"
    assert to_ragflow(flood)["full_stdout"] == "x" * 100
    broken = ExecutionResult.provider_failure("self_managed", "gVisor could not start a sandbox")
    assert component_error(to_ragflow(broken)) == "ProviderError: gVisor could not start a sandbox"
    assert to_ragflow(broken)["status"] == "program_runner_error"


def test_artifact_names_and_sizes_follow_ragflows_rules() -> None:
    def artifact(name: str, size: int = 1) -> Artifact:
        return Artifact(name=name, mime_type="application/octet-stream", size=size, content=b"x" * size)

    names = ["ok.csv", "sub/deep.csv", "..sneaky.csv", "bell\a.csv", "big.png", "empty.json", "shout.SVG"]
    sizes = {"big.png": MAX_ARTIFACT_FILE_BYTES + 1, "empty.json": 0}
    result = ExecutionResult(status=ExecutionStatus.SUCCESS, artifacts=tuple(artifact(n, sizes.get(n, 1)) for n in names))
    kinds = [(a["name"], a["mime_type"]) for a in to_ragflow(result)["artifacts"]]
    assert kinds == [("ok.csv", "text/csv"), ("shout.SVG", "image/svg+xml")]


# -- RAGFlow's conventions ----------------------------------------------------------------------


def test_main_guard_does_not_run_as_in_ragflow(ragflow_executor: Executor) -> None:
    code = "def main():\n    return __name__\n\nif __name__ == '__main__':\n    print('guarded block ran')\n"
    body = ragflow_run(ragflow_executor, code)
    assert body["status"] == "success" and body["stdout"] == "", body
    assert body["result"]["value"] == "main"


def test_ragflow_defaults_set_timeout_and_memory(ragflow_executor: Executor) -> None:
    limits = ragflow_executor.execute("pass")["metadata"]["limits"]
    assert limits["timeout"] == 10.0 and limits["memory_mb"] == 256


def test_artifacts_come_back_in_ragflows_shape_and_rules(ragflow_executor: Executor) -> None:
    code = r"""
import os

def write(path, data):
    with open(path, "wb") as handle:
        handle.write(data)

def main():
    write("artifacts/data.csv", b"a,b\n1,2\n")
    write("artifacts/chart.PNG", b"\x89PNG\r\n\x1a\n")
    write("artifacts/notes.txt", b"not an allowed type")
    write("artifacts/.hidden.png", b"hidden")
    write("artifacts/empty.json", b"")
    os.makedirs("artifacts/nested")
    write("artifacts/nested/deep.png", b"nested")
    os.symlink("data.csv", "artifacts/link.csv")
    write("plot.svg", b"<svg/>")          # saved next to the code: promoted, as RAGFlow does
    write("scratch.txt", b"left alone")   # not an artifact type: not promoted
"""
    body = ragflow_run(ragflow_executor, code)
    assert body["status"] == "success", body
    assert body["artifacts"] == [
        {"name": "chart.PNG", "mime_type": "image/png", "size": 8, "content_b64": base64.b64encode(b"\x89PNG\r\n\x1a\n").decode()},
        {"name": "data.csv", "mime_type": "text/csv", "size": 8, "content_b64": base64.b64encode(b"a,b\n1,2\n").decode()},
        {"name": "plot.svg", "mime_type": "image/svg+xml", "size": 6, "content_b64": base64.b64encode(b"<svg/>").decode()},
    ]


def test_at_most_ten_artifacts(ragflow_executor: Executor) -> None:
    code = "for n in range(12):\n    open(f'artifacts/table{n:02}.csv', 'w').write('x\\n')\n"
    body = ragflow_run(ragflow_executor, code)
    assert [a["name"] for a in body["artifacts"]] == [f"table{n:02}.csv" for n in range(10)]


def test_nodejs_artifacts_folder_exists_and_is_collected(ragflow_executor: Executor) -> None:
    code = "const fs = require('fs');\nfunction main() {\n  fs.writeFileSync('artifacts/out.json', '{\"ok\":true}');\n  return 1;\n}\n"
    body = ragflow_run(ragflow_executor, code, "nodejs")
    assert body["status"] == "success", body
    content_b64 = base64.b64encode(b'{"ok":true}').decode()
    assert body["artifacts"] == [{"name": "out.json", "mime_type": "application/json", "size": 11, "content_b64": content_b64}]


def test_v1_execute_keeps_its_own_conventions(ragflow_executor: Executor) -> None:
    """The RAGFlow rules belong to /run: /v1/execute still runs code as __main__."""
    result = ragflow_executor.execute("def main():\n    return __name__\n")
    assert result["value"] == "__main__"


# -- the optional code policy, as RAGFlow's executor applied its static checks -----------------------


def test_code_policy_refuses_on_run_as_ragflows_executor_did(tmp_path: Path) -> None:
    executor = start_executor(
        tmp_path, "--ragflow-defaults", "--languages", "python", "--python-pool-size", "1",
        token=None, extra_env={"SANDBOX_CODE_POLICY": "ragflow"},
    )
    try:
        refused = ragflow_run(executor, "from subprocess import Popen\n\ndef main():\n    return eval('1')\n")
        assert component_error(refused) == "Line 1: import from subprocess\nLine 4: call eval()", refused
        assert refused["status"] == "program_runner_error" and refused["exit_code"] == -999
        assert refused["detail"] == "Code is unsafe"
        allowed = ragflow_run(executor, "import json\n\ndef main():\n    return json.loads('[1]')\n")
        assert allowed["status"] == "success" and allowed["result"]["value"] == [1]
        assert "/run refuses code by the 'ragflow' code policy" in executor.log()
    finally:
        assert_clean_shutdown(executor)


def test_an_unknown_code_policy_stops_the_executor_at_start(tmp_path: Path) -> None:
    executor = start_executor(tmp_path, token=None, wait="none", extra_env={"SANDBOX_CODE_POLICY": "paranoid"})
    executor.process.wait(60)
    assert executor.stop() == 2
    assert "SANDBOX_CODE_POLICY='paranoid' names no code policy" in executor.log()


# -- the deploy recipe (deploy/ragflow) ----------------------------------------------------------


class _ComposeLoader(yaml.SafeLoader):
    """Reads Compose's ``!override`` / ``!reset`` merge tags as the plain values they carry."""


def _tagged(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node)
    return loader.construct_scalar(node)  # type: ignore[arg-type]


for _tag in ("!override", "!reset"):
    _ComposeLoader.add_constructor(_tag, _tagged)


def recipe_service() -> dict[str, Any]:
    compose = yaml.load((RECIPE / "docker-compose.sandbox-core.yml").read_text(), Loader=_ComposeLoader)
    service: dict[str, Any] = compose["services"]["sandbox-executor-manager"]
    return service


def recipe_command() -> list[str]:
    """The compose command, with every ``${VAR:-default}`` at its default."""
    return [re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(part)) for part in recipe_service()["command"]]


def test_recipe_replaces_ragflows_service_without_privileged_mode_or_docker_socket() -> None:
    service = recipe_service()
    assert service["privileged"] is False and service["ports"] == []
    assert service["volumes"] == ["/sys/fs/cgroup:/sys/fs/cgroup:rw"], "no Docker socket"
    assert service["cap_drop"] == ["ALL"]
    assert sorted(service["cap_add"]) == ["DAC_OVERRIDE", "SETFCAP", "SETGID", "SETUID", "SYS_ADMIN", "SYS_CHROOT"]
    assert "no-new-privileges:true" in service["security_opt"]
    dockerfile = (RECIPE / "Dockerfile").read_text()
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", dockerfile, re.M).group(1))  # type: ignore[union-attr]
    assert cmd == recipe_command(), "the image's CMD and the compose command must stay equal"


def test_recipe_command_line_serves_ragflow_with_only_the_granted_capabilities(tmp_path: Path) -> None:
    """The recipe's command line, run as the container would run it: root with only the capabilities
    the compose file grants and no_new_privs (no Docker here). Only addresses change: loopback for
    0.0.0.0 and the Docker networks, a free port, a scratch state directory."""
    require_gvisor()
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to run the recipe with its capabilities"
    state_dir = tmp_path / "state"
    swaps = {"0.0.0.0": "127.0.0.1", "172.16.0.0/12": "127.0.0.0/8", "/var/lib/sandbox-executor": str(state_dir)}
    command = [swaps.get(part, part) for part in recipe_command()]
    assert command[:2] == ["serve", "--ragflow-defaults"] and swaps.keys() <= set(recipe_command())
    capabilities = ",".join(f"+{name.lower()}" for name in recipe_service()["cap_add"])
    port = free_port()
    log_path = tmp_path / "executor.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [setpriv, "--no-new-privs", "--inh-caps", "-all", "--bounding-set", f"-all,{capabilities}", "--",
             EXECUTOR, *command, "--port", str(port)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    executor = Executor(process, f"http://127.0.0.1:{port}", None, state_dir, log_path)
    try:
        health = _wait_healthy(executor)
        assert {name: entry["pool"]["target"] for name, entry in health["languages"].items()} == {"python": 3, "javascript": 3}
        body = ragflow_run(executor, "def main(a, b):\n    return a * b\n", arguments={"a": 6, "b": 7})
        assert body["status"] == "success" and body["result"]["value"] == 42, body
    finally:
        assert_clean_shutdown(executor)


def _wait_healthy(executor: Executor, attempts: int = 900) -> dict[str, Any]:
    for _ in range(attempts):
        if executor.process.poll() is not None:
            raise AssertionError(f"executor exited with {executor.process.returncode}:\n{executor.log()[-3000:]}")
        try:
            response = executor.http.get("/healthz")
            if response.status_code == 200:
                health: dict[str, Any] = response.json()
                return health
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"executor never became healthy:\n{executor.log()[-3000:]}")
