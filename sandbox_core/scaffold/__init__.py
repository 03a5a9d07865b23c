"""Provider-package templates for ``sandbox provider new`` (for provider authors).

:func:`new_provider` writes a complete provider package (entry point, hooks on the runner
protocol, ``py.typed``, README, conformance tests) that passes the conformance kit as generated.
The templates are package data under ``templates/``; see :mod:`sandbox_core.scaffold.generate`.
"""

from __future__ import annotations

from sandbox_core.scaffold.generate import (
    GeneratedPackage,
    ProviderNames,
    ScaffoldError,
    core_requirement,
    new_provider,
)

__all__ = ["GeneratedPackage", "ProviderNames", "ScaffoldError", "core_requirement", "new_provider"]
