"""SettingsStore behaviour, run against SQLite, PostgreSQL and MariaDB (see conftest.py)."""

from __future__ import annotations

import threading
import traceback
from typing import Any

import pytest

from sandbox_core.errors import ConfigurationError, NoProviderSelectedError
from sandbox_core.settings import MASK, SettingsStore

DEFAULT_NAMES = ["sandbox.audit", "sandbox.provider_type", "sandbox.self_managed"]


def test_string_rows_round_trip(store: SettingsStore) -> None:
    assert store.get("custom.greeting") is None
    store.set("custom.greeting", "héllo wörld ✓", source="cli")
    assert store.get("custom.greeting") == "héllo wörld ✓"
    store.set("custom.greeting", "")
    assert store.get("custom.greeting") == ""
    store.set("custom.other", "x")
    assert store.names("custom.") == ["custom.greeting", "custom.other"]
    assert store.delete("custom.greeting") is True
    assert store.delete("custom.greeting") is False
    assert store.get("custom.greeting") is None
    assert store.names("custom.") == ["custom.other"]


def test_json_rows_round_trip(store: SettingsStore) -> None:
    value = {"flag": True, "off": False, "none": None, "n": 1.5, "list": [1, "two", {"3": []}], "ü": "ñ"}
    store.set_json("custom.doc", value)
    assert store.get_json("custom.doc") == value
    assert store.get_json("custom.missing") is None


def test_long_json_config_survives(store: SettingsStore) -> None:
    # Well past MySQL's 64 KiB TEXT limit, in multi-byte characters (the limit is in bytes).
    config = {"endpoints": ["http://a:1"], "ca_bundle": "é✓" * 60_000, "rules": list(range(5_000))}
    store.save_provider_config("e2b", config)
    assert store.provider_config("e2b") == config


def test_a_fresh_store_is_seeded_with_the_defaults(store: SettingsStore) -> None:
    assert store.names("sandbox.") == [*DEFAULT_NAMES, "sandbox.settings_version"]
    assert store.active_provider() == "self_managed"
    assert store.provider_config("self_managed") == {"endpoints": ["http://127.0.0.1:8808"]}
    assert store.audit_settings() == {"enabled": False, "path": None}
    assert store.seed_defaults() == []


def test_seeding_inserts_only_missing_rows_and_keeps_operator_values(database_url: str) -> None:
    with SettingsStore(database_url) as first:
        first.set_active_provider("e2b", source="cli")
        first.save_provider_config("self_managed", {"endpoints": ["http://10.0.0.5:9000"], "token": "t"})
        first.delete("sandbox.audit")
        version = first.version()
    with SettingsStore(database_url) as second:
        assert second.seed_defaults() == ["sandbox.audit"]
        assert second.seed_defaults() == []
        assert second.active_provider() == "e2b"
        assert second.provider_config("self_managed") == {"endpoints": ["http://10.0.0.5:9000"], "token": "t"}
        assert second.audit_settings() == {"enabled": False, "path": None}
        assert second.version() == version + 1


def test_seed_defaults_as_first_call_reports_what_it_inserted(database_url: str) -> None:
    with SettingsStore(database_url) as store:
        assert sorted(store.seed_defaults()) == DEFAULT_NAMES


def test_no_provider_selected_says_how_to_select_one(store: SettingsStore) -> None:
    store.set("sandbox.provider_type", "  ")
    with pytest.raises(NoProviderSelectedError) as info:
        store.active_provider(installed=["e2b", "self_managed"])
    message = str(info.value)
    assert "sandbox config use" in message
    assert "e2b, self_managed" in message
    store.delete("sandbox.provider_type")
    with pytest.raises(NoProviderSelectedError):
        store.active_provider()
    store.set_active_provider("e2b")
    assert store.active_provider() == "e2b"


def test_corrupt_json_row_is_an_error_naming_the_row(store: SettingsStore) -> None:
    store.set("sandbox.e2b", '{"api_key": "abc", ', data_type="string")
    with pytest.raises(ConfigurationError, match=r"sandbox\.e2b") as info:
        store.get_json("sandbox.e2b")
    assert "abc" not in str(info.value)
    with pytest.raises(ConfigurationError, match=r"sandbox\.e2b"):
        store.provider_config("e2b")
    store.set("sandbox.audit", "[1, 2", data_type="string")
    with pytest.raises(ConfigurationError, match=r"sandbox\.audit"):
        store.audit_settings()


def test_wrongly_shaped_rows_are_errors(store: SettingsStore) -> None:
    store.set_json("sandbox.e2b", ["not", "an", "object"])
    with pytest.raises(ConfigurationError, match=r"sandbox\.e2b"):
        store.provider_config("e2b")
    store.set_json("sandbox.audit", {"enabled": "yes"})
    with pytest.raises(ConfigurationError, match=r"sandbox\.audit"):
        store.audit_settings()
    store.set_json("sandbox.audit", {"enabled": True, "path": "/var/log/sandbox.jsonl"})
    assert store.audit_settings() == {"enabled": True, "path": "/var/log/sandbox.jsonl"}


def test_invalid_writes_are_refused(store: SettingsStore) -> None:
    before = store.version()
    with pytest.raises(ConfigurationError):
        store.set("sandbox.settings_version", "999")
    with pytest.raises(ConfigurationError):
        store.set("custom.json", "{broken", data_type="json")
    with pytest.raises(ConfigurationError):
        store.set("custom.kind", "x", data_type="yaml")
    with pytest.raises(ConfigurationError):
        store.save_provider_config("audit", {})
    with pytest.raises(ConfigurationError):
        store.set("x" * 129, "too long a name")
    assert store.version() == before


def test_masked_provider_config_hides_set_secrets_only(store: SettingsStore) -> None:
    config = {
        "api_key": "sk-live-123",
        "token": "",
        "endpoints": ["http://a:1"],
        "auth": {"password": "hunter2", "user": "bob"},
    }
    store.save_provider_config("e2b", config)
    masked = store.masked_provider_config("e2b", ["api_key", "token", "missing", "auth.password"])
    assert MASK == "********"
    assert masked == {
        "api_key": MASK,
        "token": "",
        "endpoints": ["http://a:1"],
        "auth": {"password": MASK, "user": "bob"},
    }
    assert store.provider_config("e2b") == config  # the stored config itself is untouched
    assert store.masked_provider_config("aliyun_codeinterpreter", ["api_key"]) == {}


def test_save_provider_config_with_activate_is_atomic(
    store: SettingsStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.save_provider_config("e2b", {"api_key": "old"}, activate=True)
    version = store.version()

    # A value that cannot be encoded fails before anything is written.
    with pytest.raises(ConfigurationError, match=r"sandbox\.e2b"):
        store.save_provider_config("e2b", {"api_key": object()}, activate=True)

    # A failure between the two row writes, inside the transaction, must undo the first write.
    written: list[str] = []
    real_put = store._put

    def failing_put(model: Any, name: str, *args: Any) -> None:
        if name == "sandbox.provider_type":
            raise RuntimeError("simulated crash between the two writes")
        real_put(model, name, *args)
        written.append(name)

    monkeypatch.setattr(store, "_put", failing_put)
    with pytest.raises(RuntimeError, match="simulated crash"):
        store.save_provider_config("aliyun_codeinterpreter", {"access_key_id": "new"}, activate=True)
    assert written == ["sandbox.aliyun_codeinterpreter"]  # the first row really was written...
    monkeypatch.undo()

    assert store.provider_config("aliyun_codeinterpreter") == {}  # ...and then rolled back
    assert store.provider_config("e2b") == {"api_key": "old"}
    assert store.active_provider() == "e2b"
    assert store.version() == version

    # And the store still works after the rollback.
    store.save_provider_config("aliyun_codeinterpreter", {"access_key_id": "new"}, activate=True)
    assert store.active_provider() == "aliyun_codeinterpreter"
    assert store.version() == version + 1


def test_every_write_bumps_the_version_once(store: SettingsStore) -> None:
    start = store.version()
    assert start >= 1  # seeding was a write
    store.set("custom.a", "1")
    assert store.version() == start + 1
    store.set_json("custom.b", {"x": 1})
    assert store.version() == start + 2
    store.save_provider_config("e2b", {"api_key": "k"}, activate=True)  # two rows, one write
    assert store.version() == start + 3
    store.set_active_provider("self_managed")
    assert store.version() == start + 4
    store.set("custom.a", "1")  # same value again: still a write
    assert store.version() == start + 5
    assert store.delete("custom.a") is True
    assert store.version() == start + 6
    assert store.delete("custom.a") is False  # nothing changed
    assert store.version() == start + 6


def test_version_is_shared_between_stores(database_url: str) -> None:
    with SettingsStore(database_url) as one, SettingsStore(database_url) as two:
        before = two.version()
        one.set("custom.a", "1")
        assert two.version() == before + 1
        assert two.get("custom.a") == "1"


def test_threads_can_share_a_store(store: SettingsStore) -> None:
    start = store.version()
    errors: list[str] = []
    threads_count, writes = 6, 15

    def work(index: int) -> None:
        try:
            for i in range(writes):
                store.save_provider_config(f"thread{index}", {"i": i})
                assert store.provider_config(f"thread{index}") == {"i": i}
        except Exception:
            errors.append(traceback.format_exc())

    threads = [threading.Thread(target=work, args=(n,)) for n in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.version() == start + threads_count * writes
    assert store.configured_providers() == sorted(
        ["self_managed", *(f"thread{n}" for n in range(threads_count))]
    )


def test_a_closed_store_refuses_work(database_url: str) -> None:
    store = SettingsStore(database_url)
    store.set("custom.a", "1")
    store.close()
    store.close()  # idempotent
    with pytest.raises(Exception, match="closed"):
        store.get("custom.a")
    with SettingsStore(database_url) as again:
        assert again.get("custom.a") == "1"


def test_password_never_shown(server_url: str) -> None:
    password = server_url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
    with SettingsStore(server_url) as store:
        shown = store.describe()
        assert password not in shown and ":********@" in shown
        assert password not in repr(store)

    # A database that does not exist: the error names the URL, masked.
    missing = server_url.rsplit("/", 1)[0] + "/no_such_database"
    with SettingsStore(missing) as store, pytest.raises(ConfigurationError) as info:
        store.get("sandbox.provider_type")
    text = "".join(traceback.format_exception(info.value))
    assert "no_such_database" in text and ":********@" in text
    assert password not in text

    # A wrong password: it must not come back in the error either.
    wrong = server_url.replace(password, password + "-wrong")
    with SettingsStore(wrong) as store, pytest.raises(ConfigurationError) as info:
        store.get("sandbox.provider_type")
    text = "".join(traceback.format_exception(info.value))
    assert password not in text
