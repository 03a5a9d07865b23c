"""Runtimes: named, read-only package sets for one language, built on the executor's machine.

A runtime is a :class:`RuntimeDefinition` (name, language, requirements) and, once built, a
folder in the executor's cache: Python packages installed for the sandbox's own interpreter with
``uv pip install --target`` (or that interpreter's ``pip``), compiled to ``.pyc``; Node packages
installed with ``npm`` into ``node_modules``. No Docker. A sandbox of the runtime gets the
folder mounted read-only on its import path (see :class:`RuntimeBuild.mount`).

Builds are keyed by a digest of the definition and the interpreter: ``builds/<name>-<digest>``
is complete once its ``manifest.json`` exists, and is only rebuilt when the definition changes.
A build in use by a running executor is held with a shared lock, so pruning old builds never
pulls a folder from under live sandboxes. The built-in definitions are ``python`` (numpy,
pandas, matplotlib with the Agg backend and a CJK-capable font, requests) and ``javascript``
(axios); an operator adds or replaces runtimes with ``sandbox-executor runtime build``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import secrets
import selectors
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs

from sandbox_selfmanaged.errors import ExecutorError
from sandbox_selfmanaged.procs import ProcessSupervisor
from sandbox_selfmanaged.rootfs import PythonInstall

logger = logging.getLogger(__name__)

LANGUAGES = ("python", "javascript")
BUILDER_VERSION = 3
"""Part of every digest: bump it when the build steps change, so existing builds are redone."""
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
MANIFEST = "manifest.json"
BUILD_TIMEOUT = 1800.0
CJK_FONTS = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
)
"""CJK-capable fonts from Debian packages (fonts-wqy-microhei first), the first found is used."""
FALLBACK_LIBRARIES = ("libstdc++.so.6", "libgcc_s.so.1")
LIBRARY_DIRS = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib")

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


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise ValueError(f"runtime name {name!r}: use 1-40 lowercase letters, digits, '-' or '_', starting with a letter")
    return name


@attrs.frozen
class RuntimeDefinition:
    """What a runtime holds.

    :param requirements: pip requirement lines (Python) or npm package specs (JavaScript).
        Local paths in them are absolute (made so when read from a file).
    """

    name: str = attrs.field(validator=lambda _i, _a, v: check_name(v))
    language: str = attrs.field(validator=attrs.validators.in_(LANGUAGES))
    requirements: tuple[str, ...] = attrs.field(converter=names)
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
        return {"name": self.name, "language": self.language, "requirements": list(self.requirements)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RuntimeDefinition:
        return cls(
            name=data["name"],
            language=data["language"],
            requirements=tuple(data.get("requirements", ())),
        )


BUILTIN_DEFINITIONS: Mapping[str, RuntimeDefinition] = {
    "python": RuntimeDefinition(
        name="python",
        language="python",
        requirements=("numpy", "pandas", "matplotlib", "requests"),
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


class RuntimeStore:
    """The runtimes folder of a cache directory: custom definitions, builds, locks."""

    def __init__(self, cache_dir: Path) -> None:
        self.root = Path(cache_dir) / "runtimes"
        self.definitions_dir = self.root / "definitions"
        self.builds_dir = self.root / "builds"
        self.locks_dir = self.root / "locks"

    # -- definitions --------------------------------------------------------------------------

    def definitions(self) -> dict[str, RuntimeDefinition]:
        """Every runtime defined here: the built-in ones, replaced by custom ones of the same name."""
        found = dict(BUILTIN_DEFINITIONS)
        if self.definitions_dir.is_dir():
            for path in sorted(self.definitions_dir.glob("*.json")):
                try:
                    definition = RuntimeDefinition.from_dict(json.loads(path.read_text()))
                except (OSError, ValueError, KeyError, TypeError) as exc:
                    logger.error("ignoring the runtime definition %s: %s", path, exc)
                    continue
                found[definition.name] = definition
        return found

    def definition(self, name: str) -> RuntimeDefinition:
        definitions = self.definitions()
        if name not in definitions:
            raise UnknownRuntimeError(name, definitions)
        return definitions[name]

    def save_definition(self, definition: RuntimeDefinition) -> None:
        self.definitions_dir.mkdir(parents=True, exist_ok=True)
        temporary = self.definitions_dir / f".{definition.name}.{secrets.token_hex(4)}"
        temporary.write_text(json.dumps(definition.to_dict(), indent=2))
        temporary.replace(self.definitions_dir / f"{definition.name}.json")

    def remove(self, name: str) -> list[str]:
        """Forget a custom definition and delete the runtime's builds not in use; what was removed."""
        removed: list[str] = []
        custom = self.definitions_dir / f"{name}.json"
        if custom.exists():
            custom.unlink()
            removed.append("definition")
        with self._lock(name):
            for build in self._builds_of(name):
                if self._remove_if_unused(build):
                    removed.append(build.name)
        if not removed and name not in self.definitions():
            raise UnknownRuntimeError(name, self.definitions())
        return removed

    # -- builds -------------------------------------------------------------------------------

    def builds(self) -> list[RuntimeBuild]:
        found = []
        if self.builds_dir.is_dir():
            for path in sorted(self.builds_dir.iterdir()):
                if not path.name.startswith("."):
                    build = RuntimeBuild.load(path)
                    if build is not None:
                        found.append(build)
        return found

    def _builds_of(self, name: str) -> list[Path]:
        if not self.builds_dir.is_dir():
            return []
        return [p for p in self.builds_dir.iterdir() if p.name.rsplit("-", 1)[0] == name]

    def current(self, definition: RuntimeDefinition, toolchain: Toolchain) -> RuntimeBuild | None:
        """The build matching ``definition`` for these interpreters, if there is one."""
        return RuntimeBuild.load(self.builds_dir / f"{definition.name}-{definition.digest(toolchain.interpreter(definition.language))}")

    def ensure(
        self,
        definition: RuntimeDefinition,
        toolchain: Toolchain,
        supervisor: ProcessSupervisor,
        *,
        force: bool = False,
        progress: Progress | None = None,
    ) -> RuntimeBuild:
        """The current build of ``definition``, building it first when there is none (or ``force``)."""
        say = progress or logger.info
        with self._lock(definition.name):
            existing = self.current(definition, toolchain)
            if existing is not None and not force:
                return existing
            build = _Builder(self, definition, toolchain, supervisor, say).run()
            for path in self._builds_of(definition.name):
                if path != build.path and self._remove_if_unused(path):
                    say(f"runtime {definition.name}: removed the old build {path.name}")
            return build

    def hold(self, build: RuntimeBuild) -> int:
        """Mark ``build`` in use (pruning skips it) until the returned descriptor is closed."""
        fd = os.open(build.path / MANIFEST, os.O_RDONLY | os.O_CLOEXEC)
        fcntl.flock(fd, fcntl.LOCK_SH)
        return fd

    def _remove_if_unused(self, path: Path) -> bool:
        manifest = path / MANIFEST
        if manifest.exists():
            fd = os.open(manifest, os.O_RDONLY | os.O_CLOEXEC)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return False
                # Make it incomplete first, so a half-deleted build never looks usable.
                manifest.unlink()
            finally:
                os.close(fd)
        shutil.rmtree(path, ignore_errors=True)
        return True

    @contextmanager
    def _lock(self, name: str) -> Iterator[None]:
        self.locks_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.locks_dir / f"{name}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                logger.info("runtime %s: waiting for another build of it to finish", name)
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def installer_environment() -> dict[str, str]:
    """The builder's environment for installers: ours (proxies, HOME for their caches), no secrets of ours."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_")}


class _Builder:
    """One build of one definition into a temporary folder, moved into place when complete."""

    def __init__(self, store: RuntimeStore, definition: RuntimeDefinition, toolchain: Toolchain, supervisor: ProcessSupervisor, progress: Progress) -> None:
        self.store = store
        self.definition = definition
        self.toolchain = toolchain
        self.supervisor = supervisor
        self.progress = progress
        self.digest = definition.digest(toolchain.interpreter(definition.language))
        self.final = store.builds_dir / f"{definition.name}-{self.digest}"
        self.work = store.builds_dir / f".{definition.name}-{self.digest}.{secrets.token_hex(4)}"

    def run(self) -> RuntimeBuild:
        name = self.definition.name
        started = time.monotonic()
        self.progress(f"runtime {name}: building ({self.definition.language}: {' '.join(self.definition.requirements)})")
        self.work.mkdir(parents=True)
        try:
            if self.definition.language == "python":
                mount_point, content = self._build_python()
            else:
                mount_point, content = self._build_node()
            packages = _python_packages(content) if self.definition.language == "python" else _node_packages(content)
            libraries = self._system_libraries(content)
            manifest = {
                "name": name,
                "language": self.definition.language,
                "digest": self.digest,
                "requirements": list(self.definition.requirements),
                "packages": packages,
                "libraries": libraries,
                "mount_point": mount_point,
                "built_at": time.time(),
                "interpreter": self.toolchain.interpreter(self.definition.language),
            }
            (self.work / MANIFEST).write_text(json.dumps(manifest, indent=2))
            if self.final.exists():
                self.store._remove_if_unused(self.final)  # a forced rebuild of the same digest
            self.work.rename(self.final)
        except BaseException:
            shutil.rmtree(self.work, ignore_errors=True)
            raise
        build = RuntimeBuild.load(self.final)
        assert build is not None
        self.progress(
            f"runtime {name}: built in {time.monotonic() - started:.1f}s, {len(packages)} packages "
            f"({', '.join(f'{k} {v}' for k, v in sorted(packages.items())[:12])}{', ...' if len(packages) > 12 else ''})"
        )
        return build

    # -- python -------------------------------------------------------------------------------

    def _build_python(self) -> tuple[str, Path]:
        python = self.toolchain.python
        assert python is not None
        target = self.work / "python"
        requirements = self.work / "requirements.txt"
        requirements.write_text("\n".join(self.definition.requirements) + "\n")
        env = installer_environment()
        if self.toolchain.uv:
            argv = [self.toolchain.uv, "pip", "install", "--python", python.executable, "--target", str(target), "-r", str(requirements)]
        elif self._has_pip(python.executable):
            argv = [python.executable, "-m", "pip", "install", "--disable-pip-version-check", "--root-user-action=ignore", "--no-compile", "--no-warn-script-location", "--target", str(target), "-r", str(requirements)]
        else:
            raise RuntimeBuildError(
                "cannot install Python packages: neither uv nor pip is available "
                f"(install uv, or the Debian package python3-pip for {python.executable})"
            )
        self._stream(argv, env, "install")
        target.mkdir(exist_ok=True)
        self._write_site_hook(target)
        if (target / "matplotlib").is_dir():
            self._prepare_matplotlib(target, python)
        # .pyc for the sandbox's interpreter, with the paths the sandbox sees (for tracebacks).
        self._stream(
            [python.executable, "-m", "compileall", "-q", "-j", "0", "-s", str(target), "-p", python.site_packages, str(target)],
            env, "compile", check=False,
        )
        return python.site_packages, target

    def _has_pip(self, executable: str) -> bool:
        return self.supervisor.run([executable, "-m", "pip", "--version"], timeout=60).ok

    def _write_site_hook(self, target: Path) -> None:
        """A ``.pth`` hook run at interpreter start: matplotlib gets a writable, prebuilt config dir."""
        (target / "_sandbox_runtime.py").write_text(_SITE_HOOK)
        (target / "_sandbox_runtime.pth").write_text("import _sandbox_runtime\n")

    def _prepare_matplotlib(self, target: Path, python: PythonInstall) -> None:
        config = target / "_sandbox_runtime_mpl"
        config.mkdir()
        families = ["DejaVu Sans"]
        font = next((f for f in CJK_FONTS if os.path.isfile(f)), None)
        if font is None:
            self.progress(
                f"runtime {self.definition.name}: warning: no CJK font found (install the Debian package "
                "fonts-wqy-microhei); charts will show boxes for Chinese, Japanese and Korean text"
            )
        else:
            fonts_dir = target / "matplotlib" / "mpl-data" / "fonts" / "ttf"
            shutil.copyfile(font, fonts_dir / os.path.basename(font))
            families.append(_font_family(font))
        (config / "matplotlibrc").write_text(
            "backend: Agg\n"
            # Listing the families themselves (not "sans-serif") makes matplotlib fall back glyph by glyph.
            f"font.family: {', '.join(families)}\n"
            f"font.sans-serif: {', '.join(families)}, sans-serif\n"
            "axes.unicode_minus: False\n"
        )
        script = (
            "import os, sys; sys.path.insert(0, sys.argv[1]); os.environ['MPLCONFIGDIR'] = sys.argv[2]\n"
            "import matplotlib; matplotlib.use('Agg'); import matplotlib.font_manager as fm\n"
            "print(len(fm.fontManager.ttflist), 'fonts cached')\n"
        )
        env = {**installer_environment(), "MPLCONFIGDIR": str(config)}
        self._stream([python.executable, "-I", "-S", "-c", script, str(target), str(config)], env, "font cache")
        for cache in config.glob("fontlist-*.json"):
            _keep_runtime_fonts(cache)

    # -- javascript ---------------------------------------------------------------------------

    def _build_node(self) -> tuple[str, Path]:
        assert self.toolchain.node is not None
        if not self.toolchain.npm:
            raise RuntimeBuildError("cannot install Node packages: npm is not installed (Debian package npm)")
        (self.work / "package.json").write_text(json.dumps({"name": f"sandbox-runtime-{self.definition.name}", "private": True}))
        argv = [
            self.toolchain.npm, "install", "--prefix", str(self.work), "--no-audit", "--no-fund",
            "--omit=dev", "--no-package-lock", "--ignore-scripts", *self.definition.requirements,
        ]
        self._stream(argv, installer_environment(), "install")
        content = self.work / "node_modules"
        if not content.is_dir():
            raise RuntimeBuildError(f"npm install left no node_modules in {self.work}")
        return node_global_folder(self.toolchain.node), content

    # -- shared -------------------------------------------------------------------------------

    def _system_libraries(self, content: Path) -> list[str]:
        """Host libraries the runtime's native modules load (for the sandboxes' root filesystem)."""
        found: set[str] = set()
        for directory, _dirs, files in os.walk(content):
            for name in files:
                if not (name.endswith(".so") or ".so." in name or name.endswith(".node")):
                    continue
                result = self.supervisor.run(["/usr/bin/ldd", os.path.join(directory, name)], timeout=60)
                if not result.ok:
                    continue
                for line in result.stdout.decode("utf-8", "replace").splitlines():
                    if "=>" not in line:
                        continue
                    loaded = line.split("=>", 1)[1].split("(", 1)[0].strip()
                    if loaded.startswith("/") and not loaded.startswith(str(self.work)):
                        found.add(loaded)
        for library in FALLBACK_LIBRARIES:
            path = next((os.path.join(d, library) for d in LIBRARY_DIRS if os.path.exists(os.path.join(d, library))), None)
            if path is not None:
                found.add(path)
        return sorted(found)

    def _stream(self, argv: Sequence[str], env: Mapping[str, str], step: str, *, check: bool = True) -> None:
        """Run a build step, logging its output line by line as progress."""
        name = self.definition.name
        self.progress(f"runtime {name}: {step}: {' '.join(argv[:3])} ...")
        read_fd, write_fd = os.pipe()
        try:
            pid = self.supervisor.spawn(argv, stdout=write_fd, stderr=write_fd, env=env)
        finally:
            os.close(write_fd)
        tail: list[str] = []
        deadline = time.monotonic() + BUILD_TIMEOUT
        buffer = b""
        with os.fdopen(read_fd, "rb", buffering=0) as pipe, selectors.DefaultSelector() as selector:
            selector.register(pipe, selectors.EVENT_READ)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not selector.select(remaining):
                    self.supervisor.kill(pid)
                    break
                chunk = pipe.read(65536)
                if not chunk:
                    break
                buffer += chunk
                *lines, buffer = re.split(rb"[\r\n]", buffer)
                for line in lines:
                    text = line.decode("utf-8", "replace").rstrip()
                    if text:
                        self.progress(f"runtime {name}: {step}: {text}")
                        tail = [*tail[-19:], text]
        code = self.supervisor.wait(pid, 30)
        self.supervisor.forget(pid)
        if code != 0 and check:
            raise RuntimeBuildError(f"runtime {name}: {step} failed (exit {code}): " + " | ".join(tail[-8:]))
        if code != 0:
            self.progress(f"runtime {name}: {step} exited with {code} (not fatal)")


def _keep_runtime_fonts(cache: Path) -> None:
    """Drop the host's system fonts from a font cache: sandboxes have only matplotlib's own.

    Matplotlib records its own fonts relative to its data folder, others by absolute path; an
    entry whose file is missing inside would make it rebuild the cache in every sandbox.
    """
    data = json.loads(cache.read_text())
    for key in ("ttflist", "afmlist"):
        data[key] = [entry for entry in data.get(key, []) if not os.path.isabs(entry["fname"])]
    cache.write_text(json.dumps(data))


def _font_family(path: str) -> str:
    known = {"wqy-microhei": "WenQuanYi Micro Hei", "wqy-zenhei": "WenQuanYi Zen Hei", "DroidSansFallbackFull": "Droid Sans Fallback", "NotoSansCJK-Regular": "Noto Sans CJK JP"}
    return known.get(os.path.basename(path).rsplit(".", 1)[0], "sans-serif")


def _python_packages(target: Path) -> dict[str, str]:
    packages: dict[str, str] = {}
    for info in target.glob("*.dist-info"):
        name: str | None = None
        version: str | None = None
        try:
            with open(info / "METADATA", encoding="utf-8", errors="replace") as metadata:
                for line in metadata:
                    if line.startswith("Name:"):
                        name = line.split(":", 1)[1].strip()
                    elif line.startswith("Version:"):
                        version = line.split(":", 1)[1].strip()
                    elif not line.strip():
                        break
        except OSError:
            continue
        if name and version:
            packages[name] = version
    return packages


def _node_packages(node_modules: Path) -> dict[str, str]:
    packages: dict[str, str] = {}
    for manifest in [*node_modules.glob("*/package.json"), *node_modules.glob("@*/*/package.json")]:
        try:
            data = json.loads(manifest.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("name") and data.get("version"):
            packages[str(data["name"])] = str(data["version"])
    return packages


_SITE_HOOK = '''"""Run at interpreter start (from _sandbox_runtime.pth): sandbox runtime set-up.

Matplotlib needs *writable* config and cache dirs, else it builds a font cache in a temporary
folder on every start; the runtime folder is read-only, so its prebuilt matplotlibrc and font
cache are copied to the default places under $HOME (the sandbox's /tmp). No variable is set.
"""
import os


def _prepare():
    source = os.path.join(os.path.dirname(__file__), "_sandbox_runtime_mpl")
    if not os.path.isdir(source):
        return
    home = os.environ.get("HOME") or "/tmp"
    try:
        for name in os.listdir(source):
            kind = ".config" if name == "matplotlibrc" else ".cache"
            target = os.path.join(home, kind, "matplotlib")
            os.makedirs(target, exist_ok=True)
            with open(os.path.join(source, name), "rb") as src, open(os.path.join(target, name), "wb") as dst:
                dst.write(src.read())
    except OSError:
        return
    # plt.show() cannot show anything here; the runner returns open figures as PNG artifacts.
    import warnings
    warnings.filterwarnings("ignore", message=".*non-interactive, and thus cannot be shown")


_prepare()
'''
