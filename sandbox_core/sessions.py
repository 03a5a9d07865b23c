"""Stateful sessions: an interpreter that keeps its names and files from one execution to the next.

For users: :meth:`SandboxClient.session <sandbox_core.client.SandboxClient.session>` opens one.
For provider authors: the records that cross the ``sandbox_session_*`` hooks, :class:`SessionSpec`
(what the caller asked for) and :class:`FileInfo` (one file of a session's working folder).
File names follow the rules of :mod:`sandbox_core.files`, re-exported here.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from sandbox_core.errors import SessionGoneError
from sandbox_core.files import MAX_FILE_BYTES, check_data, check_files, check_path
from sandbox_core.model import ExecutionRequest, ExecutionResult, _check_language, _normalize_language
from sandbox_core.streaming import aevents_then_result, events_then_result

if TYPE_CHECKING:
    from sandbox_core.client import SandboxClient
    from sandbox_core.streaming import OutputCallback, OutputEvent

__all__ = [
    "AsyncSession",
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_MAX_LIFETIME",
    "MAX_FILE_BYTES",
    "FileInfo",
    "Session",
    "SessionSpec",
    "check_data",
    "check_files",
    "check_path",
]

DEFAULT_IDLE_TIMEOUT = 300.0
"""Seconds a session may sit unused before its backend destroys it, when the caller does not say."""
DEFAULT_MAX_LIFETIME = 3600.0
"""Seconds a session may live at most, used or not, when the caller does not say."""
LONGEST_LIFETIME = 86400.0
"""No session outlives a day: a forgotten one must end some time."""


def _check_seconds(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (math.isfinite(value) and 0 < value <= LONGEST_LIFETIME):
        raise ValueError(f"{attribute.name}: must be a number of seconds in (0, {LONGEST_LIFETIME:g}], got {value!r}")


def _check_runtime(_instance: object, _attribute: attrs.Attribute[str | None], value: str | None) -> None:
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise ValueError(f"runtime: must be a runtime name or None, got {value!r}")


@attrs.frozen
class SessionSpec:
    """What a caller asks of a new session.

    ``idle_timeout``: seconds without any call after which the backend destroys the session;
    ``max_lifetime``: seconds after opening after which it is destroyed however busy it is. Both
    are enforced on the backend side, so a session outlives no client that vanished.
    """

    language: str = attrs.field(default="python", converter=_normalize_language, validator=_check_language)
    runtime: str | None = attrs.field(default=None, validator=_check_runtime)
    idle_timeout: float = attrs.field(default=DEFAULT_IDLE_TIMEOUT, converter=float, validator=_check_seconds)
    max_lifetime: float = attrs.field(default=DEFAULT_MAX_LIFETIME, converter=float, validator=_check_seconds)

    def to_dict(self) -> dict[str, Any]:
        return {
            "language": self.language,
            "runtime": self.runtime,
            "idle_timeout": self.idle_timeout,
            "max_lifetime": self.max_lifetime,
        }


@attrs.frozen
class FileInfo:
    """One file in a session's working folder: its name relative to that folder and its size in bytes."""

    path: str = attrs.field(validator=lambda _i, _a, v: check_path(v))
    size: int = attrs.field(converter=int)

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size}


class Session:
    """A stateful session on one provider, opened by :meth:`SandboxClient.session
    <sandbox_core.client.SandboxClient.session>` or reached with :meth:`SandboxClient.attach_session
    <sandbox_core.client.SandboxClient.attach_session>`. Thread-safe; a context manager that closes it.

    Names one execution defines are visible to the next, files stay in the working folder. A
    session that is gone (closed, expired, ended by a memory kill or a backend restart) raises
    :class:`~sandbox_core.errors.SessionGoneError`.
    """

    def __init__(self, client: SandboxClient, provider: str, handle: str, spec: SessionSpec) -> None:
        self._client = client
        self.provider = provider
        self.handle = handle
        self.spec = spec
        self.closed = False

    @property
    def id(self) -> str:
        """``"<provider>:<handle>"``: pass it to ``attach_session`` in any process with the same settings."""
        return f"{self.provider}:{self.handle}"

    def __repr__(self) -> str:
        return f"Session({self.id!r})"

    def _check_open(self) -> None:
        if self.closed:
            raise SessionGoneError(f"session {self.id} was closed")

    def execute(
        self,
        code: str,
        arguments: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        files: Mapping[str, bytes] | None = None,
        *,
        requested_by: str | None = None,
        on_output: OutputCallback | None = None,
    ) -> ExecutionResult:
        """Run ``code`` in the session's interpreter; ``main(**arguments)`` is called if the code defines it.

        ``files`` are written into the working folder first. A timeout restarts the interpreter
        (``result.metadata["session_restarted"]``); the session's files are kept.
        """
        self._check_open()
        request = ExecutionRequest(
            code=code,
            language=self.spec.language,
            timeout=timeout,
            arguments=dict(arguments or {}),
            requested_by=requested_by,
            runtime=self.spec.runtime,
            files=dict(files or {}),
        )
        return self._client._session_execute(self, request, on_output)

    def stream(
        self,
        code: str,
        arguments: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        files: Mapping[str, bytes] | None = None,
        *,
        requested_by: str | None = None,
    ) -> Iterator[OutputEvent | ExecutionResult]:
        """Run ``code`` in the session, yielding its output events as they arrive, then its result.

        As :meth:`SandboxClient.stream <sandbox_core.client.SandboxClient.stream>`: the events,
        joined per stream, equal the result's ``stdout``/``stderr``; leaving the loop early does
        not stop the execution (the session stays busy until it ends).
        """
        return events_then_result(
            lambda on_output: self.execute(code, arguments, timeout, files, requested_by=requested_by, on_output=on_output)
        )

    def upload(self, path: str, data: bytes) -> None:
        """Write ``data`` to ``path`` (relative to the working folder), replacing any file there."""
        self._check_open()
        path = check_path(path)
        self._client._session_call(self, "upload", path=path, data=check_data(path, data))

    def download(self, path: str) -> bytes:
        """The content of file ``path`` of the working folder; ``FileNotFoundError`` when there is none."""
        self._check_open()
        data: bytes = self._client._session_call(self, "download", path=check_path(path))
        return data

    def list_files(self) -> list[FileInfo]:
        """The files of the working folder (recursively), with their sizes."""
        self._check_open()
        files: list[FileInfo] = self._client._session_call(self, "list_files")
        return files

    def detach(self) -> None:
        """Let the session outlive its client: ``client.close()`` no longer closes it (the backend's
        ``idle_timeout`` and ``max_lifetime`` still do); for handing its id to another process."""
        self._client._forget(self)

    def close(self) -> None:
        """Destroy the session on its backend; harmless when repeated."""
        if not self.closed:
            self.closed = True
            self._client._session_close(self)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class AsyncSession:
    """The async twin of :class:`Session`: each call runs in a worker thread, never blocking the loop."""

    def __init__(self, session: Session) -> None:
        self.session = session

    @property
    def id(self) -> str:
        return self.session.id

    async def execute(
        self,
        code: str,
        arguments: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        files: Mapping[str, bytes] | None = None,
        *,
        requested_by: str | None = None,
        on_output: OutputCallback | None = None,
    ) -> ExecutionResult:
        return await asyncio.to_thread(
            self.session.execute, code, arguments, timeout, files, requested_by=requested_by, on_output=on_output
        )

    def astream(
        self,
        code: str,
        arguments: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        files: Mapping[str, bytes] | None = None,
        *,
        requested_by: str | None = None,
    ) -> AsyncIterator[OutputEvent | ExecutionResult]:
        """The async twin of :meth:`Session.stream` (``async for item in session.astream(code): ...``)."""
        return aevents_then_result(
            lambda on_output: self.session.execute(
                code, arguments, timeout, files, requested_by=requested_by, on_output=on_output
            )
        )

    async def upload(self, path: str, data: bytes) -> None:
        await asyncio.to_thread(self.session.upload, path, data)

    async def download(self, path: str) -> bytes:
        return await asyncio.to_thread(self.session.download, path)

    async def list_files(self) -> list[FileInfo]:
        return await asyncio.to_thread(self.session.list_files)

    async def close(self) -> None:
        await asyncio.to_thread(self.session.close)

    async def __aenter__(self) -> AsyncSession:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()


class AsyncSessionOpener:
    """What :meth:`SandboxClient.asession` returns: ``await`` it, or use it with ``async with``."""

    def __init__(self, open_session: Callable[[], Session]) -> None:
        self._open = open_session
        self._session: AsyncSession | None = None

    async def _opened(self) -> AsyncSession:
        return AsyncSession(await asyncio.to_thread(self._open))

    def __await__(self) -> Generator[Any, None, AsyncSession]:
        return self._opened().__await__()

    async def __aenter__(self) -> AsyncSession:
        self._session = await self._opened()
        return self._session

    async def __aexit__(self, *_exc: object) -> None:
        if self._session is not None:
            await self._session.close()
