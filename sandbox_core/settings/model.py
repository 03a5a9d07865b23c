"""The ``system_settings`` table: one row per setting, its value kept as text.

The public :class:`SystemSettings` model is deliberately bound to no database: each
:class:`~sandbox_core.settings.SettingsStore` works on its own subclass bound to its own
database (see :func:`bind_model`), so several stores (a test's SQLite file and a PostgreSQL
server, say) can live in one process without rebinding a shared class under each other's feet.
"""

from __future__ import annotations

import datetime
from typing import Any

import peewee

TABLE_NAME = "system_settings"
NAME_MAX_LENGTH = 128


def utcnow() -> datetime.datetime:
    """The current UTC time as a naive datetime: every backend stores it the same way."""
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


class LongTextField(peewee.TextField):
    """``TEXT`` everywhere except MySQL/MariaDB, where ``TEXT`` stops at 64 KiB.

    Provider configs can be long (certificates, inline policies), and MySQL would refuse
    (strict mode) or silently cut (non-strict mode) anything longer, so use ``LONGTEXT`` there.
    """

    def ddl_datatype(self, ctx: Any) -> Any:
        database = getattr(self.model._meta.database, "obj", None) or self.model._meta.database
        if isinstance(database, peewee.MySQLDatabase):
            return peewee.SQL("LONGTEXT")
        return super().ddl_datatype(ctx)


class SystemSettings(peewee.Model):
    """One named setting.

    ``name`` is the primary key (hence unique and indexed): the store looks rows up by name
    only, and a key in the ``CREATE TABLE`` itself makes creating the table from two processes
    at once safe (no separate index that one of them could miss).
    ``value`` is text whose meaning ``data_type`` gives (``"string"``, ``"json"``,
    ``"integer"``, ``"boolean"``); ``source`` tells who wrote it (``"default"`` for seeded
    rows, ``"cli"``, ``"admin"``, ``"api"``). Times are naive UTC.
    """

    name = peewee.CharField(max_length=NAME_MAX_LENGTH, primary_key=True)
    value = LongTextField()
    data_type = peewee.CharField(max_length=16, default="string")
    source = peewee.CharField(max_length=32, default="api")
    create_time = peewee.DateTimeField(default=utcnow)
    update_time = peewee.DateTimeField(default=utcnow)

    class Meta:
        table_name = TABLE_NAME


def bind_model(database: peewee.Database) -> type[SystemSettings]:
    """A subclass of :class:`SystemSettings` bound to ``database`` alone."""

    class BoundSystemSettings(SystemSettings):
        class Meta:
            table_name = TABLE_NAME

    BoundSystemSettings._meta.set_database(database)
    return BoundSystemSettings
