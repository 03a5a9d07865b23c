"""Child processes of the executor: spawning, reaping, and the orphans gVisor leaves to us.

``runsc run`` (the keeper of a fresh sandbox) is the executor's child; ``runsc restore
--detach`` forks the sandbox and gofer processes and exits: as a *child subreaper* the executor
inherits such orphans (instead of PID 1), so it learns their exit status at once and reaps them
promptly. Without that, ``runsc delete`` waits on slow reaping by PID 1 and takes more than a
second instead of ~35 ms.

One reaper thread calls ``waitpid(-1)`` for the whole process, so every child must be started
through :class:`ProcessSupervisor` (never ``subprocess``, whose own ``wait`` would race the
reaper and lose exit codes).
"""

from __future__ import annotations

import collections
import ctypes
import logging
import os
import selectors
import signal
import threading
import time
from collections.abc import Mapping, Sequence

import attrs

logger = logging.getLogger(__name__)

PR_SET_CHILD_SUBREAPER = 36
_UNCLAIMED_KEEP = 4096
_DEFAULT_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


def become_subreaper() -> None:
    """Make this process the reaper of its orphaned descendants (Linux ``prctl``)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"prctl(PR_SET_CHILD_SUBREAPER) failed: {os.strerror(code)}")


@attrs.frozen
class CommandResult:
    """The outcome of a short command run to completion."""

    returncode: int | None  # None: it did not finish in time and was killed
    stdout: bytes
    stderr: bytes

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def output_text(self, limit: int = 4000) -> str:
        """stderr (or stdout if stderr is empty) as text, for error messages."""
        data = self.stderr.strip() or self.stdout.strip()
        return data.decode("utf-8", "replace")[-limit:]


class _Exit:
    __slots__ = ("code", "event")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.code: int | None = None


class ProcessSupervisor:
    """Spawns every child of the executor and reaps every child and adopted orphan.

    Exit statuses are kept for processes someone watches (spawned ones automatically, adopted ones
    through :meth:`adopt`) until :meth:`forget`; those of orphans nobody claimed are kept for a
    while in case a claim arrives late.
    """

    def __init__(self) -> None:
        become_subreaper()
        self._lock = threading.Lock()
        self._watched: dict[int, _Exit] = {}
        self._unclaimed: collections.OrderedDict[int, int] = collections.OrderedDict()
        self._have_children = threading.Event()
        self._thread = threading.Thread(target=self._reap_forever, name="reaper", daemon=True)
        self._thread.start()

    # -- reaping ------------------------------------------------------------------------------

    def _reap_forever(self) -> None:
        while True:
            self._have_children.clear()
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                self._have_children.wait(1.0)
                continue
            except InterruptedError:
                continue
            code = os.waitstatus_to_exitcode(status)
            with self._lock:
                entry = self._watched.get(pid)
                if entry is not None:
                    entry.code = code
                    entry.event.set()
                else:
                    self._unclaimed[pid] = code
                    while len(self._unclaimed) > _UNCLAIMED_KEEP:
                        self._unclaimed.popitem(last=False)

    # -- starting -----------------------------------------------------------------------------

    def spawn(
        self,
        argv: Sequence[str],
        *,
        stdin: int | None = None,
        stdout: int | None = None,
        stderr: int | None = None,
        env: Mapping[str, str] | None = None,
    ) -> int:
        """Start ``argv`` with the given file descriptors as its stdio (``/dev/null`` for None).

        The child gets a minimal environment unless ``env`` is given: nothing of the executor's
        own environment (its token!) reaches runsc or a sandbox.
        """
        devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        try:
            actions = [
                (os.POSIX_SPAWN_DUP2, devnull if stdin is None else stdin, 0),
                (os.POSIX_SPAWN_DUP2, devnull if stdout is None else stdout, 1),
                (os.POSIX_SPAWN_DUP2, devnull if stderr is None else stderr, 2),
            ]
            with self._lock:
                pid = os.posix_spawn(
                    argv[0],
                    list(argv),
                    dict(env if env is not None else _DEFAULT_ENV),
                    file_actions=actions,
                    setsigdef=(signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM),
                )
                self._watched[pid] = _Exit()
            self._have_children.set()
            return pid
        finally:
            os.close(devnull)

    def adopt(self, pid: int) -> None:
        """Start watching ``pid``, an orphan that has been (or is being) reparented to us."""
        with self._lock:
            if pid in self._watched:
                return
            entry = _Exit()
            self._watched[pid] = entry
            if pid in self._unclaimed:
                entry.code = self._unclaimed.pop(pid)
                entry.event.set()
                return
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            with self._lock:
                if not entry.event.is_set():
                    entry.code = None
                    entry.event.set()

    def forget(self, pid: int) -> None:
        """Stop keeping the exit status of ``pid`` (after it was read)."""
        with self._lock:
            self._watched.pop(pid, None)

    # -- observing ----------------------------------------------------------------------------

    def exited(self, pid: int) -> bool:
        entry = self._watched.get(pid)
        return entry is None or entry.event.is_set()

    def wait(self, pid: int, timeout: float | None = None) -> int | None:
        """Wait for ``pid`` to exit; its exit code (negative: killed by that signal), or None.

        None means it is still running after ``timeout``, or it exited unseen (not our child).
        """
        entry = self._watched.get(pid)
        if entry is None:
            return None
        entry.event.wait(timeout)
        return entry.code

    def kill(self, pid: int, sig: int = signal.SIGKILL) -> bool:
        """Signal ``pid`` if it has not been reaped yet (so the pid cannot have been reused)."""
        with self._lock:
            entry = self._watched.get(pid)
            if entry is None or entry.event.is_set():
                return False
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return False
            return True

    # -- short commands -----------------------------------------------------------------------

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        env: Mapping[str, str] | None = None,
        max_output: int = 1 << 20,
    ) -> CommandResult:
        """Run a short command to completion, capturing (the head of) its stdout and stderr.

        Only for commands that leave no process holding their output behind (not ``runsc
        create``, whose sandbox inherits its stdio).
        """
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            pid = self.spawn(argv, stdout=out_w, stderr=err_w, env=env)
        except BaseException:
            for fd in (out_r, out_w, err_r, err_w):
                os.close(fd)
            raise
        os.close(out_w)
        os.close(err_w)
        deadline = time.monotonic() + timeout
        chunks: dict[int, bytearray] = {out_r: bytearray(), err_r: bytearray()}
        timed_out = False
        with selectors.DefaultSelector() as selector:
            for fd in chunks:
                selector.register(fd, selectors.EVENT_READ)
            while selector.get_map():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    timed_out = True
                    break
                for key, _mask in selector.select(remaining):
                    data = _read(key.fd)
                    if not data:
                        selector.unregister(key.fd)
                        continue
                    buffer = chunks[key.fd]
                    if len(buffer) < max_output:
                        buffer += data[: max_output - len(buffer)]
        for fd in chunks:
            os.close(fd)
        if timed_out:
            self.kill(pid)
        code = self.wait(pid, max(0.0, deadline - time.monotonic()) if not timed_out else 5.0)
        if code is None:
            self.kill(pid)
            self.wait(pid, 5.0)
        self.forget(pid)
        return CommandResult(None if timed_out else code, bytes(chunks[out_r]), bytes(chunks[err_r]))


def _read(fd: int) -> bytes:
    # Only called when the selector reported the pipe readable; EINTR is retried by Python.
    return os.read(fd, 65536)
