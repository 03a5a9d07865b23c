"""The data that crosses the provider contract: requests, results, health.

These records are the same whatever the provider: the CLI's ``--json`` output, the executor's
HTTP responses and the admin API all use the field names defined here (see ``to_dict``).
"""

from __future__ import annotations

import base64
import enum
import math
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from sandbox_core.files import check_files

DEFAULT_TIMEOUT = 30.0
"""Seconds of wall-clock time an execution gets when the caller does not say."""

LANGUAGES = ("python", "javascript")
"""The languages of the result contract; providers declare which of them they run."""


class ExecutionStatus(str, enum.Enum):
    """How an execution ended. ``success`` is the only status where user code completed cleanly."""

    SUCCESS = "success"
    ERROR = "error"
    TIMEOUT = "timeout"
    MEMORY_LIMIT = "memory_limit"
    OUTPUT_LIMIT = "output_limit"
    PROVIDER_ERROR = "provider_error"


def _artifacts(values: Iterable[Artifact]) -> tuple[Artifact, ...]:
    return tuple(values)


def _strings(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)


def _normalize_language(value: str) -> str:
    aliases = {"py": "python", "python3": "python", "js": "javascript", "nodejs": "javascript", "node": "javascript"}
    lowered = value.strip().lower()
    return aliases.get(lowered, lowered)


def _check_language(_instance: object, _attribute: attrs.Attribute[str], value: str) -> None:
    if value not in LANGUAGES:
        raise ValueError(f"language: {value!r} is not supported; choose one of: {', '.join(LANGUAGES)}")


def _check_timeout(_instance: object, _attribute: attrs.Attribute[float], value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"timeout: must be a finite, positive number of seconds, got {value!r}")


def _check_runtime(value: str | None) -> None:
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise ValueError(f"runtime: must be a runtime name or None, got {value!r}")


def _file_sizes(files: Mapping[str, bytes]) -> str:
    return "{" + ", ".join(f"{name!r}: <{len(data)} bytes>" for name, data in files.items()) + "}"


@attrs.frozen
class ExecutionRequest:
    """What an agent asks for: run ``code`` in ``language`` and call ``main(**arguments)``.

    ``arguments`` travel as JSON data, never pasted into source text, so any JSON value works.
    ``requested_by`` names the caller for the audit log (a user, a service, an agent id).
    ``runtime`` names the package set to run with (None: the provider's default for the
    language); a provider that does not know it fails the request, never substituting another.
    ``files`` are input files (name relative to the working folder, to content) that the provider
    puts into the working folder before the code runs; names and sizes are checked here
    (:mod:`sandbox_core.files`), and only providers whose ``ProviderInfo.files`` is true get any.
    """

    code: str
    language: str = attrs.field(default="python", converter=_normalize_language, validator=_check_language)
    timeout: float = attrs.field(default=DEFAULT_TIMEOUT, converter=float, validator=_check_timeout)
    arguments: Mapping[str, Any] = attrs.field(factory=dict)
    requested_by: str | None = None
    runtime: str | None = attrs.field(default=None, validator=lambda _i, _a, v: _check_runtime(v))
    files: Mapping[str, bytes] = attrs.field(factory=dict, converter=check_files, repr=_file_sizes)

    @arguments.validator
    def _check_arguments(self, _attribute: attrs.Attribute[Any], value: Any) -> None:
        if not isinstance(value, Mapping):
            raise ValueError("arguments: must be a mapping of argument names to JSON values")
        for key in value:
            if not isinstance(key, str) or not key.isidentifier():
                raise ValueError(f"arguments: {key!r} is not a valid parameter name")


@attrs.frozen
class ErrorInfo:
    """The exception user code raised: its type name, message and formatted traceback."""

    type: str
    message: str
    traceback: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"type": self.type, "message": self.message, "traceback": self.traceback}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ErrorInfo:
        return cls(
            type=str(data.get("type", "Error")),
            message=str(data.get("message", "")),
            traceback=str(data.get("traceback", "")),
        )


@attrs.frozen
class Artifact:
    """A file user code left in its output folder (``/sandbox/output`` or ``$SANDBOX_OUTPUT_DIR``)."""

    name: str
    mime_type: str
    size: int
    content: bytes = attrs.field(repr=lambda c: f"<{len(c)} bytes>")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "mime_type": self.mime_type,
            "size": self.size,
            "content_base64": base64.b64encode(self.content).decode("ascii"),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Artifact:
        content = base64.b64decode(data.get("content_base64", ""))
        return cls(
            name=str(data["name"]),
            mime_type=str(data.get("mime_type", "application/octet-stream")),
            size=int(data.get("size", len(content))),
            content=content,
        )


@attrs.frozen
class ExecutionResult:
    """The outcome of one execution, the same shape for every provider.

    ``value`` is what ``main()`` returned, as JSON data (``None`` when there is no ``main`` or it
    returned nothing). ``stdout``/``stderr`` are kept on failure and timeout too (partial output).
    ``metadata`` holds provider-specific facts such as the runtime that ran the code.
    """

    status: ExecutionStatus = attrs.field(converter=ExecutionStatus)
    stdout: str = ""
    stderr: str = ""
    exit_code: int | None = None
    value: Any = None
    error: ErrorInfo | None = None
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    execution_time: float = 0.0
    provider: str = ""
    artifacts: tuple[Artifact, ...] = attrs.field(default=(), converter=_artifacts)
    metadata: Mapping[str, Any] = attrs.field(factory=dict)

    @property
    def ok(self) -> bool:
        """True when the code ran to completion without error."""
        return self.status is ExecutionStatus.SUCCESS

    def to_dict(self) -> dict[str, Any]:
        """The JSON form used by the CLI, the executor service and the admin API."""
        return {
            "status": self.status.value,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "exit_code": self.exit_code,
            "value": self.value,
            "error": self.error.to_dict() if self.error else None,
            "stdout_truncated": self.stdout_truncated,
            "stderr_truncated": self.stderr_truncated,
            "execution_time": self.execution_time,
            "provider": self.provider,
            "artifacts": [a.to_dict() for a in self.artifacts],
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExecutionResult:
        """Rebuild a result from :meth:`to_dict` output (e.g. an executor's HTTP response)."""
        error = data.get("error")
        return cls(
            status=ExecutionStatus(data["status"]),
            stdout=str(data.get("stdout") or ""),
            stderr=str(data.get("stderr") or ""),
            exit_code=data.get("exit_code"),
            value=data.get("value"),
            error=ErrorInfo.from_dict(error) if error else None,
            stdout_truncated=bool(data.get("stdout_truncated", False)),
            stderr_truncated=bool(data.get("stderr_truncated", False)),
            execution_time=float(data.get("execution_time") or 0.0),
            provider=str(data.get("provider") or ""),
            artifacts=tuple(Artifact.from_dict(a) for a in data.get("artifacts") or ()),
            metadata=dict(data.get("metadata") or {}),
        )

    @classmethod
    def provider_failure(cls, provider: str, message: str, **metadata: Any) -> ExecutionResult:
        """A result for when the provider, not the user code, failed (backend down, bad reply)."""
        return cls(
            status=ExecutionStatus.PROVIDER_ERROR,
            error=ErrorInfo(type="ProviderError", message=message),
            provider=provider,
            metadata=metadata,
        )


@attrs.frozen
class HealthStatus:
    """A provider's real ability to execute right now, as its ``health`` hook reports it."""

    healthy: bool
    message: str = ""
    latency: float | None = None
    details: Mapping[str, Any] = attrs.field(factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "message": self.message,
            "latency": self.latency,
            "details": dict(self.details),
        }


@attrs.frozen
class ProviderInfo:
    """What a provider says about itself for listings and the admin page."""

    description: str = ""
    languages: tuple[str, ...] = attrs.field(default=LANGUAGES, converter=_strings)
    tags: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    runtimes: bool = False
    """The provider honours ``ExecutionRequest.runtime`` (refusing names it does not know); when
    False the core refuses requests that name a runtime, so none is silently ignored."""
    sessions: bool = False
    """The provider implements the ``sandbox_session_*`` hooks (stateful sessions, their files);
    when False ``client.session()`` raises :class:`~sandbox_core.errors.NotSupportedError`."""
    files: bool = False
    """The provider puts ``ExecutionRequest.files`` into the working folder; when False the core
    refuses requests that carry files, so none is silently dropped."""
    streaming: bool = False
    """The provider calls ``sandbox_execute``'s ``on_output`` as output arrives; when False the core
    passes ``None`` there and emits the result's output as events once the execution is over."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "description": self.description,
            "languages": list(self.languages),
            "tags": list(self.tags),
            "sessions": self.sessions,
            "files": self.files,
        }
