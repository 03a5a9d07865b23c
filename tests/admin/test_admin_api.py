"""The admin API against the real app, a real SQLite settings DB and in-test providers."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from admin_support import AUTH, REFUSED_TOKEN, TOKEN
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.routing import Mount

from sandbox_core import hookimpl
from sandbox_core.admin.app import API_PREFIX, create_app
from sandbox_core.redaction import MASK
from sandbox_core.registry import ProviderRegistry
from sandbox_core.schema import ConfigField, ConfigSchema
from sandbox_core.settings import SettingsStore
from sandbox_core.testing import UnsandboxedSubprocessProvider

SECRET = "tok-9f8e7d6c5b4a-do-not-leak"
GOOD = {"api_token": SECRET, "endpoints": ["http://127.0.0.1:9000", "http://127.0.0.1:9001"], "region": "us-east"}


def url(path: str) -> str:
    return API_PREFIX + path


def _walk(routes: list[Any]) -> Iterator[Any]:
    for route in routes:
        included = getattr(route, "original_router", None)  # FastAPI >= 0.16x keeps included routers whole
        yield from _walk(included.routes) if included is not None else [route]


def api_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every route under /api/, from the app itself."""
    found = []
    for route in _walk(app.routes):
        if isinstance(route, Mount) or not route.path.startswith("/api/"):
            continue
        for method in sorted(set(route.methods) - {"HEAD"}):
            found.append((method, route.path.replace("{name}", "guarded")))
    return found


def save(api: TestClient, config: dict[str, Any], **extra: Any) -> Any:
    return api.put(url("/providers/guarded/config"), headers=AUTH, json={"config": config, **extra})


# -- authentication ------------------------------------------------------------------------


def test_every_api_route_refuses_a_missing_or_wrong_token(api: TestClient, admin_app: FastAPI) -> None:
    routes = api_routes(admin_app)
    assert len(routes) >= 6, routes  # providers, schema, config get/put, test, openapi.json
    wrong = [
        {},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer not-the-token"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Bearer {TOKEN[:-1]}"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
        {"X-Admin-Token": TOKEN},
    ]
    for method, path in routes:
        for headers in wrong:
            response = api.request(method, path, headers=headers, json={"config": GOOD})
            assert response.status_code == 401, (method, path, headers, response.text)
            assert response.headers["www-authenticate"] == "Bearer"
            assert set(response.json()) == {"detail", "errors"}
        assert api.request(method, path, headers=AUTH, json={"config": GOOD}).status_code != 401, (method, path)


def test_unknown_api_paths_also_need_the_token(api: TestClient) -> None:
    assert api.get("/api/v1/sandbox/nothing-here").status_code == 401
    assert api.get("/api/v1/sandbox/nothing-here", headers=AUTH).status_code == 404


def test_the_page_is_served_without_a_token_and_holds_no_data(api: TestClient) -> None:
    page = api.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert 'for="token-input"' in page.text
    for asset in ("/static/admin.js", "/static/admin.css"):
        response = api.get(asset)
        assert response.status_code == 200, asset
        assert "http://" not in response.text and "https://" not in response.text, f"{asset} must not load anything remote"
    assert TOKEN not in page.text + api.get("/static/admin.js").text


def test_openapi_document_is_published_behind_the_token(api: TestClient) -> None:
    document = api.get(url("/openapi.json"), headers=AUTH).json()
    paths = document["paths"]
    assert set(paths) == {
        url("/providers"),
        url("/providers/{name}/schema"),
        url("/providers/{name}/config"),
        url("/providers/{name}/test"),
        url("/health"),
    }
    put = paths[url("/providers/{name}/config")]["put"]
    assert {"400", "401", "404", "409", "422", "503"} <= set(put["responses"])
    assert any("HTTPBearer" in requirement for requirement in put["security"])


# -- reading -------------------------------------------------------------------------------


def test_lists_providers_with_status_description_tags_languages_and_active(api: TestClient) -> None:
    listing = api.get(url("/providers"), headers=AUTH).json()
    rows = {row["name"]: row for row in listing["providers"]}
    assert set(rows) == {"local", "guarded"}
    guarded = rows["guarded"]
    assert guarded["status"] == "loaded" and guarded["error"] is None
    assert guarded["description"] == "Local subprocess behind an API token (tests only)"
    assert guarded["tags"] == ["testing", "token"] and guarded["languages"] == ["python"]
    assert guarded["active"] is False and guarded["configured"] is False
    assert listing["encryption_at_rest"] is False

    assert save(api, GOOD, activate=True).status_code == 200
    listing = api.get(url("/providers"), headers=AUTH).json()
    rows = {row["name"]: row for row in listing["providers"]}
    assert listing["active"] == "guarded"
    assert rows["guarded"]["active"] is True and rows["guarded"]["configured"] is True
    assert rows["local"]["active"] is False


def test_schema_is_the_cores_json_schema(api: TestClient, admin_registry: ProviderRegistry) -> None:
    schema = api.get(url("/providers/guarded/schema"), headers=AUTH).json()
    expected = admin_registry.hook("guarded", "sandbox_config_schema")().json_schema(title="guarded")
    assert schema == json.loads(json.dumps(expected))
    assert schema["properties"]["api_token"]["x-secret"] is True
    assert schema["required"] == ["api_token"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/providers/nope/schema"),
        ("GET", "/providers/nope/config"),
        ("PUT", "/providers/nope/config"),
        ("POST", "/providers/nope/test"),
    ],
)
def test_unknown_provider_is_404(api: TestClient, method: str, path: str) -> None:
    response = api.request(method, url(path), headers=AUTH, json={"config": {}})
    assert response.status_code == 404
    assert "nope" in response.json()["detail"] and "guarded" in response.json()["detail"]


def test_reads_the_saved_config_of_any_provider_not_only_the_active_one(api: TestClient) -> None:
    assert api.put(url("/providers/local/config"), headers=AUTH, json={"config": {"max_timeout": 12}, "activate": True}).status_code == 200
    assert save(api, GOOD).status_code == 200
    view = api.get(url("/providers/guarded/config"), headers=AUTH).json()
    assert view["active"] is False
    assert view["config"] == {**GOOD, "api_token": MASK}
    assert view["secret_fields"] == ["api_token"]
    empty = api.get(url("/providers/local/config"), headers=AUTH).json()
    assert empty["config"] == {"max_timeout": 12} and empty["active"] is True


# -- saving --------------------------------------------------------------------------------


def test_invalid_config_is_422_naming_each_field(api: TestClient) -> None:
    response = save(api, {"api_token": "x", "endpoints": ["ftp://nowhere"], "max_output_bytes": 10, "surprise": 1})
    assert response.status_code == 422
    fields = {error["field"] for error in response.json()["errors"]}
    assert {"endpoints", "surprise"} <= fields or {"endpoints", "max_output_bytes", "surprise"} <= fields

    response = save(api, {"max_output_bytes": 10})
    assert response.status_code == 422
    errors = {e["field"]: e["message"] for e in response.json()["errors"]}
    assert "api_token" in errors and "required" in errors["api_token"]

    response = save(api, {"api_token": "x", "max_output_bytes": 10})
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["max_output_bytes"]


def test_malformed_requests_are_400_or_422_never_500(api: TestClient) -> None:
    bad_json = api.put(url("/providers/guarded/config"), headers={**AUTH, "Content-Type": "application/json"}, content=b"{nope")
    assert bad_json.status_code == 400
    not_object = api.put(url("/providers/guarded/config"), headers=AUTH, json={"config": [1, 2]})
    assert not_object.status_code == 422 and not_object.json()["errors"][0]["field"] == "config"
    bad_name = api.get(url("/providers/bad%20name/config"), headers=AUTH)
    assert bad_name.status_code == 422 and bad_name.json()["errors"][0]["field"] == "name"


def test_a_masked_secret_sent_back_keeps_the_stored_secret(api: TestClient, sandbox_settings: SettingsStore) -> None:
    assert save(api, GOOD).json()["changed"] == ["api_token", "endpoints", "region"]
    shown = api.get(url("/providers/guarded/config"), headers=AUTH).json()
    assert shown["config"]["api_token"] == MASK
    response = save(api, {**shown["config"], "region": "eu-west"})
    assert response.status_code == 200, response.text
    assert response.json()["changed"] == ["region"]
    assert response.json()["config"]["api_token"] == MASK
    assert sandbox_settings.provider_config("guarded")["api_token"] == SECRET
    replaced = save(api, {**shown["config"], "api_token": "a-new-token"})
    assert replaced.json()["changed"] == ["api_token", "region"]
    assert sandbox_settings.provider_config("guarded")["api_token"] == "a-new-token"


def test_a_refused_save_leaves_the_old_config(api: TestClient, sandbox_settings: SettingsStore, monkeypatch: pytest.MonkeyPatch) -> None:
    assert save(api, GOOD).status_code == 200
    before = sandbox_settings.provider_config("guarded")
    version = sandbox_settings.version()
    assert save(api, {**GOOD, "api_token": REFUSED_TOKEN}, activate=True).status_code == 422
    assert save(api, {**GOOD, "max_timeout": -1}, activate=True).status_code == 422
    assert sandbox_settings.provider_config("guarded") == before
    assert sandbox_settings.version() == version
    assert sandbox_settings.get("sandbox.provider_type") != "guarded"

    def database_down(*_args: Any, **_kwargs: Any) -> None:
        from sandbox_core.errors import ConfigurationError

        raise ConfigurationError("settings database sqlite:///…: OperationalError: disk I/O error")

    monkeypatch.setattr(sandbox_settings, "save_provider_config", database_down)
    response = save(api, {**GOOD, "region": "eu-west"})
    assert response.status_code == 503 and "disk I/O error" in response.json()["detail"]
    monkeypatch.undo()
    assert sandbox_settings.provider_config("guarded") == before


def test_a_stale_etag_is_409_and_changes_nothing(api: TestClient, sandbox_settings: SettingsStore) -> None:
    first = save(api, GOOD).json()
    assert save(api, {**GOOD, "region": "eu-west"}, etag=first["etag"]).status_code == 200
    stale = save(api, {**GOOD, "region": "us-east", "verbose": True}, etag=first["etag"])
    assert stale.status_code == 409
    assert sandbox_settings.provider_config("guarded")["region"] == "eu-west"


def test_every_change_is_audited_with_field_names_only(
    api: TestClient, caplog: pytest.LogCaptureFixture, sandbox_settings: SettingsStore, tmp_path: Any
) -> None:
    audit_file = tmp_path / "audit.log"
    sandbox_settings.set_json("sandbox.audit", {"enabled": True, "path": str(audit_file)})
    caplog.set_level(logging.INFO, logger="sandbox_core.audit")
    save(api, GOOD, activate=True)
    save(api, {**GOOD, "api_token": MASK, "verbose": True})
    records = [json.loads(r.getMessage()) for r in caplog.records if r.name == "sandbox_core.audit"]
    assert [r["changed"] for r in records] == [["api_token", "endpoints", "region"], ["verbose"]]
    assert all(r["event"] == "config_change" and r["provider"] == "guarded" and r["actor"] for r in records)
    assert records[0]["activated"] is True and records[1]["activated"] is False
    assert len(audit_file.read_text().splitlines()) == 2
    assert SECRET not in caplog.text + audit_file.read_text()


# -- testing a connection ------------------------------------------------------------------


def test_test_connection_runs_a_real_probe_and_saves_nothing(api: TestClient, sandbox_settings: SettingsStore) -> None:
    response = api.post(url("/providers/local/test"), headers=AUTH, json={"config": {"max_output_bytes": 4096}})
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["success"] is True and result["status"] == "success" and result["exit_code"] == 0
    assert "sandbox-core connection test: ok" in result["stdout"]
    assert result["execution_time"] > 0 and result["language"] == "python"
    assert sandbox_settings.provider_config("local") == {}


def test_test_connection_reports_a_failing_probe_without_a_stack_trace(api: TestClient) -> None:
    # /bin/false exists (so the config is valid) but is no Python: the probe runs and fails.
    response = api.post(url("/providers/local/test"), headers=AUTH, json={"config": {"python": "/bin/false"}})
    assert response.status_code == 200
    result = response.json()
    assert result["success"] is False and result["exit_code"] == 1
    assert "Traceback" not in response.text


def test_test_connection_validates_the_unsaved_config(api: TestClient) -> None:
    response = api.post(url("/providers/local/test"), headers=AUTH, json={"config": {"python": "/no/such/python"}})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "python"


def test_test_connection_uses_the_saved_secret_for_a_masked_one(api: TestClient) -> None:
    save(api, GOOD)
    response = api.post(url("/providers/guarded/test"), headers=AUTH, json={"config": {**GOOD, "api_token": MASK, "verbose": True}})
    assert response.status_code == 200 and response.json()["success"] is True
    assert f"authenticated with {MASK}" in response.json()["stderr"]


# -- secrets -------------------------------------------------------------------------------


def test_secrets_never_appear_in_any_response_or_log(api: TestClient, admin_app: FastAPI, caplog: pytest.LogCaptureFixture) -> None:
    # Everything the app and the core log, at any level. (peewee's own DEBUG log of SQL
    # parameters is not covered here: with SANDBOX_SECRET_KEY it only ever sees ciphertext,
    # see the encryption test.)
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="sandbox_core")
    caplog.set_level(logging.DEBUG, logger="uvicorn")
    texts = []

    def call(method: str, path: str, **kwargs: Any) -> Any:
        response = api.request(method, url(path), headers=AUTH, **kwargs)
        texts.append(response.text + json.dumps(dict(response.headers)))
        return response

    call("PUT", "/providers/guarded/config", json={"config": GOOD, "activate": True})
    call("GET", "/providers/guarded/config")
    call("GET", "/providers")
    call("PUT", "/providers/guarded/config", json={"config": {**GOOD, "api_token": REFUSED_TOKEN}})
    call("PUT", "/providers/guarded/config", json={"config": {**GOOD, "verbose": SECRET}})
    call("PUT", "/providers/guarded/config", json={"config": GOOD, "activate": SECRET})
    call("PUT", "/providers/guarded/config", json={"config": {**GOOD, "api_token": 12345, "labels": "{not json " + SECRET}})
    call("POST", "/providers/guarded/test", json={"config": {**GOOD, "verbose": True}})
    call("POST", "/providers/guarded/test", json={"config": {**GOOD, "api_token": MASK, "verbose": True}})
    call("POST", "/providers/guarded/test", json={"config": {**GOOD, "api_token": REFUSED_TOKEN}})
    call("POST", "/providers/guarded/test", json={"config": GOOD, "extra": SECRET})
    for _method, path in api_routes(admin_app):
        if path.endswith("/openapi.json"):
            call("GET", "/openapi.json")
    everything = "\n".join(texts)
    assert re.search(r"tok-9f8e7d6c5b4a", everything) is None
    assert REFUSED_TOKEN not in everything
    assert "tok-9f8e7d6c5b4a" not in caplog.text and REFUSED_TOKEN not in caplog.text


def test_secrets_are_encrypted_at_rest_when_a_key_is_set(
    api: TestClient,
    sandbox_settings: SettingsStore,
    admin_registry: ProviderRegistry,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from cryptography.fernet import Fernet

    from sandbox_core.client import SandboxClient
    from sandbox_core.errors import ConfigurationError

    monkeypatch.setenv("SANDBOX_SECRET_KEY", Fernet.generate_key().decode())
    caplog.set_level(logging.DEBUG)  # peewee logs SQL with its parameters at DEBUG
    assert api.get(url("/providers"), headers=AUTH).json()["encryption_at_rest"] is True
    assert save(api, {**GOOD, "verbose": True}, activate=True).status_code == 200
    raw = sandbox_settings.get("sandbox.guarded") or ""
    assert SECRET not in raw
    assert "tok-9f8e7d6c5b4a" not in caplog.text
    assert sandbox_settings.provider_config("guarded")["api_token"].startswith("enc:v1:")
    assert api.get(url("/providers/guarded/config"), headers=AUTH).json()["config"]["api_token"] == MASK
    # A masked round trip keeps the (encrypted) secret; the client reads it decrypted.
    assert save(api, {**GOOD, "api_token": MASK}).json()["changed"] == ["verbose"]
    client = SandboxClient(settings=sandbox_settings, registry=admin_registry)
    assert client.stored_config("guarded")["api_token"] == SECRET
    result = client.execute("print('hi')")
    assert result.stdout == "hi\n"
    monkeypatch.delenv("SANDBOX_SECRET_KEY")
    with pytest.raises(ConfigurationError, match="api_token"):
        SandboxClient(settings=sandbox_settings, registry=admin_registry).execute("print(1)")
    assert api.get(url("/providers/guarded/config"), headers=AUTH).json()["config"]["api_token"] == MASK
    assert save(api, {**GOOD, "api_token": MASK}).status_code == 503


# -- broken providers ----------------------------------------------------------------------


def test_a_broken_provider_is_listed_as_broken_and_the_others_still_work(
    fake_site: Any, sandbox_settings: SettingsStore
) -> None:
    from sandbox_core.registry import discover_entries

    already_installed = {name for name, _ in discover_entries()}
    fake_site.add(
        "fake-broken-admin",
        "0.9",
        entry_points={"broken_admin": "fakeprov_broken_admin"},
        modules={"fakeprov_broken_admin": "import fakeprov_missing_dependency\n"},
    )
    registry = ProviderRegistry(disabled=already_installed)
    registry.register("local", UnsandboxedSubprocessProvider())
    with TestClient(create_app(token=TOKEN, settings=sandbox_settings, registry=registry)) as client:
        rows = {row["name"]: row for row in client.get(url("/providers"), headers=AUTH).json()["providers"]}
        assert rows["broken_admin"]["status"] == "broken"
        assert rows["broken_admin"]["package"] == "fake-broken-admin" and rows["broken_admin"]["version"] == "0.9"
        assert "fakeprov_missing_dependency" in rows["broken_admin"]["error"]
        assert rows["local"]["status"] == "loaded"
        schema = client.get(url("/providers/broken_admin/schema"), headers=AUTH)
        assert schema.status_code == 503 and "fakeprov_missing_dependency" in schema.json()["detail"]
        assert client.post(url("/providers/local/test"), headers=AUTH, json={"config": {}}).json()["success"] is True


class BuggyProvider(UnsandboxedSubprocessProvider):
    """A provider whose hooks raise plain exceptions, quoting the secret, as a buggy plugin might."""

    def __init__(self, where: str) -> None:
        self.where = where

    @hookimpl
    def sandbox_config_schema(self) -> ConfigSchema:
        if self.where == "schema":
            raise RuntimeError("schema bug")
        return ConfigSchema([ConfigField("key", "secret")])

    @hookimpl
    def sandbox_validate_config(self, config: Any) -> list[Any]:
        raise ValueError(f"validation bug with {config['key'].reveal()}")


def test_a_buggy_provider_is_503_never_an_internal_error(
    api: TestClient, register_provider: Any, caplog: pytest.LogCaptureFixture
) -> None:
    register_provider("buggy_schema", BuggyProvider("schema"))
    register_provider("buggy_validate", BuggyProvider("validate"))
    caplog.set_level(logging.INFO)
    response = api.get(url("/providers/buggy_schema/schema"), headers=AUTH)
    assert response.status_code == 503 and "RuntimeError" in response.json()["detail"]
    for method, path in (("PUT", "/providers/buggy_validate/config"), ("POST", "/providers/buggy_validate/test")):
        response = api.request(method, url(path), headers=AUTH, json={"config": {"key": SECRET}})
        assert response.status_code == 503, response.text
        assert "failed to check the config: ValueError" in response.json()["detail"]
        assert SECRET not in response.text
    assert SECRET not in caplog.text


def test_processes_serving_the_same_token_accept_each_others_etags(
    api: TestClient, sandbox_settings: SettingsStore, admin_registry: ProviderRegistry
) -> None:
    etag = save(api, GOOD).json()["etag"]
    with TestClient(create_app(token=TOKEN, settings=sandbox_settings, registry=admin_registry)) as other:
        response = other.put(url("/providers/guarded/config"), headers=AUTH, json={"config": GOOD, "etag": etag})
        assert response.status_code == 200, response.text


class ShutdownCounter(UnsandboxedSubprocessProvider):
    """The local provider, counting the sandbox_shutdown calls it gets."""

    shutdowns = 0

    @hookimpl
    def sandbox_shutdown(self) -> None:
        self.shutdowns += 1


def test_stopping_the_server_shuts_down_the_providers_it_used(
    sandbox_settings: SettingsStore, admin_registry: ProviderRegistry, register_provider: Any
) -> None:
    provider = ShutdownCounter()
    register_provider("counted", provider)
    app = create_app(token=TOKEN, settings=sandbox_settings, registry=admin_registry, probe_timeout=20)
    with TestClient(app) as client:
        answer = client.post(url("/providers/counted/test"), headers=AUTH, json={"config": {}})
        assert answer.status_code == 200, answer.text
        assert answer.json()["success"] is True
        assert provider.shutdowns == 0
    assert provider.shutdowns == 1


def test_health_reports_the_active_providers_runtimes_with_secrets_masked(api: TestClient, sandbox_settings: SettingsStore) -> None:
    none_installed = api.get(f"{API_PREFIX}/health", headers=AUTH).json()
    assert none_installed["healthy"] is False and "is not installed" in none_installed["message"]
    sandbox_settings.save_provider_config("guarded", {"api_token": "health-secret-0123", "verbose": True})
    sandbox_settings.set_active_provider("guarded")
    response = api.get(f"{API_PREFIX}/health", headers=AUTH)
    assert response.status_code == 200, response.text
    health = response.json()
    assert health["provider"] == "guarded" and health["healthy"] is True
    runtimes = {runtime["name"]: runtime for runtime in health["runtimes"]}
    assert runtimes["python"]["packages"] == {"numpy": "2.4.6", "pandas": "3.1.1"}
    assert runtimes["python"]["preload"] == ["numpy", "pandas"] and runtimes["python"]["restore"]["restores"] == 5
    assert runtimes["broken"]["available"] is False and runtimes["broken"]["restore"] is None
    assert "health-secret-0123" not in response.text and MASK in runtimes["broken"]["error"]
