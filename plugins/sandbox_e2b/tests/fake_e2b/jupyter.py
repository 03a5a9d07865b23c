"""The fake code-interpreter server (the Jupyter port, 49999): code contexts and ``POST /execute``.

With the SDK's ``sandbox_url`` override every port of every sandbox is the same URL, so
:mod:`fake_e2b.server` sends here the requests whose ``E2b-Sandbox-Port`` header is
:data:`JUPYTER_PORT`. The sandbox is named by ``E2b-Sandbox-Id``.

- ``POST /contexts`` ``{"language", "cwd"}`` starts a kernel (a real Python process running
  :mod:`fake_e2b.kernel`) and answers ``{"id", "language", "cwd"}``;
- ``GET /contexts`` lists them; ``DELETE /contexts/{id}`` kills one (404 when unknown);
  ``POST /contexts/{id}/restart`` replaces its kernel by a new one (its names are gone);
- ``POST /execute`` ``{"code", "context_id", "language", "env_vars"}`` streams the kernel's events
  as JSON lines, the format the SDK's ``parse_output`` reads. When the client goes away (its
  timeout) the kernel is killed, as a real interrupt would stop the code.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from fake_e2b.state import FakeCloud, FakeContext, FakeSandbox

JUPYTER_PORT = "49999"
KERNEL = Path(__file__).with_name("kernel.py")


def _sandbox(cloud: FakeCloud, request: Request) -> FakeSandbox | None:
    sandbox = cloud.get(request.headers.get("e2b-sandbox-id", ""))
    token = request.headers.get("x-access-token")
    # The SDK sends the envd token with /execute only; a wrong one is refused wherever it comes.
    if sandbox is not None and token is not None and not secrets.compare_digest(token.encode(), sandbox.access_token.encode()):
        return None
    return sandbox


def _gone() -> JSONResponse:
    return JSONResponse({"code": 502, "message": "The sandbox was not found"}, status_code=502)


def _kill(sandbox: FakeSandbox, context: FakeContext) -> None:
    sandbox.contexts.pop(context.context_id, None)
    sandbox.pids.discard(context.process.pid)
    try:
        os.killpg(context.process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


async def _start_kernel(sandbox: FakeSandbox, cwd: Path) -> asyncio.subprocess.Process:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(sandbox.home), "LANG": "C.UTF-8"}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-u",
        str(KERNEL),
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        start_new_session=True,
        limit=64 << 20,
    )


def routes(cloud: FakeCloud) -> list[Route]:
    async def create_context(request: Request) -> Response:
        sandbox = _sandbox(cloud, request)
        if sandbox is None:
            return _gone()
        body = await request.json()
        language = body.get("language") or "python"
        if language != "python":
            return JSONResponse({"code": 400, "message": f"no kernel for {language}"}, status_code=400)
        cwd = sandbox.resolve(body["cwd"]) if body.get("cwd") else sandbox.home
        if not cwd.is_dir():
            return JSONResponse({"code": 400, "message": f"{body.get('cwd')}: no such directory"}, status_code=400)
        process = await _start_kernel(sandbox, cwd)
        context = FakeContext(secrets.token_hex(8), language, str(cwd), process)
        sandbox.pids.add(process.pid)
        sandbox.contexts[context.context_id] = context
        if cloud.get(sandbox.sandbox_id) is None:  # killed while the kernel started
            _kill(sandbox, context)
            return _gone()
        return JSONResponse(context.to_json())

    async def list_contexts(request: Request) -> Response:
        sandbox = _sandbox(cloud, request)
        if sandbox is None:
            return _gone()
        return JSONResponse([context.to_json() for context in sandbox.contexts.values()])

    async def remove_context(request: Request) -> Response:
        sandbox = _sandbox(cloud, request)
        if sandbox is None:
            return _gone()
        context = sandbox.contexts.get(request.path_params["context_id"])
        if context is None:
            return JSONResponse({"code": 404, "message": "context not found"}, status_code=404)
        _kill(sandbox, context)
        await context.process.wait()
        return Response(status_code=204)

    async def restart_context(request: Request) -> Response:
        sandbox = _sandbox(cloud, request)
        if sandbox is None:
            return _gone()
        old = sandbox.contexts.get(request.path_params["context_id"])
        if old is None:
            return JSONResponse({"code": 404, "message": "context not found"}, status_code=404)
        _kill(sandbox, old)
        await old.process.wait()
        process = await _start_kernel(sandbox, Path(old.cwd))
        sandbox.pids.add(process.pid)
        sandbox.contexts[old.context_id] = FakeContext(old.context_id, old.language, old.cwd, process)
        cloud.restarts.append(old.context_id)
        return Response(status_code=204)

    async def execute(request: Request) -> Response:
        sandbox = _sandbox(cloud, request)
        if sandbox is None:
            return _gone()
        body = await request.json()
        context = sandbox.contexts.get(body.get("context_id") or "")
        if context is None:
            # Real E2B runs context-less code in a default context; the provider always names one.
            return JSONResponse({"code": 404, "message": "context not found"}, status_code=404)
        sandbox.executions += 1

        async def events() -> AsyncIterator[bytes]:
            process = context.process
            assert process.stdin is not None and process.stdout is not None
            async with context.busy:
                finished = False
                try:
                    process.stdin.write(json.dumps({"code": body["code"]}).encode() + b"\n")
                    await process.stdin.drain()
                    while line := await process.stdout.readline():
                        if json.loads(line)["type"] == "end":
                            finished = True
                            return
                        yield line
                    if cloud.get(sandbox.sandbox_id) is None:
                        # E2B's proxy drops the connection of a sandbox that is killed.
                        raise ConnectionAbortedError("the sandbox was killed")
                    message = "the kernel died"
                    yield json.dumps({"type": "error", "name": "DeadKernelError", "value": message, "traceback": message}).encode() + b"\n"
                finally:
                    if not finished:
                        # The client went away (its timeout) or the kernel died: stop the code.
                        _kill(sandbox, context)

        return StreamingResponse(events(), media_type="application/x-ndjson")

    return [
        Route("/contexts", create_context, methods=["POST"]),
        Route("/contexts", list_contexts, methods=["GET"]),
        Route("/contexts/{context_id}", remove_context, methods=["DELETE"]),
        Route("/contexts/{context_id}/restart", restart_context, methods=["POST"]),
        Route("/execute", execute, methods=["POST"]),
    ]
