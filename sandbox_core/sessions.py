"""Stateful sessions: an interpreter that keeps its names and files from one execution to the next.

For users: :meth:`SandboxClient.session <sandbox_core.client.SandboxClient.session>` opens one.
For provider authors: the records that cross the ``sandbox_session_*`` hooks, :class:`SessionSpec`
(what the caller asked for) and :class:`FileInfo` (one file of a session's working folder).
File names follow the rules of :mod:`sandbox_core.files`, re-exported here.
"""

from __future__ import annotations

import math
from typing import Any

import attrs

from sandbox_core.files import MAX_FILE_BYTES, check_data, check_files, check_path
from sandbox_core.model import _check_language, _normalize_language

__all__ = [
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_MAX_LIFETIME",
    "MAX_FILE_BYTES",
    "FileInfo",
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
