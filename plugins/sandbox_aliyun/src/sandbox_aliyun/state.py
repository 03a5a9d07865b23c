"""The provider's process-wide state, light enough for the entry-point module to import.

The pools, the sessions opened here, the list of sandboxes whose deletion failed and the
credential variables are needed by the hooks (``sandbox_shutdown`` empties the pools without importing agentrun-sdk) and by the
modules that do the work (:mod:`~sandbox_aliyun.pool`, :mod:`~sandbox_aliyun.session`,
:mod:`~sandbox_aliyun.execution`). They live here, so that no module imports the entry-point
module :mod:`sandbox_aliyun.provider` back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sandbox_core.pooling import OpenSessions, PendingDestroys, PoolSet

if TYPE_CHECKING:
    from sandbox_aliyun.session import InterpreterSandbox

CREDENTIAL_VARIABLES = {
    "access_key_id": "AGENTRUN_ACCESS_KEY_ID",
    "access_key_secret": "AGENTRUN_ACCESS_KEY_SECRET",
    "account_id": "AGENTRUN_ACCOUNT_ID",
}
"""Credential fields that fall back to these environment variables when the config leaves them empty."""
PENDING_DELETES: PendingDestroys[InterpreterSandbox] = PendingDestroys(
    lambda sandbox: sandbox.delete(attempts=1), label=lambda sandbox: str(sandbox.sandbox_id), name="aliyun"
)
"""Sandboxes whose deletion AgentRun refused (throttling, an outage): retried in the background with
backoff until gone (or until the service's idle timeout reclaims them), once more at shutdown, and
listed in the health details meanwhile."""
POOLS: PoolSet[InterpreterSandbox] = PoolSet(
    (*CREDENTIAL_VARIABLES, "region", "template_name", "endpoint", "sandbox_idle_timeout"),
    name="aliyun",
    pending=PENDING_DELETES,
)
"""This process's warm sandboxes, one pool per account, key, template and pool settings (with the
credentials as resolved, config or environment); :mod:`sandbox_aliyun.pool` fills it."""
OPEN_SESSIONS = OpenSessions("aliyun")
"""The sessions this process opened (:mod:`sandbox_aliyun.sessions` fills it), each deleted at its
``max_lifetime`` by a deadline thread (AgentRun has no lifetime cap of its own) or at shutdown."""
