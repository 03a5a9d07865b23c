"""sandbox-selfmanaged: the ``self_managed`` provider and the ``sandbox-executor`` gVisor service.

Which module is for whom:

- :mod:`sandbox_selfmanaged.provider` — the provider hooks sandbox-core loads (entry point
  ``self_managed``); light, it imports no service stack. :mod:`~sandbox_selfmanaged.client` is
  its HTTP client that spreads load over executors and fails over.
- :mod:`sandbox_selfmanaged.cli` — the ``sandbox-executor`` command;
  :mod:`~sandbox_selfmanaged.service` its HTTP API (FastAPI).
- :mod:`sandbox_selfmanaged.engine` — the sandbox engine the service drives: warm pool
  (:mod:`~sandbox_selfmanaged.pool`), one sandbox lifecycle (:mod:`~sandbox_selfmanaged.sandbox`),
  ``runsc`` (:mod:`~sandbox_selfmanaged.runsc`), OCI bundles (:mod:`~sandbox_selfmanaged.oci`),
  the minimal root filesystem (:mod:`~sandbox_selfmanaged.rootfs`), cgroups
  (:mod:`~sandbox_selfmanaged.cgroups`) and child processes (:mod:`~sandbox_selfmanaged.procs`).
- :mod:`sandbox_selfmanaged.limits` — execution limits, their defaults and operator maximums.
- :mod:`sandbox_selfmanaged.runtimes` — runtimes (package sets) sandboxes can be given: their
  definitions and builds; :mod:`~sandbox_selfmanaged.runtime_builder` builds one,
  :mod:`~sandbox_selfmanaged.runtime_store` keeps them in the cache,
  :mod:`~sandbox_selfmanaged.served_runtimes` is the engine's view of those it serves, and
  :mod:`~sandbox_selfmanaged.runtime_cli` the ``sandbox-executor runtime`` command.
"""

from __future__ import annotations

__version__ = "0.1.0"

PROVIDER_NAME = "self_managed"
RUNTIME_NAME = "gvisor"
EVENTS_MEDIA_TYPE = "application/x-ndjson"
"""The media type of the executor's output-event stream (see :mod:`sandbox_selfmanaged.service.events`)."""
