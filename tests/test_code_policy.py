"""The optional code policy (``sandbox_core.policy``): off by default, RAGFlow's static checks when on.

The cases of RAGFlow's own security script ("dangerous import: os", "from subprocess import
Popen", eval and friends) are refused before any provider is called; ordinary code passes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from sandbox_core.client import SandboxClient
from sandbox_core.errors import ConfigurationError
from sandbox_core.hookspecs import hookimpl
from sandbox_core.model import ExecutionRequest, ExecutionResult
from sandbox_core.policy import POLICY_ENV, CodePolicy, CodePolicyError
from sandbox_core.registry import ProviderRegistry
from sandbox_core.schema import ConfigSchema


class Recorder:
    """A provider that runs nothing and remembers what reached it."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    @hookimpl
    def sandbox_config_schema(self) -> ConfigSchema:
        return ConfigSchema(fields=())

    @hookimpl
    def sandbox_execute(self, request: ExecutionRequest, config: Any) -> ExecutionResult:
        self.seen.append(request.code)
        return ExecutionResult(status="success", stdout="ran", exit_code=0)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def client(recorder: Recorder, monkeypatch: pytest.MonkeyPatch) -> Iterator[SandboxClient]:
    monkeypatch.delenv(POLICY_ENV, raising=False)
    registry = ProviderRegistry(discover=False)
    registry.register("recorder", recorder)
    registry.add_plugin(CodePolicy(), "code_policy")
    client = SandboxClient(provider="recorder", config={}, registry=registry)
    yield client
    client.close()


RAGFLOW_SECURITY_CASES = {
    "dangerous import: os": ("import os\nos.system('ls')\n", "line 1: import os"),
    "from subprocess import Popen": ("from subprocess import Popen\nPopen(['ls'])\n", "line 1: import from subprocess"),
    "submodule of a denied module": ("import os.path\n", "line 1: import os.path"),
    "from http import client": ("from http import client\n", "line 1: import http.client"),
    "eval": ("def main():\n    return eval('1 + 1')\n", "line 2: call eval()"),
    "exec": ("exec('print(1)')\n", "line 1: call exec()"),
    "__import__": ("m = __import__('o' + 's')\n", "line 1: call __import__()"),
    "getattr on builtins": ("f = getattr(__builtins__, 'ev' + 'al')\n", "line 1: call getattr()"),
    "subclass walk": ("x = ().__class__.__base__.__subclasses__()\n", "line 1: attribute __subclasses__"),
    "open": ("open('/etc/passwd').read()\n", "line 1: call open()"),
}


@pytest.mark.parametrize("case", sorted(RAGFLOW_SECURITY_CASES))
def test_ragflow_policy_refuses_ragflows_security_cases(
    case: str, client: SandboxClient, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, rule = RAGFLOW_SECURITY_CASES[case]
    monkeypatch.setenv(POLICY_ENV, "ragflow")
    with pytest.raises(CodePolicyError, match="refused by the 'ragflow' code policy") as refused:
        client.execute(code)
    assert rule in [str(v) for v in refused.value.violations]
    assert recorder.seen == [], "refused code never reaches the provider"


def test_off_by_default_everything_reaches_the_provider(client: SandboxClient, recorder: Recorder) -> None:
    result = client.execute("import os\nprint(eval('1'))\n")
    assert result.stdout == "ran" and len(recorder.seen) == 1


@pytest.mark.parametrize("value", ["", "off", "none"])
def test_policy_can_be_switched_off_explicitly(value: str, client: SandboxClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(POLICY_ENV, value)
    assert client.execute("import subprocess\n").stdout == "ran"


def test_ordinary_code_passes(client: SandboxClient, recorder: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(POLICY_ENV, "ragflow")
    code = (
        "import json, math\nfrom collections import Counter\n\n"
        "def main(xs):\n    return json.dumps({'n': math.fsum(xs), 'c': Counter(xs)})\n"
    )
    assert client.execute(code, arguments={"xs": [1, 2]}).stdout == "ran"
    assert client.execute("function main(args) { return JSON.parse('[1]'); }", language="javascript").stdout == "ran"
    assert len(recorder.seen) == 2


def test_every_violation_is_listed_with_its_line(client: SandboxClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(POLICY_ENV, "ragflow")
    with pytest.raises(CodePolicyError) as refused:
        client.execute("import math\nimport os, socket\n\nx = eval('2')\n")
    assert [str(v) for v in refused.value.violations] == ["line 2: import os", "line 2: import socket", "line 4: call eval()"]


@pytest.mark.parametrize(
    ("code", "rule"),
    [
        ("const cp = require('child_process');\ncp.execSync('ls');", "line 1: module child_process"),
        ("const fs = require(\"node:fs\");", "line 1: module fs"),
        ("import { readFileSync } from 'fs';", "line 1: module fs"),
        ("function main() {\n  return eval('1 + 1');\n}", "line 2: call eval"),
        ("const f = new Function('return 1');", "line 1: call Function"),
        ("process.binding('spawn_sync');", "line 1: call process.binding"),
    ],
)
def test_ragflow_policy_refuses_javascript_patterns(
    code: str, rule: str, client: SandboxClient, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(POLICY_ENV, "ragflow")
    with pytest.raises(CodePolicyError) as refused:
        client.execute(code, language="javascript")
    assert rule in [str(v) for v in refused.value.violations]
    assert recorder.seen == []


def test_code_that_does_not_parse_is_left_to_the_runtime(
    client: SandboxClient, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(POLICY_ENV, "ragflow")
    client.execute("import os\ndef broken(:\n")
    assert recorder.seen == ["import os\ndef broken(:\n"], "nothing of it can run: the runtime reports the SyntaxError"


def test_an_unknown_policy_fails_closed(client: SandboxClient, recorder: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(POLICY_ENV, "strict-ish")
    with pytest.raises(ConfigurationError, match="names no code policy: choose one of: ragflow, or off"):
        client.execute("print(1)")
    assert recorder.seen == []


def test_an_explicit_policy_ignores_the_environment(recorder: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(POLICY_ENV, raising=False)
    registry = ProviderRegistry(discover=False)
    registry.register("recorder", recorder)
    registry.add_plugin(CodePolicy("ragflow"), "code_policy")
    client = SandboxClient(provider="recorder", config={}, registry=registry)
    with pytest.raises(CodePolicyError):
        client.execute("import os\n")
    client.close()


def test_installed_as_a_cross_cutting_plugin_and_loaded_with_a_provider() -> None:
    """The entry point ``code_policy`` (group ``sandbox_core.plugins``) wraps installed providers' execute."""
    registry = ProviderRegistry()
    caller = registry.hook("self_managed", "sandbox_execute")
    assert any(isinstance(impl.plugin, CodePolicy) and impl.wrapper for impl in caller.get_hookimpls())
