"""The host side of egress: a filtering HTTP CONNECT proxy listening on one Unix socket per sandbox.

gVisor's file helper, not the sandbox, is the peer of every connection, so a sandbox is known by
the socket it reached: each sandbox gets a directory of its own holding one socket, bound
read-only into that sandbox alone. Each connection is checked in this order, and refused at the
first failure: the request is ``CONNECT host:port`` (no plain-HTTP proxying); an execution with
a policy is running in that sandbox; the name passes :func:`~.allowlist.normalize_name` and is on
its allowlist (all before any lookup); the execution's connection limits; the name is resolved
once, here on the host, and *every* address it resolves to is public unicast (a name that
resolves to one private address is refused whole, against rebinding); then the proxy connects
to those checked addresses and to nothing else. Bytes are counted against the execution's
budget, and every open tunnel is cut when the execution ends, so one execution's policy never
serves the next.

The proxy runs its own event loop in one thread; the engine calls it from its threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
import threading
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

import attrs

from sandbox_selfmanaged.egress.addresses import refusal_reason
from sandbox_selfmanaged.egress.allowlist import Allowlist, parse_destination
from sandbox_selfmanaged.errors import EgressRefused

logger = logging.getLogger(__name__)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[Address]]
SOCKET_NAME = "egress.sock"
MAX_HEAD_BYTES = 8192
MAX_RECORDED_ATTEMPTS = 64
CHUNK = 65536
_T = TypeVar("_T")


def system_resolver(name: str, port: int) -> list[Address]:
    """The host's resolver: every TCP address of ``name`` (IPv6 zone suffixes kept, then refused)."""
    infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICSERV)
    return [ipaddress.ip_address(info[4][0]) for info in infos]


@attrs.frozen
class EgressLimits:
    """What one execution may do through the proxy.

    :param attempts: connection attempts (allowed or not); later ones are closed unanswered.
    :param connections: tunnels opened in total.
    :param concurrent: tunnels open at once.
    :param total_bytes: bytes through all tunnels, both directions together.
    :param connect_timeout: seconds for the request head, the lookup and the connect, each.
    """

    attempts: int = 256
    connections: int = 64
    concurrent: int = 8
    total_bytes: int = 256 << 20
    connect_timeout: float = 10.0


@attrs.frozen
class Attempt:
    """One connection attempt, as logged and reported."""

    name: str
    port: int
    allowed: bool
    reason: str = ""
    address: str = ""
    bytes_sent: int = 0
    bytes_received: int = 0

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen
class EgressReport:
    """What an execution did through the proxy: counts always, the first attempts in detail."""

    allowed: int = 0
    refused: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    attempts: tuple[Attempt, ...] = ()

    def metadata(self) -> dict[str, Any]:
        """The ``egress`` entry of the result's metadata."""
        return {
            "allowed": self.allowed,
            "refused": self.refused,
            "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
            "attempts": [attempt.as_dict() for attempt in self.attempts],
        }


Observer = Callable[[Attempt], None]


class _Execution:
    """The policy and the accounting of one execution; lives on the proxy's loop only."""

    def __init__(self, sandbox: str, allowlist: Allowlist, limits: EgressLimits) -> None:
        self.sandbox = sandbox
        self.allowlist = allowlist
        self.limits = limits
        self.ended = False
        self.seen = 0
        self.opened = 0
        self.open = 0
        self.allowed = 0
        self.refused = 0
        self.bytes_sent = 0
        self.bytes_received = 0
        self.attempts: list[Attempt] = []
        self.tasks: set[asyncio.Task[None]] = set()

    def spend(self, count: int) -> bool:
        used = self.bytes_sent + self.bytes_received
        return not self.ended and used + count <= self.limits.total_bytes

    def report(self) -> EgressReport:
        return EgressReport(
            allowed=self.allowed,
            refused=self.refused,
            bytes_sent=self.bytes_sent,
            bytes_received=self.bytes_received,
            attempts=tuple(self.attempts),
        )


class SandboxEgress:
    """The proxy's socket for one sandbox; an execution's policy is set with :meth:`begin`."""

    def __init__(self, proxy: EgressProxy, sandbox: str, directory: Path, server: asyncio.AbstractServer) -> None:
        self._proxy = proxy
        self.sandbox = sandbox
        self.directory = directory
        self._server = server
        self._current: _Execution | None = None

    @property
    def path(self) -> Path:
        return self.directory / SOCKET_NAME

    def begin(self, allowlist: Allowlist, limits: EgressLimits | None = None) -> None:
        """Let the running execution reach ``allowlist`` (an empty one still logs each refusal)."""
        execution = _Execution(self.sandbox, allowlist, limits or self._proxy.limits)
        self._proxy.call(self._begin(execution))

    def end(self) -> EgressReport:
        """Stop the execution's policy, cut its tunnels, and report what it did."""
        return self._proxy.call(self._end())

    def close(self) -> None:
        """Stop listening and cut everything (idempotent)."""
        self._proxy.call(self._close())

    async def _begin(self, execution: _Execution) -> None:
        if self._current is not None:
            await self._end()
        self._current = execution

    async def _end(self) -> EgressReport:
        execution, self._current = self._current, None
        if execution is None:
            return EgressReport()
        execution.ended = True
        tasks = list(execution.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return execution.report()

    async def _close(self) -> None:
        await self._end()
        self._server.close()
        await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Accept one connection for the execution running now (none: it is refused)."""
        execution = self._current
        if execution is None or execution.ended:
            writer.close()
            return
        task = asyncio.get_running_loop().create_task(self._proxy.serve(execution, reader, writer))
        execution.tasks.add(task)
        task.add_done_callback(execution.tasks.discard)


class EgressProxy:
    """The filtering CONNECT proxy of one executor: one event-loop thread, one socket per sandbox.

    :param resolver: maps a checked name and port to addresses (the system's by default; tests
        map names to addresses inside a network namespace they own).
    :param observer: told of every attempt once it is settled (metrics).
    """

    def __init__(
        self,
        *,
        resolver: Resolver = system_resolver,
        limits: EgressLimits | None = None,
        observer: Observer | None = None,
    ) -> None:
        self.resolver = resolver
        self.limits = limits or EgressLimits()
        self._observer = observer
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="egress-proxy", daemon=True)
        self._thread.start()

    def call(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        """Run ``coroutine`` on the proxy's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=30)

    def listen(self, sandbox: str, directory: Path) -> SandboxEgress:
        """Create ``directory`` (mode 0755) with the sandbox's socket in it (mode 0666: the sandbox
        user must be able to connect; the directory's parent is what keeps other host users out)."""
        directory.mkdir(mode=0o755)
        path = directory / SOCKET_NAME

        async def start() -> SandboxEgress:
            holder: list[SandboxEgress] = []
            server = await asyncio.start_unix_server(lambda r, w: holder[0].handle(r, w), path=str(path), limit=MAX_HEAD_BYTES)
            os.chmod(path, 0o666)
            holder.append(SandboxEgress(self, sandbox, directory, server))
            return holder[0]

        return self.call(start())

    def close(self) -> None:
        """Stop the loop thread; sockets still open are closed with it."""
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def serve(self, execution: _Execution, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer one connection: refuse it with a status line, or tunnel it."""
        try:
            execution.seen += 1
            if execution.seen > execution.limits.attempts:
                if execution.seen == execution.limits.attempts + 1:
                    logger.warning("egress sandbox=%s: attempt limit reached, further attempts dropped", execution.sandbox)
                execution.refused += 1
                return
            await self._serve(execution, reader, writer)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, execution: _Execution, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        limits = execution.limits
        target = ""
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), limits.connect_timeout)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            self._settle(execution, Attempt(name="", port=0, allowed=False, reason="incomplete request head"))
            return
        try:
            method, target, version = head.split(b"\r\n", 1)[0].decode("ascii").split(" ")
        except (UnicodeDecodeError, ValueError):
            await self._refuse(execution, writer, "", 0, 400, "malformed request line")
            return
        if method != "CONNECT" or version not in ("HTTP/1.1", "HTTP/1.0"):
            await self._refuse(execution, writer, target[:200], 0, 405, "only CONNECT is proxied (no plain HTTP)")
            return
        try:
            name, port = parse_destination(target)
        except EgressRefused as refused:
            await self._refuse(execution, writer, target[:200], 0, 403, refused.reason)
            return
        try:
            execution.allowlist.check(name, port)
        except EgressRefused as refused:
            await self._refuse(execution, writer, name, port, 403, refused.reason)
            return
        if execution.opened >= limits.connections or execution.open >= limits.concurrent:
            await self._refuse(execution, writer, name, port, 429, "connection limit of the execution reached")
            return
        try:
            addresses = await asyncio.wait_for(asyncio.to_thread(self.resolver, name, port), limits.connect_timeout)
        except (OSError, TimeoutError, ValueError) as error:
            await self._refuse(execution, writer, name, port, 502, f"lookup failed: {type(error).__name__}")
            return
        if not addresses:
            await self._refuse(execution, writer, name, port, 502, "lookup returned no address")
            return
        for address in addresses:
            reason = refusal_reason(address)
            if reason is not None:
                await self._refuse(execution, writer, name, port, 403, f"resolves to {reason} address {address}")
                return
        execution.opened += 1
        execution.open += 1
        try:
            await self._tunnel(execution, reader, writer, name, port, addresses)
        finally:
            execution.open -= 1

    async def _tunnel(
        self,
        execution: _Execution,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        name: str,
        port: int,
        addresses: Sequence[Address],
    ) -> None:
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        connected = ""
        for address in addresses:
            try:
                upstream = await asyncio.wait_for(
                    asyncio.open_connection(str(address), port), execution.limits.connect_timeout
                )
            except (OSError, TimeoutError):
                continue
            connected = str(address)
            break
        if upstream is None:
            await self._refuse(execution, writer, name, port, 502, "connect failed")
            return
        remote_reader, remote_writer = upstream
        counts = [0, 0]
        try:
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            await asyncio.gather(
                self._pump(execution, reader, remote_writer, counts, 0),
                self._pump(execution, remote_reader, writer, counts, 1),
            )
        finally:
            remote_writer.close()
            self._settle(
                execution,
                Attempt(name=name, port=port, allowed=True, address=connected, bytes_sent=counts[0], bytes_received=counts[1]),
            )

    async def _pump(
        self,
        execution: _Execution,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        counts: list[int],
        direction: int,
    ) -> None:
        """Copy one direction until end of file, within the execution's byte budget."""
        try:
            while data := await source.read(CHUNK):
                if not execution.spend(len(data)):
                    logger.warning("egress sandbox=%s: byte limit reached, tunnel cut", execution.sandbox)
                    sink.close()
                    return
                counts[direction] += len(data)
                if direction == 0:
                    execution.bytes_sent += len(data)
                else:
                    execution.bytes_received += len(data)
                sink.write(data)
                await sink.drain()
            if sink.can_write_eof():
                sink.write_eof()
        except (ConnectionError, OSError):
            sink.close()

    async def _refuse(
        self, execution: _Execution, writer: asyncio.StreamWriter, name: str, port: int, status: int, reason: str
    ) -> None:
        self._settle(execution, Attempt(name=name, port=port, allowed=False, reason=reason))
        phrase = {400: "Bad Request", 403: "Forbidden", 405: "Method Not Allowed", 429: "Too Many Requests"}
        body = f"egress refused: {reason}\n".encode("ascii", "backslashreplace")
        writer.write(
            f"HTTP/1.1 {status} {phrase.get(status, 'Bad Gateway')}\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode("ascii") + body
        )
        with contextlib.suppress(ConnectionError):
            await writer.drain()

    def _settle(self, execution: _Execution, attempt: Attempt) -> None:
        if attempt.allowed:
            execution.allowed += 1
        else:
            execution.refused += 1
        if len(execution.attempts) < MAX_RECORDED_ATTEMPTS:
            execution.attempts.append(attempt)
        logger.info(
            "egress %s sandbox=%s name=%r port=%d address=%s sent=%d received=%d reason=%s",
            "allowed" if attempt.allowed else "refused",
            execution.sandbox,
            attempt.name,
            attempt.port,
            attempt.address or "-",
            attempt.bytes_sent,
            attempt.bytes_received,
            attempt.reason or "-",
        )
        if self._observer is not None:
            self._observer(attempt)
