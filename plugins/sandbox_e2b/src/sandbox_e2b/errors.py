"""What went wrong with E2B, in words an operator can act on.

The E2B SDK raises its own exceptions (several of them outside its ``SandboxException`` base) and
the HTTP stack under it raises others when E2B cannot be reached. :func:`describe` turns any of
them into one message and a failure kind (sandbox-core's vocabulary, :mod:`sandbox_core.failures`)
for a ``provider_error`` result or an unhealthy status, and :class:`E2BUnavailableError` carries
them where an exception is needed. Messages never
contain the API key: the SDK does not put it in its errors, and :func:`describe` scrubs every
secret of the config anyway, in case a server echoes it.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from sandbox_core.errors import ProviderUnavailableError
from sandbox_core.failures import Failure, FailureKind
from sandbox_core.redaction import scrub

RATE_LIMIT_RETRY_SECONDS = 5.0


class E2BUnavailableError(ProviderUnavailableError):
    """E2B could not be used (rejected key, unreachable, rate limited, refused the sandbox)."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


@attrs.frozen
class Problem:
    """One failure of E2B: what to tell the operator, its kind, and when a retry makes sense."""

    message: str
    kind: FailureKind
    retry_after: float | None = None

    @property
    def failure(self) -> Failure:
        return Failure(self.kind, self.retry_after)


def _is_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is a failure to connect rather than an answer from E2B."""
    import httpx

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (httpx.ConnectError, httpx.ConnectTimeout, ConnectionError)):
            return True
        current = current.__cause__ or current.__context__
    return False


def describe(exc: BaseException, *, action: str, secrets: Iterable[str] = ()) -> Problem:
    """Explain ``exc``, raised by the E2B SDK while doing ``action`` (e.g. "creating a sandbox")."""
    from e2b import (
        AuthenticationException,
        NotFoundException,
        RateLimitException,
        SandboxNotRunningException,
        SandboxUnreachableException,
        ServiceBusyException,
        TimeoutException,
    )

    secrets = list(secrets)
    detail = scrub(f"{type(exc).__name__}: {exc}", secrets)
    if isinstance(exc, AuthenticationException):
        return Problem(
            "E2B rejected the API key: set a valid key in the e2b config's api_key "
            f"(`sandbox config set e2b --from-env` reads E2B_API_KEY) [{action}]",
            FailureKind.AUTH,
        )
    if isinstance(exc, RateLimitException):
        return Problem(
            f"E2B is rate limiting this account (HTTP 429) while {action}: retry in "
            f"{RATE_LIMIT_RETRY_SECONDS:g} seconds or more, or run fewer executions at once",
            FailureKind.THROTTLED,
            retry_after=RATE_LIMIT_RETRY_SECONDS,
        )
    if isinstance(exc, ServiceBusyException):
        return Problem(
            f"E2B is temporarily out of capacity (HTTP 503) while {action}: retry in a few seconds",
            FailureKind.UNAVAILABLE,
            retry_after=RATE_LIMIT_RETRY_SECONDS,
        )
    if _is_unreachable(exc):
        return Problem(
            f"E2B could not be reached while {action} ({detail}): check the network, "
            "and the domain/api_url/sandbox_url settings",
            FailureKind.UNAVAILABLE,
        )
    # The code-interpreter SDK reports a sandbox that ended under a request, or one its proxy no
    # longer finds (HTTP 502), as a TimeoutException; only the wording tells them from a deadline.
    lost_words = ("sandbox was killed", "due to sandbox timeout")
    killed = isinstance(exc, TimeoutException) and any(words in str(exc) for words in lost_words)
    if killed or isinstance(exc, (SandboxNotRunningException, SandboxUnreachableException)):
        return Problem(f"the E2B sandbox stopped or became unreachable while {action} ({detail})", FailureKind.LOST)
    if isinstance(exc, TimeoutException):
        return Problem(
            f"E2B did not answer in time while {action} ({detail}): raise request_timeout or retry",
            FailureKind.UNAVAILABLE,
        )
    status = getattr(exc, "status_code", None)
    if (isinstance(exc, NotFoundException) or status == 404) and "template" in str(exc).lower():
        return Problem(f"E2B does not know the configured template ({detail}): check the e2b config's template", FailureKind.BAD_CONFIG)
    return Problem(f"E2B failed while {action} ({detail})", FailureKind.INTERNAL)
