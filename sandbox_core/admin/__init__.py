"""The admin HTTP API and settings page of sandbox-core (the ``admin`` extra).

For operators: the ``sandbox admin`` command (:mod:`sandbox_core.admin.cli`). For applications
that mount the API in their own server: :func:`create_app` (:mod:`sandbox_core.admin.app`).
:mod:`~sandbox_core.admin.service` holds the operations without HTTP, :mod:`~sandbox_core.admin.models`
the request and response bodies, :mod:`~sandbox_core.admin.auth` the bearer-token check; the page's
HTML, JavaScript and CSS are in ``static/``.

Importing this package imports neither FastAPI nor any provider.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandbox_core.admin.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from sandbox_core.admin.app import create_app

        return create_app
    raise AttributeError(f"module 'sandbox_core.admin' has no attribute {name!r}")
