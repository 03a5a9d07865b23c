"""The egress filter: allowlist parsing, name checks before resolution, address classification.

Pure decisions: nothing here opens a socket.
"""

from __future__ import annotations

import ipaddress

import pytest

from sandbox_selfmanaged.egress.addresses import refusal_reason
from sandbox_selfmanaged.egress.allowlist import Allowlist, parse_destination
from sandbox_selfmanaged.errors import EgressPolicyError, EgressRefused

ALLOW = Allowlist.parse(["api.example.com:443", "*.files.example.org:443", "pypi.example.internal:8443"])


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        ("api.example.com", 443, "api.example.com"),
        ("API.Example.COM", 443, "api.example.com"),
        ("api.example.com.", 443, "api.example.com"),
        ("a.files.example.org", 443, "a.files.example.org"),
        ("b.a.files.example.org", 443, "b.a.files.example.org"),
        ("pypi.example.internal", 8443, "pypi.example.internal"),
    ],
)
def test_listed_names_are_permitted_and_normalized(host: str, port: int, expected: str) -> None:
    assert ALLOW.check(host, port) == (expected, port)


@pytest.mark.parametrize(
    ("host", "port"),
    [
        ("other.example.com", 443),  # not listed
        ("api.example.com", 80),  # other port
        ("api.example.com", 8443),
        ("files.example.org", 443),  # the wildcard's own base is not covered
        ("xfiles.example.org", 443),  # suffix without a label boundary
        ("api.example.com.evil.test", 443),
        ("evil-api.example.com", 443),
    ],
)
def test_unlisted_names_and_ports_are_refused(host: str, port: int) -> None:
    with pytest.raises(EgressRefused, match="not on the allowlist"):
        ALLOW.check(host, port)


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "169.254.169.254",
        "2130706433",  # decimal 127.0.0.1
        "0x7f000001",  # hex
        "0177.0.0.1",  # octal
        "127.1",  # short form
        "0x7f.1",
        "[::1]",
        "::1",
        "::ffff:127.0.0.1",
        "localhost",
        "LOCALHOST.",
        "api.localhost",
        "metadata",  # single label: resolved through search domains
        "user@api.example.com",
        "api.example.com@evil.test",
        "api.example.com/x",
        "api.example.com\\x",
        "api.example.com%00",
        "api.exa mple.com",
        "api.example.com\n",
        "аpi.example.com",  # Cyrillic a
        "api.example。com",  # ideographic full stop
        "api..example.com",
        ".api.example.com",
        "-api.example.com",
        "api.example.com..",
        "",
        "a" * 64 + ".example.com",
        ("a" * 60 + ".") * 5 + "com",
    ],
)
def test_malformed_or_numeric_hosts_are_refused_before_any_lookup(host: str) -> None:
    with pytest.raises(EgressRefused):
        ALLOW.check(host, 443)


@pytest.mark.parametrize(
    "target",
    ["api.example.com:443", "API.example.com.:443"],
)
def test_connect_targets_parse(target: str) -> None:
    assert parse_destination(target) == ("api.example.com", 443)


@pytest.mark.parametrize(
    "target",
    [
        "api.example.com",
        "api.example.com:",
        "api.example.com:0",
        "api.example.com:65536",
        "api.example.com:+443",
        "api.example.com: 443",
        "api.example.com:443 ",
        "api.example.com:4_43",
        "api.example.com:٤٤٣",  # Arabic-Indic digits pass int()
        "http://api.example.com:443",
        "user@api.example.com:443",
        "[::1]:443",
        "127.0.0.1:443",
    ],
)
def test_bad_connect_targets_are_refused(target: str) -> None:
    with pytest.raises(EgressRefused):
        parse_destination(target)


@pytest.mark.parametrize(
    "entries",
    [
        ["api.example.com"],  # no port
        ["*.com:443"],  # wildcard over a whole top-level domain
        ["*:443"],
        ["a.*.example.com:443"],
        ["*example.com:443"],
        ["127.0.0.1:443"],
        ["localhost:443"],
        ["api.example.com:0"],
        ["xn--80ak6aa92e.com:443", 5],
        "api.example.com:443",  # a bare string is not a list of entries
    ],
)
def test_bad_allowlist_entries_are_configuration_errors(entries: object) -> None:
    with pytest.raises(EgressPolicyError):
        Allowlist.parse(entries)


def test_allowlist_is_bounded() -> None:
    with pytest.raises(EgressPolicyError, match="at most"):
        Allowlist.parse([f"h{i}.example.com:443" for i in range(1000)])


def test_punycode_names_are_plain_ascii_names() -> None:
    allow = Allowlist.parse(["xn--80ak6aa92e.com:443"])
    assert allow.check("XN--80AK6AA92E.com", 443) == ("xn--80ak6aa92e.com", 443)


def test_a_request_may_only_narrow_the_maximum() -> None:
    assert ALLOW.narrow(["api.example.com:443"]).entries == ("api.example.com:443",)
    assert ALLOW.narrow(["x.files.example.org:443"]).entries == ("x.files.example.org:443",)
    assert ALLOW.narrow(["*.a.files.example.org:443"]).entries == ("*.a.files.example.org:443",)
    for wider in (["api.example.com:8443"], ["*.example.com:443"], ["*.files.example.org:80"], ["new.example.net:443"]):
        with pytest.raises(EgressPolicyError, match="not within"):
            ALLOW.narrow(wider)


def test_the_empty_allowlist_permits_nothing() -> None:
    with pytest.raises(EgressRefused):
        Allowlist.parse([]).check("api.example.com", 443)


REFUSED = [
    ("127.0.0.1", "loopback"),
    ("127.255.0.9", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("169.254.169.254", "link-local"),
    ("100.64.0.1", "shared (CGNAT)"),
    ("100.127.255.254", "shared (CGNAT)"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "broadcast"),
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "this network"),
    ("192.0.0.8", "reserved"),
    ("192.0.2.1", "documentation"),
    ("198.51.100.7", "documentation"),
    ("203.0.113.9", "documentation"),
    ("198.18.0.1", "benchmarking"),
    ("192.88.99.1", "reserved"),
    ("::", "unspecified"),
    ("::1", "loopback"),
    ("::ffff:127.0.0.1", "embeds IPv4"),
    ("::ffff:8.8.8.8", "embeds IPv4"),
    ("::127.0.0.1", "embeds IPv4"),
    ("64:ff9b::7f00:1", "embeds IPv4"),
    ("64:ff9b:1::a9fe:a9fe", "embeds IPv4"),
    ("2002:7f00:1::1", "embeds IPv4"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "embeds IPv4"),
    ("fe80::1", "link-local"),
    ("fec0::1", "site-local"),
    ("fc00::1", "unique-local"),
    ("fd12:3456::1", "unique-local"),
    ("ff02::1", "multicast"),
    ("2001:db8::1", "documentation"),
    ("100::1", "not global unicast"),
    ("4000::1", "not global unicast"),
]


@pytest.mark.parametrize(("address", "reason"), REFUSED)
def test_non_public_addresses_are_refused(address: str, reason: str) -> None:
    assert refusal_reason(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize("address", ["93.184.216.34", "1.1.1.1", "8.8.8.8", "2606:4700::1111", "2a00:1450:4001::1"])
def test_public_addresses_pass(address: str) -> None:
    # Decisions only: no packet is ever sent to these.
    assert refusal_reason(ipaddress.ip_address(address)) is None


def test_is_global_is_not_what_we_rely_on() -> None:
    # Python's own flag calls these global; the filter does not.
    for address in ("224.0.0.1", "64:ff9b::7f00:1", "2002:7f00:1::1"):
        assert ipaddress.ip_address(address).is_global
        assert refusal_reason(ipaddress.ip_address(address)) is not None
