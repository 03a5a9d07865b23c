"""pytest fixtures shipped with sandbox-core (registered through the ``pytest11`` entry point).

This module is imported by every pytest run in an environment where sandbox-core is installed,
so it imports nothing heavy at module level.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from sandbox_core.registry import ProviderRegistry
    from sandbox_core.settings import SettingsStore


@pytest.fixture
def sandbox_registry(monkeypatch: pytest.MonkeyPatch) -> ProviderRegistry:
    """An empty provider registry installed as the process default for the test's duration.

    ``execute_code()``, the CLI and ``SandboxClient()`` all see it; installed entry points are not
    read, so only providers the test registers exist.
    """
    from sandbox_core import client, registry

    fresh = registry.ProviderRegistry(discover=False)
    monkeypatch.setattr(registry, "_default_registry", fresh)
    monkeypatch.setattr(client, "_default_client", None)
    return fresh


@pytest.fixture
def register_provider(sandbox_registry: ProviderRegistry) -> Callable[[str, object], object]:
    """Register an in-test provider under a name: ``register_provider("fake", FakeProvider())``."""

    def register(name: str, plugin: object) -> object:
        sandbox_registry.register(name, plugin)
        return plugin

    return register


@pytest.fixture
def sandbox_settings(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[SettingsStore]:
    """A settings store on a fresh SQLite file, also exported as ``SANDBOX_DATABASE_URL``."""
    from sandbox_core import client
    from sandbox_core.settings import SettingsStore

    url = f"sqlite:///{tmp_path_factory.mktemp('sandbox-settings') / 'settings.db'}"
    monkeypatch.setenv("SANDBOX_DATABASE_URL", url)
    monkeypatch.setattr(client, "_default_client", None)
    store = SettingsStore(url)
    yield store
    store.close()
