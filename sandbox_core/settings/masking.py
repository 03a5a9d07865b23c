"""Hide secret fields of a provider config before it is shown anywhere."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

MASK = "********"
"""What a set secret looks like when displayed. Fixed length, so it leaks nothing about the secret."""


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, (str, list, dict)) and not value)


def mask_secrets(config: Mapping[str, Any], secret_fields: Iterable[str]) -> dict[str, Any]:
    """A copy of ``config`` with each present, non-empty secret field replaced by :data:`MASK`.

    ``secret_fields`` are top-level keys or dotted paths into nested objects (``"auth.token"``).
    Empty or missing secrets are left as they are, so a reader can still see that a secret is
    *not* set.
    """
    if isinstance(secret_fields, str):
        secret_fields = (secret_fields,)
    masked = copy.deepcopy(dict(config))
    for field in secret_fields:
        *parents, leaf = field.split(".")
        node: Any = masked
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and leaf in node and not _is_empty(node[leaf]):
            node[leaf] = MASK
    return masked
