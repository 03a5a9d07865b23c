"""The audit log: a cross-cutting plugin that records every execution, switched on in settings.

It wraps the ``sandbox_execute`` and ``sandbox_session_execute`` hooks of whichever provider runs
and writes one JSON line per execution (a session's carry its handle): when, who asked, which
provider, language, status, exit code, duration and the size of the code. It never records the
code, its arguments, its output or any config value, so neither user data nor secrets end up in
the log. Lines go to the ``sandbox_core.audit`` logger and, when the ``sandbox.audit`` settings
row names a ``path``, are appended to that file as well.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import logging
import os
import threading
import time
from collections.abc import Generator, Mapping
from typing import Any

from sandbox_core.hookspecs import hookimpl
from sandbox_core.model import ExecutionRequest, ExecutionResult

logger = logging.getLogger("sandbox_core.audit")


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def default_actor() -> str:
    """The local user's name, for changes and executions nobody attributed."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"


class AuditLog:
    """Hook wrapper that writes one audit record per execution (see the module docstring)."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path
        self._lock = threading.Lock()

    @hookimpl(wrapper=True)
    def sandbox_execute(
        self, request: ExecutionRequest, provider_name: str
    ) -> Generator[None, ExecutionResult, ExecutionResult]:
        return (yield from self._audited("execute", request, provider_name, {}))

    @hookimpl(wrapper=True)
    def sandbox_session_execute(
        self, handle: str, request: ExecutionRequest, provider_name: str
    ) -> Generator[None, ExecutionResult, ExecutionResult]:
        # The handle names the session, never a secret (the hook contract says so).
        return (yield from self._audited("session_execute", request, provider_name, {"session": handle}))

    def _audited(
        self, event: str, request: ExecutionRequest, provider_name: str, extra: Mapping[str, Any]
    ) -> Generator[None, ExecutionResult, ExecutionResult]:
        started = time.monotonic()
        status, exit_code = "provider_error", None
        try:
            result = yield
            status, exit_code = result.status.value, result.exit_code
            return result
        finally:
            self.record(
                {
                    "time": _now(),
                    "event": event,
                    "actor": request.requested_by or default_actor(),
                    "provider": provider_name,
                    "language": request.language,
                    "status": status,
                    "exit_code": exit_code,
                    "duration": round(time.monotonic() - started, 6),
                    "code_bytes": len(request.code.encode("utf-8", "surrogatepass")),
                    "argument_count": len(request.arguments),
                    "file_count": len(request.files),
                    **extra,
                }
            )

    def record(self, entry: Mapping[str, Any]) -> None:
        """Write one record to the logger and, if configured, the audit file."""
        line = json.dumps(entry, sort_keys=True)
        logger.info(line)
        if self.path:
            with self._lock, open(self.path, "a", encoding="utf-8") as handle:
                handle.write(line + "\n")


def record_config_change(
    audit_settings: Mapping[str, Any],
    *,
    actor: str,
    client: str | None,
    provider: str,
    changed: list[str],
    activated: bool,
) -> None:
    """Record one change of a provider's saved config, from any tool (admin API, CLI).

    Only the names of the changed fields are written, never their values. Config changes are
    always logged to the ``sandbox_core.audit`` logger; the file is written when the audit log is
    on (``audit_settings`` is the store's ``sandbox.audit`` row).
    """
    path = audit_settings.get("path") if audit_settings.get("enabled") else None
    AuditLog(path=path).record(
        {
            "time": _now(),
            "event": "config_change",
            "actor": actor,
            "client": client,
            "provider": provider,
            "changed": changed,
            "activated": activated,
        }
    )
