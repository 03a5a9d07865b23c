"""RAGFlow compatibility: its executor_manager's ``POST /run`` request and response shapes.

RAGFlow's sandbox client sends ``{"code_b64", "language": "python"|"nodejs", "arguments"}`` and
reads ``status`` (``success``, ``program_error``, ``resource_limit_exceeded``,
``unauthorized_access``, ``runtime_error``, ``program_runner_error``), ``stdout``, ``stderr``,
``exit_code``, ``detail``, ``time_used_ms``, ``memory_used_kb``, the ``*_type`` refinements,
``artifacts`` (``name``, ``mime_type``, ``size``, ``content_b64``) and ``result`` (``present``,
``value``, ``type``). This module maps our :class:`ExecutionResult` onto that.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sandbox_core.model import ExecutionResult, ExecutionStatus

_LIMIT_TYPES = {
    ExecutionStatus.TIMEOUT: ("time", -124),
    ExecutionStatus.MEMORY_LIMIT: ("memory", -137),
    ExecutionStatus.OUTPUT_LIMIT: ("output", None),
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
    """RAGFlow's ``CodeExecutionResult``."""

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
        "artifacts": [
            {"name": a.name, "mime_type": a.mime_type, "size": a.size, "content_b64": base64.b64encode(a.content).decode("ascii")}
            for a in result.artifacts
        ],
        "result": {"present": bool(result.metadata.get("has_main")), "value": result.value, "type": "json"},
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
    return body
