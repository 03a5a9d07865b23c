"""HTTP client of the ``self_managed`` provider: spreads executions over executors, fails over.

One :class:`ExecutorClient` (one pooled, thread-safe ``httpx.Client``) exists per distinct
(endpoints, token, TLS) configuration. Each execution starts at the next endpoint in turn
(round-robin) and moves on only when the request provably did not reach an execution there: the
connection could not be made, or the executor refused it before running anything (503 from its
admission, 401, an unknown route). It goes round again (``retries`` times, after the
``Retry-After`` the executors asked for) while the execution's deadline allows. An endpoint that
could not be reached is tried last for a while.

A request that may have run is never repeated, so code never runs twice: when the connection
breaks after the request was sent (an executor killed mid-execution), no answer comes within the
deadline, or the executor fails inside (a 5xx other than 503), the result is a ``provider_error``
that names the endpoint and says the outcome is unknown. The token only ever travels in the
``Authorization`` header; no message includes it.
"""

from __future__ import annotations

import base64
import concurrent.futures
import itertools
import json
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import attrs
import httpx

from sandbox_core.failures import FailureKind, provider_failure
from sandbox_core.model import (
    DEFAULT_TIMEOUT,
    ExecutionRequest,
    ExecutionResult,
    HealthStatus,
)
from sandbox_core.schema import Secret
from sandbox_core.streaming import OutputCallback, OutputEvent
from sandbox_core.timeouts import request_seconds
from sandbox_selfmanaged import EVENTS_MEDIA_TYPE, PROVIDER_NAME
from sandbox_selfmanaged.shared_clients import CLIENTS

CONNECT_TIMEOUT = 5.0
KEEPALIVE_SECONDS = 2.0
"""Idle connections are dropped before the executor's own keep-alive limit (uvicorn: 5 s), so a
request is not sent on a connection the executor is closing: that would fail as a disconnect,
which cannot be told apart from an executor dying mid-execution and so is never retried."""
DOWN_SECONDS = 10.0
HEALTH_TIMEOUT = 10.0


class _Refused(Exception):
    """The request provably did not run at this endpoint; another one may take it (carries how
    long to wait)."""

    def __init__(self, message: str, retry_after: float = 0.0, kind: FailureKind = FailureKind.UNAVAILABLE) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.kind = kind


class _Failed(Exception):
    """The request reached an executor (or may have): retrying elsewhere could run the code twice,
    or would fail the same way."""

    def __init__(self, message: str, kind: FailureKind) -> None:
        super().__init__(message)
        self.kind = kind


_UNKNOWN = "the outcome is unknown (the code may have run), so it was not retried on another executor"


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(0.0, float(response.headers.get("retry-after", "1")))
    except ValueError:
        return 1.0


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except ValueError:
        return response.text[:300]
    if isinstance(detail, list):
        return "; ".join(f"{'.'.join(str(p) for p in d.get('loc', [])[1:])}: {d.get('msg')}" for d in detail if isinstance(d, dict))
    return str(detail)[:500]


def _is_events(response: httpx.Response) -> bool:
    return str(response.headers.get("content-type", "")).split(";")[0].strip().lower() == EVENTS_MEDIA_TYPE


def _lines(response: httpx.Response) -> Iterator[bytes]:
    """The response body's lines (split on ``\n`` only, as NDJSON is), as they arrive."""
    buffer = bytearray()
    for chunk in response.iter_bytes():
        start = len(buffer)
        buffer += chunk
        end = buffer.find(b"\n", start)
        while end >= 0:
            yield bytes(buffer[:end])
            del buffer[: end + 1]
            end = buffer.find(b"\n")
    if buffer:
        yield bytes(buffer)


def _read_events(response: httpx.Response, on_output: OutputCallback) -> ExecutionResult:
    """Pass an executor's output events on as their lines arrive; the last line holds the result."""
    for line in _lines(response):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            kind = item["type"]
            if kind == "output":
                on_output(OutputEvent(str(item["stream"]), str(item["text"])))
            elif kind == "result":
                return ExecutionResult.from_dict(item["result"])
            elif kind == "error":
                raise _Failed(f"failed inside after the code started: {item.get('detail')}; {_UNKNOWN}", FailureKind.LOST)
        except (ValueError, KeyError, TypeError) as exc:
            raise _Failed(f"streamed something that is not an output event or a result ({exc})", FailureKind.INTERNAL) from None
    raise _Failed(f"the output stream ended without a result; {_UNKNOWN}", FailureKind.LOST)


class ExecutorClient:
    """Talks to a fixed list of executors with one token; see the module docstring. Thread-safe."""

    def __init__(self, endpoints: list[str], token: str | None, *, verify_tls: bool = True) -> None:
        self.endpoints = [url.rstrip("/") for url in endpoints]
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            headers=headers,
            verify=verify_tls,
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64, keepalive_expiry=KEEPALIVE_SECONDS),
            trust_env=False,
        )
        self._turn = itertools.count()
        self._down_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        self._http.close()

    @property
    def http(self) -> httpx.Client:
        """The pooled HTTP client (the token in its headers), for calls pinned to one executor (sessions)."""
        return self._http

    def order(self) -> list[str]:
        """Endpoints in the order the next request should try them (see :meth:`_order`)."""
        return self._order()

    # -- choosing endpoints -------------------------------------------------------------------

    def _order(self) -> list[str]:
        """Endpoints starting at the next in turn, those recently unreachable last."""
        start = next(self._turn) % len(self.endpoints)
        rotated = self.endpoints[start:] + self.endpoints[:start]
        now = time.monotonic()
        with self._lock:
            return sorted(rotated, key=lambda url: self._down_until.get(url, 0.0) > now)

    def _mark_down(self, url: str) -> None:
        with self._lock:
            self._down_until[url] = time.monotonic() + DOWN_SECONDS

    def _mark_up(self, url: str) -> None:
        if url in self._down_until:
            with self._lock:
                self._down_until.pop(url, None)

    # -- executing ----------------------------------------------------------------------------

    def execute(
        self,
        request: ExecutionRequest,
        config: Mapping[str, Any],
        provider_name: str = PROVIDER_NAME,
        on_output: OutputCallback | None = None,
    ) -> ExecutionResult:
        """Run ``request`` on one of the executors (see the module docstring).

        With ``on_output`` the executor is asked for its NDJSON stream and each output event is
        passed on as its line arrives, stamped with the time this process received it.
        """
        timeout = request_seconds(request, float(config.get("default_timeout") or DEFAULT_TIMEOUT))
        payload: dict[str, Any] = {
            "code": request.code,
            "language": request.language,
            "arguments": dict(request.arguments),
            "timeout": timeout,
        }
        if request.runtime is not None:
            payload["runtime"] = request.runtime
        if request.network:
            payload["network"] = list(request.network)
        if request.files:
            payload["files"] = {name: base64.b64encode(data).decode("ascii") for name, data in request.files.items()}
        limit_fields = ("memory_mb", "processes", "max_output_bytes", "max_file_bytes")
        limits = {name: config[name] for name in limit_fields if config.get(name) is not None}
        if limits:
            payload["limits"] = limits
        overhead = float(config.get("request_timeout") or 30.0)
        deadline = time.monotonic() + timeout + overhead
        rounds = 1 + int(config.get("retries") or 0)
        problems: list[str] = []
        refusals: set[FailureKind] = set()
        for round_index in range(rounds):
            wait = 0.0
            for url in self._order():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    result = self._post(url, payload, remaining, on_output)
                except _Refused as refused:
                    problems.append(f"{url}: {refused}")
                    refusals.add(refused.kind)
                    wait = max(wait, refused.retry_after)
                    continue
                except _Failed as failed:
                    metadata: dict[str, Any] = {"endpoint": url}
                    if problems:
                        metadata["failed_attempts"] = list(problems)
                    return provider_failure(provider_name, f"{url}: {failed}", failed.kind, **metadata)
                metadata = {**result.metadata, "endpoint": url}
                if round_index or problems:
                    metadata["failed_attempts"] = list(problems)
                return attrs.evolve(result, provider=provider_name, metadata=metadata)
            remaining = deadline - time.monotonic()
            if round_index + 1 < rounds and remaining > 0:
                time.sleep(min(max(wait, 0.2), remaining))
        message = "no sandbox-executor could take the execution: " + ("; ".join(problems[-2 * len(self.endpoints):]) or "deadline passed")
        # Every executor refusing the token is the config's problem; anything else may pass.
        kind = FailureKind.AUTH if refusals == {FailureKind.AUTH} else FailureKind.UNAVAILABLE
        retry_after = None if kind is FailureKind.AUTH else max(wait, 1.0)
        return provider_failure(provider_name, message, kind, retry_after=retry_after, endpoints=list(self.endpoints))

    def _post(
        self, url: str, payload: Mapping[str, Any], remaining: float, on_output: OutputCallback | None = None
    ) -> ExecutionResult:
        timeout = httpx.Timeout(remaining, connect=min(CONNECT_TIMEOUT, remaining))
        headers = {"Accept": f"{EVENTS_MEDIA_TYPE}, application/json"}
        try:
            if on_output is None:
                response = self._http.post(f"{url}/v1/execute", json=payload, timeout=timeout)
            else:
                with self._http.stream("POST", f"{url}/v1/execute", json=payload, headers=headers, timeout=timeout) as response:
                    if response.status_code == 200 and _is_events(response):
                        self._mark_up(url)
                        return _read_events(response, on_output)
                    response.read()
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            self._mark_down(url)
            raise _Refused(f"unreachable ({type(exc).__name__}: {exc})") from None
        except httpx.PoolTimeout:
            raise _Refused("no free connection in this process's pool for it") from None
        except httpx.TimeoutException:
            raise _Failed(f"no answer within the execution's deadline; {_UNKNOWN}", FailureKind.LOST) from None
        except httpx.HTTPError as exc:
            # The request was (at least partly) sent: the executor may have started the code
            # before the connection broke (killed mid-execution), so it must not run elsewhere.
            self._mark_down(url)
            raise _Failed(
                f"the connection broke after the request was sent ({type(exc).__name__}: {exc}); {_UNKNOWN}", FailureKind.LOST
            ) from None
        self._mark_up(url)
        status = response.status_code
        if status == 200:
            try:
                return ExecutionResult.from_dict(response.json())
            except (ValueError, KeyError, TypeError) as exc:
                raise _Failed(f"answered with something that is not an execution result ({exc})", FailureKind.INTERNAL) from None
        if status == 503:
            # The executor's admission refuses before anything runs (queue full, no sandbox).
            raise _Refused(f"unavailable (503): {_detail(response)}", _retry_after(response))
        if status >= 500:
            raise _Failed(f"failed inside with HTTP {status}: {_detail(response)}; {_UNKNOWN}", FailureKind.LOST)
        if status == 401:
            raise _Refused("refused the token (401): set the executors' token in the self_managed config", kind=FailureKind.AUTH)
        if status in (400, 413, 422):
            raise _Failed(f"refused the request ({status}): {_detail(response)}", FailureKind.BAD_CONFIG)
        raise _Refused(f"unexpected HTTP {status}: {_detail(response)}")

    # -- health -------------------------------------------------------------------------------

    def _probe(self, url: str) -> dict[str, Any]:
        started = time.monotonic()
        try:
            response = self._http.get(f"{url}/healthz", timeout=HEALTH_TIMEOUT)
        except httpx.HTTPError as exc:
            return {"healthy": False, "message": f"unreachable ({type(exc).__name__}: {exc})", "latency": None}
        latency = time.monotonic() - started
        if response.status_code == 401:
            return {"healthy": False, "message": "refused the token (401)", "latency": latency}
        try:
            body = response.json()
        except ValueError:
            body = {}
        healthy = response.status_code == 200 and bool(body.get("healthy"))
        message = str(body.get("message") or f"HTTP {response.status_code}")
        return {
            "healthy": healthy,
            "message": message,
            "latency": latency,
            "runtime": body.get("runtime"),
            "languages": {k: {"available": v.get("available"), "pool": v.get("pool")} for k, v in (body.get("languages") or {}).items()},
            "runtimes": {
                k: {
                    "available": v.get("available"),
                    "language": v.get("language"),
                    "packages": v.get("packages", {}),
                    "preload": v.get("preload", []),
                    "restore": v.get("restore"),
                    "error": v.get("error"),
                }
                for k, v in (body.get("runtimes") or {}).items()
            },
        }

    def health(self) -> HealthStatus:
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, len(self.endpoints))) as workers:
            probes = dict(zip(self.endpoints, workers.map(self._probe, self.endpoints)))
        good = [url for url, probe in probes.items() if probe["healthy"]]
        bad = [f"{url}: {probe['message']}" for url, probe in probes.items() if not probe["healthy"]]
        summary = f"{len(good)}/{len(self.endpoints)} executors healthy"
        message = summary + (" (" + "; ".join(bad) + ")" if bad else "")
        runtimes: dict[str, Any] = {}
        for probe in probes.values():
            for name, entry in (probe.get("runtimes") or {}).items():
                runtimes.setdefault(name, entry)
        details = {"endpoints": probes, "runtimes": runtimes}
        return HealthStatus(healthy=bool(good), message=message, latency=time.monotonic() - started, details=details)


def client_for(config: Mapping[str, Any]) -> ExecutorClient:
    """The shared client for this config's endpoints, token and TLS setting."""
    token = config.get("token")
    if isinstance(token, Secret):
        token = token.reveal()
    endpoints, token, verify_tls = tuple(config["endpoints"]), token or None, bool(config.get("verify_tls", True))
    return CLIENTS.get((endpoints, token, verify_tls), lambda: ExecutorClient(list(endpoints), token, verify_tls=verify_tls))
