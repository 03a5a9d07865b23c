"""Warm pools of live backend sandboxes, for providers whose sandboxes are slow to create.

A cloud sandbox takes seconds to start and is billed while it lives, so SaaS providers keep a few
ready between executions and delete them once nobody has used them for a while. This module holds
that bookkeeping once, for every provider; it knows nothing of any backend: the provider gives it
a ``create`` and a ``destroy`` function.

- :class:`SandboxPool` — one pool (one backend configuration): lease, return, expire, shut down.
- :class:`Lease` — one item handed out, with a way to say "do not reuse this one".
- :class:`PoolSet` — a provider's process-wide pools by configuration, shut down together (by the
  provider's ``sandbox_shutdown`` hook, and at interpreter exit as a last resort).
- :func:`pool_config_fields` — the ``isolation``, ``pool_size`` and ``pool_idle_timeout`` fields,
  named and bounded the same way in every pooled provider's config.

Rules that keep sandboxes from leaking: an item whose lease ends with an exception is destroyed,
as is one the provider discards (its execution did not end cleanly), one returned to a full or
shut-down pool, and one idle longer than ``idle_timeout`` (a daemon thread reaps those, so an idle
process does not keep paying for sandboxes). ``max_idle=0`` keeps nothing: every item is
destroyed when its lease ends (a provider's strict isolation mode).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Hashable, Iterator
from typing import Generic, TypeVar

import attrs

from sandbox_core.errors import ProviderError
from sandbox_core.schema import ConfigField

log = logging.getLogger(__name__)

T = TypeVar("T")

ISOLATION_MODES = ("pooled", "strict")
"""``pooled``: executions reuse warm sandboxes; ``strict``: a new sandbox per execution."""


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

    def __init__(self, item: T, reused: bool) -> None:
        self.item = item
        self.reused = reused
        """Whether the item had served an earlier lease (False: created for this one)."""
        self.discarded = False

    def discard(self) -> None:
        """Destroy the item when the lease ends instead of keeping it for another execution."""
        self.discarded = True


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
    def lease(self) -> Iterator[Lease[T]]:
        """Hand out an idle item, or a new one; take it back (or destroy it) when the block ends."""
        item, reused = self._take()
        lease = Lease(item, reused)
        try:
            yield lease
        except BaseException:
            self._finish(lease, keep=False)
            raise
        self._finish(lease, keep=not lease.discarded)

    def _take(self) -> tuple[T, bool]:
        expired: list[T] = []
        with self._wakeup:
            if self._closed:
                raise PoolClosedError(f"the {self.name} pool has been shut down")
            now = time.monotonic()
            found: T | None = None
            while self._idle:
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


class PoolSet(Generic[T]):
    """A provider's pools in this process, one per backend configuration. Thread-safe.

    The set shuts its pools down at interpreter exit too, as a last resort: providers should still
    do it from their ``sandbox_shutdown`` hook, which the core calls on :meth:`SandboxClient.close
    <sandbox_core.client.SandboxClient.close>` and :meth:`ProviderRegistry.shutdown
    <sandbox_core.registry.ProviderRegistry.shutdown>`. A child process made by ``fork`` starts
    with an empty set: the sandboxes belong to the parent.
    """

    def __init__(self) -> None:
        self._pools: dict[Hashable, SandboxPool[T]] = {}
        self._lock = threading.Lock()
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

    def shutdown(self) -> None:
        """Shut down and forget every pool; a later :meth:`get` starts a new one."""
        with self._lock:
            pools = list(self._pools.values())
            self._pools.clear()
        for pool in pools:
            pool.shutdown()

    def _forget(self) -> None:
        self._pools = {}
        self._lock = threading.Lock()


def _shutdown_if_alive(ref: weakref.ref[PoolSet[T]]) -> None:
    pools = ref()
    if pools is not None:
        pools.shutdown()
