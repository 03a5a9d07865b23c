'''The provider contract: pluggy hook specifications every sandbox provider implements.

This module *is* the contract (docs/writing-a-provider.md walks through it). A provider is any
importable object (usually a module) with functions marked ``@hookimpl``, published under the
entry-point group ``sandbox_core.providers``; the entry point's name is the provider's name. The
core calls a provider's hooks only when that provider is the one asked for: an implementation
never has to check "is this call for me?". Cross-cutting plugins (audit, metrics, policy) see
every call through hook *wrappers* (``@hookimpl(wrapper=True)``).

Rules every hook shares:

- Only functions marked ``@hookimpl`` count; an unmarked ``sandbox_*`` function is never called
  (a warning names it; ``SANDBOX_PLUGINS_STRICT=1`` marks the provider broken instead).
- An implementation takes any subset of its spec's arguments, by name: ``sandbox_health(config)``
  and ``sandbox_health(config, provider_name)`` both implement :func:`sandbox_health`.
- What a hook returns is checked where it leaves the provider; another type is reported as
  ``provider 'x' returned a dict from sandbox_health, expected HealthStatus``.
- :data:`REQUIRED_HOOKS` must be implemented; :func:`sandbox_health` is optional to pluggy, but a
  provider without it is reported unhealthy, so implement it too.

A whole provider, end to end (``pyproject.toml`` declares
``[project.entry-points."sandbox_core.providers"] echo = "echo_provider"``)::

    from sandbox_core import ExecutionResult, HealthStatus, hookimpl
    from sandbox_core.schema import ConfigField, ConfigSchema

    @hookimpl
    def sandbox_config_schema():
        return ConfigSchema([ConfigField("greeting", "string", default="hi")])

    @hookimpl
    def sandbox_execute(request, config):
        return ExecutionResult(status="success", stdout=config["greeting"], exit_code=0)

    @hookimpl
    def sandbox_health(config):
        return HealthStatus(healthy=True, message="always ready")
'''

# The specs below have docstrings for bodies, the pluggy way: pluggy reads their names,
# signatures and docstrings and never calls them, so their return types describe what an
# implementation returns, not what these bodies do.
# mypy: disable-error-code="empty-body"

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pluggy

from sandbox_core.errors import FieldProblem
from sandbox_core.model import ExecutionRequest, ExecutionResult, HealthStatus, ProviderInfo
from sandbox_core.schema import ConfigSchema
from sandbox_core.sessions import FileInfo, SessionSpec
from sandbox_core.streaming import OutputCallback

PROJECT_NAME = "sandbox_core"
PROVIDER_GROUP = "sandbox_core.providers"
"""Entry-point group of providers; the entry point name is the provider name."""
PLUGIN_GROUP = "sandbox_core.plugins"
"""Entry-point group of cross-cutting plugins (hook wrappers only: audit, metrics, policy)."""

_hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
"""Marks a function as an implementation of one of the hooks below."""

SESSION_HOOKS = (
    "sandbox_session_open",
    "sandbox_session_execute",
    "sandbox_session_upload",
    "sandbox_session_download",
    "sandbox_session_list_files",
    "sandbox_session_close",
)
"""The optional hooks of stateful sessions (added in 0.2); a provider declaring
``ProviderInfo(sessions=True)`` implements all six."""
PROVIDER_HOOKS = (
    "sandbox_provider_info",
    "sandbox_config_schema",
    "sandbox_validate_config",
    "sandbox_health",
    "sandbox_execute",
    "sandbox_upgrade_config",
    "sandbox_shutdown",
    *SESSION_HOOKS,
)
REQUIRED_HOOKS = ("sandbox_config_schema", "sandbox_execute")


@_hookspec(firstresult=True)
def sandbox_provider_info() -> ProviderInfo:
    """Describe the provider for listings and the admin page.

    :return: a :class:`~sandbox_core.model.ProviderInfo` (description, languages, tags).
        Optional: without it the package summary is used and both languages are assumed.

    Example::

        @hookimpl
        def sandbox_provider_info():
            return ProviderInfo(description="Runs code on my cluster", languages=["python"])

    Added in 0.1.
    """


@_hookspec(firstresult=True)
def sandbox_config_schema() -> ConfigSchema:
    """Declare the settings this provider accepts.

    The core derives the JSON Schema the admin page renders from it, validates and converts
    every config against it before any other hook sees the config, and masks its secret fields
    wherever a config is shown. Required.

    :return: a :class:`~sandbox_core.schema.ConfigSchema`.

    Example::

        @hookimpl
        def sandbox_config_schema():
            return ConfigSchema([
                ConfigField("endpoint", "url", label="Endpoint", required=True),
                ConfigField("api_key", "secret", label="API key", env="MY_API_KEY"),
            ])

    Added in 0.1.
    """


@_hookspec(firstresult=True)
def sandbox_validate_config(config: Mapping[str, Any], provider_name: str) -> Sequence[FieldProblem]:
    """Check a config beyond what its schema can express, without contacting any backend.

    :param config: the config, already converted and checked against the schema (secrets are
        :class:`~sandbox_core.schema.Secret` objects).
    :param provider_name: the name this provider is installed under.
    :return: the problems found, each naming its field; empty when the config is usable.

    Example::

        @hookimpl
        def sandbox_validate_config(config):
            if config["min_pool"] > config["max_pool"]:
                return [FieldProblem("min_pool", "must not exceed max_pool")]
            return []

    Added in 0.1.
    """


@_hookspec(firstresult=True)
def sandbox_health(config: Mapping[str, Any], provider_name: str) -> HealthStatus:
    """Report whether the provider can execute code right now, by asking its backend.

    Optional to load, but a provider without it is reported unhealthy ("has no health check"):
    ``sandbox health`` exits with 4 and the conformance kit's ``test_health`` fails.

    :param config: the validated config.
    :param provider_name: the name this provider is installed under.
    :return: a :class:`~sandbox_core.model.HealthStatus`; never raise for an unreachable
        backend, report it as unhealthy with a message an operator can act on.

    Example::

        @hookimpl
        def sandbox_health(config):  # provider_name left out: an implementation takes what it needs
            return HealthStatus(healthy=True, message="backend answered in 12 ms")

    Added in 0.1.
    """


@_hookspec(firstresult=True)
def sandbox_execute(
    request: ExecutionRequest, config: Mapping[str, Any], provider_name: str, on_output: OutputCallback | None
) -> ExecutionResult:
    """Run ``request.code`` in a sandbox and return the structured result.

    Providers reuse :mod:`sandbox_core.runner` so that arguments travel as JSON data, ``main()``'s
    return value comes back as ``value``, and statuses mean the same everywhere. A failure of the
    backend (unreachable, refused) is reported as a ``provider_error`` result or a
    :class:`~sandbox_core.errors.ProviderUnavailableError`, never as a user-code error. Any other
    exception is taken for a bug of the provider: the caller gets a ``provider_error`` result, and
    the traceback is logged at ERROR and kept (secrets masked) in ``metadata["traceback"]``.

    Called from several threads at once (one client serves many callers; async calls run in worker
    threads): keep per-execution state local and guard what executions share with a lock.

    Streaming (optional): a provider whose :class:`~sandbox_core.model.ProviderInfo` says
    ``streaming=True`` gets ``on_output``, a callable taking
    :class:`~sandbox_core.streaming.OutputEvent`, when the caller wants output as it arrives
    (``None`` otherwise). Call it with each piece of output as the host receives it, in order
    within each stream, coalesced (not one call per byte) and never beyond the output limit: the
    pieces of a stream, joined, must equal the result's ``stdout``/``stderr`` (the conformance kit
    checks this). It may be called from any thread; it never raises (the core guards it). To take
    it, name ``on_output`` in the implementation without a default value (pluggy passes no
    argument that has a default). Providers that do not stream leave it out: the core then emits
    the result's output as events after the execution.

    :param request: what to run (code, language, timeout, arguments).
    :param config: the validated config.
    :param provider_name: the name this provider is installed under.
    :param on_output: where to send output events as they arrive, or ``None`` (see above).
    :return: an :class:`~sandbox_core.model.ExecutionResult`.

    Example::

        @hookimpl
        def sandbox_execute(request, config):
            return ExecutionResult(status="success", stdout="hello\\n", exit_code=0)

    A streaming provider (its ``sandbox_provider_info`` returns ``ProviderInfo(streaming=True)``)::

        @hookimpl
        def sandbox_execute(request, config, on_output):
            for line in ("hello\\n", "world\\n"):
                if on_output is not None:
                    on_output(OutputEvent("stdout", line))
            return ExecutionResult(status="success", stdout="hello\\nworld\\n", exit_code=0)

    Added in 0.1.
    """


@_hookspec(firstresult=True)
def sandbox_upgrade_config(
    config: Mapping[str, Any], source: str, provider_name: str
) -> tuple[dict[str, Any], list[str]] | None:
    """Translate a config written for another system or an older version into this provider's shape.

    ``sandbox config import-ragflow`` calls it with each row it imports; the result is then
    validated like any other config. Optional: without it configs are taken as they are.

    :param config: the raw config as the other system stored it (secrets in clear).
    :param source: where it comes from: ``"ragflow"``, or an older version such as ``"0.1"``.
    :param provider_name: the name this provider is installed under.
    :return: ``(new_config, notes)``, the raw config in this provider's current shape and
        human-readable notes on keys renamed or dropped (never containing secret values);
        ``None`` when there is nothing to translate.

    Example::

        @hookimpl
        def sandbox_upgrade_config(config, source):
            if source != "ragflow" or "url" not in config:
                return None
            new = {k: v for k, v in config.items() if k != "url"}
            new["endpoint"] = config["url"]
            return new, ["url: renamed to endpoint"]

    Added in 0.1.
    """


@_hookspec
def sandbox_shutdown(provider_name: str) -> None:
    """Release everything the provider holds in this process: pooled sandboxes, clients, threads.

    Providers that keep backend sandboxes alive between executions (a warm pool) must delete
    them here; a sandbox left behind keeps costing money until its backend reclaims it. The core
    calls this from :meth:`SandboxClient.close <sandbox_core.client.SandboxClient.close>` (for the
    providers that client used), :meth:`ProviderRegistry.shutdown
    <sandbox_core.registry.ProviderRegistry.shutdown>` and at interpreter exit. It may be called
    more than once, and executions may follow it: the provider then starts afresh. Optional.

    :param provider_name: the name this provider is installed under.

    Example::

        @hookimpl
        def sandbox_shutdown():  # provider_name left out: an implementation takes what it needs
            POOLS.shutdown()

    Added in 0.1.
    """


# -- sessions (added in 0.2) -------------------------------------------------------------------
#
# A session is an interpreter that keeps its names and files between executions. The core calls
# these hooks only for providers whose ``sandbox_provider_info`` says ``sessions=True``; others get
# a ``NotSupportedError`` from the client. A handle is the provider's opaque name for one session:
# printable ASCII, at most 512 characters, free of secrets, and enough for ANY process with the
# same config to reach the session (servers run several workers), e.g. "<sandbox id>/<context id>".
# A handle whose session is gone (closed, expired, killed for memory, backend restarted) makes
# execute/upload/download/list_files raise ``sandbox_core.errors.SessionGoneError``. File paths
# reaching these hooks are already checked by the core (:mod:`sandbox_core.files`): relative, no
# ``..``, no control characters, sizes bounded.


@_hookspec(firstresult=True)
def sandbox_session_open(spec: SessionSpec, config: Mapping[str, Any], provider_name: str) -> str:
    """Create a session on the backend and return its handle.

    The backend, not the client, must destroy the session after ``spec.idle_timeout`` seconds
    without a call and after ``spec.max_lifetime`` seconds in all, so that a client that vanishes
    leaves nothing behind for long. A backend that cannot take one more session raises
    :class:`~sandbox_core.errors.ProviderUnavailableError`.

    :param spec: the language, runtime and timeouts asked for (:class:`~sandbox_core.sessions.SessionSpec`).
    :param config: the validated config.
    :param provider_name: the name this provider is installed under.
    :return: the session's handle (see the rules above); the public session id is
        ``"<provider_name>:<handle>"``.

    Example::

        @hookimpl
        def sandbox_session_open(spec, config):
            sandbox = Backend(config).create(template=spec.runtime, timeout=spec.idle_timeout)
            return f"{sandbox.id}/{sandbox.new_context(spec.language).id}"

    Added in 0.2.
    """


@_hookspec(firstresult=True)
def sandbox_session_execute(
    handle: str,
    request: ExecutionRequest,
    config: Mapping[str, Any],
    provider_name: str,
    on_output: Callable[[Any], None] | None,
) -> ExecutionResult:
    """Run ``request.code`` in the session's persistent interpreter and return the result.

    Names defined by one execution are visible to the next; if the code defines ``main``,
    ``main(**request.arguments)`` is called and its value returned, as for ``sandbox_execute``.
    ``request.files`` are written into the working folder first. ``request.language`` and
    ``request.runtime`` are the session's. A timeout stops this execution and restarts the
    session's interpreter (its names are lost, its files kept): the result has status ``timeout``
    and ``metadata["session_restarted"] = True``. A memory-limit kill ends the session: the result
    has status ``memory_limit`` and later calls raise :class:`~sandbox_core.errors.SessionGoneError`.
    Each call restarts the idle clock.

    :param handle: what :func:`sandbox_session_open` returned (possibly in another process).
    :param request: what to run; ``timeout`` bounds this execution only.
    :param config: the validated config.
    :param provider_name: the name this provider is installed under.
    :param on_output: called with each piece of output as it arrives, for providers that stream
        (``None``: nobody listens). Implementations that do not stream leave it out.
    :return: an :class:`~sandbox_core.model.ExecutionResult`.
    :raises SessionGoneError: the session no longer exists.

    Example::

        @hookimpl
        def sandbox_session_execute(handle, request, config):
            sandbox_id, context_id = handle.split("/")
            reply = Backend(config).run(sandbox_id, context_id, request.code, timeout=request.timeout)
            return ExecutionResult(status="success", stdout=reply.stdout, exit_code=0)

    Added in 0.2.
    """


@_hookspec(firstresult=True)
def sandbox_session_upload(handle: str, path: str, data: bytes, config: Mapping[str, Any], provider_name: str) -> None:
    """Write ``data`` to ``path`` in the session's working folder (creating folders, replacing a file).

    :param handle: the session's handle.
    :param path: a checked name relative to the working folder (``data/input.csv``).
    :param data: the file's content.
    :param config: the validated config.
    :param provider_name: the name this provider is installed under.
    :raises SessionGoneError: the session no longer exists.

    Example::

        @hookimpl
        def sandbox_session_upload(handle, path, data, config):
            Backend(config).write_file(handle.split("/")[0], f"/home/user/{path}", data)

    Added in 0.2.
    """


@_hookspec(firstresult=True)
def sandbox_session_download(handle: str, path: str, config: Mapping[str, Any], provider_name: str) -> bytes:
    """Read the file ``path`` of the session's working folder (one its code wrote, or an upload).

    :param handle: the session's handle.
    :param path: a checked name relative to the working folder.
    :param config: the validated config.
    :param provider_name: the name this provider is installed under.
    :return: the file's content; a missing file raises ``FileNotFoundError``.
    :raises SessionGoneError: the session no longer exists.

    Example::

        @hookimpl
        def sandbox_session_download(handle, path, config):
            return Backend(config).read_file(handle.split("/")[0], f"/home/user/{path}")

    Added in 0.2.
    """


@_hookspec(firstresult=True)
def sandbox_session_list_files(handle: str, config: Mapping[str, Any], provider_name: str) -> Sequence[FileInfo]:
    """List the regular files of the session's working folder, recursively.

    :param handle: the session's handle.
    :param config: the validated config.
    :param provider_name: the name this provider is installed under.
    :return: one :class:`~sandbox_core.sessions.FileInfo` per file, paths relative to the folder.
    :raises SessionGoneError: the session no longer exists.

    Example::

        @hookimpl
        def sandbox_session_list_files(handle, config):
            entries = Backend(config).list_dir(handle.split("/")[0], "/home/user", recursive=True)
            return [FileInfo(path=e.relative_path, size=e.size) for e in entries if e.is_file]

    Added in 0.2.
    """


@_hookspec(firstresult=True)
def sandbox_session_close(handle: str, config: Mapping[str, Any], provider_name: str) -> None:
    """Destroy the session and everything it holds on the backend.

    Idempotent: closing a session that is already gone (closed, expired, unknown) is not an error.

    :param handle: the session's handle.
    :param config: the validated config.
    :param provider_name: the name this provider is installed under.

    Example::

        @hookimpl
        def sandbox_session_close(handle, config):
            Backend(config).kill(handle.split("/")[0], missing_ok=True)

    Added in 0.2.
    """
