"""The one rule for artifact names, applied to every provider's results and by every consumer.

An artifact's name is its path relative to the code's output folder, and the code chooses it: it
may hold newlines, terminal escapes, ``..`` components or an absolute path. :func:`safe_artifact_name`
turns any name into a plain relative path (``/``-separated, no empty, ``.`` or ``..`` component, no
control character and none of the characters Windows refuses), and :func:`safe_artifact_path` is
what a consumer uses to write an artifact under a folder of its own: the result is always inside it.
"""

from __future__ import annotations

from pathlib import Path

MAX_NAME_CHARS = 1024
"""Longer names are cut (a file system refuses them anyway)."""
_UNSAFE = frozenset('\\<>:"|?*')


def _clean_component(component: str) -> str:
    cleaned = "".join(
        "_" if ord(char) < 32 or 127 <= ord(char) < 160 or char in _UNSAFE or char in "\u2028\u2029" else char
        for char in component
    )
    if cleaned in ("", "."):
        return ""
    if cleaned == "..":
        return "_"
    return cleaned


def safe_artifact_name(name: object) -> str:
    """A safe relative name for ``name``: unsafe characters become ``_``, ``..`` becomes ``_``,
    empty and ``.`` components and leading slashes are dropped. Never empty ("artifact")."""
    text = name if isinstance(name, str) else str(name)
    parts = [part for part in (_clean_component(p) for p in text.split("/")) if part]
    cleaned = "/".join(parts)[:MAX_NAME_CHARS].strip("/")
    return cleaned or "artifact"


def safe_artifact_path(folder: str | Path, name: str) -> Path:
    """Where to write the artifact ``name`` under ``folder``: always inside ``folder``.

    The name goes through :func:`safe_artifact_name` first; raises ``ValueError`` if the path
    would still leave the folder (a symbolic link inside ``folder`` pointing out of it).
    """
    base = Path(folder).resolve()
    path = base.joinpath(*safe_artifact_name(name).split("/"))
    if not path.resolve().is_relative_to(base):
        raise ValueError(f"artifact {name!r} would be written outside {base}")
    return path
