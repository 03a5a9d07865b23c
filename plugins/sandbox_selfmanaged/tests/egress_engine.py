"""Egress through a real engine and real gVisor sandboxes, run inside a network namespace the test owns.

``python egress_engine.py STATE_DIR CERT_DIR`` is started by ``test_egress_gvisor.py`` with
``nsenter --net`` (not ``ip netns exec``, which hides the cgroup filesystem): the namespace holds
only its loopback, with a TLS server for the allowed name on a public-looking address and counting
listeners on the metadata address, loopback and private addresses. The engine's resolver maps test
names to those addresses (no DNS). It prints ``REPORT {json}``: each scenario's result and the
listeners' connection counts.
"""

from __future__ import annotations

import ipaddress
import json
import ssl
import sys
from pathlib import Path
from typing import Any

from egress_support import PUBLIC_ADDRESS, TRAP_ADDRESSES, Listener, make_certificate

from sandbox_core.model import ExecutionRequest
from sandbox_core.runner.rawjson import RawJSON
from sandbox_selfmanaged.egress.proxy import Address
from sandbox_selfmanaged.engine import Engine, EngineConfig
from sandbox_selfmanaged.limits import Limits

ALLOWED = "api.example.com"
NAMES = {
    ALLOWED: PUBLIC_ADDRESS,
    "rebind.example.com": "127.0.0.1",
    "metadata.example.com": "169.254.169.254",
    "private.example.com": "10.0.0.1",
}
OPERATOR = [f"{name}:443" for name in NAMES] + [f"{ALLOWED}:8443"]

PYTHON_FETCH = r'''
import json, os, socket, ssl, urllib.request

def attempt(url, **kw):
    try:
        with urllib.request.urlopen(url, timeout=10, **kw) as response:
            return "ok: " + response.read().decode()
    except Exception as error:
        return "refused: " + str(error)

def main(cert, urls, raw=()):
    context = ssl.create_default_context(cadata=cert)
    out = {"env": os.environ.get("HTTPS_PROXY")}
    for url in urls:
        out[url] = attempt(url, context=context) if url.startswith("https") else attempt(url)
    for host, port in raw:
        try:
            socket.create_connection((host, port), timeout=5).close()
            out[f"raw {host}:{port}"] = "connected"
        except OSError as error:
            out[f"raw {host}:{port}"] = f"refused: {error}"
    return out
'''

BYPASS = r'''
import os, signal, socket

def ask(target):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect("/run/egress/egress.sock")
    s.sendall(f"CONNECT {target} HTTP/1.1\r\n\r\n".encode())
    return s.recv(200).split(b"\r\n")[0].decode()

def main():
    out = {}
    for pid in os.listdir("/proc"):  # kill the shim: the proxy must still refuse on its own
        if pid.isdigit() and int(pid) not in (1, os.getpid(), os.getppid()):
            try:
                os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass
    for target in ("rebind.example.com:443", "metadata.example.com:443", "169.254.169.254:80",
                   "2130706433:443", "localhost:443", "user@api.example.com:443", "other.example.com:443",
                   "api.example.com:8443"):
        out[target] = ask(target)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        udp.sendto(b"x", ("11.0.0.10", 53))
        out["udp"] = "sent"
    except OSError as error:
        out["udp"] = f"refused: {error}"
    try:
        socket.getaddrinfo("api.example.org", 443)
        out["dns"] = "resolved"
    except OSError as error:
        out["dns"] = f"refused: {error}"
    return out
'''

PYTHON_REQUESTS = r'''
import requests

def main(cert):
    with open("/tmp/ca.pem", "w") as handle:
        handle.write(cert)
    out = {"allowed": requests.get("https://api.example.com/", verify="/tmp/ca.pem", timeout=10).text}
    try:
        requests.get("https://private.example.com/", verify="/tmp/ca.pem", timeout=10)
        out["private"] = "connected"
    except requests.RequestException as error:
        out["private"] = "refused: " + type(error).__name__
    return out
'''

NODE_FETCH = r'''
const https = require("https");
function get(url, ca) {
  return new Promise((resolve) => {
    https.get(url, { ca, timeout: 10000 }, (res) => {
      let body = "";
      res.on("data", (d) => (body += d));
      res.on("end", () => resolve("ok: " + body));
    }).on("error", (e) => resolve("refused: " + e.message));
  });
}
async function main(args) {
  const out = {};
  out.https = await get("https://api.example.com/", args.cert);
  out.https_other = await get("https://rebind.example.com/", args.cert);
  // fetch cannot take a CA in Node 20: certificate checks are off for this test server only.
  process.env.NODE_TLS_REJECT_UNAUTHORIZED = "0";
  try {
    out.fetch = "ok: " + (await (await fetch("https://api.example.com/")).text());
  } catch (e) {
    out.fetch = "refused: " + (e.cause ? e.cause.message : e.message);
  }
  return out;
}
'''


def resolve(name: str, port: int) -> list[Address]:
    return [ipaddress.ip_address(NAMES[name])] if name in NAMES else []


def run(
    engine: Engine, code: str, language: str = "python", network: tuple[str, ...] = (), runtime: str | None = None, **arguments: Any
) -> dict[str, Any]:
    request = ExecutionRequest(code=code, language=language, arguments=arguments, network=network, timeout=60, runtime=runtime)
    result = engine.execute(request, Limits(timeout=60))
    value = result.value.decode() if isinstance(result.value, RawJSON) else result.value
    return {"status": result.status.value, "value": value, "stderr": result.stderr[-2000:], "egress": result.metadata.get("egress")}


def main(state_dir: str, cert_dir: str) -> None:
    cert, key = make_certificate(Path(cert_dir), [ALLOWED, *NAMES])
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    listeners = {"server": Listener(PUBLIC_ADDRESS, 443, server_context), "other_port": Listener(PUBLIC_ADDRESS, 8443)}
    listeners.update({address: Listener(address, 443) for address in TRAP_ADDRESSES})
    listeners["metadata:80"] = Listener("169.254.169.254", 80)
    pem = cert.read_text()
    engine = Engine(EngineConfig(
        state_dir=state_dir, languages=("python", "javascript"), pool_sizes={"python": 1, "javascript": 1},
        egress=OPERATOR, egress_resolver=resolve, runtimes=("python",), boot_timeout=120, acquire_timeout=120,
    ))
    engine.start()
    report: dict[str, Any] = {}
    try:
        report["ready"] = engine.wait_ready(120)
        urls = ["https://api.example.com/", "https://other.example.com/", "https://rebind.example.com/",
                "https://metadata.example.com/", "https://169.254.169.254/", "https://2130706433/",
                "https://localhost/", "https://user@api.example.com/", "https://api.example.com:8443/",
                "http://api.example.com/"]
        raw = [["11.0.0.10", 443], ["169.254.169.254", 80], ["127.0.0.2", 80]]
        network = (f"{ALLOWED}:443", "rebind.example.com:443", "metadata.example.com:443")
        report["python"] = run(engine, PYTHON_FETCH, network=network, cert=pem, urls=urls, raw=raw)
        report["served_before_next"] = listeners["server"].connections
        report["next"] = run(engine, PYTHON_FETCH, cert=pem, urls=["https://api.example.com/"])
        report["bypass"] = run(engine, BYPASS, network=(f"{ALLOWED}:443",))
        report["requests"] = run(engine, PYTHON_REQUESTS, network=(f"{ALLOWED}:443", "private.example.com:443"), runtime="python", cert=pem)
        report["node"] = run(engine, NODE_FETCH, language="javascript", network=(f"{ALLOWED}:443",), cert=pem)
        try:
            run(engine, PYTHON_FETCH, network=("beyond.example.com:443",), cert=pem, urls=[])
            report["beyond"] = "accepted"
        except ValueError as error:
            report["beyond"] = f"refused: {error}"
    finally:
        engine.close()
        report["connections"] = {name: listener.connections for name, listener in listeners.items()}
        print("REPORT " + json.dumps(report), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
