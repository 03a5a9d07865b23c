"""The host side of the runner protocol: splitting the result frame off, limits, result rules."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path
from typing import Any

import pytest

from sandbox_core.model import ExecutionStatus
from sandbox_core.runner import (
    BoundedCapture,
    Job,
    ResultStream,
    build_result,
    frame_budget,
    new_marker,
    runner_path,
    runner_source,
    safe_artifact_name,
    safe_artifact_path,
)
from sandbox_core.runner.protocol import FRAME_OVERHEAD_BYTES

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
        "max_value_bytes": 32 << 20,
        "run_name": "__main__",
        "artifact_extensions": [],
        "promote_working_dir": False,
    }
    assert job.encode().startswith(b'{"marker": "\\u001esandbox-result-')  # first: see python_runner
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


# -- untrusted frames -------------------------------------------------------------------------------


def result_of(frame_text: bytes, exit_code: int | None = 0, **kwargs: Any) -> Any:
    stream = split_feed(b"out\n" + MARKER.encode() + frame_text + b"\n", (), **kwargs)
    return build_result(provider="p", stdout=stream, stderr=BoundedCapture(), exit_code=exit_code, execution_time=0.1)


def good_frame(**fields: Any) -> dict[str, Any]:
    return {"value": 1, "exit_code": 0, "error": None, "has_main": True, "artifacts": [], "skipped_artifacts": [], **fields}


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"artifacts": 5}, "artifacts"),
        ({"artifacts": [5]}, "artifacts[0]"),
        ({"artifacts": [{"name": 5, "content_base64": ""}]}, "artifacts[0].name"),
        ({"artifacts": [{"name": "a", "content_base64": "%%%"}]}, "artifacts[0].content_base64"),
        ({"artifacts": [{"name": "a", "content_base64": "aGk=", "size": 99}]}, "artifacts[0].size"),
        ({"artifacts": [{"name": "a", "content_base64": 7}]}, "artifacts[0].content_base64"),
        ({"artifacts": [{"name": "a", "content_base64": "", "mime_type": []}]}, "artifacts[0].mime_type"),
        ({"exit_code": "0"}, "exit_code"),
        ({"exit_code": True}, "exit_code"),
        ({"exit_code": 1.5}, "exit_code"),
        ({"error": "boom"}, "error"),
        ({"error": {"type": 5}}, "error.type"),
        ({"error": {"type": "E", "message": None}}, "error.message"),
        ({"has_main": "yes"}, "has_main"),
        ({"skipped_artifacts": "big.bin"}, "skipped_artifacts"),
        ({"skipped_artifacts": [1]}, "skipped_artifacts"),
        ({"value_too_large": "x"}, "value_too_large"),
        ({"runner_exit_code": 1}, "exit code"),
    ],
)
def test_a_frame_with_wrong_field_types_is_an_error_naming_the_field(fields: dict[str, Any], named: str) -> None:
    result = result_of(json.dumps(good_frame(**fields)).encode())
    assert result.status is ExecutionStatus.ERROR, result
    assert result.error is not None and result.error.type == "InvalidResultFrame"
    assert named in result.error.message
    assert result.value is None and result.artifacts == ()
    assert result.stdout == "out\n"


@pytest.mark.parametrize(
    "frame_text",
    [b"[1, 2]", b'"text"', b"5", b"null", b"{not json", b"", b"\xff\xfe{}", b"[" * 100_000 + b"]" * 100_000, b'{"a": ' * 50_000],
    ids=["list", "string", "number", "null", "broken", "empty", "bad-utf8", "deep", "deep-open"],
)
def test_a_frame_that_is_not_an_object_is_an_error(frame_text: bytes) -> None:
    result = result_of(frame_text)
    assert result.status is ExecutionStatus.ERROR, result
    assert result.error is not None and result.error.type == "InvalidResultFrame"


def test_build_result_never_raises_whatever_the_bytes() -> None:
    rng = random.Random(11)
    pieces = [b"{", b"}", b"[", b"]", b'"', b":", b",", b"\\", b"\n", b"0", b"-", b"null", b"true", b'"artifacts"', b'"exit_code"',
              b'"error"', b'"value"', b'"name"', b'"size"', b'"content_base64"', b"\xff", MARKER.encode()]
    for _ in range(1500):
        body = b"".join(rng.choice(pieces) for _ in range(rng.randrange(1, 40)))
        result = result_of(body, exit_code=rng.choice([0, None, 1]))
        assert result.status is not ExecutionStatus.SUCCESS or result.error is None


@pytest.mark.parametrize("exit_code", [0, None])
def test_no_frame_after_a_clean_exit_is_an_error_not_a_success(exit_code: int | None) -> None:
    stream = split_feed(b"printed, then nothing", ())
    result = build_result(provider="p", stdout=stream, stderr=BoundedCapture(), exit_code=exit_code, execution_time=0.1)
    assert result.status is ExecutionStatus.ERROR
    assert result.error is not None and result.error.type == "NoResultFrame"
    assert "no result frame" in result.error.message
    assert result.stdout == "printed, then nothing"


def test_an_unfinished_frame_is_an_error() -> None:
    stream = split_feed(b"out" + MARKER.encode() + b'{"value": "cut off', ())
    result = build_result(provider="p", stdout=stream, stderr=BoundedCapture(), exit_code=0, execution_time=0.1)
    assert result.status is ExecutionStatus.ERROR and result.error.type == "InvalidResultFrame"


def test_a_second_frame_makes_the_result_an_error() -> None:
    forged = MARKER.encode() + json.dumps(good_frame(value="forged")).encode() + b"\n"
    real = MARKER.encode() + json.dumps(good_frame(exit_code=1, error={"type": "E", "message": "m", "traceback": ""})).encode() + b"\n"
    for cut in (0, len(forged) - 1, len(forged), len(forged) + 5):
        stream = split_feed(forged + real, (cut,) if cut else ())
        result = build_result(provider="p", stdout=stream, stderr=BoundedCapture(), exit_code=None, execution_time=0.1)
        assert result.status is ExecutionStatus.ERROR, cut
        assert result.value is None and "more than one result frame" in result.error.message


def test_the_runners_exit_status_must_match_the_report() -> None:
    assert result_of(json.dumps(good_frame(runner_exit_code=0)).encode()).status is ExecutionStatus.SUCCESS
    result = result_of(json.dumps(good_frame(runner_exit_code=1)).encode(), exit_code=None)
    assert result.status is ExecutionStatus.ERROR and "ended with 1" in result.error.message


def test_frame_handling_is_incremental_not_reparsed_per_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    """A forged unfinished frame in newline-ended 60 KB chunks costs one parse, not one per chunk."""
    parsed: list[int] = []
    real_loads = json.loads

    def counting_loads(text: Any, *args: Any, **kwargs: Any) -> Any:
        parsed.append(len(text))
        return real_loads(text, *args, **kwargs)

    monkeypatch.setattr(json, "loads", counting_loads)
    stream = ResultStream(MARKER, limit=1 << 20, max_frame_bytes=64 << 20)
    stream.feed(MARKER.encode() + b'{"value": "')
    chunk = b"A" * (60_000 - 1) + b"\n"
    for _ in range(300):  # what the executor's read loop does: feed, then ask whether the frame is done
        stream.feed(chunk)
        if stream.complete:
            stream.frame()
    result = build_result(provider="p", stdout=stream, stderr=BoundedCapture(), exit_code=None, execution_time=0.1)
    assert result.status is ExecutionStatus.ERROR
    assert len(parsed) == 1 and sum(parsed) < 70_000, parsed


def test_a_complete_frame_is_seen_at_its_newline_whatever_the_chunks() -> None:
    stream = ResultStream(MARKER)
    data = b"x" + MARKER.encode() + json.dumps(good_frame()).encode()
    stream.feed(data)
    assert stream.started and not stream.complete and stream.frame() is None
    stream.feed(b"\n")
    assert stream.complete and stream.frame() == good_frame()


# -- artifact names -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("report.csv", "report.csv"),
        ("sub/notes.txt", "sub/notes.txt"),
        ("../../etc/passwd", "_/_/etc/passwd"),
        ("/etc/passwd", "etc/passwd"),
        ("a/./b//c", "a/b/c"),
        ("line\nbreak.txt", "line_break.txt"),
        ("\x1b[31mred\x07.txt", "_[31mred_.txt"),
        ("C:\\Windows\\x.txt", "C__Windows_x.txt"),
        ("..", "_"),
        ("", "artifact"),
        ("/", "artifact"),
        ("tab\there\u2028", "tab_here_"),
        ("héllo ✓.txt", "héllo ✓.txt"),
    ],
)
def test_artifact_names_are_made_safe(name: str, safe: str) -> None:
    assert safe_artifact_name(name) == safe


def test_artifact_names_in_frames_are_made_safe_and_unique() -> None:
    artifacts = [
        {"name": name, "mime_type": "text/plain\x1b", "size": 2, "content_base64": "aGk="}
        for name in ("../../x", "/x", "_/_/x", "a\nb", "a_b")
    ]
    result = result_of(json.dumps(good_frame(artifacts=artifacts, skipped_artifacts=["../big\n"])).encode())
    assert result.status is ExecutionStatus.SUCCESS, result
    assert [a.name for a in result.artifacts] == ["_/_/x", "x", "_/_/x~2", "a_b", "a_b~2"]
    assert {a.mime_type for a in result.artifacts} == {"application/octet-stream"}
    assert result.metadata["skipped_artifacts"] == ["_/big_"]


def test_safe_artifact_path_stays_inside_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    for name in ("../../etc/passwd", "/etc/passwd", "a/../../b", "x\n", ".."):
        path = safe_artifact_path(folder, name)
        assert path.resolve().is_relative_to(folder.resolve()), name
    assert safe_artifact_path(folder, "sub/a.txt") == folder.resolve() / "sub" / "a.txt"
    (folder / "link").symlink_to(tmp_path)
    with pytest.raises(ValueError, match="outside"):
        safe_artifact_path(folder, "link/escaped.txt")


# -- limits ------------------------------------------------------------------------------------------


def test_the_frame_budget_holds_the_value_and_the_artifacts_as_base64() -> None:
    job = Job(code="", max_artifact_bytes=64 << 20)
    assert job.max_frame_bytes == frame_budget(job.max_value_bytes, 64 << 20)
    assert job.max_frame_bytes >= job.max_value_bytes + (64 << 20) * 4 // 3 + (1 << 20)
    assert frame_budget(0, 3) == 4 + FRAME_OVERHEAD_BYTES and frame_budget(0, 4) == 8 + FRAME_OVERHEAD_BYTES


def test_a_value_over_its_limit_is_dropped_and_flagged_and_artifacts_stay() -> None:
    artifacts = [{"name": "a.txt", "mime_type": "text/plain", "size": 2, "content_base64": "aGk="}]
    result = result_of(json.dumps(good_frame(value=None, value_too_large=99, artifacts=artifacts)).encode())
    assert result.status is ExecutionStatus.OUTPUT_LIMIT
    assert result.error.type == "OutputLimitExceeded" and "99" in result.error.message
    assert [a.name for a in result.artifacts] == ["a.txt"]


@pytest.mark.parametrize(
    "frame_text",
    [
        b'{"artifacts": 5, "value": [1]}',
        b'{"exit_code": "0", "value": 1}',
        b'{"value": [1, 2',
        b"[1]",
        b'{"value": 1, "runner_exit_code": 3}',
    ],
)
def test_a_relayed_value_frame_is_checked_the_same_way(frame_text: bytes) -> None:
    stream = split_feed(b"out\n" + MARKER.encode() + frame_text + b"\n", ())
    result = build_result(provider="p", stdout=stream, stderr=BoundedCapture(), exit_code=None, execution_time=0.1, raw_value=True)
    assert result.status is ExecutionStatus.ERROR and result.error.type == "InvalidResultFrame", result
    assert result.value is None


def test_a_relayed_value_stays_json_text() -> None:
    stream = split_feed(MARKER.encode() + json.dumps(good_frame(value=[1, {"a": None}])).encode() + b"\n", ())
    result = build_result(provider="p", stdout=stream, stderr=BoundedCapture(), exit_code=None, execution_time=0.1, raw_value=True)
    assert result.status is ExecutionStatus.SUCCESS
    assert result.value.decode() == [1, {"a": None}]


def test_runner_path_works_from_a_zipped_install(tmp_path: Path) -> None:
    """Installed inside a zip, the runner is extracted to a file that stays while the process runs."""
    import subprocess
    import sys
    import zipfile

    import sandbox_core

    package = Path(sandbox_core.__file__).parent
    archive = tmp_path / "sandbox_core.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for path in sorted(package.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                bundle.write(path, path.relative_to(package.parent).as_posix())
    probe = f"""
import sys
sys.path.insert(0, {str(archive)!r})
import sandbox_core
assert sandbox_core.__file__.startswith({str(archive)!r}), sandbox_core.__file__
from sandbox_core.client import SandboxClient
from sandbox_core.registry import ProviderRegistry
from sandbox_core.runner import runner_path, runner_source
from sandbox_core.testing import UnsandboxedSubprocessProvider
path = runner_path("python")
assert path.is_file() and path.read_text(encoding="utf-8") == runner_source("python"), path
registry = ProviderRegistry(discover=False)
registry.register("local", UnsandboxedSubprocessProvider())
result = SandboxClient(provider="local", config={{}}, registry=registry).execute("def main():\\n    return 42\\n")
print(result.status.value, result.value)
"""
    process = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False)
    assert (process.returncode, process.stdout.strip()) == (0, "success 42"), process.stderr
