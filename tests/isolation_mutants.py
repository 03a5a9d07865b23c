"""Providers that fail the isolation profile, each in a known way, to show every case can fail.

``no_isolation`` is the local provider as it is: it runs code as a plain process on this machine,
so it fails every case about what code can see or reach. Run only with the small bounds of
``test_isolation_kit.py`` (a few processes, a few MiB), which keep the attacks harmless outside a
sandbox. The other mutants break one promise of a provider: truncating a flood, reading the
result only from the runner's frame, or giving code an egress proxy that filters nothing. This
module is copied next to the generated test file of each run, so it imports only installed
packages.
"""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Mapping
from typing import Any

import attrs

from sandbox_core import ExecutionRequest, ExecutionResult, hookimpl
from sandbox_core.model import ExecutionStatus
from sandbox_core.testing import UnsandboxedSubprocessProvider


class NeverTruncates(UnsandboxedSubprocessProvider):
    """Passes any amount of output back, like a provider with no output limit."""

    @hookimpl
    def sandbox_execute(self, request: ExecutionRequest, config: Mapping[str, Any], provider_name: str) -> ExecutionResult:
        return self._run(request, {**config, "max_output_bytes": 1 << 30}, provider_name)


class TrustsPrintedFrames(UnsandboxedSubprocessProvider):
    """Takes the result from any frame-looking line of the output, as a naive parser would."""

    FRAME = re.compile("\x1esandbox-result-[0-9a-f]{32}:(\\{.*\\})")

    @hookimpl
    def sandbox_execute(self, request: ExecutionRequest, config: Mapping[str, Any], provider_name: str) -> ExecutionResult:
        result = self._run(request, config, provider_name)
        found = self.FRAME.search(result.stdout)
        if found is None:
            return result
        frame = json.loads(found.group(1))
        return attrs.evolve(result, status=ExecutionStatus.SUCCESS, value=frame["value"], error=None, exit_code=0)


class OpenProxy(UnsandboxedSubprocessProvider):
    """Hands code an ``HTTPS_PROXY`` that tunnels to the host's loopback: an allowlist that does not block.

    It only ever connects to 127.0.0.1 (for ``127.0.0.1`` and ``localhost``) and never looks a name
    up, so even this broken proxy sends nothing off the machine.
    """

    def __init__(self) -> None:
        super().__init__()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            client, _ = self._listener.accept()
            with client:
                client.settimeout(5)
                try:
                    line = client.recv(4096).split(b"\r\n")[0].decode()
                    host, _, port = line.split(" ")[1].rpartition(":")
                    if line.startswith("CONNECT ") and host in ("127.0.0.1", "localhost"):
                        socket.create_connection(("127.0.0.1", int(port)), timeout=5).close()
                        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    else:
                        client.sendall(b"HTTP/1.1 403 Forbidden\r\n\r\n")
                except (OSError, ValueError, IndexError):
                    pass

    @hookimpl
    def sandbox_execute(self, request: ExecutionRequest, config: Mapping[str, Any], provider_name: str) -> ExecutionResult:
        prefix = f"import os\nos.environ['HTTPS_PROXY'] = 'http://127.0.0.1:{self.port}'\n"
        return self._run(attrs.evolve(request, code=prefix + request.code), config, provider_name)


MUTANTS: dict[str, type[UnsandboxedSubprocessProvider]] = {
    "no_isolation": UnsandboxedSubprocessProvider,
    "never_truncates": NeverTruncates,
    "trusts_printed_frames": TrustsPrintedFrames,
    "open_proxy": OpenProxy,
}


def make(name: str) -> UnsandboxedSubprocessProvider:
    return MUTANTS[name]()
