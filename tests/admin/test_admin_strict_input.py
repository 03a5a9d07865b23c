"""The admin API refuses oversized bodies (413) and values of the wrong JSON type (422).

Bodies are sent to a real uvicorn server, with and without ``Content-Length``, so the limit is
checked where a client would meet it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from admin_support import AUTH
from fastapi.testclient import TestClient

from sandbox_core.admin.limits import DEFAULT_MAX_BODY_BYTES
from sandbox_core.settings import SettingsStore

GOOD = {"api_token": "tok-strict-input-0123", "region": "us-east"}
PUT = "/api/v1/sandbox/providers/guarded/config"
TEST = "/api/v1/sandbox/providers/guarded/test"
OVERSIZED = 8 * DEFAULT_MAX_BODY_BYTES


def _padded(size: int) -> bytes:
    """A JSON save request of about ``size`` bytes (the padding is a JSON field's value)."""
    head = b'{"config": {"api_token": "tok-strict-input-0123", "labels": "'
    tail = b'"}}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


def _chunks(body: bytes, size: int = 64 << 10) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


@pytest.fixture
def http(live_server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server, headers={**AUTH, "Content-Type": "application/json"}, timeout=60, trust_env=False) as client:
        yield client


@pytest.mark.parametrize("method, path", [("PUT", PUT), ("POST", TEST)])
def test_a_body_over_the_limit_is_refused_with_413(http: httpx.Client, sandbox_settings: SettingsStore, method: str, path: str) -> None:
    response = http.request(method, path, content=_padded(OVERSIZED))
    assert response.status_code == 413, response.text
    assert response.json()["detail"] == f"the request body is larger than the limit of {DEFAULT_MAX_BODY_BYTES} bytes"
    assert sandbox_settings.provider_config("guarded") == {}


def test_a_chunked_body_over_the_limit_is_refused_with_413(http: httpx.Client, sandbox_settings: SettingsStore) -> None:
    response = http.put(PUT, content=_chunks(_padded(OVERSIZED)))
    assert "content-length" not in response.request.headers
    assert response.status_code == 413, response.text
    assert sandbox_settings.provider_config("guarded") == {}


def test_bodies_within_the_limit_still_work(http: httpx.Client, sandbox_settings: SettingsStore) -> None:
    body = _padded(DEFAULT_MAX_BODY_BYTES // 2)
    assert http.put(PUT, content=body).status_code == 422  # reaches validation: labels is not JSON text
    saved = http.put(PUT, content=_chunks(b'{"config": {"api_token": "tok-strict-input-0123", "labels": "[1, 2]"}}'))
    assert saved.status_code == 200, saved.text
    assert sandbox_settings.provider_config("guarded")["labels"] == [1, 2]


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"activate": "yes"}, "activate"),
        ({"activate": "true"}, "activate"),
        ({"activate": 1}, "activate"),
        ({"etag": 5}, "etag"),
    ],
)
def test_the_request_fields_take_json_types_only(
    api: TestClient, sandbox_settings: SettingsStore, extra: dict[str, Any], field: str
) -> None:
    response = api.put(PUT, headers=AUTH, json={"config": GOOD, **extra})
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == [field]
    assert sandbox_settings.provider_config("guarded") == {}
    assert sandbox_settings.get("sandbox.provider_type") != "guarded"


@pytest.mark.parametrize(
    ("values", "field", "wanted"),
    [
        ({"verbose": "yes"}, "verbose", "a JSON boolean"),
        ({"verbose": 1}, "verbose", "a JSON boolean"),
        ({"max_output_bytes": "4096"}, "max_output_bytes", "a JSON integer"),
        ({"max_output_bytes": 4096.5}, "max_output_bytes", "a JSON integer"),
        ({"max_timeout": True}, "max_timeout", "a JSON number"),
        ({"endpoints": "http://127.0.0.1:9000"}, "endpoints", "a JSON array"),
        ({"endpoints": [9000]}, "endpoints.0", "a JSON string"),
        ({"api_token": 12345678}, "api_token", "a JSON string"),
    ],
)
@pytest.mark.parametrize("path", [PUT, TEST])
def test_config_values_take_their_json_type_only(
    api: TestClient, sandbox_settings: SettingsStore, values: dict[str, Any], field: str, wanted: str, path: str
) -> None:
    method = api.put if path == PUT else api.post
    response = method(path, headers=AUTH, json={"config": {**GOOD, **values}})
    assert response.status_code == 422, response.text
    [error] = response.json()["errors"]
    assert error["field"] == field and error["message"].startswith(f"must be {wanted}")
    assert sandbox_settings.provider_config("guarded") == {}


def test_json_types_that_match_are_saved(api: TestClient, sandbox_settings: SettingsStore) -> None:
    config = {
        **GOOD,
        "verbose": True,
        "max_output_bytes": 4096,
        "max_timeout": 20,
        "endpoints": ["http://127.0.0.1:9000"],
        "labels": {"a": 1},
    }
    response = api.put(PUT, headers=AUTH, json={"config": config, "activate": True})
    assert response.status_code == 200, response.text
    assert sandbox_settings.provider_config("guarded")["max_timeout"] == 20
    assert sandbox_settings.get("sandbox.provider_type") == "guarded"
