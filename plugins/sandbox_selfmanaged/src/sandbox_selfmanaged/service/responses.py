"""JSON responses that relay a result's value without copying it whole.

The body is sent piece by piece (at most :data:`CHUNK_BYTES` at a time, each awaited by the
server's flow control), so a 30 MB ``main()`` value costs the executor the frame buffer it
arrived in and about one chunk more, not a second encoded copy.
"""

from __future__ import annotations

from typing import Any

from starlette.background import BackgroundTask
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from sandbox_core.runner.rawjson import encode_parts

CHUNK_BYTES = 1 << 20


class RelayedJSONResponse(Response):
    """``content`` as JSON; :class:`~sandbox_core.runner.rawjson.RawJSON` values inside it are written as received."""

    media_type = "application/json"

    def __init__(self, content: Any, status_code: int = 200, background: BackgroundTask | None = None) -> None:
        self.parts = encode_parts(content)
        length = sum(part.nbytes for part in self.parts)
        super().__init__(None, status_code, headers={"content-length": str(length)}, background=background)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        for part in self.parts:
            for start in range(0, part.nbytes, CHUNK_BYTES):
                await send({"type": "http.response.body", "body": bytes(part[start : start + CHUNK_BYTES]), "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        if self.background is not None:
            await self.background()
