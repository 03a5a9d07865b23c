"""The ``aliyun_codeinterpreter`` provider: sandbox-core's hooks for AgentRun's code interpreter.

This is the entry-point module sandbox-core loads, also just to list providers or show the config
form, so it stays light: agentrun-sdk takes seconds to import and is imported only by
:mod:`sandbox_aliyun.session`, which the execute and health hooks import when they run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from sandbox_aliyun.limits import DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_OUTPUT_BYTES, HARD_TIMEOUT, MAX_OUTPUT_BYTES
from sandbox_core.errors import FieldProblem
from sandbox_core.hookspecs import hookimpl
from sandbox_core.model import ExecutionRequest, ExecutionResult, HealthStatus, ProviderInfo
from sandbox_core.schema import ConfigField, ConfigSchema

REGIONS = ("cn-hangzhou", "cn-shanghai", "cn-beijing", "cn-shenzhen", "cn-hongkong", "ap-southeast-1")
"""Regions offered in the form; the first is the SDK's default."""
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})

SCHEMA = ConfigSchema(
    [
        ConfigField(
            "access_key_id",
            "string",
            label="AccessKey ID",
            description="The RAM access key's id (an identifier, shown in messages; the secret is the next field).",
            required=True,
            env="AGENTRUN_ACCESS_KEY_ID",
        ),
        ConfigField(
            "access_key_secret",
            "secret",
            label="AccessKey secret",
            description="The access key's secret: masked wherever a config is shown (encrypted at rest when "
            "SANDBOX_SECRET_KEY is set).",
            required=True,
            env="AGENTRUN_ACCESS_KEY_SECRET",
        ),
        ConfigField(
            "account_id",
            "string",
            label="Account ID",
            description="The Alibaba Cloud primary account id (digits) that owns the AgentRun resources.",
            required=True,
            env="AGENTRUN_ACCOUNT_ID",
        ),
        ConfigField(
            "region",
            "enum",
            label="Region",
            description="Where the template lives and sandboxes run.",
            default=REGIONS[0],
            choices=REGIONS,
            env="AGENTRUN_REGION",
        ),
        ConfigField(
            "template_name",
            "string",
            label="Code interpreter template",
            description="Name of a CodeInterpreter sandbox template created in the AgentRun console; "
            "every execution starts a fresh sandbox from it.",
            required=True,
            env="AGENTRUN_TEMPLATE_NAME",
        ),
        ConfigField(
            "endpoint",
            "url",
            label="Data endpoint override",
            description="Leave empty for https://ACCOUNT.agentrun-data.REGION.aliyuncs.com. Set it for a VPC "
            "endpoint, a proxy, or a local test server.",
        ),
        ConfigField(
            "timeout",
            "number",
            label="Longest timeout (s)",
            description=f"Upper bound of an execution's wall time. AgentRun stops executions after "
            f"{HARD_TIMEOUT:g}s whatever is asked; longer requests are clamped and the result says so.",
            default=HARD_TIMEOUT,
            minimum=1,
            maximum=HARD_TIMEOUT,
        ),
        ConfigField(
            "max_output_bytes",
            "integer",
            label="Output limit (bytes)",
            description="Bytes of stdout and of stderr kept; more is cut and flagged.",
            default=DEFAULT_MAX_OUTPUT_BYTES,
            minimum=1024,
            maximum=MAX_OUTPUT_BYTES,
        ),
        ConfigField(
            "sandbox_idle_timeout",
            "integer",
            label="Sandbox idle timeout (s)",
            description="Each sandbox is deleted after its execution; if that delete fails, the service "
            "reclaims the sandbox after this many idle seconds.",
            default=DEFAULT_IDLE_TIMEOUT,
            minimum=30,
            maximum=3600,
        ),
    ]
)


@hookimpl
def sandbox_provider_info() -> ProviderInfo:
    return ProviderInfo(
        description="Alibaba Cloud AgentRun code interpreter: a fresh serverless sandbox per execution (30 s limit)",
        languages=("python", "javascript"),
        tags=("saas", "aliyun"),
    )


@hookimpl
def sandbox_config_schema() -> ConfigSchema:
    return SCHEMA


@hookimpl
def sandbox_validate_config(config: Mapping[str, Any]) -> list[FieldProblem]:
    problems = []
    if not str(config["account_id"]).strip().isdigit():
        problems.append(FieldProblem("account_id", "must be the numeric Alibaba Cloud account id (digits only)"))
    endpoint = config.get("endpoint")
    if endpoint:
        parts = urlsplit(endpoint)
        if parts.scheme == "http" and (parts.hostname or "") not in LOOPBACK_HOSTS:
            problems.append(
                FieldProblem("endpoint", "plain http is only allowed to this machine (127.0.0.1, localhost); use https")
            )
    return problems


@hookimpl
def sandbox_health(config: Mapping[str, Any]) -> HealthStatus:
    from sandbox_aliyun import execution

    return execution.probe(config)


@hookimpl
def sandbox_execute(request: ExecutionRequest, config: Mapping[str, Any], provider_name: str) -> ExecutionResult:
    from sandbox_aliyun import execution

    return execution.run(request, config, provider_name)


@hookimpl
def sandbox_upgrade_config(config: Mapping[str, Any], source: str) -> tuple[dict[str, Any], list[str]] | None:
    """RAGFlow's aliyun_codeinterpreter config in this shape (same key names, stricter values)."""
    if source != "ragflow":
        return None
    upgraded = dict(config)
    notes: list[str] = []
    if not upgraded.get("template_name"):
        upgraded.pop("template_name", None)
        notes.append(
            "template_name: empty in RAGFlow (it created ragflow-<language>-default templates); "
            "set the name of a CodeInterpreter template"
        )
    timeout = upgraded.get("timeout")
    if isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and timeout > HARD_TIMEOUT:
        upgraded["timeout"] = HARD_TIMEOUT
        notes.append(f"timeout: {timeout:g} lowered to {HARD_TIMEOUT:g}, AgentRun's limit")
    return upgraded, notes
