"""Fixtures of the self-managed tests: one real executor for the session (real gVisor, no mocks).

It is stopped at the end, asserting a clean shutdown: exit code 0, state directory empty, no runsc
container left. Tests needing other flags start their own with ``start_executor``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from selfmanaged_support import GVISOR, Executor, assert_clean_shutdown, start_executor


@pytest.fixture(scope="session")
def executor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Executor]:
    """The shared executor: pool of 2 Python and 1 JavaScript sandboxes, 8 MiB request bodies."""
    running = start_executor(
        tmp_path_factory.mktemp("executor"),
        "--python-pool-size", "2",
        "--javascript-pool-size", "1",
        "--max-request-bytes", str(8 << 20),
        "--max-concurrency", "8",
    )
    yield running
    assert_clean_shutdown(running)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say once, at the end, why the gVisor tests were skipped (the same reason each skip gives)."""
    if GVISOR.problem is not None:
        terminalreporter.write_sep("-", "gVisor")
        terminalreporter.write_line(f"the self-managed gVisor tests were skipped: gVisor {GVISOR.describe()}")
