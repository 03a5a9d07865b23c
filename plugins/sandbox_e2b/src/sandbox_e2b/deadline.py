"""The execution's own deadline around one blocking SDK call.

The SDK's timeouts are not the execution's timeout: the code-interpreter's streamed ``/execute``
request, given ``timeout=T``, ends only after about ``2T`` (its HTTP transport adds the read and
write deadlines into one), and the code keeps running, and billing, meanwhile. So the provider
does not rely on them: :class:`Deadline` runs the call in a worker thread, and when the timeout
passes first it stops the code itself (the caller's ``stop``, which kills the sandbox) and closes
the output callbacks, so what the result holds is what the code wrote before its deadline.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

STOP_GRACE = 5.0
"""Seconds the call gets to end after ``stop``; past that its thread is left behind (a daemon
that can no longer touch the result) rather than holding the execution up."""


class Deadline:
    """Runs a call with a deadline of ``timeout`` seconds; ``stop`` ends it when the deadline passes."""

    def __init__(self, timeout: float, stop: Callable[[], None]) -> None:
        self.timeout = timeout
        self._stop = stop
        self._lock = threading.Lock()
        self._open = True
        self.elapsed = 0.0
        """Seconds from the start of :meth:`run` until the call ended or the code was stopped."""

    def guard(self, callback: Callable[[Any], None]) -> Callable[[Any], None]:
        """``callback``, made to do nothing once the run is over (its output is too late)."""

        def guarded(item: Any) -> None:
            with self._lock:
                if self._open:
                    callback(item)

        return guarded

    def run(self, call: Callable[[], object]) -> bool:
        """Run ``call``; True when the deadline passed first and the code was stopped.

        An exception ``call`` raised before the deadline is raised here; one raised after it
        (the SDK noticing its sandbox was killed) is the expected end and is dropped.
        """
        failure: list[BaseException] = []

        def work() -> None:
            try:
                call()
            except BaseException as exc:  # handed to the caller's thread
                failure.append(exc)

        started = time.monotonic()
        worker = threading.Thread(target=work, name="e2b-execution", daemon=True)
        worker.start()
        worker.join(self.timeout)
        if not worker.is_alive():
            self.elapsed = time.monotonic() - started
            with self._lock:
                self._open = False
            if failure:
                raise failure[0]
            return False
        with self._lock:
            self._open = False
        self._stop()
        self.elapsed = time.monotonic() - started
        worker.join(STOP_GRACE)
        return True
