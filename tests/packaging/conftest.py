"""Fixtures of the packaging tests: the distributions, built once per session by the documented command."""

from __future__ import annotations

from pathlib import Path

import pytest
from dists_support import Built, build_all


@pytest.fixture(scope="session")
def wheel_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dists")


@pytest.fixture(scope="session")
def built(wheel_dir: Path) -> dict[str, Built]:
    """Every distribution of the repository, built with ``bash scripts/build-dists.sh`` (once)."""
    return build_all(wheel_dir)
