"""sandbox-core: run untrusted code through pluggable, secure sandbox providers.

For agents and applications: :func:`execute_code` / :func:`aexecute_code` and
:class:`SandboxClient` (module :mod:`sandbox_core.client`), returning :class:`ExecutionResult`
(:mod:`sandbox_core.model`), output events while code runs in :mod:`sandbox_core.streaming`. For provider authors: :data:`hookimpl` and the hook specifications in
:mod:`sandbox_core.hookspecs`, config schemas in :mod:`sandbox_core.schema`, the runner protocol in
:mod:`sandbox_core.runner` and the conformance kit in :mod:`sandbox_core.testing`. Errors derive
from :class:`SandboxError` (:mod:`sandbox_core.errors`).

Importing this package loads no provider, no SDK and no database driver: the client and the
settings store are imported when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sandbox_core.errors import (
    ConfigurationError,
    ConfigValidationError,
    FieldProblem,
    NoProviderSelectedError,
    ProviderError,
    ProviderNotFoundError,
    ProviderUnavailableError,
    SandboxError,
)
from sandbox_core.hookspecs import hookimpl
from sandbox_core.model import (
    Artifact,
    ErrorInfo,
    ExecutionRequest,
    ExecutionResult,
    ExecutionStatus,
    HealthStatus,
    ProviderInfo,
)
from sandbox_core.streaming import OutputEvent

if TYPE_CHECKING:
    from sandbox_core.client import SandboxClient, aexecute_code, execute_code

__all__ = [
    "Artifact",
    "ConfigValidationError",
    "ConfigurationError",
    "ErrorInfo",
    "ExecutionRequest",
    "ExecutionResult",
    "ExecutionStatus",
    "FieldProblem",
    "HealthStatus",
    "NoProviderSelectedError",
    "OutputEvent",
    "ProviderError",
    "ProviderInfo",
    "ProviderNotFoundError",
    "ProviderUnavailableError",
    "SandboxClient",
    "SandboxError",
    "aexecute_code",
    "execute_code",
    "hookimpl",
]

_LAZY = {"SandboxClient", "execute_code", "aexecute_code"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from sandbox_core import client

        return getattr(client, name)
    raise AttributeError(f"module 'sandbox_core' has no attribute {name!r}")
