"""The runner protocol's host side as a source of output events: what the bounded captures keep,
as they keep it, decoded to text that equals the result's."""

from __future__ import annotations

import pytest

from sandbox_core.runner import BoundedCapture, ResultStream
from sandbox_core.runner.protocol import _decode
from sandbox_core.streaming import OutputEvent, StreamDecoder

MARKER = "\x1esandbox-result-0123456789abcdef0123456789abcdef:"


def test_a_short_print_is_passed_on_at_once_not_held_back_for_the_marker() -> None:
    seen: list[bytes] = []
    stream = ResultStream(MARKER, on_output=seen.append)
    stream.feed(b"first\n")
    assert seen == [b"first\n"]


def test_only_what_may_start_the_marker_is_held_back() -> None:
    seen: list[bytes] = []
    stream = ResultStream(MARKER, on_output=seen.append)
    stream.feed(b"text \x1e more \x1esandbox-res")
    assert b"".join(seen) == b"text \x1e more "
    stream.feed(b"ult-not-the-marker\n")
    assert b"".join(seen) == b"text \x1e more \x1esandbox-result-not-the-marker\n"


def test_a_marker_split_across_chunks_still_ends_the_output() -> None:
    seen: list[bytes] = []
    stream = ResultStream(MARKER, on_output=seen.append)
    frame = (MARKER + '{"exit_code": 0}\n').encode()
    stream.feed(b"out\n" + frame[:7])
    stream.feed(frame[7:])
    stream.close()
    assert b"".join(seen) == b"out\n" and stream.output.text() == "out\n"
    assert stream.frame() == {"exit_code": 0}


def test_kept_bytes_stop_at_the_limit() -> None:
    seen: list[bytes] = []
    capture = BoundedCapture(10, on_kept=seen.append)
    for _ in range(5):
        capture.feed(b"abcd")
    assert b"".join(seen) == b"abcdabcdab" and capture.truncated


@pytest.mark.parametrize("cut", [False, True])
def test_decoded_events_equal_the_results_text_whatever_the_splits(cut: bool) -> None:
    data = "héllo ✓ 🎉 wörld\n".encode() * 3 + (b"\xf0\x9f" if cut else b"\xff tail")
    events: list[OutputEvent] = []
    decoder = StreamDecoder("stdout", events.append)
    for index in range(0, len(data), 3):
        decoder(data[index:index + 3])
    decoder.close(cut=cut)
    assert "".join(e.text for e in events) == _decode(data, cut=cut)
    assert all(e.text for e in events)
