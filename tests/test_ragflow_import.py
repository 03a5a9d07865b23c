"""``sandbox config import-ragflow``: RAGFlow's system_settings rows into our settings database."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from sandbox_core import hookimpl
from sandbox_core.cli import main
from sandbox_core.errors import FieldProblem
from sandbox_core.schema import ConfigField, ConfigSchema

E2B_KEY = "e2b_sk_fakesecret0123456789"
ALIYUN_SECRET = "aliyunFakeSecretValue987"

# RAGFlow's peewee model: name is the key, BIGINT millisecond timestamps next to datetimes.
RAGFLOW_DDL = """
CREATE TABLE system_settings (
    create_time BIGINT, create_date DATETIME, update_time BIGINT, update_date DATETIME,
    name VARCHAR(128) NOT NULL PRIMARY KEY, source VARCHAR(32) NOT NULL,
    data_type VARCHAR(32) NOT NULL, value TEXT NOT NULL
)
"""


def _ragflow_db(path: Path, rows: dict[str, object]) -> str:
    connection = sqlite3.connect(path)
    connection.execute(RAGFLOW_DDL)
    for name, value in rows.items():
        text = value if isinstance(value, str) else json.dumps(value)
        connection.execute(
            "INSERT INTO system_settings VALUES (1732780800000, '2024-11-28 08:00:00', "
            "1732780800000, '2024-11-28 08:00:00', ?, 'variable', ?, ?)",
            (name, "string" if isinstance(value, str) else "json", text),
        )
    connection.commit()
    connection.close()
    return f"sqlite:///{path}"


REAL_ROWS: dict[str, object] = {
    "sandbox.provider_type": "self_managed",
    "sandbox.self_managed": {"endpoint": "http://127.0.0.1:9385", "timeout": 30, "max_retries": 3, "pool_size": 10},
    "sandbox.e2b": {"api_key": E2B_KEY, "region": "us", "timeout": 30},
    "sandbox.aliyun_codeinterpreter": {
        "access_key_id": "LTAI5tFakeKeyId000000001",
        "access_key_secret": ALIYUN_SECRET,
        "account_id": "1234567890",
        "region": "cn-hangzhou",
        "template_name": "my-template",
        "timeout": 30,
    },
    "sandbox.some_unknown": {"x": 1},
}


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_import_translates_validates_saves_and_activates(sandbox_settings, tmp_path, capsys) -> None:
    url = _ragflow_db(tmp_path / "ragflow.db", REAL_ROWS)
    code, out = _run(["config", "import-ragflow", "--from", url], capsys)
    assert code == 0, out
    assert "self_managed: imported" in out
    assert "e2b: imported" in out
    assert "aliyun_codeinterpreter: imported" in out
    assert "some_unknown: skipped" in out and "install" in out
    assert "pool_size: dropped" in out and "max_retries: renamed to retries" in out
    assert "region: dropped" in out
    assert E2B_KEY not in out and ALIYUN_SECRET not in out

    saved = sandbox_settings.provider_config("self_managed")
    assert saved["endpoints"] == ["http://127.0.0.1:9385"]
    assert saved["retries"] == 3 and saved["request_timeout"] == 30
    assert "pool_size" not in saved and "endpoint" not in saved
    e2b = sandbox_settings.provider_config("e2b")
    assert "region" not in e2b and e2b["request_timeout"] == 30
    assert sandbox_settings.get("sandbox.provider_type") == "self_managed"
    assert main(["config", "validate", "e2b"]) == 0
    assert main(["config", "validate", "aliyun_codeinterpreter"]) == 0
    assert main(["config", "validate", "self_managed"]) == 0
    capsys.readouterr()


def test_dry_run_saves_nothing_and_masks(sandbox_settings, tmp_path, capsys) -> None:
    url = _ragflow_db(tmp_path / "ragflow.db", REAL_ROWS)
    before = {name: sandbox_settings.provider_config(name) for name in ("self_managed", "e2b", "aliyun_codeinterpreter")}
    active_before = sandbox_settings.get("sandbox.provider_type")
    code, out = _run(["config", "import-ragflow", "--from", url, "--dry-run"], capsys)
    assert code == 0, out
    assert "would import" in out and "nothing saved" in out
    assert '"endpoints": ["http://127.0.0.1:9385"]' in out
    assert E2B_KEY not in out and ALIYUN_SECRET not in out
    assert {name: sandbox_settings.provider_config(name) for name in before} == before
    assert sandbox_settings.get("sandbox.provider_type") == active_before


def test_invalid_row_reported_by_field_with_exit_3(sandbox_settings, tmp_path, capsys) -> None:
    rows = {
        "sandbox.provider_type": "e2b",
        "sandbox.e2b": {"api_key": E2B_KEY, "timeout": 100000},
        "sandbox.self_managed": {"endpoint": "http://127.0.0.1:9385", "timeout": 30, "max_retries": 3, "pool_size": 1},
    }
    url = _ragflow_db(tmp_path / "ragflow.db", rows)
    code, out = _run(["config", "import-ragflow", "--from", url], capsys)
    assert code == 3, out
    assert "e2b: invalid" in out and "request_timeout" in out
    assert "not activated" in out
    assert E2B_KEY not in out
    assert "api_key" not in sandbox_settings.provider_config("e2b")
    assert sandbox_settings.provider_config("self_managed")["endpoints"] == ["http://127.0.0.1:9385"]


def test_json_report(sandbox_settings, tmp_path, capsys) -> None:
    url = _ragflow_db(tmp_path / "ragflow.db", REAL_ROWS)
    code, out = _run(["config", "import-ragflow", "--from", url, "--dry-run", "--json"], capsys)
    assert code == 0, out
    report = json.loads(out)
    assert report["dry_run"] is True and report["table"] == "system_settings"
    statuses = {p["provider"]: p["status"] for p in report["providers"]}
    assert statuses == {
        "aliyun_codeinterpreter": "imported",
        "e2b": "imported",
        "self_managed": "imported",
        "some_unknown": "skipped",
    }
    e2b = next(p for p in report["providers"] if p["provider"] == "e2b")
    assert e2b["config"]["api_key"] == "********"
    assert any(note.startswith("timeout: renamed") for note in e2b["notes"])
    assert report["ragflow_active"] == "self_managed" and report["activated"] == "self_managed"
    assert E2B_KEY not in out and ALIYUN_SECRET not in out


def test_no_activate(sandbox_settings, tmp_path, capsys) -> None:
    url = _ragflow_db(tmp_path / "ragflow.db", REAL_ROWS)
    active_before = sandbox_settings.get("sandbox.provider_type")
    code, out = _run(["config", "import-ragflow", "--from", url, "--no-activate"], capsys)
    assert code == 0, out
    assert "not activated (--no-activate)" in out
    assert sandbox_settings.get("sandbox.provider_type") == active_before


def test_source_url_password_never_printed(sandbox_settings, capsys) -> None:
    code, out = _run(["config", "import-ragflow", "--from", "mysql://rag:hunter2pw@127.0.0.1:1/rag"], capsys)
    assert code != 0
    assert "hunter2pw" not in out


def test_missing_sqlite_file_is_not_created(sandbox_settings, tmp_path, capsys) -> None:
    missing = tmp_path / "nope.db"
    code, out = _run(["config", "import-ragflow", "--from", f"sqlite:///{missing}"], capsys)
    assert code == 3 and "does not exist" in out
    assert not missing.exists()


class PinProvider:
    """A provider whose checks quote the (three-character) PIN they refuse."""

    @hookimpl
    def sandbox_config_schema(self) -> ConfigSchema:
        return ConfigSchema([ConfigField("pin", "secret", required=True)])

    @hookimpl
    def sandbox_validate_config(self, config: Mapping[str, Any]) -> list[FieldProblem]:
        return [FieldProblem("pin", f"PIN {config['pin'].reveal()} is locked")]

    @hookimpl
    def sandbox_execute(self) -> None:
        raise AssertionError("never reached: the config is refused")


def test_a_short_secret_is_masked_in_the_report(sandbox_settings, register_provider, tmp_path, capsys) -> None:
    register_provider("pin", PinProvider())
    url = _ragflow_db(tmp_path / "ragflow.db", {"sandbox.pin": {"pin": "Q7z"}})
    for argv in (["config", "import-ragflow", "--from", url], ["config", "import-ragflow", "--from", url, "--json"]):
        code, out = _run(argv, capsys)
        assert code == 3 and "PIN ******** is locked" in out and "Q7z" not in out, out
