"""The ``self_managed`` provider's sessions: opened on one executor, and pinned to it.

A session lives in one executor's memory (its sandbox runs there), so every call for it must go
to that executor. The handle says which: ``"<endpoint key>/<executor session id>"``, where the
key is a short digest of the executor's base URL. Any process with the same ``endpoints`` finds
the executor from the handle (the order of the list does not matter); no secret is in it.

Opening goes round the endpoints like an execution does (the next in turn first; one that is
unreachable or answers 503, e.g. at ``--max-sessions``, is skipped). Later calls never move: an
executor that answers 410 has lost the session (closed, expired, killed for memory, restarted)
and the call raises :class:`~sandbox_core.errors.SessionGoneError`; one that cannot be reached
raises :class:`~sandbox_core.errors.ProviderUnavailableError`.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import attrs
import httpx

from sandbox_core.errors import ProviderError, ProviderUnavailableError, SessionGoneError
from sandbox_core.model import DEFAULT_TIMEOUT, ExecutionRequest, ExecutionResult
from sandbox_core.sessions import FileInfo, SessionSpec
from sandbox_core.streaming import OutputCallback
from sandbox_core.timeouts import request_seconds
from sandbox_selfmanaged import EVENTS_MEDIA_TYPE
from sandbox_selfmanaged.client import CONNECT_TIMEOUT, ExecutorClient, _detail, _Failed, _is_events, _read_events, client_for

KEY_CHARS = 12
FILE_TIMEOUT = 60.0
LIMIT_FIELDS = ("memory_mb", "processes", "max_output_bytes", "max_file_bytes")


def endpoint_key(url: str) -> str:
    """The short name of an executor in session handles."""
    return hashlib.sha256(url.rstrip("/").encode("utf-8")).hexdigest()[:KEY_CHARS]


def _locate(config: Mapping[str, Any], handle: str) -> tuple[ExecutorClient, str, str]:
    """The client, executor URL and executor session id a handle names."""
    key, _, session_id = handle.partition("/")
    if not session_id or not session_id.isalnum():
        raise SessionGoneError(f"{handle!r} is not a session handle of the self_managed provider")
    client = client_for(config)
    for url in client.endpoints:
        if endpoint_key(url) == key:
            return client, url, session_id
    raise SessionGoneError(f"session {handle}: its executor is not among the configured endpoints any more")


def _call(client: ExecutorClient, method: str, url: str, timeout: float, **kwargs: Any) -> httpx.Response:
    try:
        return client.http.request(method, url, timeout=httpx.Timeout(timeout, connect=min(CONNECT_TIMEOUT, timeout)), **kwargs)
    except httpx.HTTPError as exc:
        base = url.split("/v1/")[0]
        raise ProviderUnavailableError(
            f"{base}: the executor holding the session could not be reached ({type(exc).__name__}: {exc})"
        ) from None


def _check(response: httpx.Response, what: str) -> httpx.Response:
    if response.status_code == 410:
        raise SessionGoneError(_detail(response))
    if response.status_code == 404 and what != "download":
        raise SessionGoneError(f"the executor does not know this session ({_detail(response)})")
    if response.status_code == 422:
        raise ValueError(f"{what}: the executor refused it: {_detail(response)}")
    if response.status_code == 503:
        raise ProviderUnavailableError(f"{what}: the executor is unavailable: {_detail(response)}")
    if response.status_code >= 400 and response.status_code != 404:
        raise ProviderError(f"{what}: the executor answered HTTP {response.status_code}: {_detail(response)}")
    return response


def open_session(spec: SessionSpec, config: Mapping[str, Any]) -> str:
    """Open a session on the first executor that takes it; its handle."""
    client = client_for(config)
    payload: dict[str, Any] = {"idle_timeout": spec.idle_timeout, "max_lifetime": spec.max_lifetime, "language": spec.language}
    if spec.runtime is not None:
        payload["runtime"] = spec.runtime
    limits = {name: config[name] for name in LIMIT_FIELDS if config.get(name) is not None}
    if limits:
        payload["limits"] = limits
    overhead = float(config.get("request_timeout") or 30.0)
    problems: list[str] = []
    for url in client.order():
        try:
            response = _call(client, "POST", f"{url}/v1/sessions", overhead, json=payload)
        except ProviderUnavailableError as exc:
            problems.append(str(exc))
            continue
        if response.status_code == 201:
            return f"{endpoint_key(url)}/{response.json()['id']}"
        if response.status_code in (503, 401, 404, 405):
            problems.append(f"{url}: HTTP {response.status_code}: {_detail(response)}")
            continue
        _check(response, "session")
        raise ProviderError(f"{url}: opening a session answered HTTP {response.status_code}: {_detail(response)}")
    raise ProviderUnavailableError("no sandbox-executor could open a session: " + "; ".join(problems))


def _stream(
    client: ExecutorClient, url: str, timeout: float, payload: Mapping[str, Any], on_output: OutputCallback
) -> ExecutionResult:
    """POST a session execution asking for the NDJSON stream; pass its events on; its result.

    An executor that answers with one JSON document (an older one) is read as before.
    """
    base = url.split("/v1/")[0]
    headers = {"Accept": f"{EVENTS_MEDIA_TYPE}, application/json"}
    try:
        with client.http.stream("POST", url, json=payload, headers=headers,
                                timeout=httpx.Timeout(timeout, connect=min(CONNECT_TIMEOUT, timeout))) as response:
            if response.status_code == 200 and _is_events(response):
                try:
                    return _read_events(response, on_output)
                except _Failed as exc:
                    raise ProviderError(f"{base}: the session's execution {exc}") from None
            response.read()
    except httpx.HTTPError as exc:
        raise ProviderUnavailableError(
            f"{base}: the connection to the executor holding the session failed ({type(exc).__name__}: {exc})"
        ) from None
    return ExecutionResult.from_dict(_check(response, "execute").json())


def execute(
    handle: str, request: ExecutionRequest, config: Mapping[str, Any], provider_name: str, on_output: OutputCallback | None = None
) -> ExecutionResult:
    """Run ``request`` in the session; with ``on_output``, its output events are passed on as they arrive."""
    client, url, session_id = _locate(config, handle)
    timeout = request_seconds(request, float(config.get("default_timeout") or DEFAULT_TIMEOUT))
    payload: dict[str, Any] = {"code": request.code, "arguments": dict(request.arguments), "timeout": timeout}
    if request.files:
        payload["files"] = {name: base64.b64encode(data).decode("ascii") for name, data in request.files.items()}
    overhead = float(config.get("request_timeout") or 30.0)
    started = time.monotonic()
    route = f"{url}/v1/sessions/{session_id}/execute"
    if on_output is None:
        response = _check(_call(client, "POST", route, timeout + overhead, json=payload), "execute")
        result = ExecutionResult.from_dict(response.json())
    else:
        result = _stream(client, route, timeout + overhead, payload, on_output)
    return attrs.evolve(
        result,
        provider=provider_name,
        execution_time=result.execution_time or time.monotonic() - started,
        metadata={**result.metadata, "endpoint": url},
    )


def upload(handle: str, path: str, data: bytes, config: Mapping[str, Any]) -> None:
    client, url, session_id = _locate(config, handle)
    _check(_call(client, "PUT", f"{url}/v1/sessions/{session_id}/files/{quote(path)}", FILE_TIMEOUT, content=data), "upload")


def download(handle: str, path: str, config: Mapping[str, Any]) -> bytes:
    client, url, session_id = _locate(config, handle)
    response = _check(_call(client, "GET", f"{url}/v1/sessions/{session_id}/files/{quote(path)}", FILE_TIMEOUT), "download")
    if response.status_code == 404:
        raise FileNotFoundError(f"{path}: no such file in the session's working folder")
    return response.content


def list_files(handle: str, config: Mapping[str, Any]) -> list[FileInfo]:
    client, url, session_id = _locate(config, handle)
    response = _check(_call(client, "GET", f"{url}/v1/sessions/{session_id}/files", FILE_TIMEOUT), "list_files")
    return [FileInfo(path=str(item["path"]), size=int(item["size"])) for item in response.json().get("files", [])]


def close(handle: str, config: Mapping[str, Any]) -> None:
    try:
        client, url, session_id = _locate(config, handle)
    except SessionGoneError:
        return  # closing what is gone is fine
    try:
        _check(_call(client, "DELETE", f"{url}/v1/sessions/{session_id}", FILE_TIMEOUT), "close")
    except SessionGoneError:
        return
