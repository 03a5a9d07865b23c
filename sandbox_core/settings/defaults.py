"""The rows seeded into an empty settings database, read from ``defaults.json``.

The defaults live in a data file rather than in code so that packagers and operators can read
them at a glance, and so that the seeding logic stays independent of what is seeded.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

import attrs

from sandbox_core.errors import ConfigurationError
from sandbox_core.settings.keys import DATA_TYPES, check_writable

DEFAULTS_FILE = "defaults.json"


@attrs.frozen
class DefaultRow:
    """One seeded row: its name, its value already encoded as text, and its data type."""

    name: str
    value: str
    data_type: str


def encode_json(name: str, obj: Any) -> str:
    """``obj`` as JSON text for row ``name``; :class:`ConfigurationError` if it is not JSON data."""
    try:
        return json.dumps(obj, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"cannot store {name}: the value is not JSON data ({exc})") from None


@functools.lru_cache(maxsize=1)
def load_defaults() -> tuple[DefaultRow, ...]:
    """The rows of ``defaults.json``, checked; a broken file is a packaging bug, said loudly."""
    text = resources.files("sandbox_core.settings").joinpath(DEFAULTS_FILE).read_text("utf-8")
    try:
        entries = json.loads(text)
        rows = []
        for entry in entries:
            name, value, data_type = entry["name"], entry["value"], entry["data_type"]
            check_writable(name)
            if data_type not in DATA_TYPES:
                raise ValueError(f"{name}: unknown data_type {data_type!r}")
            if data_type == "json":
                value = encode_json(name, value)
            elif not isinstance(value, str):
                raise ValueError(f"{name}: a {data_type} value must be written as a string")
            rows.append(DefaultRow(name=name, value=value, data_type=data_type))
    except (ValueError, TypeError, KeyError, ConfigurationError) as exc:
        raise ConfigurationError(
            f"the packaged {DEFAULTS_FILE} of sandbox_core.settings is broken: {exc}"
        ) from None
    return tuple(rows)
