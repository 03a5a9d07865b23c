"""Encryption at rest (``sandbox_core.settings.secrets``), the CLI save path, and ``sandbox admin``."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from admin_support import GuardedLocalProvider

from sandbox_core.admin.auth import is_loopback, resolve_token, token_matches
from sandbox_core.cli import main
from sandbox_core.errors import ConfigurationError
from sandbox_core.settings import SettingsStore
from sandbox_core.settings.secrets import (
    PREFIX,
    decrypt_secrets,
    encrypt_secrets,
    encryption_enabled,
)

fernet = pytest.importorskip("cryptography.fernet")
KEY = fernet.Fernet.generate_key().decode()
OTHER_KEY = fernet.Fernet.generate_key().decode()


def test_secret_fields_round_trip_and_other_fields_stay_clear() -> None:
    config = {"token": "s3cret", "url": "http://x", "empty": ""}
    sealed = encrypt_secrets(config, ["token", "empty", "absent"], key=KEY)
    assert sealed["token"].startswith(PREFIX) and "s3cret" not in sealed["token"]
    assert sealed["url"] == "http://x" and sealed["empty"] == "" and "absent" not in sealed
    assert encrypt_secrets(sealed, ["token"], key=KEY) == sealed  # never encrypted twice
    assert decrypt_secrets(sealed, ["token"], key=KEY) == config


def test_without_a_key_secrets_are_stored_as_given_and_clear_values_still_read() -> None:
    assert not encryption_enabled(key="")
    assert encrypt_secrets({"token": "s"}, ["token"], key="") == {"token": "s"}
    assert decrypt_secrets({"token": "s"}, ["token"], key=KEY) == {"token": "s"}


def test_key_rotation_wrong_key_missing_key_and_bad_key_are_clear_errors() -> None:
    sealed = encrypt_secrets({"token": "s"}, ["token"], key=OTHER_KEY)
    assert decrypt_secrets(sealed, ["token"], key=f"{KEY},{OTHER_KEY}") == {"token": "s"}
    with pytest.raises(ConfigurationError, match="'token' cannot be decrypted"):
        decrypt_secrets(sealed, ["token"], key=KEY)
    with pytest.raises(ConfigurationError, match="'token' is stored encrypted but SANDBOX_SECRET_KEY is not set"):
        decrypt_secrets(sealed, ["token"], key="")
    with pytest.raises(ConfigurationError, match="not a valid Fernet key") as info:
        encrypt_secrets({"token": "s"}, ["token"], key="not-a-key")
    assert "not-a-key" not in str(info.value)


def test_cli_config_set_encrypts_and_the_client_decrypts(
    sandbox_settings: SettingsStore, register_provider: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    register_provider("guarded", GuardedLocalProvider())
    monkeypatch.setenv("SANDBOX_SECRET_KEY", KEY)
    assert main(["config", "set", "guarded", "api_token=cli-secret-value", "--activate"]) == 0
    assert sandbox_settings.provider_config("guarded")["api_token"].startswith(PREFIX)
    assert main(["config", "set", "guarded", "region=us-east"]) == 0  # keeps the encrypted token
    assert main(["exec", "-c", "print(6 * 7)", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.split("\n", 2)[-1])["stdout"] == "42\n"
    assert main(["config", "validate", "guarded"]) == 0
    monkeypatch.delenv("SANDBOX_SECRET_KEY")
    assert main(["config", "validate", "guarded"]) == 3
    assert "SANDBOX_SECRET_KEY is not set" in capsys.readouterr().err


def test_tokens_loopback_and_constant_time_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SANDBOX_ADMIN_TOKEN", raising=False)
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "192.168.1.10", "example.org"):
        assert not is_loopback(host), host
    token, generated = resolve_token("127.0.0.1")
    assert generated and len(token) >= 32
    with pytest.raises(ConfigurationError, match="refusing to serve"):
        resolve_token("0.0.0.0")
    monkeypatch.setenv("SANDBOX_ADMIN_TOKEN", "short")
    with pytest.raises(ConfigurationError, match="at least 16"):
        resolve_token("127.0.0.1")
    monkeypatch.setenv("SANDBOX_ADMIN_TOKEN", "a-long-enough-operator-token")
    assert resolve_token("0.0.0.0") == ("a-long-enough-operator-token", False)
    assert token_matches("a-long-enough-operator-token", "a-long-enough-operator-token")
    assert not token_matches("", "x") and not token_matches(None, "x") and not token_matches("é", "e")


def test_sandbox_admin_refuses_a_public_address_without_a_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SANDBOX_ADMIN_TOKEN", raising=False)
    assert main(["admin", "--host", "0.0.0.0", "--port", "1"]) == 3
    assert "without SANDBOX_ADMIN_TOKEN" in capsys.readouterr().err


def test_sandbox_help_does_not_import_the_web_stack() -> None:
    probe = (
        "import sys\nfrom sandbox_core.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('fastapi', 'uvicorn', 'pydantic', 'starlette', 'cryptography') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert "admin" in out
    assert out.strip().splitlines()[-1] == "[]"
