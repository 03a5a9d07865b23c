"""Back-pressure: at most ``max_concurrency`` executions run, at most ``queue_size`` wait.

A request that finds the queue full, or waits longer than ``queue_timeout``, is refused with 503
and a ``Retry-After`` estimate instead of piling up until clients time out.
"""

from __future__ import annotations

import asyncio
import collections
import math


class Busy(Exception):
    """No execution slot is free and the queue is full (or the wait was too long)."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Admission:
    """An asyncio semaphore with a bounded, timed queue; use ``async with admission.slot():``."""

    def __init__(self, max_concurrency: int, queue_size: int, queue_timeout: float) -> None:
        self.max_concurrency = max(1, max_concurrency)
        self.queue_size = max(0, queue_size)
        self.queue_timeout = queue_timeout
        self._free = self.max_concurrency
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self.rejected = 0

    @property
    def running(self) -> int:
        return self.max_concurrency - self._free

    @property
    def waiting(self) -> int:
        return sum(1 for f in self._waiters if not f.done())

    def retry_after(self) -> int:
        """Seconds until a retry has a fair chance: a few per queued execution per slot."""
        return max(1, math.ceil(2 * (self.waiting + 1) / self.max_concurrency))

    async def acquire(self) -> None:
        if self._free > 0 and not self.waiting:
            self._free -= 1
            return
        if self.waiting >= self.queue_size:
            self.rejected += 1
            raise Busy(
                f"the executor is at capacity ({self.running} running, {self.waiting} queued); retry later",
                self.retry_after(),
            )
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        try:
            await asyncio.wait_for(future, self.queue_timeout)
        except asyncio.TimeoutError:
            self._abandon(future)
            self.rejected += 1
            raise Busy(f"no execution slot became free within {self.queue_timeout:g}s; retry later", self.retry_after()) from None
        except BaseException:
            self._abandon(future)
            raise

    def _abandon(self, future: asyncio.Future[None]) -> None:
        if future.done() and not future.cancelled():
            self.release()  # the slot was handed over just as we gave up: pass it on
        try:
            self._waiters.remove(future)
        except ValueError:
            pass

    def release(self) -> None:
        while self._waiters:
            future = self._waiters.popleft()
            if not future.done():
                future.set_result(None)
                return
        self._free += 1

    def slot(self) -> _Slot:
        return _Slot(self)


class _Slot:
    def __init__(self, admission: Admission) -> None:
        self._admission = admission

    async def __aenter__(self) -> None:
        await self._admission.acquire()

    async def __aexit__(self, *_exc: object) -> None:
        self._admission.release()
