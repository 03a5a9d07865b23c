"""The admin operations, free of HTTP: list providers, read, save and test provider configs.

Every read path masks secrets. A save checks the JSON types, then goes through the same pipeline
as ``sandbox config set`` (:mod:`sandbox_core.saving`): validated in full before the one
transaction that writes it, so a refused save leaves the old config in place; secrets encrypted
at rest when ``SANDBOX_SECRET_KEY`` is set; each change audited with the names of the changed
fields, never their values.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Iterator, Mapping
from typing import Any

import attrs

from sandbox_core.client import SandboxClient
from sandbox_core.errors import (
    ConfigConflictError,
    ConfigValidationError,
    ProviderError,
    ProviderNotFoundError,
    SandboxError,
)
from sandbox_core.model import ExecutionResult, ExecutionStatus
from sandbox_core.redaction import scrubber
from sandbox_core.registry import ProviderRegistry
from sandbox_core.saving import ConfigChange, prepare_change, save_change
from sandbox_core.schema import ConfigSchema
from sandbox_core.settings import SettingsStore
from sandbox_core.settings.secrets import decrypt_secrets, encryption_enabled

logger = logging.getLogger("sandbox_core.admin")

PROBES = {
    "python": 'import platform\nprint("sandbox-core connection test: ok")\nprint("python", platform.python_version())\n',
    "javascript": 'console.log("sandbox-core connection test: ok");\nconsole.log("node", process.version);\n',
}


@attrs.frozen
class Actor:
    """Who asks for a change, as the audit log records it."""

    name: str = "admin"
    address: str | None = None


@attrs.frozen
class ProbeOutcome:
    success: bool
    language: str
    message: str
    result: ExecutionResult


class AdminService:
    """The operations behind the admin API, on one settings store and one provider registry."""

    def __init__(
        self,
        store: SettingsStore,
        registry: ProviderRegistry,
        *,
        probe_timeout: float = 30.0,
        etag_key: bytes | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.probe_timeout = probe_timeout
        self._client = SandboxClient(settings=store, registry=registry)
        # Etags are keyed so they reveal nothing about the (secret) values they cover; processes
        # serving the same admin token share the key, so any of them accepts another's etag.
        self._etag_key = etag_key or secrets.token_bytes(32)

    # -- reading ---------------------------------------------------------------------------

    def active(self) -> str | None:
        return (self.store.get("sandbox.provider_type") or "").strip() or None

    def providers(self) -> dict[str, Any]:
        active = self.active()
        configured = set(self.store.configured_providers())
        rows = [
            {**row.to_dict(), "active": row.name == active, "configured": row.name in configured}
            for row in self.registry.statuses()
        ]
        return {"providers": rows, "active": active, "encryption_at_rest": encryption_enabled()}

    def require(self, name: str) -> None:
        """Raise :class:`ProviderNotFoundError` unless provider ``name`` is installed."""
        names = self.registry.names()
        if name not in names:
            raise ProviderNotFoundError(name, names)

    def schema(self, name: str) -> ConfigSchema:
        self.require(name)
        with _provider_failures(name, "declare its config schema"):
            return self._client.config_schema(name)

    def json_schema(self, name: str) -> dict[str, Any]:
        return self.schema(name).json_schema(title=name)

    def read_config(self, name: str) -> dict[str, Any]:
        schema = self.schema(name)
        stored = self.store.provider_config(name)
        return self._config_view(name, schema, stored)

    def _config_view(self, name: str, schema: ConfigSchema, stored: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "provider": name,
            "active": self.active() == name,
            "config": schema.mask(stored),
            "secret_fields": list(schema.secret_fields),
            "etag": self._etag(stored),
        }

    def _etag(self, stored: Mapping[str, Any]) -> str:
        canonical = json.dumps(stored, sort_keys=True, separators=(",", ":"), default=str).encode("utf-8")
        return hmac.new(self._etag_key, canonical, hashlib.sha256).hexdigest()[:32]

    # -- changing --------------------------------------------------------------------------

    def save_config(
        self,
        name: str,
        submitted: Mapping[str, Any],
        *,
        activate: bool = False,
        etag: str | None = None,
        actor: Actor = Actor(),
    ) -> dict[str, Any]:
        """Validate and store ``submitted`` as ``name``'s whole config; return the masked view and
        the names of the changed fields. Nothing is written unless every check passes."""
        schema = self.schema(name)
        stored_raw = self.store.provider_config(name)
        if etag is not None and not hmac.compare_digest(etag, self._etag(stored_raw)):
            raise ConfigConflictError(
                f"the config of {name!r} was changed by someone else since you read it; reload it and save again"
            )
        _check_types(name, schema, submitted)
        change = self._prepare(name, submitted, stored_raw)
        # The etag was checked against what we read; ``if_unchanged`` re-checks it inside the write
        # transaction, so a save racing ours between the two cannot be overwritten unseen.
        sealed = save_change(
            self.store,
            change,
            source="admin",
            actor=actor.name,
            client=actor.address,
            activate=activate,
            if_unchanged=etag is not None,
        )
        changed = change.changed
        logger.info(
            "saved the config of %s (changed fields: %s)%s", name, ", ".join(changed) or "none", " and activated it" if activate else ""
        )
        return {**self._config_view(name, schema, sealed), "changed": changed}

    def _prepare(self, name: str, submitted: Mapping[str, Any], stored_raw: Mapping[str, Any] | None = None) -> ConfigChange:
        with _provider_failures(name, "check the config"):
            return prepare_change(self._client, name, submitted, stored_raw=stored_raw)

    # -- health ----------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """The active provider's health and the runtimes it reports, secrets masked."""
        name = self.active()
        if name is None:
            return {"provider": None, "healthy": False, "message": "no provider is selected: activate one", "latency": None, "runtimes": []}
        if name not in self.registry.names():
            message = f"the active provider {name!r} is not installed"
            return {"provider": name, "healthy": False, "message": message, "latency": None, "runtimes": []}
        schema = self.schema(name)
        stored = decrypt_secrets(self.store.provider_config(name), schema.secret_fields)
        scrub = scrubber(schema.secrets_in(stored))
        try:
            with _provider_failures(name, "report its health"):
                status = self._client.health()
        except SandboxError as exc:
            return {"provider": name, "healthy": False, "message": scrub(str(exc)), "latency": None, "runtimes": []}
        reported = status.details.get("runtimes") if isinstance(status.details, Mapping) else None
        runtimes = []
        for runtime, entry in sorted((reported or {}).items()):
            if not isinstance(entry, Mapping):
                continue
            error = entry.get("error")
            runtimes.append({
                "name": str(runtime),
                "language": entry.get("language"),
                "available": bool(entry.get("available", True)),
                "packages": {str(k): str(v) for k, v in (entry.get("packages") or {}).items()},
                "preload": [str(m) for m in entry.get("preload") or ()],
                "restore": dict(entry["restore"]) if isinstance(entry.get("restore"), Mapping) else None,
                "error": scrub(str(error)) if error else None,
            })
        return {
            "provider": name,
            "healthy": status.healthy,
            "message": scrub(status.message),
            "latency": status.latency,
            "runtimes": runtimes,
        }

    # -- testing ---------------------------------------------------------------------------

    def test_connection(self, name: str, submitted: Mapping[str, Any]) -> ProbeOutcome:
        """Validate ``submitted`` (unsaved) and run a real probe execution through provider ``name``."""
        _check_types(name, self.schema(name), submitted)
        change = self._prepare(name, submitted)
        with _provider_failures(name, "describe itself"):
            languages = self.registry.provider_info(name).languages or ("python",)
        language = "python" if "python" in languages else languages[0]
        client = SandboxClient(provider=name, config=change.merged, registry=self.registry)
        probe = PROBES.get(language, PROBES["python"])
        result = client.execute(probe, language, timeout=self.probe_timeout, requested_by="admin:test-connection")
        scrub = scrubber(change.schema.secrets_in(change.merged))
        result = attrs.evolve(result, stdout=scrub(result.stdout), stderr=scrub(result.stderr))
        success = result.status is ExecutionStatus.SUCCESS and result.exit_code == 0
        if success:
            message = f"the probe ran through {name!r} in {result.execution_time:.2f} s"
        else:
            reason = result.error.message if result.error else f"status {result.status.value}, exit code {result.exit_code}"
            message = scrub(f"the probe failed: {reason}")
        return ProbeOutcome(success=success, language=language, message=message, result=result)


@contextlib.contextmanager
def _provider_failures(name: str, doing: str) -> Iterator[None]:
    """Turn a provider's bug into a :class:`ProviderError` (answered 503), not an internal error."""
    try:
        yield
    except SandboxError:
        raise
    except Exception as exc:
        # The exception's text may quote a config value, so only its type goes to the log by default.
        logger.warning("provider %r failed to %s: %s", name, doing, type(exc).__name__)
        logger.debug("provider %r failed to %s", name, doing, exc_info=True)
        raise ProviderError(f"provider {name!r} failed to {doing}: {type(exc).__name__}") from None


def _check_types(name: str, schema: ConfigSchema, submitted: Mapping[str, Any]) -> None:
    """Refuse values of the wrong JSON type: the API takes JSON, so ``"yes"`` is no boolean."""
    problems = schema.type_problems(submitted)
    if problems:
        raise ConfigValidationError(name, problems)

