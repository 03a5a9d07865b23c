"""The provider's live E2B sandboxes: created, kept warm between executions, and killed.

One :class:`~sandbox_core.pooling.SandboxPool` per connection configuration (the fields that
decide which account, endpoint and template a sandbox belongs to, and the pool settings), all in
:data:`sandbox_e2b.state.POOLS`, which the provider's ``sandbox_shutdown`` hook empties
(sandbox-core's :meth:`~sandbox_core.pooling.PoolSet.for_config` keys and sizes them). In
``strict`` isolation the pool keeps nothing, so every execution gets a sandbox of its own that is
killed when it ends. The SDK is imported inside the functions.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sandbox_core.pooling import SandboxPool, is_strict
from sandbox_core.schema import Secret, secret_values
from sandbox_e2b.errors import E2BUnavailableError, describe
from sandbox_e2b.state import POOLS

if TYPE_CHECKING:
    from e2b_code_interpreter import Sandbox

logger = logging.getLogger(__name__)

SANDBOX_METADATA = {"created_by": "sandbox-core"}
LIFETIME_MARGIN = 60
"""Seconds a sandbox may outlive its execution's timeout before E2B kills it by itself."""


def sdk_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """The connection options every SDK call gets, from the validated config.

    ``debug`` is pinned off so that an ``E2B_DEBUG`` in the environment cannot send the key to
    localhost; empty fields fall back to the SDK's own defaults (and its E2B_* variables).
    """
    api_key = config["api_key"]
    options: dict[str, Any] = {
        "api_key": api_key.reveal() if isinstance(api_key, Secret) else str(api_key),
        "request_timeout": float(config["request_timeout"]),
        "debug": False,
    }
    for name in ("domain", "api_url", "sandbox_url"):
        if config.get(name):
            options[name] = config[name]
    return options


def lifetime(config: Mapping[str, Any], execution_timeout: float) -> int:
    """The E2B lifetime a sandbox gets when leased: the execution, a margin, then its idle time."""
    needed = math.ceil(execution_timeout) + LIFETIME_MARGIN
    if not is_strict(config):
        needed += math.ceil(config["pool_idle_timeout"])
    return max(int(config["sandbox_timeout"]), needed)


def get_pool(config: Mapping[str, Any]) -> SandboxPool[Sandbox]:
    """The pool serving the validated ``config`` in this process, made on first use."""
    secrets = secret_values(config)
    options = sdk_options(config)
    template = str(config["template"])

    def create() -> Sandbox:
        from e2b_code_interpreter import Sandbox

        try:
            sandbox = Sandbox.create(
                template=template,
                timeout=int(config["sandbox_timeout"]),
                metadata=dict(SANDBOX_METADATA),
                **options,
            )
        except Exception as exc:
            raise E2BUnavailableError(describe(exc, action="creating a sandbox", secrets=secrets)) from None
        logger.info("created E2B sandbox %s from template %s", sandbox.sandbox_id, template)
        return sandbox

    def destroy(sandbox: Sandbox) -> None:
        kill(sandbox, secrets)

    return POOLS.for_config(config, create, destroy)


def kill(sandbox: Sandbox, secrets: list[str]) -> None:
    """Kill the sandbox; a failure is logged, and E2B still ends it at its lifetime."""
    try:
        killed = sandbox.kill()
    except Exception as exc:
        problem = describe(exc, action=f"killing sandbox {sandbox.sandbox_id}", secrets=secrets)
        logger.warning("%s; E2B ends it when its lifetime runs out", problem.message)
    else:
        logger.info("%s E2B sandbox %s", "killed" if killed else "already gone:", sandbox.sandbox_id)
