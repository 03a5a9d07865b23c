"""Test support for provider authors: the conformance kit and in-process provider fixtures.

- :class:`ProviderConformance` — subclass it in your provider's tests (see
  :mod:`sandbox_core.testing.conformance`).
- pytest fixtures ``sandbox_registry``, ``register_provider`` and ``sandbox_settings`` (loaded
  automatically as a pytest plugin when sandbox-core is installed) to register providers defined in
  a test and use a throw-away settings database, without installing anything.
- :class:`UnsandboxedSubprocessProvider` — a provider with no isolation, for tests only.
"""

from __future__ import annotations

from sandbox_core.testing.conformance import ProviderConformance
from sandbox_core.testing.local import UnsandboxedSubprocessProvider

__all__ = ["ProviderConformance", "UnsandboxedSubprocessProvider"]
