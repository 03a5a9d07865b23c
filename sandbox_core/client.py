"""The core API agents call: :func:`execute_code`, :func:`aexecute_code` and :class:`SandboxClient`.

The default client reads the active provider and its config from the settings store. It keeps a
validated snapshot of them and, at most once per ``refresh_interval`` seconds, asks the store for
its version counter (one indexed read): a config saved by another process is picked up without a
restart, and executions in between cost no database round trip. Applications that manage their
own settings pass an explicit store, provider and/or config.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import traceback
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from sandbox_core.audit import AuditLog
from sandbox_core.errors import ConfigValidationError, ProviderError, ProviderUnavailableError, SandboxError
from sandbox_core.failures import FailureKind, provider_failure
from sandbox_core.model import DEFAULT_TIMEOUT, ExecutionRequest, ExecutionResult, HealthStatus
from sandbox_core.registry import ProviderRegistry, get_registry
from sandbox_core.schema import ConfigSchema, secret_values
from sandbox_core.streaming import OutputCallback, OutputRelay

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
        converted = self.config_schema(provider).validate(config, provider=provider)
        problems = self.registry.validate_config(provider, converted)
        if problems:
            raise ConfigValidationError(provider, problems)
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
        timeout: float = DEFAULT_TIMEOUT,
        arguments: Mapping[str, Any] | None = None,
        *,
        requested_by: str | None = None,
        runtime: str | None = None,
        on_output: OutputCallback | None = None,
    ) -> ExecutionResult:
        """Run ``code`` and return its :class:`ExecutionResult`.

        Invalid requests raise ``ValueError`` naming the field; configuration problems raise
        :class:`~sandbox_core.errors.ConfigurationError`. A failure of the provider's backend
        comes back as a result with status ``provider_error`` and a message free of secrets.

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
        )
        snapshot = self._current()
        if runtime is not None and not getattr(self.registry.provider_info(snapshot.provider), "runtimes", False):
            raise ValueError(
                f"runtime: provider {snapshot.provider!r} offers no runtimes, so {runtime!r} cannot be honoured; "
                "leave the runtime unset"
            )
        self._used.add(snapshot.provider)
        relay = OutputRelay(on_output, snapshot.provider) if on_output is not None else None
        forward = relay if relay is not None and self.registry.provider_info(snapshot.provider).streaming else None
        started = time.monotonic()
        try:
            result = self.registry.execute(snapshot.provider, request, snapshot.config, forward)
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
        if relay is not None:
            relay.finish(result)
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
        timeout: float = DEFAULT_TIMEOUT,
        arguments: Mapping[str, Any] | None = None,
        *,
        requested_by: str | None = None,
        runtime: str | None = None,
    ) -> ExecutionResult:
        """The async twin of :meth:`execute`: runs it in a worker thread, never blocking the loop."""
        return await asyncio.to_thread(
            self.execute, code, language, timeout, arguments, requested_by=requested_by, runtime=runtime
        )

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
        self.registry.shutdown(sorted(self._used))
        if self.settings is not None:
            self.settings.close()


def _scrub(message: str, config: Mapping[str, Any]) -> str:
    for secret in secret_values(config):
        message = message.replace(secret, "********")
    return message


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
    timeout: float = DEFAULT_TIMEOUT,
    arguments: Mapping[str, Any] | None = None,
    *,
    requested_by: str | None = None,
    runtime: str | None = None,
) -> ExecutionResult:
    """Run ``code`` through the active provider and return the structured result.

    If the code defines ``main`` (Python: ``main(**arguments)``; JavaScript: ``main(arguments)``,
    sync or async), it is called and its return value comes back as ``result.value``.
    ``runtime`` chooses the package set (e.g. ``"python"`` with numpy and pandas); None takes the
    provider's default for the language.
    """
    return default_client().execute(code, language, timeout, arguments, requested_by=requested_by, runtime=runtime)


async def aexecute_code(
    code: str,
    language: str = "python",
    timeout: float = DEFAULT_TIMEOUT,
    arguments: Mapping[str, Any] | None = None,
    *,
    requested_by: str | None = None,
    runtime: str | None = None,
) -> ExecutionResult:
    """The async twin of :func:`execute_code`."""
    return await default_client().aexecute(code, language, timeout, arguments, requested_by=requested_by, runtime=runtime)
