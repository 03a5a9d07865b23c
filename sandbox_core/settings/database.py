"""Turn a settings database URL into a peewee database, and show URLs without their password.

Accepted URLs::

    sqlite:///relative/path.db      sqlite:////absolute/path.db      sqlite:///:memory:
    postgresql://USER:PASSWORD@HOST:PORT/DB   (or postgres://; needs sandbox-core[postgres])
    mysql://USER:PASSWORD@HOST:PORT/DB        (MariaDB too; needs sandbox-core[mysql])

Special characters in the user name or password must be percent-encoded. Query parameters of
server URLs are passed to the driver (``?sslmode=require``, ``?unix_socket=/run/mysqld.sock``).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sqlite3
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import peewee
import platformdirs

from sandbox_core.errors import ConfigurationError

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
PASSWORD_MASK = "***"


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


def mask_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``: safe for errors, logs and output."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    # The authority ends at the first "/", "?" or "#"; a password holding those unencoded is
    # not a valid URL anyway, so masking everything up to the last "@" before them is safest.
    end = len(rest)
    for char in "/?#":
        index = rest.find(char)
        if index != -1:
            end = min(end, index)
    authority, tail = rest[:end], rest[end:]
    userinfo, at, host = authority.rpartition("@")
    if not at:
        return url
    user, colon, _password = userinfo.partition(":")
    if not colon:
        return url
    return f"{scheme}://{user}:{PASSWORD_MASK}@{host}{tail}"


def url_password(url: str) -> str | None:
    """The (decoded) password in ``url``, so that callers can scrub it from driver messages."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return unquote(password) if password else None


def scrub(text: str, password: str | None) -> str:
    """``text`` with every occurrence of ``password`` (plain or percent-encoded) masked."""
    if not password:
        return text
    for form in {password, quote(password, safe="")}:
        text = text.replace(form, PASSWORD_MASK)
    return text


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
    return _WalSqliteDatabase(
        str(Path(path).expanduser()),
        # "normal" sync is durable enough in WAL mode (set when connecting, see below).
        pragmas=[("synchronous", "normal"), ("foreign_keys", 1)],
        timeout=SQLITE_BUSY_TIMEOUT,
        # peewee still opens one connection per thread; this only lets
        # SettingsStore.close() close the other threads' connections.
        check_same_thread=False,
    )


class _WalSqliteDatabase(peewee.SqliteDatabase):
    """A SQLite database switched to WAL mode, so that readers go on while a writer works.

    Switching a file to WAL needs a moment of exclusive access, and SQLite reports "database
    is locked" at once instead of waiting for the busy timeout when another process holds the
    file (two processes opening a new settings file together). So retry until the timeout.
    """

    def _initialize_connection(self, conn: sqlite3.Connection) -> None:
        super()._initialize_connection(conn)  # type: ignore[misc]  # not in peewee's stubs
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
