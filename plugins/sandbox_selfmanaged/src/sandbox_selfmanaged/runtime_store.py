"""The runtimes folder of the executor's cache: custom definitions, complete builds, locks.

``builds/<name>-<digest>`` holds a build, complete once its ``manifest.json`` exists; a build is
made in a hidden folder and renamed into place. A per-runtime lock serialises builds (several
executors may share a cache); a shared lock on a build's manifest marks it in use, so pruning old
builds never pulls a folder from under live sandboxes.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sandbox_selfmanaged.procs import ProcessSupervisor
from sandbox_selfmanaged.runtime_builder import Builder
from sandbox_selfmanaged.runtimes import (
    BUILTIN_DEFINITIONS,
    MANIFEST,
    Progress,
    RuntimeBuild,
    RuntimeDefinition,
    Toolchain,
    UnknownRuntimeError,
)

logger = logging.getLogger(__name__)


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
            digest = definition.digest(toolchain.interpreter(definition.language))
            final = self.builds_dir / f"{definition.name}-{digest}"
            work = self.builds_dir / f".{definition.name}-{digest}.{secrets.token_hex(4)}"
            try:
                Builder(definition, toolchain, supervisor, say, work).run()
                if final.exists():
                    self._remove_if_unused(final)  # a forced rebuild of the same definition
                work.rename(final)
            except BaseException:
                shutil.rmtree(work, ignore_errors=True)
                raise
            build = RuntimeBuild.load(final)
            assert build is not None
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
