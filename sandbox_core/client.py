"""The core API agents call: :func:`execute_code`, :func:`aexecute_code` and :class:`SandboxClient`.

The default client reads the active provider and its config from the settings store. It keeps a
validated snapshot of them and, at most once per ``refresh_interval`` seconds, asks the store for
its version counter (one indexed read): a config saved by another process is picked up without a
restart, and executions in between cost no database round trip. Applications that manage their
own settings pass an explicit store, provider and/or config.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
import traceback
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from sandbox_core.audit import AuditLog
from sandbox_core.errors import (
    ConfigValidationError,
    FieldProblem,
    NotSupportedError,
    ProviderError,
    ProviderUnavailableError,
    SandboxError,
)
from sandbox_core.failures import FailureKind, provider_failure
from sandbox_core.files import check_configured_limits
from sandbox_core.model import ExecutionRequest, ExecutionResult, HealthStatus, ProviderInfo
from sandbox_core.redaction import scrub, scrubber
from sandbox_core.registry import ProviderRegistry, get_registry
from sandbox_core.schema import ConfigSchema, secret_values
from sandbox_core.sessions import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_LIFETIME,
    AsyncSessionOpener,
    Session,
    SessionSpec,
)
from sandbox_core.streaming import (
    OutputCallback,
    OutputEvent,
    OutputRelay,
    aevents_then_result,
    events_then_result,
)
from sandbox_core.timeouts import effective_timeout

if TYPE_CHECKING:
    from sandbox_core.settings import SettingsStore

AUDIT_PLUGIN_NAME = "audit"

log = logging.getLogger(__name__)


@attrs.frozen
class _Snapshot:
    """The provider and validated config in force, and when the store was last asked."""

    version: int | None
    provider: str
    config: Mapping[str, Any]
    audit: Mapping[str, Any]
    checked_at: float


class SandboxClient:
    """Runs code through one provider chosen by settings or by the caller. Thread-safe.

    :param settings: where the active provider and configs live; the default store
        (``SANDBOX_DATABASE_URL`` or the embedded SQLite file) when neither ``provider`` nor
        ``config`` make it unnecessary.
    :param provider: use this provider instead of the active one.
    :param config: use this config (validated here) instead of the stored one.
    :param registry: where providers come from; the process-wide registry by default.
    :param refresh_interval: seconds between checks for changed settings.
    """

    def __init__(
        self,
        *,
        settings: SettingsStore | None = None,
        provider: str | None = None,
        config: Mapping[str, Any] | None = None,
        registry: ProviderRegistry | None = None,
        refresh_interval: float = 2.0,
    ) -> None:
        self.registry = registry or get_registry()
        self._explicit_provider = provider
        self._explicit_config = dict(config) if config is not None else None
        if settings is None and (provider is None or config is None):
            from sandbox_core.settings import SettingsStore

            settings = SettingsStore()
        self.settings = settings
        self.refresh_interval = refresh_interval
        self._lock = threading.Lock()
        self._snapshot: _Snapshot | None = None
        self._schemas: dict[str, ConfigSchema] = {}
        self._audit: AuditLog | None = None
        self._used: set[str] = set()
        self._sessions: dict[str, Session] = {}

    # -- configuration ----------------------------------------------------------------------

    def config_schema(self, provider: str) -> ConfigSchema:
        """The config schema provider ``provider`` declares (cached)."""
        schema = self._schemas.get(provider)
        if schema is None:
            schema = self._schemas[provider] = self.registry.config_schema(provider)
        return schema

    def validate_config(self, provider: str, config: Mapping[str, Any] | None) -> dict[str, Any]:
        """Convert and check ``config`` by the provider's schema and its own offline checks.

        Returns the converted config (secrets as :class:`~sandbox_core.schema.Secret`); raises
        :class:`ConfigValidationError` naming each refused field.
        """
        schema = self.config_schema(provider)
        try:
            converted = schema.validate(config, provider=provider)
            problems = self.registry.validate_config(provider, converted)
        except ConfigValidationError as exc:
            problems = list(exc.problems)
        if problems:
            # A provider's checks may quote the value they refuse: no secret comes back in a message.
            hide = scrubber(schema.secrets_in(config) if isinstance(config, Mapping) else [])
            raise ConfigValidationError(provider, [FieldProblem(p.field, hide(p.message)) for p in problems]) from None
        return converted

    def stored_config(self, provider: str) -> dict[str, Any]:
        """Provider ``provider``'s saved config, secrets decrypted (:mod:`sandbox_core.settings.secrets`)."""
        from sandbox_core.settings.secrets import decrypt_secrets

        assert self.settings is not None
        return decrypt_secrets(self.settings.provider_config(provider), self.config_schema(provider).secret_fields)

    def _current(self) -> _Snapshot:
        snapshot = self._snapshot
        now = time.monotonic()
        if snapshot is not None and (self.settings is None or now - snapshot.checked_at < self.refresh_interval):
            return snapshot
        with self._lock:
            snapshot = self._snapshot
            if snapshot is not None and (self.settings is None or now - snapshot.checked_at < self.refresh_interval):
                return snapshot
            version = self.settings.version() if self.settings is not None else None
            if snapshot is not None and version == snapshot.version:
                snapshot = attrs.evolve(snapshot, checked_at=now)
            else:
                snapshot = self._read(version, now)
                self._apply_audit(snapshot.audit)
            self._snapshot = snapshot
            return snapshot

    def _read(self, version: int | None, now: float) -> _Snapshot:
        store = self.settings
        provider = self._explicit_provider
        if provider is None:
            assert store is not None
            provider = store.active_provider(installed=self.registry.names())
        raw = self._explicit_config
        if raw is None:
            raw = self.stored_config(provider)
        audit = store.audit_settings() if store is not None else {"enabled": False}
        config = self.validate_config(provider, raw)
        return _Snapshot(version=version, provider=provider, config=config, audit=audit, checked_at=now)

    def _apply_audit(self, audit: Mapping[str, Any]) -> None:
        if audit.get("enabled"):
            if self._audit is None:
                self._audit = AuditLog()
                self.registry.remove_plugin(AUDIT_PLUGIN_NAME)
                self.registry.add_plugin(self._audit, AUDIT_PLUGIN_NAME)
            self._audit.path = audit.get("path") or None
        elif self._audit is not None:
            self.registry.remove_plugin(AUDIT_PLUGIN_NAME)
            self._audit = None

    @property
    def provider(self) -> str:
        """The name of the provider executions go to right now."""
        return self._current().provider

    # -- operations -------------------------------------------------------------------------

    def execute(
        self,
        code: str,
        language: str = "python",
        timeout: float | None = None,
        arguments: Mapping[str, Any] | None = None,
        *,
        requested_by: str | None = None,
        runtime: str | None = None,
        network: Sequence[str] = (),
        files: Mapping[str, bytes] | None = None,
        on_output: OutputCallback | None = None,
    ) -> ExecutionResult:
        """Run ``code`` and return its :class:`ExecutionResult`.

        ``timeout`` in seconds; None takes the provider's default. A timeout over the provider's
        maximum is capped, and every result says the seconds applied in ``metadata["timeout"]``
        (see :mod:`sandbox_core.timeouts`).
        Invalid requests raise ``ValueError`` naming the field; configuration problems raise
        :class:`~sandbox_core.errors.ConfigurationError`. A failure of the provider's backend
        comes back as a result with status ``provider_error`` and a message free of secrets.

        ``files`` (name to content) are put into the working folder before the code runs; a
        provider that cannot do that raises :class:`~sandbox_core.errors.NotSupportedError`.

        ``on_output`` is called with each :class:`~sandbox_core.streaming.OutputEvent` while the
        code runs (providers that stream) or after it ended (the others); either way, once this
        returns, the events of each stream joined equal the result's ``stdout``/``stderr``. A
        callback that raises is logged and not called again; the execution and its result are
        not affected (see :class:`~sandbox_core.streaming.OutputRelay`).
        """
        request = ExecutionRequest(
            code=code,
            language=language,
            timeout=timeout,
            arguments=dict(arguments or {}),
            requested_by=requested_by,
            runtime=runtime,
            network=network,
            files=dict(files or {}),
        )
        snapshot = self._current()
        check_configured_limits(request.files, snapshot.config)
        self._used.add(snapshot.provider)
        try:
            info = self._check_capabilities(
                snapshot.provider, runtime=runtime, files=bool(request.files), network=bool(request.network)
            )
        except ProviderError as exc:  # its own description is broken: the execution is a provider_error
            return self._guarded(snapshot, functools.partial(_reraise, exc))
        return self._run(
            snapshot, info, request, on_output,
            lambda request, forward: self.registry.execute(snapshot.provider, request, snapshot.config, forward),
        )

    def _check_capabilities(
        self, provider: str, *, runtime: str | None = None, files: bool = False, sessions: bool = False, network: bool = False
    ) -> ProviderInfo:
        """``provider``'s info; a request that needs what it does not declare is refused rather than ignored."""
        info = self.registry.provider_info(provider)
        if runtime is not None and not info.runtimes:
            raise ValueError(
                f"runtime: provider {provider!r} offers no runtimes, so {runtime!r} cannot be honoured; "
                "leave the runtime unset"
            )
        if network and not info.egress:
            raise ValueError(
                f"network: provider {provider!r} cannot enforce a network allowlist, so none is sent; "
                "leave network empty (no network) or use a provider that enforces one"
            )
        if files and not info.files:
            raise NotSupportedError(provider, "input files")
        if sessions and not (info.sessions and self.registry.has_hook(provider, "sandbox_session_open")):
            raise NotSupportedError(provider, "sessions")
        return info

    def _run(
        self,
        snapshot: _Snapshot,
        info: ProviderInfo,
        request: ExecutionRequest,
        on_output: OutputCallback | None,
        call: Callable[[ExecutionRequest, OutputCallback | None], ExecutionResult],
    ) -> ExecutionResult:
        """One execution (one-shot or in a session) with the rules every execution shares.

        The timeout rule of :mod:`sandbox_core.timeouts` is applied and reported in the result's
        metadata; ``on_output`` goes to the provider only if it streams, and gets the rest of
        the output as events once the result is in (see :class:`~sandbox_core.streaming.OutputRelay`).
        """
        effective = effective_timeout(request.timeout, info.timeouts, snapshot.config)
        request = attrs.evolve(request, timeout=effective.seconds)
        relay = OutputRelay(on_output, snapshot.provider) if on_output is not None else None
        forward = relay if relay is not None and info.streaming else None
        result = self._guarded(snapshot, lambda: call(request, forward))
        result = attrs.evolve(result, metadata={**result.metadata, **effective.metadata()})
        if relay is not None:
            relay.finish(result)
        return result

    def _guarded(self, snapshot: _Snapshot, call: Callable[[], ExecutionResult]) -> ExecutionResult:
        """``call()``'s result, with a provider's failure or bug turned into a ``provider_error`` result.

        Errors that are not the provider's (bad input, configuration, a gone session) propagate.
        """
        started = time.monotonic()
        try:
            result = call()
        except SandboxError as exc:
            if not isinstance(exc, ProviderError):
                raise
            kind = FailureKind.UNAVAILABLE if isinstance(exc, ProviderUnavailableError) else FailureKind.INTERNAL
            result = provider_failure(snapshot.provider, _scrub(str(exc), snapshot.config), kind)
        except Exception as exc:  # a provider bug must come back as a provider_error, not crash the agent
            result = self._provider_bug(snapshot, exc)
        if not result.provider or not result.execution_time:
            result = attrs.evolve(
                result,
                provider=result.provider or snapshot.provider,
                execution_time=result.execution_time or time.monotonic() - started,
            )
        return result

    @staticmethod
    def _provider_bug(snapshot: _Snapshot, exc: Exception) -> ExecutionResult:
        """A provider's own exception as a ``provider_error`` result, logged with its traceback.

        The traceback is logged at ERROR by this module's logger and kept in the result's
        ``metadata["traceback"]``, both with the config's secrets masked (a provider may put a
        token in an exception message).
        """
        message = _scrub(f"provider {snapshot.provider!r} failed: {type(exc).__name__}: {exc}", snapshot.config)
        trace = _scrub("".join(traceback.format_exception(exc)), snapshot.config)
        log.error("%s\n%s", message, trace.rstrip())
        return provider_failure(snapshot.provider, message, FailureKind.INTERNAL, traceback=trace)

    async def aexecute(
        self,
        code: str,
        language: str = "python",
        timeout: float | None = None,
        arguments: Mapping[str, Any] | None = None,
        *,
        requested_by: str | None = None,
        runtime: str | None = None,
        network: Sequence[str] = (),
        files: Mapping[str, bytes] | None = None,
        on_output: OutputCallback | None = None,
    ) -> ExecutionResult:
        """The async twin of :meth:`execute`: runs it in a worker thread, never blocking the loop.

        ``on_output`` is called in that worker thread; use :meth:`astream` to get events in the loop.
        """
        return await asyncio.to_thread(
            self.execute, code, language, timeout, arguments, requested_by=requested_by, runtime=runtime, network=network,
            files=files, on_output=on_output,
        )

    # -- streaming --------------------------------------------------------------------------

    def stream(
        self,
        code: str,
        language: str = "python",
        timeout: float | None = None,
        arguments: Mapping[str, Any] | None = None,
        *,
        requested_by: str | None = None,
        runtime: str | None = None,
        network: Sequence[str] = (),
        files: Mapping[str, bytes] | None = None,
    ) -> Iterator[OutputEvent | ExecutionResult]:
        """Run ``code``, yielding :class:`~sandbox_core.streaming.OutputEvent` as output arrives, then the result.

        The last item is the :class:`ExecutionResult` :meth:`execute` would have returned; the
        events before it, joined per stream, equal its ``stdout``/``stderr``. Errors
        :meth:`execute` raises are raised by the iteration. The execution runs in a worker
        thread; leaving the loop early does not stop it.
        """
        return events_then_result(
            lambda on_output: self.execute(
                code, language, timeout, arguments, requested_by=requested_by, runtime=runtime, network=network,
                files=files, on_output=on_output,
            )
        )

    def astream(
        self,
        code: str,
        language: str = "python",
        timeout: float | None = None,
        arguments: Mapping[str, Any] | None = None,
        *,
        requested_by: str | None = None,
        runtime: str | None = None,
        network: Sequence[str] = (),
        files: Mapping[str, bytes] | None = None,
    ) -> AsyncIterator[OutputEvent | ExecutionResult]:
        """The async twin of :meth:`stream` (``async for item in client.astream(code): ...``)."""
        return aevents_then_result(
            lambda on_output: self.execute(
                code, language, timeout, arguments, requested_by=requested_by, runtime=runtime, network=network,
                files=files, on_output=on_output,
            )
        )

    # -- sessions (added in 0.2) --------------------------------------------------------------

    def session(
        self,
        language: str = "python",
        runtime: str | None = None,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        max_lifetime: float = DEFAULT_MAX_LIFETIME,
    ) -> Session:
        """Open a stateful session on the active provider (see :class:`~sandbox_core.sessions.Session`).

        ``idle_timeout``: seconds without a call after which the backend destroys it;
        ``max_lifetime``: seconds after which it is destroyed regardless. Use it as a context
        manager, or call ``close()``; sessions this client opened are closed by :meth:`close`.
        A provider without sessions raises :class:`~sandbox_core.errors.NotSupportedError`.
        """
        spec = SessionSpec(language=language, runtime=runtime, idle_timeout=idle_timeout, max_lifetime=max_lifetime)
        snapshot = self._current()
        self._check_capabilities(snapshot.provider, runtime=runtime, sessions=True)
        self._used.add(snapshot.provider)
        handle = self._scrubbed(snapshot, lambda: self.registry.session_open(snapshot.provider, spec, snapshot.config))
        session = Session(self, snapshot.provider, handle, spec)
        with self._lock:
            self._sessions[session.id] = session
        return session

    def asession(
        self,
        language: str = "python",
        runtime: str | None = None,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        max_lifetime: float = DEFAULT_MAX_LIFETIME,
    ) -> AsyncSessionOpener:
        """The async twin of :meth:`session`: ``await client.asession()`` or ``async with client.asession() as s``."""
        return AsyncSessionOpener(lambda: self.session(language, runtime, idle_timeout, max_lifetime))

    def attach_session(self, session_id: str, *, language: str = "python", runtime: str | None = None) -> Session:
        """Reach a session another client (in this or another process) opened, by its ``id``.

        Nothing is checked on the backend here: a session that is gone raises
        :class:`~sandbox_core.errors.SessionGoneError` on first use. Closing this client does not
        close attached sessions; ``close()`` on the session does.
        """
        provider, sep, handle = str(session_id).partition(":")
        if not sep or not provider or not handle:
            raise ValueError(f"session_id: {session_id!r} is not a session id (<provider>:<handle>)")
        self._check_capabilities(provider, sessions=True)
        self._used.add(provider)
        return Session(self, provider, handle, SessionSpec(language=language, runtime=runtime))

    def _config_of(self, provider: str) -> _Snapshot:
        """The snapshot to use for a session of ``provider`` (its own config when another one is active)."""
        snapshot = self._current()
        if snapshot.provider == provider:
            return snapshot
        if self.settings is None:
            raise ValueError(f"session: this client is bound to provider {snapshot.provider!r}, not {provider!r}")
        config = self.validate_config(provider, self.stored_config(provider))
        return attrs.evolve(snapshot, provider=provider, config=config)

    def _session_execute(self, session: Session, request: ExecutionRequest, on_output: OutputCallback | None) -> ExecutionResult:
        snapshot = self._config_of(session.provider)
        check_configured_limits(request.files, snapshot.config)
        info = self.registry.provider_info(snapshot.provider)
        return self._run(
            snapshot, info, request, on_output,
            lambda request, forward: self.registry.session_execute(
                snapshot.provider, session.handle, request, snapshot.config, forward
            ),
        )

    def _session_call(self, session: Session, operation: str, **arguments: Any) -> Any:
        snapshot = self._config_of(session.provider)
        if operation == "upload":
            check_configured_limits({arguments["path"]: arguments["data"]}, snapshot.config, field="data")
        method = getattr(self.registry, f"session_{operation}")
        return self._scrubbed(snapshot, lambda: method(snapshot.provider, session.handle, config=snapshot.config, **arguments))

    def _forget(self, session: Session) -> None:
        with self._lock:
            self._sessions.pop(session.id, None)

    def _session_close(self, session: Session) -> None:
        self._forget(session)
        snapshot = self._config_of(session.provider)
        self._scrubbed(snapshot, lambda: self.registry.session_close(snapshot.provider, session.handle, snapshot.config))

    @staticmethod
    def _scrubbed(snapshot: _Snapshot, call: Callable[[], Any]) -> Any:
        """``call()``, with the config's secrets masked in the message of a provider error it raises."""
        try:
            return call()
        except ProviderError as exc:
            exc.args = (_scrub(str(exc), snapshot.config),)
            raise

    def health(self) -> HealthStatus:
        """The active provider's real ability to execute, as its ``health`` hook reports it."""
        snapshot = self._current()
        self._used.add(snapshot.provider)
        try:
            status = self.registry.health(snapshot.provider, snapshot.config)
        except ProviderError as exc:
            return HealthStatus(healthy=False, message=_scrub(str(exc), snapshot.config))
        except Exception as exc:
            return HealthStatus(healthy=False, message=_scrub(f"{type(exc).__name__}: {exc}", snapshot.config))
        if status is None:
            return HealthStatus(healthy=False, message=f"provider {snapshot.provider!r} has no health check")
        return status

    def close(self) -> None:
        """Release what this client used: the providers' pooled sandboxes, the settings store.

        The providers' ``sandbox_shutdown`` hooks release their process-wide resources, so other
        clients of the same providers in this process lose their warm sandboxes too (they create
        new ones when they next need them). The client can not be used afterwards.
        """
        with self._lock:
            sessions = list(self._sessions.values())
        for session in sessions:
            try:
                session.close()
            except Exception:  # one session that cannot be closed must not keep the others alive
                log.warning("could not close session %s", session.id, exc_info=True)
        self.registry.shutdown(sorted(self._used))
        if self.settings is not None:
            self.settings.close()


def _reraise(exc: BaseException) -> ExecutionResult:
    raise exc


def _scrub(message: str, config: Mapping[str, Any]) -> str:
    return scrub(message, secret_values(config))


_default_client: SandboxClient | None = None
_default_lock = threading.Lock()


def default_client() -> SandboxClient:
    """The process-wide client behind :func:`execute_code`, created on first use."""
    global _default_client
    with _default_lock:
        if _default_client is None:
            _default_client = SandboxClient()
        return _default_client


def execute_code(
    code: str,
    language: str = "python",
    timeout: float | None = None,
    arguments: Mapping[str, Any] | None = None,
    *,
    requested_by: str | None = None,
    runtime: str | None = None,
    network: Sequence[str] = (),
    files: Mapping[str, bytes] | None = None,
    on_output: OutputCallback | None = None,
) -> ExecutionResult:
    """Run ``code`` through the active provider and return the structured result.

    If the code defines ``main`` (Python: ``main(**arguments)``; JavaScript: ``main(arguments)``,
    sync or async), it is called and its return value comes back as ``result.value``.
    ``runtime`` chooses the package set (e.g. ``"python"`` with numpy and pandas); None takes the
    provider's default for the language. ``timeout`` (seconds) None takes the provider's default.
    ``network`` lists the ``host:port`` entries the code may reach (default: none, no network); a
    provider that cannot enforce it refuses it. ``files`` (name to content, e.g.
    ``{"data.csv": b"..."}``) are put into the working folder before the code runs. ``on_output``
    gets the output as events while the code runs (see :meth:`SandboxClient.execute`).
    """
    return default_client().execute(
        code, language, timeout, arguments, requested_by=requested_by, runtime=runtime, network=network,
        files=files, on_output=on_output,
    )


async def aexecute_code(
    code: str,
    language: str = "python",
    timeout: float | None = None,
    arguments: Mapping[str, Any] | None = None,
    *,
    requested_by: str | None = None,
    runtime: str | None = None,
    network: Sequence[str] = (),
    files: Mapping[str, bytes] | None = None,
    on_output: OutputCallback | None = None,
) -> ExecutionResult:
    """The async twin of :func:`execute_code` (``on_output`` is called in a worker thread)."""
    return await default_client().aexecute(
        code, language, timeout, arguments, requested_by=requested_by, runtime=runtime, network=network,
        files=files, on_output=on_output,
    )


def stream_code(
    code: str,
    language: str = "python",
    timeout: float | None = None,
    arguments: Mapping[str, Any] | None = None,
    *,
    requested_by: str | None = None,
    runtime: str | None = None,
    network: Sequence[str] = (),
    files: Mapping[str, bytes] | None = None,
) -> Iterator[OutputEvent | ExecutionResult]:
    """Like :func:`execute_code`, yielding output events as they arrive and then the result
    (see :meth:`SandboxClient.stream`)::

        for item in stream_code("for i in range(3): print(i, flush=True)"):
            if isinstance(item, OutputEvent):
                print(item.text, end="")
    """
    return default_client().stream(
        code, language, timeout, arguments, requested_by=requested_by, runtime=runtime, network=network, files=files
    )


def astream_code(
    code: str,
    language: str = "python",
    timeout: float | None = None,
    arguments: Mapping[str, Any] | None = None,
    *,
    requested_by: str | None = None,
    runtime: str | None = None,
    network: Sequence[str] = (),
    files: Mapping[str, bytes] | None = None,
) -> AsyncIterator[OutputEvent | ExecutionResult]:
    """The async twin of :func:`stream_code`."""
    return default_client().astream(
        code, language, timeout, arguments, requested_by=requested_by, runtime=runtime, network=network, files=files
    )
