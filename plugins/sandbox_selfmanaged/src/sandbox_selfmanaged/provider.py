"""The ``self_managed`` provider: sandbox-core's hooks, sending executions to sandbox-executors.

This is the entry-point module sandbox-core loads, so it stays light: it imports neither the
service stack nor the HTTP client; :mod:`sandbox_selfmanaged.client` (httpx) is imported on the
first execution or health check.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from sandbox_core.errors import FieldProblem
from sandbox_core.files import input_limit_fields
from sandbox_core.hookspecs import hookimpl
from sandbox_core.model import (
    ExecutionRequest,
    ExecutionResult,
    HealthStatus,
    ProviderInfo,
)
from sandbox_core.schema import ConfigField, ConfigSchema
from sandbox_core.sessions import FileInfo, SessionSpec
from sandbox_core.streaming import OutputCallback
from sandbox_core.timeouts import TimeoutSettings
from sandbox_selfmanaged.shared_clients import CLIENTS

TOKEN_ENV = "SANDBOX_EXECUTOR_TOKEN"
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})

SCHEMA = ConfigSchema(
    [
        ConfigField(
            "endpoints",
            "url",
            label="Executor endpoints",
            description="Base URLs of sandbox-executor services, e.g. http://10.0.0.5:8808. Load is spread "
            "over them; an unreachable or overloaded one is skipped.",
            required=True,
            multiple=True,
        ),
        ConfigField(
            "token",
            "secret",
            label="Executor token",
            description="The bearer token the executors were started with (SANDBOX_EXECUTOR_TOKEN). "
            "Required unless every endpoint is on this machine.",
            env=TOKEN_ENV,
            bound_to=("endpoints", "verify_tls"),
        ),
        ConfigField(
            "request_timeout",
            "number",
            label="Request overhead timeout (s)",
            description="Seconds an executor may take beyond the execution's own timeout (queueing, "
            "boot, transfer) before the attempt is abandoned.",
            default=30.0,
            minimum=1,
            maximum=3600,
        ),
        ConfigField(
            "retries",
            "integer",
            label="Retries",
            description="Extra rounds over the endpoints when all refused before running anything (unreachable, 503), "
            "honouring Retry-After, within the execution's deadline.",
            default=2,
            minimum=0,
            maximum=10,
        ),
        ConfigField(
            "default_timeout",
            "number",
            label="Default timeout (s)",
            description=(
                "Wall-clock limit of an execution whose caller did not choose one "
                "(the executor refuses more than its --max-timeout)."
            ),
            default=30.0,
            minimum=0.1,
            maximum=3600,
        ),
        ConfigField(
            "memory_mb", "integer", label="Memory (MiB)",
            description="Per-execution memory, files in /tmp included (executor default if empty).", minimum=64, maximum=65536,
        ),
        ConfigField(
            "processes", "integer", label="Processes",
            description="Processes and threads at once (executor default if empty).", minimum=4, maximum=4096,
        ),
        ConfigField(
            "max_output_bytes", "integer", label="Output limit (bytes)",
            description="Bytes of stdout and of stderr kept (executor default if empty).", minimum=1024, maximum=1 << 30,
        ),
        ConfigField(
            "max_file_bytes", "integer", label="File size limit (bytes)",
            description="Largest file code may write (executor default if empty).", minimum=4096, maximum=1 << 40,
        ),
        ConfigField(
            "network_allowlist",
            "string",
            label="Network allowlist",
            description="host:port entries executions may ask to reach over HTTPS (*.example.com:443 for every name "
            "below a domain: weaker). Each execution asks for its own subset (none by default); the executors "
            "enforce their own --egress-allow as well.",
            multiple=True,
        ),
        ConfigField("verify_tls", "boolean", label="Verify TLS certificates", description="For https:// endpoints.", default=True),
        *input_limit_fields(),
    ]
)


@hookimpl
def sandbox_provider_info() -> ProviderInfo:
    return ProviderInfo(
        description="gVisor sandboxes on your own machines, through one or more sandbox-executor services",
        languages=("python", "javascript"),
        tags=("self-hosted", "gvisor", "no-network"),
        runtimes=True,
        egress=True,
        timeouts=TimeoutSettings(default_setting="default_timeout"),
        streaming=True,
        sessions=True,
        files=True,
    )


@hookimpl
def sandbox_config_schema() -> ConfigSchema:
    return SCHEMA


def _is_local(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host in LOOPBACK_HOSTS or host.startswith("127.")


@hookimpl
def sandbox_validate_config(config: Mapping[str, Any]) -> list[FieldProblem]:
    problems: list[FieldProblem] = []
    endpoints = list(config.get("endpoints") or [])
    seen: set[str] = set()
    for index, url in enumerate(endpoints):
        if url in seen:
            problems.append(FieldProblem(f"endpoints.{index}", f"{url} is listed twice"))
        seen.add(url)
        if urlsplit(url).path not in ("", "/"):
            problems.append(FieldProblem(f"endpoints.{index}", f"{url}: give the executor's base URL, without a path"))
    from sandbox_selfmanaged.egress.allowlist import Allowlist
    from sandbox_selfmanaged.errors import EgressPolicyError

    try:
        Allowlist.parse(config.get("network_allowlist") or [])
    except EgressPolicyError as error:
        problems.append(FieldProblem("network_allowlist", str(error)))
    remote = [url for url in endpoints if not _is_local(url)]
    if remote and not config.get("token"):
        problems.append(
            FieldProblem(
                "token",
                f"is required for executors on other machines ({', '.join(remote)}); executors refuse to listen there without one",
            )
        )
    return problems


@hookimpl
def sandbox_health(config: Mapping[str, Any]) -> HealthStatus:
    from sandbox_selfmanaged.client import client_for

    return client_for(config).health()


@hookimpl
def sandbox_execute(
    request: ExecutionRequest, config: Mapping[str, Any], provider_name: str, on_output: OutputCallback | None
) -> ExecutionResult:
    from sandbox_selfmanaged.client import client_for

    if request.network:
        from sandbox_selfmanaged.egress.allowlist import Allowlist
        from sandbox_selfmanaged.errors import EgressPolicyError

        try:
            Allowlist.parse(config.get("network_allowlist") or []).narrow(request.network)
        except EgressPolicyError as error:
            raise EgressPolicyError(f"network: {error} (config field network_allowlist)") from None

    return client_for(config).execute(request, config, provider_name, on_output)


@hookimpl
def sandbox_shutdown() -> None:
    """Close the HTTP connections kept to executors (the executors' own warm pools stay theirs)."""
    CLIENTS.close_all()


@hookimpl
def sandbox_upgrade_config(config: Mapping[str, Any], source: str) -> tuple[dict[str, Any], list[str]] | None:
    """RAGFlow's self_managed config (endpoint, timeout, max_retries, pool_size) in this shape."""
    if source != "ragflow":
        return None
    upgraded = dict(config)
    notes: list[str] = []
    if "endpoint" in upgraded:
        endpoint = upgraded.pop("endpoint")
        if "endpoints" not in upgraded and endpoint:
            upgraded["endpoints"] = [endpoint]
        notes.append("endpoint: became endpoints (a list; add more executors there)")
    for old, new in (("max_retries", "retries"), ("timeout", "request_timeout")):
        if old in upgraded:
            value = upgraded.pop(old)
            upgraded.setdefault(new, value)
            notes.append(f"{old}: renamed to {new}")
    if "pool_size" in upgraded:
        upgraded.pop("pool_size")
        notes.append("pool_size: dropped; the warm pool is the executor's setting (sandbox-executor serve --pool-size)")
    return upgraded, notes


# -- sessions: pinned to the executor that opened them (see sandbox_selfmanaged.session_client) ----


@hookimpl
def sandbox_session_open(spec: SessionSpec, config: Mapping[str, Any]) -> str:
    from sandbox_selfmanaged import session_client

    return session_client.open_session(spec, config)


@hookimpl
def sandbox_session_execute(
    handle: str, request: ExecutionRequest, config: Mapping[str, Any], provider_name: str, on_output: OutputCallback | None
) -> ExecutionResult:
    from sandbox_selfmanaged import session_client

    return session_client.execute(handle, request, config, provider_name, on_output)


@hookimpl
def sandbox_session_upload(handle: str, path: str, data: bytes, config: Mapping[str, Any]) -> None:
    from sandbox_selfmanaged import session_client

    session_client.upload(handle, path, data, config)


@hookimpl
def sandbox_session_download(handle: str, path: str, config: Mapping[str, Any]) -> bytes:
    from sandbox_selfmanaged import session_client

    return session_client.download(handle, path, config)


@hookimpl
def sandbox_session_list_files(handle: str, config: Mapping[str, Any]) -> list[FileInfo]:
    from sandbox_selfmanaged import session_client

    return session_client.list_files(handle, config)


@hookimpl
def sandbox_session_close(handle: str, config: Mapping[str, Any]) -> None:
    from sandbox_selfmanaged import session_client

    session_client.close(handle, config)
