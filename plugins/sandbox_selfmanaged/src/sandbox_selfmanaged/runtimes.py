"""Runtimes: named, read-only package sets for one language, built on the executor's machine.

A runtime is a :class:`RuntimeDefinition` (name, language, requirements) and, once built
(:mod:`~sandbox_selfmanaged.runtime_builder`, without Docker), a :class:`RuntimeBuild`: a folder
in the executor's cache (:mod:`~sandbox_selfmanaged.runtime_store`) that sandboxes of the runtime
get mounted read-only on their import path (see :meth:`RuntimeBuild.mount`). Builds are keyed by
a digest of the definition and the interpreter, so a runtime is only rebuilt when either changes.
The built-in definitions are ``python`` (numpy, pandas, matplotlib with the Agg backend and a
CJK-capable font, requests) and ``javascript`` (axios); an operator adds or replaces runtimes
with ``sandbox-executor runtime build``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

from sandbox_selfmanaged.errors import ExecutorError
from sandbox_selfmanaged.rootfs import PythonInstall

LANGUAGES = ("python", "javascript")
BUILDER_VERSION = 3
"""Part of every digest: bump it when the build steps change, so existing builds are redone."""
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
MODULE_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
MANIFEST = "manifest.json"

Progress = Callable[[str], None]


class RuntimeBuildError(ExecutorError):
    """A runtime could not be built; the message carries the installer's own words."""


class UnknownRuntimeError(ExecutorError, ValueError):
    """A runtime name that is not defined (or not served), with the names that are."""

    def __init__(self, name: str, available: Iterable[str], what: str = "defined") -> None:
        choices = ", ".join(sorted(available)) or "none"
        super().__init__(f"unknown runtime {name!r}: the runtimes {what} here are: {choices}")
        self.name = name
        self.available = tuple(sorted(available))


def names(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)


def check_preload(instance: RuntimeDefinition, _attribute: object, modules: tuple[str, ...]) -> None:
    for module in modules:
        if not MODULE_PATTERN.match(module):
            raise ValueError(f"preload: {module!r} is not a Python module name (like pandas or matplotlib.pyplot)")
    if modules and instance.language != "python":
        raise ValueError(f"preload: only Python runtimes preload modules; {instance.name} is a {instance.language} runtime")


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise ValueError(f"runtime name {name!r}: use 1-40 lowercase letters, digits, '-' or '_', starting with a letter")
    return name


@attrs.frozen
class RuntimeDefinition:
    """What a runtime holds.

    :param requirements: pip requirement lines (Python) or npm package specs (JavaScript).
        Local paths in them are absolute (made so when read from a file).
    :param preload: modules every sandbox of the runtime imports before its job (Python only);
        such sandboxes are restored from a checkpoint (see :mod:`~sandbox_selfmanaged.checkpoint`).
        Not part of the digest: preloading changes no file of the build.
    """

    name: str = attrs.field(validator=lambda _i, _a, v: check_name(v))
    language: str = attrs.field(validator=attrs.validators.in_(LANGUAGES))
    requirements: tuple[str, ...] = attrs.field(converter=names)
    preload: tuple[str, ...] = attrs.field(default=(), converter=names, validator=check_preload)
    builtin: bool = False

    def __attrs_post_init__(self) -> None:
        if self.name in LANGUAGES and self.name != self.language:
            raise ValueError(f"runtime {self.name!r} is named after a language, so it must be a {self.name} runtime")

    def digest(self, interpreter: str) -> str:
        """What decides whether an existing build is still this runtime's (definition + interpreter)."""
        data = json.dumps(
            {"v": BUILDER_VERSION, "language": self.language, "requirements": self.requirements, "interpreter": interpreter},
            sort_keys=True,
        )
        return hashlib.sha256(data.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "language": self.language, "requirements": list(self.requirements), "preload": list(self.preload)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RuntimeDefinition:
        return cls(
            name=data["name"],
            language=data["language"],
            requirements=tuple(data.get("requirements", ())),
            preload=tuple(data.get("preload", ())),
        )


BUILTIN_DEFINITIONS: Mapping[str, RuntimeDefinition] = {
    "python": RuntimeDefinition(
        name="python",
        language="python",
        requirements=("numpy", "pandas", "matplotlib", "requests"),
        preload=("numpy", "pandas", "matplotlib.pyplot"),
        builtin=True,
    ),
    "javascript": RuntimeDefinition(name="javascript", language="javascript", requirements=("axios",), builtin=True),
}
DEFAULT_RUNTIMES = ("python", "javascript")


def _looks_like_path(token: str) -> bool:
    if "://" in token:
        return False
    return token.startswith((".", "/", "~")) or token.endswith((".whl", ".tar.gz", ".zip", ".tgz")) or "/" in token


def read_requirements(path: Path, language: str) -> tuple[str, ...]:
    """Requirement lines from a requirements file (Python) or a package.json / list (JavaScript).

    Local paths are made absolute against the file's folder, so the definition means the same
    whatever the builder's working directory.
    """
    text = path.read_text()
    base = path.resolve().parent
    if language == "javascript" and path.name.endswith(".json"):
        data = json.loads(text)
        dependencies = data.get("dependencies", {}) if isinstance(data, dict) else {}
        return tuple(f"{name}@{spec}" for name, spec in sorted(dependencies.items()))
    lines: list[str] = []
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if not line.startswith("-") and _looks_like_path(line.split(";", 1)[0].strip()):
            candidate = (base / os.path.expanduser(line)).resolve()
            if candidate.exists():
                line = str(candidate)
        lines.append(line)
    if not lines:
        raise ValueError(f"{path}: no requirements in it")
    return tuple(lines)


@attrs.frozen
class RuntimeBuild:
    """A complete build of a runtime, as its manifest describes it."""

    name: str
    language: str
    digest: str
    path: Path
    packages: Mapping[str, str]
    libraries: tuple[str, ...]
    mount_point: str
    built_at: float
    requirements: tuple[str, ...]

    @property
    def content(self) -> Path:
        """The folder mounted into sandboxes."""
        return self.path / ("python" if self.language == "python" else "node_modules")

    def mount(self) -> tuple[str, str]:
        """``(host path, path inside)`` of the read-only bind mount."""
        return str(self.content), self.mount_point

    @property
    def native_threads(self) -> bool:
        """Whether its packages may start native thread pools (OpenBLAS, OpenMP) to size."""
        return self.language == "python"

    def size_bytes(self) -> int:
        total = 0
        for directory, _dirs, files in os.walk(self.path):
            for name in files:
                try:
                    total += os.lstat(os.path.join(directory, name)).st_size
                except OSError:
                    pass
        return total

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "language": self.language,
            "digest": self.digest,
            "packages": dict(self.packages),
            "built_at": self.built_at,
        }

    @classmethod
    def load(cls, path: Path) -> RuntimeBuild | None:
        try:
            data = json.loads((path / MANIFEST).read_text())
        except (OSError, ValueError):
            return None
        return cls(
            name=data["name"],
            language=data["language"],
            digest=data["digest"],
            path=path,
            packages=data["packages"],
            libraries=tuple(data["libraries"]),
            mount_point=data["mount_point"],
            built_at=data["built_at"],
            requirements=tuple(data.get("requirements", ())),
        )


@attrs.frozen
class Toolchain:
    """The interpreters a build is for, and the installers that do it."""

    python: PythonInstall | None
    node: str | None
    node_version: str = ""
    uv: str | None = attrs.field(factory=lambda: shutil.which("uv"))
    npm: str | None = attrs.field(factory=lambda: shutil.which("npm"))

    def interpreter(self, language: str) -> str:
        if language == "python":
            if self.python is None:
                raise RuntimeBuildError("no Python interpreter to build a python runtime for")
            return f"python {self.python.version} {self.python.site_packages}"
        if self.node is None:
            raise RuntimeBuildError("no node to build a javascript runtime for")
        return f"node {self.node_version.split('.', 1)[0]} {node_global_folder(self.node)}"


def node_global_folder(node: str) -> str:
    """The folder Node searches for modules after every ``node_modules`` (``<prefix>/lib/node``).

    A runtime's packages are mounted there, so ``require`` finds them with no ``NODE_PATH``.
    """
    return os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(node))), "lib", "node")


def default_cache_dir() -> Path:
    return Path("/var/cache/sandbox-executor") if os.geteuid() == 0 else Path.home() / ".cache/sandbox-executor"
