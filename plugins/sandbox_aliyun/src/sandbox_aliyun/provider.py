"""The ``aliyun_codeinterpreter`` provider: sandbox-core's hooks for AgentRun's code interpreter.

This is the entry-point module sandbox-core loads, also just to list providers or show the config
form, so it stays light: agentrun-sdk takes seconds to import and is imported only by
:mod:`sandbox_aliyun.session`, which the execute and health hooks import when they run. No module
imports this one: the state it shares with them lives in :mod:`sandbox_aliyun.state`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from sandbox_aliyun.limits import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_OUTPUT_BYTES,
    DEFAULT_POOL_SIZE,
    HARD_TIMEOUT,
    MAX_OUTPUT_BYTES,
    MAX_POOL_SIZE,
)
from sandbox_aliyun.state import CREDENTIAL_VARIABLES, OPEN_SESSIONS, POOLS
from sandbox_core.errors import FieldProblem
from sandbox_core.files import input_limit_fields
from sandbox_core.hookspecs import hookimpl
from sandbox_core.model import ExecutionRequest, ExecutionResult, HealthStatus, ProviderInfo
from sandbox_core.pooling import pool_config_fields
from sandbox_core.schema import ConfigField, ConfigSchema
from sandbox_core.sessions import FileInfo, SessionSpec
from sandbox_core.timeouts import TimeoutSettings

REGIONS = ("cn-hangzhou", "cn-shanghai", "cn-beijing", "cn-shenzhen", "cn-hongkong", "ap-southeast-1")
"""Regions offered in the form; the first is the SDK's default."""
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
ACCESS_KEY_ID = re.compile(r"LTAI[A-Za-z0-9]{8,40}|STS\.[A-Za-z0-9]{8,64}|[A-Za-z0-9]{16,24}")
"""Long-term RAM key ids are ``LTAI`` and letters and digits (16 or 24 characters in all), STS ones
start with ``STS.``; other ids of 16 to 24 letters and digits are let through, as older keys may
have them. What fails is whitespace, punctuation and the 30-character shape of a secret."""
SECRET_SHAPE = re.compile(r"[A-Za-z0-9]{30}")
"""An AccessKey secret: 30 letters and digits (recognised so that a pasted one gets a clear message)."""
FROM_ENV = " Leave it empty to use {variable} from the environment of the process that runs the code; a value here wins."

TIMEOUTS = TimeoutSettings(
    maximum=HARD_TIMEOUT,
    maximum_reason=f"AgentRun stops every execution after {HARD_TIMEOUT:g}s",
    maximum_setting="timeout",
)
"""The core caps timeouts at AgentRun's limit and the config's ``timeout`` (the result says so)."""

SCHEMA = ConfigSchema(
    [
        ConfigField(
            "access_key_id",
            "string",
            label="AccessKey ID",
            description="The RAM access key's id (an identifier, shown in messages; the secret is the next field)."
            + FROM_ENV.format(variable="AGENTRUN_ACCESS_KEY_ID"),
            env="AGENTRUN_ACCESS_KEY_ID",
        ),
        ConfigField(
            "access_key_secret",
            "secret",
            label="AccessKey secret",
            description="The access key's secret: masked wherever a config is shown (encrypted at rest when "
            "SANDBOX_SECRET_KEY is set)." + FROM_ENV.format(variable="AGENTRUN_ACCESS_KEY_SECRET"),
            env="AGENTRUN_ACCESS_KEY_SECRET",
            bound_to=("account_id", "region", "endpoint"),
        ),
        ConfigField(
            "account_id",
            "string",
            label="Account ID",
            description="The Alibaba Cloud primary account id (digits) that owns the AgentRun resources."
            + FROM_ENV.format(variable="AGENTRUN_ACCOUNT_ID"),
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
            "the provider's sandboxes are started from it.",
            required=True,
            env="AGENTRUN_TEMPLATE_NAME",
        ),
        ConfigField(
            "runtime_templates",
            "json",
            label="Runtime templates",
            description="Runtime names mapped to AgentRun code-interpreter template names, e.g. {\"python\": \"my-data-template\"}: "
            "a request naming a runtime runs in its template; a runtime not listed is refused.",
            default={},
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
            description=f"Upper bound of an execution's wall time, at most {HARD_TIMEOUT:g}: AgentRun stops every "
            f"execution after {HARD_TIMEOUT:g}s. Executions asking for more are clamped and the result says so.",
            default=HARD_TIMEOUT,
            minimum=1,
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
        *input_limit_fields(),
        *pool_config_fields(
            "files outside the job folder, installed packages and processes that escape the job's process group",
            default_size=DEFAULT_POOL_SIZE,
            max_size=MAX_POOL_SIZE,
        ),
        ConfigField(
            "sandbox_idle_timeout",
            "integer",
            label="Service idle timeout (s)",
            description="The service deletes a sandbox idle for this long: the safety net when the provider "
            "could not (a failed delete, a killed process). Must exceed the pool idle timeout.",
            default=DEFAULT_IDLE_TIMEOUT,
            minimum=30,
            maximum=3600,
        ),
    ]
)


@hookimpl
def sandbox_provider_info() -> ProviderInfo:
    return ProviderInfo(
        description="Alibaba Cloud AgentRun code interpreter: warm serverless sandboxes, a fresh context per execution (30 s limit)",
        languages=("python", "javascript"),
        tags=("saas", "aliyun"),
        runtimes=True,
        timeouts=TIMEOUTS,
        sessions=True,
        files=True,
    )


@hookimpl
def sandbox_config_schema() -> ConfigSchema:
    return SCHEMA


@hookimpl
def sandbox_validate_config(config: Mapping[str, Any]) -> list[FieldProblem]:
    problems = []
    for field, variable in CREDENTIAL_VARIABLES.items():
        if not config.get(field) and not os.environ.get(variable, "").strip():
            problems.append(FieldProblem(field, f"is required: set it in this config or export {variable}"))
    problem = _access_key_id_problem(config)
    if problem is not None:
        problems.append(problem)
    account_id = config.get("account_id") or os.environ.get("AGENTRUN_ACCOUNT_ID", "").strip()
    if account_id and not str(account_id).strip().isdigit():
        problems.append(FieldProblem("account_id", "must be the numeric Alibaba Cloud account id (digits only)"))
    if config["timeout"] > HARD_TIMEOUT:
        problems.append(
            FieldProblem(
                "timeout",
                f"is {config['timeout']:g}s, but AgentRun stops every execution after {HARD_TIMEOUT:g}s: "
                f"set {HARD_TIMEOUT:g} or less",
            )
        )
    endpoint = config.get("endpoint")
    if endpoint:
        parts = urlsplit(endpoint)
        if parts.scheme == "http" and (parts.hostname or "") not in LOOPBACK_HOSTS:
            problems.append(
                FieldProblem("endpoint", "plain http is only allowed to this machine (127.0.0.1, localhost); use https")
            )
    if config["sandbox_idle_timeout"] <= config["pool_idle_timeout"]:
        problems.append(
            FieldProblem(
                "sandbox_idle_timeout",
                f"must exceed pool_idle_timeout ({config['pool_idle_timeout']:g}s), or the service could delete "
                "a pooled sandbox the provider is about to use",
            )
        )
    return problems


def _access_key_id_problem(config: Mapping[str, Any]) -> FieldProblem | None:
    """What is wrong with the access key id (from the config, else the environment), never quoting it."""
    key_id = str(config.get("access_key_id") or "")
    where = "" if key_id else " (from AGENTRUN_ACCESS_KEY_ID)"
    key_id = key_id or os.environ.get("AGENTRUN_ACCESS_KEY_ID", "").strip()
    if not key_id or ACCESS_KEY_ID.fullmatch(key_id):
        return None
    if SECRET_SHAPE.fullmatch(key_id):
        return FieldProblem(
            "access_key_id",
            f"looks like an AccessKey secret{where}: put the key's id here (LTAI…) and its secret in access_key_secret",
        )
    return FieldProblem(
        "access_key_id",
        f"is not an AccessKey ID{where}: letters and digits such as LTAI…, or STS.… for a temporary key, "
        "without spaces or quotes",
    )


@hookimpl
def sandbox_health(config: Mapping[str, Any]) -> HealthStatus:
    from sandbox_aliyun import execution

    return execution.probe(config)


@hookimpl
def sandbox_execute(request: ExecutionRequest, config: Mapping[str, Any], provider_name: str) -> ExecutionResult:
    from sandbox_aliyun import execution

    return execution.run(request, config, provider_name)


@hookimpl
def sandbox_shutdown() -> None:
    """Delete every pooled sandbox and every session this process opened, and retry those whose
    deletion failed earlier."""
    OPEN_SESSIONS.end_all()
    POOLS.shutdown()


@hookimpl
def sandbox_session_open(spec: SessionSpec, config: Mapping[str, Any], provider_name: str) -> str:
    from sandbox_aliyun import sessions

    return sessions.open_session(spec, config, provider_name)


@hookimpl
def sandbox_session_execute(
    handle: str, request: ExecutionRequest, config: Mapping[str, Any], provider_name: str
) -> ExecutionResult:
    from sandbox_aliyun import sessions

    return sessions.execute(handle, request, config, provider_name)


@hookimpl
def sandbox_session_upload(handle: str, path: str, data: bytes, config: Mapping[str, Any]) -> None:
    from sandbox_aliyun import sessions

    sessions.upload(handle, path, data, config)


@hookimpl
def sandbox_session_download(handle: str, path: str, config: Mapping[str, Any]) -> bytes:
    from sandbox_aliyun import sessions

    return sessions.download(handle, path, config)


@hookimpl
def sandbox_session_list_files(handle: str, config: Mapping[str, Any]) -> list[FileInfo]:
    from sandbox_aliyun import sessions

    return sessions.list_files(handle, config)


@hookimpl
def sandbox_session_close(handle: str, config: Mapping[str, Any]) -> None:
    from sandbox_aliyun import sessions

    sessions.close(handle, config)


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
