"""``sandbox provider new`` generates a provider package that passes the conformance kit as generated.

The end-to-end test uses the ``sandbox`` command of a fresh venv holding the built sandbox-core
wheel (so the templates are read from the installed package data), installs the generated package
into that venv (not editable) and runs the generated tests with that venv's pytest.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from dists_support import CORE, Built, Venv

from sandbox_core.cli import cli
from sandbox_core.scaffold import ProviderNames, ScaffoldError, core_requirement, new_provider


def test_generated_provider_passes_its_own_conformance_tests(
    tmp_path_factory: pytest.TempPathFactory, wheel_dir: Path, built: dict[str, Built]
) -> None:
    venv = Venv(tmp_path_factory.mktemp("author") / "venv", wheel_dir)
    venv.install(f"{CORE}=={built[CORE].version}")
    package = venv.home / "sandbox-tinybox"

    created = venv.run("sandbox", "provider", "new", "tinybox", "--directory", str(package))
    assert created.returncode == 0, created.stderr
    venv.install(f"{package}[test]")
    listed = venv.run("sandbox", "providers", "--json")
    # The settings' default selection (self_managed) is not installed here, and is listed as such.
    assert [(row["name"], row["package"], row["status"]) for row in json.loads(listed.stdout)] == [
        ("tinybox", "sandbox-tinybox", "loaded"),
        ("self_managed", None, "not_installed"),
    ], listed.stdout

    outcome = venv.run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=package)
    summary = outcome.stdout.strip().splitlines()[-1] if outcome.stdout.strip() else outcome.stderr
    assert outcome.returncode == 0, outcome.stdout + outcome.stderr
    counts = {kind: int(n) for n, kind in re.findall(r"(\d+) (passed|failed|errors?|skipped)", summary)}
    # Skipped: the artifacts test (the starter passes no output folder), the two
    # unreachable-backend tests (it has no backend yet) and the events-while-running test (the
    # starter does not stream: the core emits its output after the result).
    assert counts.get("passed", 0) >= 20 and counts.get("skipped") == 4, summary

    # A planted bug (a misspelt config key in sandbox_execute) is reported in one readable line.
    provider = package / "src" / "sandbox_tinybox" / "provider.py"
    good = "    return _run(request, config, provider_name)\n"
    assert good in provider.read_text(encoding="utf-8")
    provider.write_text(provider.read_text(encoding="utf-8").replace(good, "    config['pythn']\n" + good), encoding="utf-8")
    venv.install("--reinstall-package", "sandbox-tinybox", f"{package}[test]")
    # -rN: no short summary, whose line repeats the message untruncated when CI is set.
    outcome = venv.run("python", "-m", "pytest", "-q", "-rN", "-p", "no:cacheprovider", "-k", "test_hello_world", cwd=package)
    assert outcome.returncode == 1, outcome.stdout + outcome.stderr
    (line,) = [line for line in outcome.stdout.splitlines() if "result.status is" in line]
    assert "result.status is 'provider_error', expected 'success'" in line, line
    assert "KeyError: 'pythn'" in line and "raised in sandbox_execute at provider.py:" in line, line
    assert "ExecutionResult(" not in outcome.stdout


def test_generated_files(tmp_path: Path) -> None:
    package = new_provider("my_cloud", directory=tmp_path / "pkg", installed_providers=())
    names = package.names
    assert (names.distribution, names.module, names.class_name) == ("sandbox-my-cloud", "sandbox_my_cloud", "MyCloud")
    relative = {path.relative_to(package.directory).as_posix() for path in package.files}
    assert relative == {
        "pyproject.toml",
        "README.md",
        ".gitignore",
        "src/sandbox_my_cloud/__init__.py",
        "src/sandbox_my_cloud/provider.py",
        "src/sandbox_my_cloud/py.typed",
        "tests/test_conformance.py",
    }
    pyproject = (package.directory / "pyproject.toml").read_text(encoding="utf-8")
    assert 'my_cloud = "sandbox_my_cloud.provider"' in pyproject
    assert f'dependencies = ["{names.core_requirement}"]' in pyproject
    for path in package.files:
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"\$\{?[a-z_]+\}?", text.replace("$ ", "")), f"{path.name}: a placeholder was left"
        if path.suffix == ".py":
            ast.parse(text, filename=str(path))
    provider = (package.directory / "src/sandbox_my_cloud/provider.py").read_text(encoding="utf-8")
    assert "ISOLATES NOTHING" in provider
    tests = (package.directory / "tests/test_conformance.py").read_text(encoding="utf-8")
    assert "class TestMyCloudConformance(ProviderConformance)" in tests
    # A fresh venv gets sandbox-core from a checkout or wheel first when no index publishes it
    # (as test_generated_provider_passes_its_own_conformance_tests does), then the package.
    readme = (package.directory / "README.md").read_text(encoding="utf-8")
    assert 0 <= readme.find("$ pip install /path/to/sandbox-core") < readme.find("$ pip install -e '.[test]'")


@pytest.mark.parametrize(
    ("version", "requirement"),
    [
        ("0.1.0", "sandbox-core>=0.1,<0.2"),
        ("0.3.7.dev1", "sandbox-core>=0.3,<0.4"),
        ("1.4.2", "sandbox-core>=1.4,<2"),
        ("2", "sandbox-core>=2.0,<3"),
    ],
)
def test_core_requirement_is_bounded(version: str, requirement: str) -> None:
    assert core_requirement(version) == requirement


@pytest.mark.parametrize("name", ["MyCloud", "my-cloud", "1cloud", "_cloud", "", "cloud!", "clöud"])
def test_invalid_names_are_refused(name: str) -> None:
    with pytest.raises(ScaffoldError, match="lowercase identifier"):
        ProviderNames.derive(name)


@pytest.mark.parametrize(("distribution", "message"), [("bad name", "not a valid distribution"), ("class", "cannot import")])
def test_invalid_package_names_are_refused(distribution: str, message: str) -> None:
    with pytest.raises(ScaffoldError, match=message):
        ProviderNames.derive("ok", distribution)


def test_package_name_sets_the_import_name() -> None:
    names = ProviderNames.derive("ok", "Acme.Sandbox-OK")
    assert (names.distribution, names.module) == ("Acme.Sandbox-OK", "acme_sandbox_ok")


def test_clashes_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ScaffoldError, match="already installed"):
        new_provider("mine", directory=tmp_path / "a", installed_providers={"mine"})
    with pytest.raises(ScaffoldError, match="sandbox-core provider"):
        new_provider("e2b", directory=tmp_path / "b", installed_providers=())
    with pytest.raises(ScaffoldError, match="package named 'sandbox-core' is already installed"):
        new_provider("core", directory=tmp_path / "c", installed_providers=())
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "keep.txt").write_text("mine")
    with pytest.raises(ScaffoldError, match="not an empty directory"):
        new_provider("fresh", directory=tmp_path / "d", installed_providers=())
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_cli_reports_a_bad_name_as_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["provider", "new", "Bad-Name", "--directory", str(tmp_path / "x")])
    assert result.exit_code == 2
    assert "lowercase identifier" in result.output
    assert not (tmp_path / "x").exists()
