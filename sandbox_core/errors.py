"""The error hierarchy of sandbox-core.

Every error the core raises on purpose derives from :class:`SandboxError` and carries a message a
user can act on. Callers that only want "did the sandbox layer fail" catch ``SandboxError``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import attrs


class SandboxError(Exception):
    """Base class of every error raised by sandbox-core and its providers."""


class ConfigurationError(SandboxError):
    """The settings are missing or inconsistent (no provider selected, unreadable row, ...)."""


class NoProviderSelectedError(ConfigurationError):
    """No active provider is recorded in the settings; the message says how to select one."""

    def __init__(self, installed: Iterable[str] = ()) -> None:
        names = ", ".join(sorted(installed)) or "none installed"
        super().__init__(
            "no sandbox provider is selected: run `sandbox config use NAME` "
            f"(installed providers: {names}) or set it in the admin page"
        )


class ConfigConflictError(ConfigurationError):
    """A config was changed by someone else since the caller read it; nothing was written."""


@attrs.frozen
class FieldProblem:
    """One reason a config was refused: the field it concerns (dotted path) and why."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class ConfigValidationError(ConfigurationError):
    """A provider config does not satisfy the provider's schema or its own checks."""

    def __init__(self, provider: str, problems: Sequence[FieldProblem]) -> None:
        self.provider = provider
        self.problems: tuple[FieldProblem, ...] = tuple(problems)
        details = "; ".join(str(p) for p in self.problems)
        super().__init__(f"invalid config for provider {provider!r}: {details}")

    @property
    def fields(self) -> tuple[str, ...]:
        """The names of the fields that were refused, in order."""
        return tuple(p.field for p in self.problems)


class ProviderError(SandboxError):
    """A provider failed in a way that is not the user code's fault."""


class ProviderNotFoundError(ProviderError):
    """The requested provider is not installed (or was disabled)."""

    def __init__(self, name: str, available: Iterable[str]) -> None:
        self.name = name
        self.available = tuple(sorted(available))
        choices = ", ".join(self.available) or "none are installed"
        super().__init__(
            f"unknown sandbox provider {name!r}: choose one of: {choices}; "
            "is the package that provides it installed?"
        )


class ProviderDisabledError(ProviderNotFoundError):
    """The requested provider is installed but switched off; the message says by what."""

    def __init__(self, name: str, available: Iterable[str], disabled_by: str) -> None:
        super().__init__(name, available)
        self.disabled_by = disabled_by
        choices = ", ".join(self.available) or "none"
        self.args = (
            f"sandbox provider {name!r} is disabled by {disabled_by}; remove it from there to use it "
            f"(enabled providers: {choices})",
        )


class ProviderLoadError(ProviderError):
    """A provider's entry point could not be imported or registered."""

    state = "broken"

    def __init__(self, name: str, package: str, version: str, error: str) -> None:
        self.name = name
        self.package = package
        self.version = version
        self.error = error
        super().__init__(f"sandbox provider {name!r} from {package} {version} is {self.state}: {error}")


class ProviderIncompatibleError(ProviderLoadError):
    """A provider's package requires a sandbox-core version other than the one installed."""

    state = "incompatible"


class PluginLoadError(ProviderError):
    """A cross-cutting plugin (audit, metrics, policy) could not be imported or registered."""

    def __init__(self, name: str, package: str, version: str, error: str) -> None:
        self.name = name
        self.package = package
        self.version = version
        self.error = error
        super().__init__(f"sandbox plugin {name!r} from {package} {version} is broken: {error}")


class RequiredPluginError(ProviderError):
    """A plugin named in ``SANDBOX_REQUIRED_PLUGINS`` is not working, so nothing may run."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"required sandbox plugin {name!r} {reason}; executions are refused until it works")


class ProviderContractError(ProviderError):
    """A provider's hook returned something other than what its hook specification promises."""

    def __init__(self, provider: str, hook: str, value: object, expected: str) -> None:
        self.provider = provider
        self.hook = hook
        self.expected = expected
        got = "None" if value is None else f"a {type(value).__name__}"
        super().__init__(f"provider {provider!r} returned {got} from {hook}, expected {expected}")


class DuplicateProviderError(ProviderError):
    """Two installed packages declare a provider under the same name."""

    def __init__(self, name: str, packages: Sequence[str]) -> None:
        self.name = name
        self.packages = tuple(packages)
        super().__init__(
            f"sandbox provider name {name!r} is declared by more than one package: "
            f"{' and '.join(self.packages)}; uninstall one or disable it with "
            "SANDBOX_DISABLED_PLUGINS"
        )


class ProviderUnavailableError(ProviderError):
    """The provider's backend cannot be reached or refused the work (after retries)."""


class NotSupportedError(SandboxError):
    """The provider in use lacks a capability the call needs (sessions, input files, ...)."""

    def __init__(self, provider: str, capability: str) -> None:
        self.provider = provider
        self.capability = capability
        super().__init__(
            f"not supported by provider {provider!r}: {capability}; "
            "use a provider that declares this capability (see `sandbox providers --json`)"
        )


class SessionGoneError(SandboxError):
    """A session no longer exists: closed, expired, ended by a memory kill or by a backend restart.

    Its state and files are lost; open a new session to go on.
    """
