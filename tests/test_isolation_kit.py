"""The isolation profile itself: each of its cases fails for a provider that does not prevent the attack.

Like ``test_conformance_kit.py``, the kit runs with ``pytester`` against the providers of
``isolation_mutants.py``. The profile's bounds are made tiny here (8 processes, 32 MiB, 20 s),
because the mutants run code on this machine without a sandbox. That every case passes for a
real sandbox is shown by the self-managed provider's profile test, on gVisor.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from sandbox_core.testing.hostbait import HostBait
from sandbox_core.testing.isolation_cases import CASE_NAMES, METADATA_ADDRESSES, OUTSIDE_ADDRESSES

MUTANTS_SOURCE = Path(__file__).with_name("isolation_mutants.py").read_text(encoding="utf-8")

CONTROL = "test_provider_runs_code"


def _routable(address: str) -> bool:
    """Whether this machine has a route to ``address`` (a UDP connect: nothing is sent)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect((address, 53))
    except OSError:
        return False
    return True


ROUTE_CASES = {
    "no_outside_network": any(_routable(a) for a in OUTSIDE_ADDRESSES),
    "cloud_metadata_refused": any(_routable(a) for a in METADATA_ADDRESSES),
}
"""Without a sandbox, code has the machine's routes: these cases fail only where the machine has them."""

MUST_FAIL: dict[str, set[str]] = {
    "no_isolation": {
        "host_files_invisible",
        "host_environment_invisible",
        "host_processes_invisible",
        "host_loopback_unreachable",
        "fork_bomb_contained",
        "memory_bomb_contained",
        "disk_fill_stopped",
        "nothing_survives_execution",
        "timeout_kills_children",
        "javascript_host_invisible",
    }
    | {case for case, routable in ROUTE_CASES.items() if routable},
    "never_truncates": {"output_flood_truncated"},
    "trusts_printed_frames": {"result_frames_unforgeable", "javascript_result_frames_unforgeable"},
    "open_proxy": {"egress_proxy_refuses_host"},
}


def profile_module(mutant: str, *, javascript: bool = True) -> str:
    """A provider author's isolation test module, for a mutant instead of a real provider."""
    return (
        "import pytest\n"
        "from mutants import make\n"
        "from sandbox_core.testing import Bounds, ProviderIsolation\n\n\n"
        "class TestMutant(ProviderIsolation):\n"
        f"    supports_javascript = {javascript}\n"
        "    bounds = Bounds(forks=8, memory_mib=32, disk_mib=8, flood_mib=2, timeout=3.0, linger=20.0)\n\n"
        "    @pytest.fixture\n    def provider_name(self):\n        return 'mutant'\n\n"
        f"    @pytest.fixture\n    def provider_plugin(self):\n        return make({mutant!r})\n\n"
        "    @pytest.fixture\n    def provider_config(self):\n        return {'max_output_bytes': 4096}\n"
    )


def node_id(case: str) -> str:
    return f"test_isolation[{case}]"


def run_profile(pytester: pytest.Pytester, source: str, cases: set[str] | None = None) -> dict[str, tuple[str, str]]:
    """Run the profile; return {test id: (outcome, phase)} with outcome passed, failed or skipped."""
    pytester.makepyfile(mutants=MUTANTS_SOURCE, test_isolation=source)
    selected = [f"test_isolation.py::TestMutant::{name}" for name in sorted(cases or ())]
    recorder = pytester.inline_run("-p", "no:cacheprovider", *selected)
    outcomes: dict[str, tuple[str, str]] = {}
    for report in recorder.getreports("pytest_runtest_logreport"):
        name = report.nodeid.rsplit("::", 1)[-1]
        if report.failed or report.skipped or (report.passed and report.when == "call"):
            outcomes.setdefault(name, (report.outcome, report.when))
    return outcomes


@pytest.mark.parametrize("mutant", sorted(MUST_FAIL))
def test_the_profile_catches_the_mutant(pytester: pytest.Pytester, mutant: str) -> None:
    expected = {node_id(case) for case in MUST_FAIL[mutant]}
    outcomes = run_profile(pytester, profile_module(mutant), expected | {CONTROL})
    failed = {name for name, (outcome, _) in outcomes.items() if outcome == "failed"}
    assert failed == expected, outcomes
    # They failed on the profile's judgement, not while setting up.
    assert all(outcomes[name][1] == "call" for name in failed), outcomes
    assert outcomes[CONTROL] == ("passed", "call"), outcomes
    assert HostBait.processes_tagged("isolation-") == [], "a process the profile let escape is still running"


def test_every_case_is_shown_to_fail_by_some_mutant() -> None:
    covered = set().union(*MUST_FAIL.values())
    unshowable = {case for case, routable in ROUTE_CASES.items() if not routable}
    assert covered | unshowable == set(CASE_NAMES), f"no mutant shows these can fail: {sorted(set(CASE_NAMES) - covered)}"


def test_javascript_cases_are_skipped_when_the_flag_is_off(pytester: pytest.Pytester) -> None:
    javascript = {case for case in CASE_NAMES if case.startswith("javascript_")}
    outcomes = run_profile(pytester, profile_module("no_isolation", javascript=False), {node_id(c) for c in javascript})
    assert outcomes == {node_id(c): ("skipped", "call") for c in javascript}, outcomes
    result = pytester.runpytest("-p", "no:cacheprovider", "-rs", "-k", "javascript_")
    result.stdout.fnmatch_lines(["*TestMutant.supports_javascript is off*"])


def test_the_host_bait_leaves_nothing_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOX_ISOLATION_CANARY", "set before")
    with HostBait() as bait:
        assert bait.file.read_text() == bait.token
        assert HostBait.processes_tagged(bait.process_tag) == []  # the canary itself is never reported
        assert any(bait.process_tag.encode() in line for line in _cmdlines())
        with socket.create_connection(("127.0.0.1", bait.tcp_port)):
            pass
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(b"knock", ("127.0.0.1", bait.udp_port))
        assert [c.split(" to ")[0] for c in bait.contacts()] == ["TCP connection", "UDP datagram of 5 bytes"]
        assert bait.contacts() == []
        folder, tag, ports = bait.folder, bait.process_tag, (bait.tcp_port, bait.udp_port)
    assert not folder.exists()
    assert not any(tag.encode() in line for line in _cmdlines())
    assert os.environ["SANDBOX_ISOLATION_CANARY"] == "set before"
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", ports[0])) != 0


def _cmdlines() -> list[bytes]:
    lines = []
    for path in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            lines.append(path.read_bytes())
        except OSError:
            continue  # the process ended meanwhile
    return lines
