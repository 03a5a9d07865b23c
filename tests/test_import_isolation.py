"""``import sandbox_core`` imports no provider and no SDK; executing imports exactly one provider.

These run a fresh interpreter of the project's environment (the one running the tests) with the
fake provider site on ``PYTHONPATH``, so nothing this test process imported can hide an import.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

from core_support import FAKE_PREFIX, FakeSite

from sandbox_core.hookspecs import PLUGIN_GROUP, PROVIDER_GROUP

HEAVY = {
    # services and their stacks (the admin API and the executor are optional extras)
    "fastapi", "starlette", "uvicorn", "pydantic",
    # HTTP client (a core dependency, for providers that talk to a backend; never at import)
    "httpx", "httpcore", "anyio",
    # the settings store and database drivers
    "peewee", "psycopg2", "pymysql",
    # provider SDKs and the providers shipped in this repository
    "e2b", "e2b_code_interpreter", "agentrun", "sandbox_selfmanaged", "sandbox_aliyun", "sandbox_e2b",
    # only needed when a config is validated
    "jsonschema",
}


def _run(code: str, site: FakeSite, tmp_path: Path, *options: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("SANDBOX_")}
    env["PYTHONPATH"] = str(site.root)
    env["SANDBOX_DATABASE_URL"] = f"sqlite:///{tmp_path / 'settings.db'}"
    process = subprocess.run(
        [sys.executable, *options, "-c", code], capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path
    )
    assert process.returncode == 0, process.stderr
    return process


def _provider_modules() -> set[str]:
    """Top-level modules of every provider and plugin entry point visible now (real ones too)."""
    modules = set()
    for group in (PROVIDER_GROUP, PLUGIN_GROUP):
        for entry_point in importlib.metadata.entry_points(group=group):
            modules.add(entry_point.value.split(":")[0].split(".")[0])
    modules.discard("sandbox_core")
    return modules


def _top_levels(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def test_import_sandbox_core_imports_no_provider_sdk_or_database(standard_site: FakeSite, tmp_path: Path) -> None:
    probe = "import json, sys\nimport sandbox_core\nprint(json.dumps(sorted(sys.modules)))\n"
    process = _run(probe, standard_site, tmp_path, "-X", "importtime")
    loaded = set(json.loads(process.stdout))
    timed = {
        line.split("|")[-1].strip()
        for line in process.stderr.splitlines()
        if line.startswith("import time:") and "|" in line and "imported package" not in line
    }
    # The probe really saw the imports (or this test could pass while checking nothing).
    assert {"sandbox_core", "sandbox_core.errors", "pluggy"} <= loaded
    assert {"sandbox_core", "pluggy"} <= timed
    forbidden = HEAVY | _provider_modules()
    assert "fakeprov_alpha" in forbidden
    for seen in (loaded, timed):
        assert not _top_levels(seen) & forbidden
        assert not {m for m in seen if m.startswith(FAKE_PREFIX)}
        assert "sandbox_core.settings" not in seen and "sandbox_core.client" not in seen


def test_executing_imports_only_the_selected_provider(standard_site: FakeSite, tmp_path: Path) -> None:
    probe = (
        "import json, sys\n"
        "from sandbox_core import execute_code\n"
        "from sandbox_core.settings import SettingsStore\n"
        "with SettingsStore() as store:\n"
        "    store.save_provider_config('alpha', {'greeting': 'from settings'}, activate=True)\n"
        "result = execute_code('print(1)')\n"
        "print(json.dumps({'stdout': result.stdout, 'modules': sorted(sys.modules)}))\n"
    )
    outcome = json.loads(_run(probe, standard_site, tmp_path).stdout)
    assert outcome["stdout"] == "alpha:from settings"
    loaded = set(outcome["modules"])
    assert {m for m in loaded if m.startswith(FAKE_PREFIX)} == {"fakeprov_alpha"}
    others = _provider_modules() - {"fakeprov_alpha"}
    assert not _top_levels(loaded) & (others | {"fastapi", "uvicorn", "e2b", "agentrun", "httpx"})
