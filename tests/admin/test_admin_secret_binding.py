"""A saved secret never goes to a place its owner did not send it to (through the admin API or the CLI).

A form sends a saved secret back as ``********`` to keep it. That is allowed only while none of the
fields the secret authenticates against (endpoints, API URLs, regions, accounts) changed; otherwise
the secret must be entered again (422 naming it). Each provider shipped with sandbox-core declares
the binding in its schema. A capture server stands in for an attacker's endpoint and records every
request that reaches it.
"""

from __future__ import annotations

import http.server
import importlib
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from admin_support import AUTH, TOKEN
from fastapi.testclient import TestClient

from sandbox_core.admin.app import create_app
from sandbox_core.redaction import MASK
from sandbox_core.registry import ProviderRegistry
from sandbox_core.schema import ConfigField, ConfigSchema
from sandbox_core.settings import SettingsStore


class _Capture(http.server.ThreadingHTTPServer):
    """Records the headers of every request; answers 404."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _CaptureHandler)
        self.seen: list[dict[str, str]] = []
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


class _CaptureHandler(http.server.BaseHTTPRequestHandler):
    server: _Capture

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _record(self) -> None:
        self.server.seen.append(dict(self.headers))
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = do_PUT = do_DELETE = _record


@pytest.fixture
def attacker() -> Iterator[_Capture]:
    server = _Capture()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(10)


# Each shipped provider: a valid saved config with a secret, the secret's field, and how to point
# the config somewhere else (the field, and the value for an attacker's URL).
STORED_SECRET = "StoredSecretValue0123456789abcd"
PROVIDERS: dict[str, dict[str, Any]] = {
    "self_managed": {
        "module": "sandbox_selfmanaged.provider",
        "config": {"endpoints": ["http://127.0.0.1:9"], "token": STORED_SECRET},
        "secret": "token",
        "moves": {"endpoints": lambda url: [url], "verify_tls": lambda _url: False},
    },
    "e2b": {
        "module": "sandbox_e2b.provider",
        "config": {"api_key": STORED_SECRET, "api_url": "http://127.0.0.1:9", "sandbox_url": "http://127.0.0.1:9", "pool_size": 0},
        "secret": "api_key",
        "moves": {"api_url": lambda url: url, "sandbox_url": lambda url: url, "domain": lambda _url: "attacker.example"},
    },
    "aliyun_codeinterpreter": {
        "module": "sandbox_aliyun.provider",
        "config": {
            "access_key_id": "LTAI5tAbCdEfGhIjKlMnOpQr",
            "access_key_secret": STORED_SECRET[:30],
            "account_id": "1234567890123456",
            "template_name": "probe-template",
            "endpoint": "http://127.0.0.1:9",
            "pool_size": 0,
        },
        "secret": "access_key_secret",
        "moves": {"endpoint": lambda url: url, "region": lambda _url: "cn-shanghai", "account_id": lambda _url: "6543210987654321"},
    },
}
CASES = [(provider, field) for provider, spec in PROVIDERS.items() for field in spec["moves"]]


@pytest.fixture
def shipped(sandbox_registry: ProviderRegistry, sandbox_settings: SettingsStore) -> Iterator[TestClient]:
    """The admin API over the providers shipped with sandbox-core, each with a saved config."""
    for name, spec in PROVIDERS.items():
        module = pytest.importorskip(spec["module"])
        sandbox_registry.register(name, importlib.import_module(module.__name__))
        sandbox_settings.save_provider_config(name, spec["config"])
    with TestClient(create_app(token=TOKEN, settings=sandbox_settings, registry=sandbox_registry, probe_timeout=10)) as client:
        yield client


def _moved(provider: str, field: str, url: str) -> dict[str, Any]:
    spec = PROVIDERS[provider]
    return {**spec["config"], spec["secret"]: MASK, field: spec["moves"][field](url)}


def _refused(response: Any, provider: str, field: str) -> None:
    assert response.status_code == 422, response.text
    secret = PROVIDERS[provider]["secret"]
    [error] = response.json()["errors"]
    assert error["field"] == secret
    assert "enter it again" in error["message"] and field in error["message"]
    assert STORED_SECRET[:30] not in response.text


@pytest.mark.parametrize(("provider", "field"), CASES)
def test_testing_a_moved_config_with_the_masked_secret_is_refused(
    shipped: TestClient, attacker: _Capture, provider: str, field: str
) -> None:
    moved = {"config": _moved(provider, field, attacker.url)}
    response = shipped.post(f"/api/v1/sandbox/providers/{provider}/test", json=moved, headers=AUTH)
    _refused(response, provider, field)
    assert attacker.seen == []


@pytest.mark.parametrize(("provider", "field"), CASES)
def test_saving_a_moved_config_with_the_masked_secret_is_refused(
    shipped: TestClient, sandbox_settings: SettingsStore, attacker: _Capture, provider: str, field: str
) -> None:
    moved = {"config": _moved(provider, field, attacker.url)}
    response = shipped.put(f"/api/v1/sandbox/providers/{provider}/config", json=moved, headers=AUTH)
    _refused(response, provider, field)
    assert sandbox_settings.provider_config(provider) == PROVIDERS[provider]["config"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_masked_secret_is_kept_while_its_bindings_stay(shipped: TestClient, sandbox_settings: SettingsStore, provider: str) -> None:
    spec = PROVIDERS[provider]
    changed = {"pool_idle_timeout": 60} if provider != "self_managed" else {"retries": 1}
    config = {**spec["config"], spec["secret"]: MASK, **changed}
    response = shipped.put(f"/api/v1/sandbox/providers/{provider}/config", json={"config": config}, headers=AUTH)
    assert response.status_code == 200, response.text
    assert sandbox_settings.provider_config(provider)[spec["secret"]] == spec["config"][spec["secret"]]


@pytest.mark.parametrize(("provider", "field"), CASES)
def test_a_secret_entered_again_may_go_to_the_new_place(
    shipped: TestClient, sandbox_settings: SettingsStore, attacker: _Capture, provider: str, field: str
) -> None:
    spec = PROVIDERS[provider]
    config = {**_moved(provider, field, attacker.url), spec["secret"]: "NewSecretEnteredAgain0123456789"[:30]}
    response = shipped.put(f"/api/v1/sandbox/providers/{provider}/config", json={"config": config}, headers=AUTH)
    assert response.status_code == 200, response.text
    assert sandbox_settings.provider_config(provider)[spec["secret"]].startswith("NewSecretEnteredAgain")


def test_the_binding_is_in_the_json_schema(shipped: TestClient) -> None:
    schema = shipped.get("/api/v1/sandbox/providers/self_managed/schema", headers=AUTH).json()
    assert schema["properties"]["token"]["x-bound-to"] == ["endpoints", "verify_tls"]


def test_a_schema_binding_must_name_declared_fields() -> None:
    with pytest.raises(ValueError, match="does not declare: region"):
        ConfigSchema([ConfigField("key", "secret", bound_to=("region",))])
    with pytest.raises(ValueError, match="only a secret field"):
        ConfigField("url", "url", bound_to=("key",))


def test_credentials_in_a_url_are_refused_and_an_old_one_is_shown_masked(shipped: TestClient, sandbox_settings: SettingsStore) -> None:
    url = "http://admin:Pa55w0rd-in-url@127.0.0.1:8808"
    for path, method in (("config", shipped.put), ("test", shipped.post)):
        route = f"/api/v1/sandbox/providers/self_managed/{path}"
        response = method(route, json={"config": {"endpoints": [url], "token": "a-new-token-0123"}}, headers=AUTH)
        assert response.status_code == 422, response.text
        assert "must not contain a user name or password" in response.text and "Pa55w0rd" not in response.text
    sandbox_settings.save_provider_config("self_managed", {"endpoints": [url]})  # saved before URLs were checked
    shown = shipped.get("/api/v1/sandbox/providers/self_managed/config", headers=AUTH)
    assert shown.json()["config"]["endpoints"] == ["http://admin:********@127.0.0.1:8808"]
    assert "Pa55w0rd" not in shown.text
