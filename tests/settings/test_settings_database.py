"""Database URLs: parsing, masking, the default location, drivers, SQLite settings."""

from __future__ import annotations

import importlib.util
import logging
import threading
from pathlib import Path
from typing import Any

import peewee
import pytest

from sandbox_core.errors import ConfigurationError
from sandbox_core.settings import SettingsStore, database_from_url, default_database_url, mask_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql://user:hunter2@db.example:5432/sandbox",
            "postgresql://user:********@db.example:5432/sandbox",
        ),
        (
            "mysql://root:p%40ss%2Fword@127.0.0.1/db?charset=utf8mb4",
            "mysql://root:********@127.0.0.1/db?charset=utf8mb4",
        ),
        ("postgres://user:with@at@host/db", "postgres://user:********@host/db"),
        ("postgresql://user@host/db", "postgresql://user@host/db"),
        ("postgresql://host/db", "postgresql://host/db"),
        ("sqlite:////var/lib/sandbox/settings.db", "sqlite:////var/lib/sandbox/settings.db"),
        ("not a url", "not a url"),
    ],
)
def test_mask_url(url: str, shown: str) -> None:
    assert mask_url(url) == shown


def test_unknown_scheme_names_the_accepted_ones_without_the_password() -> None:
    with pytest.raises(ConfigurationError) as info:
        database_from_url("oracle://scott:tiger-secret@host/db")
    message = str(info.value)
    assert "tiger-secret" not in message
    for scheme in ("sqlite:///", "postgresql://", "mysql://"):
        assert scheme in message


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://relative.db",
        "sqlite:///",
        "postgresql://u:pw-secret@host",
        "mysql://u:pw-secret@host:notaport/db",
    ],
)
def test_malformed_urls_are_configuration_errors(url: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        database_from_url(url)
    assert "pw-secret" not in str(info.value)


@pytest.mark.parametrize(
    ("url", "modules", "extra"),
    [
        ("postgresql://u:pw-secret@h/db", {"psycopg2", "psycopg"}, "pip install 'sandbox-core[postgres]'"),
        ("postgres://u:pw-secret@h/db", {"psycopg2", "psycopg"}, "pip install 'sandbox-core[postgres]'"),
        ("mysql://u:pw-secret@h/db", {"pymysql"}, "pip install 'sandbox-core[mysql]'"),
    ],
)
def test_missing_driver_says_which_extra_to_install(
    url: str, modules: set[str], extra: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: Any, **kwargs: Any) -> Any:
        return None if name in modules else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(ConfigurationError) as info:
        database_from_url(url)
    assert extra in str(info.value)
    assert "pw-secret" not in str(info.value)


def test_server_urls_become_driver_parameters() -> None:
    db = database_from_url("postgresql://us%40er:p%3Ass@db.example:6543/settings?sslmode=require")
    assert isinstance(db, peewee.PostgresqlDatabase)
    assert db.database == "settings"
    assert db.connect_params["user"] == "us@er"
    assert db.connect_params["password"] == "p:ss"
    assert (db.connect_params["host"], db.connect_params["port"]) == ("db.example", 6543)
    assert db.connect_params["sslmode"] == "require"
    db = database_from_url("mysql://u:pw@127.0.0.1:3307/settings")
    assert isinstance(db, peewee.MySQLDatabase)
    assert (db.database, db.connect_params["port"]) == ("settings", 3307)


def test_default_url_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOX_DATABASE_URL", "postgresql://u:pw@h/db")
    assert default_database_url() == "postgresql://u:pw@h/db"


def test_default_url_is_a_sqlite_file_in_the_user_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "home" / ".local" / "share" / "sandbox-core"
    monkeypatch.delenv("SANDBOX_DATABASE_URL", raising=False)
    monkeypatch.setattr(
        "platformdirs.user_data_dir",
        lambda appname, *args, **kwargs: str(data_dir) if appname == "sandbox-core" else None,
    )
    url = default_database_url()
    assert url == f"sqlite:///{data_dir / 'settings.db'}"
    assert data_dir.is_dir()
    with SettingsStore() as store:
        assert store.describe() == url
        assert store.active_provider() == "self_managed"
    assert (data_dir / "settings.db").is_file()


def test_sqlite_file_runs_in_wal_mode_with_a_busy_timeout(tmp_path: Path) -> None:
    db = database_from_url(f"sqlite:///{tmp_path / 'nested' / 'settings.db'}")
    with db.connection_context():
        assert db.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute_sql("PRAGMA foreign_keys").fetchone()[0] == 1
        assert db.execute_sql("PRAGMA busy_timeout").fetchone()[0] >= 30_000


def test_in_memory_sqlite_is_one_database_shared_by_threads() -> None:
    with SettingsStore("sqlite:///:memory:") as store:
        start = store.version()
        errors: list[BaseException] = []

        def work(index: int) -> None:
            try:
                for i in range(20):
                    store.set(f"custom.t{index}", str(i))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert [store.get(f"custom.t{n}") for n in range(4)] == ["19"] * 4
        assert store.version() == start + 80


def test_sql_debug_log_never_shows_setting_values(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from sandbox_core.settings import SettingsStore

    caplog.set_level(logging.DEBUG, logger="peewee")
    with SettingsStore(f"sqlite:///{tmp_path / 'settings.db'}") as store:
        store.save_provider_config("vault", {"token": "do-not-log-this-value"})
        assert store.provider_config("vault") == {"token": "do-not-log-this-value"}
    assert any("system_settings" in record.getMessage() for record in caplog.records), "peewee logged no SQL"
    assert "do-not-log-this-value" not in caplog.text
