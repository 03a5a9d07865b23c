"""Names and sizes of the files callers hand to a sandbox (one-shot inputs and session files).

A file name is a path relative to the sandbox's working folder. The core checks every name before
any provider sees it, so a provider may join it onto its working folder without re-checking for
escapes: names are relative, use ``/`` between parts, have no empty, ``.`` or ``..`` part and no
control characters. Sizes are bounded so one request cannot exhaust a backend's memory or disk:
by the ceilings below, and lower by a provider's config (:func:`input_limit_fields`, enforced by
the client with :func:`check_configured_limits`).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from typing import Any

from sandbox_core.schema import ConfigField

MAX_PATH_CHARS = 512
"""Longest file name, in characters."""
MAX_PART_BYTES = 255
"""Longest part of a file name between slashes, in UTF-8 bytes (the usual file-system limit)."""
MAX_FILE_BYTES = 32 << 20
"""Largest single file, in bytes."""
MAX_FILES = 256
"""Most input files one execution may carry."""
MAX_TOTAL_BYTES = 64 << 20
"""Largest total size of the input files one execution carries, in bytes."""


def check_path(path: object, *, field: str = "path") -> str:
    """``path`` if it is an acceptable file name (see the module docstring); else ``ValueError`` naming ``field``."""
    if not isinstance(path, str):
        raise ValueError(f"{field}: a file name must be a string, got {type(path).__name__}")
    shown = repr(path[:80])
    if not path:
        raise ValueError(f"{field}: a file name must not be empty")
    if len(path) > MAX_PATH_CHARS:
        raise ValueError(f"{field}: file name {shown}... is longer than {MAX_PATH_CHARS} characters")
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in path):
        raise ValueError(f"{field}: file name {shown} contains a control character")
    if path.startswith("/") or "\\" in path:
        raise ValueError(f"{field}: file name {shown} must be relative to the working folder, with / between parts")
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise ValueError(f"{field}: file name {shown} must not have empty, '.' or '..' parts")
        if len(part.encode("utf-8")) > MAX_PART_BYTES:
            raise ValueError(f"{field}: a part of file name {shown} is longer than {MAX_PART_BYTES} bytes")
    return path


def check_data(path: str, data: object, *, field: str = "data") -> bytes:
    """``data`` as bytes if it is a file's content within :data:`MAX_FILE_BYTES`; else ``ValueError``."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValueError(f"{field}: the content of {path!r} must be bytes, got {type(data).__name__}")
    content = bytes(data)
    if len(content) > MAX_FILE_BYTES:
        raise ValueError(f"{field}: {path!r} has {len(content)} bytes, more than the limit of {MAX_FILE_BYTES}")
    return content


def check_files(files: object, *, field: str = "files") -> dict[str, bytes]:
    """A copy of ``files`` (name to content) once every name, size and the total are checked."""
    if not isinstance(files, Mapping):
        raise ValueError(f"{field}: must be a mapping of file names to bytes")
    if len(files) > MAX_FILES:
        raise ValueError(f"{field}: {len(files)} files, more than the limit of {MAX_FILES}")
    checked: dict[str, bytes] = {}
    for name, data in files.items():
        path = check_path(name, field=field)
        checked[path] = check_data(path, data, field=field)
    prefixes = {"/".join(p.split("/")[:end]) for p in checked for end in range(1, p.count("/") + 1)}
    clash = sorted(prefixes & checked.keys())
    if clash:
        raise ValueError(f"{field}: {clash[0]!r} is both a file and a folder of other files")
    total = sum(len(data) for data in checked.values())
    if total > MAX_TOTAL_BYTES:
        raise ValueError(f"{field}: {total} bytes in all, more than the limit of {MAX_TOTAL_BYTES}")
    return checked


def input_limit_fields() -> list[ConfigField]:
    """The config fields with which an operator lowers the input-file limits of a provider.

    A provider adds them to its schema; the client enforces them before any hook sees the files
    (one-shot ``files``, a session's ``upload`` and ``execute(files=...)``). Empty: the ceilings.
    """
    return [
        ConfigField(
            "max_input_file_bytes", "integer", label="Largest input file (bytes)",
            description=f"Largest file a caller may hand to a sandbox (empty: {MAX_FILE_BYTES}).",
            minimum=1, maximum=MAX_FILE_BYTES,
        ),
        ConfigField(
            "max_input_bytes", "integer", label="Input files in all (bytes)",
            description=f"Total size of the files one execution or upload carries (empty: {MAX_TOTAL_BYTES}).",
            minimum=1, maximum=MAX_TOTAL_BYTES,
        ),
    ]


def check_configured_limits(files: Mapping[str, bytes], config: Mapping[str, Any], *, field: str = "files") -> None:
    """Refuse ``files`` beyond the limits ``config`` sets (see :func:`input_limit_fields`) with ``ValueError``."""
    per_file = config.get("max_input_file_bytes")
    if per_file is not None:
        for name, data in files.items():
            if len(data) > per_file:
                raise ValueError(f"{field}: {name!r} has {len(data)} bytes, more than max_input_file_bytes ({per_file})")
    total_limit = config.get("max_input_bytes")
    total = sum(len(data) for data in files.values())
    if total_limit is not None and total > total_limit:
        raise ValueError(f"{field}: {total} bytes in all, more than max_input_bytes ({total_limit})")
