"""Running the fake on 127.0.0.1 with uvicorn in a background thread, with explicit shutdown."""

from __future__ import annotations

import contextlib
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn

from .app import build_app
from .state import Credentials, SandboxStore


class FakeAgentRun:
    """One running fake: its URL, the credentials it accepts, its sandboxes and its request log."""

    def __init__(self, credentials: Credentials | None = None) -> None:
        self.credentials = credentials or Credentials()
        self._root = tempfile.mkdtemp(prefix="fake-agentrun-")
        templates = (
            self.credentials.template_name,
            self.credentials.execute_fails_template,
            self.credentials.delete_fails_template,
        )
        self.store = SandboxStore(self._root, templates)
        self.requests: list[dict[str, Any]] = []
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        config = uvicorn.Config(
            build_app(self.store, self.credentials, self.requests), log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True)
        self._stopped = threading.Event()
        self._reaper = threading.Thread(target=self._reap, name="fake-agentrun-idle", daemon=True)

    def _reap(self) -> None:
        """Deletes sandboxes idle past their idle timeout, as the service does."""
        while not self._stopped.wait(0.2):
            self.store.expire()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self, **overrides: Any) -> dict[str, Any]:
        """A provider config that points at this fake with its credentials."""
        return {
            "access_key_id": self.credentials.access_key_id,
            "access_key_secret": self.credentials.access_key_secret,
            "account_id": self.credentials.account_id,
            "region": self.credentials.region,
            "template_name": self.credentials.template_name,
            "endpoint": self.url,
            **overrides,
        }

    def start(self) -> FakeAgentRun:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the fake AgentRun server did not start")
            time.sleep(0.01)
        self._reaper.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()
        shutil.rmtree(self._root, ignore_errors=True)


@contextlib.contextmanager
def running_fake(credentials: Credentials | None = None) -> Iterator[FakeAgentRun]:
    fake = FakeAgentRun(credentials).start()
    try:
        yield fake
    finally:
        fake.stop()
