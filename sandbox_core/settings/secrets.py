"""Encryption at rest of the secret fields of provider configs.

When ``SANDBOX_SECRET_KEY`` holds a Fernet key (``python -c "from cryptography.fernet import
Fernet; print(Fernet.generate_key().decode())"``), the save paths (admin API, ``sandbox config
set``) store each secret field as ``enc:v1:<Fernet token>`` and the read path of
:class:`~sandbox_core.client.SandboxClient` decrypts it. Several comma-separated keys rotate: new
values are encrypted with the first, values encrypted with any of them still decrypt.

Without a key, secrets are stored as given, and stored clear values keep working after a key is
configured (they are encrypted the next time the config is saved). ``cryptography`` is imported
only when a key is configured or an encrypted value is met.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any, TypeGuard

from sandbox_core.errors import ConfigurationError

KEY_ENV = "SANDBOX_SECRET_KEY"
PREFIX = "enc:v1:"


def is_encrypted(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and value.startswith(PREFIX)


def _configured_keys(key: str | None) -> list[str]:
    text = os.environ.get(KEY_ENV, "") if key is None else key
    return [part.strip() for part in text.split(",") if part.strip()]


def _fernet(keys: list[str]) -> Any:
    try:
        from cryptography.fernet import Fernet, MultiFernet
    except ImportError:
        raise ConfigurationError(
            f"{KEY_ENV} is set or a stored secret is encrypted, but the 'cryptography' package is "
            "not installed: pip install 'sandbox-core[admin]'"
        ) from None
    try:
        return MultiFernet([Fernet(k.encode("ascii")) for k in keys])
    except (ValueError, UnicodeEncodeError):
        # The message never quotes the key.
        raise ConfigurationError(
            f"{KEY_ENV} is not a valid Fernet key (32 url-safe base64-encoded bytes); generate one with "
            '`python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"`'
        ) from None


def encryption_enabled(key: str | None = None) -> bool:
    """Whether secrets will be encrypted when saved (a key is configured)."""
    return bool(_configured_keys(key))


def encrypt_secrets(config: Mapping[str, Any], secret_fields: Iterable[str], *, key: str | None = None) -> dict[str, Any]:
    """A copy of ``config`` to store: each non-empty secret field encrypted, if a key is configured.

    ``key`` overrides ``SANDBOX_SECRET_KEY``. Values already encrypted are kept as they are.
    """
    result = dict(config)
    keys = _configured_keys(key)
    if not keys:
        return result
    fernet = None
    for name in secret_fields:
        value = result.get(name)
        if isinstance(value, str) and value and not is_encrypted(value):
            fernet = fernet or _fernet(keys)
            result[name] = PREFIX + fernet.encrypt(value.encode("utf-8")).decode("ascii")
    return result


def decrypt_secrets(config: Mapping[str, Any], secret_fields: Iterable[str], *, key: str | None = None) -> dict[str, Any]:
    """A copy of a stored ``config`` with its encrypted secret fields in clear (for internal use).

    Raises :class:`ConfigurationError` naming the field when a value cannot be decrypted (no key,
    or a key other than the one it was encrypted with).
    """
    result = dict(config)
    fernet = None
    for name in secret_fields:
        value = result.get(name)
        if not is_encrypted(value):
            continue
        keys = _configured_keys(key)
        if not keys:
            raise ConfigurationError(
                f"the secret field {name!r} is stored encrypted but {KEY_ENV} is not set; set it to the key "
                "the config was saved with"
            )
        fernet = fernet or _fernet(keys)
        from cryptography.fernet import InvalidToken

        try:
            result[name] = fernet.decrypt(value[len(PREFIX) :].encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError):
            raise ConfigurationError(
                f"the secret field {name!r} cannot be decrypted with {KEY_ENV}: it was saved with another "
                "key (to rotate keys, list the new key first and the old one after it, comma-separated)"
            ) from None
    return result
