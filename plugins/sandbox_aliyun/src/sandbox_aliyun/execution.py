"""One execution and one health probe on AgentRun, from a validated config to an ExecutionResult.

An execution borrows a live sandbox from the provider's pool (:mod:`sandbox_aliyun.pool`), runs in
a fresh interpreter context that is deleted afterwards, and gives the sandbox back only if it ended
cleanly: a timeout, an output flood, a failure of the service or of the context's deletion delete
the sandbox instead. In ``strict`` isolation every execution gets a new sandbox. Timeouts are
clamped to the service's 30-second hard limit, and the clamp is recorded in the result's metadata.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from typing import Any

from sandbox_aliyun import RUNTIME_NAME
from sandbox_aliyun.errors import AliyunProviderError
from sandbox_aliyun.limits import HARD_TIMEOUT, SERVICE_MARGIN
from sandbox_aliyun.provider import CREDENTIAL_VARIABLES
from sandbox_aliyun.remote import RemoteRun, build_request_code, read_envelope, result_from_envelope
from sandbox_aliyun.session import Connection
from sandbox_core.model import ExecutionRequest, ExecutionResult, HealthStatus
from sandbox_core.schema import Secret

PROBE_CODE = "def main():\n    return 'ok'\n"
PROBE_TIMEOUT = 10.0


def credential(config: Mapping[str, Any], field: str) -> tuple[str, str]:
    """A credential's value and where it came from: the config wins, else its environment variable."""
    value = config.get(field)
    if isinstance(value, Secret):
        value = value.reveal()
    if value:
        return str(value), "config"
    return os.environ.get(CREDENTIAL_VARIABLES[field], "").strip(), "environment"


def connection_from(config: Mapping[str, Any]) -> Connection:
    key_id, key_from = credential(config, "access_key_id")
    secret, secret_from = credential(config, "access_key_secret")
    account_id, _ = credential(config, "account_id")
    return Connection(
        access_key_id=key_id,
        access_key_secret=Secret(secret),
        account_id=account_id,
        region=config["region"],
        template_name=config["template_name"],
        endpoint=config.get("endpoint"),
        idle_timeout=int(config["sandbox_idle_timeout"]),
        key_id_from=key_from,
        secret_from=secret_from,
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
    """Execute ``request`` in a pooled (or, when strict, fresh) sandbox; backend failures become ``provider_error``."""
    from sandbox_aliyun.pool import pool_for

    connection = connection_from(config)
    timeout, meta = plan_timeout(request.timeout, float(config["timeout"]))
    meta.update(
        runtime=RUNTIME_NAME,
        region=connection.region,
        template_name=connection.template_name,
        isolation=config["isolation"],
    )
    remote = RemoteRun.create(request.code, request.arguments, request.language, timeout, int(config["max_output_bytes"]))
    started = time.monotonic()
    service_timeout = min(int(HARD_TIMEOUT), math.ceil(timeout + SERVICE_MARGIN))
    try:
        with pool_for(connection, config).lease() as lease:
            sandbox = lease.item
            meta.update(sandbox_id=sandbox.sandbox_id, sandbox_reused=lease.reused)
            # A new sandbox's count includes the retries of its creation, made for this execution.
            retries_before = sandbox.throttle_retries if lease.reused else 0
            try:
                context_id = sandbox.new_context()
                meta["context_id"] = context_id
                try:
                    reply = sandbox.execute_python(build_request_code(remote), context_id, service_timeout)
                finally:
                    context_deleted = sandbox.delete_context(context_id)
            finally:
                meta["throttle_retries"] = sandbox.throttle_retries - retries_before
            envelope = read_envelope(reply)
            if not context_deleted or envelope.get("timed_out") or envelope.get("flooded"):
                lease.discard()  # code may still run there, or its context outlived the execution
    except AliyunProviderError as exc:
        meta["wall_time"] = time.monotonic() - started
        return ExecutionResult.provider_failure(provider_name, str(exc), **meta)
    meta["wall_time"] = time.monotonic() - started
    elapsed = float(envelope.get("elapsed") or 0.0) or meta["wall_time"]
    return result_from_envelope(remote, envelope, provider_name, elapsed, meta)


def probe(config: Mapping[str, Any]) -> HealthStatus:
    """The provider's real ability to execute: a one-line program in a sandbox of the pool, signed,
    in a fresh context, like any execution (rejected keys and throttling make it unhealthy)."""
    started = time.monotonic()
    result = run(ExecutionRequest(code=PROBE_CODE, timeout=PROBE_TIMEOUT), config, "")
    latency = time.monotonic() - started
    region = config["region"]
    if result.value == "ok":
        how = "reused" if result.metadata.get("sandbox_reused") else "created"
        return HealthStatus(
            healthy=True,
            message=f"AgentRun ({region}) ran a probe in {how} sandbox {result.metadata.get('sandbox_id')}",
            latency=latency,
            details={"sandbox_id": result.metadata.get("sandbox_id"), "isolation": config["isolation"]},
        )
    reason = result.error.message if result.error else f"probe ended with status {result.status.value}"
    return HealthStatus(healthy=False, message=reason, latency=latency)
