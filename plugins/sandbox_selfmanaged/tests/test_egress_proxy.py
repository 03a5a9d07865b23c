"""The egress proxy with real traffic, inside a network namespace the test owns (loopback only).

A TLS server on a public-looking address serves the allowed name; counting listeners sit on
loopback, the metadata address and private addresses, and the test resolver points names at
them: each refusal is checked both as the proxy's answer and as zero connections reaching them.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from egress_support import PUBLIC_ADDRESS, TRAP_ADDRESSES, Listener, make_certificate, owned_namespace

from sandbox_selfmanaged.egress import shim
from sandbox_selfmanaged.egress.allowlist import Allowlist
from sandbox_selfmanaged.egress.proxy import Address, Attempt, EgressLimits, EgressProxy, SandboxEgress

ALLOWED = "api.example.com"
PORT = 443
NAMES: Mapping[str, tuple[str, ...]] = {
    ALLOWED: (PUBLIC_ADDRESS,),
    "rebind.example.com": ("127.0.0.1",),
    "metadata.example.com": ("169.254.169.254",),
    "private.example.com": ("10.0.0.1",),
    "cgnat.example.com": ("100.64.0.1",),
    "mixed.example.com": (PUBLIC_ADDRESS, "192.168.0.1"),
}
POLICY = Allowlist.parse([f"{name}:{PORT}" for name in NAMES] + [f"{ALLOWED}:8443"])


def resolve(name: str, port: int) -> list[Address]:
    return [ipaddress.ip_address(address) for address in NAMES.get(name, ())]


class World:
    """The namespace's servers and the proxy, shared by the module; each test gets a fresh sandbox socket."""

    def __init__(self, tmp_path: Path) -> None:
        cert, key = make_certificate(tmp_path, [ALLOWED])
        self.cert = cert
        server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_context.load_cert_chain(cert, key)
        self.client_context = ssl.create_default_context(cafile=str(cert))
        self.server = Listener(PUBLIC_ADDRESS, PORT, server_context)
        self.traps = [Listener(address, PORT) for address in TRAP_ADDRESSES] + [Listener(PUBLIC_ADDRESS, 8443)]
        self.attempts: list[Attempt] = []
        self.proxy = EgressProxy(resolver=resolve, observer=self.attempts.append, limits=EgressLimits(connections=4, total_bytes=1 << 20))
        self.sandbox: SandboxEgress

    def fresh_sandbox(self, directory: Path) -> None:
        self.attempts.clear()
        for listener in (self.server, *self.traps):
            listener.connections = 0
        self.sandbox = self.proxy.listen(directory.name, directory)

    def trap_connections(self) -> int:
        return sum(listener.connections for listener in self.traps)

    def close(self) -> None:
        self.proxy.close()
        for listener in (self.server, *self.traps):
            listener.close()


@pytest.fixture(scope="module")
def shared_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with owned_namespace():
        built = World(tmp_path_factory.mktemp("egress"))
        try:
            yield built
        finally:
            built.close()


@pytest.fixture
def world(shared_world: World, tmp_path: Path) -> Iterator[World]:
    shared_world.fresh_sandbox(tmp_path / "sbx")
    try:
        yield shared_world
    finally:
        shared_world.sandbox.close()


def proxy_request(path: Path, request: bytes) -> tuple[bytes, socket.socket]:
    """Send ``request`` on the socket at ``path``; the status line (empty when closed unanswered)
    and the still-open connection."""
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.settimeout(10)
    connection.connect(str(path))
    head = b""
    try:
        connection.sendall(request)
    except OSError:
        return head, connection
    while b"\r\n\r\n" not in head:
        try:
            chunk = connection.recv(1)
        except ConnectionResetError:
            break
        if not chunk:
            break
        head += chunk
    return head.split(b"\r\n", 1)[0], connection


def https_get(world: World, name: str = ALLOWED, port: int = PORT) -> tuple[bytes, bytes]:
    status, connection = proxy_request(world.sandbox.path, f"CONNECT {name}:{port} HTTP/1.1\r\nHost: {name}:{port}\r\n\r\n".encode())
    if not status.startswith(b"HTTP/1.1 200"):
        connection.close()
        return status, b""
    with world.client_context.wrap_socket(connection, server_hostname=name) as tls:
        tls.sendall(f"GET / HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode())
        response = b""
        while chunk := tls.recv(4096):
            response += chunk
    return status, response


def test_an_allowed_name_is_tunnelled_and_reported(world: World) -> None:
    world.sandbox.begin(POLICY)
    status, response = https_get(world)
    report = world.sandbox.end()
    assert status == b"HTTP/1.1 200 Connection established"
    assert response.endswith(b"hello from the allowed host\n")
    assert (report.allowed, report.refused) == (1, 0)
    (attempt,) = report.attempts
    assert (attempt.name, attempt.port, attempt.address) == (ALLOWED, PORT, PUBLIC_ADDRESS)
    assert attempt.bytes_received >= len(response) and attempt.bytes_sent > 0
    assert report.metadata()["bytes_received"] == attempt.bytes_received
    assert world.attempts == [attempt]
    assert world.server.connections == 1


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"CONNECT other.example.com:443 HTTP/1.1\r\n\r\n", b"403"),  # not listed
        (b"CONNECT api.example.com:8080 HTTP/1.1\r\n\r\n", b"403"),  # other port
        (b"CONNECT rebind.example.com:443 HTTP/1.1\r\n\r\n", b"403"),  # listed, resolves to loopback
        (b"CONNECT metadata.example.com:443 HTTP/1.1\r\n\r\n", b"403"),  # listed, resolves to 169.254.169.254
        (b"CONNECT private.example.com:443 HTTP/1.1\r\n\r\n", b"403"),
        (b"CONNECT cgnat.example.com:443 HTTP/1.1\r\n\r\n", b"403"),
        (b"CONNECT mixed.example.com:443 HTTP/1.1\r\n\r\n", b"403"),  # one private address spoils the name
        (b"CONNECT 127.0.0.1:443 HTTP/1.1\r\n\r\n", b"403"),
        (b"CONNECT 169.254.169.254:443 HTTP/1.1\r\n\r\n", b"403"),
        (b"CONNECT 2130706433:443 HTTP/1.1\r\n\r\n", b"403"),
        (b"CONNECT 0x7f.1:443 HTTP/1.1\r\n\r\n", b"403"),
        (b"CONNECT [::1]:443 HTTP/1.1\r\n\r\n", b"403"),
        (b"CONNECT localhost:443 HTTP/1.1\r\n\r\n", b"403"),
        (b"CONNECT user@api.example.com:443 HTTP/1.1\r\n\r\n", b"403"),
        (b"CONNECT api.example.com@127.0.0.1:443 HTTP/1.1\r\n\r\n", b"403"),
        (b"GET http://api.example.com/ HTTP/1.1\r\nHost: api.example.com\r\n\r\n", b"405"),  # plain HTTP
        (b"GET http://127.0.0.1/ HTTP/1.1\r\n\r\n", b"405"),
        (b"CONNECT  api.example.com:443 HTTP/1.1\r\n\r\n", b"400"),
        (b"\xff\xfe\r\n\r\n", b"400"),
    ],
)
def test_refusals_answer_an_error_and_reach_nothing(world: World, request_bytes: bytes, status: bytes) -> None:
    world.sandbox.begin(POLICY)
    answer, connection = proxy_request(world.sandbox.path, request_bytes)
    connection.close()
    report = world.sandbox.end()
    assert answer.split(b" ")[1] == status
    assert (report.allowed, report.refused) == (0, 1)
    assert world.trap_connections() == 0 and world.server.connections == 0


def test_other_ports_of_an_allowed_host_reach_only_what_is_listed(world: World) -> None:
    world.sandbox.begin(Allowlist.parse([f"{ALLOWED}:{PORT}"]))
    status, _ = https_get(world, port=8443)
    world.sandbox.end()
    assert status.startswith(b"HTTP/1.1 403")
    assert world.trap_connections() == 0


def test_without_an_execution_policy_nothing_is_answered(world: World) -> None:
    status, _ = https_get(world)
    assert status == b""
    world.sandbox.begin(POLICY)
    world.sandbox.end()
    status, _ = https_get(world)
    assert status == b""
    assert world.server.connections == 0


def test_the_next_execution_does_not_inherit_the_policy_or_open_tunnels(world: World) -> None:
    world.sandbox.begin(POLICY)
    status, tunnel = proxy_request(world.sandbox.path, f"CONNECT {ALLOWED}:{PORT} HTTP/1.1\r\n\r\n".encode())
    assert status.endswith(b"200 Connection established")
    world.sandbox.end()
    assert tunnel.recv(1) == b""  # cut when the execution ended
    tunnel.close()
    world.sandbox.begin(Allowlist())
    status, _ = https_get(world)
    report = world.sandbox.end()
    assert status.startswith(b"HTTP/1.1 403")
    assert (report.allowed, report.refused) == (0, 1)


def test_connection_and_byte_limits(world: World) -> None:
    world.sandbox.begin(POLICY)
    statuses = [https_get(world)[0] for _ in range(5)]
    report = world.sandbox.end()
    assert [s.split(b" ")[1] for s in statuses] == [b"200"] * 4 + [b"429"]
    assert (report.allowed, report.refused) == (4, 1)

    world.sandbox.begin(POLICY, EgressLimits(total_bytes=256))
    with pytest.raises(OSError):
        https_get(world)
    report = world.sandbox.end()
    assert report.bytes_sent + report.bytes_received <= 256


SHIM_CLIENT = r"""
import json, socket, ssl, sys, urllib.request
cafile, name, mapped = sys.argv[1:4]
context = ssl.create_default_context(cafile=cafile)
results = {}
with urllib.request.urlopen(f"https://{name}/", context=context, timeout=10) as response:
    results["urllib"] = response.read().decode()
try:
    urllib.request.urlopen(f"https://other.example.com/", context=context, timeout=10)
except OSError as error:
    results["refused"] = str(error)
with socket.create_connection((mapped, 443), timeout=10) as raw, context.wrap_socket(raw, server_hostname=name) as tls:
    tls.sendall(f"GET / HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode())
    body = b""
    while chunk := tls.recv(4096):
        body += chunk
    results["mapped"] = body.decode().rsplit("\r\n\r\n", 1)[1]
print(json.dumps(results))
"""


def test_the_shim_forwards_proxy_clients_and_mapped_names(world: World, tmp_path: Path) -> None:
    world.sandbox.begin(POLICY)
    environment = {name: value for name, value in os.environ.items() if "proxy" not in name.lower()}  # the shim sets them
    with (tmp_path / "stderr").open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, shim.__file__, str(world.sandbox.path), "3128", f"127.0.0.2:443={ALLOWED}", "--",
             sys.executable, "-c", SHIM_CLIENT, str(world.cert), ALLOWED, "127.0.0.2"],
            env=environment, stdout=subprocess.PIPE, stderr=stderr, start_new_session=True,
        )
        try:
            out, _ = process.communicate(timeout=60)
        finally:
            os.killpg(process.pid, signal.SIGKILL)
    err = (tmp_path / "stderr").read_bytes()
    report = world.sandbox.end()
    assert process.returncode == 0, err.decode()
    results = json.loads(out)
    assert results["urllib"] == results["mapped"] == "hello from the allowed host\n"
    assert "Tunnel connection failed: 403" in results["refused"]
    assert (report.allowed, report.refused) == (2, 1)
    assert b"other.example.com" not in err  # refused by the proxy, which answered urllib itself
