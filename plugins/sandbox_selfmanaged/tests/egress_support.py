"""Test support for egress: a network namespace the test owns, a TLS server and counting listeners in it.

Every socket of an egress test lives in a fresh network namespace holding only its loopback
device, so even a broken proxy cannot send a packet off the machine. The calling thread enters
the namespace (threads it starts afterwards, like the proxy's, are born in it) and leaves it at
the end. Names are mapped to addresses by a test resolver, never by DNS.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import ssl
import subprocess
import threading
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

CLONE_NEWNET = 0x40000000
PUBLIC_ADDRESS = "11.0.0.10"
"""A public-looking address the proxy's filter lets through; it exists only on the namespace's loopback."""
TRAP_ADDRESSES = ("127.0.0.1", "169.254.169.254", "10.0.0.1", "100.64.0.1", "192.168.0.1")

_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns failed")


@contextlib.contextmanager
def owned_namespace(addresses: Sequence[str] = (PUBLIC_ADDRESS, *TRAP_ADDRESSES)) -> Iterator[str]:
    """A fresh network namespace with ``addresses`` on its loopback; the calling thread is inside it."""
    name = f"sbx-egress-{uuid.uuid4().hex[:10]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        for address in addresses:
            if address != "127.0.0.1":
                subprocess.run(["ip", "-n", name, "addr", "add", f"{address}/32", "dev", "lo"], check=True)
        target = os.open(f"/run/netns/{name}", os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield name
        finally:
            _setns(original)
    finally:
        os.close(original)
        subprocess.run(["ip", "netns", "delete", name], check=False)


def make_certificate(directory: Path, names: Sequence[str]) -> tuple[Path, Path]:
    """A self-signed certificate (and its key) for ``names``."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    san = ",".join(f"DNS:{name}" for name in names)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={names[0]}",
         "-addext", f"subjectAltName={san}", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return cert, key


class Listener:
    """A TCP listener in a thread: counts connections; answers HTTPS GETs with ``body`` when given TLS."""

    def __init__(
        self, address: str, port: int, context: ssl.SSLContext | None = None, body: bytes = b"hello from the allowed host\n"
    ) -> None:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        self._socket = socket.socket(family, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((address, port))
        self._socket.listen(16)
        self.port = self._socket.getsockname()[1]
        self.context = context
        self.body = body
        self.connections = 0
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._answer, args=(connection,), daemon=True).start()

    def _answer(self, connection: socket.socket) -> None:
        with contextlib.suppress(OSError), connection:
            connection.settimeout(10)
            if self.context is None:
                return
            with self.context.wrap_socket(connection, server_side=True) as tls:
                request = b""
                while b"\r\n\r\n" not in request:
                    chunk = tls.recv(4096)
                    if not chunk:
                        return
                    request += chunk
                tls.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                    + f"Content-Length: {len(self.body)}\r\n\r\n".encode()
                    + self.body
                )

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._socket.shutdown(socket.SHUT_RDWR)
        self._socket.close()
