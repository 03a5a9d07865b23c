"""The host side of the runner protocol: splitting the result frame off, limits, result rules."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from sandbox_core.model import ExecutionStatus
from sandbox_core.runner import BoundedCapture, Job, ResultStream, build_result, new_marker, runner_path, runner_source

MARKER = new_marker()
FRAME = {"value": {"answer": 42, "text": "héllo ✓"}, "exit_code": 0, "error": None, "has_main": True, "artifacts": []}
OUTPUT = "hello\nwörld 🎉\n".encode()
STREAM = OUTPUT + MARKER.encode() + json.dumps(FRAME, ensure_ascii=False).encode() + b"\n"
UNICODE = "aé✓你🎉z" * 3


def split_feed(data: bytes, cuts: tuple[int, ...], **kwargs: Any) -> ResultStream:
    stream = ResultStream(MARKER, **kwargs)
    bounds = (0, *cuts, len(data))
    for start, end in itertools.pairwise(bounds):
        stream.feed(data[start:end])
    stream.close()
    return stream


def test_the_marker_may_be_split_at_every_offset() -> None:
    for offset in range(len(STREAM) + 1):
        stream = split_feed(STREAM, (offset,))
        assert stream.output.text().encode() == OUTPUT, offset
        assert stream.frame() == FRAME, offset


def test_the_marker_may_be_split_in_three_anywhere() -> None:
    start = len(OUTPUT) - 2
    end = len(OUTPUT) + len(MARKER.encode()) + 2
    for first, second in itertools.combinations(range(start, end), 2):
        stream = split_feed(STREAM, (first, second))
        assert stream.output.text().encode() == OUTPUT, (first, second)
        assert stream.frame() == FRAME, (first, second)


def test_byte_by_byte() -> None:
    stream = split_feed(STREAM, tuple(range(1, len(STREAM))))
    assert stream.output.text().encode() == OUTPUT
    assert stream.frame() == FRAME


def test_almost_a_marker_is_output() -> None:
    near_miss = MARKER[:-3].encode() + b"xyz" + MARKER[:10].encode()
    stream = split_feed(near_miss + STREAM, (5, len(near_miss) + 3))
    assert stream.output.text().encode() == near_miss + OUTPUT
    assert stream.frame() == FRAME


def test_another_jobs_marker_is_output() -> None:
    forged = new_marker().encode() + b'{"value": 666}\n'
    stream = split_feed(forged + STREAM, (len(forged),))
    assert stream.output.text().encode() == forged + OUTPUT
    assert stream.frame() == FRAME


def test_without_a_marker_everything_is_output_and_there_is_no_frame() -> None:
    data = OUTPUT + MARKER[:-1].encode()  # held back until close() shows nothing followed
    stream = split_feed(data, (3,))
    assert stream.output.text().encode() == data
    assert stream.frame() is None


@pytest.mark.parametrize("frame_text", [b"{not json", b"[1, 2]", b""])
def test_a_damaged_frame_is_no_frame(frame_text: bytes) -> None:
    stream = split_feed(OUTPUT + MARKER.encode() + frame_text, ())
    assert stream.frame() is None


def test_output_is_truncated_at_the_limit_and_counted() -> None:
    stream = split_feed(b"0123456789ABCDEF" + MARKER.encode() + json.dumps(FRAME).encode(), (4, 12), limit=10)
    assert stream.output.text() == "0123456789"
    assert stream.output.truncated and stream.output.total == 16
    assert stream.frame() == json.loads(json.dumps(FRAME))


def test_output_exactly_at_the_limit_is_not_truncated() -> None:
    capture = BoundedCapture(10)
    capture.feed(b"0123456789")
    assert not capture.truncated and capture.text() == "0123456789"
    capture.feed(b"!")
    assert capture.truncated


def test_a_cut_inside_a_utf8_sequence_is_dropped_not_replaced() -> None:
    encoded = UNICODE.encode()
    for limit in range(1, len(encoded)):
        for make in (BoundedCapture, lambda n: ResultStream(MARKER, n).output):
            capture = make(limit)
            capture.feed(encoded)
            text = capture.text()
            assert "\ufffd" not in text, limit
            assert UNICODE.startswith(text), limit
            assert limit - 3 <= len(text.encode()) <= limit, limit


def test_invalid_utf8_that_is_not_cut_is_replaced() -> None:
    capture = BoundedCapture(100)
    capture.feed(b"ok \xff\xfe end")
    assert capture.text() == "ok \ufffd\ufffd end"


def test_a_frame_over_its_limit_is_an_output_limit() -> None:
    big = json.dumps({"value": "v" * 500, "exit_code": 0}).encode()
    stream = split_feed(OUTPUT + MARKER.encode() + big, (len(OUTPUT) + 60,), max_frame_bytes=200)
    assert stream.frame_overflow and stream.frame() is None
    result = build_result(provider="p", stdout=stream, stderr=BoundedCapture(), exit_code=0, execution_time=0.1)
    assert result.status is ExecutionStatus.OUTPUT_LIMIT
    assert result.error is not None and result.error.type == "OutputLimitExceeded"
    assert "200" in result.error.message
    assert result.value is None
    assert result.stdout.encode() == OUTPUT


@pytest.mark.parametrize("exit_code", [1, 137, 255])
def test_a_missing_frame_is_an_error_with_the_exit_code(exit_code: int) -> None:
    stream = split_feed(b"partial output", ())
    result = build_result(provider="p", stdout=stream, stderr=BoundedCapture(), exit_code=exit_code, execution_time=0.1)
    assert result.status is ExecutionStatus.ERROR
    assert result.exit_code == exit_code
    assert result.error is not None and result.error.type == "ProcessExited"
    assert str(exit_code) in result.error.message
    assert result.stdout == "partial output"


def test_the_frame_fills_the_result() -> None:
    frame = {
        "value": [1, None],
        "exit_code": 0,
        "error": None,
        "has_main": True,
        "artifacts": [{"name": "a.txt", "mime_type": "text/plain", "size": 2, "content_base64": "aGk="}],
        "skipped_artifacts": ["huge.bin"],
    }
    stream = split_feed(b"out" + MARKER.encode() + json.dumps(frame).encode(), ())
    stderr = BoundedCapture()
    stderr.feed(b"warn")
    result = build_result(
        provider="p", stdout=stream, stderr=stderr, exit_code=0, execution_time=0.25, metadata={"runtime": "x"}
    )
    assert result.status is ExecutionStatus.SUCCESS
    assert (result.stdout, result.stderr, result.value, result.exit_code) == ("out", "warn", [1, None], 0)
    assert result.artifacts[0].content == b"hi" and result.artifacts[0].mime_type == "text/plain"
    assert result.metadata == {"runtime": "x", "skipped_artifacts": ["huge.bin"], "has_main": True}
    assert (result.provider, result.execution_time) == ("p", 0.25)


def test_the_frames_exit_code_is_used_when_the_process_reports_none() -> None:
    frame = {"value": None, "exit_code": 3, "error": None, "has_main": False}
    stream = split_feed(MARKER.encode() + json.dumps(frame).encode(), ())
    result = build_result(provider="p", stdout=stream, stderr=BoundedCapture(), exit_code=None, execution_time=0.1)
    assert result.status is ExecutionStatus.ERROR and result.exit_code == 3


PRECEDENCE = ("timed_out", "memory_exceeded", "oversized_value", "user_error", "truncated")


@pytest.mark.parametrize("flags", list(itertools.product([False, True], repeat=len(PRECEDENCE))), ids=lambda f: "-".join(
    name for name, on in zip(PRECEDENCE, f) if on) or "none")
def test_status_precedence(flags: tuple[bool, ...]) -> None:
    """timeout > memory > oversized value > user error > truncation > success; output always kept."""
    on = dict(zip(PRECEDENCE, flags))
    stream = ResultStream(MARKER, limit=8, max_frame_bytes=10_000)
    stream.feed(b"x" * (20 if on["truncated"] else 4))
    frame = {
        "value": "v" * (20_000 if on["oversized_value"] else 1),
        "exit_code": 1 if on["user_error"] else 0,
        "error": {"type": "ValueError", "message": "bad", "traceback": "tb"} if on["user_error"] else None,
        "has_main": True,
    }
    stream.feed(MARKER.encode() + json.dumps(frame).encode() + b"\n")
    result = build_result(
        provider="p",
        stdout=stream,
        stderr=BoundedCapture(8),
        exit_code=1 if on["user_error"] else 0,
        execution_time=0.5,
        timed_out=on["timed_out"],
        timeout=2.0,
        memory_exceeded=on["memory_exceeded"],
    )
    expected = [
        (on["timed_out"], ExecutionStatus.TIMEOUT, "TimeoutError"),
        (on["memory_exceeded"], ExecutionStatus.MEMORY_LIMIT, "MemoryLimitExceeded"),
        (on["oversized_value"], ExecutionStatus.OUTPUT_LIMIT, "OutputLimitExceeded"),
        (on["user_error"], ExecutionStatus.ERROR, "ValueError"),
        (on["truncated"], ExecutionStatus.OUTPUT_LIMIT, None),
        (True, ExecutionStatus.SUCCESS, None),
    ]
    status, error_type = next((status, error) for flag, status, error in expected if flag)
    assert result.status is status
    assert (result.error.type if result.error else None) == error_type
    assert result.stdout.startswith("xxxx")
    assert result.stdout_truncated is on["truncated"]
    if on["timed_out"]:
        assert "2s" in result.error.message


def test_truncated_stderr_alone_is_an_output_limit() -> None:
    stream = split_feed(MARKER.encode() + json.dumps({"exit_code": 0}).encode(), ())
    stderr = BoundedCapture(4)
    stderr.feed(b"0123456789")
    result = build_result(provider="p", stdout=stream, stderr=stderr, exit_code=0, execution_time=0.1)
    assert result.status is ExecutionStatus.OUTPUT_LIMIT
    assert result.stderr_truncated and not result.stdout_truncated and result.stderr == "0123"


# -- jobs, markers and runner files ---------------------------------------------------------------


def test_a_job_encodes_arguments_as_json_data() -> None:
    arguments = {"text": UNICODE, "flag": True, "nothing": None, "nested": {"list": [1, 2.5]}}
    job = Job(code="print(1)", arguments=arguments, output_dir="/tmp/out", max_artifact_bytes=10)
    decoded = json.loads(job.encode().decode("utf-8"))
    assert decoded == {
        "code": "print(1)",
        "arguments": arguments,
        "marker": job.marker,
        "output_dir": "/tmp/out",
        "max_artifact_bytes": 10,
        "run_name": "__main__",
        "artifact_extensions": [],
        "promote_working_dir": False,
    }
    assert UNICODE.encode() in job.encode()  # not \u-escaped: fewer bytes to send


def test_markers_are_unique_and_start_with_a_control_character() -> None:
    markers = {new_marker() for _ in range(100)}
    assert len(markers) == 100
    assert all(m.startswith("\x1e") and m.endswith(":") and len(m) > 32 for m in markers)
    assert Job(code="").marker != Job(code="").marker


@pytest.mark.parametrize("language", ["python", "javascript"])
def test_runner_files_are_shipped(language: str) -> None:
    path = runner_path(language)
    assert path.is_file()
    assert runner_source(language) == path.read_text(encoding="utf-8")
    assert "marker" in runner_source(language)
