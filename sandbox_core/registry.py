"""Provider discovery and loading: entry points, isolation of broken plugins, per-provider calls.

Listing providers reads installed-package metadata only. A provider's code is imported the first
time it is needed (to execute, validate, check health or verify it for ``sandbox providers``),
each entry point on its own: a provider that fails to import or register is reported with its
name, package, version and error and never affects the others. Calls meant for one provider reach
that provider's hook implementations only, plus the hook wrappers of cross-cutting plugins.
"""

from __future__ import annotations

import atexit
import difflib
import enum
import importlib.metadata as importlib_metadata
import inspect
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import attrs
import pluggy

from sandbox_core import hookspecs
from sandbox_core.errors import (
    DuplicateProviderError,
    FieldProblem,
    NotSupportedError,
    PluginLoadError,
    ProviderContractError,
    ProviderDisabledError,
    ProviderError,
    ProviderIncompatibleError,
    ProviderLoadError,
    ProviderNotFoundError,
    RequiredPluginError,
)
from sandbox_core.model import ExecutionRequest, ExecutionResult, HealthStatus, ProviderInfo
from sandbox_core.schema import ConfigSchema
from sandbox_core.sessions import FileInfo, SessionSpec
from sandbox_core.streaming import OutputCallback

log = logging.getLogger(__name__)

DISABLED_ENV = "SANDBOX_DISABLED_PLUGINS"
"""Comma-separated names of providers or plugins to ignore without importing them."""
STRICT_ENV = "SANDBOX_PLUGINS_STRICT"
"""When truthy, sloppy plugins are refused (for plugin authors): a ``sandbox_*`` function that is
not marked ``@hookimpl`` or matches no hook marks its provider broken, and a broken cross-cutting
plugin refuses every execution (as if it were listed in ``SANDBOX_REQUIRED_PLUGINS``)."""
REQUIRED_PLUGINS_ENV = "SANDBOX_REQUIRED_PLUGINS"
"""Comma-separated names of cross-cutting plugins (a policy plugin, say) without which nothing may
run: while one of them is missing, disabled or broken every execution is refused (fails closed).
Other cross-cutting plugins that break are logged and listed, and executions go on without them."""

CORE_DISTRIBUTION = "sandbox-core"
MAX_HANDLE_CHARS = 512
"""Longest session handle a provider may return."""

_T = TypeVar("_T")


class ProviderState(str, enum.Enum):
    """Where a provider stands, as ``sandbox providers`` shows it."""

    AVAILABLE = "available"  # installed, not imported yet
    LOADED = "loaded"  # imported and registered
    BROKEN = "broken"  # failed to import, register or declare its schema
    INCOMPATIBLE = "incompatible"  # requires a sandbox-core version other than the one installed
    DUPLICATE = "duplicate"  # more than one package declares this name
    DISABLED = "disabled"  # switched off by SANDBOX_DISABLED_PLUGINS
    NOT_INSTALLED = "not_installed"  # selected in the settings, but no installed package provides it


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
    :param strict: refuse sloppy plugins instead of logging a warning (default from
        ``SANDBOX_PLUGINS_STRICT``, see :data:`STRICT_ENV`).
    :param required_plugins: cross-cutting plugins without which nothing may run (added to those
        in ``SANDBOX_REQUIRED_PLUGINS``, see :data:`REQUIRED_PLUGINS_ENV`).
    :param discover: whether to read installed entry points; tests and applications that manage
        their own providers pass ``False`` and call :meth:`register`.
    """

    def __init__(
        self,
        *,
        disabled: Iterable[str] = (),
        strict: bool | None = None,
        required_plugins: Iterable[str] = (),
        discover: bool = True,
    ) -> None:
        from_env = _names_from_env(os.environ.get(DISABLED_ENV))
        self._disabled_by = {name: DISABLED_ENV for name in from_env}
        self._disabled_by.update({name: "the registry's disabled list" for name in disabled})
        self.disabled = frozenset(self._disabled_by)
        self.strict = _truthy(os.environ.get(STRICT_ENV)) if strict is None else strict
        self.required_plugins = frozenset(required_plugins) | _names_from_env(os.environ.get(REQUIRED_PLUGINS_ENV))
        self._discover = discover
        self._lock = threading.RLock()
        self._pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self._pm.add_hookspecs(hookspecs)
        self._entries: dict[str, list[ProviderEntry]] | None = None
        self._providers: dict[str, object] = {}
        self._implemented: dict[str, frozenset[str]] = {}
        self._failures: dict[str, ProviderError] = {}
        self._plugins: dict[str, ProviderStatus] = {}
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
        if entries and name in self.disabled:
            raise ProviderDisabledError(name, self.names(), self._disabled_by[name])
        if not entries:
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
            self._implemented.pop(name, None)
            self._failures.pop(name, None)
            if self._entries is not None:
                self._entries.pop(name, None)
            self._callers.clear()

    def _register_provider(self, name: str, plugin: object) -> None:
        if inspect.isclass(plugin):
            plugin = plugin()
        if self._pm.is_registered(plugin):
            raise TypeError("the same plugin object is already registered under another name")
        marked = {attr for attr in dir(plugin) if self._pm.parse_hookimpl_opts(plugin, attr) is not None}
        unmarked = {
            attr for attr in dir(plugin) if attr.startswith("sandbox_") and attr not in marked and _is_function(plugin, attr)
        }
        missing = [_missing_hook(hook, marked, unmarked) for hook in hookspecs.REQUIRED_HOOKS if hook not in marked]
        if missing:
            raise TypeError("; ".join(missing))
        self._register_whole(plugin, f"provider:{name}")
        try:
            sloppy = self._sloppy_hooks(plugin, unmarked)
            if sloppy and self.strict:
                raise TypeError(f"{'; '.join(sloppy)} (refused because {STRICT_ENV} is on)")
        except Exception:
            self._pm.unregister(plugin)
            raise
        for problem in sloppy:
            log.warning("sandbox provider %r: %s", name, problem)
        self._providers[name] = plugin
        self._implemented[name] = frozenset(marked & set(hookspecs.PROVIDER_HOOKS))
        self._callers.clear()

    def _register_whole(self, plugin: object, name: str) -> None:
        try:
            self._pm.register(plugin, name=name)
        except Exception:
            # pluggy < 1.7 keeps the hooks it added before one failed validation.
            if self._pm.get_plugin(name) is not None:
                self._pm.unregister(name=name)
            raise

    def _sloppy_hooks(self, plugin: object, unmarked: set[str]) -> list[str]:
        """What a registered provider defines that the core will never call, each said in a line.

        Marked functions that match no hook specification are found the way pluggy's
        ``check_pending`` finds them (a hook caller without a spec); functions named like a hook
        but not marked are found by name, including near misses such as ``sandbox_exceute``.
        """
        problems = [
            f"{caller.name} is marked @hookimpl but matches no hook{_near_miss(caller.name)}"
            for caller in self._pm.get_hookcallers(plugin) or ()
            if not caller.has_spec() and not all(impl.optionalhook for impl in caller.get_hookimpls())
        ]
        for attr in sorted(unmarked):
            if attr in hookspecs.PROVIDER_HOOKS:
                problems.append(f"{attr} is not marked @hookimpl, so the core never calls it")
            elif _near_miss(attr):
                problems.append(f"{attr} is not a hook{_near_miss(attr)}")
        return sorted(problems)

    def add_plugin(self, plugin: object, name: str, *, package: str = "(registered in process)", version: str = "") -> None:
        """Register a cross-cutting plugin: it may wrap provider hooks, never implement them."""
        with self._lock:
            for hook in hookspecs.PROVIDER_HOOKS:
                if not hasattr(plugin, hook):
                    continue
                options = self._pm.parse_hookimpl_opts(plugin, hook)
                if options is None or not (options.get("wrapper") or options.get("hookwrapper")):
                    raise TypeError(
                        f"cross-cutting plugin {name!r} implements {hook} directly; "
                        "plugins other than providers may only use hook wrappers"
                    )
            self._register_whole(plugin, f"plugin:{name}")
            self._plugins[name] = ProviderStatus(name=name, package=package, version=version, state=ProviderState.LOADED)
            self._callers.clear()

    def remove_plugin(self, name: str) -> None:
        with self._lock:
            plugin = self._pm.get_plugin(f"plugin:{name}")
            if plugin is not None:
                self._pm.unregister(plugin)
                self._plugins.pop(name, None)
                self._callers.clear()

    def _load_cross_cutting(self) -> None:
        """Register installed cross-cutting plugins (group ``sandbox_core.plugins``) once.

        One that fails is logged as a warning and listed by :meth:`plugin_statuses`; executions go
        on without it unless it is required (see :data:`REQUIRED_PLUGINS_ENV`).
        """
        with self._lock:
            if self._cross_cutting_loaded:
                return
            self._cross_cutting_loaded = True
            if not self._discover:
                return
            for name, entry in discover_entries(hookspecs.PLUGIN_GROUP):
                row = ProviderStatus(name=name, package=entry.package, version=entry.version, state=ProviderState.DISABLED,
                                     description=entry.summary)
                if name in self.disabled:
                    self._plugins[name] = attrs.evolve(row, error=f"disabled by {self._disabled_by[name]}")
                    continue
                try:
                    assert entry.load is not None
                    plugin = entry.load()
                    plugin = plugin() if inspect.isclass(plugin) else plugin
                    self.add_plugin(plugin, name, package=entry.package, version=entry.version)
                except Exception as exc:  # one broken plugin must not break the others
                    failure = PluginLoadError(name, entry.package, entry.version, _describe(exc))
                    log.warning("%s", failure, exc_info=True)
                    self._failures[f"plugin:{name}"] = failure
                    self._plugins[name] = attrs.evolve(row, state=ProviderState.BROKEN, error=failure.error)

    def _check_required_plugins(self) -> None:
        """Refuse to go on while a plugin that must run is not running (fail closed)."""
        if not self.required_plugins and not self.strict:
            return
        for name in sorted(self.required_plugins):
            row = self._plugins.get(name)
            if row is None:
                raise RequiredPluginError(name, "is not installed")
            if row.state is not ProviderState.LOADED:
                raise RequiredPluginError(name, f"is {row.state.value}: {row.error}")
        if self.strict:
            for name, row in sorted(self._plugins.items()):
                if row.state is ProviderState.BROKEN:
                    raise RequiredPluginError(name, f"is broken ({STRICT_ENV} is on): {row.error}")

    # -- loading ----------------------------------------------------------------------------

    def load(self, name: str) -> object:
        """Import and register provider ``name`` (once) and return its plugin object."""
        with self._lock:
            self._load_cross_cutting()
            self._check_required_plugins()
            if name in self._providers:
                return self._providers[name]
            if name in self._failures:
                raise self._failures[name]
            entry = self.entry(name)
            incompatible = self._incompatibility(entry)
            if incompatible:
                failure: ProviderLoadError = ProviderIncompatibleError(name, entry.package, entry.version, incompatible)
                self._failures[name] = failure
                raise failure
            try:
                assert entry.load is not None
                self._register_provider(name, entry.load())
            except Exception as exc:
                failure = ProviderLoadError(name, entry.package, entry.version, _describe(exc))
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
        """A raw hook caller that reaches provider ``name``'s implementation plus hook wrappers only.

        Its results are not checked: the core calls providers through the typed methods below
        (:meth:`execute`, :meth:`health`, ...), which check what each hook returns.
        """
        self.load(name)
        return self._caller(name, hook_name)

    def _caller(self, name: str, hook_name: str) -> Any:
        """The hook caller of loaded provider ``name`` (cached until the set of plugins changes)."""
        with self._lock:
            key = (name, hook_name)
            if key not in self._callers:
                others = [p for n, p in self._providers.items() if n != name]
                self._callers[key] = self._pm.subset_hook_caller(hook_name, remove_plugins=others)
            return self._callers[key]

    def has_hook(self, name: str, hook_name: str) -> bool:
        """Whether provider ``name`` implements ``hook_name`` (marked ``@hookimpl``, not merely named so)."""
        self.load(name)
        return hook_name in self._implemented.get(name, frozenset())

    # -- typed calls: each hook's result is checked once, here ----------------------------------

    def config_schema(self, name: str) -> ConfigSchema:
        """Provider ``name``'s config schema."""
        return _expect(name, "sandbox_config_schema", self.hook(name, "sandbox_config_schema")(), ConfigSchema)

    def validate_config(self, name: str, config: Mapping[str, Any]) -> list[FieldProblem]:
        """The problems provider ``name``'s own checks find in a schema-checked ``config`` (none without the hook)."""
        if not self.has_hook(name, "sandbox_validate_config"):
            return []
        problems = self.hook(name, "sandbox_validate_config")(config=config, provider_name=name)
        if problems is None:
            return []
        if isinstance(problems, (str, bytes, Mapping)) or not isinstance(problems, Iterable):
            raise ProviderContractError(name, "sandbox_validate_config", problems, "a list of FieldProblem")
        checked = list(problems)
        for problem in checked:
            _expect(name, "sandbox_validate_config", problem, FieldProblem, what="a list of FieldProblem")
        return checked

    def health(self, name: str, config: Mapping[str, Any]) -> HealthStatus | None:
        """Provider ``name``'s health report, or ``None`` when it has no health check."""
        if not self.has_hook(name, "sandbox_health"):
            return None
        status = self.hook(name, "sandbox_health")(config=config, provider_name=name)
        return _expect(name, "sandbox_health", status, HealthStatus)

    def execute(
        self, name: str, request: ExecutionRequest, config: Mapping[str, Any], on_output: OutputCallback | None = None
    ) -> ExecutionResult:
        """Run ``request`` through provider ``name``; its exceptions propagate to the caller.

        ``on_output`` goes to the provider as it is: the core's guarantees about events (see
        :class:`~sandbox_core.streaming.OutputRelay`) are kept by :class:`~sandbox_core.client.SandboxClient`.
        """
        result = self.hook(name, "sandbox_execute")(request=request, config=config, provider_name=name, on_output=on_output)
        return _expect(name, "sandbox_execute", result, ExecutionResult)

    def upgrade_config(self, name: str, config: Mapping[str, Any], source: str) -> tuple[dict[str, Any], list[str]] | None:
        """Provider ``name``'s translation of a foreign or older ``config`` (``None``: nothing to translate)."""
        if not self.has_hook(name, "sandbox_upgrade_config"):
            return None
        result = self.hook(name, "sandbox_upgrade_config")(config=config, source=source, provider_name=name)
        if result is None:
            return None
        pair = isinstance(result, tuple) and len(result) == 2
        if not (pair and isinstance(result[0], Mapping) and isinstance(result[1], (list, tuple))):
            raise ProviderContractError(name, "sandbox_upgrade_config", result, "None or a (config dict, list of notes) pair")
        return dict(result[0]), [str(note) for note in result[1]]

    def provider_info(self, name: str) -> ProviderInfo:
        """What provider ``name`` says about itself (from its package summary without the hook)."""
        if not self.has_hook(name, "sandbox_provider_info"):
            return ProviderInfo(description=self.entry(name).summary)
        info = self.hook(name, "sandbox_provider_info")()
        if info is None:
            return ProviderInfo(description=self.entry(name).summary)
        return _expect(name, "sandbox_provider_info", info, ProviderInfo)

    # -- typed calls of the session hooks (added in 0.2) ------------------------------------

    def _session_hook(self, name: str, hook_name: str) -> Any:
        """The caller of session hook ``hook_name``; :class:`NotSupportedError` when the provider lacks it."""
        if not self.has_hook(name, hook_name):
            raise NotSupportedError(name, "sessions")
        return self.hook(name, hook_name)

    def session_open(self, name: str, spec: SessionSpec, config: Mapping[str, Any]) -> str:
        """Open a session on provider ``name``; its handle (printable ASCII, at most 512 characters)."""
        handle = self._session_hook(name, "sandbox_session_open")(spec=spec, config=config, provider_name=name)
        if not (isinstance(handle, str) and 0 < len(handle) <= MAX_HANDLE_CHARS and all("!" <= c <= "~" for c in handle)):
            raise ProviderContractError(name, "sandbox_session_open", handle, "a handle: printable ASCII, 1 to 512 characters")
        return handle

    def session_execute(
        self,
        name: str,
        handle: str,
        request: ExecutionRequest,
        config: Mapping[str, Any],
        on_output: Callable[[Any], None] | None = None,
    ) -> ExecutionResult:
        """Run ``request`` in session ``handle`` of provider ``name``; its exceptions propagate."""
        result = self._session_hook(name, "sandbox_session_execute")(
            handle=handle, request=request, config=config, provider_name=name, on_output=on_output
        )
        return _expect(name, "sandbox_session_execute", result, ExecutionResult)

    def session_upload(self, name: str, handle: str, path: str, data: bytes, config: Mapping[str, Any]) -> None:
        """Write a file into session ``handle``'s working folder."""
        result = self._session_hook(name, "sandbox_session_upload")(
            handle=handle, path=path, data=data, config=config, provider_name=name
        )
        if result is not None:
            raise ProviderContractError(name, "sandbox_session_upload", result, "None")

    def session_download(self, name: str, handle: str, path: str, config: Mapping[str, Any]) -> bytes:
        """Read a file of session ``handle``'s working folder."""
        data = self._session_hook(name, "sandbox_session_download")(handle=handle, path=path, config=config, provider_name=name)
        if isinstance(data, (bytearray, memoryview)):
            data = bytes(data)
        return _expect(name, "sandbox_session_download", data, bytes)

    def session_list_files(self, name: str, handle: str, config: Mapping[str, Any]) -> list[FileInfo]:
        """The files of session ``handle``'s working folder."""
        files = self._session_hook(name, "sandbox_session_list_files")(handle=handle, config=config, provider_name=name)
        if isinstance(files, (str, bytes, Mapping)) or not isinstance(files, Sequence):
            raise ProviderContractError(name, "sandbox_session_list_files", files, "a list of FileInfo")
        return [_expect(name, "sandbox_session_list_files", f, FileInfo, what="a list of FileInfo") for f in files]

    def session_close(self, name: str, handle: str, config: Mapping[str, Any]) -> None:
        """Destroy session ``handle`` (idempotent)."""
        result = self._session_hook(name, "sandbox_session_close")(handle=handle, config=config, provider_name=name)
        if result is not None:
            raise ProviderContractError(name, "sandbox_session_close", result, "None")

    # -- listing ----------------------------------------------------------------------------

    def statuses(self, *, verify: bool = True) -> list[ProviderStatus]:
        """One row per installed provider name; with ``verify`` each is loaded (in isolation) to check it.

        A provider that fails to load is listed as broken with the reason, in strict mode too.
        """
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
                rows.append(attrs.evolve(base, state=ProviderState.DISABLED, error=f"disabled by {self._disabled_by[name]}"))
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

    def plugin_statuses(self) -> list[ProviderStatus]:
        """One row per cross-cutting plugin (installed or added in process): loaded, broken or disabled."""
        with self._lock:
            self._load_cross_cutting()
            return [row for _, row in sorted(self._plugins.items())]

    def failures(self) -> Mapping[str, ProviderError]:
        """Providers and plugins (``plugin:NAME``) that failed to load so far, by name."""
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
        for name in sorted(wanted):
            if "sandbox_shutdown" not in self._implemented.get(name, frozenset()):
                continue
            try:
                # Not through load(): a provider must release its sandboxes even while a
                # required plugin is broken and executions are refused.
                self._caller(name, "sandbox_shutdown")(provider_name=name)
            except Exception:
                log.warning("provider %r failed to shut down", name, exc_info=True)


def _describe(exc: BaseException) -> str:
    """``Type: message`` on one line; for pluggy's multi-line validation errors, the lines that say what is wrong."""
    if isinstance(exc, pluggy.PluginValidationError):
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        definition = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("hookimpl definition:")), "")
        return f"{type(exc).__name__}: {lines[-1]}" + (f" (in {definition})" if definition else "")
    return f"{type(exc).__name__}: {exc}"


def _is_function(plugin: object, attr: str) -> bool:
    """Whether ``plugin.attr`` is a function or method (not a module, class or constant it imported)."""
    return inspect.isroutine(inspect.getattr_static(plugin, attr, None)) or inspect.isroutine(getattr(plugin, attr, None))


def _misspelt(name: str, candidates: Iterable[str]) -> str | None:
    """The one of ``candidates`` that ``name`` looks like a misspelling of (a letter or two off), if any."""
    close = [c for c in candidates if c != name and abs(len(c) - len(name)) <= 2]
    found = difflib.get_close_matches(name, close, n=1, cutoff=0.85)
    return found[0] if found else None


def _near_miss(name: str) -> str:
    """`` (did you mean sandbox_execute?)`` when ``name`` looks like a misspelt hook name, else ""."""
    hook = _misspelt(name, hookspecs.PROVIDER_HOOKS)
    return f" (did you mean {hook}?)" if hook else ""


def _missing_hook(hook: str, marked: set[str], unmarked: set[str]) -> str:
    """Why required hook ``hook`` counts as missing, naming what the provider has instead."""
    if hook in unmarked:
        return f"the required hook {hook} is defined but not marked @hookimpl"
    look_alike = _misspelt(hook, sorted((marked | unmarked) - set(hookspecs.PROVIDER_HOOKS)))
    if look_alike:
        return f"it does not implement the required hook {hook} ({look_alike} looks like a misspelling of it)"
    return f"it does not implement the required hook {hook}"


def _expect(provider: str, hook: str, value: Any, expected: type[_T], *, what: str = "") -> _T:
    """``value`` if it is an ``expected``; else a :class:`ProviderContractError` naming the provider and hook."""
    if not isinstance(value, expected):
        raise ProviderContractError(provider, hook, value, what or expected.__name__)
    return value


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
