"""Warm pools of live backend sandboxes, for providers whose sandboxes are slow to create.

A cloud sandbox takes seconds to start and is billed while it lives, so SaaS providers keep a few
ready between executions and delete them once nobody has used them for a while. This module holds
that bookkeeping once, for every provider; it knows nothing of any backend: the provider gives it
a ``create`` and a ``destroy`` function.

- :class:`SandboxPool` — one pool (one backend configuration): lease, return, expire, shut down,
  and :meth:`SandboxPool.run`, the one retry rule for a pooled item that died while idle.
- :class:`Lease` — one item handed out, with a way to say "do not reuse this one" and "user code
  has started in it".
- :class:`PendingDestroys` — items whose destruction the backend refused, retried in the
  background with backoff until they are gone or their deadline passes.
- :class:`PoolSet` — a provider's process-wide pools by configuration, shut down together (by the
  provider's ``sandbox_shutdown`` hook, and at interpreter exit as a last resort).
  :meth:`PoolSet.for_config` derives a config's pool: keyed by the fields the provider names
  (:func:`config_key`, where secrets are hashed, never kept) and sized by the pool fields.
- :class:`OpenSessions` — the stateful sessions a provider opened in this process, each with the
  function that ends it: ended all at once by ``sandbox_shutdown``, and one by one when a session
  given a deadline (its ``max_lifetime``) reaches it, by a daemon thread.
- :func:`pool_config_fields` — the ``isolation``, ``pool_size`` and ``pool_idle_timeout`` fields,
  named and bounded the same way in every pooled provider's config.
- :func:`runtime_template` — the backend template a config's ``runtime_templates`` maps a
  request's runtime to, or the clear refusal every provider gives for an unmapped one.

Rules that keep sandboxes from leaking: an item whose lease ends with an exception is destroyed,
as is one the provider discards (its execution did not end cleanly), one returned to a full or
shut-down pool, and one idle longer than ``idle_timeout`` (a daemon thread reaps those, so an idle
process does not keep paying for sandboxes). ``max_idle=0`` keeps nothing: every item is
destroyed when its lease ends (a provider's strict isolation mode).

The retry rule (:meth:`SandboxPool.run`): a pooled item can vanish while idle (the backend deleted
it at the end of its lifetime, or an operator did). When the work fails on a *reused* item before
any user code started in it, the item is destroyed and the work runs once more on a newly created
item; a failure after the code started is never retried, as the code may have had effects.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from typing import Any, Generic, TypeVar

import attrs

from sandbox_core.errors import ProviderError
from sandbox_core.schema import ConfigField, Secret

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

ISOLATION_MODES = ("pooled", "strict")
"""``pooled``: executions reuse warm sandboxes; ``strict``: a new sandbox per execution."""
POOL_FIELDS = ("isolation", "pool_size", "pool_idle_timeout")
"""The fields :func:`pool_config_fields` defines; part of every pool's key (:meth:`PoolSet.for_config`)."""


def pool_config_fields(shared: str, *, default_size: int = 2, max_size: int = 16) -> list[ConfigField]:
    """The config fields of a pooled provider, so that every such provider offers the same ones.

    :param shared: what a reused sandbox keeps from one execution to the next, in words for the
        form (e.g. "files outside the job folder and installed packages").
    """
    return [
        ConfigField(
            "isolation",
            "enum",
            label="Isolation",
            description=f"pooled: executions reuse warm sandboxes, each in a fresh interpreter context and "
            f"working folder ({shared} are shared). strict: a new sandbox per execution, deleted afterwards "
            "(slower; nothing is shared).",
            default="pooled",
            choices=ISOLATION_MODES,
        ),
        ConfigField(
            "pool_size",
            "integer",
            label="Warm sandboxes kept",
            description="Idle sandboxes kept per process for reuse in pooled isolation; each is billed while it waits.",
            default=default_size,
            minimum=0,
            maximum=max_size,
        ),
        ConfigField(
            "pool_idle_timeout",
            "number",
            label="Pool idle timeout (s)",
            description="A pooled sandbox nobody used for this long is deleted (by a background thread).",
            default=60.0,
            minimum=1,
            maximum=3600,
        ),
    ]


def is_strict(config: Mapping[str, Any]) -> bool:
    """Whether a validated pooled-provider config asks for a new sandbox per execution."""
    return bool(config["isolation"] == "strict")


def config_key(config: Mapping[str, Any], fields: Iterable[str]) -> str:
    """A digest of ``config``'s values of ``fields``: equal for configs that may share sandboxes.

    Secret values (:class:`~sandbox_core.schema.Secret`) go into the digest revealed, so a changed
    key gets new sandboxes, but only as part of a SHA-256 digest: the key itself is never kept.
    """
    facts = {}
    for name in sorted(set(fields)):
        value = config.get(name)
        facts[name] = value.reveal() if isinstance(value, Secret) else value
    return hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode("utf-8")).hexdigest()


class UnknownRuntimeError(ValueError):
    """A request named a runtime its provider's config maps to no template."""


def runtime_template(config: Mapping[str, Any], runtime: str, provider: str) -> str:
    """The template ``config["runtime_templates"]`` maps ``runtime`` to.

    Raises :class:`UnknownRuntimeError` naming the runtimes the config does map: a runtime that is
    not listed is refused, never silently run in the default template.
    """
    templates = config.get("runtime_templates") or {}
    chosen = templates.get(runtime) if isinstance(templates, Mapping) else None
    if not chosen:
        known = ", ".join(sorted(templates)) if isinstance(templates, Mapping) else ""
        raise UnknownRuntimeError(
            f"unknown runtime {runtime!r}: the {provider} config's runtime_templates has {known or 'no runtime'}"
        )
    return str(chosen)


class PoolClosedError(ProviderError):
    """A lease was asked of a pool that has been shut down."""


@attrs.frozen
class PoolStats:
    """A pool's counters: items idle and leased now, and created and destroyed so far."""

    idle: int
    leased: int
    created: int
    destroyed: int


@attrs.define
class _Idle(Generic[T]):
    item: T
    since: float


class Lease(Generic[T]):
    """One item handed out by :meth:`SandboxPool.lease`."""

    def __init__(self, item: T, reused: bool, replaced: T | None = None) -> None:
        self.item = item
        self.reused = reused
        """Whether the item had served an earlier lease (False: created for this one)."""
        self.replaced = replaced
        """The pooled item this one replaces, when :meth:`SandboxPool.run` retried (else None)."""
        self.discarded = False
        self.started = False

    def discard(self) -> None:
        """Destroy the item when the lease ends instead of keeping it for another execution."""
        self.discarded = True

    def mark_started(self) -> None:
        """Say that user code is about to run in the item: from here on, a failure is never retried."""
        self.started = True


class SandboxPool(Generic[T]):
    """Live items of one backend configuration, kept for reuse. Thread-safe.

    :param create: makes a new item (may take seconds; called without the pool's lock held).
    :param destroy: releases an item for good; its exceptions are logged and swallowed.
    :param max_idle: items kept between leases (0: none, every item is destroyed after use).
    :param idle_timeout: seconds an unused item is kept before it is destroyed.
    :param name: shown in log messages.
    """

    def __init__(
        self,
        create: Callable[[], T],
        destroy: Callable[[T], None],
        *,
        max_idle: int,
        idle_timeout: float,
        name: str = "sandbox",
    ) -> None:
        if max_idle < 0:
            raise ValueError("max_idle must be 0 or more")
        if idle_timeout <= 0:
            raise ValueError("idle_timeout must be positive")
        self._create = create
        self._destroy = destroy
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout
        self.name = name
        self._idle: deque[_Idle[T]] = deque()
        self._leased = 0
        self._created = 0
        self._destroyed = 0
        self._closed = False
        self._wakeup = threading.Condition()
        self._reaper: threading.Thread | None = None

    @contextlib.contextmanager
    def lease(self, *, fresh: bool = False, replacing: T | None = None) -> Iterator[Lease[T]]:
        """Hand out an idle item, or a new one; take it back (or destroy it) when the block ends.

        :param fresh: always create a new item, leaving the idle ones where they are.
        :param replacing: the item this lease replaces (recorded as :attr:`Lease.replaced`).
        """
        item, reused = self._take(fresh)
        lease = Lease(item, reused, replacing)
        try:
            yield lease
        except BaseException:
            self._finish(lease, keep=False)
            raise
        self._finish(lease, keep=not lease.discarded)

    def run(self, work: Callable[[Lease[T]], R], *, retry_if: Callable[[Exception], bool]) -> R:
        """``work(lease)`` on a leased item, retried once on a new item if a reused one failed before the code started.

        The retry happens only when all of these hold: ``work`` raised an exception for which
        ``retry_if`` is true (the provider's judgement that the *item* is at fault, not the
        account or the network), the item had served an earlier lease, and ``work`` had not yet
        called :meth:`Lease.mark_started`. The failed item is destroyed; the second run gets a newly
        created item (not another idle one, which may have vanished the same way), and whatever it
        raises propagates.
        """
        with self.lease() as lease:
            try:
                return work(lease)
            except Exception as exc:
                if lease.started or not lease.reused or not retry_if(exc):
                    raise
                log.info("a pooled %s sandbox failed before the code started (%s); retrying on a new one", self.name, exc)
                lease.discard()
                replaced = lease.item
        with self.lease(fresh=True, replacing=replaced) as lease:
            return work(lease)

    def _take(self, fresh: bool) -> tuple[T, bool]:
        expired: list[T] = []
        with self._wakeup:
            if self._closed:
                raise PoolClosedError(f"the {self.name} pool has been shut down")
            now = time.monotonic()
            found: T | None = None
            while self._idle and not fresh:
                entry = self._idle.pop()  # most recently used first: the others may expire
                if now - entry.since < self.idle_timeout:
                    found = entry.item
                    break
                expired.append(entry.item)
            self._leased += 1
        for item in expired:
            self._destroy_quietly(item)
        if found is not None:
            return found, True
        try:
            item = self._create()
        except BaseException:
            with self._wakeup:
                self._leased -= 1
            raise
        with self._wakeup:
            self._created += 1
        return item, False

    def _finish(self, lease: Lease[T], keep: bool) -> None:
        with self._wakeup:
            self._leased -= 1
            if keep and not self._closed and len(self._idle) < self.max_idle:
                self._idle.append(_Idle(lease.item, time.monotonic()))
                self._ensure_reaper()
                self._wakeup.notify_all()
                return
        self._destroy_quietly(lease.item)

    def _destroy_quietly(self, item: T) -> None:
        try:
            self._destroy(item)
        except Exception:
            log.warning("could not destroy a %s sandbox", self.name, exc_info=True)
        with self._wakeup:
            self._destroyed += 1

    def _ensure_reaper(self) -> None:
        if self._reaper is None or not self._reaper.is_alive():
            self._reaper = threading.Thread(target=_reap, args=(weakref.ref(self),), name=f"{self.name}-pool-reaper", daemon=True)
            self._reaper.start()

    def _expired(self) -> tuple[list[T], float | None]:
        """Remove and return the expired idle items, and the seconds until the next expiry."""
        now = time.monotonic()
        expired: list[T] = []
        while self._idle and now - self._idle[0].since >= self.idle_timeout:
            expired.append(self._idle.popleft().item)
        wait = self._idle[0].since + self.idle_timeout - now if self._idle else None
        return expired, wait

    def shutdown(self) -> None:
        """Destroy every idle item now; items still leased are destroyed when their lease ends."""
        with self._wakeup:
            self._closed = True
            idle = [entry.item for entry in self._idle]
            self._idle.clear()
            self._wakeup.notify_all()
        for item in idle:
            self._destroy_quietly(item)

    @property
    def closed(self) -> bool:
        return self._closed

    def stats(self) -> PoolStats:
        with self._wakeup:
            return PoolStats(idle=len(self._idle), leased=self._leased, created=self._created, destroyed=self._destroyed)


def _reap(pool_ref: weakref.ref[SandboxPool[T]]) -> None:
    """The reaper thread: destroys expired idle items until the pool is closed, empty or gone."""
    while True:
        pool = pool_ref()
        if pool is None:
            return
        with pool._wakeup:
            if pool._closed:
                return
            expired, wait = pool._expired()
            if not expired:
                if wait is None:
                    pool._reaper = None
                    return
                pool._wakeup.wait(timeout=wait)
        for item in expired:
            pool._destroy_quietly(item)
        del pool  # do not keep the pool alive while sleeping


@attrs.define(eq=False)  # entries are told apart by identity, as two may hold equal items
class _Pending(Generic[T]):
    item: T
    label: str
    give_up_at: float
    next_try: float
    delay: float
    busy: bool = False


class PendingDestroys(Generic[T]):
    """Items whose destruction failed, retried with backoff until they are gone. Thread-safe.

    A backend that refuses a delete (throttling, an outage) would otherwise leave the item alive
    and billed until the backend's own idle timeout. :meth:`add` puts it on this list; a daemon
    thread retries it after ``first_delay`` seconds, doubling the delay up to ``max_delay``, until
    ``destroy`` succeeds or the item's deadline passes (then it is logged and forgotten: the
    backend reclaims it by itself). :meth:`retry_now` tries every item at once (at shutdown), and
    :meth:`pending` names the items still waiting (for a provider's health details).

    :param destroy: destroys an item for good, raising on failure; an item already gone counts as
        destroyed, so the provider's function must not raise for it.
    :param label: the item's name in logs and in :meth:`pending` (a backend id, never a secret).
    """

    def __init__(
        self,
        destroy: Callable[[T], None],
        *,
        label: Callable[[T], str] = str,
        name: str = "sandbox",
        first_delay: float = 1.0,
        max_delay: float = 30.0,
    ) -> None:
        self._destroy = destroy
        self._label = label
        self.name = name
        self.first_delay = first_delay
        self.max_delay = max_delay
        self._entries: list[_Pending[T]] = []
        self._wakeup = threading.Condition()
        self._worker: threading.Thread | None = None
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._forget)

    def add(self, item: T, *, give_up_after: float) -> None:
        """Retry destroying ``item`` in the background for up to ``give_up_after`` seconds."""
        now = time.monotonic()
        entry = _Pending(item, self._label(item), now + give_up_after, now + self.first_delay, self.first_delay)
        with self._wakeup:
            self._entries.append(entry)
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._work, name=f"{self.name}-pending-destroys", daemon=True)
                self._worker.start()
            self._wakeup.notify_all()

    def pending(self) -> list[str]:
        """The labels of the items not destroyed yet, oldest first."""
        with self._wakeup:
            return [entry.label for entry in self._entries]

    def retry_now(self, budget: float = 30.0) -> None:
        """Try to destroy every waiting item once, now, spending at most about ``budget`` seconds.

        Items that still fail stay on the list for the background thread (while the process lives).
        """
        deadline = time.monotonic() + budget
        with self._wakeup:
            due = [entry for entry in self._entries if not entry.busy]
            for entry in due:
                entry.busy = True
        for index, entry in enumerate(due):
            if time.monotonic() >= deadline:
                with self._wakeup:
                    for skipped in due[index:]:
                        skipped.busy = False
                log.warning("%d %s sandbox(es) still undestroyed at shutdown", len(due) - index, self.name)
                return
            self._attempt(entry)

    def _attempt(self, entry: _Pending[T]) -> None:
        """One try at destroying ``entry``'s item; on failure it is rescheduled or given up."""
        try:
            self._destroy(entry.item)
        except Exception as exc:
            now = time.monotonic()
            with self._wakeup:
                entry.busy = False
                if now < entry.give_up_at:
                    entry.delay = min(entry.delay * 2, self.max_delay)
                    entry.next_try = now + entry.delay
                    log.info("could not destroy %s sandbox %s yet (%s); next try in %.0fs", self.name, entry.label, exc, entry.delay)
                    return
                self._entries.remove(entry)
            log.warning("gave up destroying %s sandbox %s (%s); the backend reclaims it by itself", self.name, entry.label, exc)
            return
        with self._wakeup:
            if entry in self._entries:
                self._entries.remove(entry)
        log.info("destroyed %s sandbox %s on a later try", self.name, entry.label)

    def _work(self) -> None:
        """The background thread: retries due items until the list is empty."""
        while True:
            with self._wakeup:
                if not self._entries:
                    self._worker = None
                    return
                now = time.monotonic()
                due = [entry for entry in self._entries if not entry.busy and entry.next_try <= now]
                if not due:
                    waiting = [entry.next_try for entry in self._entries if not entry.busy]
                    self._wakeup.wait(timeout=max(0.05, min(waiting) - now) if waiting else 1.0)
                    continue
                for entry in due:
                    entry.busy = True
            for entry in due:
                self._attempt(entry)

    def _forget(self) -> None:
        self._entries = []
        self._wakeup = threading.Condition()
        self._worker = None


class PoolSet(Generic[T]):
    """A provider's pools in this process, one per backend configuration. Thread-safe.

    :param key_fields: the config fields that decide which backend a sandbox belongs to (account,
        credentials, endpoint, template): configs equal in these and in :data:`POOL_FIELDS` share
        a pool (see :meth:`for_config`).
    :param name: shown in the pools' log messages.
    :param pending: where the provider puts items it could not destroy.

    The set shuts its pools down at interpreter exit too, as a last resort: providers should still
    do it from their ``sandbox_shutdown`` hook, which the core calls on :meth:`SandboxClient.close
    <sandbox_core.client.SandboxClient.close>` and :meth:`ProviderRegistry.shutdown
    <sandbox_core.registry.ProviderRegistry.shutdown>`. A child process made by ``fork`` starts
    with an empty set: the sandboxes belong to the parent.
    """

    def __init__(
        self, key_fields: Iterable[str] = (), *, name: str = "sandbox", pending: PendingDestroys[T] | None = None
    ) -> None:
        self.key_fields = tuple(key_fields)
        self.name = name
        self._pools: dict[Hashable, SandboxPool[T]] = {}
        self._lock = threading.Lock()
        self.pending = pending
        """Where the provider puts items it could not destroy; retried once more at :meth:`shutdown`."""
        atexit.register(_shutdown_if_alive, weakref.ref(self))
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._forget)

    def get(self, key: Hashable, factory: Callable[[], SandboxPool[T]]) -> SandboxPool[T]:
        """The open pool for ``key``, made by ``factory`` when there is none."""
        with self._lock:
            pool = self._pools.get(key)
            if pool is None or pool.closed:
                pool = self._pools[key] = factory()
            return pool

    def for_config(self, config: Mapping[str, Any], create: Callable[[], T], destroy: Callable[[T], None]) -> SandboxPool[T]:
        """The open pool serving the validated ``config``, made on first use.

        Its key is :func:`config_key` over :attr:`key_fields` and :data:`POOL_FIELDS`; its size
        and idle timeout come from the pool fields (``strict`` isolation keeps nothing idle).
        ``create`` and ``destroy`` are used only when the pool is made.
        """

        def make() -> SandboxPool[T]:
            return SandboxPool(
                create,
                destroy,
                max_idle=0 if is_strict(config) else int(config["pool_size"]),
                idle_timeout=float(config["pool_idle_timeout"]),
                name=self.name,
            )

        return self.get(config_key(config, (*self.key_fields, *POOL_FIELDS)), make)

    def shutdown(self) -> None:
        """Shut down and forget every pool, then retry the pending destroys; a later :meth:`get` starts a new pool."""
        with self._lock:
            pools = list(self._pools.values())
            self._pools.clear()
        for pool in pools:
            pool.shutdown()
        if self.pending is not None:
            self.pending.retry_now()

    def _forget(self) -> None:
        self._pools = {}
        self._lock = threading.Lock()


def _shutdown_if_alive(ref: weakref.ref[PoolSet[T]]) -> None:
    pools = ref()
    if pools is not None:
        pools.shutdown()


@attrs.define(eq=False)
class _Session:
    end: Callable[[], None]
    deadline: float | None


class OpenSessions:
    """The sessions a provider opened in this process, by handle, each with the function that ends it. Thread-safe.

    :meth:`end_all` (from the provider's ``sandbox_shutdown``) ends every one; a session added
    with a ``deadline`` (``time.monotonic()`` seconds) is ended by a daemon thread when it passes,
    for backends that cannot end a session at its ``max_lifetime`` by themselves. Sessions a
    process only attached to belong to the process that opened them and are not listed here. A
    child process made by ``fork`` starts with none.
    """

    def __init__(self, name: str = "sandbox") -> None:
        self.name = name
        self._sessions: dict[str, _Session] = {}
        self._wakeup = threading.Condition()
        self._reaper: threading.Thread | None = None
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._forget)

    def add(self, handle: str, end: Callable[[], None], *, deadline: float | None = None) -> None:
        with self._wakeup:
            self._sessions[handle] = _Session(end, deadline)
            if deadline is not None and (self._reaper is None or not self._reaper.is_alive()):
                self._reaper = threading.Thread(target=self._reap, name=f"{self.name}-session-deadlines", daemon=True)
                self._reaper.start()
            self._wakeup.notify_all()

    def discard(self, handle: str) -> None:
        with self._wakeup:
            self._sessions.pop(handle, None)

    def handles(self) -> list[str]:
        with self._wakeup:
            return sorted(self._sessions)

    def end_all(self) -> None:
        """End every session listed; a failure is logged and the others still end."""
        with self._wakeup:
            sessions = list(self._sessions.items())
            self._sessions.clear()
        for handle, session in sessions:
            self._end(handle, session)

    def _end(self, handle: str, session: _Session) -> None:
        try:
            session.end()
        except Exception:
            log.warning("could not end %s session %s", self.name, handle, exc_info=True)

    def _reap(self) -> None:
        """The deadline thread: ends sessions past their deadline until none has one left."""
        while True:
            with self._wakeup:
                now = time.monotonic()
                due = [(h, s) for h, s in self._sessions.items() if s.deadline is not None and s.deadline <= now]
                for handle, _ in due:
                    del self._sessions[handle]
                if not due:
                    waits = [s.deadline - now for s in self._sessions.values() if s.deadline is not None]
                    if not waits:
                        self._reaper = None
                        return
                    self._wakeup.wait(timeout=min(waits))
                    continue
            for handle, session in due:
                log.info("%s session %s reached its max_lifetime; ending it", self.name, handle)
                self._end(handle, session)

    def _forget(self) -> None:
        self._sessions = {}
        self._wakeup = threading.Condition()
        self._reaper = None
