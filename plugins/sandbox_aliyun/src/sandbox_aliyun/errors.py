"""Errors of the Aliyun provider, all under sandbox-core's :class:`~sandbox_core.errors.SandboxError`.

They never reach the caller as exceptions from ``sandbox_execute``: the provider turns each into a
``provider_error`` result (or an unhealthy status) whose message is the error's text, tagged
with the class's :class:`~sandbox_core.failures.FailureKind` (``kind``). Messages
name the access key id, region and endpoint when that helps, and never the access key secret.
"""

from __future__ import annotations

from sandbox_core.errors import ProviderError
from sandbox_core.failures import FailureKind


class AliyunProviderError(ProviderError):
    """Base class: AgentRun could not run the code, through no fault of the code."""

    kind = FailureKind.INTERNAL


class AccessKeyRejectedError(AliyunProviderError):
    """AgentRun refused the request's signature: wrong key id or secret, or no permission."""

    kind = FailureKind.AUTH


class BackendUnreachableError(AliyunProviderError):
    """The AgentRun data endpoint could not be reached (DNS, connection refused, TLS, timeout)."""

    kind = FailureKind.UNAVAILABLE


class ThrottledError(AliyunProviderError):
    """AgentRun kept refusing requests under flow control (HTTP 429), even after backing off."""

    kind = FailureKind.THROTTLED


class TemplateNotFoundError(AliyunProviderError):
    """The configured code-interpreter template does not exist in the account and region."""

    kind = FailureKind.BAD_CONFIG


class BackendRefusedError(AliyunProviderError):
    """AgentRun answered with an error that is none of the above (quota, server error, ...)."""


class ResourceGoneError(BackendRefusedError):
    """AgentRun answered 404: the sandbox, context or file named is not there (deleted, expired)."""


class NoResultError(AliyunProviderError):
    """The interpreter answered, but without the bootstrap's result (it was killed or failed).

    The code's outcome is unknown, as when a sandbox vanishes under it.
    """

    kind = FailureKind.LOST


class JobNotRunError(AliyunProviderError):
    """The bootstrap ran but could not start the job (it reported why in its envelope)."""


class MissingInterpreterError(JobNotRunError):
    """The template has no interpreter for the job's language (no ``node``, say)."""

    kind = FailureKind.BAD_CONFIG
