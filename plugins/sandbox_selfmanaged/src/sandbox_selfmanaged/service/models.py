"""Request and response schemas of the executor's own API (``/v1/execute``, ``/healthz``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class LimitsIn(BaseModel):
    """Limits a request may ask for; each must be within the operator's maximums (else 422)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    memory_mb: int | None = Field(None, description="Memory of the whole sandbox (files in /tmp included), MiB")
    processes: int | None = Field(None, description="Processes and threads at once (RLIMIT_NPROC)")
    max_output_bytes: int | None = Field(None, description="Bytes of stdout and of stderr kept")
    max_file_bytes: int | None = Field(None, description="Largest file the code may write (RLIMIT_FSIZE)")
    max_artifact_bytes: int | None = Field(None, description="Total bytes of output-folder files returned")


class ExecuteIn(BaseModel):
    """One execution: run ``code`` and call ``main(**arguments)`` (Python) / ``main(arguments)`` (JS).

    Strict: a value of the wrong JSON type is refused (``"64"`` is not an integer, ``1`` is not
    a boolean), never converted.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    code: str = Field(..., description="Source code")
    language: Literal["python", "javascript", "nodejs", "js", "py"] = Field("python", description="python or javascript")
    arguments: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments of main(), as JSON data")
    timeout: float | None = Field(None, gt=0, description="Wall-clock seconds (default: the operator's)")
    limits: LimitsIn | None = None
    runtime: str | None = Field(None, description="Runtime (package set) to run with (default: the language's default)")
    network: list[str] | None = Field(
        None, description="Egress allowlist of this execution, 'host:port' entries within the executor's (default: no network)"
    )
    files: dict[str, str] = Field(
        default_factory=dict, description="Input files put into the working folder first: name to base64 content (Python only)"
    )


class ErrorOut(BaseModel):
    type: str
    message: str
    traceback: str = ""


class ArtifactOut(BaseModel):
    name: str
    mime_type: str
    size: int
    content_base64: str


class ExecutionResultOut(BaseModel):
    """``sandbox_core.ExecutionResult.to_dict()``: the same shape every provider returns."""

    status: Literal["success", "error", "timeout", "memory_limit", "output_limit", "provider_error"]
    stdout: str
    stderr: str
    exit_code: int | None
    value: Any = None
    error: ErrorOut | None = None
    stdout_truncated: bool
    stderr_truncated: bool
    execution_time: float
    provider: str
    artifacts: list[ArtifactOut]
    metadata: dict[str, Any] = Field(description="runtime, runsc_version, platform, sandbox_id, timings, limits")


class HealthOut(BaseModel):
    status: Literal["ok", "degraded", "unavailable"]
    healthy: bool
    message: str
    runtime: dict[str, Any]
    languages: dict[str, Any]
    runtimes: dict[str, Any] = {}
    uptime_seconds: float
    requests: dict[str, int] = {}


class RuntimeOut(BaseModel):
    """One served runtime: what it holds, or why it cannot be used."""

    name: str
    language: str | None = None
    available: bool
    packages: dict[str, str] = {}
    digest: str | None = None
    built_at: float | None = None
    error: str | None = None


class ProblemOut(BaseModel):
    detail: Any
