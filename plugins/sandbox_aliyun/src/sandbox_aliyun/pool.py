"""The provider's warm sandboxes: the pool serving a connection and its pool settings, in this process.

A sandbox takes seconds to create, so in ``pooled`` isolation an execution borrows a live one and
gives it back when it ended cleanly; in ``strict`` isolation every execution gets a new sandbox
that is deleted afterwards. The pools live in :data:`sandbox_aliyun.state.POOLS`, which the
provider's ``sandbox_shutdown`` hook (and interpreter exit) empties; sandbox-core's
:meth:`~sandbox_core.pooling.PoolSet.for_config` keys and sizes them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from sandbox_aliyun.limits import READY_TIMEOUT, SANDBOX_HTTP_TIMEOUT
from sandbox_aliyun.session import Connection, InterpreterSandbox
from sandbox_aliyun.state import POOLS
from sandbox_core.pooling import SandboxPool


def pool_for(connection: Connection, config: Mapping[str, Any]) -> SandboxPool[InterpreterSandbox]:
    """The pool serving ``config`` in this process, made on first use.

    Its key holds the credentials as ``connection`` resolved them (from the config or the
    environment), so a key changed in either place gets new sandboxes.
    """
    resolved = {
        **config,
        "access_key_id": connection.access_key_id,
        "access_key_secret": connection.access_key_secret,
        "account_id": connection.account_id,
    }

    def create() -> InterpreterSandbox:
        return InterpreterSandbox.open(connection, SANDBOX_HTTP_TIMEOUT, time.monotonic() + READY_TIMEOUT)

    return POOLS.for_config(resolved, create, InterpreterSandbox.release)
