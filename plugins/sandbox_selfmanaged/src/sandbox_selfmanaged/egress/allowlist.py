"""The egress allowlist: which ``host:port`` a sandbox may reach, decided on names before any lookup.

Entries are ``host:port`` with an exact DNS name, or ``*.example.com:port``, which covers every
name *below* ``example.com`` (at any depth, never ``example.com`` itself). Wildcards are weaker:
anyone who can create a name under the suffix (a shared hosting or CDN domain) gets through.

Names are checked strictly and in one normal form (lower case, no trailing dot, ASCII only):
whatever could be read as an address by some resolver (``127.1``, ``0x7f000001``,
``2130706433``, ``[::1]``), ``localhost`` and single-label names (resolved through search
domains), and anything with ``@``, ``/``, ``%``, spaces or non-ASCII characters is refused, so a
name can only mean one thing to the proxy and to the resolver. Internationalized names must be
written in their ``xn--`` form.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import attrs

from sandbox_selfmanaged.errors import EgressPolicyError, EgressRefused

MAX_ENTRIES = 256
MAX_NAME_LENGTH = 253
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\Z")
_PORT = re.compile(r"[1-9][0-9]{0,4}\Z")
_NUMERIC_LABEL = re.compile(r"(?:[0-9]+|0x[0-9a-f]*)\Z")


def normalize_name(host: str) -> str:
    """``host`` in normal form, or :class:`EgressRefused` saying why it is not a name we accept."""
    if not host.isascii() or not host.isprintable():
        raise EgressRefused(f"host {host!r} has non-ASCII or control characters (use the xn-- form)")
    name = host.lower()
    if name.endswith("."):
        name = name[:-1]
    if not name or len(name) > MAX_NAME_LENGTH:
        raise EgressRefused(f"host {host!r} is empty or too long")
    labels = name.split(".")
    if not all(_LABEL.match(label) for label in labels):
        raise EgressRefused(f"host {host!r} is not a DNS name")
    if _NUMERIC_LABEL.match(labels[-1]):
        raise EgressRefused(f"host {host!r} is an IP address: allow names, not addresses")
    if len(labels) < 2:
        raise EgressRefused(f"host {host!r} is not a fully qualified name")
    if labels[-1] == "localhost":
        raise EgressRefused(f"host {host!r} is localhost")
    return name


def parse_port(text: str) -> int:
    """A port written in plain decimal digits, 1 to 65535."""
    if not _PORT.match(text) or not text.isascii() or int(text) > 65535:
        raise EgressRefused(f"port {text!r} is not a number from 1 to 65535")
    return int(text)


def parse_destination(target: str) -> tuple[str, int]:
    """The ``(name, port)`` of a CONNECT target ``host:port`` (no scheme, no user, no IP literal)."""
    host, separator, port = target.rpartition(":")
    if not separator:
        raise EgressRefused(f"target {target!r} has no port")
    return normalize_name(host), parse_port(port)


@attrs.frozen
class Rule:
    """One allowlist entry: an exact name, or every name below ``suffix`` when ``wildcard``."""

    name: str
    port: int
    wildcard: bool

    @classmethod
    def parse(cls, entry: object) -> Rule:
        if not isinstance(entry, str):
            raise EgressPolicyError(f"allowlist entry {entry!r} is not a string 'host:port'")
        host, separator, port_text = entry.rpartition(":")
        wildcard = host.startswith("*.")
        try:
            if not separator:
                raise EgressRefused("it has no port")
            name = normalize_name(host[2:] if wildcard else host)
            port = parse_port(port_text)
        except EgressRefused as error:
            raise EgressPolicyError(f"allowlist entry {entry!r}: {error.reason}") from None
        if wildcard and "." not in name:
            raise EgressPolicyError(f"allowlist entry {entry!r}: a wildcard needs at least two labels after '*.'")
        return cls(name=name, port=port, wildcard=wildcard)

    def matches(self, name: str, port: int) -> bool:
        """Whether the normalized ``name`` and ``port`` fall under this rule."""
        if port != self.port:
            return False
        return name.endswith("." + self.name) if self.wildcard else name == self.name

    def covers(self, other: Rule) -> bool:
        """Whether everything ``other`` allows is allowed by this rule."""
        if other.wildcard and not self.wildcard:
            return False
        return self.matches(other.name, other.port) or (other.wildcard and self == other)

    def __str__(self) -> str:
        return f"{'*.' if self.wildcard else ''}{self.name}:{self.port}"


@attrs.frozen
class Allowlist:
    """A parsed allowlist; the empty one permits nothing (the default: no network)."""

    rules: tuple[Rule, ...] = ()

    @classmethod
    def parse(cls, entries: object) -> Allowlist:
        """Parse a list of ``host:port`` strings; :class:`EgressPolicyError` names the bad entry."""
        if isinstance(entries, (str, bytes)) or not isinstance(entries, Iterable):
            raise EgressPolicyError("an allowlist is a list of 'host:port' strings")
        items = list(entries)
        if len(items) > MAX_ENTRIES:
            raise EgressPolicyError(f"an allowlist holds at most {MAX_ENTRIES} entries, not {len(items)}")
        rules: list[Rule] = []
        for item in items:
            rule = Rule.parse(item)
            if rule not in rules:
                rules.append(rule)
        return cls(rules=tuple(rules))

    @property
    def entries(self) -> tuple[str, ...]:
        """The rules written back as ``host:port`` strings, normal form."""
        return tuple(str(rule) for rule in self.rules)

    def narrow(self, requested: object) -> Allowlist:
        """The requested allowlist, once every entry is checked to lie within this maximum."""
        wanted = Allowlist.parse(requested)
        for rule in wanted.rules:
            if not any(limit.covers(rule) for limit in self.rules):
                raise EgressPolicyError(f"network entry {str(rule)!r} is not within the operator's allowlist")
        return wanted

    def check(self, host: str, port: int) -> tuple[str, int]:
        """The normalized ``(name, port)`` when allowed; :class:`EgressRefused` otherwise."""
        name = normalize_name(host)
        if not any(rule.matches(name, port) for rule in self.rules):
            raise EgressRefused(f"{name}:{port} is not on the allowlist")
        return name, port
