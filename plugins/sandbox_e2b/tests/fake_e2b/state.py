"""What the fake E2B cloud knows: API keys, templates, and the sandboxes alive, each in a folder.

A sandbox's file system is a folder on this machine: sandbox path ``/x/y`` is ``<folder>/x/y``,
and a relative path is relative to the sandbox user's home, ``<folder>/home/user``, as in E2B.
Its commands and the Python kernels behind its code contexts run as local child processes (in
their own session, so a kill takes the whole group). A sandbox whose lifetime (its ``timeout``,
counted from creation or the last renewal) runs out is killed, as E2B does (:meth:`FakeCloud.expire`,
called by the server's reaper thread). Everything the tests look at afterwards is recorded: sandboxes created and killed, with
what they were created with.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any

import attrs

ENVD_VERSION = "0.6.4"
HOME = "home/user"


@attrs.define
class FakeContext:
    """A code context: a kernel process (see :mod:`fake_e2b.kernel`) that runs one block at a time."""

    context_id: str
    language: str
    cwd: str
    process: asyncio.subprocess.Process
    busy: asyncio.Lock = attrs.field(factory=asyncio.Lock)

    def to_json(self) -> dict[str, str]:
        return {"id": self.context_id, "language": self.language, "cwd": self.cwd}


@attrs.define
class FakeSandbox:
    sandbox_id: str
    template: str
    root: Path
    access_token: str
    lifetime: int | None
    metadata: dict[str, str]
    started_at: float = attrs.field(factory=time.time)
    pids: set[int] = attrs.field(factory=set)
    contexts: dict[str, FakeContext] = attrs.field(factory=dict)
    executions: int = 0
    expires_at: float | None = None
    """When E2B ends the sandbox by itself (``time.monotonic()``): its lifetime from creation or the last renewal."""

    def renew(self, lifetime: int | None) -> None:
        self.lifetime = lifetime
        self.expires_at = None if lifetime is None else time.monotonic() + lifetime

    @property
    def home(self) -> Path:
        return self.root / HOME

    def resolve(self, path: str) -> Path:
        """Where sandbox path ``path`` lives on this machine; refuses paths that climb out."""
        if Path(path).is_absolute() and (Path(path) == self.root or self.root in Path(path).parents):
            return Path(path).resolve()  # a path this fake reported back: already on this machine
        base = self.root if path.startswith("/") else self.home
        resolved = (base / path.lstrip("/")).resolve()
        if resolved != self.root and self.root not in resolved.parents:
            raise PermissionError(f"{path} is outside the sandbox")
        return resolved

    def to_json(self) -> dict[str, Any]:
        return {
            "templateID": self.template,
            "sandboxID": self.sandbox_id,
            "clientID": "fake-client",
            "envdVersion": ENVD_VERSION,
            "envdAccessToken": self.access_token,
        }


class FakeCloud:
    """The fake's state; thread-safe, as the test thread reads it while the server thread writes."""

    def __init__(self, root: Path, api_key: str, templates: tuple[str, ...] = ("code-interpreter-v1", "base")) -> None:
        self.root = root
        self.api_key = api_key
        self.templates = templates
        self.rate_limited = False
        self.fail_uploads = False
        self.sandboxes: dict[str, FakeSandbox] = {}
        self.created: list[str] = []
        self.killed: list[str] = []
        self.restarts: list[str] = []
        """Code contexts whose kernel was restarted."""
        self.expired: list[str] = []
        """Sandboxes ended by their lifetime (also in ``killed``)."""
        self.create_requests: list[dict[str, Any]] = []
        self.timeouts: list[tuple[str, int]] = []
        """Every ``set_timeout``: the sandbox and its new lifetime."""
        self.fail_creates = False
        self._lock = threading.Lock()

    def create(self, template: str, lifetime: int | None, metadata: dict[str, str]) -> FakeSandbox:
        sandbox_id = "fake" + secrets.token_hex(8)
        sandbox = FakeSandbox(
            sandbox_id=sandbox_id,
            template=template,
            root=self.root / sandbox_id,
            access_token=secrets.token_urlsafe(16),
            lifetime=lifetime,
            metadata=metadata,
        )
        sandbox.renew(lifetime)
        sandbox.home.mkdir(parents=True)
        (sandbox.root / "tmp").mkdir()
        with self._lock:
            self.sandboxes[sandbox_id] = sandbox
            self.created.append(sandbox_id)
        return sandbox

    def get(self, sandbox_id: str) -> FakeSandbox | None:
        with self._lock:
            return self.sandboxes.get(sandbox_id)

    def running(self) -> list[FakeSandbox]:
        with self._lock:
            return list(self.sandboxes.values())

    def live_contexts(self) -> int:
        return sum(len(sandbox.contexts) for sandbox in self.running())

    def kill(self, sandbox_id: str) -> bool:
        with self._lock:
            sandbox = self.sandboxes.pop(sandbox_id, None)
            if sandbox is None:
                return False
            self.killed.append(sandbox_id)
            sandbox.contexts.clear()
        for pid in list(sandbox.pids):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(sandbox.root, ignore_errors=True)
        return True

    def expire(self) -> list[str]:
        """Kill the sandboxes whose lifetime ran out, as E2B does; their ids."""
        now = time.monotonic()
        expired = [s.sandbox_id for s in self.running() if s.expires_at is not None and s.expires_at <= now]
        for sandbox_id in expired:
            if self.kill(sandbox_id):
                self.expired.append(sandbox_id)
        return expired

    def kill_all(self) -> None:
        for sandbox in self.running():
            self.kill(sandbox.sandbox_id)
