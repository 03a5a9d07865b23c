"""The conformance kit itself: each of its tests fails for a provider that breaks what it checks.

The kit is run with ``pytester`` against the mutants of ``conformance_mutants.py``, each a working
provider broken in one way. For each mutant the tests that must catch it are run together with a
control test the mutant must still pass (so a mutant that breaks everything proves nothing).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox_core.testing import ProviderConformance

MUTANTS_SOURCE = Path(__file__).with_name("conformance_mutants.py").read_text(encoding="utf-8")

KIT_TESTS = sorted(name for name in dir(ProviderConformance) if name.startswith("test_"))

MUST_FAIL: dict[str, set[str]] = {
    "drops_arguments": {
        "test_main_return_value",
        "test_arguments_are_data",
        "test_argument_types_inside",
        "test_large_arguments",
        "test_exception_with_traceback",
        "test_javascript_sync_main",
        "test_javascript_async_main",
    },
    "stringifies_arguments": {
        "test_main_return_value",
        "test_arguments_are_data",
        "test_argument_types_inside",
        "test_javascript_sync_main",
    },
    "truncates_arguments": {"test_large_arguments"},
    "wrong_value": {
        "test_main_return_value",
        "test_arguments_are_data",
        "test_argument_types_inside",
        "test_large_arguments",
        "test_prints_cannot_forge_result",
        "test_javascript_sync_main",
        "test_javascript_async_main",
    },
    "empty_value_without_main": {"test_no_main"},
    "strips_output": {
        "test_hello_world",
        "test_unicode_output",
        "test_no_main",
        "test_stderr",
        "test_nonzero_exit",
        "test_exception_with_traceback",
        "test_javascript_sync_main",
    },
    "ascii_output": {"test_unicode_output"},
    "loses_stderr": {"test_stderr"},
    "success_for_errors": {
        "test_nonzero_exit",
        "test_syntax_error",
        "test_exception_with_traceback",
        "test_value_not_json",
        "test_javascript_error",
    },
    "forgets_traceback": {"test_exception_with_traceback"},
    "trusts_printed_frames": {"test_prints_cannot_forge_result"},
    "stringifies_unserializable_values": {"test_value_not_json"},
    "ignores_timeouts": {"test_timeout_keeps_partial_output"},
    "timeout_loses_output": {"test_timeout_keeps_partial_output"},
    "never_truncates": {"test_output_truncated_and_flagged"},
    "drops_artifacts": {"test_artifacts"},
    "javascript_as_python": {"test_javascript_sync_main", "test_javascript_async_main", "test_javascript_error"},
    "javascript_does_not_await": {"test_javascript_async_main"},
    "wrong_provider_name": {"test_hello_world"},
    "unlabelled_schema": {"test_config_schema_well_formed"},
    "accepts_anything": {"test_invalid_configs_rejected"},
    "unhealthy": {"test_health"},
    "shares_folders": {"test_executions_do_not_share_files"},
    "unusable_after_shutdown": {"test_executions_after_shutdown"},
    "ignores_runtimes": {"test_unknown_runtime_is_a_clear_error"},
    "raises_when_unreachable": {"test_unreachable_backend_health_reports_it", "test_unreachable_backend_execute_reports_it"},
    "healthy_when_unreachable": {"test_unreachable_backend_health_reports_it"},
    "runs_when_unreachable": {"test_unreachable_backend_execute_reports_it"},
    "streams_twice": {
        "test_streamed_output_equals_the_result",
        "test_events_arrive_while_the_code_runs",
        "test_streaming_stops_at_the_output_limit",
    },
    "streams_at_the_end": {"test_events_arrive_while_the_code_runs"},
    "streams_past_the_limit": {"test_streaming_stops_at_the_output_limit"},
}

FLAGS = ("supports_javascript", "supports_timeout", "supports_output_limit", "supports_artifacts")
CAPABILITY_TESTS = {
    "test_timeout_keeps_partial_output": "supports_timeout",
    "test_output_truncated_and_flagged": "supports_output_limit",
    "test_streaming_stops_at_the_output_limit": "supports_output_limit",
    "test_artifacts": "supports_artifacts",
    "test_javascript_sync_main": "supports_javascript",
    "test_javascript_async_main": "supports_javascript",
    "test_javascript_error": "supports_javascript",
}


def conformance_module(mutant: str, *, flags_on: bool = True, limit_fixture: bool = True, timeout_reason: bool = True) -> str:
    """A provider author's conformance test module, for a mutant instead of a real provider."""
    flags = "".join(f"    {flag} = {flags_on}\n" for flag in FLAGS)
    if not flags_on and timeout_reason:
        flags += "    no_timeout_reason = 'the backend has no clock'\n"
    limit = "    @pytest.fixture\n    def output_limit_bytes(self):\n        return 4096\n\n" if limit_fixture else ""
    return (
        "import pytest\n"
        "from mutants import make\n"
        "from sandbox_core.testing import ProviderConformance\n\n\n"
        "class TestMutant(ProviderConformance):\n"
        f"{flags}"
        "    timeout_seconds = 1.0\n\n"
        "    @pytest.fixture\n    def provider_name(self):\n        return 'mutant'\n\n"
        f"    @pytest.fixture\n    def provider_plugin(self):\n        return make({mutant!r})\n\n"
        "    @pytest.fixture\n    def provider_config(self):\n        return {'max_output_bytes': 4096}\n\n"
        "    @pytest.fixture\n    def unreachable_config(self):\n        return {'max_output_bytes': 4096, 'backend': 'down'}\n\n"
        f"{limit}"
        "    @pytest.fixture\n    def invalid_configs(self):\n        return [({'max_output_bytes': 1}, 'max_output_bytes')]\n"
    )


def run_kit(pytester: pytest.Pytester, source: str, tests: set[str] | None = None) -> dict[str, tuple[str, str]]:
    """Run the kit; return {test name: (outcome, phase)} with outcome passed, failed or skipped."""
    pytester.makepyfile(mutants=MUTANTS_SOURCE, test_conformance=source)
    selected = [f"test_conformance.py::TestMutant::{name}" for name in sorted(tests or ())]
    recorder = pytester.inline_run("-p", "no:cacheprovider", *selected)
    outcomes: dict[str, tuple[str, str]] = {}
    for report in recorder.getreports("pytest_runtest_logreport"):
        name = report.nodeid.rsplit("::", 1)[-1]
        if report.failed or report.skipped or (report.passed and report.when == "call"):
            outcomes.setdefault(name, (report.outcome, report.when))
    return outcomes


def control_for(mutant: str) -> str:
    return next(name for name in ("test_no_main", "test_health") if name not in MUST_FAIL[mutant])


@pytest.mark.parametrize("mutant", sorted(MUST_FAIL))
def test_the_kit_catches_the_mutant(pytester: pytest.Pytester, mutant: str) -> None:
    control = control_for(mutant)
    outcomes = run_kit(pytester, conformance_module(mutant), MUST_FAIL[mutant] | {control})
    failed = {name for name, (outcome, _) in outcomes.items() if outcome == "failed"}
    assert failed == MUST_FAIL[mutant], outcomes
    # They failed on an assertion of the kit, not while setting up the client.
    assert all(outcomes[name][1] == "call" for name in failed), outcomes
    assert outcomes[control] == ("passed", "call"), outcomes


def test_every_test_of_the_kit_is_shown_to_fail_by_some_mutant() -> None:
    covered = set().union(*MUST_FAIL.values())
    assert covered == set(KIT_TESTS), f"no mutant shows these can fail: {sorted(set(KIT_TESTS) - covered)}"


def test_a_capability_left_off_is_skipped_not_passed(pytester: pytest.Pytester) -> None:
    """With every flag off, even a provider that breaks those capabilities is skipped, with the reason."""
    source = conformance_module("javascript_as_python", flags_on=False, limit_fixture=False)
    outcomes = run_kit(pytester, source)
    assert set(outcomes) == set(KIT_TESTS)
    skipped = {name for name, (outcome, _) in outcomes.items() if outcome == "skipped"}
    assert skipped == set(CAPABILITY_TESTS), outcomes
    assert all(outcome == "passed" for name, (outcome, _) in outcomes.items() if name not in skipped), outcomes
    result = pytester.runpytest("-p", "no:cacheprovider", "-rs")
    for flag in set(CAPABILITY_TESTS.values()):
        result.stdout.fnmatch_lines([f"*TestMutant.{flag} is off*"])


def test_without_the_required_fixtures_the_kit_says_what_to_define(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_conformance=(
            "from sandbox_core.testing import ProviderConformance\n\n"
            "class TestNothing(ProviderConformance):\n    pass\n"
        )
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-k", "hello_world")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*define a `provider_name` fixture*"])


def test_timeouts_are_required_unless_the_provider_says_why_not(pytester: pytest.Pytester) -> None:
    timeout_test = "test_timeout_keeps_partial_output"
    silent = conformance_module("loses_stderr", flags_on=False, limit_fixture=False, timeout_reason=False)
    assert run_kit(pytester, silent, {timeout_test})[timeout_test] == ("failed", "call")
    result = pytester.runpytest("-p", "no:cacheprovider", "-k", timeout_test)
    result.stdout.fnmatch_lines(["*TestMutant.supports_timeout is off without a reason*set no_timeout_reason*"])
    # A provider that says nothing about timeouts is held to them.
    default = conformance_module("ignores_timeouts").replace("    supports_timeout = True\n", "")
    assert "supports_timeout" not in default
    assert run_kit(pytester, default, {timeout_test})[timeout_test] == ("failed", "call")


def test_without_an_unreachable_config_those_tests_are_skipped_saying_so(pytester: pytest.Pytester) -> None:
    source = conformance_module("raises_when_unreachable").replace("    def unreachable_config(self):", "    def unused(self):")
    tests = {"test_unreachable_backend_health_reports_it", "test_unreachable_backend_execute_reports_it"}
    outcomes = run_kit(pytester, source, tests)
    assert {outcome for outcome, _ in outcomes.values()} == {"skipped"}, outcomes
    result = pytester.runpytest("-p", "no:cacheprovider", "-rs", "-k", "unreachable")
    result.stdout.fnmatch_lines(["*TestMutant defines no `unreachable_config` fixture*"])


def test_a_provider_bug_is_reported_in_one_line_naming_the_field_and_the_cause(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(mutants=MUTANTS_SOURCE, test_conformance=conformance_module("buggy"))
    result = pytester.runpytest("-p", "no:cacheprovider", "-k", "test_hello_world")
    result.assert_outcomes(failed=1)
    line = next(line for line in result.stdout.lines if "result.status is" in line)
    assert "result.status is 'provider_error', expected 'success'" in line
    assert "KeyError: 'missing_key'" in line and "raised in bend_result at mutants.py:" in line
    assert len(line) < 300, line
    assert "ExecutionResult(" not in result.stdout.str()
