"""The sandboxes' root filesystem: only what the interpreters need, assembled at start-up.

Instead of mounting the host's ``/`` (home folders, ``/etc/shadow``, the executor's own code and
token...) the engine builds a small tree holding the interpreters, their shared libraries (as
``ldd`` reports them), Python's standard library, and a tiny ``/etc`` of our own. Files are
hard-linked from the host when the tree is on the same filesystem (instant, no space), copied
otherwise. Symlinks along each path are reproduced, so ``/lib -> usr/lib`` style layouts resolve
inside as they do outside. The tree is mounted read-only and shared by every sandbox.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

import attrs

from sandbox_selfmanaged.errors import RuntimeMissingError
from sandbox_selfmanaged.procs import ProcessSupervisor

logger = logging.getLogger(__name__)

SANDBOX_UID = 65534
SANDBOX_GID = 65534
WORK_DIR = "/work"
RUNNER_DIR = "/sandbox"
MOUNT_POINTS = ("proc", "sys", "dev", "tmp", WORK_DIR.strip("/"), RUNNER_DIR.strip("/"))
STDLIB_SKIP = frozenset(
    {"test", "tests", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "site-packages", "dist-packages", "venv"}
)
STDLIB_FILES_SKIP = frozenset({"sitecustomize.py", "usercustomize.py"})
"""Distribution hooks (Debian links sitecustomize.py to /etc) run at every start: not in our root."""
HOME_PREFIXES = ("/root", "/home")

ETC_FILES = {
    "passwd": f"root:x:0:0:root:/nonexistent:/usr/sbin/nologin\nsandbox:x:{SANDBOX_UID}:{SANDBOX_GID}:sandbox:/tmp:/usr/sbin/nologin\n",
    "group": f"root:x:0:\nsandbox:x:{SANDBOX_GID}:\n",
    "hosts": "127.0.0.1\tlocalhost sandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    "nsswitch.conf": "passwd: files\ngroup: files\nhosts: files\n",
    "hostname": "sandbox\n",
}

_PYTHON_PROBE = (
    "import json, site, sys, sysconfig; print(json.dumps({"
    "'executable': sys.executable, 'version': '%d.%d.%d' % sys.version_info[:3], 'site': site.getsitepackages(), "
    "'stdlib': sysconfig.get_path('stdlib'), 'platstdlib': sysconfig.get_path('platstdlib')}))"
)


@attrs.frozen
class PythonInstall:
    """A host Python interpreter as the sandbox will see it."""

    executable: str  # the path to run inside (as configured, e.g. /usr/bin/python3)
    version: str
    stdlib: str
    platstdlib: str
    site_packages: str = ""
    """The first folder ``site`` puts on ``sys.path`` (where a runtime's packages are mounted)."""


def probe_python(path: str, supervisor: ProcessSupervisor) -> PythonInstall:
    """Ask the host interpreter at ``path`` where its standard library is."""
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise RuntimeMissingError(
            f"python not found at {path}: install the Debian packages python3-minimal and "
            "libpython3.11-stdlib (plugins/sandbox_selfmanaged/scripts/install-system-deps.sh) or pass --python PATH"
        )
    result = supervisor.run([path, "-I", "-S", "-c", _PYTHON_PROBE], timeout=30)
    if not result.ok:
        raise RuntimeMissingError(f"{path} does not run: {result.output_text()}")
    info = json.loads(result.stdout)
    for key in ("stdlib", "platstdlib"):
        if any(info[key] == p or info[key].startswith(p + "/") for p in HOME_PREFIXES):
            raise RuntimeMissingError(
                f"the Python at {path} keeps its standard library in a home folder ({info[key]}), which "
                "sandboxes must not see: use the system's /usr/bin/python3 (Debian package python3-minimal)"
            )
    site_dirs = [d for d in info["site"] if not any(d == p or d.startswith(p + "/") for p in HOME_PREFIXES)]
    return PythonInstall(
        executable=path,
        version=info["version"],
        stdlib=info["stdlib"],
        platstdlib=info["platstdlib"],
        site_packages=site_dirs[0] if site_dirs else "",
    )


def _system_path(path: str) -> bool:
    """Whether ``path`` is in the system's program directories (links elsewhere, e.g. into /etc, are left out)."""
    return path.startswith(("/usr/", "/lib/", "/lib64/", "/lib32/", "/bin/", "/sbin/"))


def find_node(configured: str | None) -> str:
    """The Node.js binary to use, or a :class:`RuntimeMissingError` telling how to install it."""
    candidate = configured or shutil.which("node") or "/usr/bin/node"
    if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
        return candidate
    raise RuntimeMissingError(f"node not found at {candidate}: install the Debian package nodejs or pass --node PATH")


class _TreeBuilder:
    """Reproduces host paths (and the symlinks along them) under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.linked = 0
        self.copied = 0
        self._done: set[str] = set()

    def add(self, path: str) -> None:
        if path in self._done:
            return
        self._done.add(path)
        current = "/"
        parts = [p for p in path.split("/") if p]
        for index, part in enumerate(parts):
            current = os.path.join(current, part)
            inside = self.root / current.lstrip("/")
            if os.path.islink(current):
                if not os.path.lexists(inside):
                    inside.parent.mkdir(parents=True, exist_ok=True)
                    os.symlink(os.readlink(current), inside)
                target = os.path.normpath(os.path.join(os.path.dirname(current), os.readlink(current)))
                rest = "/".join(parts[index + 1:])
                self.add(os.path.join(target, rest) if rest else target)
                return
        inside = self.root / current.lstrip("/")
        if os.path.isdir(current):
            inside.mkdir(parents=True, exist_ok=True)
            return
        if not os.path.isfile(current):
            raise FileNotFoundError(current)
        inside.parent.mkdir(parents=True, exist_ok=True)
        if os.path.lexists(inside):
            return
        try:
            os.link(current, inside)
            self.linked += 1
        except OSError:
            shutil.copy2(current, inside)
            self.copied += 1


def shared_libraries(paths: Iterable[str], supervisor: ProcessSupervisor) -> set[str]:
    """The shared libraries (and the dynamic loader) the ELF files at ``paths`` load, per ``ldd``."""
    found: set[str] = set()
    for path in paths:
        result = supervisor.run(["/usr/bin/ldd", path], timeout=30)
        if not result.ok:
            continue  # static binaries and scripts: nothing to add
        for line in result.stdout.decode("utf-8", "replace").splitlines():
            line = line.strip()
            if "=>" in line:
                target = line.split("=>", 1)[1].split("(", 1)[0].strip()
                if target.startswith("/"):
                    found.add(target)
                elif target == "not found":
                    raise RuntimeMissingError(f"{path} needs a shared library that is not installed: {line}")
            elif line.startswith("/"):
                found.add(line.split()[0])
    return found


@attrs.frozen
class RootfsReport:
    root: Path
    files_linked: int
    files_copied: int


def build_rootfs(
    root: Path,
    supervisor: ProcessSupervisor,
    *,
    python: PythonInstall | None,
    node: str | None,
    file_mount_points: Iterable[str] = (),
    directory_mount_points: Iterable[str] = (),
    libraries: Iterable[str] = (),
) -> RootfsReport:
    """Assemble the read-only root at ``root`` (which must not exist yet).

    ``file_mount_points`` are paths inside where single files will be bind-mounted (the runner
    scripts): they are created empty, because runsc would otherwise create them in our tree;
    ``directory_mount_points`` likewise for folders (runtimes' packages). ``libraries`` are host
    shared libraries added on top of what the interpreters need (runtimes' native modules').
    """
    root.mkdir(parents=True)
    builder = _TreeBuilder(root)
    elf: list[str] = []
    if python is not None:
        builder.add(python.executable)
        elf.append(os.path.realpath(python.executable))
        for top in dict.fromkeys((python.stdlib, python.platstdlib)):
            for directory, subdirs, files in os.walk(top):
                subdirs[:] = [d for d in subdirs if d not in STDLIB_SKIP and not d.startswith("config-")]
                for name in files:
                    path = os.path.join(directory, name)
                    if name in STDLIB_FILES_SKIP or (os.path.islink(path) and not _system_path(os.path.realpath(path))):
                        continue
                    builder.add(path)
                    if name.endswith(".so"):
                        elf.append(path)
    if node is not None:
        builder.add(node)
        elf.append(os.path.realpath(node))
    for library in sorted(shared_libraries(elf, supervisor) | set(libraries)):
        builder.add(library)
    etc = root / "etc"
    etc.mkdir(exist_ok=True)
    for name, content in ETC_FILES.items():
        (etc / name).write_text(content)
    for name in MOUNT_POINTS:
        (root / name).mkdir(exist_ok=True)
    for point in directory_mount_points:
        (root / point.lstrip("/")).mkdir(parents=True, exist_ok=True)
    for point in file_mount_points:
        target = root / point.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.touch()
    os.chmod(root, 0o755)
    for directory, subdirs, _files in os.walk(root):
        for name in subdirs:
            path = os.path.join(directory, name)
            if not os.path.islink(path):
                os.chmod(path, 0o755)
    return RootfsReport(root=root, files_linked=builder.linked, files_copied=builder.copied)
