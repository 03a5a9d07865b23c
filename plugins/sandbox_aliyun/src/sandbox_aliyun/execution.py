"""One execution and one health probe on AgentRun, from a validated config to an ExecutionResult.

An execution borrows a live sandbox from the provider's pool (:mod:`sandbox_aliyun.pool`), runs in
a fresh interpreter context that is deleted afterwards, and gives the sandbox back only if it ended
cleanly: a timeout, an output flood, a failure of the service or of the context's deletion delete
the sandbox instead. A pooled sandbox that vanished while idle is replaced once, before the code
starts. In ``strict`` isolation every execution gets a new sandbox. Timeouts are
clamped to the service's 30-second hard limit, and the clamp is recorded in the result's metadata.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from typing import Any

from sandbox_aliyun import RUNTIME_NAME
from sandbox_aliyun.errors import AliyunProviderError, BackendRefusedError
from sandbox_aliyun.limits import HARD_TIMEOUT, SERVICE_MARGIN
from sandbox_aliyun.remote import RemoteRun, build_request_code, read_envelope, result_from_envelope
from sandbox_aliyun.session import Connection, InterpreterSandbox
from sandbox_aliyun.state import CREDENTIAL_VARIABLES, PENDING_DELETES
from sandbox_core.failures import FailureKind, failure_of, provider_failure
from sandbox_core.model import ExecutionRequest, ExecutionResult, HealthStatus
from sandbox_core.pooling import Lease, UnknownRuntimeError, runtime_template
from sandbox_core.schema import Secret
from sandbox_core.timeouts import request_seconds

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


def seconds_for(request: ExecutionRequest, config: Mapping[str, Any]) -> float:
    """The seconds an execution gets. The client has applied the core's timeout rule (capped at
    the provider's declared maximum); this also guards a hook called directly."""
    ceiling = min(float(config["timeout"]), HARD_TIMEOUT)
    return min(request_seconds(request, ceiling), ceiling)


def run(request: ExecutionRequest, config: Mapping[str, Any], provider_name: str) -> ExecutionResult:
    """Execute ``request`` in a pooled (or, when strict, fresh) sandbox; backend failures become ``provider_error``.

    A pooled sandbox the service deleted while it was idle fails when the context is created,
    before the code started: it is replaced by a new sandbox once, transparently (the shared rule of
    :meth:`~sandbox_core.pooling.SandboxPool.run`); ``metadata.sandbox_replaced`` names it.
    """
    from sandbox_aliyun.pool import pool_for

    if request.runtime is not None:
        try:
            config = {**config, "template_name": runtime_template(config, request.runtime, "aliyun")}
        except UnknownRuntimeError as exc:
            return provider_failure(provider_name, str(exc), FailureKind.BAD_CONFIG, runtime=RUNTIME_NAME)
    connection = connection_from(config)
    timeout = seconds_for(request, config)
    meta: dict[str, Any] = {
        "runtime": RUNTIME_NAME,
        "region": connection.region,
        "template_name": connection.template_name,
        "isolation": config["isolation"],
        "throttle_retries": 0,
    }
    remote = RemoteRun.create(
        request.code, request.arguments, request.language, timeout, int(config["max_output_bytes"]), request.files
    )
    started = time.monotonic()
    service_timeout = min(int(HARD_TIMEOUT), math.ceil(timeout + SERVICE_MARGIN))

    def attempt(lease: Lease[InterpreterSandbox]) -> dict[str, Any]:
        sandbox = lease.item
        meta.update(sandbox_id=sandbox.sandbox_id, sandbox_reused=lease.reused)
        if lease.replaced is not None:
            meta["sandbox_replaced"] = lease.replaced.sandbox_id
        # A new sandbox's count includes the retries of its creation, made for this execution.
        retries_before = sandbox.throttle_retries if lease.reused else 0
        try:
            context_id = sandbox.new_context()
            meta["context_id"] = context_id
            lease.mark_started()
            try:
                reply = sandbox.execute_python(build_request_code(remote), context_id, service_timeout)
            finally:
                context_deleted = sandbox.delete_context(context_id)
        finally:
            meta["throttle_retries"] += sandbox.throttle_retries - retries_before
        envelope = read_envelope(reply, remote.envelope_marker)
        if not context_deleted or envelope.get("timed_out") or envelope.get("flooded"):
            lease.discard()  # code may still run there, or its context outlived the execution
        return envelope

    try:
        envelope = pool_for(connection, config).run(attempt, retry_if=sandbox_at_fault)
    except AliyunProviderError as exc:
        meta["wall_time"] = time.monotonic() - started
        return provider_failure(provider_name, str(exc), exc.kind, **meta)
    meta["wall_time"] = time.monotonic() - started
    elapsed = float(envelope.get("elapsed") or 0.0) or meta["wall_time"]
    return result_from_envelope(remote, envelope, provider_name, elapsed, meta)


def sandbox_at_fault(exc: Exception) -> bool:
    """Whether a failure may be the sandbox's own (gone, broken), so that a new sandbox may succeed.

    Rejected keys, throttling and an unreachable endpoint concern the account or the network: a new
    sandbox would fail the same way, so they are reported at once.
    """
    return isinstance(exc, BackendRefusedError)


def probe(config: Mapping[str, Any]) -> HealthStatus:
    """The provider's real ability to execute: a one-line program in a sandbox of the pool, signed,
    in a fresh context, like any execution (rejected keys and throttling make it unhealthy).

    The details (and the message) also list this process's sandboxes whose deletion AgentRun
    refused and that are still being retried: they are billed until gone.
    """
    started = time.monotonic()
    result = run(ExecutionRequest(code=PROBE_CODE, timeout=PROBE_TIMEOUT), config, "")
    latency = time.monotonic() - started
    region = config["region"]
    undeleted = PENDING_DELETES.pending()
    details: dict[str, Any] = {"isolation": config["isolation"], "undeleted_sandboxes": undeleted}
    note = f"; {len(undeleted)} sandbox(es) awaiting deletion: {', '.join(undeleted)}" if undeleted else ""
    if result.value == "ok":
        how = "reused" if result.metadata.get("sandbox_reused") else "created"
        return HealthStatus(
            healthy=True,
            message=f"AgentRun ({region}) ran a probe in {how} sandbox {result.metadata.get('sandbox_id')}{note}",
            latency=latency,
            details={"sandbox_id": result.metadata.get("sandbox_id"), **details},
        )
    reason = result.error.message if result.error else f"probe ended with status {result.status.value}"
    failure = failure_of(result)
    if failure is not None:
        details["failure"] = failure.to_dict()
    return HealthStatus(healthy=False, message=reason + note, latency=latency, details=details)
