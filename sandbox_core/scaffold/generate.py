"""Render the provider-package template shipped inside sandbox-core into a new directory.

The template files (``templates/provider/*.tmpl``) are package data, so the generator works the
same from a wheel as from a checkout. They are :class:`string.Template` texts: ``$name`` and
``${name}`` are placeholders and ``$$`` is a literal dollar sign; an unknown placeholder is an
error, never a silent blank.
"""

from __future__ import annotations

import importlib.metadata as importlib_metadata
import keyword
import re
import string
from collections.abc import Collection
from importlib import resources
from pathlib import Path

import attrs
from packaging.version import InvalidVersion, Version

from sandbox_core.errors import SandboxError
from sandbox_core.published import PUBLISHED_PROVIDERS

TEMPLATE_PACKAGE = "sandbox_core.scaffold"
TEMPLATE_DIR = "templates/provider"

FILES = {
    "pyproject.toml.tmpl": "pyproject.toml",
    "README.md.tmpl": "README.md",
    "gitignore.tmpl": ".gitignore",
    "__init__.py.tmpl": "src/{module}/__init__.py",
    "provider.py.tmpl": "src/{module}/provider.py",
    "test_conformance.py.tmpl": "tests/test_conformance.py",
}
"""Template file → where it goes in the generated package (``{module}``: the import package)."""
EMPTY_FILES = ("src/{module}/py.typed",)

_PROVIDER_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")
_DISTRIBUTION_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?\Z")  # PEP 508


class ScaffoldError(SandboxError):
    """A provider package cannot be generated as asked; the message says what to change."""


@attrs.frozen
class ProviderNames:
    """The names a new provider package is made of, all derived from the provider name."""

    name: str  # the entry-point name: what `sandbox config use NAME` selects
    distribution: str  # what `pip install` takes
    module: str  # the import package under src/
    class_name: str  # prefix of the conformance test class
    core_requirement: str  # the bounded sandbox-core requirement

    @classmethod
    def derive(cls, name: str, distribution: str | None = None, core_version: str | None = None) -> ProviderNames:
        """Validate ``name`` (and ``distribution``) and derive the other names from them."""
        if not _PROVIDER_NAME.match(name):
            raise ScaffoldError(
                f"provider name {name!r} must be a lowercase identifier: a letter, then letters, digits "
                "or underscores (e.g. my_cloud)"
            )
        distribution = distribution or f"sandbox-{name.replace('_', '-')}"
        if not _DISTRIBUTION_NAME.match(distribution):
            raise ScaffoldError(
                f"package name {distribution!r} is not a valid distribution name (letters, digits, '-', '_', '.')"
            )
        module = re.sub(r"[-.]+", "_", distribution).lower()
        if not module.isidentifier() or keyword.iskeyword(module):
            raise ScaffoldError(
                f"package name {distribution!r} gives the import name {module!r}, which Python cannot import "
                "(not an identifier, or a keyword)"
            )
        return cls(
            name=name,
            distribution=distribution,
            module=module,
            class_name="".join(part.capitalize() for part in name.split("_") if part),
            core_requirement=core_requirement(core_version or _installed_core_version()),
        )

    def substitutions(self) -> dict[str, str]:
        return attrs.asdict(self)


def core_requirement(version: str) -> str:
    """The bounded range a plugin written against sandbox-core ``version`` declares.

    Before 1.0 a minor release may break plugins, so ``0.1.3`` gives ``>=0.1,<0.2``; from 1.0 on
    only a major release may, so ``1.4.2`` gives ``>=1.4,<2``.
    """
    try:
        release = Version(version).release
    except InvalidVersion:
        release = (0, 1)
    major, minor = (tuple(release) + (0, 0))[:2]
    upper = f"{major}.{minor + 1}" if major == 0 else f"{major + 1}"
    return f"sandbox-core>={major}.{minor},<{upper}"


def _installed_core_version() -> str:
    try:
        return importlib_metadata.version("sandbox-core")
    except importlib_metadata.PackageNotFoundError:
        return "0.1.0"


def _installed_distributions() -> set[str]:
    return {_normalize(dist.metadata["Name"] or "") for dist in importlib_metadata.distributions()}


def _normalize(distribution: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution).lower()


def check_unclaimed(names: ProviderNames, installed_providers: Collection[str]) -> None:
    """Refuse names that already belong to an installed (or a first-party) provider or package."""
    if names.name in installed_providers:
        raise ScaffoldError(
            f"a provider named {names.name!r} is already installed (see `sandbox providers`); "
            "two packages with the same provider name are both refused, so choose another name"
        )
    if names.name in PUBLISHED_PROVIDERS:
        raise ScaffoldError(f"{names.name!r} is the name of a sandbox-core provider; choose another name")
    if _normalize(names.distribution) in _installed_distributions():
        raise ScaffoldError(f"a package named {names.distribution!r} is already installed; choose another --package-name")


def render(names: ProviderNames) -> dict[str, str]:
    """The generated package's files, relative path → text (nothing is written)."""
    folder = resources.files(TEMPLATE_PACKAGE).joinpath(TEMPLATE_DIR)
    values = names.substitutions()
    rendered: dict[str, str] = {}
    for template_name, target in FILES.items():
        template = string.Template(folder.joinpath(template_name).read_text(encoding="utf-8"))
        try:
            rendered[target.format(module=names.module)] = template.substitute(values)
        except (KeyError, ValueError) as exc:  # a broken template is our bug, say which file
            raise ScaffoldError(f"template {template_name} is broken: {exc!r}") from exc
    for target in EMPTY_FILES:
        rendered[target.format(module=names.module)] = ""
    return rendered


def write_package(files: dict[str, str], directory: Path) -> list[Path]:
    """Write ``files`` under ``directory``, which must not exist yet or be empty."""
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise ScaffoldError(f"{directory} already exists and is not an empty directory; choose another --directory")
    written = []
    for relative, text in files.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


@attrs.frozen
class GeneratedPackage:
    """What :func:`new_provider` wrote."""

    names: ProviderNames
    directory: Path
    files: tuple[Path, ...]


def new_provider(
    name: str,
    directory: Path | None = None,
    distribution: str | None = None,
    installed_providers: Collection[str] | None = None,
) -> GeneratedPackage:
    """Generate a provider package and say what was written.

    :param name: the provider (entry-point) name.
    :param directory: where to create the package (default ``./<distribution>``).
    :param distribution: the distribution name (default ``sandbox-<name>``).
    :param installed_providers: names to refuse; default: the installed providers' names, read
        from package metadata (nothing is imported).
    """
    names = ProviderNames.derive(name, distribution)
    if installed_providers is None:
        from sandbox_core.registry import discover_entries

        installed_providers = {entry_name for entry_name, _ in discover_entries()}
    check_unclaimed(names, installed_providers)
    target = directory if directory is not None else Path.cwd() / names.distribution
    return GeneratedPackage(names, target, tuple(write_package(render(names), target)))
