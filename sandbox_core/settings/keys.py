"""The names of the settings rows, and the checks that keep writes to them sane."""

from __future__ import annotations

import re

from sandbox_core.errors import ConfigurationError
from sandbox_core.settings.model import NAME_MAX_LENGTH

PREFIX = "sandbox."
PROVIDER_TYPE = "sandbox.provider_type"
"""String row: the name of the active provider."""
AUDIT = "sandbox.audit"
"""JSON row: ``{"enabled": bool, "path": str | null}``."""
VERSION = "sandbox.settings_version"
"""Integer row bumped by every write, so caches can tell cheaply whether anything changed."""

DATA_TYPES = ("string", "json", "integer", "boolean")

# Rows under the prefix that are not provider configs: no provider may be named like them.
_NOT_PROVIDERS = frozenset(name[len(PREFIX) :] for name in (PROVIDER_TYPE, AUDIT, VERSION))
# Entry-point names of providers in practice ("self_managed", "e2b"); no dots, so that a
# provider's row can never be confused with a nested setting.
_PROVIDER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")


def check_name(name: str) -> str:
    """``name`` if it can be a row name, else :class:`ConfigurationError` saying why."""
    if not isinstance(name, str) or not name or name != name.strip():
        raise ConfigurationError(
            f"bad setting name {name!r}: it must be a non-empty string without surrounding spaces"
        )
    if len(name) > NAME_MAX_LENGTH:
        raise ConfigurationError(
            f"setting name {name[:40]!r}... is {len(name)} characters long; the limit is {NAME_MAX_LENGTH}"
        )
    return name


def check_writable(name: str) -> str:
    """``name`` if callers may write or delete it; the version counter belongs to the store."""
    check_name(name)
    if name == VERSION:
        raise ConfigurationError(f"{VERSION} is maintained by the settings store and cannot be written")
    return name


def check_provider_name(provider: str) -> str:
    """``provider`` if it is a usable provider name, else :class:`ConfigurationError`."""
    if not isinstance(provider, str) or not _PROVIDER_NAME.fullmatch(provider):
        raise ConfigurationError(
            f"bad provider name {provider!r}: use letters, digits, '_' and '-' (e.g. 'self_managed')"
        )
    if provider in _NOT_PROVIDERS:
        raise ConfigurationError(f"{provider!r} is a reserved settings name, not a provider name")
    return provider


def provider_row(provider: str) -> str:
    """The name of the row holding ``provider``'s config: ``sandbox.<provider>``."""
    return check_name(PREFIX + check_provider_name(provider))


def provider_of_row(name: str) -> str | None:
    """The provider whose config row ``name`` is, or None for any other row."""
    if not name.startswith(PREFIX):
        return None
    candidate = name[len(PREFIX) :]
    if candidate in _NOT_PROVIDERS or not _PROVIDER_NAME.fullmatch(candidate):
        return None
    return candidate
