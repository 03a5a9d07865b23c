"""Checks every request must pass before the application sees it: who may call, and its body.

Done as plain ASGI middleware so that an unauthenticated or oversized request is refused before
a single byte of its body is read or parsed.

Who may call: a client presenting the token (``Authorization: Bearer …`` or ``X-Sandbox-Token:
…``, compared in constant time), or one connecting from a network the operator listed as
trusted (``--allow-unauthenticated-from``). The peer address is the TCP peer's: the server must
not rewrite it from ``X-Forwarded-For`` (the CLI turns uvicorn's proxy headers off).

The body: at most ``max_body_bytes`` (413, whether announced by ``Content-Length`` or sent
chunked), arriving with no pause longer than ``body_timeout`` and, after the first
``body_timeout`` seconds, at ``min_body_rate`` bytes per second on average (408 otherwise). The
body budget bounds the bytes all requests in progress hold together (queued requests keep their
bodies while they wait); it counts bytes actually received, so a client that announces a large
body and sends it slowly holds only what it sent, until it is cut off. A request that would
exceed the budget gets 503 with ``Retry-After``. Every refusal closes the connection.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

TOKEN_HEADERS = (b"authorization", b"x-sandbox-token")
BUDGET_DETAIL = "the executor holds too many request bodies; retry later"


class _Refused(Exception):
    """Raised from ``receive`` to stop the application once the gate has decided to refuse."""


async def _respond(send: Send, status: int, detail: str, headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def parse_networks(text: str) -> tuple[Network, ...]:
    """``"172.17.0.0/16,10.0.0.0/8"`` as networks; ValueError naming a bad entry."""
    networks = []
    for part in text.split(","):
        if not part.strip():
            continue
        try:
            networks.append(ipaddress.ip_network(part.strip(), strict=False))
        except ValueError:
            raise ValueError(f"not a network (CIDR such as 172.17.0.0/16): {part.strip()!r}") from None
    if not networks:
        raise ValueError("no network given")
    return tuple(networks)


class Gate:
    """Authentication and request-body limits in front of ``app``; see the module docstring.

    :param token: the token clients must present; None: no token (then either the API is open,
        allowed only on loopback, or only ``trusted_networks`` may call).
    :param open_paths: paths served to anyone (the liveness probe).
    :param trusted_networks: peers in these networks need no token.
    :param max_body_bytes: larger bodies get 413.
    :param max_held_bytes: body bytes held at once by all requests in progress (default 8 ×
        ``max_body_bytes``); a request that would exceed it gets 503.
    :param body_timeout: longest pause while a body arrives, and the grace before the rate counts.
    :param min_body_rate: bytes per second a body must average once the grace is over.
    :param on_refusal: called with a reason (``slow_body``, ``body_too_large``, ``body_budget``)
        each time a body is refused, for metrics.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str | None,
        open_paths: Iterable[str],
        max_body_bytes: int,
        max_held_bytes: int | None = None,
        trusted_networks: Iterable[Network] = (),
        body_timeout: float = 10.0,
        min_body_rate: float = 32 * 1024,
        on_refusal: Callable[[str], None] = lambda _reason: None,
    ) -> None:
        self.app = app
        self._token = token.encode() if token else None
        self._open = frozenset(open_paths)
        self._trusted = tuple(trusted_networks)
        self.max_body_bytes = max_body_bytes
        self.max_held_bytes = max_held_bytes if max_held_bytes is not None else 8 * max_body_bytes
        self.body_timeout = body_timeout
        self.min_body_rate = min_body_rate
        self._on_refusal = on_refusal
        self.held_bytes = 0  # the event loop is single-threaded: no lock needed

    def _authorized(self, scope: Scope) -> bool:
        if scope.get("path") in self._open or (self._token is None and not self._trusted):
            return True
        if self._trusted and self._from_trusted(scope):
            return True
        if self._token is None:
            return False
        for name, value in scope.get("headers", ()):
            if name not in TOKEN_HEADERS:
                continue
            if name == b"authorization":
                scheme, _, value = value.partition(b" ")
                if scheme.lower() != b"bearer":
                    continue
            if hmac.compare_digest(value.strip(), self._token):
                return True
        return False

    def _from_trusted(self, scope: Scope) -> bool:
        client = scope.get("client")
        if not client:
            return False
        try:
            address = ipaddress.ip_address(client[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self._trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not self._authorized(scope):
            await _respond(send, 401, "missing or invalid token", [(b"www-authenticate", b"Bearer")])
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
                    self._on_refusal("body_too_large")
                    await _respond(send, 413, f"request body larger than {self.max_body_bytes} bytes")
                    return
        if announced and self.held_bytes + announced > self.max_held_bytes:
            self._on_refusal("body_budget")
            await _respond(send, 503, BUDGET_DETAIL, [(b"retry-after", b"1")])
            return
        loop = asyncio.get_running_loop()
        started = loop.time()
        held = 0
        complete = False
        refusal: tuple[int, str, list[tuple[bytes, bytes]]] | None = None
        responded = False

        def refuse(reason: str, status: int, detail: str, headers: list[tuple[bytes, bytes]] | None = None) -> _Refused:
            nonlocal refusal
            refusal = (status, detail, headers or [])
            self._on_refusal(reason)
            return _Refused()

        async def limited_receive() -> Message:
            nonlocal held, complete
            if complete or refusal is not None:
                return await receive()
            now = loop.time()
            deadline = min(now + self.body_timeout, started + self.body_timeout + held / self.min_body_rate)
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - now))
            except asyncio.TimeoutError:
                detail = (
                    f"request body arrived too slowly (at least {self.min_body_rate:g} bytes/s, "
                    f"no pause over {self.body_timeout:g}s)"
                )
                raise refuse("slow_body", 408, detail) from None
            if message["type"] != "http.request":
                return message
            size = len(message.get("body", b""))
            complete = not message.get("more_body", False)
            if held + size > self.max_body_bytes:
                raise refuse("body_too_large", 413, f"request body larger than {self.max_body_bytes} bytes")
            if self.held_bytes + size > self.max_held_bytes:
                raise refuse("body_budget", 503, BUDGET_DETAIL, [(b"retry-after", b"1")])
            held += size
            self.held_bytes += size
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal responded
            if refusal is not None:
                return  # the gate answers instead
            if message["type"] == "http.response.start":
                responded = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if refusal is None:
                raise
        finally:
            self.held_bytes -= held
        if refusal is not None and not responded:
            await _respond(send, refusal[0], refusal[1], refusal[2])
