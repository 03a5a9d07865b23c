"""What the admin tests share: the token and an in-test provider with a secret field."""

from __future__ import annotations

from typing import Any

import attrs

from sandbox_core import ExecutionRequest, ExecutionResult, hookimpl
from sandbox_core.errors import FieldProblem
from sandbox_core.model import HealthStatus, ProviderInfo
from sandbox_core.schema import ConfigField, ConfigSchema
from sandbox_core.testing import UnsandboxedSubprocessProvider

TOKEN = "admin-token-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
REFUSED_TOKEN = "wrong-token-123"
"""An api_token value the guarded provider's own checks refuse, quoting it (to test scrubbing)."""


class GuardedLocalProvider(UnsandboxedSubprocessProvider):
    """The local subprocess provider behind an API token, as a remote backend would be.

    Its schema has one field of every kind the admin page renders. With ``verbose`` on, its
    results echo the token in stderr, as a careless backend might.
    """

    @hookimpl
    def sandbox_provider_info(self) -> ProviderInfo:
        return ProviderInfo(
            description="Local subprocess behind an API token (tests only)", tags=("testing", "token"), languages=("python",)
        )

    @hookimpl
    def sandbox_config_schema(self) -> ConfigSchema:
        local = UnsandboxedSubprocessProvider.sandbox_config_schema(self)
        return ConfigSchema(
            [
                ConfigField("api_token", "secret", label="API token", required=True, env="GUARDED_TOKEN"),
                ConfigField("endpoints", "url", label="Endpoints", multiple=True, description="Backend base URLs."),
                ConfigField("region", "enum", label="Region", choices=("eu-west", "us-east"), default="eu-west"),
                ConfigField("verbose", "boolean", label="Verbose results", default=False),
                ConfigField("labels", "json", label="Labels"),
                *local.fields,
            ]
        )

    @hookimpl
    def sandbox_validate_config(self, config: Any) -> list[FieldProblem]:
        problems = UnsandboxedSubprocessProvider.sandbox_validate_config(self, config)
        token = config["api_token"].reveal()
        if token == REFUSED_TOKEN:
            problems.append(FieldProblem("api_token", f"the backend refuses the token {token}"))
        return problems

    @hookimpl
    def sandbox_health(self, config: Any) -> HealthStatus:
        """Healthy, with runtimes as the self-managed provider reports them (a broken one echoes the token when verbose)."""
        broken = "build failed: no such package" + (f" (token {config['api_token'].reveal()})" if config.get("verbose") else "")
        runtimes = {
            "python": {
                "available": True,
                "language": "python",
                "packages": {"numpy": "2.4.6", "pandas": "3.1.1"},
                "preload": ["numpy", "pandas"],
                "restore": {"state": "ready", "restores": 5, "plain_boots": 1, "failures": 0, "error": None},
                "error": None,
            },
            "broken": {"available": False, "language": "python", "packages": {}, "error": broken},
        }
        return HealthStatus(healthy=True, message="guarded backend answered", latency=0.01, details={"runtimes": runtimes})

    @hookimpl
    def sandbox_execute(self, request: ExecutionRequest, config: Any, provider_name: str) -> ExecutionResult:
        result = self._run(request, config, provider_name)
        if config.get("verbose"):
            result = attrs.evolve(result, stderr=result.stderr + f"authenticated with {config['api_token'].reveal()}\n")
        return result
