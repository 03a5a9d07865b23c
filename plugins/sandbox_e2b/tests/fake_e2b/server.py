"""The fake E2B server: the control plane, envd and the code interpreter, served by uvicorn in a thread.

The SDK is pointed at it with its ``api_url`` and ``sandbox_url`` options (both this server's
URL). With ``sandbox_url`` set the SDK sends every port of every sandbox there, naming the port in
the ``E2b-Sandbox-Port`` header, so requests for the Jupyter port go to :mod:`fake_e2b.jupyter`
and all others to the control plane and envd. The thread owns the event loop; :meth:`FakeE2BServer.stop` ends it and kills what is left.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from fake_e2b import control, envd, jupyter
from fake_e2b.state import FakeCloud

TEST_API_KEY = "e2b_test_4f9c2a7d1b8e6f3a0c5d9e2b7a4f1c8d"
"""The key the tests' fake accepts (a made-up value in E2B's format)."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class _ByPort:
    """Sends each request to the app of the sandbox port it names (``E2b-Sandbox-Port``)."""

    def __init__(self, default: ASGIApp, by_port: dict[str, ASGIApp]) -> None:
        self.default = default
        self.by_port = {port.encode(): app for port, app in by_port.items()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        port = dict(scope.get("headers") or ()).get(b"e2b-sandbox-port", b"") if scope["type"] == "http" else b""
        await self.by_port.get(port, self.default)(scope, receive, send)


class FakeE2BServer:
    """A running fake E2B on 127.0.0.1; ``cloud`` is its state for the tests to inspect."""

    def __init__(self, root: Path, api_key: str) -> None:
        self.cloud = FakeCloud(root, api_key)
        app = _ByPort(
            Starlette(routes=[*control.routes(self.cloud), *envd.routes(self.cloud)]),
            {jupyter.JUPYTER_PORT: Starlette(routes=jupyter.routes(self.cloud))},
        )
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="fake-e2b", daemon=True)
        self._stopped = threading.Event()
        self._reaper = threading.Thread(target=self._reap, name="fake-e2b-lifetimes", daemon=True)

    def _reap(self) -> None:
        """Ends sandboxes whose lifetime ran out, as E2B does."""
        while not self._stopped.wait(0.2):
            self.cloud.expire()

    def start(self) -> FakeE2BServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the fake E2B server did not start")
            time.sleep(0.01)
        self._reaper.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self.cloud.kill_all()
        self._server.should_exit = True
        self._thread.join(timeout=10)
