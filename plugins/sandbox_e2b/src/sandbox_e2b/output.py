"""An execution's output captures, passing the user's output on as events while the code runs.

The SDK calls the provider back with each piece of output as it arrives (``on_stdout`` /
``on_stderr``). The captures keep the first ``max_output_bytes`` of each stream, the runner's
result frame split off stdout by :class:`~sandbox_core.runner.ResultStream`. With an
``on_output``, what the user's code wrote is also sent on as
:class:`~sandbox_core.streaming.OutputEvent`\\ s, up to the same limit: the events of a stream,
joined, are the start of the result's text (the core sends whatever they lack after the result).

Stdout is tapped before the frame is split off, because the result stream holds back the last
bytes of every piece until the next one shows whether the frame's marker starts there; the tap
holds back only a tail that could really begin the marker, so a line is passed on when it arrives,
not when the next one does.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable

from sandbox_core.runner import BoundedCapture, ResultStream
from sandbox_core.streaming import OutputCallback, OutputEvent


class _Budget:
    """Sends text of one stream as events until ``limit`` bytes have gone."""

    def __init__(self, stream: str, limit: int, on_output: OutputCallback) -> None:
        self.stream = stream
        self.room = limit
        self._on_output = on_output

    def send(self, text: str) -> None:
        if not text or self.room <= 0:
            return
        data = text.encode("utf-8", "surrogatepass")
        if len(data) > self.room:
            text = data[: self.room].decode("utf-8", "ignore")
        self.room -= len(data)
        if text:
            self._on_output(OutputEvent(self.stream, text))


class TappedCapture(BoundedCapture):
    """A :class:`BoundedCapture` that also sends each kept piece to ``on_output`` (stderr)."""

    def __init__(self, limit: int, stream: str, on_output: OutputCallback) -> None:
        super().__init__(limit)
        self._budget = _Budget(stream, limit, on_output)
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def feed(self, chunk: bytes) -> None:
        super().feed(chunk)
        self._budget.send(self._decoder.decode(chunk))


class _StdoutTap:
    """Sends stdout text as events up to the runner's frame marker (never the frame itself)."""

    def __init__(self, marker: str, budget: _Budget) -> None:
        self._marker = marker
        self._budget = budget
        self._held = ""
        self._done = False

    def feed(self, text: str) -> None:
        if self._done:
            return
        data = self._held + text
        index = data.find(self._marker)
        if index >= 0:
            self._done = True
            self._held = ""
            self._budget.send(data[:index])
            return
        keep = _marker_start(data, self._marker)
        self._held = data[len(data) - keep :]
        self._budget.send(data[: len(data) - keep])


def _marker_start(data: str, marker: str) -> int:
    """The length of the longest tail of ``data`` that begins ``marker`` (0 when none does)."""
    floor = max(0, len(data) - len(marker) + 1)
    start = data.rfind(marker[0], floor)
    while start >= 0:
        if marker.startswith(data[start:]):
            return len(data) - start
        start = data.rfind(marker[0], floor, start)
    return 0


def captures(
    marker: str, limit: int, on_output: OutputCallback | None
) -> tuple[ResultStream, BoundedCapture, Callable[[str], None]]:
    """The stdout stream (runner frame split off) and the stderr capture of one execution, and the
    function that feeds stdout text to them (and to ``on_output``, when given)."""
    stdout = ResultStream(marker, limit)
    if on_output is None:
        return stdout, BoundedCapture(limit), lambda text: stdout.feed(text.encode("utf-8"))
    tap = _StdoutTap(marker, _Budget("stdout", limit, on_output))

    def feed_stdout(text: str) -> None:
        stdout.feed(text.encode("utf-8"))
        tap.feed(text)

    return stdout, TappedCapture(limit, "stderr", on_output), feed_stdout
