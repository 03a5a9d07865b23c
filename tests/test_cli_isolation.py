"""``sandbox check-isolation``, run in process against the unsandboxed local provider.

The local provider isolates nothing, so the cases chosen here (``--case``) are the harmless ones:
reading a canary file, knocking on a loopback listener, printing a bounded flood. That the whole
profile passes on a real sandbox is shown by the self-managed provider's tests.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import pytest

from sandbox_core import ExecutionRequest, ExecutionResult, hookimpl
from sandbox_core.cli import main
from sandbox_core.settings import SettingsStore
from sandbox_core.testing import UnsandboxedSubprocessProvider

SAFE_CASES = ("host_files_invisible", "host_loopback_unreachable", "output_flood_truncated")


@pytest.fixture
def local(sandbox_settings: SettingsStore, register_provider: Callable[[str, object], object]) -> SettingsStore:
    register_provider("local", UnsandboxedSubprocessProvider())
    assert main(["config", "set", "local", "max_output_bytes=4096", "--activate"]) == 0
    return sandbox_settings


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _case_options() -> list[str]:
    return [option for case in SAFE_CASES for option in ("--case", case)]


def test_json_report_per_case_and_exit_code_1_on_a_failure(local: SettingsStore, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "check-isolation", "--json", *_case_options())
    assert code == 1
    report = json.loads(out)
    assert report["provider"] == "local"
    verdicts = {case["case"]: case["verdict"] for case in report["cases"]}
    assert verdicts == {"host_files_invisible": "fail", "host_loopback_unreachable": "fail", "output_flood_truncated": "pass"}
    assert (report["passed"], report["failed"], report["skipped"]) == (1, 2, 0)
    for case in report["cases"]:
        assert set(case) == {"case", "verdict", "evidence", "seconds", "summary"}
        assert case["evidence"] and case["summary"]
    files = next(case for case in report["cases"] if case["case"] == "host_files_invisible")
    assert "read the host's canary file" in files["evidence"]


def test_text_report(local: SettingsStore, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "check-isolation", "local", *_case_options())
    assert code == 1
    lines = out.splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["FAIL", "host_files_invisible"],
        ["FAIL", "host_loopback_unreachable"],
        ["PASS", "output_flood_truncated"],
    ]
    assert "local: 1 passed, 2 failed, 0 skipped" in err


def test_all_passing_cases_exit_0(local: SettingsStore, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "check-isolation", "--case", "output_flood_truncated")
    assert code == 0, out
    assert out.startswith("PASS  output_flood_truncated")


def test_unknown_case_is_a_usage_error(local: SettingsStore, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "check-isolation", "--case", "no_such_case")
    assert (code, out) == (2, "")
    assert "unknown isolation case(s): no_such_case" in err and "host_files_invisible" in err


def test_unknown_provider_is_a_configuration_error(local: SettingsStore, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "check-isolation", "nope", "--case", "output_flood_truncated")
    assert (code, out) == (3, "")
    assert "nope" in err


class CannotRun(UnsandboxedSubprocessProvider):
    """A provider whose backend is down: every execution is a provider_error."""

    @hookimpl
    def sandbox_execute(self, request: ExecutionRequest, config: Mapping[str, Any], provider_name: str) -> ExecutionResult:
        return ExecutionResult.provider_failure(provider_name, "backend unreachable")


class ForgetsValues(UnsandboxedSubprocessProvider):
    """Reports success but drops main()'s value after the first execution's check."""

    @hookimpl
    def sandbox_execute(self, request: ExecutionRequest, config: Mapping[str, Any], provider_name: str) -> ExecutionResult:
        result = self._run(request, config, provider_name)
        return result if result.value == "ok" else attrs.evolve(result, value=None)


def test_a_provider_that_cannot_run_code_is_a_provider_failure(
    sandbox_settings: SettingsStore, register_provider: Callable[[str, object], object], capsys: pytest.CaptureFixture[str]
) -> None:
    register_provider("down", CannotRun())
    assert main(["config", "use", "down"]) == 0
    code, out, err = _run(capsys, "check-isolation", "--json")
    assert (code, out) == (4, "")
    assert "cannot run a trivial Python program: provider_error (ProviderError: backend unreachable)" in err


def test_an_unreadable_probe_result_fails_the_case_and_the_run_goes_on(
    sandbox_settings: SettingsStore, register_provider: Callable[[str, object], object], capsys: pytest.CaptureFixture[str]
) -> None:
    register_provider("forgetful", ForgetsValues())
    assert main(["config", "use", "forgetful"]) == 0
    code, out, _ = _run(capsys, "check-isolation", "--json", "--case", "host_processes_invisible", "--case", "output_flood_truncated")
    assert code == 1
    verdicts = {case["case"]: (case["verdict"], case["evidence"]) for case in json.loads(out)["cases"]}
    assert verdicts["host_processes_invisible"][0] == "fail"
    assert "the probe's result is not what it returned (TypeError" in verdicts["host_processes_invisible"][1]
    assert "output_flood_truncated" in verdicts  # judged too, not cut short by the first case


def test_bounds_change_how_far_an_attack_goes(local: SettingsStore, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "check-isolation", "--case", "output_flood_truncated", "--bound", "flood_mib=1", "--json")
    assert code == 0
    assert "of 1048576 bytes" in json.loads(out)["cases"][0]["evidence"]


@pytest.mark.parametrize(
    ("bound", "message"),
    [
        ("flood", "--bound expects NAME=VALUE"),
        ("nope=1", "unknown bound 'nope'; choose from: forks, memory_mib"),
        ("forks=many", "bound forks must be an integer, got 'many'"),
        ("timeout=inf", "bound timeout must be positive and finite"),
        ("memory_mib=0", "bound memory_mib must be positive and finite"),
    ],
)
def test_bad_bounds_are_usage_errors(local: SettingsStore, capsys: pytest.CaptureFixture[str], bound: str, message: str) -> None:
    code, out, err = _run(capsys, "check-isolation", "--bound", bound)
    assert (code, out) == (2, "")
    assert message in err
