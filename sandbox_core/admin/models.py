"""Request and response bodies of the admin API (they make up its OpenAPI document)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Body(BaseModel):
    # Strict: a JSON API takes JSON types, so "yes" or 1 is no boolean and 5 is no etag.
    model_config = ConfigDict(extra="forbid", strict=True)


class FieldError(BaseModel):
    field: str = Field(description="Dotted path of the refused field; empty when the problem concerns the whole config.")
    message: str


class ErrorBody(BaseModel):
    """Every error response: a message a person can act on and, for 422, one entry per refused field."""

    detail: str
    errors: list[FieldError] = Field(default_factory=list)


class ProviderOut(BaseModel):
    name: str
    package: str
    version: str
    status: str = Field(description="available, loaded, broken, incompatible, duplicate or disabled.")
    error: str | None = Field(description="Why the provider cannot be used, when it cannot.")
    description: str
    tags: list[str]
    languages: list[str]
    active: bool
    configured: bool = Field(description="Whether a config is saved for this provider.")


class ProviderList(BaseModel):
    providers: list[ProviderOut]
    active: str | None = Field(description="The active provider's name, null when none is selected.")
    encryption_at_rest: bool = Field(description="Whether saved secrets are encrypted (SANDBOX_SECRET_KEY is set).")


class ConfigOut(BaseModel):
    provider: str
    active: bool
    config: dict[str, Any] = Field(description="The saved config; every set secret reads '********'.")
    secret_fields: list[str]
    etag: str = Field(description="Identifies this saved version; send it back as `etag` to refuse overwriting a newer save.")


class SavedConfig(ConfigOut):
    changed: list[str] = Field(description="Names of the fields whose value changed (never their values).")


class SaveConfigIn(_Body):
    config: dict[str, Any] = Field(
        description="The whole config. A secret sent back as '********' keeps the saved secret."
    )
    activate: bool = Field(default=False, description="Also make this the active provider.")
    etag: str | None = Field(
        default=None,
        max_length=128,
        description="The etag read with the config; if the saved config changed since, the save is refused with 409.",
    )


class TestConnectionIn(_Body):
    config: dict[str, Any] = Field(
        description="The config to test (not saved). A secret sent as '********' uses the saved secret."
    )


class TestConnectionOut(BaseModel):
    success: bool = Field(description="Whether the probe ran and exited with code 0.")
    status: str = Field(description="The probe's execution status (success, error, timeout, provider_error, ...).")
    message: str
    exit_code: int | None
    execution_time: float = Field(description="Seconds.")
    stdout: str
    stderr: str
    language: str


class RuntimeOut(BaseModel):
    name: str
    language: str | None
    available: bool
    packages: dict[str, str] = Field(description="Package name → version.")
    preload: list[str] = Field(description="Modules its sandboxes import before their job.")
    restore: dict[str, Any] | None = Field(
        description="How its warm sandboxes are made from a checkpoint (state, counters, last error), when the provider does that."
    )
    error: str | None


class HealthOut(BaseModel):
    provider: str | None = Field(description="The active provider, null when none is selected.")
    healthy: bool
    message: str
    latency: float | None = Field(description="Seconds the health check took.")
    runtimes: list[RuntimeOut] = Field(description="The runtimes (package sets) the provider reports, if any.")
