"""``ruff check`` reports nothing on the repository (style, pyflakes and import order).

The rules, the line length and the import sections come from ``[tool.ruff]`` in the root ``pyproject.toml``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_check_passes() -> None:
    # --no-cache: other checkouts or test runs may share the folder, and a test should leave no .ruff_cache behind.
    command = [
        sys.executable,
        "-m",
        "ruff",
        "check",
        "--config",
        str(ROOT / "pyproject.toml"),
        "--no-cache",
        str(ROOT),
    ]
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, f"ruff check failed (exit {completed.returncode}):\n{output}"
