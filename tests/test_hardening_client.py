"""Hardening of the core's client side: the CLI's secret binding, credentials in URLs, strict options.

* ``sandbox config set`` keeps a saved secret only while the fields it is bound to stay the same
  (the admin API's rule, see ``tests/admin/test_admin_secret_binding.py``).
* No URL field of any shipped provider accepts ``user:password@``; one saved before is shown masked.
* ``sandbox exec --timeout`` takes only a finite, positive number of seconds (a usage error otherwise).
"""

from __future__ import annotations

import importlib
import io
import json
import sys
from collections.abc import Callable

import pytest

from sandbox_core.cli import main
from sandbox_core.client import SandboxClient
from sandbox_core.errors import ConfigValidationError
from sandbox_core.registry import ProviderRegistry
from sandbox_core.schema import FieldType
from sandbox_core.settings import SettingsStore
from sandbox_core.testing import UnsandboxedSubprocessProvider

SHIPPED = {
    "self_managed": "sandbox_selfmanaged.provider",
    "e2b": "sandbox_e2b.provider",
    "aliyun_codeinterpreter": "sandbox_aliyun.provider",
}
TOKEN = "Saved-Executor-Token-5d1e"

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def sandbox(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Run:
    def run(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def registry(sandbox_registry: ProviderRegistry) -> ProviderRegistry:
    for name, module in SHIPPED.items():
        sandbox_registry.register(name, importlib.import_module(pytest.importorskip(module).__name__))
    sandbox_registry.register("local", UnsandboxedSubprocessProvider())
    return sandbox_registry


@pytest.fixture
def saved(sandbox_settings: SettingsStore, registry: ProviderRegistry) -> SettingsStore:
    sandbox_settings.save_provider_config("self_managed", {"endpoints": ["http://127.0.0.1:9"], "token": TOKEN})
    return sandbox_settings


# -- sandbox config set: secret binding ------------------------------------------------------------


def test_config_set_refuses_moving_the_endpoints_under_a_saved_token(saved: SettingsStore, sandbox: Run) -> None:
    code, out, err = sandbox("config", "set", "self_managed", "endpoints=http://127.0.0.1:10")
    assert code == 3, (out, err)
    assert "token: enter it again" in err and "endpoints" in err and TOKEN not in err + out
    assert saved.provider_config("self_managed") == {"endpoints": ["http://127.0.0.1:9"], "token": TOKEN}


def test_config_set_refuses_a_masked_token_with_new_endpoints(saved: SettingsStore, sandbox: Run) -> None:
    moved = '{"endpoints": ["http://127.0.0.1:10"], "token": "********"}'
    code, _, err = sandbox("config", "set", "self_managed", "--replace", "--json", moved)
    assert code == 3 and "token: enter it again" in err
    assert saved.provider_config("self_managed")["endpoints"] == ["http://127.0.0.1:9"]


def test_config_set_keeps_the_token_while_its_endpoints_stay(saved: SettingsStore, sandbox: Run) -> None:
    code, out, err = sandbox("config", "set", "self_managed", "retries=1", "endpoints=http://127.0.0.1:9/")
    assert code == 0, (out, err)
    assert saved.provider_config("self_managed") == {"endpoints": ["http://127.0.0.1:9"], "token": TOKEN, "retries": 1}


def test_config_set_with_the_token_again_may_move_the_endpoints(saved: SettingsStore, sandbox: Run) -> None:
    code, out, err = sandbox("config", "set", "self_managed", "endpoints=http://127.0.0.1:10", f"token={TOKEN}")
    assert code == 0, (out, err)
    assert saved.provider_config("self_managed") == {"endpoints": ["http://127.0.0.1:10"], "token": TOKEN}


# -- credentials in URLs --------------------------------------------------------------------------


def _url_fields(registry: ProviderRegistry) -> list[tuple[str, str, bool]]:
    client = SandboxClient(registry=registry)
    return [(name, f.name, f.multiple) for name in SHIPPED for f in client.config_schema(name).fields if f.type is FieldType.URL]


def test_every_url_field_refuses_credentials(registry: ProviderRegistry) -> None:
    client = SandboxClient(registry=registry)
    fields = _url_fields(registry)
    expected = {("self_managed", "endpoints"), ("e2b", "api_url"), ("e2b", "sandbox_url"), ("aliyun_codeinterpreter", "endpoint")}
    assert {(p, f) for p, f, _ in fields} >= expected
    for provider, field, multiple in fields:
        url = "http://admin:Pa55w0rd-in-url@127.0.0.1:8808"
        with pytest.raises(ConfigValidationError) as caught:
            client.validate_config(provider, {field: [url] if multiple else url})
        problems = [p for p in caught.value.problems if p.field.split(".")[0] == field]
        assert problems, (provider, field, caught.value.problems)
        assert "must not contain a user name or password" in problems[0].message
        assert "Pa55w0rd" not in str(caught.value)


def test_config_set_refuses_credentials_in_endpoints_without_echoing_them(
    sandbox_settings: SettingsStore, registry: ProviderRegistry, sandbox: Run
) -> None:
    code, out, err = sandbox("config", "set", "self_managed", "endpoints=http://u:Pa55w0rd@127.0.0.1:8808")
    assert code == 3 and "must not contain a user name or password" in err
    assert "Pa55w0rd" not in out + err
    code, out, err = sandbox("config", "set", "self_managed", "endpoints=u:Pa55w0rd@127.0.0.1:8808")
    assert code == 3 and "Pa55w0rd" not in out + err


def test_a_url_password_saved_earlier_is_masked_when_shown(
    sandbox_settings: SettingsStore, registry: ProviderRegistry, sandbox: Run
) -> None:
    sandbox_settings.save_provider_config("self_managed", {"endpoints": ["http://u:Pa55w0rd@127.0.0.1:8808"]})
    code, out, err = sandbox("config", "show", "self_managed", "--json")
    assert code == 0, err
    assert json.loads(out)["config"]["endpoints"] == ["http://u:********@127.0.0.1:8808"]
    code, out, err = sandbox("config", "validate", "self_managed")
    assert code == 3 and "must not contain a user name or password" in err and "Pa55w0rd" not in out + err


# -- sandbox exec --timeout ------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "0", "-1", "1e400", "soon"])
def test_exec_timeout_must_be_finite_seconds(sandbox_settings: SettingsStore, registry: ProviderRegistry, sandbox: Run, value: str) -> None:
    sandbox_settings.save_provider_config("local", {}, activate=True)
    code, out, err = sandbox("exec", "-c", "print(1)", "--timeout", value)
    assert code == 2, (out, err)
    assert "--timeout" in err and out == ""


def test_exec_timeout_takes_fractional_seconds(sandbox_settings: SettingsStore, registry: ProviderRegistry, sandbox: Run) -> None:
    sandbox_settings.save_provider_config("local", {}, activate=True)
    code, out, err = sandbox("exec", "-c", "print('ran')", "--timeout", "2.5")
    assert (code, out) == (0, "ran\n"), err
