"""SettingsStore: the one object through which the core, the CLI and the admin API read and
write the settings.

Design points (each for a reason):

* Every write is one short transaction that starts by locking the
  ``sandbox.settings_version`` row and ends by bumping it. The lock serializes writers across
  processes (SQLite: ``BEGIN IMMEDIATE`` takes the database write lock up front; PostgreSQL and
  MySQL: ``SELECT ... FOR UPDATE`` on the counter row), so no increment is lost and
  a read-then-write inside the transaction cannot race another writer.
* Reads run outside transactions: one indexed lookup by primary key.
* One database connection per thread (peewee's default), opened lazily and all closed by
  :meth:`SettingsStore.close`. ``sqlite:///:memory:`` is the exception: it is a single
  connection shared by the store's threads, which the store serializes.
* The table is created and the defaults seeded on first use, once per store object, except in a
  SQLite file that can only be read (a read-only mount): it is read as it is, and every write
  fails with :class:`ConfigurationError` saying why.
* Database errors surface as :class:`ConfigurationError` with the URL's password masked and
  scrubbed from the driver's message.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any

import peewee

from sandbox_core.errors import ConfigConflictError, ConfigurationError, NoProviderSelectedError, SandboxError
from sandbox_core.redaction import mask_secrets, mask_url, scrub
from sandbox_core.settings import keys
from sandbox_core.settings.database import ENV_VAR, database_from_url, default_database_url, url_password
from sandbox_core.settings.defaults import encode_json, load_defaults
from sandbox_core.settings.model import SystemSettings, bind_model, utcnow

logger = logging.getLogger(__name__)

# In peewee 3 ImproperlyConfigured (e.g. "driver not installed") is not a PeeweeException.
_DATABASE_ERRORS = (peewee.PeeweeException, peewee.ImproperlyConfigured)
_SOURCE_MAX_LENGTH = 32

Model = type[SystemSettings]


class SettingsStore:
    """The settings database: named rows, provider configs, the active provider, a version.

    ``database_url`` is a URL as accepted by :func:`~sandbox_core.settings.database_from_url`;
    None means :func:`~sandbox_core.settings.default_database_url`. Opening a store does not
    touch the database yet. Thread-safe; use it as a context manager or call :meth:`close`.
    """

    def __init__(self, database_url: str | None = None) -> None:
        self._url = default_database_url() if database_url is None else database_url
        self._password = url_password(self._url)
        self._db = database_from_url(self._url)
        self._model = bind_model(self._db)
        sqlite = isinstance(self._db, peewee.SqliteDatabase)
        self._write_args: dict[str, str] = {"lock_type": "IMMEDIATE"} if sqlite else {}
        self._lock_rows = bool(self._db.for_update)
        self._per_thread = bool(self._db.thread_safe)
        # Serializes the threads sharing a single connection (sqlite:///:memory:).
        self._serial: contextlib.AbstractContextManager[Any] = (
            contextlib.nullcontext() if self._per_thread else threading.RLock()
        )
        self._setup_lock = threading.Lock()
        self._schema_ready = False
        self._seeded = False
        self._closed = False
        self._connections: list[tuple[threading.Thread, Any]] = []
        self._connections_lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Close every connection this store opened. The store cannot be used afterwards.

        Call it when no other thread is in the middle of using the store.
        """
        with self._serial:
            if self._closed:
                return
            self._closed = True
            current = threading.current_thread()
            with self._connections_lock:
                others = [conn for thread, conn in self._connections if thread is not current]
                self._connections = []
            for conn in others:
                _close_quietly(conn)
            with self._translate_errors():
                self._db.close()

    def __enter__(self) -> SettingsStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<SettingsStore {self.describe()}>"

    def describe(self) -> str:
        """The database URL with its password masked (``postgresql://user:********@host/db``)."""
        return mask_url(self._url)

    # -- generic rows ----------------------------------------------------------------------

    def seed_defaults(self) -> list[str]:
        """Insert the packaged default rows that are missing; return the names inserted.

        Never overwrites an existing row: an operator's value wins. Safe when several processes
        seed at once. Runs automatically on a store's first use.
        """
        with self._session(seed=False):
            inserted = self._seed()
            self._seeded = True
        return inserted

    def get(self, name: str) -> str | None:
        """The text value of row ``name``, or None if there is no such row."""
        keys.check_name(name)
        with self._session() as model:
            values = _column(model.select(model.value).where(model.name == name))
        return values[0] if values else None

    def get_json(self, name: str) -> Any | None:
        """The decoded JSON value of row ``name``, or None if there is no such row.

        A row whose text is not valid JSON raises :class:`ConfigurationError` naming the row:
        silently falling back to a default would hide a broken configuration.
        """
        text = self.get(name)
        if text is None:
            return None
        try:
            return json.loads(text)
        except ValueError as exc:
            # The message names the position, never the content: the row may hold secrets.
            raise ConfigurationError(
                f"settings row {name!r} does not hold valid JSON ({exc}); write it again "
                f"with `sandbox config set` or delete it"
            ) from None

    def set(self, name: str, value: str, *, data_type: str = "string", source: str = "api") -> None:
        """Create or replace row ``name`` with the text ``value`` (checked against ``data_type``)."""
        keys.check_writable(name)
        if not isinstance(value, str):
            raise TypeError(f"the value of setting {name!r} must be a str, not {type(value).__name__}")
        _check_value(name, value, data_type)
        self._write({name: (value, data_type)}, source)

    def set_json(self, name: str, obj: Any, *, source: str = "api") -> None:
        """Create or replace row ``name`` with ``obj`` encoded as JSON."""
        keys.check_writable(name)
        self._write({name: (encode_json(name, obj), "json")}, source)

    def delete(self, name: str) -> bool:
        """Delete row ``name``; return whether it existed."""
        keys.check_writable(name)
        with self._session():

            def remove(model: Model) -> bool:
                return bool(model.delete().where(model.name == name).execute())

            return self._transaction(remove) is not None

    def names(self, prefix: str = "") -> list[str]:
        """The names of all rows starting with ``prefix`` (case-sensitive), sorted."""
        with self._session() as model:
            names = _column(model.select(model.name))
        # Filtered here rather than with LIKE: "_" in provider names is a LIKE wildcard.
        return sorted(name for name in names if name.startswith(prefix))

    def version(self) -> int:
        """The settings version: it changes whenever anything was written (one indexed read)."""
        with self._session() as model:
            values = _column(model.select(model.value).where(model.name == keys.VERSION))
        return _parse_version(values[0]) if values else 0

    # -- providers -------------------------------------------------------------------------

    def active_provider(self, installed: Iterable[str] = ()) -> str:
        """The name of the active provider.

        With none selected, raises :class:`NoProviderSelectedError` (listing ``installed``,
        which callers pass so the message can say what there is to choose from). There is
        deliberately no fallback provider.
        """
        value = (self.get(keys.PROVIDER_TYPE) or "").strip()
        if not value:
            raise NoProviderSelectedError(installed=installed)
        return value

    def set_active_provider(self, name: str, *, source: str = "api") -> None:
        """Make ``name`` the active provider (whether it is installed is the caller's concern)."""
        keys.check_provider_name(name)
        self._write({keys.PROVIDER_TYPE: (name, "string")}, source)

    def provider_config(self, name: str) -> dict[str, Any]:
        """The stored config of provider ``name``, ``{}`` if none; secrets in clear (internal use)."""
        row = keys.provider_row(name)
        config = self.get_json(row)
        if config is None:
            return {}
        if not isinstance(config, dict):
            raise ConfigurationError(
                f"settings row {row!r} must hold a JSON object, not {type(config).__name__}; "
                f"save the config of {name!r} again"
            )
        return config

    def masked_provider_config(self, name: str, secret_fields: Iterable[str]) -> dict[str, Any]:
        """The config of provider ``name`` with its set secrets replaced by ``MASK``: for display."""
        return mask_secrets(self.provider_config(name), secret_fields)

    def save_provider_config(
        self,
        name: str,
        config: Mapping[str, Any],
        *,
        activate: bool = False,
        source: str = "api",
        expected: Mapping[str, Any] | None = None,
    ) -> None:
        """Store ``config`` as provider ``name``'s config and, with ``activate``, select it.

        Both rows and the version bump are one transaction: if anything fails, the previous
        rows are left exactly as they were. With ``expected`` (the stored config the change was
        based on, as :meth:`provider_config` returned it), the write happens only if the row
        still holds exactly that, checked inside the transaction; otherwise
        :class:`~sandbox_core.errors.ConfigConflictError` is raised and nothing is written.
        """
        row = keys.provider_row(name)
        if not isinstance(config, Mapping):
            raise ConfigurationError(
                f"the config of provider {name!r} must be a mapping, not {type(config).__name__}"
            )
        rows = {row: (encode_json(row, dict(config)), "json")}
        if activate:
            rows[keys.PROVIDER_TYPE] = (name, "string")
        check = None
        if expected is not None:
            wanted = dict(expected)

            def check(model: Model) -> None:
                values = _column(self._locking(model.select(model.value).where(model.name == row)))
                current = json.loads(values[0]) if values and values[0] else {}
                if current != wanted:
                    raise ConfigConflictError(
                        f"the config of {name!r} was changed by someone else since you read it; "
                        "reload it and save again"
                    )

        self._write(rows, source, check=check)

    def configured_providers(self) -> list[str]:
        """The names of the providers that have a config row, sorted."""
        found = (keys.provider_of_row(name) for name in self.names(keys.PREFIX))
        return [provider for provider in found if provider is not None]

    def audit_settings(self) -> dict[str, Any]:
        """The audit switch: ``{"enabled": bool, "path": str | None}`` (off when unset)."""
        value = self.get_json(keys.AUDIT)
        if value is None:
            return {"enabled": False, "path": None}
        enabled = value.get("enabled", False) if isinstance(value, dict) else None
        path = value.get("path") if isinstance(value, dict) else None
        if not isinstance(enabled, bool) or not (path is None or isinstance(path, str)):
            raise ConfigurationError(
                f'settings row {keys.AUDIT!r} must be {{"enabled": true|false, "path": "FILE"|null}}'
            )
        return {"enabled": enabled, "path": path}

    # -- internals -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _session(self, *, seed: bool = True) -> Iterator[Model]:
        """Run one public operation: serialized if need be, connected, table ready."""
        with self._serial, self._translate_errors():
            if self._closed:
                raise SandboxError(f"the settings store for {self.describe()} is closed; open a new one")
            self._connect_this_thread()
            self._prepare(seed=seed)
            yield self._model

    @contextlib.contextmanager
    def _translate_errors(self) -> Iterator[None]:
        try:
            yield
        except _DATABASE_ERRORS as exc:
            self._drop_broken_connection()
            message = scrub(str(exc), [self._password] if self._password else [])
            # "from None": the driver's exception is not shown, so its text cannot leak a password.
            raise ConfigurationError(
                f"settings database {self.describe()}: {type(exc).__name__}: {message}"
            ) from None

    def _drop_broken_connection(self) -> None:
        """After an error, forget this thread's connection if it is dead, so the next call reconnects."""
        with contextlib.suppress(*_DATABASE_ERRORS):
            idle = not self._db.is_closed() and not self._db.in_transaction()
            if idle and not self._db.is_connection_usable():
                self._db.close()

    def _connect_this_thread(self) -> None:
        if not self._db.is_closed():
            return
        self._db.connect()
        logger.debug("connected to the settings database %s", self.describe())
        if not self._per_thread:
            return
        current = threading.current_thread()
        with self._connections_lock:
            kept = []
            for thread, conn in self._connections:
                # A dead thread's connection is unreachable through peewee now; a live thread's
                # earlier entry is a connection peewee already closed.
                if thread.is_alive() and thread is not current:
                    kept.append((thread, conn))
                else:
                    _close_quietly(conn)
            kept.append((current, self._db.connection()))  # type: ignore[no-untyped-call]  # unannotated in peewee's stubs
            self._connections = kept

    def _prepare(self, *, seed: bool) -> None:
        if self._schema_ready and (self._seeded or not seed):
            return
        if self._read_only() is not None:
            if not self._model.table_exists():  # type: ignore[no-untyped-call]  # unannotated in peewee's stubs
                raise ConfigurationError(
                    f"settings database {self.describe()} can only be read ({self._read_only()}) and holds no "
                    "settings: mount it writable once, or set it up elsewhere and copy it"
                )
            self._schema_ready = self._seeded = True
            return
        with self._setup_lock:
            if not self._schema_ready:
                self._create_schema()
                self._schema_ready = True
            if seed and not self._seeded:
                self._seed()
                self._seeded = True

    def _create_schema(self) -> None:
        model = self._model
        try:
            model.create_table(safe=True)
        except peewee.DatabaseError:
            # Two processes creating the table at once: PostgreSQL fails one of them on its
            # catalog's unique index, even with IF NOT EXISTS. The table is there: carry on.
            if not model.table_exists():  # type: ignore[no-untyped-call]  # unannotated in peewee's stubs
                raise
        if not model.select().where(model.name == keys.VERSION).exists():
            self._insert_version_row(model)

    def _insert_version_row(self, model: Model) -> None:
        now = utcnow()
        model.insert(
            name=keys.VERSION,
            value="0",
            data_type="integer",
            source="default",
            create_time=now,
            update_time=now,
        ).on_conflict_ignore().execute()

    def _seed(self) -> list[str]:
        defaults = load_defaults()
        wanted = [row.name for row in defaults]
        model = self._model
        present = set(_column(model.select(model.name).where(model.name.in_(wanted))))
        if all(name in present for name in wanted):
            return []  # the common case: no write transaction, no lock
        inserted: list[str] = []

        def insert_missing(model: Model) -> bool:
            query = model.select(model.name).where(model.name.in_(wanted))
            existing = set(_column(self._locking(query)))
            now = utcnow()
            for row in defaults:
                if row.name in existing:
                    continue
                # Conflict-ignoring even under the lock: a writer that does not take our lock
                # (an older version, a hand-written script) must not make seeding fail.
                model.insert(
                    name=row.name,
                    value=row.value,
                    data_type=row.data_type,
                    source="default",
                    create_time=now,
                    update_time=now,
                ).on_conflict_ignore().execute()
                inserted.append(row.name)
            return bool(inserted)

        self._transaction(insert_missing)
        if inserted:
            logger.info("seeded default settings %s into %s", ", ".join(inserted), self.describe())
        return inserted

    def _write(
        self, rows: Mapping[str, tuple[str, str]], source: str, check: Callable[[Model], None] | None = None
    ) -> None:
        _check_source(source)
        with self._session():

            def put_all(model: Model) -> bool:
                if check is not None:
                    check(model)
                for name, (value, data_type) in rows.items():
                    self._put(model, name, value, data_type, source)
                return True

            self._transaction(put_all)

    def _read_only(self) -> str | None:
        """Why this store's database can only be read (a SQLite file on a read-only mount), or None."""
        reason: str | None = getattr(self._db, "read_only", None)
        return reason

    def _transaction(self, body: Callable[[Model], bool]) -> int | None:
        """Run ``body`` in a write transaction holding the version lock; bump the version if
        it reports a change. Return the new version, or None if nothing changed."""
        reason = self._read_only()
        if reason is not None:
            raise ConfigurationError(
                f"settings database {self.describe()} can only be read ({reason}): nothing can be saved. "
                f"Make it writable, or set {ENV_VAR} to a database that is"
            )
        model = self._model
        with self._db.atomic(**self._write_args):
            current = self._lock_version(model)
            if not body(model):
                return None
            new = current + 1
            model.update(value=str(new), update_time=utcnow()).where(model.name == keys.VERSION).execute()
            return new

    def _lock_version(self, model: Model) -> int:
        query = self._locking(model.select(model.value).where(model.name == keys.VERSION))
        values = _column(query)
        if not values:
            # The counter row was deleted by hand: start it again, in this transaction.
            self._insert_version_row(model)
            values = _column(query)
        return _parse_version(values[0])

    def _put(self, model: Model, name: str, value: str, data_type: str, source: str) -> None:
        now = utcnow()
        query = model.select(model.name).where(model.name == name)
        if _column(self._locking(query)):
            model.update(value=value, data_type=data_type, source=source, update_time=now).where(
                model.name == name
            ).execute()
        else:
            model.insert(
                name=name,
                value=value,
                data_type=data_type,
                source=source,
                create_time=now,
                update_time=now,
            ).execute()

    def _locking(self, query: peewee.Select) -> peewee.Select:
        """``query`` as a locking read where the backend has them (SQLite locks the whole file)."""
        return query.for_update() if self._lock_rows else query


def _column(query: peewee.Select) -> list[Any]:
    """The values of the single column ``query`` selects (fresh rows: the query is cloned)."""
    rows: Iterable[tuple[Any, ...]] = query.tuples()
    return [row[0] for row in rows]


def _check_value(name: str, value: str, data_type: str) -> None:
    if data_type not in keys.DATA_TYPES:
        raise ConfigurationError(
            f"unknown data_type {data_type!r} for setting {name!r}: use one of {', '.join(keys.DATA_TYPES)}"
        )
    try:
        if data_type == "json":
            json.loads(value)
        elif data_type == "integer":
            int(value)
    except ValueError:
        raise ConfigurationError(f"the value given for setting {name!r} is not valid {data_type}") from None


def _check_source(source: str) -> None:
    if not isinstance(source, str) or not source or len(source) > _SOURCE_MAX_LENGTH:
        raise ConfigurationError(
            f"bad settings source {source!r}: a short word such as 'cli', 'admin' or 'api'"
        )


def _parse_version(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigurationError(
            f"settings row {keys.VERSION!r} holds {text[:20]!r}, not an integer; delete that row "
            "in the database and the store will start the count again"
        ) from None


def _close_quietly(conn: Any) -> None:
    # Closing an already closed connection raises with some drivers (PyMySQL): nothing to do then.
    with contextlib.suppress(Exception):
        conn.close()
