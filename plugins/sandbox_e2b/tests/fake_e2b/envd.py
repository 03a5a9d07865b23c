"""The fake envd: file upload and download, directory listing, health, and the process service's ``Start`` stream.

The SDK reaches envd through one URL for every sandbox (its ``sandbox_url`` option) and names
the sandbox in the ``E2b-Sandbox-Id`` header, with the sandbox's access token in
``X-Access-Token``. ``POST /files`` takes ``multipart/form-data`` (one ``file`` part per file,
its file name being the sandbox path) or ``application/octet-stream`` with ``?path=``, and
answers the entries it wrote; ``GET /files?path=`` answers a file's bytes (404 when there is none).
``POST /filesystem.Filesystem/ListDir`` is a unary Connect call in JSON (``{"path", "depth"}`` in,
``{"entries": [{"name", "type", "path", "size"}]}`` out). ``POST /process.Process/Start`` is a Connect server stream in JSON:
the request is ``{"process": {"cmd", "args", "envs", "cwd"}}``; the answer is a ``start`` event
with the pid, ``data`` events with base64 ``stdout``/``stderr`` chunks, an ``end`` event with
the exit code, then the end-of-stream envelope.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from fake_e2b import connect
from fake_e2b.state import FakeCloud, FakeSandbox

CHUNK = 32 * 1024


def _sandbox(cloud: FakeCloud, request: Request) -> FakeSandbox | None:
    sandbox = cloud.get(request.headers.get("e2b-sandbox-id", ""))
    if sandbox is None:
        return None
    token = request.headers.get("x-access-token", "")
    return sandbox if secrets.compare_digest(token.encode(), sandbox.access_token.encode()) else None


def _not_found() -> JSONResponse:
    # What E2B's proxy answers for a sandbox that is gone; the SDK maps it to "not running".
    return JSONResponse({"code": 502, "message": "The sandbox was not found"}, status_code=502)


def _write(sandbox: FakeSandbox, path: str, data: bytes) -> dict[str, Any]:
    target = sandbox.resolve(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return {"name": target.name, "type": "file", "path": str(target)}


async def _output(stream: asyncio.StreamReader, name: str, queue: asyncio.Queue[tuple[str, bytes]]) -> None:
    while chunk := await stream.read(CHUNK):
        await queue.put((name, chunk))
    await queue.put((name, b""))


def routes(cloud: FakeCloud) -> list[Route]:
    async def health(request: Request) -> Response:
        return Response(status_code=204) if _sandbox(cloud, request) else _not_found()

    async def upload(request: Request) -> Response:
        sandbox = _sandbox(cloud, request)
        if sandbox is None:
            return _not_found()
        if cloud.fail_uploads:
            return JSONResponse({"code": 507, "message": "not enough disk space"}, status_code=507)
        written = []
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            async with request.form(max_part_size=64 << 20) as form:
                for _field, part in form.multi_items():
                    if isinstance(part, str):
                        continue
                    path = part.filename or request.query_params.get("path", "")
                    written.append(_write(sandbox, path, await part.read()))
        else:
            written.append(_write(sandbox, request.query_params["path"], await request.body()))
        return JSONResponse(written)

    async def download(request: Request) -> Response:
        sandbox = _sandbox(cloud, request)
        if sandbox is None:
            return _not_found()
        target = sandbox.resolve(request.query_params.get("path", ""))
        if not target.is_file():
            return JSONResponse({"code": 404, "message": f"path '{request.query_params.get('path')}' does not exist"}, status_code=404)
        return Response(target.read_bytes(), media_type="application/octet-stream")

    async def list_dir(request: Request) -> Response:
        sandbox = _sandbox(cloud, request)
        if sandbox is None:
            return JSONResponse({"code": "unavailable", "message": "The sandbox was not found"}, status_code=503)
        body = json.loads(await request.body() or b"{}")
        folder = sandbox.resolve(str(body.get("path") or ""))
        if not folder.is_dir():
            return JSONResponse({"code": "not_found", "message": f"{body.get('path')}: no such directory"}, status_code=404)
        depth = int(body.get("depth") or 1)
        entries = []
        for path in sorted(folder.rglob("*")):
            if len(path.relative_to(folder).parts) > depth:
                continue
            kind = "FILE_TYPE_DIRECTORY" if path.is_dir() else "FILE_TYPE_FILE"
            entries.append({"name": path.name, "type": kind, "path": str(path), "size": str(path.stat().st_size)})
        return JSONResponse({"entries": entries})

    async def start(request: Request) -> Response:
        sandbox = _sandbox(cloud, request)
        if sandbox is None:
            return Response(connect.end_stream("unavailable", "The sandbox was not found"), media_type=connect.CONTENT_TYPE)
        config = connect.read_single(await request.body()).get("process") or {}
        cwd = sandbox.resolve(config["cwd"]) if config.get("cwd") else sandbox.home
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(sandbox.home), "LANG": "C.UTF-8"}
        env.update(config.get("envs") or {})
        process = await asyncio.create_subprocess_exec(
            config["cmd"],
            *config.get("args", []),
            cwd=cwd,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        sandbox.pids.add(process.pid)

        async def events() -> AsyncIterator[bytes]:
            queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
            assert process.stdout is not None and process.stderr is not None
            readers = [
                asyncio.ensure_future(_output(process.stdout, "stdout", queue)),
                asyncio.ensure_future(_output(process.stderr, "stderr", queue)),
            ]
            yield connect.envelope({"event": {"start": {"pid": process.pid}}})
            open_streams = 2
            while open_streams:
                name, chunk = await queue.get()
                if not chunk:
                    open_streams -= 1
                    continue
                data = base64.b64encode(chunk).decode("ascii")
                yield connect.envelope({"event": {"data": {name: data}}})
            await asyncio.gather(*readers)
            code = await process.wait()
            sandbox.pids.discard(process.pid)
            if cloud.get(sandbox.sandbox_id) is None:
                # Killed under the command: E2B's proxy ends the stream, the SDK reports the sandbox gone.
                yield connect.end_stream("unavailable", "The sandbox was not found")
                return
            end = {"exitCode": code, "exited": code >= 0, "status": f"exit status {code}" if code >= 0 else f"signal: {-code}"}
            yield connect.envelope({"event": {"end": end}})
            yield connect.end_stream()

        return StreamingResponse(events(), media_type=connect.CONTENT_TYPE)

    return [
        Route("/health", health, methods=["GET"]),
        Route("/files", upload, methods=["POST"]),
        Route("/files", download, methods=["GET"]),
        Route("/filesystem.Filesystem/ListDir", list_dir, methods=["POST"]),
        Route("/process.Process/Start", start, methods=["POST"]),
    ]
