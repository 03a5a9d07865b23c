"""Test support for provider authors: the conformance kit and in-process provider fixtures.

- :class:`ProviderConformance` — subclass it in your provider's tests (see
  :mod:`sandbox_core.testing.conformance`).
- :class:`ProviderIsolation` — the isolation profile, a second kit class to opt into: attacks the
  sandbox must stop (see :mod:`sandbox_core.testing.isolation`, which also holds
  :func:`check_isolation`, the engine of ``sandbox check-isolation``).
- pytest fixtures ``sandbox_registry``, ``register_provider`` and ``sandbox_settings`` (loaded
  automatically as a pytest plugin when sandbox-core is installed) to register providers defined in
  a test and use a throw-away settings database, without installing anything.
- :class:`SessionConformance` — session tests to mix into your conformance class when the provider
  declares ``sessions=True`` (see :mod:`sandbox_core.testing.session_conformance`).
- :class:`UnsandboxedSubprocessProvider` — a provider with no isolation, for tests only.
"""

from __future__ import annotations

from sandbox_core.testing.conformance import ProviderConformance
from sandbox_core.testing.isolation import Bounds, ProviderIsolation, check_isolation
from sandbox_core.testing.local import UnsandboxedSubprocessProvider
from sandbox_core.testing.session_conformance import SessionConformance

__all__ = [
    "Bounds",
    "ProviderConformance",
    "ProviderIsolation",
    "SessionConformance",
    "UnsandboxedSubprocessProvider",
    "check_isolation",
]
