"""Set-up on other machines: where runsc comes from, decided by the plugin's find-runsc.sh.

Run with fake ``apt-cache``, ``apt-get``, ``dpkg-query`` and ``runsc`` executables on a PATH of
their own (nothing is installed): an archive without a runsc package, a newer upstream runsc
already on PATH, ``RUNSC=/path``, and what ``bootstrap.sh`` and ``install-system-deps.sh`` do with
each answer.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIND = ROOT / "plugins/sandbox_selfmanaged/scripts/find-runsc.sh"
INSTALL = ROOT / "plugins/sandbox_selfmanaged/scripts/install-system-deps.sh"
BOOTSTRAP = ROOT / "scripts/bootstrap.sh"
BASH = shutil.which("bash") or "/bin/bash"
TOOLS = ("bash", "sed", "head", "grep", "dirname", "id", "cat")

FAKES = {
    "apt-cache": """#!/bin/sh
echo "apt-cache $*" >> "$FAKE_LOG"
if [ "$1 $2" = "policy runsc" ] && [ -n "${FAKE_CANDIDATE:-}" ]; then
  printf 'runsc:\\n  Installed: (none)\\n  Candidate: %s\\n' "$FAKE_CANDIDATE"
fi
""",
    "apt-get": '#!/bin/sh\necho "apt-get $*" >> "$FAKE_LOG"\n',
    "dpkg-query": """#!/bin/sh
echo "dpkg-query $*" >> "$FAKE_LOG"
case "$1" in
  -S) [ -n "${FAKE_DEBIAN_OWNS:-}" ] && echo "runsc: $2" && exit 0; exit 1 ;;
  -W) for name in ${FAKE_MISSING:-}; do [ "$name" = "$3" ] && exit 1; done; printf 'install ok installed' ;;
esac
""",
}


def _runsc(folder: Path, version: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    binary = folder / "runsc"
    binary.write_text(f'#!/bin/sh\n[ "$1" = --version ] && echo "runsc version {version}" && echo "spec: 1.1.0"\n')
    binary.chmod(0o755)
    return binary


@pytest.fixture
def fake_bin(tmp_path: Path) -> Path:
    """A PATH folder with the fakes and the few real tools the scripts use (no runsc, no node)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for name, text in FAKES.items():
        (folder / name).write_text(text)
        (folder / name).chmod(0o755)
    for tool in TOOLS:
        found = shutil.which(tool)
        assert found, tool
        (folder / tool).symlink_to(found)
    return folder


def run(script: Path, fake_bin: Path, *args: str, **env: str) -> tuple[int, str, str, str]:
    """Run ``script`` with only ``fake_bin`` on PATH; returns exit code, stdout, stderr, fakes' log."""
    log = fake_bin.parent / "calls.log"
    log.write_text("")
    done = subprocess.run(
        [BASH, str(script), *args],
        capture_output=True, text=True, timeout=60, check=False,
        env={"PATH": str(fake_bin), "FAKE_LOG": str(log), "HOME": str(fake_bin.parent), **env},
    )
    return done.returncode, done.stdout, done.stderr, log.read_text()


def test_an_archive_without_runsc_says_what_to_do(fake_bin: Path) -> None:
    code, out, err, _ = run(FIND, fake_bin)
    assert (code, out) == (1, "none\n")
    assert "no runsc on PATH, and" in err and "package archive has no runsc package" in err
    assert "install gVisor's own release" in err and "docs/providers/self-managed.md" in err
    assert "set RUNSC=/path/to/runsc" in err and "the gVisor tests are skipped" in err


def test_an_archive_with_runsc_installs_it(fake_bin: Path) -> None:
    code, out, err, _ = run(FIND, fake_bin, FAKE_CANDIDATE="0.0~20221219.0-3")
    assert (code, out) == (0, "install\n")
    assert "runsc package (0.0~20221219.0-3)" in err


def test_a_newer_upstream_runsc_on_path_is_kept(fake_bin: Path) -> None:
    upstream = _runsc(fake_bin, "release-20240513.0")
    code, out, err, calls = run(FIND, fake_bin, FAKE_CANDIDATE="0.0~20221219.0-3")
    assert (code, out) == (0, f"use {upstream}\n")
    assert f"found runsc version release-20240513.0 at {upstream}, not from a Debian package: using it" in err
    assert "apt-cache" not in calls  # never replaced by Debian's package


def test_debians_runsc_on_path_is_named_as_such(fake_bin: Path) -> None:
    debian = _runsc(fake_bin, "0.0~20221219.0")
    code, out, err, _ = run(FIND, fake_bin, FAKE_DEBIAN_OWNS="1")
    assert (code, out) == (0, f"use {debian}\n") and "found Debian's runsc version 0.0~20221219.0" in err


def test_RUNSC_is_honoured_and_checked(fake_bin: Path, tmp_path: Path) -> None:
    _runsc(fake_bin, "0.0~20221219.0")
    chosen = _runsc(tmp_path / "opt", "release-20250101.0")
    code, out, err, _ = run(FIND, fake_bin, RUNSC=str(chosen))
    assert (code, out) == (0, f"use {chosen}\n") and "using RUNSC: runsc version release-20250101.0" in err
    code, out, err, _ = run(FIND, fake_bin, RUNSC=str(tmp_path / "missing"))
    assert (code, out) == (2, "") and "is not an executable file" in err


def test_install_system_deps_without_a_runsc_package_stops_and_says_why(fake_bin: Path) -> None:
    code, _, err, calls = run(INSTALL, fake_bin, "--no-node", FAKE_MISSING="runsc")
    assert code == 1 and "install gVisor's own release" in err
    assert "apt-get update -qq" in calls and "apt-get install" not in calls  # the lists were refreshed, then it stopped


def test_install_system_deps_uses_RUNSC_and_leaves_apt_alone(fake_bin: Path, tmp_path: Path) -> None:
    chosen = _runsc(tmp_path / "opt", "release-20240513.0")
    code, _, err, calls = run(INSTALL, fake_bin, "--no-node", RUNSC=str(chosen), FAKE_MISSING="runsc")
    assert code == 0 and "using RUNSC" in err and "are present" in err
    assert "apt-get" not in calls and "dpkg-query -W -f=${Status} runsc" not in calls


def test_install_system_deps_installs_debians_runsc_when_the_archive_has_it(fake_bin: Path) -> None:
    code, _, err, calls = run(INSTALL, fake_bin, "--no-node", FAKE_MISSING="runsc", FAKE_CANDIDATE="0.0~20221219.0-3")
    assert "installing runsc" in err
    assert "--no-install-recommends runsc" in calls
    assert code == 1 and "still not on PATH" in err  # the fake apt-get installed nothing


def test_bootstrap_run_without_runsc_stops_before_installing(fake_bin: Path) -> None:
    code, _, err, calls = run(BOOTSTRAP, fake_bin, "run")
    assert code == 1
    assert "package archive has no runsc package" in err and "the run job executes in gVisor" in err
    assert "apt-get update -qq" in calls and "apt-get install" not in calls
