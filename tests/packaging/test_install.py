"""Installed from their wheels into a fresh virtual environment, the packages work as a user gets them.

No editable install and no workspace: ``uv pip install --find-links <built wheels>`` with our
packages pinned to the versions just built (their dependencies come from the package index), into
a venv of this interpreter, with the settings in a throw-away SQLite file. One venv serves every
step, so the whole module takes a few seconds once uv's cache is warm.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from dists_support import CORE, Built, Venv, installed_metadata, projects

PROVIDER_OF = {p.name: sorted(p.providers) for p in projects() if p.providers}
# sandbox-e2b is the primary case: a SaaS provider whose SDK must stay out of `import sandbox_core`.
FIRST = next((n for n in ("sandbox-e2b", "sandbox-selfmanaged", "sandbox-aliyun") if n in PROVIDER_OF), None)
# The plugin installed, then removed, next to FIRST.
SECOND = next((n for n in ("sandbox-selfmanaged", "sandbox-aliyun", "sandbox-e2b") if n in PROVIDER_OF and n != FIRST), None)
SDK_MODULES = {
    "e2b", "e2b_code_interpreter", "agentrun", "alibabacloud_tea_openapi",
    "fastapi", "starlette", "uvicorn", "pydantic", "httpx", "peewee",
    *(name.replace("-", "_") for name in PROVIDER_OF),
}  # fmt: skip

pytestmark = pytest.mark.skipif(FIRST is None, reason="no plugin in plugins/ declares a provider")


def pinned(dist: Built) -> str:
    return f"{dist.name}=={dist.version}"


@pytest.fixture(scope="module")
def user_venv(tmp_path_factory: pytest.TempPathFactory, wheel_dir: Path, built: dict[str, Built]) -> Iterator[Venv]:
    """A fresh venv with ``pip install sandbox-core <first plugin>`` done from the built wheels."""
    assert FIRST is not None
    venv = Venv(tmp_path_factory.mktemp("user") / "venv", wheel_dir)
    venv.install(pinned(built[CORE]), pinned(built[FIRST]))
    yield venv


def providers(venv: Venv) -> list[dict[str, object]]:
    """The installed providers ``sandbox providers --json`` lists.

    The settings' default selection (self_managed) is listed too while it is not installed, as
    ``not_installed``; it is left out here.
    """
    process = venv.run("sandbox", "providers", "--json")
    assert process.returncode == 0, process.stderr
    rows: list[dict[str, object]] = json.loads(process.stdout)
    missing = [row for row in rows if row["status"] == "not_installed"]
    assert all(row["active"] and row["package"] is None for row in missing), missing
    return [row for row in rows if row not in missing]


def test_installed_packages_are_the_built_ones(user_venv: Venv, built: dict[str, Built]) -> None:
    assert FIRST is not None
    for name in (CORE, FIRST):
        assert installed_metadata(user_venv, name) == built[name].wheel_text(".dist-info/METADATA"), name
    user_venv.check()
    version = user_venv.run("sandbox", "--version")
    assert version.returncode == 0 and version.stdout.strip() == f"sandbox, version {built[CORE].version}"


def test_providers_follow_the_installed_plugins(user_venv: Venv, built: dict[str, Built]) -> None:
    assert FIRST is not None
    rows = providers(user_venv)
    assert [row["name"] for row in rows] == PROVIDER_OF[FIRST]
    assert {(row["package"], row["status"]) for row in rows} == {(FIRST, "loaded")}, rows
    if SECOND is None:
        pytest.skip("only one plugin exists: installing a further one cannot be checked")

    user_venv.install(pinned(built[SECOND]))
    rows = providers(user_venv)
    assert [row["name"] for row in rows] == sorted(PROVIDER_OF[FIRST] + PROVIDER_OF[SECOND])
    assert {row["status"] for row in rows} == {"loaded"}, rows

    user_venv.uninstall(SECOND)
    assert [row["name"] for row in providers(user_venv)] == PROVIDER_OF[FIRST]
    assert installed_metadata(user_venv, SECOND) == ""


def test_import_sandbox_core_imports_no_sdk(user_venv: Venv) -> None:
    process = user_venv.run("python", "-X", "importtime", "-c", "import sandbox_core")
    assert process.returncode == 0, process.stderr
    imported = {
        line.rsplit("|", 1)[-1].strip()
        for line in process.stderr.splitlines()
        if line.startswith("import time:") and "imported package" not in line
    }
    assert {"sandbox_core", "pluggy"} <= imported, "the probe saw the imports"
    top_level = {module.split(".")[0] for module in imported}
    assert not top_level & SDK_MODULES, sorted(top_level & SDK_MODULES)
    assert not {m for m in imported if m.startswith(("sandbox_core.settings", "sandbox_core.client", "sandbox_core.admin"))}
