"""RAGFlow compatibility: its executor_manager's ``POST /run`` request and response shapes.

RAGFlow's sandbox client sends ``{"code_b64", "language": "python"|"nodejs", "arguments"}`` and
reads ``status`` (``success``, ``program_error``, ``resource_limit_exceeded``,
``unauthorized_access``, ``runtime_error``, ``program_runner_error``), ``stdout``, ``stderr``,
``exit_code``, ``detail``, ``time_used_ms``, ``memory_used_kb``, the ``*_type`` refinements,
``artifacts`` (``name``, ``mime_type``, ``size``, ``content_b64``) and ``result`` (``present``,
``value``, ``type``). This module maps our :class:`ExecutionResult` onto that, with RAGFlow's
behaviour where its users can tell the difference:

- RAGFlow's code component reports an error only when ``stderr`` is set and ``stdout`` is empty,
  and RAGFlow's executor answers every failure that way. So on any status but success,
  ``stdout`` is empty and ``stderr`` holds the traceback or a one-line reason in RAGFlow's words;
  what the program wrote stays in ``full_stdout`` / ``full_stderr``.
- Code runs as module ``main`` (RAGFlow imports it), so ``if __name__ == "__main__":`` blocks do
  not run.
- Files the code writes to ``artifacts/`` in its working directory come back under RAGFlow's
  rules (:data:`ARTIFACT_TYPES`, at most :data:`MAX_ARTIFACTS`, each at most
  :data:`MAX_ARTIFACT_FILE_BYTES`, regular non-empty files with flat, plain names); such files
  saved at the top of the working directory are moved into ``artifacts/`` first, as RAGFlow does.
- With ``SANDBOX_CODE_POLICY`` set in the executor's environment (see :mod:`sandbox_core.policy`),
  code the policy refuses is answered as RAGFlow's executor answers unsafe code, without running.
"""

from __future__ import annotations

import base64
import binascii
import posixpath
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sandbox_core.model import Artifact, ExecutionResult, ExecutionStatus
from sandbox_core.policy import Violation
from sandbox_selfmanaged.rootfs import WORK_DIR

_LIMIT_TYPES = {
    ExecutionStatus.TIMEOUT: ("time", -124),
    ExecutionStatus.MEMORY_LIMIT: ("memory", -137),
    ExecutionStatus.OUTPUT_LIMIT: ("output", None),
}
_REASONS = {
    ExecutionStatus.TIMEOUT: "Execution timeout",
    ExecutionStatus.MEMORY_LIMIT: "Memory limit exceeded (killed by OOM)",
    ExecutionStatus.OUTPUT_LIMIT: "Output limit exceeded",
}
"""The one-line ``stderr`` of a stopped execution, in the words RAGFlow's executor uses."""

ARTIFACT_TYPES = {
    ".csv": "text/csv",
    ".html": "text/html",
    ".jpeg": "image/jpeg",
    ".jpg": "image/jpeg",
    ".json": "application/json",
    ".pdf": "application/pdf",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}
MAX_ARTIFACTS = 10
MAX_ARTIFACT_FILE_BYTES = 10 << 20
RUN_NAME = "main"
ARTIFACTS_DIR = posixpath.join(WORK_DIR, "artifacts")

RAGFLOW_DEFAULTS: dict[str, Any] = {
    "default_timeout": 10.0,
    "default_memory_mb": 256,
    "pool_size": 3,
    "port": 9385,
}
"""``sandbox-executor serve --ragflow-defaults``: RAGFlow's executor_manager defaults
(``SANDBOX_TIMEOUT=10s``, ``SANDBOX_MAX_MEMORY=256m``, ``SANDBOX_EXECUTOR_MANAGER_POOL_SIZE=3``,
port 9385). Flags given explicitly still win."""


def job_options() -> dict[str, Any]:
    """The runner job fields that give ``/run`` RAGFlow's working-directory conventions."""
    return {
        "output_dir": ARTIFACTS_DIR,
        "run_name": RUN_NAME,
        "artifact_extensions": tuple(ARTIFACT_TYPES),
        "promote_working_dir": True,
    }


class RunRequest(BaseModel):
    """RAGFlow's ``CodeExecutionRequest``."""

    model_config = ConfigDict(extra="ignore")

    code_b64: str = Field(..., description="The code, base64-encoded (UTF-8)")
    language: Literal["python", "nodejs", "javascript"] = Field("python", description="python or nodejs")
    arguments: dict[str, Any] | None = Field(default_factory=dict, description="Keyword arguments of main()")

    @field_validator("code_b64")
    @classmethod
    def _check_base64(cls, value: str) -> str:
        try:
            base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"invalid base64-encoded UTF-8 code: {exc}") from None
        return value

    def code(self) -> str:
        return base64.b64decode(self.code_b64, validate=True).decode("utf-8")

    def core_language(self) -> str:
        return "python" if self.language == "python" else "javascript"


class RunArtifact(BaseModel):
    name: str
    mime_type: str
    size: int
    content_b64: str


class RunStructuredResult(BaseModel):
    present: bool
    value: Any = None
    type: str = "json"


class RunResponse(BaseModel):
    """RAGFlow's ``CodeExecutionResult``, plus ``full_stdout``/``full_stderr`` on failures."""

    status: Literal["success", "program_error", "resource_limit_exceeded", "unauthorized_access", "runtime_error", "program_runner_error"]
    stdout: str
    stderr: str
    exit_code: int
    detail: str | None = None
    time_used_ms: float | None = None
    memory_used_kb: float | None = None
    resource_limit_type: Literal["time", "memory", "output"] | None = None
    unauthorized_access_type: Literal["disallowed_syscall", "file_access", "network_access"] | None = None
    runtime_error_type: Literal["signalled", "nonzero_exit"] | None = None
    artifacts: list[RunArtifact] = []
    result: RunStructuredResult | None = None
    full_stdout: str | None = Field(None, description="What the program wrote to stdout, when status is not success (stdout is then empty)")
    full_stderr: str | None = Field(None, description="What the program wrote to stderr, when status is not success")


def ragflow_artifacts(artifacts: Iterable[Artifact]) -> list[dict[str, Any]]:
    """The artifacts RAGFlow's rules keep, in RAGFlow's shape, in name order."""
    kept: list[dict[str, Any]] = []
    for artifact in sorted(artifacts, key=lambda a: a.name):
        name = artifact.name
        mime_type = ARTIFACT_TYPES.get(posixpath.splitext(name)[1].lower())
        if mime_type is None or not _plain_name(name) or not 0 < artifact.size <= MAX_ARTIFACT_FILE_BYTES:
            continue
        kept.append({
            "name": name,
            "mime_type": mime_type,
            "size": artifact.size,
            "content_b64": base64.b64encode(artifact.content).decode("ascii"),
        })
        if len(kept) == MAX_ARTIFACTS:
            break
    return kept


def _plain_name(name: str) -> bool:
    """A flat file name: no folder, no traversal, not hidden, no control characters."""
    return not (
        "/" in name or "\\" in name or ".." in name or name.startswith(".")
        or any(ord(char) < 32 or ord(char) == 127 for char in name)
    )


def _failure_stderr(result: ExecutionResult) -> str:
    """What RAGFlow users see as the error: a one-line reason, or the program's traceback."""
    reason = _REASONS.get(result.status)
    if reason is not None:
        if result.status is ExecutionStatus.OUTPUT_LIMIT and result.error is not None:
            return f"{reason}: {result.error.message}"
        return reason
    stderr = result.stderr
    traceback = result.error.traceback if result.error is not None else ""
    if traceback and traceback not in stderr:
        stderr = f"{stderr.rstrip()}\n{traceback}" if stderr.strip() else traceback
    if stderr.strip():
        return stderr
    if result.error is not None:
        return f"{result.error.type}: {result.error.message}"
    return f"the program exited with code {result.exit_code}"


def policy_refusal(violations: Sequence[Violation]) -> dict[str, Any]:
    """RAGFlow's answer to code its static checks refuse (nothing ran): a runner error, one line per rule."""
    return {
        "status": "program_runner_error",
        "stdout": "",
        "stderr": "\n".join(f"Line {v.line}: {v.rule}" for v in violations),
        "exit_code": -999,
        "detail": "Code is unsafe",
        "time_used_ms": 0.0,
        "memory_used_kb": None,
        "resource_limit_type": None,
        "unauthorized_access_type": None,
        "runtime_error_type": None,
        "artifacts": [],
        "result": None,
        "full_stdout": None,
        "full_stderr": None,
    }


def to_ragflow(result: ExecutionResult) -> dict[str, Any]:
    """``result`` in RAGFlow's executor_manager response shape."""
    exit_code = result.exit_code if result.exit_code is not None else 0
    body: dict[str, Any] = {
        "status": "success",
        "stdout": result.stdout,
        "stderr": result.stderr,
        "exit_code": exit_code,
        "detail": None,
        "time_used_ms": round(result.execution_time * 1000, 3),
        "memory_used_kb": None,
        "resource_limit_type": None,
        "unauthorized_access_type": None,
        "runtime_error_type": None,
        "artifacts": ragflow_artifacts(result.artifacts),
        "result": {"present": bool(result.metadata.get("has_main")), "value": result.value, "type": "json"},
        "full_stdout": None,
        "full_stderr": None,
    }
    peak = result.metadata.get("memory_peak_bytes")
    if isinstance(peak, int):
        body["memory_used_kb"] = round(peak / 1024, 1)
    if result.error is not None:
        body["detail"] = result.error.message
    if result.status in _LIMIT_TYPES:
        kind, code = _LIMIT_TYPES[result.status]
        body["status"] = "resource_limit_exceeded"
        body["resource_limit_type"] = kind
        if code is not None:
            body["exit_code"] = code
    elif result.status is ExecutionStatus.ERROR:
        body["status"] = "program_error"
        body["runtime_error_type"] = "signalled" if exit_code > 128 else "nonzero_exit"
    elif result.status is ExecutionStatus.PROVIDER_ERROR:
        body["status"] = "program_runner_error"
        body["exit_code"] = exit_code or -3
    if result.status is not ExecutionStatus.SUCCESS:
        body["result"] = None if not result.metadata.get("has_main") or result.value is None else body["result"]
        body.update(stdout="", stderr=_failure_stderr(result), full_stdout=result.stdout, full_stderr=result.stderr)
    return body
