"""The sandbox engine: owns the state directory, the warm pool and every sandbox, start to shutdown.

``Engine.start()`` cleans up after a crashed predecessor, finds ``runsc`` and the interpreters,
assembles the minimal root filesystem and starts the warm pool. It never raises for a missing
runtime: the problem is logged plainly and reported by :meth:`Engine.health` (the service answers
503), because an executor that exits at once is harder to diagnose than one that says why it
cannot work. ``Engine.execute()`` runs one request in a fresh sandbox and returns the
:class:`~sandbox_core.model.ExecutionResult`. ``Engine.close()`` destroys every sandbox and
leaves the state directory empty.

Whatever happens once a sandbox is taken (the code's output cannot be read, the client leaves, a
bug), the sandbox is destroyed and the pool refills. If the executor itself dies, a watchdog
process (:mod:`sandbox_selfmanaged.watchdog`) kills its sandboxes.

The engine makes its process a child subreaper and reaps every child of the process (see
:mod:`sandbox_selfmanaged.procs`): give it a process of its own, as ``sandbox-executor`` does,
rather than embedding it where other code starts subprocesses.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from sandbox_core.model import (
    ErrorInfo,
    ExecutionRequest,
    ExecutionResult,
    ExecutionStatus,
)
from sandbox_core.runner import Job, build_result, runner_path
from sandbox_core.runner.session_channel import session_runner_path
from sandbox_core.streaming import OutputCallback
from sandbox_selfmanaged import PROVIDER_NAME, RUNTIME_NAME
from sandbox_selfmanaged.cgroups import Cgroups
from sandbox_selfmanaged.checkpoint import Checkpoints
from sandbox_selfmanaged.egress.allowlist import Allowlist
from sandbox_selfmanaged.egress.gateway import EgressGateway
from sandbox_selfmanaged.egress.proxy import Resolver, system_resolver
from sandbox_selfmanaged.errors import (
    EgressPolicyError,
    ExecutionCancelled,
    ExecutorError,
    RuntimeMissingError,
    SandboxUnavailableError,
)
from sandbox_selfmanaged.janitor import Janitor
from sandbox_selfmanaged.limits import DEFAULT_MAXIMUMS, Limits, check_within
from sandbox_selfmanaged.pool import WarmPool
from sandbox_selfmanaged.procs import ProcessSupervisor
from sandbox_selfmanaged.rootfs import RUNNER_DIR, build_rootfs, find_node, probe_python
from sandbox_selfmanaged.runsc import Runsc, find_runsc
from sandbox_selfmanaged.runsc_platform import AUTO, choose_platform
from sandbox_selfmanaged.runtimes import default_cache_dir
from sandbox_selfmanaged.runtimes import names as runtime_names
from sandbox_selfmanaged.sandbox import Cancellation, LanguageRuntime, RunOutcome, Sandbox, SandboxLayout
from sandbox_selfmanaged.served_runtimes import ServedRuntimes, plain_key

logger = logging.getLogger(__name__)

LANGUAGES = ("python", "javascript")
STATE_ENTRIES = frozenset({"runsc", "rootfs", "bundles", "logs", "runners", "images", "egress"})
"""The only names the engine creates in its state directory (anything else: not ours, not touched)."""
FAILING_BOOTS = 3
"""Consecutive failed boots of one language after which the engine reports itself unhealthy."""
SESSION_RUNNER = "session_runner.py"
PYTHON_FLAGS = ("-I", "-B", "-u")
"""Isolated mode (no PYTHON* variables, no user site), no bytecode writes, unbuffered output
(so prints made before a timeout kill are not lost in a buffer)."""


def default_state_dir() -> Path:
    return Path("/var/lib/sandbox-executor") if os.geteuid() == 0 else Path.home() / ".local/state/sandbox-executor"


@attrs.frozen
class EngineConfig:
    """How the engine runs; every field has a safe default.

    :param state_dir: ours alone: runsc state, bundles, logs and the root filesystem live here,
        and it is emptied on shutdown. Keep it on the same filesystem as ``/usr`` so the root
        filesystem can be hard-linked instead of copied.
    :param platform: gVisor platform; ``auto`` takes systrap when the runsc has it, else ptrace
        (see :mod:`~sandbox_selfmanaged.runsc_platform`); results report it in ``metadata.platform``.
    :param pool_sizes: warm sandboxes kept ready per language (0 boots on demand only).
    :param boot_concurrency: sandbox boots in flight at most (each takes ~0.2 CPU-seconds).
    :param defaults: limits of a request that asks for none; ``maximums`` bound what requests ask.
    :param cgroup_parent: the cgroup all sandboxes live under (default derived from state_dir).
    :param acquire_timeout: how long an execution waits for a sandbox before a 503.
    :param runtimes: runtimes (package sets) to serve, each with its own warm pool; built at start
        into ``cache_dir`` unless already there (see :mod:`sandbox_selfmanaged.runtimes`).
    :param stall_timeout: a language whose requests have waited this long while no sandbox
        was handed out makes the engine unhealthy (its pool is stuck).
    :param egress: the operator's egress allowlist (``host:port`` entries); requests may only
        narrow it. Empty (the default): sandboxes have no network at all and boot as ever.
    :param egress_resolver: resolves allowed names for the egress proxy (the host's by default).
    """

    state_dir: Path = attrs.field(factory=default_state_dir, converter=Path)
    runsc: str | None = None
    platform: str = AUTO
    python: str = "/usr/bin/python3"
    node: str | None = None
    languages: tuple[str, ...] = attrs.field(default=LANGUAGES, converter=tuple)
    pool_sizes: Mapping[str, int] = attrs.field(factory=lambda: {"python": 2, "javascript": 1})
    boot_concurrency: int = 2
    defaults: Limits = attrs.field(factory=Limits)
    maximums: Limits = DEFAULT_MAXIMUMS
    cgroup_parent: str | None = None
    acquire_timeout: float = 30.0
    stall_timeout: float = 10.0
    boot_timeout: float = 30.0
    keep_logs: bool = False
    debug_runsc: bool = False
    runtimes: tuple[str, ...] = attrs.field(default=(), converter=runtime_names)
    cache_dir: Path | None = None
    restore: bool = True
    """Restore warm sandboxes of preloading runtimes from a checkpoint (see :mod:`~sandbox_selfmanaged.checkpoint`)."""
    egress: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    egress_resolver: Resolver = system_resolver

    def resolved_cgroup_parent(self) -> str:
        if self.cgroup_parent:
            return "/" + self.cgroup_parent.strip("/")
        digest = hashlib.sha256(str(self.state_dir.resolve()).encode()).hexdigest()[:8]
        return f"/sandbox-executor-{digest}"


class Engine:
    """Owns one state directory and everything in it; see the module docstring."""

    def __init__(self, config: EngineConfig) -> None:
        check_within(config.defaults, config.maximums, prefix="default ")
        self.config = config
        self.state_dir = config.state_dir
        self.problem: str | None = None
        self.language_errors: dict[str, str] = {}
        self.runtimes: dict[str, LanguageRuntime] = {}
        """Per pool key: a language (its bare interpreter) or a served runtime's name."""
        self.served = ServedRuntimes(config.cache_dir or default_cache_dir(), config.runtimes)
        self.runsc_path: str | None = None
        self.runsc_version: str | None = None
        self.cgroups = Cgroups()
        self.cgroup_parent = config.resolved_cgroup_parent() if self.cgroups.available else None
        self.supervisor: ProcessSupervisor | None = None
        self.runsc: Runsc | None = None
        self.janitor: Janitor | None = None
        self.pool: WarmPool | None = None
        self.checkpoints: Checkpoints | None = None
        self.layout: SandboxLayout | None = None
        self.egress_allowlist = Allowlist.parse(config.egress)
        self.egress: EgressGateway | None = None
        self._lock_fd: int | None = None
        self._watchdog_pid: int | None = None
        self._watchdog_fd: int | None = None
        self._active: set[Sandbox] = set()
        self._unreleased: set[Sandbox] = set()
        self._active_lock = threading.Lock()
        self._busy: dict[str, int] = {language: 0 for language in config.languages}
        self._closed = False
        self.started_at = time.time()

    # -- start-up -----------------------------------------------------------------------------

    def start(self) -> None:
        """Prepare everything and start the pool; problems are recorded, not raised (see module doc)."""
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        foreign = sorted(p.name for p in self.state_dir.iterdir() if p.name not in STATE_ENTRIES)
        if foreign:
            raise ExecutorError(
                f"the state directory {self.state_dir} holds files that are not the executor's "
                f"({', '.join(foreign[:5])}); give it an empty directory of its own (--state-dir)"
            )
        self._lock_state_dir()
        self.supervisor = ProcessSupervisor()
        try:
            self.runsc_path = find_runsc(self.config.runsc)
        except RuntimeMissingError as exc:
            self._fail(str(exc))
        self.runsc = Runsc(
            self.runsc_path or (self.config.runsc or "runsc"),
            self.state_dir / "runsc",
            self.supervisor,
            platform=choose_platform(self.runsc_path, self.config.platform),  # "auto": systrap when this runsc has it
            debug_log_dir=self.state_dir / "logs" / "debug" if self.config.debug_runsc else None,
            host_uds=bool(self.egress_allowlist.rules),
        )
        self._remove_leftovers()
        if self.problem:
            return
        try:
            self.runsc_version = self.runsc.version()
        except ExecutorError as exc:
            self._fail(str(exc))
            return
        if not self.cgroups.available:
            self._fail("no cgroup filesystem at /sys/fs/cgroup: sandbox memory, CPU and process limits cannot be enforced")
            return
        try:
            self._prepare_runtimes()
        except (OSError, ExecutorError) as exc:
            self._fail(f"could not assemble the sandbox root filesystem: {exc}")
            return
        if not self.runtimes:
            self._fail("no language can run: " + "; ".join(self.language_errors.values()))
            return
        if self.egress_allowlist.rules:
            self._start_egress()
        self._start_watchdog()
        self.janitor = Janitor(on_dispose=self._let_go)
        if self.config.restore:
            self.checkpoints = Checkpoints(self.state_dir / "images", self.runsc)
        self.pool = WarmPool(
            self._boot,
            {key: self.config.pool_sizes.get(runtime.language, 1) for key, runtime in self.runtimes.items()},
            self.config.defaults,
            self.janitor,
            boot_concurrency=self.config.boot_concurrency,
        )
        self.pool.start()
        logger.info(
            "engine started: %s, platform %s, %s, languages %s, state dir %s",
            self.runsc_version, self.runsc.platform, self.cgroups.describe(),
            ", ".join(f"{r.language} {r.version}" for r in self.runtimes.values()), self.state_dir,
        )

    def _start_egress(self) -> None:
        """The proxy and the sandboxes' egress files; the shim runs on the sandbox's Python."""
        assert self.layout is not None
        self.egress = EgressGateway(
            self.egress_allowlist, self.state_dir / "egress", self.config.python, resolver=self.config.egress_resolver
        )
        self.egress.prepare_rootfs(self.layout.rootfs)
        logger.info("egress allowed to %s", ", ".join(self.egress_allowlist.entries))

    def _fail(self, message: str) -> None:
        self.problem = message
        logger.error("%s", message)

    def _lock_state_dir(self) -> None:
        fd = os.open(self.state_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ExecutorError(f"another sandbox-executor is using the state directory {self.state_dir}") from None
        self._lock_fd = fd

    def _start_watchdog(self) -> None:
        """Start the process that kills our sandboxes if this one dies (see the watchdog module)."""
        assert self.supervisor is not None
        directories = [str(d) for d in self.cgroups.directories(self.cgroup_parent)] if self.cgroup_parent else []
        read_end, write_end = os.pipe()
        try:
            self._watchdog_pid = self.supervisor.spawn(
                [
                    sys.executable, "-I", "-S", "-B", str(Path(__file__).with_name("watchdog.py")),
                    str(self.state_dir / "runsc"), *directories,
                ],
                stdin=read_end,
                stderr=2,
            )
        except OSError as exc:
            os.close(write_end)
            logger.error("could not start the watchdog (sandboxes would outlive a crashed executor): %s", exc)
            return
        finally:
            os.close(read_end)
        self._watchdog_fd = write_end

    def _stop_watchdog(self) -> None:
        if self._watchdog_fd is None or self.supervisor is None:
            return
        try:
            os.write(self._watchdog_fd, b"q")
        except OSError:
            pass
        os.close(self._watchdog_fd)
        self._watchdog_fd = None
        if self._watchdog_pid is not None:
            self.supervisor.wait(self._watchdog_pid, 5.0)
            self.supervisor.forget(self._watchdog_pid)
            self._watchdog_pid = None

    def _remove_leftovers(self) -> None:
        """Delete what a crashed predecessor left: sandboxes, cgroups, files."""
        assert self.runsc is not None
        if self.runsc_path and (self.state_dir / "runsc").is_dir():
            for container_id in self.runsc.list_ids():
                logger.warning("deleting sandbox %s left by a previous executor", container_id)
                result = self.runsc.delete(container_id)
                if not result.ok:
                    logger.warning("could not delete leftover sandbox %s: %s", container_id, result.output_text())
        if self.cgroup_parent:
            for path in self.cgroups.remove_tree(self.cgroup_parent):
                logger.warning("could not remove leftover cgroup %s", path)
        _empty_directory(self.state_dir)

    def _prepare_runtimes(self) -> None:
        assert self.supervisor is not None
        runner_dir = self.state_dir / "runners"
        runner_dir.mkdir()
        python = node = None
        mount_points = []
        if "python" in self.config.languages:
            try:
                python = probe_python(self.config.python, self.supervisor)
            except RuntimeMissingError as exc:
                self.language_errors["python"] = str(exc)
                logger.error("python is unavailable: %s", exc)
        if "javascript" in self.config.languages:
            try:
                node = find_node(self.config.node)
            except RuntimeMissingError as exc:
                self.language_errors["javascript"] = str(exc)
                logger.error("javascript is unavailable: %s", exc)
        candidates: dict[str, tuple[str, ...]] = {}
        if python is not None:
            candidates["python"] = (python.executable, *PYTHON_FLAGS)
        if node is not None:
            candidates["javascript"] = (node,)
        if python is not None:  # sessions run the session runner, next to the Python runner it imports
            session_copy = runner_dir / SESSION_RUNNER
            shutil.copyfile(session_runner_path(), session_copy)
            os.chmod(session_copy, 0o444)
            mount_points.append(f"{RUNNER_DIR}/{SESSION_RUNNER}")
        for language, command in candidates.items():
            source = runner_path(language)
            host_copy = runner_dir / source.name
            shutil.copyfile(source, host_copy)
            os.chmod(host_copy, 0o444)
            inside = f"{RUNNER_DIR}/{source.name}"
            mount_points.append(inside)
            version = python.version if language == "python" and python else ""
            self.runtimes[language] = LanguageRuntime(
                language=language,
                argv=(*command, inside),
                runner_host_path=str(host_copy),
                runner_path=inside,
                version=version,
            )
        if "javascript" in self.runtimes:
            result = self.supervisor.run([self.runtimes["javascript"].argv[0], "--version"], timeout=30)
            version = result.stdout.decode().strip().lstrip("v") if result.ok else ""
            self.runtimes["javascript"] = attrs.evolve(self.runtimes["javascript"], version=version)
        self.served.prepare(python, node, self.runtimes["javascript"].version if node else "", self.supervisor)
        bare = dict(self.runtimes)  # a runtime named after its language replaces the bare one
        for name, build in self.served.builds.items():
            base = bare[build.language]
            preload = self.served.preload.get(name, ())
            self.runtimes[name] = attrs.evolve(
                base,
                name=name,
                mounts=(build.mount(),),
                native_threads=build.native_threads,
                argv=(*base.argv, f"--preload={','.join(preload)}") if preload else base.argv,
                preload=preload,
            )
            if preload:  # for code that cannot reach the preloaded modules (see served_runtimes)
                self.runtimes[plain_key(name)] = attrs.evolve(self.runtimes[name], argv=base.argv, preload=())
        started = time.monotonic()
        report = build_rootfs(
            self.state_dir / "rootfs",
            self.supervisor,
            python=python if "python" in self.runtimes else None,
            node=node if "javascript" in self.runtimes else None,
            file_mount_points=mount_points,
            directory_mount_points=self.served.mount_points(),
            libraries=self.served.libraries(),
        )
        logger.info(
            "root filesystem ready in %.2fs: %d files hard-linked, %d copied",
            time.monotonic() - started, report.files_linked, report.files_copied,
        )
        (self.state_dir / "bundles").mkdir()
        (self.state_dir / "logs").mkdir()
        self.layout = SandboxLayout(
            rootfs=report.root,
            bundles=self.state_dir / "bundles",
            logs=self.state_dir / "logs",
            cgroup_parent=self.cgroup_parent,
            keep_logs=self.config.keep_logs,
        )

    def boot_sandbox(self, runtime: LanguageRuntime, limits: Limits, image: Path | None = None) -> Sandbox:
        """A sandbox of ``runtime`` booted (or restored from ``image``) with this engine's layout,
        runsc, processes, cgroups and boot timeout; what a failed boot leaves goes to the janitor."""
        assert self.layout is not None and self.runsc is not None and self.supervisor is not None
        return Sandbox.boot(
            runtime,
            limits,
            layout=self.layout,
            runsc=self.runsc,
            supervisor=self.supervisor,
            cgroups=self.cgroups,
            timeout=self.config.boot_timeout,
            dispose=self.janitor.dispose if self.janitor is not None else None,
            image=image,
        )

    def _boot(self, key: str, limits: Limits) -> Sandbox:
        runtime = self.runtimes[key]
        if self.egress is not None:
            return self._boot_with_egress(self.egress, runtime, limits)
        # An image holds the rlimits it was booted with: only the pool's own limits restore.
        if runtime.preload and self.checkpoints is not None and limits.boot_key() == self.config.defaults.boot_key():
            return self.checkpoints.boot(key, lambda image: self.boot_sandbox(runtime, limits, image))
        return self.boot_sandbox(runtime, limits)

    def _boot_with_egress(self, egress: EgressGateway, runtime: LanguageRuntime, limits: Limits) -> Sandbox:
        """A sandbox wrapped by the egress shim, with its own proxy socket (never from a checkpoint:
        an image knows nothing of the socket)."""
        wrapped, socket = egress.prepare(runtime)
        try:
            sandbox = self.boot_sandbox(wrapped, limits)
        except BaseException:
            egress.discard(socket)
            raise
        egress.attach(sandbox.id, socket)
        return sandbox

    def _let_go(self, sandbox: Sandbox) -> None:
        """What the engine keeps for a sandbox that is being destroyed: its egress socket."""
        if self.egress is not None:
            self.egress.forget(sandbox.id)

    def wait_ready(self, timeout: float) -> bool:
        """Wait for the warm pool to fill; False (and the reason in :meth:`health`) if it did not."""
        return self.pool is not None and self.pool.wait_ready(timeout)

    # -- executing ----------------------------------------------------------------------------

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(self.runtimes)

    def egress_policy(self, network: tuple[str, ...]) -> Allowlist:
        """The allowlist an execution asking for ``network`` gets; :class:`EgressPolicyError`
        when it asks for more than the operator allows."""
        if self.egress is None:
            if network:
                raise EgressPolicyError("network: this executor allows no egress (its operator set no --egress-allow)")
            return Allowlist()
        try:
            return self.egress.narrow(network)
        except EgressPolicyError as error:
            raise EgressPolicyError(f"network: {error}") from None

    def execute(self, request: ExecutionRequest, limits: Limits) -> ExecutionResult:
        """Run ``request`` in a fresh sandbox under ``limits`` (already checked against the maximums).

        Raises :class:`SandboxUnavailableError` when no sandbox can be had (the service turns it
        into a 503 with ``Retry-After``); everything the code does is in the result.
        """
        result, release = self.run(request, limits)
        release()
        return result

    def run(
        self,
        request: ExecutionRequest,
        limits: Limits,
        cancel: Cancellation | None = None,
        job_options: Mapping[str, Any] | None = None,
        on_output: OutputCallback | None = None,
    ) -> tuple[ExecutionResult, Callable[[], None]]:
        """Like :meth:`execute`, but the used sandbox is only let go when ``release()`` is called.

        ``job_options`` are further :class:`~sandbox_core.runner.Job` fields (RAGFlow's ``/run``
        sets the output folder, ``run_name`` and its artifact rules this way).

        Releasing destroys the sandbox and lets the pool boot its replacement. Both cost CPU and
        the interpreter lock; a service calls ``release`` after its response has been sent, so
        that work stays off the response's path. ``release`` is idempotent; sandboxes never
        released are destroyed by :meth:`close`.

        When anything fails after the sandbox was taken, it is released here. A result that
        cannot be built from the sandbox's output becomes a ``provider_error`` result. Raising
        ``cancel`` (the client left) kills the sandbox and raises :class:`ExecutionCancelled`.
        ``on_output`` receives the output as it is read (see :meth:`Sandbox.run`).
        """
        if self.problem or self.pool is None:
            raise SandboxUnavailableError(self.problem or "the engine is not started", retry_after=30)
        if request.language not in self.runtimes:
            reason = self.language_errors.get(request.language, "not enabled on this executor")
            raise SandboxUnavailableError(f"{request.language} is unavailable: {reason}", retry_after=30)
        if cancel is not None and cancel.is_set():
            raise ExecutionCancelled("the execution was not started: its client left")
        egress = self.egress
        allowlist = self.egress_policy(request.network)
        kind = self.served.resolve(request.language, request.runtime, request.code)
        requested_at = time.monotonic()
        pool = self.pool
        sandbox = pool.acquire(kind, limits, self.config.acquire_timeout, cancel)
        queued = time.monotonic() - requested_at
        with self._active_lock:
            if self._closed:
                assert self.janitor is not None
                self.janitor.dispose(sandbox)
                raise SandboxUnavailableError("the executor is shutting down", retry_after=5)
            self._active.add(sandbox)
            self._busy[request.language] += 1
        released = threading.Event()
        running = True

        def release() -> None:
            with self._active_lock:
                if released.is_set():
                    return
                released.set()
                self._active.discard(sandbox)
                self._unreleased.discard(sandbox)
            assert self.janitor is not None
            self.janitor.dispose(sandbox)
            if sandbox.limits.boot_key() == pool.profile.boot_key():
                pool.give_back(kind)

        metadata: dict[str, Any] = {
            "runtime": RUNTIME_NAME,
            "runsc_version": self.runsc_version,
            "platform": sandbox.runsc.platform,
            "sandbox_id": sandbox.id,
            "language_version": sandbox.runtime.version,
            "sandbox_runtime": sandbox.runtime.name or None,
            "sandbox_preloaded": bool(sandbox.runtime.preload),
            "queue_seconds": round(queued, 6),
            "sandbox_boot_seconds": round(sandbox.boot_seconds, 6),
            "sandbox_restored": sandbox.restored,
            "sandbox_warm_seconds": round(max(0.0, requested_at + queued - sandbox.ready_at), 6),
            "memory_peak_bytes": None,
            "limits": limits.to_dict(),
        }
        outcome: RunOutcome | None = None
        try:
            if limits.memory_mb != sandbox.limits.memory_mb:
                sandbox.set_memory_limit(limits.memory_bytes)
            job = Job(
                code=request.code,
                arguments=request.arguments,
                max_artifact_bytes=limits.max_artifact_bytes,
                **(job_options or {}),
            )
            if egress is not None:
                egress.begin(sandbox.id, allowlist)
            try:
                outcome = sandbox.run(job, limits, cancel, on_output)
            finally:
                if egress is not None:
                    metadata["egress"] = egress.end(sandbox.id).metadata()
            with self._active_lock:
                self._busy[request.language] -= 1
                running = False
                if not released.is_set():
                    self._active.discard(sandbox)
                    self._unreleased.add(sandbox)
            if outcome.cancelled:
                raise ExecutionCancelled(f"the execution in sandbox {sandbox.id} was stopped: its client left")
            metadata["memory_peak_bytes"] = outcome.memory_peak
            result = self._result(outcome, limits, metadata)
        except BaseException as exc:
            if running:
                with self._active_lock:
                    self._busy[request.language] -= 1
            release()
            if not isinstance(exc, Exception) or isinstance(exc, ExecutionCancelled):
                raise
            # Whatever the code printed (a forged frame included) or whatever failed here, the
            # caller gets a result that says so, never a crash, and the sandbox is gone.
            logger.exception("execution in sandbox %s failed inside the executor", sandbox.id)
            result = _provider_error(exc, outcome, metadata)
        return result, release

    @staticmethod
    def _result(outcome: RunOutcome, limits: Limits, metadata: dict[str, Any]) -> ExecutionResult:
        result = build_result(
            provider=PROVIDER_NAME,
            stdout=outcome.stdout,
            stderr=outcome.stderr,
            exit_code=outcome.exit_code,
            execution_time=outcome.elapsed,
            timed_out=outcome.timed_out,
            timeout=limits.timeout,
            memory_exceeded=outcome.memory_exceeded,
            metadata=metadata,
            raw_value=True,
        )
        if outcome.flooded and result.status not in (ExecutionStatus.TIMEOUT, ExecutionStatus.MEMORY_LIMIT):
            result = attrs.evolve(
                result,
                status=ExecutionStatus.OUTPUT_LIMIT,
                error=ErrorInfo(
                    type="OutputLimitExceeded",
                    message=f"the code wrote more than {limits.max_output_bytes} bytes of output and was stopped",
                ),
            )
        return result

    # -- observing ----------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """Whether the engine can produce sandboxes, and the state of each language's pool.

        Unhealthy when no language can run, or when a language's pool cannot produce sandboxes:
        its last :data:`FAILING_BOOTS` boots failed, or requests have waited ``stall_timeout``
        seconds while no sandbox was handed out. A language that is merely not installed
        leaves the engine ``degraded``, still healthy.
        """
        pools = self.pool.status() if self.pool is not None else {}
        with self._active_lock:
            busy = dict(self._busy)
        languages: dict[str, Any] = {}
        stalled: list[str] = []
        for language in self.config.languages:
            pool = pools.get(language)
            if pool is not None and pool["starved_seconds"] >= self.config.stall_timeout:
                stalled.append(
                    f"{language}: requests waited {pool['starved_seconds']:.0f}s and no sandbox became ready "
                    f"({pool['booting']} booting, {busy.get(language, 0)} busy)"
                )
            elif pool is not None and pool["consecutive_failures"] >= FAILING_BOOTS:
                stalled.append(f"{language}: the last {pool['consecutive_failures']} boots failed: {pool['last_error']}")
            entry: dict[str, Any] = {
                "available": language in self.runtimes and not (pool or {}).get("failing", False),
                "version": self.runtimes[language].version if language in self.runtimes else None,
                "error": self.language_errors.get(language) or (pool or {}).get("last_error"),
            }
            if pool is not None:
                entry["pool"] = {**pool, "busy": busy.get(language, 0)}
            languages[language] = entry
        runtimes = self.served.describe()
        for name, entry in runtimes.items():
            if name in pools:
                entry["pool"] = pools[name]
            if plain_key(name) in pools:
                entry["plain_pool"] = pools[plain_key(name)]
            if name in self.runtimes and self.runtimes[name].preload:
                entry["restore"] = self.checkpoints.status(name) if self.checkpoints is not None else {"state": "off"}
        not_restoring = self.checkpoints.failing() if self.checkpoints is not None else {}
        working = [language for language, entry in languages.items() if entry["available"]]
        if self.problem:
            status, message = "unavailable", self.problem
        elif stalled:
            status, message = "unavailable", "sandboxes are not being produced: " + "; ".join(stalled)
        elif not working:
            status = "unavailable"
            message = "; ".join(f"{language}: {entry['error']}" for language, entry in languages.items() if entry["error"])
            message = message or "no language can run"
        elif len(working) < len(languages):
            status = "degraded"
            message = "; ".join(f"{language}: {entry['error']}" for language, entry in languages.items() if not entry["available"])
        elif self.served.errors or not_restoring:
            status = "degraded"
            message = "; ".join(f"runtime {name}: {error}" for name, error in {**self.served.errors, **not_restoring}.items())
        else:
            status, message = "ok", "sandboxes are ready"
        return {
            "status": status,
            "healthy": status != "unavailable",
            "message": message,
            "runtime": {
                "name": RUNTIME_NAME,
                "runsc": self.runsc_path or self.config.runsc,
                "version": self.runsc_version,
                "platform": self.runsc.platform if self.runsc else self.config.platform,
                "cgroups": self.cgroups.mode,
            },
            "languages": languages,
            "runtimes": runtimes,
            "uptime_seconds": round(time.time() - self.started_at, 3),
        }

    def active_count(self) -> int:
        with self._active_lock:
            return len(self._active)

    # -- shutdown -----------------------------------------------------------------------------

    def close(self, grace: float = 10.0) -> None:
        """Destroy every sandbox (running ones are killed after ``grace`` seconds) and empty the state dir."""
        with self._active_lock:
            if self._closed:
                return
            self._closed = True
        if self.pool is not None:
            self.pool.close()
        deadline = time.monotonic() + grace
        while self.active_count() and time.monotonic() < deadline:
            time.sleep(0.05)
        with self._active_lock:
            running = list(self._active)
        for sandbox in running:
            logger.warning("killing sandbox %s: the executor is shutting down", sandbox.id)
            sandbox.kill()
        while self.active_count() and time.monotonic() < deadline + 5:
            time.sleep(0.05)
        with self._active_lock:
            unreleased = list(self._unreleased)
            self._unreleased.clear()
        if self.janitor is not None:
            for sandbox in unreleased:
                self.janitor.dispose(sandbox)
            self.janitor.close()
        if self.runsc is not None and self.runsc_path:
            for container_id in self.runsc.list_ids():
                result = self.runsc.delete(container_id)
                if not result.ok:
                    logger.error("could not delete sandbox %s at shutdown: %s", container_id, result.output_text())
        if self.cgroup_parent:
            for path in self.cgroups.remove_tree(self.cgroup_parent):
                logger.error("could not remove cgroup %s at shutdown", path)
        if self.egress is not None:
            self.egress.close()
        _empty_directory(self.state_dir)
        self.served.close()
        self._stop_watchdog()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        logger.info("engine stopped; state directory %s is empty", self.state_dir)


def _provider_error(exc: Exception, outcome: RunOutcome | None, metadata: dict[str, Any]) -> ExecutionResult:
    """The result of an execution the executor failed to carry out or to read, with what it printed."""
    if outcome is None:
        message = f"the executor failed while running the code: {type(exc).__name__}: {exc}"
        return ExecutionResult(
            status=ExecutionStatus.PROVIDER_ERROR,
            error=ErrorInfo(type="ExecutorFailure", message=message),
            provider=PROVIDER_NAME,
            metadata=metadata,
        )
    return ExecutionResult(
        status=ExecutionStatus.PROVIDER_ERROR,
        stdout=outcome.stdout.output.text(),
        stderr=outcome.stderr.text(),
        exit_code=outcome.exit_code,
        error=ErrorInfo(type="ResultUnreadable", message=f"the executor could not read the sandbox's result: {exc}"),
        stdout_truncated=outcome.stdout.output.truncated,
        stderr_truncated=outcome.stderr.truncated,
        execution_time=outcome.elapsed,
        provider=PROVIDER_NAME,
        metadata=metadata,
    )


def _empty_directory(directory: Path) -> None:
    if not directory.is_dir():
        return
    for entry in directory.iterdir():
        if entry.name not in STATE_ENTRIES:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
