"""The ``e2b`` provider: sandbox-core's hooks, running code on E2B code-interpreter sandboxes.

This is the entry-point module sandbox-core loads, so it stays light: the E2B SDK is imported by
:mod:`sandbox_e2b.execution` and :mod:`sandbox_e2b.pool`, and only when code runs, health is
asked for, or pooled sandboxes are shut down. No module imports this one: the state it shares
with them lives in :mod:`sandbox_e2b.state`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from sandbox_core.errors import FieldProblem
from sandbox_core.files import input_limit_fields
from sandbox_core.hookspecs import hookimpl
from sandbox_core.model import ExecutionRequest, ExecutionResult, HealthStatus, ProviderInfo
from sandbox_core.pooling import pool_config_fields
from sandbox_core.runner.protocol import DEFAULT_MAX_OUTPUT_BYTES
from sandbox_core.schema import ConfigField, ConfigSchema
from sandbox_core.sessions import FileInfo, SessionSpec
from sandbox_core.streaming import OutputCallback
from sandbox_e2b import DEFAULT_TEMPLATE
from sandbox_e2b.state import OPEN_SESSIONS, POOLS

API_KEY_ENV = "E2B_API_KEY"
DOMAIN_ENV = "E2B_DOMAIN"
LANGUAGES = ("python", "javascript")

SCHEMA = ConfigSchema(
    [
        ConfigField(
            "api_key",
            "secret",
            label="API key",
            description="Your E2B API key (dashboard → API Keys); sent only in the X-API-KEY header.",
            required=True,
            env=API_KEY_ENV,
            bound_to=("domain", "api_url", "sandbox_url"),
        ),
        ConfigField(
            "template",
            "string",
            label="Template",
            description="Code-interpreter sandbox template name or ID (E2B's own by default; a custom "
            "one must be built on it). It needs node for JavaScript.",
            default=DEFAULT_TEMPLATE,
            minimum=1,
        ),
        ConfigField(
            "domain",
            "string",
            label="Domain",
            description="E2B domain, for self-hosted E2B or another region (the SDK's default when empty).",
            env=DOMAIN_ENV,
        ),
        ConfigField(
            "api_url",
            "url",
            label="API URL",
            description="Control-plane URL, for self-hosted E2B or tests (https://api.<domain> when empty).",
        ),
        ConfigField(
            "sandbox_url",
            "url",
            label="Sandbox URL",
            description="URL every sandbox's envd is reached through, for self-hosted E2B or tests "
            "(derived from the domain when empty).",
        ),
        ConfigField(
            "request_timeout",
            "number",
            label="Request timeout (s)",
            description="Limit of each call to E2B (create, upload, kill, list); the code's own run "
            "is limited by the execution's timeout instead.",
            default=30.0,
            minimum=1,
            maximum=600,
        ),
        ConfigField(
            "sandbox_timeout",
            "integer",
            label="Sandbox lifetime (s)",
            description="E2B kills a sandbox after this many seconds even if the provider could not "
            "(it is raised to the execution's timeout plus a minute when shorter).",
            default=300,
            minimum=30,
            maximum=86400,
        ),
        *input_limit_fields(),
        *pool_config_fields("the VM's other files, installed packages and stray processes"),
        ConfigField(
            "max_output_bytes",
            "integer",
            label="Output limit (bytes)",
            description="Bytes of stdout and of stderr kept; the rest is counted and flagged as truncated.",
            default=DEFAULT_MAX_OUTPUT_BYTES,
            minimum=1024,
            maximum=1 << 30,
        ),
        ConfigField(
            "languages",
            "enum",
            label="Languages",
            description="Languages the template can run; drop javascript when it has no node.",
            choices=LANGUAGES,
            multiple=True,
            default=list(LANGUAGES),
        ),
        ConfigField(
            "runtime_templates",
            "json",
            label="Runtime templates",
            description="Runtime names mapped to E2B template names or IDs, e.g. {\"python\": \"my-data-template\"}: "
            "a request naming a runtime runs in its template; a runtime not listed is refused.",
            default={},
        ),
    ]
)


@hookimpl
def sandbox_provider_info() -> ProviderInfo:
    return ProviderInfo(
        description="E2B code-interpreter sandboxes (Firecracker microVMs): pooled with a fresh code "
        "context per execution, or a fresh sandbox per execution (strict); sessions keep one sandbox "
        "and code context",
        languages=LANGUAGES,
        tags=("saas", "microvm"),
        runtimes=True,
        sessions=True,
        files=True,
        streaming=True,
    )


@hookimpl
def sandbox_config_schema() -> ConfigSchema:
    return SCHEMA


@hookimpl
def sandbox_validate_config(config: Mapping[str, Any]) -> list[FieldProblem]:
    problems: list[FieldProblem] = []
    domain = str(config.get("domain") or "")
    if domain and ("/" in domain or ":" in domain or domain != domain.strip() or "." not in domain):
        problems.append(FieldProblem("domain", f"{domain!r} is not a domain name such as e2b.app (no scheme, port or path)"))
    for name in ("api_url", "sandbox_url"):
        url = config.get(name)
        if url and urlsplit(url).path not in ("", "/"):
            problems.append(FieldProblem(name, f"{url}: give the base URL, without a path"))
    if not config.get("languages"):
        problems.append(FieldProblem("languages", "must name at least one language"))
    return problems


@hookimpl
def sandbox_health(config: Mapping[str, Any]) -> HealthStatus:
    from sandbox_e2b.execution import check_health

    return check_health(config)


@hookimpl
def sandbox_execute(
    request: ExecutionRequest, config: Mapping[str, Any], provider_name: str, on_output: OutputCallback | None
) -> ExecutionResult:
    from sandbox_e2b.execution import execute

    return execute(request, config, provider_name, on_output)


@hookimpl
def sandbox_shutdown() -> None:
    """Kill the pooled sandboxes this process keeps (idle ones now, leased ones when they return)
    and the sessions it opened."""
    POOLS.shutdown()
    OPEN_SESSIONS.end_all()


@hookimpl
def sandbox_session_open(spec: SessionSpec, config: Mapping[str, Any], provider_name: str) -> str:
    from sandbox_e2b import sessions

    return sessions.open_session(spec, config, provider_name)


@hookimpl
def sandbox_session_execute(
    handle: str, request: ExecutionRequest, config: Mapping[str, Any], provider_name: str, on_output: OutputCallback | None
) -> ExecutionResult:
    from sandbox_e2b import sessions

    return sessions.execute(handle, request, config, provider_name, on_output)


@hookimpl
def sandbox_session_upload(handle: str, path: str, data: bytes, config: Mapping[str, Any]) -> None:
    from sandbox_e2b import sessions

    sessions.upload(handle, path, data, config)


@hookimpl
def sandbox_session_download(handle: str, path: str, config: Mapping[str, Any]) -> bytes:
    from sandbox_e2b import sessions

    return sessions.download(handle, path, config)


@hookimpl
def sandbox_session_list_files(handle: str, config: Mapping[str, Any]) -> list[FileInfo]:
    from sandbox_e2b import sessions

    return sessions.list_files(handle, config)


@hookimpl
def sandbox_session_close(handle: str, config: Mapping[str, Any]) -> None:
    from sandbox_e2b import sessions

    sessions.close(handle, config)


@hookimpl
def sandbox_upgrade_config(config: Mapping[str, Any], source: str) -> tuple[dict[str, Any], list[str]] | None:
    """RAGFlow's e2b config (api_key, region, timeout) in this shape."""
    if source != "ragflow":
        return None
    upgraded = dict(config)
    notes: list[str] = []
    if "timeout" in upgraded:
        upgraded.setdefault("request_timeout", upgraded.pop("timeout"))
        notes.append("timeout: renamed to request_timeout")
    if "region" in upgraded:
        region = upgraded.pop("region")
        notes.append(f"region: dropped ({region!r}); E2B picks the region from its domain (set domain for another one)")
    return upgraded, notes
