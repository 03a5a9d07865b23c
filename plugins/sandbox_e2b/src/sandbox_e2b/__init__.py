"""sandbox-e2b: the ``e2b`` provider of sandbox-core, running code in E2B cloud sandboxes.

Which module is for whom:

- :mod:`sandbox_e2b.provider` — the hooks sandbox-core loads (entry point ``e2b``) and the config
  schema. Light: it never imports the E2B SDK, which takes over a second to import.
- :mod:`sandbox_e2b.execution` — one execution on a leased sandbox (a fresh code context, a
  per-execution folder), and the health probe.
- :mod:`sandbox_e2b.pool` — the live sandboxes: creation, the warm pool, killing them.
  These two import the SDK, inside their functions.
- :mod:`sandbox_e2b.sessions` — stateful sessions: a sandbox with one persistent code context,
  files through envd.
- :mod:`sandbox_e2b.output` — the output captures, and the events they pass on while code runs.
- :mod:`sandbox_e2b.state` — the process-wide pools, shared by the hooks and :mod:`~sandbox_e2b.pool`
  (no module imports the entry-point module).
- :mod:`sandbox_e2b.deadline` — the execution's own timeout around the SDK's blocking call.
- :mod:`sandbox_e2b.errors` — turning SDK exceptions into messages and failure kinds.
"""

from __future__ import annotations

__version__ = "0.1.0"

PROVIDER_NAME = "e2b"
RUNTIME_NAME = "e2b"
DEFAULT_TEMPLATE = "code-interpreter-v1"
"""The code-interpreter SDK's own default template (``DEFAULT_TEMPLATE``); a test keeps them equal."""
