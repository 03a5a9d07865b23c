"""Keeping secrets out of everything shown: one mask, one text scrubber, one config masker.

Every place that shows a provider config, a database URL or a message that may quote a secret
(errors, tracebacks, validation problems, probe output, import reports) goes through this module,
so the rules are the same everywhere:

- :data:`MASK` is what a secret looks like when shown;
- :func:`scrub` replaces every secret of any length, longest first (so a secret that is a prefix of
  another leaves no tail visible), in the forms a message is likely to quote it: as given,
  percent-encoded (URLs, form bodies) and JSON-escaped (``repr``/JSON of a config);
- :func:`mask_secrets` shows a config with its set secrets as :data:`MASK` and the passwords of
  ``user:password@`` URLs masked; :func:`mask_url` does the latter for one URL.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import quote

MASK = "********"
"""What a set secret looks like when shown. Fixed length, so it leaks nothing about the secret."""


def _forms(secret: str) -> set[str]:
    """``secret`` as a message may quote it: as is, percent-encoded and JSON-escaped."""
    return {secret, quote(secret, safe=""), json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}


def scrubber(secrets: Iterable[str]) -> Callable[[str], str]:
    """A function that masks ``secrets`` wherever they appear in a text (see :func:`scrub`)."""
    forms = sorted({form for secret in secrets if secret for form in _forms(secret)}, key=len, reverse=True)

    def scrub_text(text: str) -> str:
        for form in forms:
            text = text.replace(form, MASK)
        return text

    return scrub_text


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every non-empty secret in ``secrets`` (and its encoded forms) replaced by :data:`MASK`.

    Longest first, so a secret that is a prefix of another cannot leave the other's tail behind;
    every length, since a short secret is still a secret.
    """
    return scrubber(secrets)(text)


def mask_url(url: str) -> str:
    """``url`` with the password of a ``user:password@`` part replaced by :data:`MASK`."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    # The authority ends at the first "/", "?" or "#"; a password holding those unencoded is
    # not a valid URL anyway, so masking everything up to the last "@" before them is safest.
    end = len(rest)
    for char in "/?#":
        index = rest.find(char)
        if index != -1:
            end = min(end, index)
    authority, tail = rest[:end], rest[end:]
    userinfo, at, host = authority.rpartition("@")
    user, colon, _password = userinfo.partition(":")
    if not at or not colon:
        return url
    return f"{scheme}://{user}:{MASK}@{host}{tail}"


def _mask_if_url(value: Any) -> Any:
    return mask_url(value) if isinstance(value, str) else value


def _is_set(value: Any) -> bool:
    # A secret may be a plain string or a wrapper such as schema.Secret, false when empty.
    return value is not None and (isinstance(value, (bool, int, float)) or bool(value))


def mask_secrets(config: Mapping[str, Any], secret_fields: Iterable[str], url_fields: Iterable[str] = ()) -> dict[str, Any]:
    """A copy of ``config`` for display: each set secret replaced by :data:`MASK`, URL passwords masked.

    ``secret_fields`` are top-level keys or dotted paths into nested objects (``"auth.token"``);
    ``url_fields`` are keys holding a URL or a list of URLs. Empty or missing secrets are left as
    they are, so a reader can still see that a secret is *not* set.
    """
    if isinstance(secret_fields, str):
        secret_fields = (secret_fields,)
    masked = copy.deepcopy(dict(config))
    for field in secret_fields:
        *parents, leaf = field.split(".")
        node: Any = masked
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and leaf in node and _is_set(node[leaf]):
            node[leaf] = MASK
    for field in url_fields:
        if field in masked:
            value = masked[field]
            masked[field] = [_mask_if_url(v) for v in value] if isinstance(value, list) else _mask_if_url(value)
    return masked
