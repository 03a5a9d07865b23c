"""Which ``runsc`` to use, which gVisor platforms it has, and whether gVisor can run here at all.

- :func:`locate_runsc`: an explicit path, else ``$RUNSC``, else ``runsc`` on ``PATH`` (so a newer
  upstream release installed before Debian's ``/usr/bin`` on PATH is used as is).
- :func:`supported_platforms`: the platforms the binary lists in its ``--platform`` flag
  (``runsc flags``), cached per binary (path, size, modification time): releases since 2023 list
  ``systrap``; Debian 12's (release-20221219) lists ``ptrace`` and ``kvm``.
- :func:`choose_platform`: ``auto`` takes the first of :data:`PREFERRED_PLATFORMS` the binary
  has (``systrap``'s traps cost a tenth of ``ptrace``'s); any other name is the operator's
  choice, passed on unchanged (runsc itself refuses one it does not know, and the boot failure
  says so). ``kvm`` is never chosen automatically: it hangs on nested virtualisation.
- :func:`check_gvisor`: the one decision "can real gVisor sandboxes run here, and if not, why",
  used by the test suites to skip (with that reason) and print it in their summary.

The executor and the test suites import this; nothing here starts a sandbox.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping

import attrs

RUNSC_ENV = "RUNSC"
"""Environment variable naming the runsc binary to use (a gVisor release outside Debian's package)."""
AUTO = "auto"
PREFERRED_PLATFORMS = ("systrap", "ptrace")
"""Platforms ``auto`` picks from, best first; ptrace is the fallback every release has."""
FALLBACK_PLATFORM = "ptrace"
INSTALL_HINT = (
    "install Debian's package (apt-get install runsc) or gVisor's own release "
    "(docs/providers/self-managed.md, 'Installing gVisor'), then put runsc on PATH or set RUNSC=/path/to/runsc"
)

_PLATFORM_FLAG = re.compile(r"^\s*-{1,2}platform\b[^\n]*\n\s*(?P<help>[^\n]*)", re.MULTILINE)
_DEFAULT = re.compile(r'\(default "(?P<name>[a-z0-9_]+)"\)')
_platform_cache: dict[tuple[str, int, int], tuple[str, ...]] = {}


def locate_runsc(configured: str | None = None, environ: Mapping[str, str] | None = None) -> str | None:
    """The runsc to use: ``configured``, ``$RUNSC`` or ``runsc`` on PATH; None if that is no executable."""
    env = os.environ if environ is None else environ
    for candidate in (configured, env.get(RUNSC_ENV)):
        if candidate:
            return candidate if os.path.isfile(candidate) and os.access(candidate, os.X_OK) else None
    return shutil.which("runsc", path=env.get("PATH", os.defpath))


def parse_platforms(flags_text: str) -> tuple[str, ...]:
    """Platform names from ``runsc flags`` output, in the order listed (the default included).

    The ``-platform`` flag's help reads e.g. ``specifies which platform to use: systrap
    (default), ptrace, kvm. (default "systrap")``; an empty tuple when there is no such flag.
    """
    match = _PLATFORM_FLAG.search(flags_text)
    if match is None:
        return ()
    text = match.group("help")
    names: list[str] = []
    listed = text.split(":", 1)[1] if ":" in text else ""
    for part in _DEFAULT.sub("", listed).split(","):
        name = part.replace("(default)", "").strip().rstrip(".").strip()
        if re.fullmatch(r"[a-z0-9_]+", name) and name not in names:
            names.append(name)
    default = _DEFAULT.search(text)
    if default and default.group("name") not in names:
        names.append(default.group("name"))
    return tuple(names)


def supported_platforms(binary: str) -> tuple[str, ...]:
    """The platforms ``binary`` lists (cached per binary file); empty when it cannot be asked."""
    try:
        stat = os.stat(binary)
    except OSError:
        return ()
    key = (os.path.realpath(binary), stat.st_size, stat.st_mtime_ns)
    if key not in _platform_cache:
        try:
            done = subprocess.run([binary, "flags"], capture_output=True, text=True, errors="replace", timeout=15, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return ()
        _platform_cache[key] = parse_platforms(done.stdout + "\n" + done.stderr) if done.returncode == 0 else ()
    return _platform_cache[key]


def choose_platform(binary: str | None, requested: str = AUTO) -> str:
    """``requested`` itself, or for ``auto`` the best of :data:`PREFERRED_PLATFORMS` ``binary`` has."""
    if requested != AUTO:
        return requested
    available = supported_platforms(binary) if binary else ()
    return next((name for name in PREFERRED_PLATFORMS if name in available), FALLBACK_PLATFORM)


def runsc_version(binary: str) -> str | None:
    """``runsc --version``'s first line (e.g. ``runsc version release-20240513.0``), None if it fails."""
    try:
        done = subprocess.run([binary, "--version"], capture_output=True, text=True, errors="replace", timeout=15, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = done.stdout.strip().splitlines()
    return lines[0].strip() if done.returncode == 0 and lines else None


@attrs.frozen
class GVisorCheck:
    """What :func:`check_gvisor` found; ``problem`` is None when real sandboxes can run here."""

    binary: str | None
    version: str | None
    platforms: tuple[str, ...]
    platform: str
    problem: str | None

    def describe(self) -> str:
        """One line for a test summary: what will be used, or why gVisor is not usable."""
        if self.problem is not None:
            return f"not usable here: {self.problem}"
        listed = ", ".join(self.platforms) or "unknown"
        return f"{self.version} at {self.binary} (platforms: {listed}; using {self.platform})"


def check_gvisor(environ: Mapping[str, str] | None = None, *, is_root: bool | None = None) -> GVisorCheck:
    """Decide whether real gVisor sandboxes can run here, and if not, say why and what to do."""
    binary = locate_runsc(None, environ)
    env = os.environ if environ is None else environ
    version = runsc_version(binary) if binary else None
    platforms = supported_platforms(binary) if binary and version else ()
    platform = choose_platform(binary if version else None)
    problem: str | None = None
    if binary is None:
        named = env.get(RUNSC_ENV)
        problem = (f"RUNSC={named} is not an executable file; " if named else "no runsc found (RUNSC unset, none on PATH); ") + INSTALL_HINT
    elif version is None:
        problem = f"{binary} --version failed: is it a runsc binary for this machine? " + INSTALL_HINT
    elif not (os.geteuid() == 0 if is_root is None else is_root):
        problem = "runsc needs root (it manages cgroups and namespaces): run the tests as root"
    elif not os.path.isdir("/sys/fs/cgroup"):
        problem = "no cgroup filesystem at /sys/fs/cgroup: sandbox limits cannot be enforced"
    return GVisorCheck(binary=binary, version=version, platforms=platforms, platform=platform, problem=problem)
