"""Providers that fail the isolation profile, each in a known way, to show every case can fail.

``no_isolation`` is the local provider as it is: it runs code as a plain process on this machine,
so it fails every case about what code can see or reach. Run only with the small bounds of
``test_isolation_kit.py`` (a few processes, a few MiB), which keep the attacks harmless outside a
sandbox. The other mutants break one promise of a provider: truncating a flood, or reading the
result only from the runner's frame. This module is copied next to the generated test file of each
run, so it imports only installed packages.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import attrs

from sandbox_core import ExecutionRequest, ExecutionResult, hookimpl
from sandbox_core.model import ExecutionStatus
from sandbox_core.testing import UnsandboxedSubprocessProvider


class NeverTruncates(UnsandboxedSubprocessProvider):
    """Passes any amount of output back, like a provider with no output limit."""

    @hookimpl
    def sandbox_execute(self, request: ExecutionRequest, config: Mapping[str, Any], provider_name: str) -> ExecutionResult:
        return self._run(request, {**config, "max_output_bytes": 1 << 30}, provider_name)


class TrustsPrintedFrames(UnsandboxedSubprocessProvider):
    """Takes the result from any frame-looking line of the output, as a naive parser would."""

    FRAME = re.compile("\x1esandbox-result-[0-9a-f]{32}:(\\{.*\\})")

    @hookimpl
    def sandbox_execute(self, request: ExecutionRequest, config: Mapping[str, Any], provider_name: str) -> ExecutionResult:
        result = self._run(request, config, provider_name)
        found = self.FRAME.search(result.stdout)
        if found is None:
            return result
        frame = json.loads(found.group(1))
        return attrs.evolve(result, status=ExecutionStatus.SUCCESS, value=frame["value"], error=None, exit_code=0)


MUTANTS: dict[str, type[UnsandboxedSubprocessProvider]] = {
    "no_isolation": UnsandboxedSubprocessProvider,
    "never_truncates": NeverTruncates,
    "trusts_printed_frames": TrustsPrintedFrames,
}


def make(name: str) -> UnsandboxedSubprocessProvider:
    return MUTANTS[name]()
