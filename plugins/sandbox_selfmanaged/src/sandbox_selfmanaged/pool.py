"""The warm pool: sandboxes booted ahead of time, per language, refilled in the background.

Boots are done by a fixed number of worker threads (``boot_concurrency``), so however many
requests arrive, gVisor boots never pile up and starve the executions running on the same cores.
Each language keeps ``target`` sandboxes ready, plus one more for every request waiting for one:
demand raises the refill rate instead of making requests boot their own. A waiting request gets
its boot however many sandboxes are lent out (long executions never starve short ones); the
refill towards ``target`` waits for lent sandboxes to be given back, so it does not compete with
the executions that hold them. Requests whose limits need a differently-booted sandbox (other
rlimits or CPU quota) get a dedicated boot, served before refills. When boots fail, waiting
requests get runsc's own error at once, and retries back off, never a generic "pool busy".
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from sandbox_selfmanaged.errors import ExecutionCancelled, SandboxUnavailableError
from sandbox_selfmanaged.janitor import Janitor
from sandbox_selfmanaged.limits import Limits
from sandbox_selfmanaged.sandbox import Cancellation, Sandbox

logger = logging.getLogger(__name__)

BACKOFF_FIRST = 0.5
BACKOFF_MAX = 5.0
IDLE_CHECK_SECONDS = 5.0
CANCEL_CHECK_SECONDS = 0.2
"""How often a request waiting for a sandbox looks whether its client left."""

BootFunction = Callable[[str, Limits], Sandbox]


@attrs.define
class _LanguageState:
    target: int
    ready: collections.deque[Sandbox] = attrs.field(factory=collections.deque)
    booting: int = 0
    queue: collections.deque[object] = attrs.field(factory=collections.deque)  # requests waiting, oldest first
    waiting_since: dict[object, float] = attrs.field(factory=dict)
    last_progress: float = attrs.field(factory=time.monotonic)  # a sandbox was last handed to a request
    lent: int = 0
    boots: int = 0
    boot_failures: int = 0
    consecutive_failures: int = 0
    retry_at: float = 0.0
    last_error: str | None = None
    last_boot_seconds: float | None = None


@attrs.define(eq=False)
class _Ticket:
    """A request for a sandbox booted with non-default limits."""

    language: str
    limits: Limits
    sandbox: Sandbox | None = None
    error: str | None = None
    abandoned: bool = False


class WarmPool:
    """Keeps booted sandboxes ready per language; see the module docstring.

    :param boot: boots one sandbox for a language with given limits (raises on failure).
    :param targets: sandboxes to keep ready, per language.
    :param profile: the limits warm sandboxes are booted with.
    :param janitor: where unusable or leftover sandboxes go to be destroyed.
    :param boot_concurrency: boots in flight at most.
    """

    def __init__(
        self,
        boot: BootFunction,
        targets: Mapping[str, int],
        profile: Limits,
        janitor: Janitor,
        *,
        boot_concurrency: int = 2,
    ) -> None:
        self._boot = boot
        self.profile = profile
        self._janitor = janitor
        self._states = {language: _LanguageState(target=max(0, n)) for language, n in targets.items()}
        self._tickets: collections.deque[_Ticket] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self._workers = [
            threading.Thread(target=self._work, name=f"pool-boot-{i}", daemon=True) for i in range(max(1, boot_concurrency))
        ]

    @property
    def languages(self) -> Sequence[str]:
        return tuple(self._states)

    def start(self) -> None:
        for worker in self._workers:
            worker.start()

    # -- taking sandboxes ---------------------------------------------------------------------

    def acquire(self, language: str, limits: Limits, timeout: float, cancel: Cancellation | None = None) -> Sandbox:
        """A booted sandbox for one execution, waiting up to ``timeout`` seconds for one.

        Raises :class:`SandboxUnavailableError` with the boot error when sandboxes cannot be
        booted, or when none became ready in time, and :class:`ExecutionCancelled` as soon as
        ``cancel`` is raised while waiting (no sandbox is taken for a client that left).
        """
        deadline = time.monotonic() + timeout
        if language not in self._states:
            raise SandboxUnavailableError(f"language {language!r} is not available on this executor")
        if limits.boot_key() != self.profile.boot_key():
            return self._acquire_dedicated(language, limits, deadline, cancel)
        turn = object()
        with self._cond:
            state = self._states[language]
            state.queue.append(turn)
            state.waiting_since[turn] = time.monotonic()
            self._cond.notify_all()
            try:
                while True:
                    if self._closed:
                        raise SandboxUnavailableError("the executor is shutting down", retry_after=5)
                    # First come, first served: only the oldest waiting request takes a sandbox.
                    while state.ready and state.queue[0] is turn:
                        sandbox = state.ready.popleft()
                        if sandbox.alive():
                            state.lent += 1
                            state.last_progress = time.monotonic()
                            return sandbox
                        logger.warning("warm %s sandbox %s died while idle; discarding it", language, sandbox.id)
                        self._janitor.dispose(sandbox)
                    if state.consecutive_failures and state.booting == 0:
                        raise SandboxUnavailableError(state.last_error or "sandboxes cannot be booted", retry_after=BACKOFF_MAX)
                    _check_cancel(cancel)
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise SandboxUnavailableError(
                            f"no {language} sandbox became ready within {timeout:g}s "
                            f"({state.booting} booting, {len(state.queue)} requests waiting)",
                            retry_after=1,
                        )
                    self._cond.wait(_wait_slice(remaining, cancel))
            finally:
                state.queue.remove(turn)
                del state.waiting_since[turn]
                self._cond.notify_all()

    def _acquire_dedicated(self, language: str, limits: Limits, deadline: float, cancel: Cancellation | None) -> Sandbox:
        ticket = _Ticket(language=language, limits=limits)
        with self._cond:
            if self._closed:
                raise SandboxUnavailableError("the executor is shutting down", retry_after=5)
            self._tickets.append(ticket)
            self._cond.notify_all()
            while ticket.sandbox is None and ticket.error is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed or (cancel is not None and cancel.is_set()):
                    ticket.abandoned = True
                    if ticket in self._tickets:
                        self._tickets.remove(ticket)
                    _check_cancel(cancel)
                    raise SandboxUnavailableError(f"no {language} sandbox with the requested limits could be booted in time", retry_after=1)
                self._cond.wait(_wait_slice(remaining, cancel))
            if ticket.error is not None:
                raise SandboxUnavailableError(ticket.error, retry_after=BACKOFF_MAX)
            assert ticket.sandbox is not None
            return ticket.sandbox

    def give_back(self, language: str) -> None:
        """The execution that took a sandbox of ``language`` is over: its replacement may boot now."""
        with self._cond:
            state = self._states.get(language)
            if state is not None and state.lent > 0:
                state.lent -= 1
                self._cond.notify_all()

    # -- booting ------------------------------------------------------------------------------

    def _next_job(self, now: float) -> tuple[str, Limits, _Ticket | None] | None:
        if self._tickets:
            ticket = self._tickets.popleft()
            return ticket.language, ticket.limits, ticket
        best: str | None = None
        best_key: tuple[int, int] = (0, 0)
        for language, state in self._states.items():
            for sandbox in [s for s in state.ready if not s.alive()]:
                state.ready.remove(sandbox)
                self._janitor.dispose(sandbox)
            # A sandbox lent to a running execution still counts against the target: refilling
            # waits until it is given back, so a boot does not compete with that execution (and
            # its response) for the CPU. Waiting requests raise the demand at once, however many
            # sandboxes are lent (admission bounds how many requests can wait).
            deficit = max(0, state.target - state.lent) + len(state.queue) - len(state.ready) - state.booting
            if deficit <= 0 or now < state.retry_at:
                continue
            key = (1 if state.queue else 0, deficit)
            if best is None or key > best_key:
                best, best_key = language, key
        if best is None:
            return None
        self._states[best].booting += 1
        return best, self.profile, None

    def _wait_time(self, now: float) -> float:
        pending = [s.retry_at - now for s in self._states.values() if s.retry_at > now]
        return min([IDLE_CHECK_SECONDS, *pending])

    def _work(self) -> None:
        while True:
            with self._cond:
                job = None
                while job is None:
                    if self._closed:
                        return
                    now = time.monotonic()
                    job = self._next_job(now)
                    if job is None:
                        self._cond.wait(self._wait_time(now))
            language, limits, ticket = job
            started = time.monotonic()
            sandbox: Sandbox | None = None
            error: str | None = None
            try:
                sandbox = self._boot(language, limits)
            except Exception as exc:  # noqa: BLE001 -- every boot failure is reported to waiters and health, with its cause
                error = str(exc) or type(exc).__name__
                logger.error("booting a %s sandbox failed: %s", language, error)
            with self._cond:
                state = self._states[language]
                if ticket is None:
                    state.booting -= 1
                if sandbox is not None:
                    state.boots += 1
                    state.consecutive_failures = 0
                    state.last_error = None
                    state.retry_at = 0.0
                    state.last_boot_seconds = time.monotonic() - started
                    if ticket is not None and not ticket.abandoned:
                        ticket.sandbox = sandbox
                        state.last_progress = time.monotonic()
                    elif ticket is None and not self._closed:
                        state.ready.append(sandbox)
                    else:
                        self._janitor.dispose(sandbox)
                else:
                    state.boot_failures += 1
                    state.consecutive_failures += 1
                    state.last_error = error
                    backoff = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (state.consecutive_failures - 1))
                    state.retry_at = time.monotonic() + backoff
                    if ticket is not None:
                        ticket.error = error
                self._cond.notify_all()

    # -- observing and closing ----------------------------------------------------------------

    def status(self) -> dict[str, dict[str, Any]]:
        """Per language: ready, target, booting, waiting, boot counters and the last boot error.

        ``starved_seconds``: how long requests have been waiting while no sandbox was handed
        out (0 when nobody waits) -- a pool making no progress at all, whether its boots hang,
        are never started, or give sandboxes that die before use.
        """
        with self._cond:
            now = time.monotonic()
            return {
                language: {
                    "ready": len(state.ready),
                    "target": state.target,
                    "booting": state.booting,
                    "waiting": len(state.queue),
                    "boots": state.boots,
                    "boot_failures": state.boot_failures,
                    "failing": bool(state.consecutive_failures),
                    "consecutive_failures": state.consecutive_failures,
                    "last_error": state.last_error,
                    "last_boot_seconds": state.last_boot_seconds,
                    "starved_seconds": _starved(state, now),
                }
                for language, state in self._states.items()
            }

    def wait_ready(self, timeout: float) -> bool:
        """Wait until every language has its target ready (or a boot failed); True if all ready."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                states = self._states.values()
                if all(len(s.ready) >= s.target for s in states):
                    return True
                if any(s.consecutive_failures for s in states):
                    return False
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)

    def close(self) -> None:
        """Stop booting and hand every ready sandbox to the janitor."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for worker in self._workers:
            if worker.is_alive():
                worker.join(60)
        with self._cond:
            for state in self._states.values():
                while state.ready:
                    self._janitor.dispose(state.ready.popleft())
            for ticket in self._tickets:
                ticket.abandoned = True
            self._tickets.clear()


def _check_cancel(cancel: Cancellation | None) -> None:
    if cancel is not None and cancel.is_set():
        raise ExecutionCancelled("the execution was not started: its client left while it waited for a sandbox")


def _wait_slice(remaining: float, cancel: Cancellation | None) -> float:
    return min(remaining, CANCEL_CHECK_SECONDS) if cancel is not None else remaining


def _starved(state: _LanguageState, now: float) -> float:
    if not state.waiting_since:
        return 0.0
    oldest = min(state.waiting_since.values())
    return round(max(0.0, now - max(oldest, state.last_progress)), 3)
