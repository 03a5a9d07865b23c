"""``sandbox exec`` shows output live; ``--events`` prints NDJSON; ``--json`` stays one document."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from sandbox_core.cli import main
from sandbox_core.settings import SettingsStore
from sandbox_core.testing import UnsandboxedSubprocessProvider

TWO_PARTS = "import sys\nprint('one', flush=True)\nsys.stderr.write('warn\\n')\nsys.stdout.write('no newline')\n"


@pytest.fixture
def local(sandbox_settings: SettingsStore, register_provider: Callable[[str, object], object]) -> SettingsStore:
    register_provider("local", UnsandboxedSubprocessProvider())
    assert main(["config", "set", "local", "max_output_bytes=4096", "--activate"]) == 0
    return sandbox_settings


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


class Watching(io.StringIO):
    """A stdout that creates ``flag`` as soon as ``text`` is written to it."""

    def __init__(self, text: str, flag: Path) -> None:
        super().__init__()
        self.text, self.flag = text, flag

    def write(self, data: str) -> int:
        if self.text in data:
            self.flag.touch()
        return super().write(data)


def test_exec_prints_output_while_the_code_runs(local: SettingsStore, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    flag = tmp_path / "seen"
    code = (
        "import os, time\n"
        "print('first', flush=True)\n"
        "for _ in range(200):\n"
        f"    if os.path.exists({str(flag)!r}):\n"
        "        break\n"
        "    time.sleep(0.05)\n"
        f"print('seen' if os.path.exists({str(flag)!r}) else 'not seen')\n"
    )
    out = Watching("first", flag)
    monkeypatch.setattr("sys.stdout", out)
    assert main(["exec", "-c", code]) == 0
    assert out.getvalue() == "first\nseen\n"


def test_exec_sends_stderr_to_stderr_and_ends_the_last_line(local: SettingsStore, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "exec", "-c", TWO_PARTS)
    assert code == 0
    assert out == "one\nno newline\n"
    assert err.startswith("warn\n") and "[success in " in err


def test_exec_events_prints_ndjson_then_the_result(local: SettingsStore, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "exec", "-c", TWO_PARTS, "--events")
    assert code == 0
    *events, last = [json.loads(line) for line in out.splitlines()]
    assert all(e["type"] == "output" and isinstance(e["at"], float) for e in events)
    assert last["type"] == "result" and last["result"]["status"] == "success"
    for stream in ("stdout", "stderr"):
        assert "".join(e["text"] for e in events if e["stream"] == stream) == last["result"][stream]


def test_exec_json_is_still_one_document(local: SettingsStore, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "exec", "-c", TWO_PARTS, "--json")
    assert code == 0 and json.loads(out)["stdout"] == "one\nno newline"


def test_exec_json_and_events_together_is_a_usage_error(local: SettingsStore, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "exec", "-c", "print(1)", "--json", "--events")
    assert code == 2 and "--json or --events" in err



def test_session_exec_json_and_events_together_is_a_usage_error(local: SettingsStore, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "session", "exec", "local:local/0123", "-c", "1", "--json", "--events")
    assert code == 2 and "--json or --events" in err
