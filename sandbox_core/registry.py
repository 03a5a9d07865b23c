"""Provider discovery and loading: entry points, isolation of broken plugins, per-provider calls.

Listing providers reads installed-package metadata only. A provider's code is imported the first
time it is needed (to execute, validate, check health or verify it for ``sandbox providers``),
each entry point on its own: a provider that fails to import or register is reported with its
name, package, version and error and never affects the others. Calls meant for one provider reach
that provider's hook implementations only, plus the hook wrappers of cross-cutting plugins.
"""

from __future__ import annotations

import atexit
import enum
import importlib.metadata as importlib_metadata
import inspect
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs
import pluggy

from sandbox_core import hookspecs
from sandbox_core.errors import (
    DuplicateProviderError,
    ProviderError,
    ProviderLoadError,
    ProviderNotFoundError,
)

log = logging.getLogger(__name__)

DISABLED_ENV = "SANDBOX_DISABLED_PLUGINS"
"""Comma-separated names of providers or plugins to ignore without importing them."""
STRICT_ENV = "SANDBOX_PLUGINS_STRICT"
"""When truthy, a broken or sloppy plugin raises instead of being reported (for plugin authors)."""

CORE_DISTRIBUTION = "sandbox-core"


class ProviderState(str, enum.Enum):
    """Where a provider stands, as ``sandbox providers`` shows it."""

    AVAILABLE = "available"  # installed, not imported yet
    LOADED = "loaded"  # imported and registered
    BROKEN = "broken"  # failed to import, register or declare its schema
    INCOMPATIBLE = "incompatible"  # requires a sandbox-core version other than the one installed
    DUPLICATE = "duplicate"  # more than one package declares this name
    DISABLED = "disabled"  # switched off by SANDBOX_DISABLED_PLUGINS


@attrs.frozen
class ProviderEntry:
    """One provider as installed-package metadata describes it (nothing imported)."""

    name: str
    package: str
    version: str
    value: str
    summary: str = ""
    requirement: str | None = None  # the sandbox-core requirement the package declares
    load: Callable[[], Any] | None = attrs.field(default=None, eq=False, repr=False)


@attrs.frozen
class ProviderStatus:
    """A provider's listing row: identity, state and, when it is not usable, why."""

    name: str
    package: str
    version: str
    state: ProviderState
    error: str = ""
    description: str = ""
    languages: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "package": self.package,
            "version": self.version,
            "status": self.state.value,
            "error": self.error or None,
            "description": self.description,
            "languages": list(self.languages),
            "tags": list(self.tags),
        }


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _names_from_env(value: str | None) -> frozenset[str]:
    return frozenset(part.strip() for part in (value or "").split(",") if part.strip())


def _core_version() -> str:
    try:
        return importlib_metadata.version(CORE_DISTRIBUTION)
    except importlib_metadata.PackageNotFoundError:
        return "0"


def _core_requirement(dist: importlib_metadata.Distribution) -> str | None:
    for line in dist.requires or ():
        name = line.split(";")[0].strip()
        normalized = name.replace("_", "-").lower()
        if normalized.startswith(CORE_DISTRIBUTION) and not normalized[len(CORE_DISTRIBUTION):][:1].isalnum():
            return name
    return None


def discover_entries(group: str = hookspecs.PROVIDER_GROUP) -> list[tuple[str, ProviderEntry]]:
    """Every entry point of ``group`` in installed distributions, as (name, entry) pairs.

    The same distribution found twice on the path (e.g. an editable install and a copy) counts once.
    """
    found: list[tuple[str, ProviderEntry]] = []
    seen: set[tuple[str, str]] = set()
    for dist in importlib_metadata.distributions():
        package = dist.metadata["Name"] or "?"
        for ep in dist.entry_points:
            if ep.group != group or (package.lower(), ep.name) in seen:
                continue
            seen.add((package.lower(), ep.name))
            found.append(
                (
                    ep.name,
                    ProviderEntry(
                        name=ep.name,
                        package=package,
                        version=dist.version,
                        value=ep.value,
                        summary=dist.metadata["Summary"] or "",
                        requirement=_core_requirement(dist),
                        load=ep.load,
                    ),
                )
            )
    return found


class ProviderRegistry:
    """Knows the installed providers and loads them one at a time, on demand. Thread-safe.

    :param disabled: names never to import (added to those in ``SANDBOX_DISABLED_PLUGINS``).
    :param strict: raise on any broken plugin or unknown ``sandbox_*`` hook instead of reporting it
        (default from ``SANDBOX_PLUGINS_STRICT``).
    :param discover: whether to read installed entry points; tests and applications that manage
        their own providers pass ``False`` and call :meth:`register`.
    """

    def __init__(
        self,
        *,
        disabled: Iterable[str] = (),
        strict: bool | None = None,
        discover: bool = True,
    ) -> None:
        self.disabled = frozenset(disabled) | _names_from_env(os.environ.get(DISABLED_ENV))
        self.strict = _truthy(os.environ.get(STRICT_ENV)) if strict is None else strict
        self._discover = discover
        self._lock = threading.RLock()
        self._pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self._pm.add_hookspecs(hookspecs)
        self._entries: dict[str, list[ProviderEntry]] | None = None
        self._providers: dict[str, object] = {}
        self._failures: dict[str, ProviderError] = {}
        self._callers: dict[tuple[str, str], Any] = {}
        self._cross_cutting_loaded = False

    # -- metadata ---------------------------------------------------------------------------

    def _all_entries(self) -> dict[str, list[ProviderEntry]]:
        with self._lock:
            if self._entries is None:
                entries: dict[str, list[ProviderEntry]] = {}
                if self._discover:
                    for name, entry in discover_entries():
                        entries.setdefault(name, []).append(entry)
                self._entries = entries
            return self._entries

    def names(self) -> list[str]:
        """Names of the installed, enabled providers (from metadata; nothing is imported)."""
        return sorted(n for n in self._all_entries() if n not in self.disabled)

    def entry(self, name: str) -> ProviderEntry:
        """The metadata of provider ``name``; raises if unknown, disabled or declared twice."""
        entries = self._all_entries().get(name)
        if not entries or name in self.disabled:
            raise ProviderNotFoundError(name, self.names())
        if len(entries) > 1:
            raise DuplicateProviderError(name, [f"{e.package} {e.version}" for e in entries])
        return entries[0]

    # -- registration -----------------------------------------------------------------------

    def register(self, name: str, plugin: object, *, package: str = "(registered in process)", version: str = "") -> None:
        """Make ``plugin`` available as provider ``name`` without installing anything.

        This is how tests and applications add in-process providers; installed providers go
        through the same checks when they are loaded.
        """
        with self._lock:
            entries = self._all_entries()
            if name in entries:
                raise DuplicateProviderError(name, [f"{e.package} {e.version}" for e in entries[name]] + [package])
            self._register_provider(name, plugin)
            entries[name] = [ProviderEntry(name=name, package=package, version=version, value=repr(plugin))]

    def unregister(self, name: str) -> None:
        """Forget provider ``name`` (used by test fixtures to clean up)."""
        with self._lock:
            plugin = self._providers.pop(name, None)
            if plugin is not None:
                self._pm.unregister(plugin)
            self._failures.pop(name, None)
            if self._entries is not None:
                self._entries.pop(name, None)
            self._callers.clear()

    def _register_provider(self, name: str, plugin: object) -> None:
        if inspect.isclass(plugin):
            plugin = plugin()
        missing = [hook for hook in hookspecs.REQUIRED_HOOKS if not hasattr(plugin, hook)]
        if missing:
            raise TypeError(f"it does not implement the required hook(s) {', '.join(missing)}")
        if self._pm.is_registered(plugin):
            raise TypeError("the same plugin object is already registered under another name")
        self._register_whole(plugin, f"provider:{name}")
        try:
            if self.strict:
                self._check_unknown_hooks(plugin)
        except Exception:
            self._pm.unregister(plugin)
            raise
        self._providers[name] = plugin
        self._callers.clear()

    def _register_whole(self, plugin: object, name: str) -> None:
        try:
            self._pm.register(plugin, name=name)
        except Exception:
            # pluggy < 1.7 keeps the hooks it added before one failed validation.
            if self._pm.get_plugin(name) is not None:
                self._pm.unregister(name=name)
            raise

    @staticmethod
    def _check_unknown_hooks(plugin: object) -> None:
        known = set(hookspecs.PROVIDER_HOOKS)
        unknown = sorted(attr for attr in dir(plugin) if attr.startswith("sandbox_") and attr not in known)
        if unknown:
            raise TypeError(f"it defines sandbox_* functions that match no hook (typo?): {', '.join(unknown)}")

    def add_plugin(self, plugin: object, name: str) -> None:
        """Register a cross-cutting plugin: it may wrap provider hooks, never implement them."""
        with self._lock:
            for hook in hookspecs.PROVIDER_HOOKS:
                function = getattr(plugin, hook, None)
                if function is None:
                    continue
                options = self._pm.parse_hookimpl_opts(plugin, hook)
                if options is None or not (options.get("wrapper") or options.get("hookwrapper")):
                    raise TypeError(
                        f"cross-cutting plugin {name!r} implements {hook} directly; "
                        "plugins other than providers may only use hook wrappers"
                    )
            self._register_whole(plugin, f"plugin:{name}")
            self._callers.clear()

    def remove_plugin(self, name: str) -> None:
        with self._lock:
            plugin = self._pm.get_plugin(f"plugin:{name}")
            if plugin is not None:
                self._pm.unregister(plugin)
                self._callers.clear()

    def _load_cross_cutting(self) -> None:
        """Register installed cross-cutting plugins (group ``sandbox_core.plugins``) once."""
        if self._cross_cutting_loaded:
            return
        self._cross_cutting_loaded = True
        if not self._discover:
            return
        for name, entry in discover_entries(hookspecs.PLUGIN_GROUP):
            if name in self.disabled or entry.load is None:
                continue
            try:
                plugin = entry.load()
                self.add_plugin(plugin() if inspect.isclass(plugin) else plugin, name)
            except Exception as exc:  # one broken plugin must not break execution
                if self.strict:
                    raise
                self._failures[f"plugin:{name}"] = ProviderLoadError(name, entry.package, entry.version, _describe(exc))

    # -- loading ----------------------------------------------------------------------------

    def load(self, name: str) -> object:
        """Import and register provider ``name`` (once) and return its plugin object."""
        with self._lock:
            if name in self._providers:
                return self._providers[name]
            if name in self._failures:
                raise self._failures[name]
            entry = self.entry(name)
            self._load_cross_cutting()
            try:
                incompatible = self._incompatibility(entry)
                if incompatible:
                    raise TypeError(incompatible)
                assert entry.load is not None
                self._register_provider(name, entry.load())
            except Exception as exc:
                failure = ProviderLoadError(name, entry.package, entry.version, _describe(exc))
                if self.strict:
                    raise failure from exc
                self._failures[name] = failure
                raise failure from exc
            return self._providers[name]

    @staticmethod
    def _incompatibility(entry: ProviderEntry) -> str:
        if not entry.requirement:
            return ""
        from packaging.requirements import InvalidRequirement, Requirement

        try:
            requirement = Requirement(entry.requirement)
        except InvalidRequirement:
            return ""
        version = _core_version()
        if requirement.specifier and not requirement.specifier.contains(version, prereleases=True):
            return f"it requires {requirement}, but sandbox-core {version} is installed"
        return ""

    def hook(self, name: str, hook_name: str) -> Any:
        """A hook caller that reaches provider ``name``'s implementation plus hook wrappers only."""
        self.load(name)
        with self._lock:
            key = (name, hook_name)
            if key not in self._callers:
                others = [p for n, p in self._providers.items() if n != name]
                self._callers[key] = self._pm.subset_hook_caller(hook_name, remove_plugins=others)
            return self._callers[key]

    def has_hook(self, name: str, hook_name: str) -> bool:
        return hasattr(self.load(name), hook_name)

    # -- listing ----------------------------------------------------------------------------

    def statuses(self, *, verify: bool = True) -> list[ProviderStatus]:
        """One row per installed provider name; with ``verify`` each is loaded (in isolation) to check it."""
        rows: list[ProviderStatus] = []
        for name, entries in sorted(self._all_entries().items()):
            first = entries[0]
            base = ProviderStatus(
                name=name,
                package=first.package,
                version=first.version,
                state=ProviderState.AVAILABLE,
                description=first.summary,
            )
            if name in self.disabled:
                rows.append(attrs.evolve(base, state=ProviderState.DISABLED, error=f"disabled by {DISABLED_ENV}"))
                continue
            if len(entries) > 1:
                error = str(DuplicateProviderError(name, [f"{e.package} {e.version}" for e in entries]))
                for entry in entries:
                    rows.append(
                        ProviderStatus(
                            name=name,
                            package=entry.package,
                            version=entry.version,
                            state=ProviderState.DUPLICATE,
                            error=error,
                            description=entry.summary,
                        )
                    )
                continue
            incompatible = self._incompatibility(first)
            if incompatible:
                rows.append(attrs.evolve(base, state=ProviderState.INCOMPATIBLE, error=incompatible))
                continue
            if not verify and name not in self._providers:
                rows.append(base)
                continue
            try:
                self.load(name)
                info = self.provider_info(name)
            except Exception as exc:  # a provider's own hook may fail in any way; list it as broken
                if self.strict:
                    raise
                if isinstance(exc, ProviderLoadError):
                    error = exc.error
                elif isinstance(exc, ProviderError):
                    error = str(exc)
                else:
                    error = f"sandbox_provider_info failed: {_describe(exc)}"
                rows.append(attrs.evolve(base, state=ProviderState.BROKEN, error=error))
                continue
            rows.append(
                attrs.evolve(
                    base,
                    state=ProviderState.LOADED,
                    description=info.description or first.summary,
                    languages=info.languages,
                    tags=info.tags,
                )
            )
        return rows

    def provider_info(self, name: str) -> Any:
        from sandbox_core.model import ProviderInfo

        info = self.hook(name, "sandbox_provider_info")() if self.has_hook(name, "sandbox_provider_info") else None
        if info is None:
            return ProviderInfo(description=self.entry(name).summary)
        if not isinstance(info, ProviderInfo):
            raise ProviderLoadError(name, self.entry(name).package, self.entry(name).version, "sandbox_provider_info did not return a ProviderInfo")
        return info

    def failures(self) -> Mapping[str, ProviderError]:
        """Providers and plugins that failed to load so far, by name."""
        return dict(self._failures)

    # -- shutdown ---------------------------------------------------------------------------

    def shutdown(self, names: Iterable[str] | None = None) -> None:
        """Call ``sandbox_shutdown`` of the loaded providers (or of ``names`` among them).

        Providers not loaded yet hold nothing and are not imported for this. A provider whose
        shutdown fails is logged and the others still run theirs.
        """
        with self._lock:
            loaded = dict(self._providers)
        wanted = loaded if names is None else {n: loaded[n] for n in names if n in loaded}
        for name, plugin in sorted(wanted.items()):
            if not hasattr(plugin, "sandbox_shutdown"):
                continue
            try:
                self.hook(name, "sandbox_shutdown")(provider_name=name)
            except Exception:
                log.warning("provider %r failed to shut down", name, exc_info=True)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


_default_registry: ProviderRegistry | None = None
_default_lock = threading.Lock()


def get_registry() -> ProviderRegistry:
    """The process-wide registry of installed providers, created on first use (never at import)."""
    global _default_registry
    with _default_lock:
        if _default_registry is None:
            _default_registry = ProviderRegistry()
            # Pooled backend sandboxes cost money while they live: release them when Python exits.
            atexit.register(_default_registry.shutdown)
        return _default_registry
