"""The tracked files name no package-registry host (docs point at package names instead)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Written in pieces, so this file does not contain what it looks for.
FORBIDDEN_HOSTS = tuple(
    ".".join(parts)
    for parts in (("pypi", "org"), ("files", "pythonhosted", "org"), ("registry", "npmjs", "org"),
                  ("npmjs", "com"), ("deb", "debian", "org"))
)


def _tracked_files() -> list[Path]:
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=30)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the tracked files are unknown")
    return [ROOT / name for name in listed.stdout.decode().split("\0") if name]


def test_no_registry_host_names_in_tracked_files() -> None:
    found = []
    for path in _tracked_files():
        try:
            text = path.read_text(encoding="utf-8").lower()
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue  # binary files (images) and files deleted in the working tree
        found += [f"{path.relative_to(ROOT)}: {host}" for host in FORBIDDEN_HOSTS if host in text]
    assert not found, "package-registry host names in tracked files:\n" + "\n".join(found)
