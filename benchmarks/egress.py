"""Benchmark of self-managed egress, measured side by side in one run, on this machine only.

    python benchmarks/egress.py [--rounds 30] [--boots 12]

(as root, with runsc installed). Everything runs inside a network namespace made here, holding
only a loopback device: an HTTPS server for ``api.example.com`` on a public-looking address on
that loopback, which the proxy's resolver is pointed at. Nothing can leave the machine. It measures:

- the **first HTTPS request** (new TCP connection, TLS handshake, one GET) from the host
  directly, from the host through the egress proxy's socket, and from Python code in a gVisor
  sandbox through the shim and the proxy (timed inside the sandbox), interleaved round by round;
- **boot cost**: sandbox boot time (from each result's metadata) of an executor without
  ``--egress-allow`` and of one with it, for executions that ask for no network; two alternated
  runs of each, each in a process of its own.

Results go to ``benchmarks/results/egress.json``.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import platform
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

NAME = "api.example.com"
ADDRESS = "11.0.0.10"
BOOT_TIMEOUT = 180.0
"""Generous: on a loaded machine a boot can take far longer than the engine's default allows."""
RESULTS = Path(__file__).resolve().parent / "results" / "egress.json"

SANDBOX_CODE = r"""
import ssl, time, urllib.request
def main(cert, rounds):
    context = ssl.create_default_context(cadata=cert)
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        with urllib.request.urlopen("https://api.example.com/", context=context, timeout=10) as response:
            response.read()
        times.append(time.perf_counter() - started)
    return times
"""


def serve_https(cert: Path, key: Path) -> None:
    """A tiny HTTPS server on ADDRESS:443, one thread per connection."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    listener = socket.create_server((ADDRESS, 443), backlog=64)

    def answer(connection: socket.socket) -> None:
        try:
            with context.wrap_socket(connection, server_side=True) as tls:
                request = b""
                while b"\r\n\r\n" not in request:
                    chunk = tls.recv(4096)
                    if not chunk:
                        return
                    request += chunk
                tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
        except OSError:
            pass

    def accept() -> None:
        while True:
            connection, _ = listener.accept()
            threading.Thread(target=answer, args=(connection,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()


def https_get(context: ssl.SSLContext, connect: Any) -> float:
    started = time.perf_counter()
    with context.wrap_socket(connect(), server_hostname=NAME) as tls:
        tls.sendall(f"GET / HTTP/1.1\r\nHost: {NAME}\r\nConnection: close\r\n\r\n".encode())
        while tls.recv(4096):
            pass
    return time.perf_counter() - started


def through_socket(path: Path) -> socket.socket:
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.connect(str(path))
    connection.sendall(f"CONNECT {NAME}:443 HTTP/1.1\r\n\r\n".encode())
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        head += connection.recv(1)
    assert head.startswith(b"HTTP/1.1 200"), head
    return connection


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p95_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))] * 1000, 2),
        "n": len(ordered),
    }


def boot_seconds(engine_class: Any, config: Any, request: Any, limits: Any, count: int) -> list[float]:
    engine = engine_class(config)
    engine.start()
    try:
        assert engine.wait_ready(120), engine.health()
        values = []
        for _ in range(count):
            result = engine.execute(request, limits)
            assert result.status.value == "success", result
            values.append(result.metadata["sandbox_boot_seconds"])
            time.sleep(1.0)  # let the pool refill: each execution takes a freshly booted sandbox
        return values
    finally:
        engine.close()


def phase_boot(egress: bool, boots: int, work: Path) -> dict[str, Any]:
    """Boot seconds of an executor without egress, or with it, for executions asking for no network."""
    from sandbox_core.model import ExecutionRequest
    from sandbox_selfmanaged.engine import Engine, EngineConfig
    from sandbox_selfmanaged.limits import Limits

    config = EngineConfig(
        state_dir=work / "state", languages=("python",), pool_sizes={"python": 1}, egress=(f"{NAME}:443",) if egress else (),
        boot_timeout=BOOT_TIMEOUT, acquire_timeout=BOOT_TIMEOUT,
    )
    plain = ExecutionRequest(code="def main():\n    return 1\n", timeout=60)
    return summary(boot_seconds(Engine, config, plain, Limits(timeout=60), boots))


def phase_latency(rounds: int, work: Path) -> dict[str, Any]:
    """First HTTPS requests: host direct, host through the proxy, sandbox through shim and proxy."""
    from sandbox_core.model import ExecutionRequest
    from sandbox_core.runner.rawjson import RawJSON
    from sandbox_selfmanaged.egress.allowlist import Allowlist
    from sandbox_selfmanaged.egress.proxy import EgressProxy
    from sandbox_selfmanaged.engine import Engine, EngineConfig
    from sandbox_selfmanaged.limits import Limits

    cert, key = work / "cert.pem", work / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={NAME}",
         "-addext", f"subjectAltName=DNS:{NAME}", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    serve_https(cert, key)
    context = ssl.create_default_context(cafile=str(cert))

    def resolve(name: str, port: int) -> list[Any]:
        return [ipaddress.ip_address(ADDRESS)] if name == NAME else []

    proxy = EgressProxy(resolver=resolve)
    sandbox_socket = proxy.listen("bench", work / "socket")
    sandbox_socket.begin(Allowlist.parse([f"{NAME}:443"]))
    limits = Limits(timeout=120)
    config = EngineConfig(
        state_dir=work / "state", languages=("python",), pool_sizes={"python": 1},
        egress=(f"{NAME}:443",), egress_resolver=resolve, boot_timeout=BOOT_TIMEOUT, acquire_timeout=BOOT_TIMEOUT,
    )
    engine = Engine(config)
    engine.start()
    direct: list[float] = []
    proxied: list[float] = []
    sandboxed: list[float] = []
    try:
        assert engine.wait_ready(120), engine.health()
        request = ExecutionRequest(
            code=SANDBOX_CODE, arguments={"cert": cert.read_text(), "rounds": 1}, network=[f"{NAME}:443"], timeout=120
        )
        for _ in range(rounds):
            direct.append(https_get(context, lambda: socket.create_connection((ADDRESS, 443))))
            proxied.append(https_get(context, lambda: through_socket(sandbox_socket.path)))
            result = engine.execute(request, limits)
            value = result.value.decode() if isinstance(result.value, RawJSON) else result.value
            assert result.status.value == "success", result
            sandboxed.extend(value)
    finally:
        engine.close()
        sandbox_socket.end()
        sandbox_socket.close()
        proxy.close()
    return {
        "host_direct": summary(direct),
        "host_through_proxy": summary(proxied),
        "sandbox_through_shim_and_proxy": summary(sandboxed),
    }


def run_phase(phase: str, namespace: str, args: argparse.Namespace) -> Any:
    """One phase in a process of its own (an engine wants its process), inside the namespace."""
    with tempfile.TemporaryDirectory(prefix="egress-bench-") as work:
        # nsenter, not ip netns exec: that one remounts /sys and hides the cgroup filesystem.
        completed = subprocess.run(
            ["nsenter", f"--net=/run/netns/{namespace}", sys.executable, __file__, "--rounds", str(args.rounds),
             "--boots", str(args.boots), "--phase", phase, "--work", work],
            capture_output=True, text=True, timeout=3600,
        )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("REPORT ")]
    if not lines:
        sys.exit(f"phase {phase}: no report (exit {completed.returncode}):\n{completed.stderr[-4000:]}")
    return json.loads(lines[-1][len("REPORT "):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--boots", type=int, default=12)
    parser.add_argument("--phase", choices=("latency", "boot-off", "boot-on"), help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        if args.phase == "latency":
            result = phase_latency(args.rounds, args.work)
        else:
            result = phase_boot(args.phase == "boot-on", args.boots, args.work)
        print("REPORT " + json.dumps(result), flush=True)
        return
    namespace = f"sbx-egress-bench-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", namespace], check=True)
    try:
        subprocess.run(["ip", "-n", namespace, "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "-n", namespace, "addr", "add", f"{ADDRESS}/32", "dev", "lo"], check=True)
        first = run_phase("latency", namespace, args)
        off, on = [], []
        for _ in range(2):  # alternated, so that machine noise hits both alike
            off.append(run_phase("boot-off", namespace, args))
            on.append(run_phase("boot-on", namespace, args))
    finally:
        subprocess.run(["ip", "netns", "delete", namespace], check=False)
    report: dict[str, Any] = {
        "first_https_request": first,
        "boot_p50_ms": {
            "executor_without_egress": [entry["p50_ms"] for entry in off],
            "executor_with_egress_request_without_network": [entry["p50_ms"] for entry in on],
        },
    }
    report["added_ms_p50"] = {
        "host_through_proxy": round(first["host_through_proxy"]["p50_ms"] - first["host_direct"]["p50_ms"], 2),
        "sandbox_through_shim_and_proxy": round(first["sandbox_through_shim_and_proxy"]["p50_ms"] - first["host_direct"]["p50_ms"], 2),
    }
    report["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release()}
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
