"""``sandbox repl`` fed through a pipe, against the local provider (in process)."""

from __future__ import annotations

import io
import sys
from collections.abc import Callable

import pytest
from core_support import MinimalProvider

from sandbox_core.cli import main
from sandbox_core.cli.session import read_entries, repl_source
from sandbox_core.settings import SettingsStore
from sandbox_core.testing import UnsandboxedSubprocessProvider

ENTRIES = (
    "x = 20\nx + 22\ndef twice(n):\n    return 2 * n\n\ntwice(x)\n"
    "import os\nopen('kept.txt', 'w').write('yes')\nprint(open('kept.txt').read())\nundefined_name\nx\n"
)


def test_entries_are_split_like_pythons_prompt() -> None:
    entries = list(read_entries(io.StringIO(ENTRIES), interactive=False))
    assert entries[:3] == ["x = 20\n", "x + 22\n", "def twice(n):\n    return 2 * n\n\n"]
    assert len(entries) == 9


def test_bare_expressions_print_their_value() -> None:
    assert "print(repr(_))" in repl_source("x + 1\n")
    assert repl_source("x = 1\n") == "x = 1\n"
    assert repl_source("def broken(:\n") == "def broken(:\n"


def test_repl_through_a_pipe(
    sandbox_settings: SettingsStore,
    register_provider: Callable[[str, object], object],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    provider = UnsandboxedSubprocessProvider()
    register_provider("local", provider)
    assert main(["config", "set", "local", "--activate"]) == 0
    capsys.readouterr()
    monkeypatch.setattr(sys, "stdin", io.StringIO(ENTRIES))
    assert main(["repl"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == ["42", "40", "3", "yes", "20"]
    assert "NameError: name 'undefined_name' is not defined" in err
    assert provider.sessions.count() == 0, "the session must end with the input"


def test_repl_refuses_a_provider_without_sessions(
    sandbox_settings: SettingsStore,
    register_provider: Callable[[str, object], object],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    register_provider("plain", MinimalProvider())
    assert main(["config", "set", "plain", "--activate"]) == 0
    monkeypatch.setattr(sys, "stdin", io.StringIO("1\n"))
    assert main(["repl"]) == 4
    assert "not supported by provider 'plain': sessions" in capsys.readouterr().err
