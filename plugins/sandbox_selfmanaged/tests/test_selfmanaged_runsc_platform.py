"""Finding runsc and its gVisor platforms, with fake ``runsc`` executables (no root, no sandbox).

This machine's runsc (Debian's release-20221219) has no ``systrap``: that a newer release's
``systrap`` is detected and preferred is checked here with fake binaries that answer ``flags``
and ``--version`` the way such a release does.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox_selfmanaged import runsc_platform
from sandbox_selfmanaged.runsc_platform import check_gvisor, choose_platform, locate_runsc, parse_platforms, supported_platforms

OLD_FLAGS = """\
  -pcap-log string
    \tlocation of PCAP log file.
  -platform string
    \tspecifies which platform to use: ptrace (default), kvm. (default "ptrace")
  -platform_device_path string
    \tpath to a platform-specific device file (e.g. /dev/kvm for KVM platform).
"""
NEW_FLAGS = """\
  -platform string
    \tspecifies which platform to use: systrap (default), ptrace, kvm. (default "systrap")
"""


def fake_runsc(folder: Path, version: str, flags: str, *, name: str = "runsc") -> Path:
    """A shell script answering ``--version`` and ``flags``; it counts the ``flags`` calls."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "flags.txt").write_text(flags)
    script = folder / name
    script.write_text(
        "#!/bin/sh\n"
        f'case "$1" in\n'
        f'  --version) echo "runsc version {version}"; echo "spec: 1.1.0";;\n'
        f'  flags) echo x >> "{folder}/flags-calls"; cat "{folder}/flags.txt";;\n'
        '  *) echo "fake runsc: $*" >&2; exit 64;;\n'
        "esac\n"
    )
    script.chmod(0o755)
    return script


@pytest.fixture(autouse=True)
def _fresh_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runsc_platform, "_platform_cache", {})


def test_platforms_are_read_from_the_flag_help() -> None:
    assert parse_platforms(OLD_FLAGS) == ("ptrace", "kvm")
    assert parse_platforms(NEW_FLAGS) == ("systrap", "ptrace", "kvm")
    assert parse_platforms("  -root string\n    \troot directory\n") == ()


def test_auto_prefers_systrap_when_the_binary_has_it(tmp_path: Path) -> None:
    newer = fake_runsc(tmp_path / "new", "release-20240513.0", NEW_FLAGS)
    older = fake_runsc(tmp_path / "old", "0.0~20221219.0", OLD_FLAGS)
    assert choose_platform(str(newer)) == "systrap"
    assert choose_platform(str(older)) == "ptrace"  # kvm is listed but never chosen: it hangs on nested VMs


def test_a_forced_platform_is_passed_on_unchanged(tmp_path: Path) -> None:
    newer = fake_runsc(tmp_path, "release-20240513.0", NEW_FLAGS)
    assert choose_platform(str(newer), "ptrace") == "ptrace"
    assert choose_platform(str(newer), "kvm") == "kvm"


def test_a_binary_that_cannot_be_asked_falls_back_to_ptrace(tmp_path: Path) -> None:
    broken = tmp_path / "runsc"
    broken.write_text("#!/bin/sh\nexit 3\n")
    broken.chmod(0o755)
    assert choose_platform(str(broken)) == "ptrace"
    assert choose_platform(None) == "ptrace"
    assert choose_platform(str(tmp_path / "missing")) == "ptrace"


def test_the_answer_is_cached_per_binary_file(tmp_path: Path) -> None:
    newer = fake_runsc(tmp_path, "release-20240513.0", NEW_FLAGS)
    assert supported_platforms(str(newer)) == supported_platforms(str(newer)) == ("systrap", "ptrace", "kvm")
    assert (tmp_path / "flags-calls").read_text().count("x") == 1
    fake_runsc(tmp_path, "0.0~20221219.0", OLD_FLAGS + "\n" * 3)  # replaced by another release: asked again
    assert supported_platforms(str(newer)) == ("ptrace", "kvm")


def test_runsc_comes_from_RUNSC_then_PATH(tmp_path: Path) -> None:
    on_path = fake_runsc(tmp_path / "bin", "release-20240513.0", NEW_FLAGS)
    chosen = fake_runsc(tmp_path / "opt", "release-20250101.0", NEW_FLAGS)
    assert locate_runsc(None, {"PATH": str(on_path.parent)}) == str(on_path)
    assert locate_runsc(None, {"PATH": str(on_path.parent), "RUNSC": str(chosen)}) == str(chosen)
    assert locate_runsc(str(on_path), {"RUNSC": str(chosen)}) == str(on_path)  # --runsc wins
    assert locate_runsc(None, {"PATH": str(tmp_path / "empty")}) is None
    assert locate_runsc(None, {"PATH": str(on_path.parent), "RUNSC": str(tmp_path / "nope")}) is None


def test_the_check_says_what_it_uses(tmp_path: Path) -> None:
    newer = fake_runsc(tmp_path, "release-20240513.0", NEW_FLAGS)
    check = check_gvisor({"RUNSC": str(newer)}, is_root=True)
    assert check.problem is None and check.platform == "systrap"
    assert check.describe() == f"runsc version release-20240513.0 at {newer} (platforms: systrap, ptrace, kvm; using systrap)"


@pytest.mark.parametrize(
    ("environ", "root", "expected"),
    [
        ({"PATH": "/nonexistent"}, True, "no runsc found (RUNSC unset, none on PATH); install Debian's package"),
        ({"RUNSC": "/nonexistent/runsc"}, True, "RUNSC=/nonexistent/runsc is not an executable file"),
        (None, False, "runsc needs root"),
    ],
)
def test_the_check_says_why_gvisor_is_unusable(tmp_path: Path, environ: dict[str, str] | None, root: bool, expected: str) -> None:
    if environ is None:
        environ = {"RUNSC": str(fake_runsc(tmp_path, "release-20240513.0", NEW_FLAGS))}
    check = check_gvisor(environ, is_root=root)
    assert check.problem is not None and expected in check.problem
    assert check.describe().startswith("not usable here: ")


def test_a_binary_that_is_no_runsc_is_named(tmp_path: Path) -> None:
    broken = tmp_path / "runsc"
    broken.write_text("#!/bin/sh\nexit 1\n")
    broken.chmod(0o755)
    check = check_gvisor({"RUNSC": str(broken)}, is_root=True)
    assert check.problem is not None and f"{broken} --version failed" in check.problem


def test_the_reason_is_printed_in_the_pytest_summary(tmp_path: Path) -> None:
    """Where gVisor cannot run, its tests are skipped with the reason, repeated once at the end."""
    tests_dir = Path(__file__).parent
    (tmp_path / "conftest.py").write_text((tests_dir / "conftest.py").read_text())
    (tmp_path / "test_needs_gvisor.py").write_text(
        "from selfmanaged_support import require_gvisor\n\n\ndef test_it():\n    require_gvisor()\n"
    )
    missing = tmp_path / "no-runsc"
    env = {**os.environ, "PYTHONPATH": str(tests_dir), "RUNSC": str(missing)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-ra", "-p", "no:cacheprovider", "--rootdir", str(tmp_path), str(tmp_path)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120, check=False,
    )
    reason = f"gVisor not usable here: RUNSC={missing} is not an executable file; install Debian's package"
    assert done.returncode == 0 and "1 skipped" in done.stdout, done.stdout
    assert any(line.startswith("SKIPPED [1]") and reason in line for line in done.stdout.splitlines()), done.stdout
    assert f"the self-managed gVisor tests were skipped: {reason}" in done.stdout
