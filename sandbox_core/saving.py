"""The one way a provider's saved config changes: merge → validate → encrypt → save → audit.

``sandbox config set``, the admin API (save, and the unsaved config a connection test runs with)
and the RAGFlow import all go through here, so they agree on every rule:

- a secret sent back as :data:`~sandbox_core.redaction.MASK` keeps the saved one, only while the
  fields it is bound to stay the same (:meth:`~sandbox_core.schema.ConfigSchema.keep_stored_secrets`);
- the config is validated in full (schema, then the provider's own checks) before anything is
  written, and no secret comes back inside a validation message
  (:meth:`~sandbox_core.client.SandboxClient.validate_config`);
- only the fields the caller gave are stored (defaults stay defaults), secrets encrypted at rest
  when ``SANDBOX_SECRET_KEY`` is set (:mod:`sandbox_core.settings.secrets`);
- each save is audited with the names of the changed fields, never their values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from sandbox_core.audit import record_config_change
from sandbox_core.redaction import MASK
from sandbox_core.schema import ConfigSchema, to_storable
from sandbox_core.settings import keys
from sandbox_core.settings.secrets import decrypt_secrets, encrypt_secrets

if TYPE_CHECKING:
    from sandbox_core.client import SandboxClient
    from sandbox_core.settings import SettingsStore


@attrs.frozen
class ConfigChange:
    """A validated new config for one provider, not yet saved."""

    provider: str
    schema: ConfigSchema
    stored_raw: dict[str, Any]
    """The saved config the change was based on, as the store holds it (secrets maybe encrypted)."""
    stored: dict[str, Any]
    """The same, secrets decrypted."""
    merged: dict[str, Any]
    """The new config as given, saved secrets resolved: what a provider may be called with."""
    converted: dict[str, Any]
    """The new config validated (secrets as :class:`~sandbox_core.schema.Secret`)."""

    @property
    def storable(self) -> dict[str, Any]:
        """What to store: the fields the caller set, as plain JSON data (secrets revealed)."""
        return {key: value for key, value in to_storable(self.converted).items() if key in self.merged}

    @property
    def changed(self) -> list[str]:
        """The names of the fields whose stored value changes."""
        new, old = self.storable, self.stored
        return sorted(key for key in set(new) | set(old) if new.get(key) != old.get(key))


def prepare_change(
    client: SandboxClient,
    provider: str,
    submitted: Mapping[str, Any],
    *,
    update: bool = False,
    stored_raw: Mapping[str, Any] | None = None,
) -> ConfigChange:
    """Check ``submitted`` as provider ``provider``'s new config; raise ``ConfigValidationError`` if refused.

    With ``update``, ``submitted`` changes only the fields it names and the saved secrets stay
    (under the same binding rule as a form sending them back); without it, it is the whole config.
    ``stored_raw`` is the saved config the change is based on, when the caller already read it
    (e.g. to check an etag); by default it is read from ``client.settings``.
    """
    schema = client.config_schema(provider)
    if stored_raw is None:
        assert client.settings is not None, "a config change needs a client with a settings store"
        stored_raw = client.settings.provider_config(provider)
    stored = decrypt_secrets(stored_raw, schema.secret_fields)
    if update:
        kept = {name: MASK for name in schema.secret_fields if stored.get(name)}
        submitted = {**stored, **kept, **submitted}
    merged = schema.keep_stored_secrets(submitted, stored, provider=provider)
    converted = client.validate_config(provider, merged)
    return ConfigChange(provider, schema, dict(stored_raw), stored, merged, converted)


def save_change(
    store: SettingsStore,
    change: ConfigChange,
    *,
    source: str,
    actor: str,
    client: str | None,
    activate: bool = False,
    if_unchanged: bool = False,
) -> dict[str, Any]:
    """Store ``change`` (secrets encrypted), optionally activate the provider, audit it; return what was stored.

    ``source`` tags the settings rows; ``actor`` and ``client`` (a tool or an address) go to the
    audit record. With ``if_unchanged``, the write happens only if the saved config is still the
    one the change was based on (else :class:`~sandbox_core.errors.ConfigConflictError`).
    """
    sealed = encrypt_secrets(change.storable, change.schema.secret_fields)
    was_active = (store.get(keys.PROVIDER_TYPE) or "").strip() == change.provider
    store.save_provider_config(
        change.provider, sealed, activate=activate, source=source, expected=change.stored_raw if if_unchanged else None
    )
    record_config_change(
        store.audit_settings(),
        actor=actor,
        client=client,
        provider=change.provider,
        changed=change.changed,
        activated=activate and not was_active,
    )
    return sealed
