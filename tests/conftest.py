"""Shared fixtures of the core's tests: fake installed provider distributions and in-test providers."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from core_support import STANDARD_PROVIDERS, FakeSite, forget_fake_modules, provider_module

pytest_plugins = ["pytester"]


def pytest_report_header() -> str | None:
    """Whether the self-managed provider's gVisor tests can run here (decided by its runsc_platform)."""
    try:
        from sandbox_selfmanaged.runsc_platform import check_gvisor
    except ImportError:
        return None
    return f"gVisor: {check_gvisor().describe()}"


@pytest.fixture
def fake_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSite]:
    """An empty fake site-packages folder on ``sys.path`` (add distributions with ``.add``)."""
    site = FakeSite(tmp_path / "site")
    monkeypatch.syspath_prepend(str(site.root))
    monkeypatch.delenv("SANDBOX_DISABLED_PLUGINS", raising=False)
    monkeypatch.delenv("SANDBOX_PLUGINS_STRICT", raising=False)
    forget_fake_modules()
    importlib.invalidate_caches()
    yield site
    forget_fake_modules()
    importlib.invalidate_caches()


@pytest.fixture
def standard_site(fake_site: FakeSite) -> FakeSite:
    """The fake site with :data:`STANDARD_PROVIDERS` and two packages that both declare ``twin``."""
    for name, (package, version, module, source, requires) in STANDARD_PROVIDERS.items():
        fake_site.add(
            package,
            version,
            entry_points={name: module},
            modules={module: source},
            requires=requires,
            summary=f"The {name} fake provider",
        )
    fake_site.add("fake-twin-one", "1.0", entry_points={"twin": "fakeprov_twin_one"},
                  modules={"fakeprov_twin_one": provider_module("twin_one")})
    fake_site.add("fake-twin-two", "3.0", entry_points={"twin": "fakeprov_twin_two"},
                  modules={"fakeprov_twin_two": provider_module("twin_two")})
    importlib.invalidate_caches()
    return fake_site


@pytest.fixture
def local_provider() -> Any:
    from sandbox_core.testing import UnsandboxedSubprocessProvider

    return UnsandboxedSubprocessProvider()
