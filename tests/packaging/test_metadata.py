"""Every built wheel and sdist carries complete metadata and the files it needs at run time.

The distributions are built by the documented command (``bash scripts/build-dists.sh``) and
read back from the archives, so what is checked is exactly what a user downloads.
"""

from __future__ import annotations

import re
import tarfile
import zipfile
from pathlib import Path

import pytest
from dists_support import CORE, REPO, Built, Project, projects
from packaging.requirements import Requirement

PROJECTS = projects()
PLUGINS = [p for p in PROJECTS if p.name != CORE]
URL_LABELS = {"Homepage", "Documentation", "Issues", "Source"}
# Import names of required distributions whose name says otherwise.
IMPORT_NAMES = {"agentrun-sdk": "agentrun"}
SELFMANAGED = "sandbox-selfmanaged"
EXECUTOR_STACK = {"fastapi", "uvicorn", "uvloop", "httptools", "prometheus-client", "msgspec"}
LOWER_BOUNDS = {">=", ">", "~=", "=="}
UPPER_BOUNDS = {"<", "<=", "~=", "=="}


def by_name(projects: list[Project]) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("project", projects, ids=[p.name for p in projects])


def _core_version() -> str:
    return next(p.version for p in PROJECTS if p.name == CORE)


@by_name(PROJECTS)
def test_wheel_metadata_is_complete(project: Project, built: dict[str, Built]) -> None:
    dist = built[project.name]
    meta = dist.metadata()
    assert meta["Name"] == project.name and meta["Version"] == project.version
    assert len(meta["Summary"] or "") > 20, "a one-line description"
    assert meta["License-Expression"] == "Apache-2.0" or meta["License"] == "Apache-2.0"
    licenses = [n for n in dist.wheel_names() if n.endswith(".dist-info/licenses/LICENSE")]
    assert licenses, f"{project.name}: no license file in the wheel; copy the root LICENSE next to its pyproject.toml"
    assert dist.wheel_text(".dist-info/licenses/LICENSE") == (REPO / "LICENSE").read_text(encoding="utf-8")
    classifiers = meta.get_all("Classifier") or []
    assert "Typing :: Typed" in classifiers and any(c.startswith("Programming Language :: Python :: 3.") for c in classifiers)
    assert any(c.startswith("Development Status ::") for c in classifiers)
    urls = {entry.split(",", 1)[0].strip() for entry in meta.get_all("Project-URL") or []}
    assert URL_LABELS <= urls, f"{project.name}: [project.urls] lacks {sorted(URL_LABELS - urls)} (see docs/packaging.md)"
    assert meta["Requires-Python"], "Requires-Python"
    assert meta["Description-Content-Type"] == "text/markdown" and len(meta.get_payload()) > 200, "README as long description"


@by_name(PROJECTS)
def test_wheel_is_typed(project: Project, built: dict[str, Built]) -> None:
    module = project.name.replace("-", "_")
    assert f"{module}/py.typed" in built[project.name].wheel_names()


@by_name(PLUGINS)
def test_plugin_requires_a_bounded_sandbox_core_range_that_admits_this_core(project: Project, built: dict[str, Built]) -> None:
    requirements = [Requirement(line) for line in built[project.name].metadata().get_all("Requires-Dist") or []]
    (core,) = [r for r in requirements if r.name == CORE and not r.marker]
    operators = {spec.operator for spec in core.specifier}
    assert operators & LOWER_BOUNDS and operators & UPPER_BOUNDS, f"{project.name}: {core} needs a lower and an upper bound"
    assert core.specifier.contains(_core_version()), f"{project.name}: {core} excludes sandbox-core {_core_version()}"


def _requirements(dist: Built, extra: str | None = None) -> set[str]:
    """The names of the distributions ``dist`` requires (with ``extra``: those the extra adds)."""
    names = set()
    for line in dist.metadata().get_all("Requires-Dist") or []:
        requirement = Requirement(line)
        in_base = requirement.marker is None or requirement.marker.evaluate({"extra": ""})
        wanted = in_base if extra is None else not in_base and requirement.marker.evaluate({"extra": extra})  # type: ignore[union-attr]
        if wanted:
            names.add(requirement.name.lower())
    return names


@by_name(PROJECTS)
def test_every_required_distribution_is_imported(project: Project, built: dict[str, Built]) -> None:
    """A requirement no module imports is weight for every user (the core once required httpx for nothing)."""
    dist = built[project.name]
    with zipfile.ZipFile(dist.wheel) as archive:
        sources = "\n".join(archive.read(n).decode("utf-8") for n in archive.namelist() if n.endswith(".py"))
    for name in _requirements(dist):
        module = IMPORT_NAMES.get(name, name.replace("-", "_"))
        assert re.search(rf"^\s*(import|from) {module}\b", sources, re.MULTILINE), f"{project.name} requires {name}, which it never imports"


def test_selfmanaged_client_leaves_the_executor_service_to_an_extra(built: dict[str, Built]) -> None:
    if SELFMANAGED not in built:
        pytest.skip(f"{SELFMANAGED} is not in plugins/")
    dist = built[SELFMANAGED]
    assert not _requirements(dist) & EXECUTOR_STACK, "pip install sandbox-selfmanaged (the provider) must stay light"
    assert EXECUTOR_STACK <= _requirements(dist, "executor")
    assert "[console_scripts]\nsandbox-executor = sandbox_selfmanaged.cli:main" in dist.wheel_text(".dist-info/entry_points.txt")


def test_the_cores_list_of_published_providers_matches_the_plugins_entry_points() -> None:
    from sandbox_core.published import PUBLISHED_PROVIDERS

    declared = {name: project.name for project in PLUGINS for name in project.providers}
    assert PUBLISHED_PROVIDERS == declared


@by_name(PLUGINS)
def test_plugin_wheel_declares_its_provider_entry_point(project: Project, built: dict[str, Built]) -> None:
    assert project.providers, f"{project.name} declares no sandbox_core.providers entry point"
    entry_points = built[project.name].wheel_text(".dist-info/entry_points.txt")
    section = entry_points.split("[sandbox_core.providers]", 1)[1].split("\n[", 1)[0]
    for name, value in project.providers.items():
        assert f"{name} = {value}" in section


def test_core_wheel_declares_its_commands_and_pytest_plugin(built: dict[str, Built]) -> None:
    entry_points = built[CORE].wheel_text(".dist-info/entry_points.txt")
    assert "[console_scripts]\nsandbox = sandbox_core.cli:main" in entry_points
    assert "[pytest11]\nsandbox_core = sandbox_core.testing.pytest_plugin" in entry_points


def test_core_wheel_holds_its_data_files(built: dict[str, Built]) -> None:
    names = set(built[CORE].wheel_names())
    needed = {
        "sandbox_core/runner/python_runner.py",
        "sandbox_core/runner/javascript_runner.js",
        "sandbox_core/settings/defaults.json",
        "sandbox_core/admin/static/index.html",
        "sandbox_core/admin/static/admin.js",
        "sandbox_core/admin/static/admin.css",
        "sandbox_core/scaffold/templates/provider/provider.py.tmpl",
    }
    assert needed <= names, sorted(needed - names)
    # Nothing that lives in the package folder is left behind (new data files included).
    package = REPO / "sandbox_core"
    on_disk = {
        path.relative_to(REPO).as_posix()
        for path in package.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in {".pyc", ".pyo"}
    }
    assert on_disk <= names, sorted(on_disk - names)


@by_name(PROJECTS)
def test_sdist_holds_sources_and_license_but_no_workspace_clutter(project: Project, built: dict[str, Built]) -> None:
    with tarfile.open(built[project.name].sdist) as archive:
        names = {Path(n).relative_to(Path(n).parts[0]).as_posix() for n in archive.getnames() if len(Path(n).parts) > 1}
    missing = {"PKG-INFO", "pyproject.toml", "README.md", "LICENSE"} - names
    assert not missing, f"{project.name}: the sdist lacks {sorted(missing)}"
    clutter = {n for n in names if n.split("/")[0] in {".hypothesis", ".venv", "uv.lock", "dist", "plugins", ".ci"}}
    assert not clutter, sorted(clutter)
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
