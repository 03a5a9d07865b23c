"""Streaming ``POST /v1/execute``: output events as NDJSON while the code runs, then the result.

A client asks for it with ``Accept: application/x-ndjson``; without that header the route
answers with one JSON document, as before. The body is one JSON object per line::

    {"type": "output", "stream": "stdout", "text": "epoch 1\\n", "at": 1764620000.12}
    {"type": "output", "stream": "stderr", "text": "warning: ...\\n", "at": 1764620000.13}
    {"type": "result", "result": {...the same object the non-streaming response holds...}}

The events hold exactly the output the result keeps (they stop at the output limit) and each
line is written as soon as the sandbox's output is read (a piece ending inside a line waits up to
20 ms for its rest); what piles up while the connection is busy goes out merged
(:func:`~sandbox_core.streaming.coalesce`). The status line is sent with
the first event (or the result), so refusals before the code runs (503 queue full, no sandbox)
keep their status codes. If the execution fails in the executor after events were sent, the last
line is ``{"type": "error", "detail": "..."}``. A client that disconnects mid-stream stops the
execution: its sandbox is killed and released at once.

``POST /v1/sessions/{id}/execute`` streams the same way (see :mod:`.sessions_api`); there a
client that leaves mid-stream stops the execution and the session's interpreter is replaced.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from sandbox_core.model import ExecutionResult
from sandbox_core.runner.rawjson import encode_parts
from sandbox_core.streaming import OutputEvent, coalesce
from sandbox_selfmanaged import EVENTS_MEDIA_TYPE
from sandbox_selfmanaged.sandbox import Cancellation
from sandbox_selfmanaged.service.responses import CHUNK_BYTES


async def cancel_on_disconnect(http: Request, cancel: Cancellation) -> None:
    """Raise ``cancel`` when the client closes its connection (the body was read already)."""
    while (await http.receive())["type"] != "http.disconnect":
        pass
    cancel.set()


def wants_events(http: Request) -> bool:
    """The client asked for the NDJSON stream (``Accept: application/x-ndjson``)."""
    accept = http.headers.get("accept", "")
    return any(part.split(";")[0].strip().lower() == EVENTS_MEDIA_TYPE for part in accept.split(","))


_DONE = object()

LINE_WAIT_SECONDS = 0.02
"""How long a piece of output that ends inside a line waits for the rest of the line."""


class EventInbox:
    """Carries events from the thread that runs the sandbox to the event loop that writes them."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._taken: list[Any] = []  # what first() took off the queue, still to be written

    def post(self, event: OutputEvent) -> None:
        """Called in the sandbox's thread for each event: hands it to the loop, never blocks."""
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, event)
        except RuntimeError:  # the loop is closed (the executor is stopping): nobody to read it
            pass

    def done(self) -> None:
        """The execution is over (called on the loop, after its last event was posted)."""
        self._queue.put_nowait(_DONE)

    async def first(self) -> None:
        """Wait until an event or the end is there (the next :meth:`batch` starts with it)."""
        if not self._taken:
            self._taken.append(await self._queue.get())

    async def batch(self) -> tuple[list[OutputEvent], bool]:
        """The events waiting (at least one, or the end), merged; and whether the end came.

        A batch that ends inside a line waits up to :data:`LINE_WAIT_SECONDS` for the rest of it
        (an unbuffered ``print`` writes its text and its newline separately), so lines mostly
        arrive whole while a progress bar without newlines still shows within that delay.
        """
        items = self._taken or [await self._queue.get()]
        self._taken = []
        deadline = time.monotonic() + LINE_WAIT_SECONDS
        while True:
            while not self._queue.empty():
                items.append(self._queue.get_nowait())
            last = items[-1]
            wait = deadline - time.monotonic()
            if last is _DONE or last.text.endswith("\n") or wait <= 0:
                break
            try:
                items.append(await asyncio.wait_for(self._queue.get(), wait))
            except asyncio.TimeoutError:
                break
        ended = items[-1] is _DONE
        return coalesce(item for item in items if item is not _DONE), ended


def event_line(event: OutputEvent) -> bytes:
    return json.dumps(event.to_dict(), ensure_ascii=False).encode("utf-8", "surrogatepass") + b"\n"


class EventStreamResponse(Response):
    """Writes the events of a running execution, then its result (see the module docstring).

    ``task`` is the execution (it returns the result and the sandbox's ``release``);
    ``cancel`` is raised when the client cannot be written to any more; ``finish`` is called
    with the result once it is written (metrics, logs); the sandbox is released in every case.
    """

    media_type = EVENTS_MEDIA_TYPE

    def __init__(
        self,
        inbox: EventInbox,
        task: asyncio.Future[tuple[ExecutionResult, Callable[[], None]]],
        cancel: Cancellation,
        finish: Callable[[ExecutionResult], None],
    ) -> None:
        # Not Response.__init__: it would declare the empty body's length; this one has no length.
        self.status_code = 200
        self.background = None
        self.init_headers({"cache-control": "no-store", "x-accel-buffering": "no"})
        self.inbox = inbox
        self.task = task
        self.cancel = cancel
        self.finish = finish

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        release: Callable[[], None] | None = None
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            ended = False
            while not ended:
                events, ended = await self.inbox.batch()
                if events:
                    await send({"type": "http.response.body", "body": b"".join(map(event_line, events)), "more_body": True})
            try:
                result, release = await self.task
            except Exception as exc:
                line = json.dumps({"type": "error", "detail": str(exc) or type(exc).__name__}).encode() + b"\n"
                await send({"type": "http.response.body", "body": line, "more_body": True})
            else:
                for part in encode_parts({"type": "result", "result": result.to_dict()}):
                    for start in range(0, part.nbytes, CHUNK_BYTES):
                        await send({"type": "http.response.body", "body": bytes(part[start : start + CHUNK_BYTES]), "more_body": True})
                await send({"type": "http.response.body", "body": b"\n", "more_body": False})
                self.finish(result)
        except BaseException:
            # The client is gone (or the server stops): stop the code, free its sandbox.
            self.cancel.set()
            raise
        finally:
            if release is not None:
                release()
