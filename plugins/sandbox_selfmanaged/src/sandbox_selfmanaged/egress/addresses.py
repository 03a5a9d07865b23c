"""Which resolved addresses the egress proxy may connect to.

The rule is "public unicast only", written as explicit tables rather than Python's
``ipaddress.is_global``, which (Python 3.11) calls ``224.0.0.1`` global and misses IPv6 forms
that embed an IPv4 address (``64:ff9b::7f00:1`` and ``2002:7f00:1::1`` both carry 127.0.0.1).
IPv6 is accepted only inside global unicast ``2000::/3`` and outside every block below, so a
form nobody listed is refused rather than let through.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

_IPV4_REFUSED: tuple[tuple[IPv4Network, str], ...] = tuple(
    (IPv4Network(network), reason)
    for network, reason in (
        ("0.0.0.0/32", "unspecified"),
        ("255.255.255.255/32", "broadcast"),
        ("0.0.0.0/8", "this network"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "shared (CGNAT)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "reserved"),
        ("192.0.2.0/24", "documentation"),
        ("192.88.99.0/24", "reserved"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
    )
)

_IPV6_REFUSED: tuple[tuple[IPv6Network, str], ...] = tuple(
    (IPv6Network(network), reason)
    for network, reason in (
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::ffff:0:0/96", "embeds IPv4"),
        ("::/96", "embeds IPv4"),
        ("64:ff9b::/96", "embeds IPv4"),
        ("64:ff9b:1::/48", "embeds IPv4"),
        ("2001::/32", "embeds IPv4"),
        ("2002::/16", "embeds IPv4"),
        ("2001::/23", "reserved"),
        ("2001:db8::/32", "documentation"),
        ("3fff::/20", "documentation"),
        ("fc00::/7", "unique-local"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local"),
        ("ff00::/8", "multicast"),
    )
)

_IPV6_GLOBAL_UNICAST = IPv6Network("2000::/3")


def refusal_reason(address: IPv4Address | IPv6Address) -> str | None:
    """Why the proxy must not connect to ``address``, or ``None`` when it is public unicast."""
    if isinstance(address, IPv4Address):
        for network4, reason in _IPV4_REFUSED:
            if address in network4:
                return reason
        return None
    if address.scope_id is not None:
        return "link-local"
    for network6, reason in _IPV6_REFUSED:
        if address in network6:
            return reason
    if address not in _IPV6_GLOBAL_UNICAST:
        return "not global unicast"
    return None
