"""One execution and one health probe on AgentRun, from a validated config to an ExecutionResult.

Each execution gets a sandbox of its own (created, used once, deleted: see
:class:`~sandbox_aliyun.session.InterpreterSandbox`), so nothing one execution leaves behind —
files, processes, interpreter state — can be seen by the next. Timeouts are clamped to the
service's 30-second hard limit, and the clamp is recorded in the result's metadata.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

from sandbox_aliyun import RUNTIME_NAME
from sandbox_aliyun.errors import AliyunProviderError
from sandbox_aliyun.limits import HARD_TIMEOUT, HTTP_OVERHEAD, READY_TIMEOUT, SERVICE_MARGIN
from sandbox_aliyun.remote import RemoteRun, build_request_code, read_envelope, result_from_envelope
from sandbox_aliyun.session import Connection, InterpreterSandbox
from sandbox_core.model import ExecutionRequest, ExecutionResult, HealthStatus

PROBE_CODE = "def main():\n    return 'ok'\n"
PROBE_TIMEOUT = 10.0


def connection_from(config: Mapping[str, Any]) -> Connection:
    return Connection(
        access_key_id=config["access_key_id"],
        access_key_secret=config["access_key_secret"],
        account_id=config["account_id"],
        region=config["region"],
        template_name=config["template_name"],
        endpoint=config.get("endpoint"),
        idle_timeout=int(config["sandbox_idle_timeout"]),
    )


def plan_timeout(requested: float, configured: float) -> tuple[float, dict[str, Any]]:
    """The seconds the code gets, and metadata saying so (and why, when it is less than asked)."""
    ceiling = min(configured, HARD_TIMEOUT)
    applied = min(requested, ceiling)
    meta: dict[str, Any] = {"timeout": applied}
    if requested > applied:
        reason = (
            f"AgentRun stops every execution after {HARD_TIMEOUT:g}s"
            if ceiling >= HARD_TIMEOUT
            else f"the provider's timeout setting is {ceiling:g}s"
        )
        meta["timeout_clamped"] = {"requested": requested, "applied": applied, "reason": reason}
    return applied, meta


def run(request: ExecutionRequest, config: Mapping[str, Any], provider_name: str) -> ExecutionResult:
    """Execute ``request`` in a fresh sandbox; backend failures become ``provider_error`` results."""
    connection = connection_from(config)
    timeout, meta = plan_timeout(request.timeout, float(config["timeout"]))
    meta.update(runtime=RUNTIME_NAME, region=connection.region, template_name=connection.template_name)
    remote = RemoteRun.create(request.code, request.arguments, request.language, timeout, int(config["max_output_bytes"]))
    started = time.monotonic()
    sandbox = InterpreterSandbox(connection, http_timeout=timeout + HTTP_OVERHEAD)
    try:
        with sandbox:
            meta["sandbox_id"] = sandbox.sandbox_id
            sandbox.wait_ready(time.monotonic() + READY_TIMEOUT)
            service_timeout = min(int(HARD_TIMEOUT), math.ceil(timeout + SERVICE_MARGIN))
            reply = sandbox.execute_python(build_request_code(remote), service_timeout)
        envelope = read_envelope(reply)
    except AliyunProviderError as exc:
        meta.update(sandbox_id=sandbox.sandbox_id, released=sandbox.released, wall_time=time.monotonic() - started)
        return ExecutionResult.provider_failure(provider_name, str(exc), **meta)
    if isinstance(reply, Mapping) and reply.get("contextId"):
        meta["context_id"] = reply["contextId"]
    meta.update(released=sandbox.released, wall_time=time.monotonic() - started)
    elapsed = float(envelope.get("elapsed") or 0.0) or meta["wall_time"]
    return result_from_envelope(remote, envelope, provider_name, elapsed, meta)


def probe(config: Mapping[str, Any]) -> HealthStatus:
    """The provider's real ability to execute: a one-line program through the whole lifecycle."""
    started = time.monotonic()
    result = run(ExecutionRequest(code=PROBE_CODE, timeout=PROBE_TIMEOUT), config, "")
    latency = time.monotonic() - started
    region = config["region"]
    if result.value == "ok":
        return HealthStatus(
            healthy=True,
            message=f"AgentRun ({region}) created sandbox {result.metadata.get('sandbox_id')}, ran a probe and "
            f"{'released it' if result.metadata.get('released') else 'could not release it'}",
            latency=latency,
        )
    reason = result.error.message if result.error else f"probe ended with status {result.status.value}"
    return HealthStatus(healthy=False, message=reason, latency=latency)
