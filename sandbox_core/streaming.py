"""Output events: what user code prints, delivered while it runs.

An :class:`OutputEvent` is a piece of one output stream (``stdout`` or ``stderr``) as the host
received it. Callers pass an :data:`OutputCallback` (``client.execute(..., on_output=...)``) or
iterate ``client.stream(...)``; providers that stream (``ProviderInfo.streaming``) receive the
callback as the ``on_output`` argument of ``sandbox_execute`` and call it as output arrives.

Whatever the provider, the core guarantees the caller one thing (:class:`OutputRelay`): when
the execution is over, the events of each stream, joined, equal the result's ``stdout`` /
``stderr``. Providers that do not stream get all their output as events after the result, and a
streaming provider's events are completed the same way if it delivered less than its result holds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from sandbox_core.model import ExecutionResult

STREAMS = ("stdout", "stderr")
"""The output streams an event can belong to."""

log = logging.getLogger(__name__)


def _check_stream(_instance: object, _attribute: attrs.Attribute[str], value: str) -> None:
    if value not in STREAMS:
        raise ValueError(f"stream: must be one of {', '.join(STREAMS)}, got {value!r}")


@attrs.frozen
class OutputEvent:
    """A piece of output: ``text`` written to ``stream``, received by the host at ``at`` (``time.time()``)."""

    stream: str = attrs.field(validator=_check_stream)
    text: str = attrs.field(validator=attrs.validators.instance_of(str))
    at: float = attrs.field(factory=time.time, converter=float)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (one line of ``sandbox exec --events`` and of the executor's NDJSON stream)."""
        return {"type": "output", "stream": self.stream, "text": self.text, "at": self.at}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OutputEvent:
        return cls(stream=str(data["stream"]), text=str(data["text"]), at=float(data.get("at") or time.time()))


OutputCallback = Callable[[OutputEvent], None]
"""Called with each :class:`OutputEvent`, in order within a stream; may be called from any thread."""


class OutputRelay:
    """Passes a provider's events on to the caller's callback and completes them from the result.

    The callback is called under a lock (one event at a time, in the order received). If it
    raises, the error is logged once and the callback is not called again: the execution goes
    on and its result is unaffected, because a display's failure must not cost the result.
    :meth:`finish` then emits, per stream, the part of the result's text no event carried yet
    (all of it for providers that do not stream).
    """

    def __init__(self, callback: OutputCallback, provider: str = "") -> None:
        self._callback: OutputCallback | None = callback
        self._provider = provider
        self._lock = threading.Lock()
        self._sent: dict[str, list[str]] = {stream: [] for stream in STREAMS}

    def __call__(self, event: OutputEvent) -> None:
        if not event.text:
            return
        with self._lock:
            self._sent[event.stream].append(event.text)
            self._deliver(event)

    def _deliver(self, event: OutputEvent) -> None:
        if self._callback is None:
            return
        try:
            self._callback(event)
        except Exception:
            log.warning("the on_output callback raised; it is not called again for this execution", exc_info=True)
            self._callback = None

    def sent(self, stream: str) -> str:
        """The text emitted so far on ``stream``."""
        with self._lock:
            return "".join(self._sent[stream])

    def finish(self, result: ExecutionResult) -> None:
        """Emit what ``result`` holds beyond the events already sent, stream by stream."""
        with self._lock:
            for stream in STREAMS:
                full: str = getattr(result, stream)
                sent = "".join(self._sent[stream])
                if full.startswith(sent):
                    rest = full[len(sent):]
                    if rest:
                        self._sent[stream].append(rest)
                        self._deliver(OutputEvent(stream, rest))
                else:
                    log.warning(
                        "provider %r streamed %s text that differs from its result's %s; the stream is left as sent",
                        self._provider or result.provider, stream, stream,
                    )
