"""The host side of a session runner (``session_runner.py``): messages in, frames and results out.

A provider starts ``session_runner.py`` (see :func:`session_runner_path`) wherever a session's
interpreter lives, with pipes for its stdin, stdout and stderr, and wraps them in a
:class:`SessionChannel`. Each call writes one message and reads until its frame has come back,
enforcing the output limits while streaming; the runner enforces each execution's timeout itself
(it replaces its interpreter), and the channel's backstop (the timeout plus
:data:`BACKSTOP_SECONDS`) ends the whole session when the runner does not answer. A channel is
used by one thread at a time (the caller holds a lock per session).

An execution's output can be followed as it comes (``on_output``: the events the one-shot
runners give, see :class:`~sandbox_core.streaming.StreamDecoder`), and stopped from another
thread (``cancel_fd``: a descriptor that becomes readable): the channel then sends the runner a
``cancel`` message, and the runner replaces its interpreter as it does on a timeout.
"""

from __future__ import annotations

import base64
import json
import os
import selectors
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import attrs

from sandbox_core.errors import SessionGoneError
from sandbox_core.files import MAX_FILE_BYTES
from sandbox_core.model import ExecutionRequest, ExecutionResult
from sandbox_core.runner.protocol import (
    DEFAULT_MAX_ARTIFACT_BYTES,
    DEFAULT_MAX_OUTPUT_BYTES,
    DEFAULT_MAX_VALUE_BYTES,
    FRAME_OVERHEAD_BYTES,
    BoundedCapture,
    ResultStream,
    build_result,
    frame_budget,
    new_marker,
)
from sandbox_core.sessions import FileInfo
from sandbox_core.streaming import STREAMS, OutputCallback, StreamDecoder
from sandbox_core.timeouts import request_seconds

BACKSTOP_SECONDS = 5.0
"""Beyond an execution's timeout, how long the host waits for the runner's frame before ending the session."""
FILE_OP_SECONDS = 30.0
"""How long a file operation may take before the session is ended."""
FLOOD_FACTOR = 4
"""Output beyond this many times the limit is a flood: the session is ended, not read to the end."""
READ_CHUNK = 65536


def session_runner_path() -> Path:
    """The session runner script as a file on disk (it imports ``python_runner.py`` from its folder)."""
    with resources.as_file(resources.files("sandbox_core.runner") / "session_runner.py") as path:
        return Path(path)


def encode_message(marker: str, op: str, fields: dict[str, Any]) -> bytes:
    """One message for the session runner: ``<length>\\n<JSON>``."""
    body = json.dumps({"marker": marker, "op": op, **fields}, ensure_ascii=False).encode("utf-8", "surrogatepass")
    return b"%d\n" % len(body) + body


@attrs.define
class Exchange:
    """What came back for one message: the frame stream, stderr and how long it took."""

    stdout: ResultStream
    stderr: BoundedCapture
    elapsed: float
    flooded: bool = False
    cancelled: bool = False


class SessionChannel:
    """Talks to one session runner over its three pipes; see the module docstring.

    :param stdin: write end of the runner's stdin; ``stdout``, ``stderr``: read ends.
    :param kill: ends the runner (and its sandbox) for good; called on a missing answer or a flood.
    :param provider: the provider name results carry.

    The channel owns the three descriptors and closes them when the session ends.
    """

    def __init__(self, stdin: int, stdout: int, stderr: int, kill: Callable[[], None], provider: str) -> None:
        self.stdin, self.stdout, self.stderr = stdin, stdout, stderr
        self._kill = kill
        self.provider = provider
        self.gone: str | None = None
        for fd in (stdin, stdout, stderr):
            os.set_blocking(fd, False)

    def end(self, reason: str) -> None:
        """Kill the runner and remember why: later calls raise :class:`SessionGoneError`."""
        if self.gone is None:
            self.gone = reason
        self._kill()
        for name in ("stdin", "stdout", "stderr"):
            fd = getattr(self, name)
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
                setattr(self, name, -1)

    def _exchange(
        self,
        op: str,
        fields: dict[str, Any],
        wait: float,
        output_limit: int,
        frame_limit: int,
        on_output: OutputCallback | None = None,
        cancel_fd: int = -1,
    ) -> Exchange:
        if self.gone is not None:
            raise SessionGoneError(self.gone)
        marker = new_marker()
        payload = memoryview(encode_message(marker, op, fields))
        decoders = [StreamDecoder(stream, on_output) for stream in STREAMS] if on_output is not None else []
        stdout = ResultStream(marker, output_limit, max_frame_bytes=frame_limit, on_output=decoders[0] if decoders else None)
        stderr = BoundedCapture(output_limit, on_kept=decoders[1] if decoders else None)
        exchange = Exchange(stdout, stderr, 0.0)
        started = time.monotonic()
        try:
            self._pump(marker, payload, exchange, started + wait, cancel_fd)
        finally:
            exchange.elapsed = time.monotonic() - started
            for decoder, capture in zip(decoders, (stdout.output, stderr)):
                decoder.close(cut=capture.truncated)
        return exchange

    def _pump(self, marker: str, payload: memoryview, exchange: Exchange, deadline: float, cancel_fd: int) -> None:
        """Write the message and read until its frame is complete (or the session ends)."""
        stdout, stderr = exchange.stdout, exchange.stderr
        flood_cap = FLOOD_FACTOR * stdout.output.limit
        selector = selectors.DefaultSelector()
        selector.register(self.stdin, selectors.EVENT_WRITE)
        selector.register(self.stdout, selectors.EVENT_READ, stdout.feed)
        selector.register(self.stderr, selectors.EVENT_READ, stderr.feed)
        if cancel_fd >= 0:
            selector.register(cancel_fd, selectors.EVENT_READ)
        try:
            while not stdout.complete:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.end("the session's runner stopped answering and the session was ended")
                    return
                for key, _mask in selector.select(remaining):
                    if key.fd == cancel_fd:
                        selector.unregister(cancel_fd)
                        exchange.cancelled = True
                        deadline = min(deadline, time.monotonic() + BACKSTOP_SECONDS)
                        if payload or not self._send_cancel(marker):
                            self.end("the session was ended: its execution was stopped before the runner had it all")
                            return
                        continue
                    if key.fd == self.stdin:
                        try:
                            written = os.write(self.stdin, payload[:READ_CHUNK])
                        except BlockingIOError:
                            continue
                        except OSError:
                            written = len(payload)
                        payload = payload[written:]
                        if not payload:
                            selector.unregister(self.stdin)
                        continue
                    try:
                        chunk = os.read(key.fd, READ_CHUNK)
                    except BlockingIOError:
                        continue
                    if not chunk:
                        self.end("the session ended: its sandbox is gone (a memory kill, or its backend stopped it)")
                        return
                    key.data(chunk)
                    if stdout.output.total > flood_cap or stderr.total > flood_cap:
                        self.end(f"the session was ended: its code wrote more than {flood_cap} bytes of output")
                        exchange.flooded = True
                        return
                    if stdout.complete:
                        break
        finally:
            selector.close()
        self._drain_stderr(stderr.feed)

    def _send_cancel(self, marker: str) -> bool:
        """Ask the runner to stop the running job (a message far below the pipe's atomic size); False when it cannot be sent."""
        try:
            os.write(self.stdin, encode_message(marker, "cancel", {}))
        except OSError:
            return False
        return True

    def _drain_stderr(self, feed: Callable[[bytes], None]) -> None:
        while True:
            try:
                chunk = os.read(self.stderr, READ_CHUNK)
            except (BlockingIOError, OSError):
                return
            if not chunk:
                return
            feed(chunk)

    def execute(
        self,
        request: ExecutionRequest,
        *,
        output_dir: str,
        max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
        max_artifact_bytes: int = DEFAULT_MAX_ARTIFACT_BYTES,
        max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
        timeout: float | None = None,
        metadata: dict[str, Any] | None = None,
        memory_exceeded: Callable[[], bool] | None = None,
        on_output: OutputCallback | None = None,
        cancel_fd: int = -1,
    ) -> tuple[ExecutionResult, bool]:
        """Run ``request`` in the session; the result and whether the session ended with it.

        ``memory_exceeded`` tells whether the backend killed the session for memory (asked once
        the execution is over): the result then says ``memory_limit`` and the session ends.
        ``on_output`` gets the output the result keeps as it is read (in this thread: keep it
        quick). When ``cancel_fd`` becomes readable the execution is stopped: the runner replaces
        its interpreter (names lost, files kept) and the result's metadata says ``cancelled``.
        """
        limit = request_seconds(request) if timeout is None else timeout
        fields = {
            "code": request.code,
            "arguments": dict(request.arguments),
            "timeout": limit,
            "files": {name: base64.b64encode(data).decode("ascii") for name, data in request.files.items()},
            "output_dir": output_dir,
            "max_artifact_bytes": max_artifact_bytes,
            "max_value_bytes": max_value_bytes,
        }
        exchange = self._exchange("execute", fields, limit + BACKSTOP_SECONDS, max_output_bytes,
                                  frame_budget(max_value_bytes, max_artifact_bytes), on_output, cancel_fd)
        frame = exchange.stdout.frame() or {}
        out_of_memory = memory_exceeded is not None and memory_exceeded()
        if out_of_memory:
            self.end("the session was ended: its code exceeded the memory limit")
        timed_out = frame.get("timed_out") is True or (
            self.gone is not None and not exchange.flooded and not out_of_memory and not exchange.cancelled
            and exchange.elapsed >= limit
        )
        meta = dict(metadata or {})
        meta["session_restarted"] = frame.get("session_restarted") is True
        if exchange.cancelled:
            meta["cancelled"] = True
        if self.gone is not None:
            meta["session_ended"] = self.gone
        result = build_result(
            provider=self.provider,
            stdout=exchange.stdout,
            stderr=exchange.stderr,
            exit_code=None,
            execution_time=exchange.elapsed,
            timed_out=timed_out,
            timeout=limit,
            memory_exceeded=out_of_memory,
            metadata=meta,
        )
        return result, self.gone is not None

    def _file_op(self, op: str, fields: dict[str, Any], frame_limit: int) -> dict[str, Any]:
        exchange = self._exchange(op, fields, FILE_OP_SECONDS, DEFAULT_MAX_OUTPUT_BYTES, frame_limit)
        if self.gone is not None:
            raise SessionGoneError(self.gone)
        frame = exchange.stdout.frame()
        if frame is None:
            raise SessionGoneError("the session's runner answered with something that is not a frame")
        error = frame.get("error")
        if isinstance(error, dict):
            kind, message = str(error.get("type")), str(error.get("message"))
            if kind in ("FileNotFoundError", "IsADirectoryError", "NotADirectoryError"):
                raise FileNotFoundError(f"{fields.get('path')}: no such file in the session's working folder")
            raise ValueError(f"{op} failed in the session: {kind}: {message}")
        return frame

    def upload(self, path: str, data: bytes) -> None:
        self._file_op("upload", {"path": path, "data": base64.b64encode(data).decode("ascii")}, FRAME_OVERHEAD_BYTES)

    def download(self, path: str) -> bytes:
        frame = self._file_op("download", {"path": path}, 4 * (MAX_FILE_BYTES // 3 + 1) + FRAME_OVERHEAD_BYTES)
        return base64.b64decode(str(frame.get("data", "")))

    def list_files(self) -> list[FileInfo]:
        frame = self._file_op("list", {}, FRAME_OVERHEAD_BYTES)
        files = frame.get("files")
        if not isinstance(files, list):
            raise ValueError("the session's runner sent no file list")
        listed = []
        for item in files:
            try:
                listed.append(FileInfo(path=str(item["path"]), size=int(item["size"])))
            except (TypeError, KeyError, ValueError):  # a name the code made that no caller could ask for
                continue
        return listed
