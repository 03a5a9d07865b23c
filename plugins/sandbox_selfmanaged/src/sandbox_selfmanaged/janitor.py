"""Destroys used sandboxes in the background, so a result is returned without waiting for cleanup."""

from __future__ import annotations

import logging
import queue
import threading

from sandbox_selfmanaged.sandbox import Sandbox

logger = logging.getLogger(__name__)


class Janitor:
    """A worker thread that runs :meth:`Sandbox.destroy` on what it is handed, in order."""

    def __init__(self) -> None:
        self._queue: queue.Queue[Sandbox | None] = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="janitor", daemon=True)
        self._thread.start()
        self.failures = 0

    def dispose(self, sandbox: Sandbox) -> None:
        """Schedule ``sandbox`` for destruction (it is killed right away, deleted soon after)."""
        sandbox.kill()
        self._queue.put(sandbox)

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def _work(self) -> None:
        while True:
            sandbox = self._queue.get()
            if sandbox is None:
                return
            try:
                if not sandbox.destroy():
                    self.failures += 1
            except Exception:  # one failed cleanup must not stop the others; the shutdown sweep retries
                self.failures += 1
                logger.exception("destroying sandbox %s failed", sandbox.id)

    def close(self, timeout: float = 60.0) -> None:
        """Finish every pending destruction, then stop."""
        self._queue.put(None)
        self._thread.join(timeout)
