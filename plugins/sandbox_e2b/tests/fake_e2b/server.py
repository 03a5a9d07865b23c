"""The fake E2B server: one Starlette app with both APIs, served by uvicorn in a thread.

The SDK is pointed at it with its ``api_url`` and ``sandbox_url`` options (both this server's
URL). The thread owns the event loop; :meth:`FakeE2BServer.stop` ends it and kills what is left.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import uvicorn
from starlette.applications import Starlette

from fake_e2b import control, envd
from fake_e2b.state import FakeCloud

TEST_API_KEY = "e2b_test_4f9c2a7d1b8e6f3a0c5d9e2b7a4f1c8d"
"""The key the tests' fake accepts (a made-up value in E2B's format)."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class FakeE2BServer:
    """A running fake E2B on 127.0.0.1; ``cloud`` is its state for the tests to inspect."""

    def __init__(self, root: Path, api_key: str) -> None:
        self.cloud = FakeCloud(root, api_key)
        app = Starlette(routes=[*control.routes(self.cloud), *envd.routes(self.cloud)])
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="fake-e2b", daemon=True)

    def start(self) -> FakeE2BServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the fake E2B server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.cloud.kill_all()
        self._server.should_exit = True
        self._thread.join(timeout=10)
