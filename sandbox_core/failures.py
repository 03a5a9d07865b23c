"""What kind of provider failure a ``provider_error`` result reports, and when a retry makes sense.

Every provider fails in its own words; callers need one vocabulary to decide what to do (fix the
key, wait, retry now, call an operator). A provider builds its ``provider_error`` results with
:func:`provider_failure`, which records ``metadata["failure"] = {"kind": ..., "retry_after": ...}``:

- ``kind`` is one of :class:`FailureKind`'s values;
- ``retry_after`` is seconds to wait before trying again, or ``None`` when the provider has no
  advice (for ``auth`` and ``bad_config`` a retry does not help until someone changes the config).

:func:`failure_of` reads it back from any result (``None`` when there is none), including results
rebuilt from JSON.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import attrs

from sandbox_core.model import ExecutionResult, ExecutionStatus


class FailureKind(str, enum.Enum):
    """Why the provider, not the user code, failed."""

    AUTH = "auth"
    """The backend refused the credentials (rejected, expired, lacking a permission)."""
    THROTTLED = "throttled"
    """The account is rate limited or out of quota; wait ``retry_after`` or run fewer at once."""
    UNAVAILABLE = "unavailable"
    """The backend cannot be reached, is out of capacity, or did not answer in time."""
    LOST = "lost"
    """The sandbox ended or vanished while the code ran; its outcome is unknown."""
    BAD_CONFIG = "bad_config"
    """The config names something the backend does not have or cannot do (template, region, language)."""
    INTERNAL = "internal"
    """Anything else: an unexpected answer, a failure of the provider itself."""


@attrs.frozen
class Failure:
    """One provider failure's kind and retry advice, as recorded in a result's metadata."""

    kind: FailureKind = attrs.field(converter=FailureKind)
    retry_after: float | None = attrs.field(default=None, converter=attrs.converters.optional(float))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "retry_after": self.retry_after}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Failure:
        return cls(kind=data["kind"], retry_after=data.get("retry_after"))


def provider_failure(
    provider: str,
    message: str,
    kind: FailureKind | str,
    *,
    retry_after: float | None = None,
    **metadata: Any,
) -> ExecutionResult:
    """A ``provider_error`` result saying ``message``, tagged with its failure kind.

    ``metadata`` holds the provider's other facts (endpoint, sandbox id, ...); ``failure`` is set
    here and nowhere else.
    """
    failure = Failure(kind, retry_after)
    return ExecutionResult.provider_failure(provider, message, **metadata, failure=failure.to_dict())


def failure_of(result: ExecutionResult) -> Failure | None:
    """The failure a ``provider_error`` result records, or ``None`` (another status, or untagged)."""
    data = result.metadata.get("failure")
    if result.status is not ExecutionStatus.PROVIDER_ERROR or not isinstance(data, Mapping):
        return None
    try:
        return Failure.from_dict(data)
    except (KeyError, ValueError, TypeError):
        return None
