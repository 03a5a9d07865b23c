"""Kills an executor's sandboxes when the executor dies, however it dies (``kill -9`` included).

The engine starts this file as a small process of its own (``python -I -S watchdog.py RUNSC_ROOT
CGROUP_DIR...``) whose stdin is a pipe only the executor writes to. When the executor exits, the
kernel closes that end and the read here returns end-of-file: every process in the sandbox
cgroups and every runsc process naming the executor's runsc root (``--root=RUNSC_ROOT``) is
SIGKILLed, round after round until none is left (a boot in flight may fork late). User code runs
inside its sandbox process, so it dies with it. runsc's state and the cgroups stay for the next
start-up to remove. Only processes started before the executor's end was seen are killed: a
successor started at once on the same state directory keeps its own. On a clean shutdown the
engine writes a byte first and the watchdog just exits.

Standard library only, and the terminal's signals are ignored: only the executor's end of the
pipe stops it.
"""

from __future__ import annotations

import os
import signal
import sys
import time

ROUNDS = 100
PAUSE = 0.05
QUIET_ROUNDS = 4


def _cgroup_pids(directories: list[str]) -> set[int]:
    pids: set[int] = set()
    for directory in directories:
        for current, _dirs, files in os.walk(directory):
            if "cgroup.procs" not in files:
                continue
            try:
                with open(os.path.join(current, "cgroup.procs"), encoding="ascii") as handle:
                    pids.update(int(line) for line in handle if line.strip())
            except (OSError, ValueError):
                continue
    return pids


def _runsc_pids(root: str) -> set[int]:
    needle = f"--root={root}".encode()
    pids: set[int] = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as handle:
                argv = handle.read().split(b"\0")
        except OSError:
            continue
        if needle in argv:
            pids.add(int(name))
    return pids


def _now_ticks() -> float:
    with open("/proc/uptime", encoding="ascii") as handle:
        return float(handle.read().split()[0]) * os.sysconf("SC_CLK_TCK")


def _started_ticks(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return int(handle.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def sweep(root: str, directories: list[str], cutoff: float) -> int:
    """SIGKILL the executor's sandbox processes started by ``cutoff`` (clock ticks since boot); how many."""
    killed = 0
    for pid in (_cgroup_pids(directories) | _runsc_pids(root)) - {os.getpid()}:
        started = _started_ticks(pid)
        if started is None or started > cutoff:
            continue
        try:
            os.kill(pid, signal.SIGKILL)
            killed += 1
        except ProcessLookupError:
            pass
    return killed


def main(argv: list[str]) -> int:
    root, directories = argv[1], argv[2:]
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(number, signal.SIG_IGN)
    while True:
        try:
            data = os.read(0, 64)
        except InterruptedError:
            continue
        if data:
            return 0  # a clean shutdown: the executor destroyed its sandboxes itself
        break
    cutoff = _now_ticks() + 1
    killed = quiet = 0
    for _round in range(ROUNDS):
        found = sweep(root, directories, cutoff)
        killed += found
        quiet = 0 if found else quiet + 1
        if quiet >= QUIET_ROUNDS:
            break
        time.sleep(PAUSE)
    if killed:
        sys.stderr.write(f"sandbox-executor watchdog: the executor is gone; killed {killed} sandbox processes\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
