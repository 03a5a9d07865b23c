"""The host side of the runner protocol that every provider reuses.

A provider starts ``python_runner.py`` or ``javascript_runner.js`` (see :func:`runner_path`)
wherever it runs code, writes one encoded :class:`Job` to the runner's stdin and closes it. The
runner prints the user's output, then a result frame: a per-job random marker, a JSON object and
a newline. Feeding the runner's stdout to a :class:`ResultStream` and its stderr to a
:class:`BoundedCapture` (both enforce output limits while streaming, so a flood never fills the
host's memory), then calling :func:`build_result`, turns what came back into an
:class:`~sandbox_core.model.ExecutionResult` with the same rules for every provider.

What a frame can and cannot do
------------------------------
The frame is treated as untrusted input: :func:`build_result` checks every field's type and
turns a malformed frame into an ``error`` result (it never raises, whatever the bytes were), a
missing or damaged frame is never a ``success``, artifact names go through
:func:`~sandbox_core.runner.artifact_names.safe_artifact_name`, and the host's own observations
(timeout, memory kill, output truncation, the process's exit code) always win over the frame.
The frame is parsed once, incrementally (:attr:`ResultStream.complete` is cheap to ask after every
chunk), and its size is bounded by :func:`frame_budget`.

Forging. The Python runner reads the job in a parent process and runs the code in a child forked
*before* the job arrived, so the marker never exists in the user code's process: its prints
cannot make a frame. The child reports to the parent through a private pipe; the parent writes
the frame after the child has ended (inside a sandbox where it is process 1, after killing every
other process first), adding the child's real exit status, which must match what the report
claims. So Python code can still write a report of its choosing into that pipe and end with
status 0, i.e. claim a result it could have returned from ``main()`` anyway, but it cannot turn
an exception or a non-zero exit into a success, nor make the frame disappear or interleave.

JavaScript has no fork: the marker lives in the runner's process, kept off the JavaScript heap
(in a buffer held by a closure) and the runner uses only functions it captured before user code
ran, so overriding ``process.exit``, ``fs.writeSync``, ``process.stdout.write``, ``JSON`` or
prototypes cannot reach or change the frame. Code that reads its own process memory (the
inspector from a worker thread, ``/proc/self/mem``) can still learn the marker and print a frame
of its own; such a frame passes the same checks and claims nothing ``main()`` could not have
returned, but if it is printed before the code throws, the host may take it (a second frame
arriving in the same read makes the result an ``error``). A worker thread writing to fd 1 while the
frame is written can damage it, which makes the result an ``error``, never a silent success.
Providers that run Python inside a long-lived kernel instead of the runner's process (E2B's Python
path) have no fork either: there, code can find the marker in the calling frame.
"""

from __future__ import annotations

import atexit
import binascii
import contextlib
import functools
import json
import secrets
from base64 import b64decode
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import attrs

from sandbox_core.model import Artifact, ErrorInfo, ExecutionResult, ExecutionStatus
from sandbox_core.runner.artifact_names import safe_artifact_name
from sandbox_core.runner.rawjson import RawArguments, decode_frame

RUNNER_FILES = {"python": "python_runner.py", "javascript": "javascript_runner.js"}
DEFAULT_OUTPUT_DIR = "/tmp/sandbox-output"
DEFAULT_MAX_OUTPUT_BYTES = 1 << 20
DEFAULT_MAX_VALUE_BYTES = 32 << 20
"""The largest ``main()`` value (as JSON) by default: what the whole frame could carry before the
limit was split between the value and the artifacts, so no value that worked stops working."""
DEFAULT_MAX_ARTIFACT_BYTES = 8 << 20
MAX_ARTIFACT_COUNT = 1000
"""Files beyond this many in the output folder are skipped (the runners hold the same number)."""
FRAME_OVERHEAD_BYTES = 2 << 20
"""Room in a frame for everything but the value and the artifacts' contents: field names, error
texts (the runners cut each at 64 KiB), up to MAX_ARTIFACT_COUNT names and types, skipped names."""


def frame_budget(max_value_bytes: int, max_artifact_bytes: int) -> int:
    """The largest frame a runner may write for these limits: the value, the artifacts as base64
    (4 bytes for every 3) and a fixed overhead. A bigger frame is not a result, it is a flood."""
    return max_value_bytes + 4 * ((max_artifact_bytes + 2) // 3) + FRAME_OVERHEAD_BYTES


DEFAULT_MAX_FRAME_BYTES = frame_budget(DEFAULT_MAX_VALUE_BYTES, DEFAULT_MAX_ARTIFACT_BYTES)


_extracted = contextlib.ExitStack()
atexit.register(_extracted.close)


@functools.cache
def runner_path(language: str) -> Path:
    """The runner script for ``language`` as a file on disk (to mount into a sandbox).

    Installed as plain files, that is the package's own file; installed in a zip, a copy extracted
    once and kept until the process exits (the file must outlive this call, so the ``as_file``
    context stays open, not just the ``with`` block of one call).
    """
    return Path(_extracted.enter_context(resources.as_file(resources.files(__package__) / RUNNER_FILES[language])))


@functools.cache
def runner_source(language: str) -> str:
    """The runner script's source, for providers that upload it to a remote sandbox.

    Read once per process: providers send it with every execution.
    """
    return (resources.files(__package__) / RUNNER_FILES[language]).read_text(encoding="utf-8")


def new_marker() -> str:
    """A fresh result marker: unguessable, and starting with a control character no print makes by accident."""
    return f"\x1esandbox-result-{secrets.token_hex(16)}:"


@attrs.frozen
class Job:
    """One execution as the runner receives it on stdin.

    ``arguments`` may be a :class:`~sandbox_core.runner.rawjson.RawArguments`: its text is then
    forwarded as received, never turned into Python objects on the host.
    """

    code: str
    arguments: Mapping[str, Any] = attrs.field(factory=dict)
    marker: str = attrs.field(factory=new_marker)
    output_dir: str | None = DEFAULT_OUTPUT_DIR
    max_artifact_bytes: int = DEFAULT_MAX_ARTIFACT_BYTES
    run_name: str = "__main__"
    """Python's ``__name__`` for the code (``"main"`` skips ``if __name__ == "__main__":`` blocks, as RAGFlow does)."""
    artifact_extensions: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    """When not empty, only output-folder files with these (lower-case, dotted) extensions are artifacts."""
    promote_working_dir: bool = False
    """Move files with an ``artifact_extensions`` extension from the top of the working directory
    into the output folder before collecting (RAGFlow's executor does this for charts saved next to the code)."""
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES
    """The largest ``main()`` value (as JSON); a bigger one is dropped and reported, artifacts stay."""

    @property
    def max_frame_bytes(self) -> int:
        """The frame budget these limits give (pass it to :class:`ResultStream`)."""
        return frame_budget(self.max_value_bytes, self.max_artifact_bytes)

    def encode(self) -> bytes:
        """The bytes to write to the runner's stdin (then close it)."""
        return b"".join(self.parts())

    def parts(self) -> list[memoryview]:
        """:meth:`encode`'s bytes as consecutive pieces, to write one after the other.

        Raw arguments are one piece, a view of the text received: writing the pieces instead
        of :meth:`encode`'s result saves a copy of them. The marker comes first, so that the
        Python runner's parent can take it off the job with a cheap prefix parse and hand the
        rest to the child that runs the code.
        """
        payload = {
            "marker": self.marker,
            "code": self.code,
            "output_dir": self.output_dir,
            "max_artifact_bytes": self.max_artifact_bytes,
            "max_value_bytes": self.max_value_bytes,
            "run_name": self.run_name,
            "artifact_extensions": list(self.artifact_extensions),
            "promote_working_dir": self.promote_working_dir,
        }
        if isinstance(self.arguments, RawArguments):
            head = memoryview(_dump(payload))
            raw = memoryview(self.arguments.data).cast("B")
            return [head[:-1], memoryview(b', "arguments": '), raw, memoryview(b"}")]
        return [memoryview(_dump({**payload, "arguments": dict(self.arguments)}))]


def _dump(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, allow_nan=False).encode("utf-8", "surrogatepass")


class BoundedCapture:
    """Keeps the first ``limit`` bytes of a stream and counts the rest.

    ``on_kept``, when given, is called with each piece of bytes as it is kept: exactly the bytes
    the result will hold, as they arrive (a provider streams them, see
    :class:`~sandbox_core.streaming.StreamDecoder`); past the limit it is not called any more.
    """

    def __init__(self, limit: int = DEFAULT_MAX_OUTPUT_BYTES, on_kept: Callable[[bytes], None] | None = None) -> None:
        self.limit = limit
        self.total = 0
        self._head = bytearray()
        self._on_kept = on_kept

    def feed(self, chunk: bytes) -> None:
        room = self.limit - len(self._head)
        if room > 0:
            kept = chunk[:room]
            self._head += kept
            if self._on_kept is not None and kept:
                self._on_kept(kept)
        self.total += len(chunk)

    @property
    def truncated(self) -> bool:
        return self.total > self.limit

    def text(self) -> str:
        return _decode(bytes(self._head), cut=self.truncated)


class ResultStream:
    """Splits the runner's stdout into the user's output (bounded) and the result frame.

    Incremental: every byte is looked at a bounded number of times, the frame's end (its newline:
    JSON text holds no raw newline) is found by scanning only the new chunk, and the frame is
    decoded once, when asked for after it is complete. The marker may arrive split across chunks,
    so bytes at the end of a chunk that could start the marker are held back until the next chunk
    shows whether they do; other output goes on at once (``on_output``, as for
    :class:`BoundedCapture`, sees the user's output as it arrives). After the frame, the stream is
    only watched for a second marker.
    """

    def __init__(
        self,
        marker: str,
        limit: int = DEFAULT_MAX_OUTPUT_BYTES,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        on_output: Callable[[bytes], None] | None = None,
    ) -> None:
        self.output = BoundedCapture(limit, on_kept=on_output)
        self._marker = marker.encode("utf-8")
        self._held = b""
        self._frame: bytearray | None = None
        self._parsed: dict[bool, dict[str, Any] | None] = {}
        self.max_frame_bytes = max_frame_bytes
        self.frame_overflow = False
        self.complete = False
        """True once the frame has ended (its newline, or the end of the stream): cheap to ask."""
        self.second_frame = False
        """Another marker came after the frame: someone besides the runner wrote one."""

    @property
    def started(self) -> bool:
        """The marker has been seen."""
        return self._frame is not None

    def feed(self, chunk: bytes) -> None:
        if self.complete:
            self._watch_after(chunk)
            return
        if self._frame is not None:
            self._add_frame(chunk)
            return
        data = self._held + chunk
        index = data.find(self._marker)
        if index >= 0:
            self.output.feed(data[:index])
            self._held = b""
            self._frame = bytearray()
            self._add_frame(data[index + len(self._marker):])
            return
        keep = self._marker_start(data)
        self.output.feed(data[: len(data) - keep])
        self._held = data[len(data) - keep:]

    def _marker_start(self, data: bytes) -> int:
        """The length of the longest end of ``data`` that the marker starts with (0: none)."""
        first = self._marker[:1]
        start = data.find(first, max(0, len(data) - len(self._marker) + 1))
        while start >= 0:
            if self._marker.startswith(data[start:]):
                return len(data) - start
            start = data.find(first, start + 1)
        return 0

    def _add_frame(self, chunk: bytes) -> None:
        assert self._frame is not None
        end = chunk.find(b"\n")
        part = chunk if end < 0 else chunk[:end]
        if not self.frame_overflow:
            if len(self._frame) + len(part) > self.max_frame_bytes:
                self.frame_overflow = True
                self._frame = bytearray()  # its content is not a result any more: free it
            else:
                self._frame += part
        if end >= 0:
            self.complete = True
            self._watch_after(chunk[end + 1:])

    def _watch_after(self, chunk: bytes) -> None:
        if self.second_frame or not chunk:
            return
        data = self._held + chunk
        if data.find(self._marker) >= 0:
            self.second_frame = True
            self._held = b""
            return
        keep = len(self._marker) - 1
        self._held = data[-keep:] if len(data) > keep else data

    def close(self) -> None:
        """The stream ended: release bytes held back (no marker followed them); a frame ends here."""
        if self._frame is None:
            if self._held:
                self.output.feed(self._held)
        else:
            self.complete = True
        self._held = b""

    def frame(self, *, raw_value: bool = False) -> dict[str, Any] | None:
        """The decoded result frame, or None when the runner never wrote a complete, readable one.

        Decoded once per form; the fields are not checked here (see :func:`build_result`).
        ``raw_value``: keep the frame's ``value`` as a :class:`~sandbox_core.runner.rawjson.RawJSON`
        (None for ``null``) instead of decoding it.
        """
        if self._frame is None or self.frame_overflow or not self.complete:
            return None
        if raw_value not in self._parsed:
            parsed: Any
            if raw_value:
                parsed = decode_frame(self._frame)
            else:
                try:
                    parsed = json.loads(bytes(self._frame).decode("utf-8", "replace"))
                except (ValueError, RecursionError):
                    parsed = None
            self._parsed[raw_value] = parsed if isinstance(parsed, dict) else None
        parsed_frame: dict[str, Any] | None = self._parsed[raw_value]
        return parsed_frame


def _decode(data: bytes, *, cut: bool) -> str:
    # A head cut in the middle of a UTF-8 sequence would otherwise end in a replacement char.
    if cut:
        for trim in range(0, 4):
            try:
                return data[: len(data) - trim].decode("utf-8")
            except UnicodeDecodeError:
                continue
    return data.decode("utf-8", "replace")


class FrameError(ValueError):
    """A result frame whose fields are not what the runner protocol says."""


@attrs.frozen
class _Report:
    """A checked result frame."""

    value: Any
    exit_code: int
    error: ErrorInfo | None
    has_main: bool
    artifacts: tuple[Artifact, ...]
    skipped: tuple[str, ...]
    value_too_large: int | None


def _field(frame: Mapping[str, Any], name: str, kinds: type | tuple[type, ...], default: Any) -> Any:
    value = frame.get(name, default)
    if value is default:
        return value
    if isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
        raise FrameError(f"{name} must be {_kind_names(kinds)}, got a boolean")
    if not isinstance(value, kinds):
        raise FrameError(f"{name} must be {_kind_names(kinds)}, got {type(value).__name__}")
    return value


def _kind_names(kinds: type | tuple[type, ...]) -> str:
    names = {dict: "an object", list: "a list", str: "a string", int: "an integer", bool: "a boolean", type(None): "null"}
    return " or ".join(names.get(kind, kind.__name__) for kind in (kinds if isinstance(kinds, tuple) else (kinds,)))


def _text(data: Mapping[str, Any], name: str, where: str, default: str = "") -> str:
    value = data.get(name, default)
    if not isinstance(value, str):
        raise FrameError(f"{where}.{name} must be a string, got {type(value).__name__}")
    return value


def _artifact(item: Any, index: int) -> Artifact:
    where = f"artifacts[{index}]"
    if not isinstance(item, dict):
        raise FrameError(f"{where} must be an object, got {type(item).__name__}")
    encoded = _text(item, "content_base64", where)
    try:
        content = b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise FrameError(f"{where}.content_base64 is not base64") from None
    size = item.get("size", len(content))
    if isinstance(size, bool) or not isinstance(size, int) or size != len(content):
        raise FrameError(f"{where}.size must be the content's length ({len(content)}), got {size!r}")
    mime_type = _text(item, "mime_type", where, "application/octet-stream")
    if not mime_type.isprintable() or len(mime_type) > 255:
        mime_type = "application/octet-stream"
    return Artifact(name=safe_artifact_name(_text(item, "name", where)), mime_type=mime_type, size=size, content=content)


def _unique(names: list[str], name: str) -> str:
    candidate, number = name, 1
    while candidate in names:
        number += 1
        candidate = f"{name}~{number}"
    names.append(candidate)
    return candidate


def read_frame(frame: Any) -> _Report:
    """Check a decoded frame field by field; :class:`FrameError` names the first bad field."""
    if not isinstance(frame, dict):
        raise FrameError("the frame must be a JSON object")
    exit_code = _field(frame, "exit_code", int, 0)
    runner_exit_code = _field(frame, "runner_exit_code", (int, type(None)), None)
    if runner_exit_code is not None and runner_exit_code != exit_code:
        raise FrameError(f"the report says exit code {exit_code}, but the code ended with {runner_exit_code}")
    raw_error = _field(frame, "error", (dict, type(None)), None)
    error = None
    if raw_error is not None:
        error = ErrorInfo(
            type=_text(raw_error, "type", "error", "Error"),
            message=_text(raw_error, "message", "error"),
            traceback=_text(raw_error, "traceback", "error"),
        )
    has_main = _field(frame, "has_main", bool, False)
    names: list[str] = []
    artifacts = []
    for index, item in enumerate(_field(frame, "artifacts", list, [])):
        artifact = _artifact(item, index)
        artifacts.append(attrs.evolve(artifact, name=_unique(names, artifact.name)))
    skipped = _field(frame, "skipped_artifacts", list, [])
    if not all(isinstance(name, str) for name in skipped):
        raise FrameError("skipped_artifacts must be a list of strings")
    too_large = _field(frame, "value_too_large", (int, type(None)), None)
    return _Report(
        value=frame.get("value"),
        exit_code=exit_code,
        error=error,
        has_main=has_main,
        artifacts=tuple(artifacts),
        skipped=tuple(safe_artifact_name(name) for name in skipped),
        value_too_large=too_large,
    )


def build_result(
    *,
    provider: str,
    stdout: ResultStream,
    stderr: BoundedCapture,
    exit_code: int | None,
    execution_time: float,
    timed_out: bool = False,
    timeout: float | None = None,
    memory_exceeded: bool = False,
    metadata: Mapping[str, Any] | None = None,
    raw_value: bool = False,
) -> ExecutionResult:
    """Turn what a runner produced into an ExecutionResult, by the rules every provider shares.

    Precedence: timeout, then memory limit, then an oversized frame, then a missing, damaged or
    invalid frame (an ``output_limit`` when output was truncated, else an ``error``: never a
    success), then a user error or non-zero exit, then an oversized value, then output limit,
    then success. Output is kept whatever the status (partial output on timeout). Never raises
    because of what the runner wrote. ``raw_value``: the result's ``value`` stays JSON text (a
    :class:`~sandbox_core.runner.rawjson.RawJSON`), for a host that only relays it (see
    :func:`sandbox_core.runner.rawjson.encode_parts`).
    """
    stdout.close()
    meta: dict[str, Any] = dict(metadata or {})
    report: _Report | None = None
    problem: ErrorInfo | None = None
    frame = stdout.frame(raw_value=raw_value)
    if stdout.second_frame:
        problem = ErrorInfo(type="InvalidResultFrame", message="more than one result frame was written (a forged frame?)")
    elif frame is not None:
        try:
            report = read_frame(frame)
        except FrameError as exc:
            problem = ErrorInfo(type="InvalidResultFrame", message=f"the runner's result frame is invalid: {exc}")
    elif stdout.started and not stdout.frame_overflow:
        problem = ErrorInfo(type="InvalidResultFrame", message="the runner's result frame is damaged (not a complete JSON object)")
    value: Any = None
    error: ErrorInfo | None = None
    artifacts: tuple[Artifact, ...] = ()
    if report is not None:
        value, error, artifacts = report.value, report.error, report.artifacts
        if exit_code in (None, 0):
            exit_code = report.exit_code
        if report.skipped:
            meta["skipped_artifacts"] = list(report.skipped)
        meta["has_main"] = report.has_main
    truncated = stdout.output.truncated or stderr.truncated
    if timed_out:
        status = ExecutionStatus.TIMEOUT
        limit = f" of {timeout:g}s" if timeout else ""
        error = ErrorInfo(type="TimeoutError", message=f"execution exceeded its time limit{limit} and was stopped")
    elif memory_exceeded:
        status = ExecutionStatus.MEMORY_LIMIT
        error = ErrorInfo(type="MemoryLimitExceeded", message="execution exceeded its memory limit and was stopped")
    elif stdout.frame_overflow:
        status = ExecutionStatus.OUTPUT_LIMIT
        error = ErrorInfo(
            type="OutputLimitExceeded",
            message=f"the result (value and artifacts) was larger than {stdout.max_frame_bytes} bytes",
        )
    elif report is None:
        value, artifacts = None, ()
        if problem is None:
            if exit_code not in (0, None):
                problem = ErrorInfo(type="ProcessExited", message=f"the program exited with code {exit_code} before reporting a result")
            else:
                problem = ErrorInfo(type="NoResultFrame", message="the program ended without reporting a result (no result frame)")
        status = ExecutionStatus.OUTPUT_LIMIT if truncated and problem.type != "InvalidResultFrame" else ExecutionStatus.ERROR
        error = problem
    elif error is not None or exit_code not in (0, None):
        status = ExecutionStatus.ERROR
    elif report.value_too_large is not None:
        status = ExecutionStatus.OUTPUT_LIMIT
        error = ErrorInfo(
            type="OutputLimitExceeded",
            message=f"main() returned {report.value_too_large} bytes of data, more than the limit; the value was dropped",
        )
    elif truncated:
        status = ExecutionStatus.OUTPUT_LIMIT
    else:
        status = ExecutionStatus.SUCCESS
    return ExecutionResult(
        status=status,
        stdout=stdout.output.text(),
        stderr=stderr.text(),
        exit_code=exit_code,
        value=value,
        error=error,
        stdout_truncated=stdout.output.truncated,
        stderr_truncated=stderr.truncated,
        execution_time=execution_time,
        provider=provider,
        artifacts=artifacts,
        metadata=meta,
    )
