"""Helpers of the packaging tests: the repository's distributions, built ones, and throw-away venvs.

Nothing here uses the project's own environment for what it checks: distributions are built by
``scripts/build-dists.sh`` and installed from their wheels into fresh virtual environments, as a
user would get them.
"""

from __future__ import annotations

import email.message
import email.parser
import os
import shutil
import subprocess
import sys
import tomllib  # the tests run on 3.11+ (Debian 12's python3), as bootstrap.sh sets up
import zipfile
from pathlib import Path
from typing import Any

import attrs

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "scripts" / "build-dists.sh"
CORE = "sandbox-core"

# Variables that would tie a subprocess to the project's environment or the test run.
_PROJECT_VARIABLES = ("SANDBOX_", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "UV_PROJECT", "PYTEST_")


def normalize(name: str) -> str:
    return name.replace("_", "-").replace(".", "-").lower()


@attrs.frozen
class Project:
    """One distribution's source: its folder and its pyproject.toml."""

    root: Path
    pyproject: dict[str, Any] = attrs.field(repr=False)

    @property
    def name(self) -> str:
        return normalize(self.pyproject["project"]["name"])

    @property
    def version(self) -> str:
        return str(self.pyproject["project"]["version"])

    @property
    def providers(self) -> dict[str, str]:
        """Its ``sandbox_core.providers`` entry points, name → value."""
        return dict(self.pyproject["project"].get("entry-points", {}).get("sandbox_core.providers", {}))


def projects() -> list[Project]:
    """The root (sandbox-core) and every plugin with a pyproject.toml, as build-dists.sh builds them."""
    roots = [REPO, *sorted(p.parent for p in (REPO / "plugins").glob("*/pyproject.toml"))]
    return [Project(root, tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))) for root in roots]


@attrs.frozen
class Built:
    """The wheel and sdist built for one distribution."""

    name: str
    version: str
    wheel: Path
    sdist: Path

    def wheel_names(self) -> list[str]:
        with zipfile.ZipFile(self.wheel) as archive:
            return archive.namelist()

    def wheel_text(self, suffix: str) -> str:
        """The text of the wheel member whose path ends with ``suffix`` (e.g. ``.dist-info/METADATA``)."""
        with zipfile.ZipFile(self.wheel) as archive:
            (member,) = [n for n in archive.namelist() if n.endswith(suffix)]
            return archive.read(member).decode("utf-8")

    def metadata(self) -> email.message.Message:
        return email.parser.Parser().parsestr(self.wheel_text(".dist-info/METADATA"))


def build_all(outdir: Path) -> dict[str, Built]:
    """Run the documented build command into ``outdir``; the built distributions by name."""
    process = subprocess.run(
        ["bash", str(BUILD_SCRIPT), str(outdir)], capture_output=True, text=True, timeout=600, cwd=REPO
    )
    assert process.returncode == 0, f"build-dists.sh failed:\n{process.stdout}\n{process.stderr}"
    built = {}
    for project in projects():
        stem = f"{project.name.replace('-', '_')}-{project.version}"
        wheel, sdist = outdir / f"{stem}-py3-none-any.whl", outdir / f"{stem}.tar.gz"
        found = sorted(os.listdir(outdir))
        assert wheel.is_file() and sdist.is_file(), f"{project.name}: no {wheel.name} / {sdist.name} in {found}"
        built[project.name] = Built(project.name, project.version, wheel, sdist)
    return built


def uv() -> str:
    """The uv executable (on PATH, or the one bootstrap.sh installs into .tools)."""
    found = shutil.which("uv") or shutil.which("uv", path=str(REPO / ".tools" / "bin"))
    assert found, "the packaging tests need uv (bash scripts/bootstrap.sh installs it)"
    return found


class Venv:
    """A fresh virtual environment on this interpreter, driven like a user's (no project, no workspace)."""

    def __init__(self, root: Path, wheels: Path) -> None:
        self.root = root
        self.wheels = wheels
        self.home = root.parent / f"{root.name}-work"  # cwd of every command, and the settings DB
        self.home.mkdir(exist_ok=True)
        self._uv(["venv", "--quiet", "--python", sys.executable, str(root)])

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    def env(self) -> dict[str, str]:
        """A user's environment: this venv's bin first, settings in a temp DB, nothing of the project's."""
        env = {key: value for key, value in os.environ.items() if not key.startswith(_PROJECT_VARIABLES)}
        env["PATH"] = f"{self.root / 'bin'}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
        env["VIRTUAL_ENV"] = str(self.root)
        env["SANDBOX_DATABASE_URL"] = f"sqlite:///{self.home / 'settings.db'}"
        return env

    def _uv(self, args: list[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
        process = subprocess.run([uv(), *args], capture_output=True, text=True, env=self.env(), timeout=timeout, cwd=self.home)
        assert process.returncode == 0, f"uv {' '.join(args)} failed:\n{process.stdout}\n{process.stderr}"
        return process

    def install(self, *requirements: str) -> None:
        """``uv pip install`` into this venv: our packages from the wheel folder, the rest from the index."""
        self._uv(["pip", "install", "--quiet", "--python", str(self.python), "--find-links", str(self.wheels), *requirements])

    def uninstall(self, *names: str) -> None:
        self._uv(["pip", "uninstall", "--quiet", "--python", str(self.python), *names])

    def check(self) -> None:
        """The installed packages' requirements are all satisfied."""
        self._uv(["pip", "check", "--python", str(self.python)])

    def run(self, *args: str, timeout: float = 180, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command of this venv (``sandbox``, ``python``, ``pytest``) as a user would."""
        program = str(self.root / "bin" / args[0])
        return subprocess.run(
            [program, *args[1:]], capture_output=True, text=True, env=self.env(), timeout=timeout, cwd=cwd or self.home
        )



def installed_metadata(venv: Venv, name: str) -> str:
    """The METADATA text of distribution ``name`` as installed in ``venv`` ("" when absent)."""
    probe = (
        "import importlib.metadata as m, sys\n"
        "try:\n    sys.stdout.write(m.distribution(sys.argv[1]).read_text('METADATA') or '')\n"
        "except m.PackageNotFoundError:\n    pass\n"
    )
    process = venv.run("python", "-c", probe, name)
    assert process.returncode == 0, process.stderr
    return process.stdout
