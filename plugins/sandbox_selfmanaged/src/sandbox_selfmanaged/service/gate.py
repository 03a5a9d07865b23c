"""Checks every request must pass before the application sees it: token, body size, body budget.

Done as plain ASGI middleware so that an unauthenticated or oversized request is refused before
a single byte of its body is read or parsed. The body budget bounds the memory all requests in
progress hold together (queued requests keep their bodies while they wait): past it, new requests
get 503 with ``Retry-After`` instead of growing the executor's memory.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class _BodyTooLarge(Exception):
    pass


async def _respond(send: Send, status: int, detail: str, headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


class Gate:
    """Bearer-token authentication (constant-time) and a request-body size limit.

    :param token: the token clients must send as ``Authorization: Bearer …``; None disables
        authentication (allowed only on a loopback address, see the CLI).
    :param open_paths: paths served without a token (the liveness probe).
    :param max_body_bytes: larger bodies get 413, whether announced by ``Content-Length`` or not.
    :param max_held_bytes: request bodies held at once by all requests in progress; a request
        that would exceed it gets 503.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str | None,
        open_paths: Iterable[str],
        max_body_bytes: int,
        max_held_bytes: int | None = None,
    ) -> None:
        self.app = app
        self._token = token.encode() if token else None
        self._open = frozenset(open_paths)
        self.max_body_bytes = max_body_bytes
        self.max_held_bytes = max_held_bytes if max_held_bytes is not None else 8 * max_body_bytes
        self.held_bytes = 0  # the event loop is single-threaded: no lock needed

    def _authorized(self, scope: Scope) -> bool:
        if self._token is None or scope.get("path") in self._open:
            return True
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                scheme, _, credential = value.partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(credential.strip(), self._token)
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not self._authorized(scope):
            await _respond(send, 401, "missing or invalid bearer token", [(b"www-authenticate", b"Bearer")])
            return
        announced = 0
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    announced = int(value)
                except ValueError:
                    await _respond(send, 400, "invalid Content-Length header")
                    return
                if announced > self.max_body_bytes:
                    await _respond(send, 413, f"request body larger than {self.max_body_bytes} bytes")
                    return
        if announced and self.held_bytes + announced > self.max_held_bytes:
            await _respond(send, 503, "the executor holds too many request bodies; retry later", [(b"retry-after", b"1")])
            return
        held = announced
        self.held_bytes += held
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received, held
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise _BodyTooLarge()
                if received > held:  # no or a wrong Content-Length: account as it arrives
                    self.held_bytes += received - held
                    held = received
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await _respond(send, 413, f"request body larger than {self.max_body_bytes} bytes")
        finally:
            self.held_bytes -= held
