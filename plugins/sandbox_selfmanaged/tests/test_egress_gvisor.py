"""Egress from real gVisor sandboxes: Python urllib and requests, Node https/fetch reach an allowed name;
everything else is refused, the sandbox has no other way out, and the next execution has no policy.

Runs ``egress_engine.py`` inside a network namespace made here (loopback only), so not one packet
can leave the machine whatever the proxy does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from selfmanaged_support import require_gvisor

HERE = Path(__file__).resolve().parent
HELLO = "ok: hello from the allowed host\n"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    require_gvisor()
    base = tmp_path_factory.mktemp("egress-gvisor")
    namespace = f"sbx-egress-{uuid.uuid4().hex[:10]}"
    subprocess.run(["ip", "netns", "add", namespace], check=True)
    try:
        addresses = ("11.0.0.10", "169.254.169.254", "10.0.0.1", "100.64.0.1", "192.168.0.1")
        commands = [["link", "set", "lo", "up"]] + [["addr", "add", f"{address}/32", "dev", "lo"] for address in addresses]
        for command in commands:
            subprocess.run(["ip", "-n", namespace, *command], check=True)
        environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
        completed = subprocess.run(
            ["nsenter", f"--net=/run/netns/{namespace}", sys.executable, str(HERE / "egress_engine.py"), str(base / "state"), str(base)],
            capture_output=True, text=True, timeout=600, env=environment,
        )
    finally:
        subprocess.run(["ip", "netns", "delete", namespace], check=False)
    lines = [line for line in completed.stdout.splitlines() if line.startswith("REPORT ")]
    assert lines, f"no report (exit {completed.returncode}):\n{completed.stderr[-4000:]}"
    parsed: dict[str, Any] = json.loads(lines[-1][len("REPORT "):])
    return parsed


def test_python_reaches_the_allowed_name_and_nothing_else(report: dict[str, Any]) -> None:
    assert report["ready"]
    python = report["python"]
    assert python["status"] == "success", python
    value = python["value"]
    assert value["env"] == "http://127.0.0.1:3128"
    assert value["https://api.example.com/"] == HELLO
    for url in ("https://other.example.com/", "https://rebind.example.com/", "https://metadata.example.com/",
                "https://169.254.169.254/", "https://2130706433/", "https://localhost/", "https://api.example.com:8443/"):
        assert value[url].startswith("refused: ") and "403" in value[url], (url, value[url])
    assert value["https://user@api.example.com/"].startswith("refused: ")
    assert "405" in value["http://api.example.com/"]
    for raw in ("raw 11.0.0.10:443", "raw 169.254.169.254:80", "raw 127.0.0.2:80"):
        assert value[raw].startswith("refused: "), (raw, value[raw])
    egress = python["egress"]
    assert egress["allowed"] == 1 and egress["refused"] >= 8
    assert {a["name"] for a in egress["attempts"] if a["allowed"]} == {"api.example.com"}


def test_python_requests_in_the_python_runtime(report: dict[str, Any]) -> None:
    result = report["requests"]
    assert result["status"] == "success", result
    assert result["value"] == {"allowed": "hello from the allowed host\n", "private": "refused: ProxyError"}


def test_the_next_execution_has_no_policy(report: dict[str, Any]) -> None:
    after = report["next"]
    assert after["value"]["https://api.example.com/"].startswith("refused: ")
    assert after["egress"]["allowed"] == 0 and after["egress"]["refused"] == 1


def test_killing_the_shim_gives_no_way_around_the_proxy(report: dict[str, Any]) -> None:
    value = report["bypass"]["value"]
    for target, answer in value.items():
        if target in ("udp", "dns"):
            assert answer.startswith("refused: "), (target, answer)
        else:
            assert answer.startswith("HTTP/1.1 403"), (target, answer)


def test_node_https_and_fetch_reach_the_allowed_name_unmodified(report: dict[str, Any]) -> None:
    node = report["node"]
    assert node["status"] == "success", node
    assert node["value"]["https"] == HELLO
    assert node["value"]["fetch"] == HELLO
    assert node["value"]["https_other"].startswith("refused: ")


def test_a_request_cannot_widen_the_operators_list(report: dict[str, Any]) -> None:
    assert report["beyond"].startswith("refused: network: ")


def test_no_refused_destination_was_ever_connected(report: dict[str, Any]) -> None:
    connections = report["connections"]
    assert connections["server"] == report["served_before_next"] + 3  # then requests, Node https and fetch
    for name, count in connections.items():
        if name != "server":
            assert count == 0, (name, connections)
