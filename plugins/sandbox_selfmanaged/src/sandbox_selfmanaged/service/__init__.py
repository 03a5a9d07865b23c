"""The sandbox-executor HTTP service (FastAPI): build it with :func:`create_app`.

Modules: :mod:`.app` (routes), :mod:`.models` (request/response schemas), :mod:`.gate` (bearer
token and body-size checks, before any body is read), :mod:`.admission` (bounded queue and
back-pressure), :mod:`.metrics` (Prometheus), :mod:`.ragflow` (RAGFlow's ``/run`` shape).
"""

from __future__ import annotations

from sandbox_selfmanaged.service.app import ServiceConfig, create_app

__all__ = ["ServiceConfig", "create_app"]
