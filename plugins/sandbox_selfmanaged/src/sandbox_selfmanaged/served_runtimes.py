"""The runtimes one engine serves: built (or found in the cache) at start, held, and chosen per request.

A request names a runtime or not. Without one it gets its language's default: the runtime named
after the language when that one is served and built, else the bare interpreter. A named runtime
must be served here (else :class:`UnknownRuntimeError`, naming those that are) and built (else a
503 carrying the build's error); never a silent fallback to another one.

A runtime that preloads modules is served by two pools: its preloaded sandboxes, and plain ones
of the same runtime (same packages, nothing imported before the job) for code that cannot reach
the preloaded modules (see :mod:`sandbox_selfmanaged.preload_routing` for the rule).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sandbox_selfmanaged.errors import ExecutorError, SandboxUnavailableError
from sandbox_selfmanaged.preload_routing import needs_preload
from sandbox_selfmanaged.procs import ProcessSupervisor
from sandbox_selfmanaged.rootfs import PythonInstall
from sandbox_selfmanaged.runtime_store import RuntimeStore
from sandbox_selfmanaged.runtimes import (
    RuntimeBuild,
    Toolchain,
    UnknownRuntimeError,
)

logger = logging.getLogger(__name__)


class RuntimeLanguageError(ExecutorError, ValueError):
    """A request's runtime is for another language than its code."""


def plain_key(name: str) -> str:
    """The pool key of a preloading runtime's plain sandboxes (``/`` is in no runtime's name)."""
    return f"{name}/plain"


class ServedRuntimes:
    """The runtimes an engine serves; see the module docstring."""

    def __init__(self, cache_dir: Path, names: Sequence[str]) -> None:
        self.store = RuntimeStore(cache_dir)
        self.names = tuple(dict.fromkeys(names))
        self.builds: dict[str, RuntimeBuild] = {}
        self.preload: dict[str, tuple[str, ...]] = {}
        """Per built runtime: the modules its sandboxes import before their job."""
        self.errors: dict[str, str] = {}
        self._held: list[int] = []

    def prepare(self, python: PythonInstall | None, node: str | None, node_version: str, supervisor: ProcessSupervisor) -> None:
        """Find or build every served runtime; a failure is recorded (and logged), not raised."""
        toolchain = Toolchain(python=python, node=node, node_version=node_version)
        definitions = self.store.definitions()
        for name in self.names:
            definition = definitions.get(name)
            if definition is None:
                self._fail(name, str(UnknownRuntimeError(name, definitions)))
                continue
            if (definition.language == "python" and python is None) or (definition.language == "javascript" and node is None):
                self._fail(name, f"{definition.language} is unavailable on this executor")
                continue
            try:
                build = self.store.ensure(definition, toolchain, supervisor)
                self._held.append(self.store.hold(build))
            except (ExecutorError, OSError) as exc:
                self._fail(name, f"build failed: {exc}")
                continue
            self.builds[name] = build
            self.preload[name] = definition.preload
            logger.info("runtime %s ready: %s (%d packages) from %s", name, build.language, len(build.packages), build.path)

    def _fail(self, name: str, message: str) -> None:
        self.errors[name] = message
        logger.error("runtime %s cannot be served: %s", name, message)

    def libraries(self) -> list[str]:
        """Host libraries the served runtimes' native code needs in the root filesystem."""
        return sorted({library for build in self.builds.values() for library in build.libraries if os.path.exists(library)})

    def mount_points(self) -> list[str]:
        return sorted({build.mount_point for build in self.builds.values()})

    def resolve(self, language: str, runtime: str | None, code: str | None = None) -> str:
        """The pool key of a request: a served runtime's name, or the language (bare interpreter).

        Given the request's ``code``, a preloading runtime's plain pool (:func:`plain_key`) when
        the code cannot reach the preloaded modules.
        """
        key = self._runtime_key(language, runtime)
        preload = self.preload.get(key, ())
        if preload and code is not None and not needs_preload(code, preload):
            return plain_key(key)
        return key

    def _runtime_key(self, language: str, runtime: str | None) -> str:
        if runtime is None:
            return language
        if runtime in self.errors and runtime in self.names:
            raise SandboxUnavailableError(f"runtime {runtime!r} is unavailable: {self.errors[runtime]}", retry_after=60)
        build = self.builds.get(runtime)
        if build is None:
            raise UnknownRuntimeError(runtime, self.builds, what="served")
        if build.language != language:
            raise RuntimeLanguageError(f"runtime {runtime!r} is a {build.language} runtime; the code is {language}")
        return runtime

    def describe(self) -> dict[str, Any]:
        """Per served runtime: language, packages with versions, state and error (for /v1/runtimes, /healthz)."""
        described: dict[str, Any] = {}
        for name in self.names:
            build = self.builds.get(name)
            if build is not None:
                described[name] = {"available": True, **build.describe(), "preload": list(self.preload.get(name, ())), "error": None}
            else:
                described[name] = {"available": False, "error": self.errors.get(name)}
        return described

    def close(self) -> None:
        for fd in self._held:
            os.close(fd)
        self._held.clear()
