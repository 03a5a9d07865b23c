"""The one timeout rule of the core: which seconds an execution gets, and what its result says.

- A request without a timeout (``None``) gets the provider's default.
- A request over the provider's maximum is **capped** to it (never refused): the result's
  ``metadata["timeout_clamped"]`` says what was asked, what was applied and why.
- Every result carries the seconds the execution got in ``metadata["timeout"]``.

A provider declares its default and maximum in :attr:`ProviderInfo.timeouts
<sandbox_core.model.ProviderInfo.timeouts>`, as fixed values (a backend's hard limit) and/or as the
names of config keys an operator sets. The client applies the rule before the provider's
``sandbox_execute`` is called, so providers reached through it always see a number;
:func:`request_seconds` covers a hook called directly with no timeout.

For provider authors and the client; users only meet the metadata.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from sandbox_core.model import ExecutionRequest

DEFAULT_TIMEOUT = 30.0
"""Seconds of wall-clock time an execution gets when neither the caller nor the provider says."""


def _check_seconds(_instance: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{attribute.name}: must be a finite, positive number of seconds, got {value!r}")


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


@attrs.frozen
class TimeoutSettings:
    """A provider's timeout default and maximum (see the module docstring for the rule).

    :param default: seconds for a request that names none, unless ``default_setting`` is set in
        the config.
    :param default_setting: config key holding an operator's default (wins over ``default``).
    :param maximum: the backend's hard limit of one execution, or None for no limit.
    :param maximum_reason: why ``maximum`` exists, shown in ``timeout_clamped`` (e.g. "AgentRun
        stops every execution after 30s").
    :param maximum_setting: config key holding an operator's maximum (the lower of the two applies).
    """

    default: float = attrs.field(default=DEFAULT_TIMEOUT, converter=float, validator=_check_seconds)
    default_setting: str | None = None
    maximum: float | None = attrs.field(default=None, converter=_optional_float, validator=_check_seconds)
    maximum_reason: str = ""
    maximum_setting: str | None = None


@attrs.frozen
class EffectiveTimeout:
    """The seconds one execution gets, what the caller asked for, and why it got less (if it did)."""

    seconds: float
    requested: float | None = None
    reason: str | None = None
    """Set only when the request was capped: the limit that applied."""

    def metadata(self) -> dict[str, Any]:
        """``{"timeout": seconds}``, plus ``timeout_clamped`` when the request was capped."""
        meta: dict[str, Any] = {"timeout": self.seconds}
        if self.reason is not None:
            meta["timeout_clamped"] = {"requested": self.requested, "applied": self.seconds, "reason": self.reason}
        return meta


def _configured(config: Mapping[str, Any], key: str | None) -> float | None:
    value = config.get(key) if key else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else None


def _maximum(settings: TimeoutSettings, config: Mapping[str, Any]) -> tuple[float, str] | None:
    """The lowest maximum that applies and the reason a capped result gives for it."""
    limits: list[tuple[float, str]] = []
    if settings.maximum is not None:
        limits.append((settings.maximum, settings.maximum_reason or f"the provider allows at most {settings.maximum:g}s"))
    configured = _configured(config, settings.maximum_setting)
    if configured is not None:
        limits.append((configured, f"the provider's {settings.maximum_setting} setting is {configured:g}s"))
    return min(limits, key=lambda limit: limit[0]) if limits else None


def effective_timeout(requested: float | None, settings: TimeoutSettings, config: Mapping[str, Any]) -> EffectiveTimeout:
    """Apply the rule: ``requested`` (None: the provider's default), capped at the provider's maximum."""
    maximum = _maximum(settings, config)
    if requested is None:
        default = _configured(config, settings.default_setting) or settings.default
        return EffectiveTimeout(seconds=min(default, maximum[0]) if maximum else default)
    if maximum is not None and requested > maximum[0]:
        return EffectiveTimeout(seconds=maximum[0], requested=requested, reason=maximum[1])
    return EffectiveTimeout(seconds=requested, requested=requested)


def request_seconds(request: ExecutionRequest, default: float = DEFAULT_TIMEOUT) -> float:
    """The request's timeout, or ``default`` when it has none (a hook called without the client)."""
    return request.timeout if request.timeout is not None else default
