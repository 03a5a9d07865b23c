"""Fixtures of the admin tests: the app on a real SQLite settings DB with in-test providers."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the admin extra is not installed")

import uvicorn
from admin_support import TOKEN, GuardedLocalProvider
from fastapi import FastAPI
from fastapi.testclient import TestClient

from sandbox_core.admin.app import create_app
from sandbox_core.registry import ProviderRegistry
from sandbox_core.settings import SettingsStore
from sandbox_core.testing import UnsandboxedSubprocessProvider


@pytest.fixture
def admin_registry(register_provider: Any, sandbox_registry: ProviderRegistry) -> ProviderRegistry:
    """The test registry with the local subprocess provider as ``local`` and ``guarded``."""
    register_provider("local", UnsandboxedSubprocessProvider())
    register_provider("guarded", GuardedLocalProvider())
    return sandbox_registry


@pytest.fixture
def admin_app(sandbox_settings: SettingsStore, admin_registry: ProviderRegistry) -> FastAPI:
    return create_app(token=TOKEN, settings=sandbox_settings, registry=admin_registry, probe_timeout=20)


@pytest.fixture
def api(admin_app: FastAPI) -> Iterator[TestClient]:
    """A client of the app that sends no token unless a request adds ``headers=AUTH``."""
    with TestClient(admin_app) as client:
        yield client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def live_server(admin_app: FastAPI) -> Iterator[str]:
    """The app served by uvicorn on a free loopback port, in a thread; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(admin_app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="admin-live-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the admin server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)

