"""The provider's live E2B sandboxes: created, kept warm between executions, and killed.

One :class:`~sandbox_core.pooling.SandboxPool` per connection configuration (the fields that
decide which account, endpoint and template a sandbox belongs to, and the pool settings), all in
:data:`sandbox_e2b.provider.POOLS`, which the provider's ``sandbox_shutdown`` hook empties. In
``strict`` isolation the pool keeps nothing, so every execution gets a sandbox of its own that is
killed when it ends. The SDK is imported inside the functions.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sandbox_core.pooling import SandboxPool
from sandbox_core.schema import Secret, secret_values

from sandbox_e2b.errors import E2BUnavailableError, describe
from sandbox_e2b.provider import POOLS

if TYPE_CHECKING:
    from e2b_code_interpreter import Sandbox

logger = logging.getLogger(__name__)

SANDBOX_METADATA = {"created_by": "sandbox-core"}
LIFETIME_MARGIN = 60
"""Seconds a sandbox may outlive its execution's timeout before E2B kills it by itself."""

_KEY_FIELDS = ("api_key", "domain", "api_url", "sandbox_url", "template", "request_timeout", "sandbox_timeout")
_POOL_FIELDS = ("isolation", "pool_size", "pool_idle_timeout")


def sdk_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """The connection options every SDK call gets, from the validated config.

    ``debug`` is pinned off so that an ``E2B_DEBUG`` in the environment cannot send the key to
    localhost; empty fields fall back to the SDK's own defaults (and its E2B_* variables).
    """
    api_key = config["api_key"]
    options: dict[str, Any] = {
        "api_key": api_key.reveal() if isinstance(api_key, Secret) else str(api_key),
        "request_timeout": float(config.get("request_timeout") or 30.0),
        "debug": False,
    }
    for name in ("domain", "api_url", "sandbox_url"):
        if config.get(name):
            options[name] = config[name]
    return options


def is_strict(config: Mapping[str, Any]) -> bool:
    return config.get("isolation") == "strict"


def pool_key(config: Mapping[str, Any]) -> str:
    """A fingerprint of what makes sandboxes interchangeable (the key is hashed, never kept)."""
    facts: dict[str, Any] = {}
    for name in (*_KEY_FIELDS, *_POOL_FIELDS):
        value = config.get(name)
        facts[name] = value.reveal() if isinstance(value, Secret) else value
    return hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()


def idle_timeout(config: Mapping[str, Any]) -> float:
    return float(config.get("pool_idle_timeout") or 60.0)


def lifetime(config: Mapping[str, Any], execution_timeout: float) -> int:
    """The E2B lifetime a sandbox gets when leased: the execution, a margin, then its idle time."""
    needed = math.ceil(execution_timeout) + LIFETIME_MARGIN
    if not is_strict(config):
        needed += math.ceil(idle_timeout(config))
    return max(int(config.get("sandbox_timeout") or 300), needed)


def get_pool(config: Mapping[str, Any]) -> SandboxPool[Sandbox]:
    secrets = secret_values(config)
    options = sdk_options(config)
    template = str(config.get("template") or "")
    max_idle = 0 if is_strict(config) else int(config.get("pool_size", 2))

    def create() -> Sandbox:
        from e2b_code_interpreter import Sandbox

        try:
            sandbox = Sandbox.create(
                template=template or None,
                timeout=int(config.get("sandbox_timeout") or 300),
                metadata=dict(SANDBOX_METADATA),
                **options,
            )
        except Exception as exc:
            raise E2BUnavailableError(describe(exc, action="creating a sandbox", secrets=secrets)) from None
        logger.info("created E2B sandbox %s from template %s", sandbox.sandbox_id, template)
        return sandbox

    def destroy(sandbox: Sandbox) -> None:
        kill(sandbox, secrets)

    return POOLS.get(
        pool_key(config),
        lambda: SandboxPool(create, destroy, max_idle=max_idle, idle_timeout=idle_timeout(config), name="e2b"),
    )


def kill(sandbox: Sandbox, secrets: list[str]) -> None:
    """Kill the sandbox; a failure is logged, and E2B still ends it at its lifetime."""
    try:
        killed = sandbox.kill()
    except Exception as exc:
        problem = describe(exc, action=f"killing sandbox {sandbox.sandbox_id}", secrets=secrets)
        logger.warning("%s; E2B ends it when its lifetime runs out", problem.message)
    else:
        logger.info("%s E2B sandbox %s", "killed" if killed else "already gone:", sandbox.sandbox_id)
