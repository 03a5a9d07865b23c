"""Turn a settings database URL into a peewee database (URLs are shown through :func:`~sandbox_core.redaction.mask_url`).

Accepted URLs::

    sqlite:///relative/path.db      sqlite:////absolute/path.db      sqlite:///:memory:
    postgresql://USER:PASSWORD@HOST:PORT/DB   (or postgres://; needs sandbox-core[postgres])
    mysql://USER:PASSWORD@HOST:PORT/DB        (MariaDB too; needs sandbox-core[mysql])

Special characters in the user name or password must be percent-encoded. Query parameters of
server URLs are passed to the driver (``?sslmode=require``, ``?unix_socket=/run/mysqld.sock``).

A SQLite file is checked before use: an existing file that is empty or not a SQLite database is an
error (never silently replaced by fresh defaults), a new file appears complete (it is built under a
temporary name and linked into place), and a file that cannot be written (a read-only mount) is
opened read-only, so that reading settings works and saving fails with a clear message.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import peewee
import platformdirs

from sandbox_core.errors import ConfigurationError
from sandbox_core.redaction import mask_url

ENV_VAR = "SANDBOX_DATABASE_URL"
"""The environment variable that selects the settings database."""

APP_NAME = "sandbox-core"
SQLITE_FILE_NAME = "settings.db"
SQLITE_BUSY_TIMEOUT = 30.0
"""Seconds a SQLite writer waits for another process's write lock before giving up."""
SERVER_CONNECT_TIMEOUT = 10
"""Seconds to wait for a database server that does not answer (instead of hanging)."""

ACCEPTED_URLS = (
    "sqlite:///PATH, sqlite:///:memory:, postgresql://USER:PASSWORD@HOST:PORT/DB "
    "(or postgres://), mysql://USER:PASSWORD@HOST:PORT/DB (MariaDB too)"
)


class _RedactQueryParameters(logging.Filter):
    """Keeps peewee's debug log of SQL statements but drops their parameters.

    Those parameters are setting values, provider secrets among them; a DEBUG log level switched on
    for troubleshooting must not write them out.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, tuple) and len(record.msg) == 2:
            record.msg = (record.msg[0], "<parameters redacted>")
        return True


logging.getLogger("peewee").addFilter(_RedactQueryParameters())


def url_password(url: str) -> str | None:
    """The (decoded) password in ``url``, so that callers can scrub it from driver messages."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return unquote(password) if password else None


def default_database_url() -> str:
    """``$SANDBOX_DATABASE_URL`` if set, else a SQLite file in the user's data directory.

    The directory (``platformdirs.user_data_dir("sandbox-core")``) is created on demand so that
    a first ``sandbox`` command works on a fresh machine.
    """
    from_env = os.environ.get(ENV_VAR, "").strip()
    if from_env:
        return from_env
    directory = Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))
    directory.mkdir(parents=True, exist_ok=True)
    return "sqlite:///" + str(directory / SQLITE_FILE_NAME)


def database_from_url(url: str) -> peewee.Database:
    """A peewee database (not yet connected) for ``url``; see the module docstring.

    Raises :class:`ConfigurationError` for an unsupported or malformed URL and when the
    driver the URL needs is not installed (naming the extra to install).
    """
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme == "sqlite":
        return _sqlite_database(url)
    if scheme in ("postgresql", "postgres"):
        _require_postgres_driver(url)
        database, params = _server_params(url)
        params.setdefault("connect_timeout", SERVER_CONNECT_TIMEOUT)
        return peewee.PostgresqlDatabase(database, **params)
    if scheme in ("mysql", "mariadb"):
        _require_driver("pymysql", "mysql", url)
        database, params = _server_params(url)
        params.setdefault("connect_timeout", SERVER_CONNECT_TIMEOUT)
        return peewee.MySQLDatabase(database, **params)
    raise ConfigurationError(
        f"unsupported settings database URL {mask_url(url)!r}: use one of {ACCEPTED_URLS} (set {ENV_VAR})"
    )


def _sqlite_database(url: str) -> peewee.SqliteDatabase:
    prefix = "sqlite:///"
    if not url.lower().startswith(prefix) or len(url) == len(prefix):
        raise ConfigurationError(
            f"bad SQLite URL {mask_url(url)!r}: write sqlite:///relative/path.db, "
            "sqlite:////absolute/path.db or sqlite:///:memory:"
        )
    path = url[len(prefix) :]
    if "?" in path or "#" in path:
        raise ConfigurationError(f"bad SQLite URL {mask_url(url)!r}: SQLite URLs take no query parameters")
    if path == ":memory:":
        # Every connection to ":memory:" is a new, empty database: the store shares this single
        # connection between its threads (serializing them) instead of one per thread.
        return peewee.SqliteDatabase(
            ":memory:", thread_safe=False, check_same_thread=False, pragmas=[("foreign_keys", 1)]
        )
    Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
    return SettingsSqliteDatabase(
        str(Path(path).expanduser()),
        # "normal" sync is durable enough in WAL mode (set when connecting, see below).
        pragmas=[("synchronous", "normal"), ("foreign_keys", 1)],
        timeout=SQLITE_BUSY_TIMEOUT,
        # peewee still opens one connection per thread; this only lets
        # SettingsStore.close() close the other threads' connections.
        check_same_thread=False,
    )


class SettingsSqliteDatabase(peewee.SqliteDatabase):
    """The settings file: checked, created whole, in WAL mode, or read-only where it cannot be written.

    WAL mode lets readers go on while a writer works. Switching a file to WAL needs a moment of
    exclusive access, and SQLite reports "database is locked" at once instead of waiting for the
    busy timeout when another process holds the file (two processes opening a new settings file
    together), so that is retried until the timeout.

    A WAL database can only be opened normally where SQLite may create its ``-shm`` file next to
    it; on a read-only mount even reading fails ("unable to open database file"). There the file
    is opened read-only and, unless a ``-wal`` file holds changes, as immutable (nothing can change
    it on that mount); :attr:`read_only` then says why, and writers refuse with that reason.
    """

    read_only: str | None = None
    """Why the file can only be read (None when it can be written); set on connecting."""

    def _connect(self) -> sqlite3.Connection:
        path = Path(self.database)
        _check_existing(path)
        self.read_only = _why_read_only(path)
        if self.read_only is None:
            if not path.exists():
                _create_whole(path)
            target, uri = str(path), False
        else:
            wal = path.with_name(path.name + "-wal")
            immutable = "" if wal.exists() and wal.stat().st_size else "&immutable=1"
            target, uri = f"{path.absolute().as_uri().replace('file://', 'file:', 1)}?mode=ro{immutable}", True
        conn = sqlite3.connect(target, timeout=SQLITE_BUSY_TIMEOUT, isolation_level=None, uri=uri, **self.connect_params)
        try:
            self._add_conn_hooks(conn)  # type: ignore[attr-defined]  # not in peewee's stubs
        except sqlite3.DatabaseError as exc:
            conn.close()
            if "not a database" in str(exc):
                raise ConfigurationError(
                    f"the settings database {path} is not a SQLite database; point {ENV_VAR} at the right file"
                ) from None
            raise
        except Exception:
            conn.close()
            raise
        return conn

    def _initialize_connection(self, conn: sqlite3.Connection) -> None:
        super()._initialize_connection(conn)  # type: ignore[misc]  # not in peewee's stubs
        if self.read_only is not None:
            return
        deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT
        delay = 0.01
        while True:
            try:
                conn.execute("PRAGMA journal_mode = wal").fetchall()
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


def _check_existing(path: Path) -> None:
    """Refuse an existing empty file: SQLite would take it for a new database and it would be
    seeded with defaults. (Only ``stat``: opening and closing the file would drop the locks this
    process's SQLite connections hold on it.)"""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ConfigurationError(f"cannot read the settings database {path}: {exc.strerror}") from None
    if size == 0:
        raise ConfigurationError(
            f"the settings database {path} is an empty file (0 bytes), not a SQLite database; it may have "
            "been truncated. Restore it from a backup, or delete it to start afresh with the default settings"
        )


def _why_read_only(path: Path) -> str | None:
    """Why SQLite cannot write ``path`` (or create it and its -wal/-shm files), or None if it can."""
    directory = path.parent
    with contextlib.suppress(OSError):
        if os.statvfs(directory).f_flag & os.ST_RDONLY:
            return "it is on a read-only file system" if path.exists() else None
    if path.exists() and not os.access(path, os.W_OK):
        return "the file is not writable"
    if not os.access(directory, os.W_OK | os.X_OK):
        if not path.exists():
            return None  # creating it will fail with the system's reason
        return f"its directory {directory} is not writable (SQLite creates its -wal and -shm files there)"
    return None


def _create_whole(path: Path) -> None:
    """Create an empty WAL-mode settings file at ``path`` that never appears half made: a file
    another process finds there is complete, so an empty file always means a broken one."""
    try:
        descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".new", dir=path.parent)
    except OSError as exc:
        raise ConfigurationError(f"cannot create the settings database {path}: {exc.strerror}") from None
    os.close(descriptor)
    try:
        conn = sqlite3.connect(temporary, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode = wal").fetchall()
        finally:
            conn.close()
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process created it meanwhile: use theirs
        except OSError:
            # No hard links here (some network file systems): let SQLite create the file itself.
            pass
    finally:
        for leftover in (temporary, temporary + "-wal", temporary + "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)


def _server_params(url: str) -> tuple[str, dict[str, Any]]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigurationError(f"bad settings database URL {mask_url(url)!r}: {exc}") from None
    database = unquote(parts.path.lstrip("/"))
    if not database:
        raise ConfigurationError(
            f"settings database URL {mask_url(url)!r} names no database: add /DBNAME after the host"
        )
    params: dict[str, Any] = {}
    if parts.username:
        params["user"] = unquote(parts.username)
    if parts.password:
        params["password"] = unquote(parts.password)
    if parts.hostname:
        params["host"] = parts.hostname
    if port is not None:
        params["port"] = port
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        # Drivers want numbers as numbers (PyMySQL rejects connect_timeout="5").
        params[key] = int(value) if value.isdigit() else value
    return database, params


def _require_driver(module: str, extra: str, url: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ConfigurationError(
            f"the settings database {mask_url(url)!r} needs the {module} driver, which is not "
            f"installed: pip install 'sandbox-core[{extra}]'"
        )


def _require_postgres_driver(url: str) -> None:
    # peewee 4 can also drive PostgreSQL through psycopg 3; peewee 3 needs psycopg2.
    psycopg3_usable = hasattr(peewee.PostgresqlDatabase, "psycopg3_adapter") and (
        importlib.util.find_spec("psycopg") is not None
    )
    if not psycopg3_usable:
        _require_driver("psycopg2", "postgres", url)
