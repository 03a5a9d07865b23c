"""The host's cgroups of our sandboxes: layout detection, creation with limits, OOM counters, cleanup.

Every sandbox gets a cgroup of its own under a parent of ours. The engine creates it and writes
its limits (memory, CPU quota, the pids backstop) itself, before ``runsc run`` starts inside it
with ``--ignore-cgroups``: runsc would otherwise create and configure nine controllers, move its
own process in and out, and delete them again, for three limits (≈ 4–11 ms of CPU per sandbox).
Only the three controllers that carry a limit are used. We read the cgroup's out-of-memory
counter after a crash (gVisor dies with SIGKILL when the memory limit is hit, it never raises
``MemoryError``), change its memory limit, and remove whatever a crashed predecessor left
behind. Like runsc, we use cgroup v2 only when ``/sys/fs/cgroup`` itself is a ``cgroup2`` mount;
on a hybrid machine (v1 controllers plus ``/sys/fs/cgroup/unified``) v1 is used.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
JOIN_FAILED = 125
_JOIN_SCRIPT = (
    f'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit {JOIN_FAILED}; shift; n=$((n - 1)); done; exec "$@"'
)
LIMITED_CONTROLLERS = ("memory", "pids", "cpu")
"""The controllers a sandbox's cgroup is created in: those its limits are written to."""
V1_CONTROLLERS = (
    "memory", "pids", "cpu", "cpuacct", "cpuset", "devices", "freezer", "blkio", "net_cls", "net_prio", "perf_event", "hugetlb", "rdma",
    "systemd",
)


def _mount_types() -> dict[str, str]:
    types: dict[str, str] = {}
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as handle:
            for line in handle:
                left, _, right = line.partition(" - ")
                fields = left.split()
                if len(fields) >= 5 and right:
                    types[fields[4]] = right.split()[0]
    except OSError:
        pass
    return types


class Cgroups:
    """The cgroup layout of this machine and the operations the engine needs on sandbox cgroups.

    ``path`` arguments are OCI ``cgroupsPath`` values (absolute, e.g. ``/sandbox-executor-ab12/sbx-…``).
    """

    def __init__(self, root: Path = CGROUP_ROOT) -> None:
        self.root = root
        types = _mount_types()
        root_type = types.get(str(root))
        if root_type == "cgroup2":
            self.mode = "v2"
        elif types.get(str(root / "unified")) == "cgroup2":
            self.mode = "hybrid"
        elif any(types.get(str(root / c)) == "cgroup" for c in V1_CONTROLLERS):
            self.mode = "v1"
        else:
            self.mode = "none"

    @property
    def available(self) -> bool:
        return self.mode != "none"

    @property
    def v2(self) -> bool:
        return self.mode == "v2"

    def describe(self) -> str:
        return {
            "v2": "cgroup v2 (unified)",
            "hybrid": "hybrid cgroups (v1 controllers used by runsc, v2 unified alongside)",
            "v1": "cgroup v1",
            "none": "no cgroup filesystem found at /sys/fs/cgroup",
        }[self.mode]

    def _dir(self, controller: str, path: str) -> Path:
        relative = path.strip("/")
        return self.root / relative if self.v2 else self.root / controller / relative

    def _read(self, controller: str, path: str, name: str) -> str | None:
        try:
            return (self._dir(controller, path) / name).read_text()
        except OSError:
            return None

    def oom_kills(self, path: str) -> int:
        """How many processes the kernel killed for exceeding the memory limit of ``path``."""
        text = self._read("memory", path, "memory.events" if self.v2 else "memory.oom_control") or ""
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                try:
                    return int(value)
                except ValueError:
                    return 0
        return 0

    def memory_peak(self, path: str) -> int | None:
        """The most memory ``path`` used so far, in bytes (None where the kernel does not say)."""
        text = self._read("memory", path, "memory.peak" if self.v2 else "memory.max_usage_in_bytes")
        try:
            return int(text) if text else None
        except ValueError:
            return None

    def memory_current(self, path: str) -> int | None:
        text = self._read("memory", path, "memory.current" if self.v2 else "memory.usage_in_bytes")
        try:
            return int(text) if text else None
        except ValueError:
            return None

    def set_memory_limit(self, path: str, limit: int) -> bool:
        """Change the memory limit of a running sandbox; False if the kernel refused."""
        name = "memory.max" if self.v2 else "memory.limit_in_bytes"
        try:
            (self._dir("memory", path) / name).write_text(str(limit))
            return True
        except OSError as exc:
            logger.warning("could not set memory limit %d on %s: %s", limit, path, exc)
            return False

    def create(self, path: str, *, memory_bytes: int, cpu_quota_us: int, cpu_period_us: int, pids: int) -> None:
        """Create the cgroup ``path`` in each limited controller and write its limits.

        Raises ``OSError`` when the kernel refuses (what was created is removed again): a
        sandbox must never start without its limits.
        """
        try:
            if self.v2:
                directory = self._dir("", path)
                self._enable_controllers(directory.parent)
                directory.mkdir(parents=True)
                _write(directory / "memory.max", memory_bytes)
                _write(directory / "pids.max", pids)
                (directory / "cpu.max").write_text(f"{cpu_quota_us} {cpu_period_us}")
                return
            for controller in LIMITED_CONTROLLERS:
                self._dir(controller, path).mkdir(parents=True)
            _write(self._dir("memory", path) / "memory.limit_in_bytes", memory_bytes)
            _write(self._dir("pids", path) / "pids.max", pids)
            _write(self._dir("cpu", path) / "cpu.cfs_period_us", cpu_period_us)
            _write(self._dir("cpu", path) / "cpu.cfs_quota_us", cpu_quota_us)
        except OSError:
            self.remove(path)
            raise

    def _enable_controllers(self, directory: Path) -> None:
        """cgroup v2: make the limited controllers available to the children of ``directory``."""
        if (directory / "cgroup.subtree_control").is_file() and set(LIMITED_CONTROLLERS) <= set(
            (directory / "cgroup.subtree_control").read_text().split()
        ):
            return
        if directory != self.root:
            self._enable_controllers(directory.parent)
            directory.mkdir(exist_ok=True)
        (directory / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in LIMITED_CONTROLLERS))

    def procs_files(self, path: str) -> list[Path]:
        """The ``cgroup.procs`` files a process writes its pid to, to enter the cgroup ``path``."""
        if self.v2:
            return [self._dir("", path) / "cgroup.procs"]
        return [self._dir(controller, path) / "cgroup.procs" for controller in LIMITED_CONTROLLERS]

    def join_argv(self, path: str, argv: Sequence[str]) -> list[str]:
        """``argv`` run by a shell that first moves itself into the cgroup ``path``.

        The shell enters the cgroup before it ``exec``s ``argv``, so the command and everything it
        ever starts are inside from their first instruction: no moment runs outside the limits.
        When it cannot enter, it exits with :data:`JOIN_FAILED` and nothing is started.
        """
        files = [str(f) for f in self.procs_files(path)]
        return ["/bin/sh", "-c", _JOIN_SCRIPT, "sh", str(len(files)), *files, *argv]

    def remove(self, path: str) -> bool:
        """Remove the cgroup ``path`` (killing what still runs in it); False if some of it stays."""
        directories = [self._dir("", path)] if self.v2 else [self._dir(c, path) for c in LIMITED_CONTROLLERS]
        return all([_remove_cgroup(directory) for directory in directories])

    def directories(self, parent: str) -> list[Path]:
        """Where ``parent`` lives: one directory per mounted v1 controller, or the one v2 directory."""
        if self.v2:
            return [self.root / parent.strip("/")]
        return [self.root / c / parent.strip("/") for c in V1_CONTROLLERS if (self.root / c).is_dir()]

    def remove_tree(self, parent: str) -> list[str]:
        """Kill what is left in ``parent``'s child cgroups and remove them and ``parent``.

        For start-up after a crash and for shutdown; returns the cgroups that could not be removed.
        """
        left: list[str] = []
        for base in self.directories(parent):
            if not base.is_dir():
                continue
            for directory in sorted((p for p in base.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True) + [base]:
                if not _remove_cgroup(directory):
                    left.append(str(directory))
        return left


def _write(file: Path, value: int) -> None:
    file.write_text(str(value))


def _remove_cgroup(directory: Path) -> bool:
    for attempt in range(50):
        try:
            directory.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError:
            pass
        try:
            pids = [int(p) for p in (directory / "cgroup.procs").read_text().split()]
        except (OSError, ValueError):
            pids = []
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.02 if attempt < 10 else 0.1)
    return False
