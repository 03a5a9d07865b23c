"""The fake control-plane REST API: create, list and kill sandboxes, each call checked for X-API-KEY.

Only the parts the provider's SDK calls use: ``POST /v2/sandboxes`` (201 with the sandbox and its
envd access token), ``GET /v2/sandboxes``, ``GET /sandboxes/{id}`` (its details and metadata),
``POST /v2/sandboxes/{id}/connect`` (the sandbox and its envd token, renewing its lifetime when
the body has a ``timeout``), ``DELETE /sandboxes/{id}`` (204, or 404) and
``POST /sandboxes/{id}/timeout`` (204). Errors are
JSON ``{"code", "message"}`` as E2B sends them; a refused key is never echoed back.
"""

from __future__ import annotations

import datetime
import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fake_e2b.state import ENVD_VERSION, FakeCloud, FakeSandbox


def _error(status: int, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"code": status, "message": message}, status_code=status, headers=headers)


def _refusal(cloud: FakeCloud, request: Request) -> Response | None:
    key = request.headers.get("x-api-key", "")
    if not secrets.compare_digest(key.encode(), cloud.api_key.encode()):
        return _error(401, "Invalid API key, it must start with 'e2b_'")
    if cloud.rate_limited:
        return _error(429, "Rate limit exceeded", **{"Retry-After": "0"})
    return None


def _iso(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).isoformat()


def _detail(sandbox: FakeSandbox) -> dict[str, Any]:
    return {
        **sandbox.to_json(),
        "startedAt": _iso(sandbox.started_at),
        "endAt": _iso(sandbox.started_at + (sandbox.lifetime or 300)),
        "cpuCount": 2,
        "memoryMB": 512,
        "diskSizeMB": 1024,
        "state": "running",
        "envdVersion": ENVD_VERSION,
        "metadata": sandbox.metadata,
    }


def routes(cloud: FakeCloud) -> list[Route]:
    async def create(request: Request) -> Response:
        refused = _refusal(cloud, request)
        if refused is not None:
            return refused
        body: dict[str, Any] = await request.json()
        cloud.create_requests.append(body)
        template = str(body.get("templateID") or "")
        if template not in cloud.templates:
            return _error(404, f"template '{template}' not found")
        if cloud.fail_creates:
            return _error(500, "failed to place the sandbox on a node")
        sandbox = cloud.create(template, body.get("timeout"), dict(body.get("metadata") or {}))
        return JSONResponse(sandbox.to_json(), status_code=201)

    async def list_sandboxes(request: Request) -> Response:
        refused = _refusal(cloud, request)
        if refused is not None:
            return refused
        limit = int(request.query_params.get("limit", "100"))
        listed = [_detail(sandbox) for sandbox in cloud.running()[:limit]]
        for item in listed:
            item.pop("envdAccessToken", None)
        return JSONResponse(listed)

    async def kill(request: Request) -> Response:
        refused = _refusal(cloud, request)
        if refused is not None:
            return refused
        if not cloud.kill(request.path_params["sandbox_id"]):
            return _error(404, f"sandbox '{request.path_params['sandbox_id']}' not found")
        return Response(status_code=204)

    async def set_timeout(request: Request) -> Response:
        refused = _refusal(cloud, request)
        if refused is not None:
            return refused
        sandbox = cloud.get(request.path_params["sandbox_id"])
        if sandbox is None:
            return _error(404, f"sandbox '{request.path_params['sandbox_id']}' not found")
        body: dict[str, Any] = await request.json()
        sandbox.renew(int(body["timeout"]))
        cloud.timeouts.append((sandbox.sandbox_id, sandbox.lifetime))
        return Response(status_code=204)

    async def connect(request: Request) -> Response:
        refused = _refusal(cloud, request)
        if refused is not None:
            return refused
        sandbox = cloud.get(request.path_params["sandbox_id"])
        if sandbox is None:
            return _error(404, f"sandbox '{request.path_params['sandbox_id']}' not found")
        body: dict[str, Any] = await request.json()
        if body.get("timeout") is not None:
            sandbox.renew(int(body["timeout"]))
            cloud.timeouts.append((sandbox.sandbox_id, int(body["timeout"])))
        return JSONResponse(sandbox.to_json(), status_code=200)

    async def describe(request: Request) -> Response:
        refused = _refusal(cloud, request)
        if refused is not None:
            return refused
        sandbox = cloud.get(request.path_params["sandbox_id"])
        if sandbox is None:
            return _error(404, f"sandbox '{request.path_params['sandbox_id']}' not found")
        return JSONResponse(_detail(sandbox))

    return [
        Route("/sandboxes/{sandbox_id}/timeout", set_timeout, methods=["POST"]),
        Route("/v2/sandboxes/{sandbox_id}/connect", connect, methods=["POST"]),
        Route("/sandboxes/{sandbox_id}", describe, methods=["GET"]),
        Route("/v2/sandboxes", create, methods=["POST"]),
        Route("/v2/sandboxes", list_sandboxes, methods=["GET"]),
        Route("/sandboxes/{sandbox_id}", kill, methods=["DELETE"]),
    ]
