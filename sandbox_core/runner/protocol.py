"""The host side of the runner protocol that every provider reuses.

A provider starts ``python_runner.py`` or ``javascript_runner.js`` (see :func:`runner_path`)
wherever it runs code, writes one encoded :class:`Job` to the runner's stdin and closes it. The
runner prints the user's output, then a result frame: a per-job random marker followed by JSON.
Feeding the runner's stdout to a :class:`ResultStream` and its stderr to a
:class:`BoundedCapture` (both enforce output limits while streaming, so a flood never fills the
host's memory), then calling :func:`build_result`, turns what came back into an
:class:`~sandbox_core.model.ExecutionResult` with the same rules for every provider.
"""

from __future__ import annotations

import functools
import json
import secrets
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import attrs

from sandbox_core.model import Artifact, ErrorInfo, ExecutionResult, ExecutionStatus
from sandbox_core.runner.rawjson import RawArguments, decode_frame

RUNNER_FILES = {"python": "python_runner.py", "javascript": "javascript_runner.js"}
DEFAULT_OUTPUT_DIR = "/tmp/sandbox-output"
DEFAULT_MAX_OUTPUT_BYTES = 1 << 20
DEFAULT_MAX_VALUE_BYTES = 16 << 20
DEFAULT_MAX_ARTIFACT_BYTES = 8 << 20


def runner_path(language: str) -> Path:
    """The runner script for ``language`` as a file on disk (to mount into a sandbox)."""
    with resources.as_file(resources.files(__package__) / RUNNER_FILES[language]) as path:
        return Path(path)


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

    def encode(self) -> bytes:
        """The bytes to write to the runner's stdin (then close it)."""
        return b"".join(self.parts())

    def parts(self) -> list[memoryview]:
        """:meth:`encode`'s bytes as consecutive pieces, to write one after the other.

        Raw arguments are one piece, a view of the text received: writing the pieces instead
        of :meth:`encode`'s result saves a copy of them.
        """
        payload = {
            "code": self.code,
            "marker": self.marker,
            "output_dir": self.output_dir,
            "max_artifact_bytes": self.max_artifact_bytes,
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
    """Keeps the first ``limit`` bytes of a stream and counts the rest."""

    def __init__(self, limit: int = DEFAULT_MAX_OUTPUT_BYTES) -> None:
        self.limit = limit
        self.total = 0
        self._head = bytearray()

    def feed(self, chunk: bytes) -> None:
        room = self.limit - len(self._head)
        if room > 0:
            self._head += chunk[:room]
        self.total += len(chunk)

    @property
    def truncated(self) -> bool:
        return self.total > self.limit

    def text(self) -> str:
        return _decode(bytes(self._head), cut=self.truncated)


class ResultStream:
    """Splits the runner's stdout into the user's output (bounded) and the result frame.

    The marker may arrive split across chunks, so the last ``len(marker) - 1`` bytes are held back
    until the next chunk shows whether they start the marker.
    """

    def __init__(
        self,
        marker: str,
        limit: int = DEFAULT_MAX_OUTPUT_BYTES,
        max_frame_bytes: int = DEFAULT_MAX_VALUE_BYTES + DEFAULT_MAX_ARTIFACT_BYTES * 2,
    ) -> None:
        self.output = BoundedCapture(limit)
        self._marker = marker.encode("utf-8")
        self._held = b""
        self._frame: bytearray | None = None
        self.max_frame_bytes = max_frame_bytes
        self.frame_overflow = False

    def feed(self, chunk: bytes) -> None:
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
        keep = len(self._marker) - 1
        self.output.feed(data[: len(data) - keep] if len(data) > keep else b"")
        self._held = data[-keep:] if len(data) > keep else data

    def _add_frame(self, chunk: bytes) -> None:
        assert self._frame is not None
        if len(self._frame) + len(chunk) > self.max_frame_bytes:
            self.frame_overflow = True
            return
        self._frame += chunk

    def close(self) -> None:
        """Release bytes held back at the end of the stream (no marker followed them)."""
        if self._frame is None and self._held:
            self.output.feed(self._held)
            self._held = b""

    def frame(self, *, raw_value: bool = False) -> dict[str, Any] | None:
        """The decoded result frame, or None when the runner never wrote a complete one.

        ``raw_value``: keep the frame's ``value`` as a :class:`~sandbox_core.runner.rawjson.RawJSON`
        (None for ``null``) instead of decoding it.
        """
        if self._frame is None or self.frame_overflow:
            return None
        if raw_value:
            return decode_frame(self._frame)
        text = bytes(self._frame).decode("utf-8", "replace").strip()
        try:
            frame = json.loads(text)
        except ValueError:
            return None
        return frame if isinstance(frame, dict) else None


def _decode(data: bytes, *, cut: bool) -> str:
    # A head cut in the middle of a UTF-8 sequence would otherwise end in a replacement char.
    if cut:
        for trim in range(0, 4):
            try:
                return data[: len(data) - trim].decode("utf-8")
            except UnicodeDecodeError:
                continue
    return data.decode("utf-8", "replace")


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

    Precedence: timeout, then memory limit, then a user error, then output limit, then success.
    Output is kept whatever the status (partial output on timeout). ``raw_value``: the result's
    ``value`` stays JSON text (a :class:`~sandbox_core.runner.rawjson.RawJSON`), for a host that
    only relays it (see :func:`sandbox_core.runner.rawjson.encode`).
    """
    stdout.close()
    frame = stdout.frame(raw_value=raw_value)
    meta: dict[str, Any] = dict(metadata or {})
    value: Any = None
    error: ErrorInfo | None = None
    artifacts: tuple[Artifact, ...] = ()
    if frame is not None:
        value = frame.get("value")
        if frame.get("error"):
            error = ErrorInfo.from_dict(frame["error"])
        if exit_code in (None, 0):
            exit_code = int(frame.get("exit_code") or 0)
        artifacts = tuple(Artifact.from_dict(a) for a in frame.get("artifacts") or ())
        if frame.get("skipped_artifacts"):
            meta["skipped_artifacts"] = list(frame["skipped_artifacts"])
        meta["has_main"] = bool(frame.get("has_main"))
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
            message=f"main() returned more than {stdout.max_frame_bytes} bytes of data",
        )
    elif error is not None or exit_code not in (0, None):
        status = ExecutionStatus.ERROR
        if error is None and frame is None:
            error = ErrorInfo(type="ProcessExited", message=f"the program exited with code {exit_code} before reporting a result")
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
