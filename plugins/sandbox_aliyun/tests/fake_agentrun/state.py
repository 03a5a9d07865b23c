"""The fake's sandboxes: created from known templates, each with a private folder, deleted on request.

A context is a real, persistent Python process (:mod:`.kernel`) in the sandbox's folder, so
variables survive between executions in one context and nothing else: as in the service. An
execute without a context id runs the code in a throwaway process instead. Either way the reply
has the code interpreter's shape: ``{"contextId", "results": [{"type": "stdout", "text"},
{"type": "stderr", "text"}, {"type": "error", ...}, {"type": "endOfExecution", "status"}]}``. An
execution past its timeout kills the context's process (the context is gone afterwards). A sandbox
no request named for its ``sandboxIdleTimeoutSeconds`` is deleted (:meth:`SandboxStore.expire`, run
by the server's reaper thread), as the service does.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
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


KERNEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernel.py")


@attrs.define(eq=False)
class FakeContext:
    """One interpreter context: its kernel process, alive until deleted or killed by a timeout."""

    context_id: str
    language: str
    cwd: str
    process: subprocess.Popen[str]
    answers: queue.Queue[str | None] = attrs.field(factory=queue.Queue)

    def describe(self) -> dict[str, Any]:
        return {"id": self.context_id, "language": self.language, "cwd": self.cwd}

    def start_reader(self) -> None:
        def read() -> None:
            assert self.process.stdout is not None
            for line in self.process.stdout:
                self.answers.put(line)
            self.answers.put(None)

        threading.Thread(target=read, daemon=True).start()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()


@attrs.define
class FakeSandbox:
    sandbox_id: str
    template_name: str
    idle_timeout: int
    folder: str
    created_at: str
    status: str = "READY"
    executions: int = 0
    contexts: dict[str, FakeContext] = attrs.field(factory=dict)
    last_used: float = attrs.field(factory=time.monotonic)
    """When a request last named this sandbox (``time.monotonic()``): its idle timeout counts from here."""

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
        self.contexts_created: list[str] = []
        self.files_uploaded: list[str] = []
        self.expired: list[str] = []
        """Sandboxes the fake deleted because nobody used them for their idle timeout."""
        self.throttled: list[str] = []
        self.deletes_throttled = False
        """While True, every sandbox delete answers HTTP 429 ``Throttling.User`` (an admin switch)."""
        self.reshape_stdout: Callable[[str], list[str]] | None = None
        """When set, the stdout text of each execute is re-cut into the ``stdout`` items this returns,
        as a layer that chunks or splits lines between the interpreter and the client would."""
        self.reshape_reply: dict[str, Callable[[Any], Any]] = {}
        """Replies of another shape, as a changed service would send: route name (``create_context``,
        ``execute``) to a function of the normal reply giving the one sent."""
        self.fail_after_executing = 0
        self._throttle_next = 0
        self._lock = threading.Lock()

    def throttle_next(self, count: int) -> None:
        """Answer the next ``count`` requests (of any kind) with the service's throttling error."""
        with self._lock:
            self._throttle_next = count

    def take_throttle(self, what: str) -> bool:
        """Whether this request is one of those to throttle (and count it)."""
        with self._lock:
            if self._throttle_next <= 0:
                return False
            self._throttle_next -= 1
            self.throttled.append(what)
            return True

    def fail_next_executes_after_running(self, count: int) -> None:
        """The next ``count`` executes run their code, then answer HTTP 500 (a reply lost on its way)."""
        with self._lock:
            self.fail_after_executing = count

    def take_failure_after_executing(self) -> bool:
        with self._lock:
            if self.fail_after_executing <= 0:
                return False
            self.fail_after_executing -= 1
            return True

    def live_contexts(self) -> int:
        with self._lock:
            return sum(len(sandbox.contexts) for sandbox in self.live.values())

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

    def touch(self, sandbox_id: str) -> FakeSandbox | None:
        """The sandbox a request names, its idle clock restarted."""
        with self._lock:
            sandbox = self.live.get(sandbox_id)
            if sandbox is not None:
                sandbox.last_used = time.monotonic()
            return sandbox

    def expire(self) -> list[str]:
        """Delete the sandboxes idle longer than their idle timeout, as the service does; their ids."""
        now = time.monotonic()
        with self._lock:
            idle = [s.sandbox_id for s in self.live.values() if now - s.last_used > s.idle_timeout]
        for sandbox_id in idle:
            if self.delete(sandbox_id) is not None:
                self.expired.append(sandbox_id)
        return idle

    def delete(self, sandbox_id: str) -> FakeSandbox | None:
        with self._lock:
            sandbox = self.live.pop(sandbox_id, None)
            if sandbox is not None:
                self.deleted.append(sandbox_id)
        if sandbox is not None:
            sandbox.status = "TERMINATED"
            for context in list(sandbox.contexts.values()):
                context.kill()
            sandbox.contexts.clear()
            shutil.rmtree(sandbox.folder, ignore_errors=True)
        return sandbox

    @staticmethod
    def _environment(sandbox: FakeSandbox) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "TMPDIR": sandbox.folder,
            "HOME": sandbox.folder,
            "LANG": "C.UTF-8",
        }

    def create_context(self, sandbox: FakeSandbox, language: str, cwd: str) -> FakeContext:
        """Start a kernel for a new context (its cwd is mapped into the sandbox's folder)."""
        folder = os.path.join(sandbox.folder, cwd.lstrip("/"))
        os.makedirs(folder, exist_ok=True)
        process = subprocess.Popen(
            [sys.executable, KERNEL],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=folder,
            env=self._environment(sandbox),
            text=True,
        )
        context = FakeContext(f"ctx-{uuid.uuid4().hex[:12]}", language, cwd, process)
        context.start_reader()
        with self._lock:
            sandbox.contexts[context.context_id] = context
            self.contexts_created.append(context.context_id)
        return context

    def delete_context(self, sandbox: FakeSandbox, context_id: str) -> FakeContext | None:
        with self._lock:
            context = sandbox.contexts.pop(context_id, None)
        if context is not None:
            context.kill()
        return context

    def execute_in(self, sandbox: FakeSandbox, context: FakeContext, code: str, timeout: Any) -> dict[str, Any]:
        """Run ``code`` in ``context``'s kernel; past the timeout the kernel is killed."""
        self.executed_timeouts.append(timeout)
        sandbox.executions += 1
        assert context.process.stdin is not None
        try:
            context.process.stdin.write(json.dumps({"code": code}) + "\n")
            context.process.stdin.flush()
            line = context.answers.get(timeout=float(timeout) if timeout else None)
        except (BrokenPipeError, queue.Empty):
            line = None
        if line is None:
            self.delete_context(sandbox, context.context_id)
            results: list[dict[str, Any]] = [
                {"type": "error", "name": "TimeoutError", "value": "execution timed out", "traceback": ""},
                {"type": "endOfExecution", "status": "error"},
            ]
            return {"contextId": context.context_id, "results": results}
        answer = json.loads(line)
        results = []
        if answer["stdout"] and self.reshape_stdout is not None:
            results.extend({"type": "stdout", "text": text} for text in self.reshape_stdout(answer["stdout"]))
        elif answer["stdout"]:
            results.append({"type": "stdout", "text": answer["stdout"]})
        if answer["stderr"]:
            results.append({"type": "stderr", "text": answer["stderr"]})
        if answer["error"]:
            results.append({"type": "error", **answer["error"]})
        results.append({"type": "endOfExecution", "status": "error" if answer["error"] else "ok"})
        return {"contextId": context.context_id, "results": results}

    def execute(self, sandbox: FakeSandbox, code: str, timeout: Any) -> dict[str, Any]:
        """Run ``code`` as the interpreter would, and describe what it printed."""
        self.executed_timeouts.append(timeout)
        sandbox.executions += 1
        script = os.path.join(sandbox.folder, f"cell-{sandbox.executions}.py")
        with open(script, "w", encoding="utf-8") as handle:
            handle.write(code)
        environment = self._environment(sandbox)
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
