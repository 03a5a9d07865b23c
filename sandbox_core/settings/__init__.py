"""The settings store of sandbox-core: which provider is active and how each is configured.

For users of the core (CLI, admin API, ``execute_code``): :class:`SettingsStore`, plus
:data:`MASK`, :func:`mask_secrets` and :func:`mask_url` to show configs and database URLs without
their secrets (re-exported from :mod:`sandbox_core.redaction`, the one place those rules live).
For tools that need the table itself (migrations, RAGFlow import): :class:`SystemSettings`.
For deployment code: :func:`database_from_url` and :func:`default_database_url`
(``$SANDBOX_DATABASE_URL`` or a SQLite file in the user's data directory).

Modules: ``store`` (the store), ``model`` (the table), ``database`` (URLs), ``keys`` (row
names), ``defaults`` (seeded rows, from ``defaults.json``), ``secrets`` (encryption at rest).
"""

from __future__ import annotations

from sandbox_core.redaction import MASK, mask_secrets, mask_url
from sandbox_core.settings.database import database_from_url, default_database_url
from sandbox_core.settings.model import SystemSettings
from sandbox_core.settings.store import SettingsStore

__all__ = [
    "MASK",
    "SettingsStore",
    "SystemSettings",
    "database_from_url",
    "default_database_url",
    "mask_secrets",
    "mask_url",
]
