"""A SQLite settings file that is empty, foreign or on a read-only mount.

* An existing file that is empty (0 bytes) or not a SQLite database is an error naming the file;
  it is never silently re-seeded with defaults (``self_managed`` active, no token).
* A new file never appears half made, so an empty file always means a broken one.
* On a read-only mount (a real one: a bind mount remounted ``ro`` in a private mount namespace,
  since root ignores file modes), reading settings and executing work; saving fails clearly.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox_core.errors import ConfigurationError
from sandbox_core.settings import SettingsStore

SANDBOX = str(Path(sys.executable).with_name("sandbox"))


def _url(path: Path) -> str:
    return f"sqlite:///{path}"


def test_an_empty_file_is_an_error_not_a_fresh_database(tmp_path: Path) -> None:
    path = tmp_path / "settings.db"
    path.touch()
    with SettingsStore(_url(path)) as store, pytest.raises(ConfigurationError) as caught:
        store.get("sandbox.provider_type")
    message = str(caught.value)
    assert f"the settings database {path} is an empty file (0 bytes)" in message
    assert "Restore it from a backup, or delete it" in message
    assert path.stat().st_size == 0 and sorted(os.listdir(tmp_path)) == ["settings.db"]


def test_a_file_that_is_not_sqlite_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "settings.db"
    path.write_text("sandbox.provider_type = e2b\n")
    with SettingsStore(_url(path)) as store, pytest.raises(ConfigurationError, match="is not a SQLite database"):
        store.provider_config("e2b")
    assert path.read_text() == "sandbox.provider_type = e2b\n"


def test_the_cli_reports_an_empty_settings_file(tmp_path: Path) -> None:
    path = tmp_path / "settings.db"
    path.touch()
    process = _sandbox(path, "config", "show", "--json")
    assert process.returncode == 3, process.stdout + process.stderr
    assert "is an empty file (0 bytes)" in process.stderr and process.stdout == ""
    assert path.stat().st_size == 0


def test_a_new_file_is_created_whole_and_nothing_else_is_left(tmp_path: Path) -> None:
    path = tmp_path / "new" / "settings.db"
    with SettingsStore(_url(path)) as store:
        assert store.get("sandbox.provider_type") == "self_managed"  # the packaged defaults
    assert sorted(os.listdir(path.parent)) == ["settings.db"]
    assert path.read_bytes().startswith(b"SQLite format 3\x00")


# -- a read-only mount ---------------------------------------------------------------------------


def _sandbox(path: Path, *args: str, read_only: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the ``sandbox`` command on the settings file ``path``; with ``read_only``, in a private
    mount namespace where ``path``'s directory is a read-only bind mount of itself."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_")}
    env["SANDBOX_DATABASE_URL"] = _url(path)
    command = [SANDBOX, *args]
    if read_only:
        directory = str(path.parent)
        script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'
        command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", directory, *command]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def read_only_settings(tmp_path: Path) -> Path:
    """A settings file with a saved self_managed config (a dead endpoint), mounted read-only on use."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) to make a read-only bind mount")
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"cannot create a mount namespace here: {probe.stderr.decode(errors='replace').strip()}")
    path = tmp_path / "mounted" / "settings.db"
    saved = _sandbox(path, "config", "set", "self_managed", "endpoints=http://127.0.0.1:9", "retries=0", "--activate")
    assert saved.returncode == 0, saved.stderr
    assert sorted(os.listdir(path.parent)) == ["settings.db"]
    return path


def test_reads_work_on_a_read_only_mount(read_only_settings: Path) -> None:
    shown = _sandbox(read_only_settings, "config", "show", "--json", read_only=True)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["config"] == {"endpoints": ["http://127.0.0.1:9"], "retries": 0}
    checked = _sandbox(read_only_settings, "config", "validate", read_only=True)
    assert checked.returncode == 0, checked.stderr


def test_exec_reads_its_settings_from_a_read_only_mount(read_only_settings: Path) -> None:
    ran = _sandbox(read_only_settings, "exec", "-c", "print(1)", "--json", read_only=True)
    # The settings were read: the execution went to the configured (dead) executor.
    assert ran.returncode == 4, ran.stderr
    result = json.loads(ran.stdout)
    assert result["status"] == "provider_error" and "http://127.0.0.1:9" in result["error"]["message"]
    assert "unable to open database file" not in ran.stdout + ran.stderr


def test_saving_on_a_read_only_mount_fails_clearly_and_changes_nothing(read_only_settings: Path) -> None:
    before = read_only_settings.read_bytes()
    refused = _sandbox(read_only_settings, "config", "set", "self_managed", "retries=1", read_only=True)
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert "can only be read (it is on a read-only file system): nothing can be saved" in refused.stderr
    assert "SANDBOX_DATABASE_URL" in refused.stderr
    assert read_only_settings.read_bytes() == before
    shown = _sandbox(read_only_settings, "config", "show", "--json")
    assert json.loads(shown.stdout)["config"]["retries"] == 0
