"""The OCI runtime spec (``config.json``) of one sandbox.

Everything that makes a sandbox safe is decided here: the read-only minimal root, tmpfs ``/tmp``
and work folder, the runner mounted read-only, an unprivileged user with no capabilities and
``no_new_privileges``, an environment of three variables (plus native thread-pool sizes in
sandboxes of a Python runtime), fresh namespaces, and the resource
limits. ``RLIMIT_NPROC`` is the real process limit (gVisor enforces it inside, ``fork`` fails with
EAGAIN); the cgroup ``pids`` limit counts the sandbox's *host* threads (about 30 when idle) and is
only a backstop. ``RLIMIT_FSIZE`` bounds each file; the memory limit bounds everything else,
tmpfs contents included (gVisor ignores tmpfs ``size=``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sandbox_selfmanaged.limits import Limits
from sandbox_selfmanaged.rootfs import SANDBOX_GID, SANDBOX_UID, WORK_DIR

ENVIRONMENT = ("PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/tmp", "LANG=C.UTF-8")
OPEN_FILES = 1024
CPU_PERIOD_US = 100_000
HOST_THREADS_IDLE = 96
"""Host threads a sandbox needs besides the code's own (≈30 measured idle, doubled for bursts, plus
room for the Python runner's second process and its watch thread: 64 was crossed by a fork bomb
stopped by ``RLIMIT_NPROC`` of 16). The ``runsc run`` process that owns the sandbox lives in its
cgroup too (6 threads, measured): the fork-bomb test still stops at ``RLIMIT_NPROC``."""


HOST_THREADS_HEAVY = 128
"""More host threads for sandboxes of a package runtime: importing numpy and pandas drives the
sentry to ≈ 120 host threads (≈ 40 bare), and a preloaded interpreter that forks crossed the
bare budget (the sandbox crashed with runsc's exit code 2 instead of ``fork`` failing with EAGAIN)."""


def host_pids_limit(limits: Limits, heavy: bool = False) -> int:
    """The cgroup pids backstop: generous, since crossing it crashes the sandbox outright."""
    return HOST_THREADS_IDLE + (HOST_THREADS_HEAVY if heavy else 0) + 4 * limits.processes


THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def thread_environment(limits: Limits) -> tuple[str, ...]:
    """Thread counts of native libraries (OpenBLAS, OpenMP, MKL) sized to the CPU quota.

    Left alone they start a thread per host core; each is a host thread counted by the pids
    backstop, and more threads than the quota allows only contend.
    """
    threads = str(max(1, int(limits.cpus)))
    return tuple(f"{name}={threads}" for name in THREAD_VARIABLES)


def build_spec(
    *,
    args: Sequence[str],
    rootfs: str,
    cgroups_path: str | None,
    limits: Limits,
    read_only_files: Sequence[tuple[str, str]] = (),
    native_threads: bool = False,
    hostname: str = "sandbox",
) -> dict[str, Any]:
    """The spec for a sandbox running ``args`` under ``limits``.

    :param read_only_files: ``(host path, path inside)`` pairs (files or folders) bind-mounted read-only.
    :param native_threads: add :func:`thread_environment` and host-thread headroom (sandboxes with
        numpy and the like).
    """
    tmpfs_options = ["nosuid", "nodev", "mode=1777"]
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": tmpfs_options},
        {"destination": WORK_DIR, "type": "tmpfs", "source": "tmpfs", "options": tmpfs_options},
    ]
    for source, destination in read_only_files:
        mounts.append({"destination": destination, "type": "bind", "source": source, "options": ["rbind", "ro", "nosuid", "nodev"]})
    rlimits = [
        {"type": "RLIMIT_NPROC", "hard": limits.processes, "soft": limits.processes},
        {"type": "RLIMIT_FSIZE", "hard": limits.max_file_bytes, "soft": limits.max_file_bytes},
        {"type": "RLIMIT_NOFILE", "hard": OPEN_FILES, "soft": OPEN_FILES},
        {"type": "RLIMIT_CORE", "hard": 0, "soft": 0},
    ]
    no_capabilities: dict[str, list[str]] = {k: [] for k in ("bounding", "effective", "inheritable", "permitted", "ambient")}
    linux: dict[str, Any] = {
        "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
        "resources": {
            "memory": {"limit": limits.memory_bytes},
            "cpu": {"quota": max(1000, int(limits.cpus * CPU_PERIOD_US)), "period": CPU_PERIOD_US},
            "pids": {"limit": host_pids_limit(limits, heavy=native_threads)},
        },
        "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
        "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus"],
    }
    if cgroups_path:
        linux["cgroupsPath"] = cgroups_path
    return {
        "ociVersion": "1.0.0",
        "process": {
            "terminal": False,
            "user": {"uid": SANDBOX_UID, "gid": SANDBOX_GID, "additionalGids": []},
            "args": list(args),
            "env": [*ENVIRONMENT, *(thread_environment(limits) if native_threads else ())],
            "cwd": WORK_DIR,
            "capabilities": no_capabilities,
            "rlimits": rlimits,
            "noNewPrivileges": True,
        },
        "root": {"path": rootfs, "readonly": True},
        "hostname": hostname,
        "mounts": mounts,
        "linux": linux,
    }
