"""sandbox-core's isolation profile, on for ``self_managed``: real attacks on real gVisor sandboxes.

The same profile runs through the command an operator uses, ``sandbox check-isolation
self_managed --json``, against the executor saved in a settings database.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest
from selfmanaged_support import Executor

from sandbox_core.cli import main
from sandbox_core.settings import SettingsStore
from sandbox_core.testing import ProviderIsolation
from sandbox_core.testing.isolation import CASE_NAMES


class TestSelfManagedIsolation(ProviderIsolation):
    supports_javascript = True

    @pytest.fixture
    def provider_name(self) -> str:
        return "self_managed"

    @pytest.fixture
    def provider_config(self, executor: Executor) -> Mapping[str, Any]:
        return {"endpoints": [executor.url], "token": executor.token}


def test_check_isolation_command_passes_every_case(
    executor: Executor, sandbox_settings: SettingsStore, capsys: pytest.CaptureFixture[str]
) -> None:
    """The documented command, as an operator runs it: every case passes, and the token never shows."""
    assert executor.token
    code = main(["config", "set", "self_managed", f"endpoints={json.dumps([executor.url])}", f"token={executor.token}"])
    assert code == 0, capsys.readouterr()
    capsys.readouterr()
    code = main(["check-isolation", "self_managed", "--json"])
    out, err = capsys.readouterr()
    report = json.loads(out)
    failed = [case for case in report["cases"] if case["verdict"] != "pass"]
    assert code == 0 and failed == [], failed
    assert report["provider"] == "self_managed"
    assert [case["case"] for case in report["cases"]] == list(CASE_NAMES)
    assert (report["passed"], report["failed"], report["skipped"]) == (len(CASE_NAMES), 0, 0)
    assert executor.token not in out + err
