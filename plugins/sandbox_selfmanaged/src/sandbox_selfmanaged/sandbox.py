"""One gVisor sandbox, from boot to deletion: the only object that touches its processes and files.

A sandbox is booted ahead of time with the runner already started and blocked reading its job
from stdin, so an execution only has to write the job, close stdin and stream stdout/stderr back.
It is used for exactly one execution and then destroyed.

Its lifecycle is one ``runsc run`` process (the *keeper*), started inside the sandbox's own cgroup
whose limits the engine wrote first (see :mod:`sandbox_selfmanaged.cgroups`). The keeper creates
and starts the sandbox, waits for it, and deletes runsc's state when it ends, however it ends: a
SIGKILL of the sandbox process (timeout, flood, cancellation, teardown) is the whole teardown.
The engine then only reaps the keeper and removes the cgroup. A sandbox restored from a
checkpoint is made by ``runsc restore --detach`` (runsc sets up its cgroup) and deleted by
``runsc delete``.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import secrets
import selectors
import shutil
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import attrs

from sandbox_core.runner import BoundedCapture, Job, ResultStream
from sandbox_core.runner.python_runner import PRELOAD_READY
from sandbox_core.streaming import STREAMS, OutputCallback, StreamDecoder
from sandbox_selfmanaged.cgroups import JOIN_FAILED, Cgroups
from sandbox_selfmanaged.errors import SandboxBootError
from sandbox_selfmanaged.limits import Limits
from sandbox_selfmanaged.oci import build_spec
from sandbox_selfmanaged.procs import ProcessSupervisor
from sandbox_selfmanaged.runsc import Runsc

logger = logging.getLogger(__name__)

ID_PREFIX = "sbx-"
ID_RANDOM_BYTES = 8
FLOOD_FACTOR = 4
"""Output beyond this many times the limit is a flood: the sandbox is killed, not read to the end."""
DRAIN_SECONDS = 1.0
"""How long to keep reading the pipes after a kill, to keep output written just before it."""
READ_CHUNK = 65536
PID_FILE_FIRST_LOOK = 0.06
PID_FILE_POLL = 0.01
"""When a boot first looks for the sandbox's pid file (``runsc run`` writes it once created, ≈ 0.1 s
after it starts, later under load), and how often after that: each look costs the executor CPU."""
KEEPER_EXIT_SECONDS = 10.0
"""How long teardown waits for the keeper to delete runsc's state after the sandbox was killed."""


def new_sandbox_id() -> str:
    """A fixed-length random id: runsc matches ids by prefix, so no id may prefix another."""
    return ID_PREFIX + secrets.token_hex(ID_RANDOM_BYTES)


class Cancellation:
    """A flag another thread raises to stop an execution (its client left); wakes :meth:`Sandbox.run` at once.

    Backed by a pipe, so the sandbox's ``select`` loop sees it like its own output: no polling.
    Close it when the execution is over (a context manager does).
    """

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        self._lock = threading.Lock()
        self._set = False

    def fileno(self) -> int:
        return self._read

    def set(self) -> None:
        """Ask the execution to stop; harmless when repeated or after :meth:`close`."""
        with self._lock:
            if self._set or self._write < 0:
                return
            self._set = True
            os.write(self._write, b"!")

    def is_set(self) -> bool:
        return self._set

    def close(self) -> None:
        with self._lock:
            for fd in (self._read, self._write):
                if fd >= 0:
                    os.close(fd)
            self._read = self._write = -1

    def __enter__(self) -> Cancellation:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


@attrs.frozen
class LanguageRuntime:
    """How a language runs inside: the command line and the runner file mounted for it."""

    language: str
    argv: tuple[str, ...]
    runner_host_path: str
    runner_path: str
    version: str = ""
    name: str = ""
    """The runtime (package set) served, or "" for the bare interpreter."""
    mounts: tuple[tuple[str, str], ...] = ()
    """``(host folder, path inside)`` bind-mounted read-only (a runtime's packages)."""
    native_threads: bool = False
    """Its packages start native thread pools, sized to the CPU quota through the environment."""
    preload: tuple[str, ...] = ()
    """Modules the runner imports before its job (named in ``argv``); a boot waits until they are."""


@attrs.frozen
class SandboxLayout:
    """Where an engine keeps its sandboxes' files, and what every sandbox shares."""

    rootfs: Path
    bundles: Path
    logs: Path
    cgroup_parent: str | None
    keep_logs: bool = False


class State(str, enum.Enum):
    READY = "ready"
    RUNNING = "running"
    FINISHED = "finished"
    DESTROYED = "destroyed"


@attrs.define
class RunOutcome:
    """What one execution in a sandbox produced, before it becomes an ExecutionResult."""

    stdout: ResultStream
    stderr: BoundedCapture
    exit_code: int | None
    elapsed: float
    timed_out: bool = False
    flooded: bool = False
    cancelled: bool = False
    memory_exceeded: bool = False
    memory_peak: int | None = None


class Sandbox:
    """A booted sandbox; create with :meth:`boot`, use once with :meth:`run`, then :meth:`destroy`."""

    def __init__(
        self,
        *,
        sandbox_id: str,
        runtime: LanguageRuntime,
        limits: Limits,
        layout: SandboxLayout,
        runsc: Runsc,
        supervisor: ProcessSupervisor,
        cgroups: Cgroups,
    ) -> None:
        self.id = sandbox_id
        self.runtime = runtime
        self.limits = limits
        self.layout = layout
        self.runsc = runsc
        self.supervisor = supervisor
        self.cgroups = cgroups
        self.bundle = layout.bundles / sandbox_id
        self.log_file = layout.logs / f"{sandbox_id}.log"
        self.cgroups_path = f"{layout.cgroup_parent.rstrip('/')}/{sandbox_id}" if layout.cgroup_parent else None
        self.pid: int | None = None
        self.keeper: int | None = None
        """The ``runsc run`` (or ``restore``) process that owns the sandbox; None until it is started."""
        self._pidfd: int | None = None
        self._own_cgroup = False
        """The engine made this sandbox's cgroup, so removes it when the sandbox is gone."""
        self.state = State.READY
        self.boot_seconds = 0.0
        self.ready_at = 0.0
        self.cleanup_error: str | None = None
        self.restored = False
        self._stdin: int | None = None
        self._stdout: int | None = None
        self._stderr: int | None = None

    @property
    def language(self) -> str:
        return self.runtime.language

    # -- boot ---------------------------------------------------------------------------------

    @classmethod
    def boot(
        cls,
        runtime: LanguageRuntime,
        limits: Limits,
        *,
        layout: SandboxLayout,
        runsc: Runsc,
        supervisor: ProcessSupervisor,
        cgroups: Cgroups,
        timeout: float = 30.0,
        dispose: Callable[[Sandbox], None] | None = None,
        image: Path | None = None,
    ) -> Sandbox:
        """Create and start a sandbox whose runner waits for its job. Raises :class:`SandboxBootError`.

        What a failed boot left (bundle, runsc state, processes) goes to ``dispose`` (the
        janitor, which retries until it is gone), or is destroyed here when none is given.
        With ``image`` (a checkpoint of a sandbox of the same runtime and boot limits, see
        :mod:`sandbox_selfmanaged.checkpoint`) the sandbox is restored from it instead of booted.
        """
        sandbox = cls(
            sandbox_id=new_sandbox_id(),
            runtime=runtime,
            limits=limits,
            layout=layout,
            runsc=runsc,
            supervisor=supervisor,
            cgroups=cgroups,
        )
        try:
            sandbox._boot(timeout, image)
        except BaseException:
            if dispose is not None:
                dispose(sandbox)
            else:
                sandbox.destroy()
            raise
        return sandbox

    def _boot(self, timeout: float, image: Path | None) -> None:
        started = time.monotonic()
        self.bundle.mkdir(parents=True)
        spec = build_spec(
            args=self.runtime.argv,
            rootfs=str(self.layout.rootfs),
            cgroups_path=self.cgroups_path,
            limits=self.limits,
            read_only_files=[(self.runtime.runner_host_path, self.runtime.runner_path), *self.runtime.mounts],
            native_threads=self.runtime.native_threads,
        )
        (self.bundle / "config.json").write_text(json.dumps(spec))
        pid_file = self.bundle / "sandbox.pid"
        if image is None:
            argv = self._keeper_argv(spec, pid_file)
        else:
            argv = list(self.runsc.restore_argv(self.id, self.bundle, pid_file, self._runsc_log(), image))
        stdin_r, self._stdin = os.pipe()
        self._stdout, stdout_w = os.pipe()
        self._stderr, stderr_w = os.pipe()
        try:
            process = self.supervisor.spawn(argv, stdin=stdin_r, stdout=stdout_w, stderr=stderr_w)
        except OSError as exc:
            raise SandboxBootError(f"gVisor could not start a sandbox: runsc could not be run: {exc}") from None
        finally:
            for fd in (stdin_r, stdout_w, stderr_w):
                os.close(fd)
        if image is None:
            self.keeper = process
            self._await_created(pid_file, started + timeout)
            if self.runtime.preload:
                self._await_preloaded(started + timeout)
        else:
            self._await_restored(process, pid_file, timeout)
        self.restored = image is not None
        self.boot_seconds = time.monotonic() - started
        self.ready_at = time.monotonic()

    def _keeper_argv(self, spec: dict[str, object], pid_file: Path) -> list[str]:
        """``runsc run`` in the sandbox's cgroup, created here with the spec's limits."""
        argv = list(self.runsc.run_argv(self.id, self.bundle, pid_file, self._runsc_log()))
        if self.cgroups_path is None:
            return argv
        resources = spec["linux"]["resources"]  # type: ignore[index]
        try:
            self.cgroups.create(
                self.cgroups_path,
                memory_bytes=resources["memory"]["limit"],
                cpu_quota_us=resources["cpu"]["quota"],
                cpu_period_us=resources["cpu"]["period"],
                pids=resources["pids"]["limit"],
            )
        except OSError as exc:
            raise SandboxBootError(f"gVisor could not start a sandbox: its cgroup could not be set up: {exc}") from None
        self._own_cgroup = True
        return self.cgroups.join_argv(self.cgroups_path, argv)

    def _runsc_log(self) -> Path | str:
        """runsc's log: a file only when logs are kept (its errors reach the stderr pipe anyway)."""
        return self.log_file if self.layout.keep_logs else os.devnull

    def _await_created(self, pid_file: Path, deadline: float) -> None:
        """Wait until ``runsc run`` has created the sandbox (its pid file), and hold on to its process."""
        assert self.keeper is not None
        pause = PID_FILE_FIRST_LOOK
        while True:
            code = self.supervisor.wait(self.keeper, pause)
            pause = PID_FILE_POLL
            if code is not None:
                if code == JOIN_FAILED and self.cgroups_path is not None:
                    raise SandboxBootError("gVisor could not start a sandbox: it could not enter its cgroup")
                raise SandboxBootError(f"gVisor could not start a sandbox: runsc run exited with code {code}: {self._failure_text()}")
            try:
                pid = int(pid_file.read_text().strip())
            except (OSError, ValueError):
                pid = 0
            if pid > 0:
                break
            if time.monotonic() >= deadline:
                raise SandboxBootError("gVisor could not start a sandbox: runsc run did not create it in time")
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            raise SandboxBootError("gVisor could not start a sandbox: its process ended at once") from None
        # The pidfd names the process that has this pid now; it is the sandbox if the keeper is its
        # parent. From here on it is signalled through the pidfd, which a reused pid cannot fool.
        if _parent_of(pid) != self.keeper:
            os.close(pidfd)
            raise SandboxBootError("gVisor could not start a sandbox: its process ended at once")
        self.pid, self._pidfd = pid, pidfd

    def _await_restored(self, restorer: int, pid_file: Path, timeout: float) -> None:
        code = self.supervisor.wait(restorer, timeout)
        if code is None:
            self.supervisor.kill(restorer)
            self.supervisor.wait(restorer, 5)
        self.supervisor.forget(restorer)
        if code != 0:
            reason = f"did not finish within {timeout:g}s" if code is None else f"exited with code {code}"
            raise SandboxBootError(f"gVisor could not start a sandbox: runsc restore {reason}: {self._failure_text()}")
        try:
            self.pid = int(pid_file.read_text().strip())
        except (OSError, ValueError) as exc:
            raise SandboxBootError(f"gVisor could not start a sandbox: runsc wrote no sandbox pid ({exc})") from None
        self.supervisor.adopt(self.pid)

    def _await_preloaded(self, deadline: float) -> None:
        """Wait for the runner's ready line on stderr (its preloaded imports are done)."""
        assert self._stderr is not None
        said = b""
        selector = selectors.DefaultSelector()
        selector.register(self._stderr, selectors.EVENT_READ)
        try:
            while not said.endswith(PRELOAD_READY):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not selector.select(remaining):
                    raise SandboxBootError(f"the runner did not finish preloading {', '.join(self.runtime.preload)} in time")
                chunk = os.read(self._stderr, READ_CHUNK)
                if not chunk:
                    detail = said.decode("utf-8", "replace").strip() or "no output"
                    raise SandboxBootError(f"the runner ended while preloading: {detail}")
                said += chunk
                if b"preload failed: " in said and said.endswith(b"\n"):  # the child ended; its parent waits on
                    detail = said.decode("utf-8", "replace").strip()
                    raise SandboxBootError(f"the runner could not preload: {detail}")
        finally:
            selector.close()

    def _failure_text(self) -> str:
        """What runsc said about a failed boot: the sandbox's stderr pipe, else its log's errors."""
        text = ""
        if self._stderr is not None:
            os.set_blocking(self._stderr, False)
            try:
                text = os.read(self._stderr, READ_CHUNK).decode("utf-8", "replace").strip()
            except (BlockingIOError, OSError):
                text = ""
        messages = []
        try:
            for line in self.log_file.read_text(errors="replace").splitlines()[-50:]:
                try:
                    entry = json.loads(line)
                except ValueError:
                    messages.append(line.strip())
                    continue
                if isinstance(entry, dict) and entry.get("level") in ("error", "warning", "fatal"):
                    messages.append(str(entry.get("msg", "")))
        except OSError:
            pass
        unique: list[str] = []
        for part in [*text.splitlines(), *messages[-3:]]:
            part = part.strip()
            if part and not any(part in seen for seen in unique):
                unique.append(part)
        return "; ".join(unique)[-2000:] or "no output (see the runsc log)"

    # -- state --------------------------------------------------------------------------------

    def alive(self) -> bool:
        """True while the sandbox runs (a warm sandbox that died cannot be used)."""
        return self.pid is not None and not self.supervisor.exited(self.keeper if self.keeper is not None else self.pid)

    def set_memory_limit(self, limit: int) -> bool:
        if self.cgroups_path is None:
            return False
        return self.cgroups.set_memory_limit(self.cgroups_path, limit)

    def take_stdio(self) -> tuple[int, int, int]:
        """Hand the runner's stdin, stdout and stderr over to the caller (a session's channel), which closes them."""
        assert self._stdin is not None and self._stdout is not None and self._stderr is not None
        fds = (self._stdin, self._stdout, self._stderr)
        self._stdin = self._stdout = self._stderr = None
        self.state = State.RUNNING
        return fds

    def kill(self) -> None:
        """SIGKILL the sandbox process: the sentry and everything it runs die at once."""
        if self._pidfd is not None:
            try:
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass
        elif self.keeper is not None:
            self.supervisor.kill(self.keeper)  # not created yet: the keeper is all there is
        elif self.pid is not None:
            self.supervisor.kill(self.pid)  # restored: an adopted orphan

    # -- one execution ------------------------------------------------------------------------

    def run(
        self, job: Job, limits: Limits, cancel: Cancellation | None = None, on_output: OutputCallback | None = None
    ) -> RunOutcome:
        """Give the runner its job and stream its output back until it ends or is stopped.

        Enforces ``limits.timeout`` (wall clock, from the first byte of the job) and the output
        flood cap. Memory is enforced by the kernel; an OOM kill is read from the cgroup. When
        ``cancel`` is raised the sandbox is killed at once and the outcome says ``cancelled``.
        ``on_output`` gets the output the result keeps, as events, as soon as it is read (in this
        thread, so it must be quick: the service posts them to its event loop).
        """
        if self.state is not State.READY:
            raise RuntimeError(f"sandbox {self.id} is {self.state.value}, not ready")
        assert self._stdin is not None and self._stdout is not None and self._stderr is not None
        self.state = State.RUNNING
        decoders = [StreamDecoder(stream, on_output) for stream in STREAMS] if on_output is not None else []
        stdout = ResultStream(
            job.marker, limits.max_output_bytes, max_frame_bytes=job.max_frame_bytes, on_output=decoders[0] if decoders else None
        )
        stderr = BoundedCapture(limits.max_output_bytes, on_kept=decoders[1] if decoders else None)
        flood_cap = FLOOD_FACTOR * limits.max_output_bytes
        payload = job.parts()
        started = time.monotonic()
        deadline = started + limits.timeout
        timed_out = flooded = finished = cancelled = False
        kill_at: float | None = None

        for fd in (self._stdin, self._stdout, self._stderr):
            os.set_blocking(fd, False)
        selector = selectors.DefaultSelector()
        selector.register(self._stdin, selectors.EVENT_WRITE)
        selector.register(self._stdout, selectors.EVENT_READ, stdout.feed)
        selector.register(self._stderr, selectors.EVENT_READ, stderr.feed)
        cancel_fd = cancel.fileno() if cancel is not None else -1
        if cancel_fd >= 0:
            selector.register(cancel_fd, selectors.EVENT_READ)
        reading = 2
        try:
            while reading:
                now = time.monotonic()
                if kill_at is None and now >= deadline:
                    timed_out = True
                    self.kill()
                    kill_at = now
                if kill_at is not None and now - kill_at > DRAIN_SECONDS:
                    break
                limit = (deadline - now) if kill_at is None else (kill_at + DRAIN_SECONDS - now)
                for key, _mask in selector.select(max(0.0, limit)):
                    if key.fd == cancel_fd:
                        cancelled = True
                        self.kill()
                        kill_at = time.monotonic()
                        reading = 0
                        break
                    if key.fd == self._stdin:
                        payload = self._write_some(payload, selector)
                        continue
                    try:
                        chunk = os.read(key.fd, READ_CHUNK)
                    except BlockingIOError:
                        continue
                    if not chunk:
                        selector.unregister(key.fd)
                        reading -= 1
                        continue
                    key.data(chunk)
                    if kill_at is None and (stdout.output.total > flood_cap or stderr.total > flood_cap):
                        flooded = True
                        self.kill()
                        kill_at = time.monotonic()
                    elif key.fd == self._stdout and stdout.complete:
                        # The result frame is the runner's last word (JSON has no raw newline, so
                        # this one ends it): do not wait for the sandbox to wind down.
                        finished = True
                        reading = 0
                        self._drain(self._stderr, stderr.feed, flood_cap)
                        break
        finally:
            selector.close()
            self._close_stdio()
        stdout.close()
        for decoder, capture in zip(decoders, (stdout.output, stderr)):
            decoder.close(cut=capture.truncated)
        if finished:
            exit_code = None  # the frame carries it; the sandbox is destroyed without waiting
        else:
            exit_code = self._wait_exit(deadline if kill_at is None else time.monotonic() + DRAIN_SECONDS)
        if exit_code is None and kill_at is None and not finished and not cancelled:
            # Output closed but the code still runs (it closed stdout/stderr itself): its time is up.
            timed_out = True
            self.kill()
            exit_code = self._wait_exit(time.monotonic() + DRAIN_SECONDS)
        elapsed = time.monotonic() - started
        self.state = State.FINISHED
        memory_exceeded = False
        memory_peak = None
        if self.cgroups_path is not None:
            memory_exceeded = self.cgroups.oom_kills(self.cgroups_path) > 0
            memory_peak = self.cgroups.memory_peak(self.cgroups_path)
        return RunOutcome(
            stdout=stdout,
            stderr=stderr,
            exit_code=exit_code,
            elapsed=elapsed,
            timed_out=timed_out,
            flooded=flooded,
            cancelled=cancelled,
            memory_exceeded=memory_exceeded and not timed_out,
            memory_peak=memory_peak,
        )

    @staticmethod
    def _drain(fd: int | None, feed: Callable[[bytes], None], cap: int) -> None:
        """Read what is already in a pipe without waiting for more."""
        total = 0
        while fd is not None and total <= cap:
            try:
                chunk = os.read(fd, READ_CHUNK)
            except (BlockingIOError, OSError):
                return
            if not chunk:
                return
            total += len(chunk)
            feed(chunk)

    def _write_some(self, payload: list[memoryview], selector: selectors.BaseSelector) -> list[memoryview]:
        assert self._stdin is not None
        try:
            written = os.write(self._stdin, payload[0][:READ_CHUNK])
        except BlockingIOError:
            return payload
        except (BrokenPipeError, OSError):
            payload = []  # the runner is gone; what it says (or not) tells the rest
        else:
            rest = payload[0][written:]
            payload = [rest, *payload[1:]] if rest else payload[1:]
        if not payload:
            selector.unregister(self._stdin)
            os.close(self._stdin)
            self._stdin = None
        return payload

    def _wait_exit(self, until: float) -> int | None:
        waited = self.keeper if self.keeper is not None else self.pid
        if waited is None:
            return None
        code = self.supervisor.wait(waited, max(0.0, until - time.monotonic()))
        if code is None:
            return None
        return code if code >= 0 else 128 - code

    def _close_stdio(self) -> None:
        for name in ("_stdin", "_stdout", "_stderr"):
            fd = getattr(self, name)
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
                setattr(self, name, None)

    # -- teardown -----------------------------------------------------------------------------

    def destroy(self) -> bool:
        """Kill the sandbox, delete it from runsc and remove its cgroup and files. Idempotent.

        Returns False, keeping everything needed to try again, when it could not be deleted
        (runsc failed, could not even be run, or the cgroup would not go); :attr:`cleanup_error`
        then says why.
        """
        if self.state is State.DESTROYED:
            return True
        self._close_stdio()
        self.kill()
        if self.keeper is not None:
            if self.supervisor.wait(self.keeper, KEEPER_EXIT_SECONDS) is None:
                self.cleanup_error = f"runsc run did not end within {KEEPER_EXIT_SECONDS:g}s of the sandbox's kill"
                self.supervisor.kill(self.keeper)
                return False
        # A keeper ends having deleted its sandbox, unless it was itself killed or failed.
        if self.runsc.has_state(self.id):
            try:
                result = self.runsc.delete(self.id, self._runsc_log())
            except OSError as exc:  # runsc cannot be run at all (removed, not executable)
                self.cleanup_error = f"runsc could not be run: {exc}"
                return False
            if not result.ok:
                self.cleanup_error = f"runsc delete failed: {result.output_text()}"
                return False
        if self._own_cgroup and self.cgroups_path is not None and not self.cgroups.remove(self.cgroups_path):
            self.cleanup_error = f"its cgroup {self.cgroups_path} could not be removed"
            return False
        self._own_cgroup = False
        self.cleanup_error = None
        if self.keeper is not None:
            self.supervisor.forget(self.keeper)
        elif self.pid is not None:
            self.supervisor.wait(self.pid, 5.0)
            self.supervisor.forget(self.pid)
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        shutil.rmtree(self.bundle, ignore_errors=True)
        if not self.layout.keep_logs:
            try:
                self.log_file.unlink()
            except FileNotFoundError:
                pass
        self.state = State.DESTROYED
        return True


def _parent_of(pid: int) -> int | None:
    """The parent of ``pid`` from ``/proc`` (None once it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2 :].split()[1])
