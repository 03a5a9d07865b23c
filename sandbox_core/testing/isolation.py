"""The isolation profile: what a sandbox must prevent, checked by running attacks in it.

The conformance kit checks that a provider runs code correctly; this profile checks that the code
cannot get out. The cases (:mod:`sandbox_core.testing.isolation_cases`: each one's code, bounds
and judgement, defined once) have two front ends:

- :class:`ProviderIsolation`, a second kit class a provider's tests opt into::

      from sandbox_core.testing import ProviderIsolation

      class TestMyProviderIsolation(ProviderIsolation):
          supports_javascript = True

          @pytest.fixture
          def provider_name(self):
              return "my_provider"

          @pytest.fixture
          def provider_config(self):
              return {"endpoint": "http://127.0.0.1:9000"}

- ``sandbox check-isolation [PROVIDER] [--json]``, which runs :func:`check_isolation` against a
  configured provider (a live E2B or AgentRun account, say) and prints one verdict per case.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Iterator, Sequence
from typing import Any

import attrs
import pytest

from sandbox_core.client import SandboxClient
from sandbox_core.errors import ProviderError, SandboxError
from sandbox_core.model import ExecutionResult
from sandbox_core.testing.conformance import ProviderFixtures
from sandbox_core.testing.hostbait import HostBait
from sandbox_core.testing.isolation_cases import (
    CASE_NAMES,
    CASES,
    Bounds,
    CaseFailed,
    Execute,
    IsolationCase,
    Probe,
    describe,
)

__all__ = ["CASES", "CASE_NAMES", "Bounds", "CaseReport", "ProviderIsolation", "Verdict", "check_isolation", "run_case"]


class Verdict(str, enum.Enum):
    """A case's outcome: passed, failed, or skipped (a capability the provider does not have)."""

    PASS = "pass"
    FAIL = "fail"
    SKIP = "skip"


@attrs.frozen
class CaseReport:
    """The verdict on one case, with the evidence it rests on."""

    case: str
    verdict: Verdict
    evidence: str
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"case": self.case, "verdict": self.verdict.value, "evidence": self.evidence, "seconds": round(self.seconds, 3)}


def run_case(case: IsolationCase, probe: Probe) -> CaseReport:
    """Run one case and judge it; a result the judgement cannot read fails the case, saying why."""
    started = time.monotonic()
    try:
        verdict, evidence = Verdict.PASS, case.check(probe)
    except CaseFailed as failed:
        verdict, evidence = Verdict.FAIL, str(failed)
    except SandboxError:
        raise  # configuration problems concern every case: the caller reports them once
    except (LookupError, TypeError, ValueError, AttributeError) as exc:
        # The probe "succeeded" but its value is not what the probe returns: a provider bug.
        verdict, evidence = Verdict.FAIL, f"the probe's result is not what it returned ({type(exc).__name__}: {exc})"
    return CaseReport(case.name, verdict, evidence, time.monotonic() - started)


def _runs(execute: Execute, language: str) -> ExecutionResult:
    code = "def main():\n    return 'ok'\n" if language == "python" else "function main() { return 'ok'; }\n"
    return execute(code, language=language, timeout=60)


def check_isolation(
    execute: Execute,
    *,
    javascript: bool | None = None,
    bounds: Bounds | None = None,
    cases: Sequence[str] | None = None,
) -> list[CaseReport]:
    """Run the profile (or the named ``cases``) through ``execute`` and return one report per case.

    ``javascript=None`` asks the provider whether it runs JavaScript (a trivial program) and skips
    the JavaScript cases when it does not. Raises ``ValueError`` for an unknown case name and
    :class:`~sandbox_core.errors.ProviderError` when the provider cannot run a trivial Python program at all.
    """
    unknown = sorted(set(cases or ()) - set(CASE_NAMES))
    if unknown:
        raise ValueError(f"unknown isolation case(s): {', '.join(unknown)}; choose from: {', '.join(CASE_NAMES)}")
    selected = [case for case in CASES if not cases or case.name in cases]
    first = _runs(execute, "python")
    if first.value != "ok":
        raise ProviderError(f"the provider cannot run a trivial Python program: {describe(first)}")
    no_javascript = ""
    if javascript is None and any(case.language == "javascript" for case in selected):
        probe_js = _runs(execute, "javascript")
        javascript = probe_js.value == "ok"
        no_javascript = f"the provider did not run a trivial JavaScript program: {describe(probe_js)}"
    reports = []
    with HostBait() as bait:
        probe = Probe(execute=execute, bait=bait, bounds=bounds or Bounds())
        for case in selected:
            if case.language == "javascript" and not javascript:
                reports.append(CaseReport(case.name, Verdict.SKIP, no_javascript or "JavaScript is not supported"))
            else:
                reports.append(run_case(case, probe))
    return reports


class ProviderIsolation(ProviderFixtures):
    """Base class of a provider's isolation tests (opt-in); see the module docstring."""

    supports_javascript: bool = False
    """The provider runs JavaScript: the JavaScript cases run too."""
    bounds: Bounds = Bounds()
    """How far each attack goes; set them above the limits the provider config puts in force."""

    @pytest.fixture
    def host_bait(self) -> Iterator[HostBait]:
        with HostBait() as bait:
            yield bait

    def test_provider_runs_code(self, sandbox_client: SandboxClient) -> None:
        """Without this, every case below would fail for a reason that has nothing to do with isolation."""
        result = _runs(sandbox_client.execute, "python")
        assert result.value == "ok", describe(result)

    @pytest.mark.parametrize("case", CASES, ids=CASE_NAMES)
    def test_isolation(self, case: IsolationCase, sandbox_client: SandboxClient, host_bait: HostBait) -> None:
        if case.language == "javascript" and not self.supports_javascript:
            pytest.skip(f"{type(self).__name__}.supports_javascript is off")
        report = run_case(case, Probe(execute=sandbox_client.execute, bait=host_bait, bounds=self.bounds))
        if report.verdict is Verdict.FAIL:
            pytest.fail(f"{case.name} ({case.summary}): {report.evidence}", pytrace=False)
