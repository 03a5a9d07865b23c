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

import codecs
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    import asyncio

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


def coalesce(events: Iterable[OutputEvent]) -> list[OutputEvent]:
    """``events`` with each run of consecutive events of one stream merged into one.

    For consumers that fall behind (a slow reader, a busy connection): what is waiting goes out
    in as few pieces as the order of the streams allows, stamped with its first piece's time.
    """
    merged: list[OutputEvent] = []
    pending: list[str] = []
    first: OutputEvent | None = None
    for event in events:
        if first is not None and event.stream != first.stream:
            merged.append(OutputEvent(first.stream, "".join(pending), first.at))
            first, pending = None, []
        if first is None:
            first = event
        pending.append(event.text)
    if first is not None:
        merged.append(OutputEvent(first.stream, "".join(pending), first.at))
    return merged


class StreamDecoder:
    """Turns one stream's bytes, as they arrive, into :class:`OutputEvent` for ``callback``.

    Feed it what :class:`~sandbox_core.runner.BoundedCapture` keeps (its ``on_kept``): the events
    then stop at the output limit and, joined, decode exactly as the result's text does. A UTF-8
    sequence split between two pieces is held back until it is whole.
    """

    def __init__(self, stream: str, callback: OutputCallback) -> None:
        if stream not in STREAMS:
            raise ValueError(f"stream: must be one of {', '.join(STREAMS)}, got {stream!r}")
        self.stream = stream
        self._callback = callback
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def __call__(self, data: bytes) -> None:
        text = self._decoder.decode(data)
        if text:
            self._callback(OutputEvent(self.stream, text))

    def close(self, *, cut: bool) -> None:
        """The stream ended; ``cut``: at the output limit, where an unfinished sequence is dropped
        (as the result drops it) instead of becoming a replacement character."""
        if not cut:
            text = self._decoder.decode(b"", final=True)
            if text:
                self._callback(OutputEvent(self.stream, text))
        self._decoder.reset()


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


_DONE = object()


def events_then_result(run: Callable[[OutputCallback], ExecutionResult]) -> Iterator[OutputEvent | ExecutionResult]:
    """Call ``run(on_output)`` in a worker thread; yield its events as they come, then its result.

    Events waiting when the consumer asks are :func:`coalesced <coalesce>`. An exception of
    ``run`` is raised here after the events before it. Leaving the loop early does not stop the
    execution (providers have no way to cancel one): it runs to its end, its events dropped.
    """
    inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
    outcome: list[Any] = []

    def work() -> None:
        try:
            outcome.append(run(inbox.put))
        except BaseException as exc:  # handed to the consumer, raised in its thread
            outcome.append(exc)
        finally:
            inbox.put(_DONE)

    threading.Thread(target=work, name="sandbox-stream", daemon=True).start()
    done = False
    while not done:
        batch = [inbox.get()]
        while True:
            try:
                batch.append(inbox.get_nowait())
            except queue.Empty:
                break
        done = batch[-1] is _DONE
        yield from coalesce(item for item in batch if item is not _DONE)
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    yield outcome[0]


async def aevents_then_result(run: Callable[[OutputCallback], ExecutionResult]) -> AsyncIterator[OutputEvent | ExecutionResult]:
    """The async twin of :func:`events_then_result`: ``run`` goes to a worker thread, the loop never blocks."""
    import asyncio  # here: importing sandbox_core stays light for callers that never use asyncio

    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[Any] = asyncio.Queue()

    def post(item: Any) -> None:
        try:
            loop.call_soon_threadsafe(inbox.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody is left to read it
            pass

    def work() -> ExecutionResult:
        try:
            return run(post)
        finally:
            post(_DONE)

    task = asyncio.ensure_future(asyncio.to_thread(work))
    try:
        done = False
        while not done:
            batch = [await inbox.get()]
            while not inbox.empty():
                batch.append(inbox.get_nowait())
            done = batch[-1] is _DONE
            for event in coalesce(item for item in batch if item is not _DONE):
                yield event
        yield await task
    finally:
        if not task.done():
            task.add_done_callback(_ignore_outcome)


def _ignore_outcome(task: asyncio.Future[Any]) -> None:
    """Retrieve an abandoned execution's outcome, so asyncio does not report it as never retrieved."""
    if not task.cancelled():
        task.exception()
