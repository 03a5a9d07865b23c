"""``mypy --strict`` passes on the core package and the provider plugins' sources.

The files checked and the strictness come from ``[tool.mypy]`` in the root ``pyproject.toml``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_mypy_strict_passes(tmp_path_factory: pytest.TempPathFactory) -> None:
    # A private cache: other checkouts or test runs may be using the default .mypy_cache.
    cache_dir = tmp_path_factory.mktemp("mypy_cache")
    command = [
        sys.executable,
        "-m",
        "mypy",
        "--config-file",
        str(ROOT / "pyproject.toml"),
        "--cache-dir",
        str(cache_dir),
    ]
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, f"mypy failed (exit {completed.returncode}):\n{output}"
