"""The fake's HTTP API: the AgentRun data-plane routes the provider's SDK calls make.

Two extra templates inject service faults (see :class:`.state.Credentials`): one whose sandboxes
fail every execute, one whose sandboxes cannot be deleted. :meth:`.state.SandboxStore.throttle_next`
makes the next requests answer HTTP 429 ``Throttling.User``, as the service does under flow control;
``store.deletes_throttled`` does it to every sandbox delete while it is on. Admin hooks act behind
the client's back: ``store.delete(id)`` removes a sandbox as the service's lifetime or console would,
:meth:`.state.SandboxStore.fail_next_executes_after_running` loses execute replies after the code
ran, ``store.reshape_stdout`` re-cuts the stdout items of each execute reply, and
``store.reshape_reply`` changes the shape of context and execute replies.

Every request must carry a valid signature (see :mod:`.signing`); refusals answer like the service,
with an HTTP error status and ``{"code", "message", "requestId"}``. Paths, as the SDK builds them
from ``Config.data_endpoint``:

==========  ==========================================  ==========================================
POST        ``/sandboxes``                              create from ``templateName``
GET         ``/sandboxes/{id}``                         describe
GET         ``/sandboxes/{id}/health``                  ``{"status": "ok"}`` once ready
POST        ``/sandboxes/{id}/contexts``                create a context (``language``, ``cwd``)
GET         ``/sandboxes/{id}/contexts``                list the contexts
GET         ``/sandboxes/{id}/contexts/{ctx}``          describe a context
DELETE      ``/sandboxes/{id}/contexts/{ctx}``          delete a context (ends its kernel)
POST        ``/sandboxes/{id}/contexts/execute``        run ``code`` (``contextId`` or ``language``, ``timeout``)
POST        ``/sandboxes/{id}/filesystem/upload``       write a file (multipart: ``file``, ``path``)
GET         ``/sandboxes/{id}/filesystem/download``     a file's bytes (``?path=``)
GET         ``/sandboxes/{id}/filesystem``              list a folder (``?path=&depth=``)
DELETE      ``/sandboxes/{id}``                         delete
==========  ==========================================  ==========================================
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .signing import verify
from .state import Credentials, SandboxStore


def _same(reply: Any) -> Any:
    return reply


def _answer(status: int, body: Mapping[str, Any]) -> JSONResponse:
    return JSONResponse({"requestId": uuid.uuid4().hex, **body}, status_code=status)


def _error(status: int, code: str, message: str) -> JSONResponse:
    return _answer(status, {"code": code, "message": message})


def build_app(store: SandboxStore, credentials: Credentials, log: list[dict[str, Any]]) -> Starlette:
    secrets = {credentials.access_key_id: credentials.access_key_secret}

    async def guarded(request: Request, handler: Any) -> Response:
        key_id, rejection = verify(
            request.method, request.url.path, request.url.query, request.headers, secrets, credentials.region
        )
        if rejection is not None:
            response = _error(rejection.status, rejection.code, rejection.message)
        elif store.take_throttle(f"{request.method} {request.url.path}"):
            response = _error(429, "Throttling.User", "Request was denied due to user flow control.")
        else:
            response = await handler(request)
        log.append({"method": request.method, "path": request.url.path, "status": response.status_code, "key_id": key_id})
        return response

    def sandbox_or_404(request: Request) -> Any:
        return store.touch(request.path_params["sandbox_id"])

    async def create(request: Request) -> JSONResponse:
        body = json.loads(await request.body() or b"{}")
        sandbox = store.create(str(body.get("templateName")), int(body.get("sandboxIdleTimeoutSeconds") or 600))
        if sandbox is None:
            return _error(404, "TemplateNotFound", f"template {body.get('templateName')!r} not found")
        return _answer(200, {"code": "SUCCESS", "data": sandbox.describe()})

    async def describe(request: Request) -> JSONResponse:
        sandbox = sandbox_or_404(request)
        if sandbox is None:
            return _error(404, "SandboxNotFound", "sandbox not found")
        return _answer(200, {"code": "SUCCESS", "data": sandbox.describe()})

    async def health(request: Request) -> JSONResponse:
        if sandbox_or_404(request) is None:
            return _error(404, "SandboxNotFound", "sandbox not found")
        return JSONResponse({"status": "ok"})

    async def execute(request: Request) -> JSONResponse:
        sandbox = sandbox_or_404(request)
        if sandbox is None:
            return _error(404, "SandboxNotFound", "sandbox not found")
        if sandbox.template_name == credentials.execute_fails_template:
            return _error(500, "InternalError", "the interpreter crashed")
        body = json.loads(await request.body())
        context_id = body.get("contextId")
        if context_id is not None:
            context = sandbox.contexts.get(context_id)
            if context is None:
                return _error(404, "ContextNotFound", f"context {context_id} not found")
            reply = await run_in_threadpool(store.execute_in, sandbox, context, str(body["code"]), body.get("timeout"))
            if store.take_failure_after_executing():
                return _error(500, "InternalError", "the reply was lost")
            return JSONResponse(store.reshape_reply.get("execute", _same)(reply))
        if body.get("language", "python") != "python":
            return _error(400, "UnsupportedLanguage", "the fake interpreter runs python only")
        reply = await run_in_threadpool(store.execute, sandbox, str(body["code"]), body.get("timeout"))
        return JSONResponse(reply)

    async def create_context(request: Request) -> JSONResponse:
        sandbox = sandbox_or_404(request)
        if sandbox is None:
            return _error(404, "SandboxNotFound", "sandbox not found")
        body = json.loads(await request.body() or b"{}")
        if body.get("language", "python") != "python":
            return _error(400, "UnsupportedLanguage", "the fake interpreter runs python only")
        context = await run_in_threadpool(store.create_context, sandbox, "python", str(body.get("cwd") or "/home/user"))
        return JSONResponse(store.reshape_reply.get("create_context", _same)(context.describe()))

    async def describe_context(request: Request) -> JSONResponse:
        sandbox = sandbox_or_404(request)
        context = sandbox.contexts.get(request.path_params["context_id"]) if sandbox is not None else None
        if context is None:
            return _error(404, "ContextNotFound", "context not found")
        return JSONResponse(context.describe())

    async def delete_context(request: Request) -> JSONResponse:
        sandbox = sandbox_or_404(request)
        if sandbox is None:
            return _error(404, "SandboxNotFound", "sandbox not found")
        context = await run_in_threadpool(store.delete_context, sandbox, request.path_params["context_id"])
        if context is None:
            return _error(404, "ContextNotFound", "context not found")
        return JSONResponse(context.describe())

    async def delete(request: Request) -> JSONResponse:
        existing = sandbox_or_404(request)
        if store.deletes_throttled:
            store.throttled.append(f"{request.method} {request.url.path}")
            return _error(429, "Throttling.User", "Request was denied due to user flow control.")
        if existing is not None and existing.template_name == credentials.delete_fails_template:
            return _error(500, "InternalError", "deletion failed")
        sandbox = store.delete(request.path_params["sandbox_id"])
        if sandbox is None:
            return _error(404, "SandboxNotFound", "sandbox not found")
        return _answer(200, {"code": "SUCCESS", "data": sandbox.describe()})

    def sandbox_path(sandbox: Any, path: str) -> str | None:
        """Where sandbox path ``path`` (absolute) lives in the sandbox's folder; None if it climbs out."""
        target = os.path.realpath(os.path.join(sandbox.folder, path.lstrip("/")))
        root = os.path.realpath(sandbox.folder)
        return target if target == root or target.startswith(root + os.sep) else None

    async def upload_file(request: Request) -> JSONResponse:
        sandbox = sandbox_or_404(request)
        if sandbox is None:
            return _error(404, "SandboxNotFound", "sandbox not found")
        async with request.form(max_part_size=64 << 20) as form:
            target = sandbox_path(sandbox, str(form.get("path") or ""))
            part = form.get("file")
            if target is None or part is None or isinstance(part, str):
                return _error(400, "InvalidParameter", "a 'file' part and an absolute 'path' inside the sandbox are required")
            data = await part.read()
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as handle:
            handle.write(data)
        store.files_uploaded.append(str(form.get("path")))
        return JSONResponse({"path": str(form.get("path")), "size": len(data)})

    async def download_file(request: Request) -> Response:
        sandbox = sandbox_or_404(request)
        if sandbox is None:
            return _error(404, "SandboxNotFound", "sandbox not found")
        target = sandbox_path(sandbox, request.query_params.get("path", ""))
        if target is None or not os.path.isfile(target):
            return _error(404, "FileNotFound", f"{request.query_params.get('path')}: no such file")
        with open(target, "rb") as handle:
            return Response(handle.read(), media_type="application/octet-stream")

    async def list_directory(request: Request) -> JSONResponse:
        sandbox = sandbox_or_404(request)
        if sandbox is None:
            return _error(404, "SandboxNotFound", "sandbox not found")
        path = request.query_params.get("path", "/home/user")
        folder = sandbox_path(sandbox, path)
        if folder is None or not os.path.isdir(folder):
            return _error(404, "FileNotFound", f"{path}: no such directory")
        depth = int(request.query_params.get("depth") or 1)
        entries = []
        for here, dirs, files in os.walk(folder):
            level = os.path.relpath(here, folder).count(os.sep) + (0 if here == folder else 1)
            if level >= depth:
                dirs.clear()
            for name in sorted(dirs) + sorted(files):
                full = os.path.join(here, name)
                entries.append({
                    "name": name,
                    "path": path.rstrip("/") + "/" + os.path.relpath(full, folder).replace(os.sep, "/"),
                    "type": "directory" if os.path.isdir(full) else "file",
                    "size": os.path.getsize(full),
                })
        return JSONResponse({"path": path, "entries": entries})

    async def list_contexts(request: Request) -> JSONResponse:
        sandbox = sandbox_or_404(request)
        if sandbox is None:
            return _error(404, "SandboxNotFound", "sandbox not found")
        return JSONResponse([context.describe() for context in list(sandbox.contexts.values())])

    def route(path: str, handler: Any, method: str) -> Route:
        async def endpoint(request: Request) -> Response:
            return await guarded(request, handler)

        return Route(path, endpoint, methods=[method])

    return Starlette(
        routes=[
            route("/sandboxes", create, "POST"),
            route("/sandboxes/{sandbox_id}", describe, "GET"),
            route("/sandboxes/{sandbox_id}", delete, "DELETE"),
            route("/sandboxes/{sandbox_id}/health", health, "GET"),
            route("/sandboxes/{sandbox_id}/contexts/execute", execute, "POST"),
            route("/sandboxes/{sandbox_id}/contexts", create_context, "POST"),
            route("/sandboxes/{sandbox_id}/contexts", list_contexts, "GET"),
            route("/sandboxes/{sandbox_id}/filesystem/upload", upload_file, "POST"),
            route("/sandboxes/{sandbox_id}/filesystem/download", download_file, "GET"),
            route("/sandboxes/{sandbox_id}/filesystem", list_directory, "GET"),
            route("/sandboxes/{sandbox_id}/contexts/{context_id}", describe_context, "GET"),
            route("/sandboxes/{sandbox_id}/contexts/{context_id}", delete_context, "DELETE"),
        ]
    )
