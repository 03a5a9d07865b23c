"""Destroys used sandboxes in the background, so a result is returned without waiting for cleanup.

A sandbox that cannot be deleted yet (runsc failed, or cannot even be run for a while) is killed
at once and kept: deleting it is retried with a growing pause until it works, so a runsc that
comes back gets its leftovers cleaned up then, not at the executor's shutdown.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from sandbox_selfmanaged.sandbox import Sandbox

logger = logging.getLogger(__name__)

RETRY_FIRST = 1.0
RETRY_MAX = 30.0


class Janitor:
    """A worker thread that runs :meth:`Sandbox.destroy` on what it is handed, in order, retrying failures.

    ``on_dispose`` is called with each sandbox as it is handed in, whichever path handed it (a
    finished execution, a warm sandbox found dead in the pool, a failed boot): the place to let go
    of what the executor keeps per sandbox outside runsc (its egress socket).
    """

    def __init__(self, on_dispose: Callable[[Sandbox], None] | None = None) -> None:
        self._on_dispose = on_dispose
        self._queue: queue.Queue[Sandbox | None] = queue.Queue()
        self._retries: dict[Sandbox, tuple[float, float]] = {}  # sandbox -> (next attempt, pause); worker thread only
        self._retrying = 0
        self._thread = threading.Thread(target=self._work, name="janitor", daemon=True)
        self._thread.start()
        self.failures = 0

    def dispose(self, sandbox: Sandbox) -> None:
        """Schedule ``sandbox`` for destruction (it is killed right away, deleted soon after)."""
        sandbox.kill()
        if self._on_dispose is not None:
            try:
                self._on_dispose(sandbox)
            except Exception:  # what is kept beside a sandbox must never stop its destruction
                logger.exception("releasing what was kept for sandbox %s failed", sandbox.id)
        self._queue.put(sandbox)

    @property
    def pending(self) -> int:
        """Sandboxes waiting to be destroyed, those waiting for a retry included."""
        return self._queue.qsize() + self._retrying

    def _work(self) -> None:
        while True:
            now = time.monotonic()
            due = [sandbox for sandbox, (at, _pause) in self._retries.items() if at <= now]
            for sandbox in due:
                self._destroy(sandbox)
            wait = min((at for at, _pause in self._retries.values()), default=now + 3600) - time.monotonic()
            try:
                handed = self._queue.get(timeout=max(0.0, wait))
            except queue.Empty:
                continue
            if handed is None:
                return
            self._destroy(handed)

    def _destroy(self, sandbox: Sandbox) -> bool:
        retry = self._retries.pop(sandbox, None)
        try:
            done = sandbox.destroy()
            reason = sandbox.cleanup_error
        except Exception as exc:  # one failed cleanup must not stop the others
            logger.exception("destroying sandbox %s failed", sandbox.id)
            done, reason = False, f"{type(exc).__name__}: {exc}"
        if done:
            if retry is not None:
                logger.info("sandbox %s deleted after earlier failures", sandbox.id)
        else:
            pause = RETRY_FIRST if retry is None else min(RETRY_MAX, retry[1] * 2)
            if retry is None:
                self.failures += 1
                logger.warning("could not delete sandbox %s (%s); retrying until it works", sandbox.id, reason)
            self._retries[sandbox] = (time.monotonic() + pause, pause)
        self._retrying = len(self._retries)
        return done

    def close(self, timeout: float = 60.0) -> None:
        """Finish every pending destruction (one last try for those failing so far), then stop.

        What still cannot be deleted is left to the engine's shutdown sweep.
        """
        self._queue.put(None)
        self._thread.join(timeout)
        for sandbox in list(self._retries):
            if not self._destroy(sandbox):
                logger.error("could not delete sandbox %s at shutdown: %s", sandbox.id, sandbox.cleanup_error)
        self._retries.clear()
        self._retrying = 0
