"""The fake's sandboxes: created from known templates, each with a private folder, deleted on request.

"Executing" runs the received Python code with this machine's interpreter as a child process in
the sandbox's folder (``TMPDIR`` pointing inside it), with the requested timeout, and reports its
output the way the code interpreter does: ``{"contextId", "results": [{"type": "stdout", "text"},
{"type": "stderr", "text"}, {"type": "error", ...}, {"type": "endOfExecution", "status"}]}``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import uuid
from datetime import datetime, timezone
from typing import Any

import attrs


@attrs.frozen
class Credentials:
    """The one account the fake knows (the tests' config uses the same values)."""

    access_key_id: str = "LTAI5tFAKEKEYID000000001"
    access_key_secret: str = "fake-secret-9f8e7d6c5b4a"  # a test value, not a credential
    account_id: str = "1234567890123456"
    region: str = "cn-hangzhou"
    template_name: str = "sandbox-core-ci"
    execute_fails_template: str = "sandbox-core-execute-fails"
    """Sandboxes from this template answer every execute with HTTP 500 (a service fault)."""
    delete_fails_template: str = "sandbox-core-delete-fails"
    """Sandboxes from this template answer every delete with HTTP 500 and stay alive."""


@attrs.define
class FakeSandbox:
    sandbox_id: str
    template_name: str
    idle_timeout: int
    folder: str
    created_at: str
    status: str = "READY"
    executions: int = 0

    def describe(self) -> dict[str, Any]:
        return {
            "sandboxId": self.sandbox_id,
            "templateName": self.template_name,
            "status": self.status,
            "createdAt": self.created_at,
            "sandboxIdleTimeoutSeconds": self.idle_timeout,
        }


class SandboxStore:
    """Thread-safe registry of the fake's sandboxes and a record of what happened to them."""

    def __init__(self, root: str, templates: tuple[str, ...]) -> None:
        self.root = root
        self.templates = templates
        self.live: dict[str, FakeSandbox] = {}
        self.created: list[str] = []
        self.deleted: list[str] = []
        self.executed_timeouts: list[Any] = []
        self._lock = threading.Lock()

    def create(self, template_name: str, idle_timeout: int) -> FakeSandbox | None:
        if template_name not in self.templates:
            return None
        sandbox_id = f"sb-{uuid.uuid4().hex[:20]}"
        folder = tempfile.mkdtemp(prefix=f"{sandbox_id}-", dir=self.root)
        sandbox = FakeSandbox(sandbox_id, template_name, idle_timeout, folder, datetime.now(timezone.utc).isoformat())
        with self._lock:
            self.live[sandbox_id] = sandbox
            self.created.append(sandbox_id)
        return sandbox

    def get(self, sandbox_id: str) -> FakeSandbox | None:
        with self._lock:
            return self.live.get(sandbox_id)

    def delete(self, sandbox_id: str) -> FakeSandbox | None:
        with self._lock:
            sandbox = self.live.pop(sandbox_id, None)
            if sandbox is not None:
                self.deleted.append(sandbox_id)
        if sandbox is not None:
            sandbox.status = "TERMINATED"
            shutil.rmtree(sandbox.folder, ignore_errors=True)
        return sandbox

    def execute(self, sandbox: FakeSandbox, code: str, timeout: Any) -> dict[str, Any]:
        """Run ``code`` as the interpreter would, and describe what it printed."""
        self.executed_timeouts.append(timeout)
        sandbox.executions += 1
        script = os.path.join(sandbox.folder, f"cell-{sandbox.executions}.py")
        with open(script, "w", encoding="utf-8") as handle:
            handle.write(code)
        environment = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "TMPDIR": sandbox.folder,
            "HOME": sandbox.folder,
            "LANG": "C.UTF-8",
        }
        context_id = f"ctx-{uuid.uuid4().hex[:12]}"
        try:
            done = subprocess.run(
                [sys.executable, script],
                check=False,
                capture_output=True,
                cwd=sandbox.folder,
                env=environment,
                timeout=float(timeout) if timeout else None,
            )
        except subprocess.TimeoutExpired as expired:
            results = [{"type": "stdout", "text": (expired.stdout or b"").decode("utf-8", "replace")}]
            results.append({"type": "error", "name": "TimeoutError", "value": "execution timed out", "traceback": ""})
            results.append({"type": "endOfExecution", "status": "error"})
            return {"contextId": context_id, "results": results}
        results = []
        if done.stdout:
            results.append({"type": "stdout", "text": done.stdout.decode("utf-8", "replace")})
        if done.stderr:
            results.append({"type": "stderr", "text": done.stderr.decode("utf-8", "replace")})
        results.append({"type": "endOfExecution", "status": "ok" if done.returncode == 0 else "error"})
        return {"contextId": context_id, "results": results}
