"""Errors of the self-managed provider and its executor, all under sandbox-core's ``SandboxError``."""

from __future__ import annotations

from sandbox_core.errors import (
    ConfigurationError,
    ProviderUnavailableError,
    SandboxError,
)


class ExecutorError(SandboxError):
    """Base class of errors raised by the sandbox-executor's engine."""


class RuntimeMissingError(ExecutorError, ConfigurationError):
    """A program the engine needs (runsc, an interpreter) is not installed where it was told to look."""


class SandboxBootError(ExecutorError):
    """gVisor could not start a sandbox; the message carries what runsc said."""


class SandboxUnavailableError(ExecutorError, ProviderUnavailableError):
    """No sandbox could be had for an execution (boots failing, or none ready in time)."""

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ExecutionCancelled(ExecutorError):
    """The execution was stopped before its end because its caller gave up (the client left)."""


class LimitError(ExecutorError, ValueError):
    """A requested limit is invalid or above the operator's maximum; names the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message


class EgressPolicyError(ExecutorError, ValueError):
    """An egress allowlist is malformed, or a request asked for more than the operator's maximum."""


class EgressRefused(ExecutorError):
    """One connection attempt from a sandbox was refused; ``reason`` says why, for logs and metadata."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
