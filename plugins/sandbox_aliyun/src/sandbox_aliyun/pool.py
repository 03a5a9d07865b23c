"""The provider's warm sandboxes: one pool per connection and pool settings, for this process.

A sandbox takes seconds to create, so in ``pooled`` isolation an execution borrows a live one and
gives it back when it ended cleanly; in ``strict`` isolation (``max_idle=0``) every execution gets
a new sandbox that is deleted afterwards. The pools live in :data:`sandbox_aliyun.provider.POOLS`,
which the provider's ``sandbox_shutdown`` hook (and interpreter exit) empties.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from typing import Any

from sandbox_aliyun.limits import READY_TIMEOUT, SANDBOX_HTTP_TIMEOUT
from sandbox_aliyun.session import Connection, InterpreterSandbox
from sandbox_aliyun.provider import POOLS
from sandbox_core.pooling import SandboxPool


def pool_key(connection: Connection, config: Mapping[str, Any]) -> tuple[Any, ...]:
    """What makes two configs share sandboxes: the same account, key, template and pool settings.

    The secret is part of it only as a digest, so a changed secret gets new sandboxes.
    """
    secret = hashlib.sha256(connection.access_key_secret.reveal().encode("utf-8")).hexdigest()
    return (
        connection.access_key_id,
        secret,
        connection.account_id,
        connection.region,
        connection.template_name,
        connection.endpoint,
        connection.idle_timeout,
        config["isolation"],
        int(config["pool_size"]),
        float(config["pool_idle_timeout"]),
    )


def pool_for(connection: Connection, config: Mapping[str, Any]) -> SandboxPool[InterpreterSandbox]:
    """The pool serving ``config`` in this process, made on first use."""

    def create() -> InterpreterSandbox:
        return InterpreterSandbox.open(connection, SANDBOX_HTTP_TIMEOUT, time.monotonic() + READY_TIMEOUT)

    def make() -> SandboxPool[InterpreterSandbox]:
        strict = config["isolation"] == "strict"
        return SandboxPool(
            create,
            InterpreterSandbox.release,
            max_idle=0 if strict else int(config["pool_size"]),
            idle_timeout=float(config["pool_idle_timeout"]),
            name="aliyun",
        )

    return POOLS.get(pool_key(connection, config), make)
