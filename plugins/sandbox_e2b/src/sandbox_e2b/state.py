"""The provider's process-wide state, light enough for the entry-point module to import.

The pools and the sessions opened here are needed by the ``sandbox_shutdown`` hook (which must
not import the E2B SDK) and by :mod:`sandbox_e2b.pool` and :mod:`sandbox_e2b.sessions`, which fill
them. They live here, so that no module imports the
entry-point module :mod:`sandbox_e2b.provider` back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sandbox_core.pooling import OpenSessions, PoolSet

if TYPE_CHECKING:
    from e2b_code_interpreter import Sandbox

POOLS: PoolSet[Sandbox] = PoolSet(
    ("api_key", "domain", "api_url", "sandbox_url", "template", "request_timeout", "sandbox_timeout"), name="e2b"
)
"""This process's live sandboxes, one pool per account, endpoint, template and pool settings."""

OPEN_SESSIONS = OpenSessions("e2b")
"""The sessions this process opened (:mod:`sandbox_e2b.sessions` fills it); E2B ends them at their
``max_lifetime`` by itself, so they get no deadline here."""
