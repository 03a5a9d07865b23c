"""Verification of AgentRun's request signature (``AGENTRUN4-HMAC-SHA256``), as the service does it.

The SDK signs each data-plane request with the access key secret and sends::

    Agentrun-Authorization: AGENTRUN4-HMAC-SHA256 Credential=<key id>/<yyyymmdd>/<region>/agentrun/aliyun_v4_request,
                            SignedHeaders=host;x-acs-content-sha256;x-acs-date,Signature=<hex>
    x-acs-date: <ISO 8601 UTC>    x-acs-content-sha256: UNSIGNED-PAYLOAD

The signature is HMAC-SHA256, with a key derived from ``"aliyun_v4" + secret`` through the date,
region, product and ``aliyun_v4_request``, over ``"AGENTRUN4-HMAC-SHA256\\n" + sha256(canonical
request)``. The canonical request is the method, the path as sent, the sorted percent-encoded
query, the signed headers as ``name:value`` lines, their names, and the payload hash. Recomputing
it here proves the SDK signed with the secret the fake knows, so a wrong secret is caught, not only
a wrong key id.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from urllib.parse import quote, unquote_plus

import attrs

ALGORITHM = "AGENTRUN4-HMAC-SHA256"
MAX_CLOCK_SKEW = timedelta(minutes=15)
_AUTH = re.compile(
    ALGORITHM + r" Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<product>[^/]+)/aliyun_v4_request,"
    r"SignedHeaders=(?P<signed>[a-z0-9;\-]+),Signature=(?P<signature>[0-9a-f]{64})"
)


@attrs.frozen
class Rejection:
    """Why a request was refused: HTTP status, AgentRun-style error code, message."""

    status: int
    code: str
    message: str


def _encode(value: str) -> str:
    return quote(value, safe="").replace("%7E", "~")


def canonical_query(raw_query: str) -> str:
    pairs: dict[str, str] = {}
    for part in raw_query.split("&") if raw_query else ():
        if "=" in part:
            key, value = part.split("=", 1)
            pairs[unquote_plus(key)] = unquote_plus(value)
    return "&".join(f"{_encode(k)}={_encode(v)}" if v else f"{_encode(k)}=" for k, v in sorted(pairs.items()))


def signature(secret: str, date: str, region: str, product: str, string_to_sign: str) -> str:
    key = ("aliyun_v4" + secret).encode()
    for part in (date, region, product, "aliyun_v4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


def verify(
    method: str,
    path: str,
    raw_query: str,
    headers: Mapping[str, str],
    secrets: Mapping[str, str],
    region: str,
    now: datetime | None = None,
) -> tuple[str | None, Rejection | None]:
    """``(key id, None)`` for a correctly signed request, else ``(key id or None, rejection)``."""
    header = headers.get("agentrun-authorization")
    if not header:
        return None, Rejection(401, "MissingAuthorization", "the request is not signed")
    match = _AUTH.fullmatch(header.strip())
    if not match:
        return None, Rejection(401, "InvalidAuthorization", "malformed Agentrun-Authorization header")
    key_id = match["key"]
    if key_id not in secrets:
        return key_id, Rejection(403, "InvalidAccessKeyId.NotFound", f"access key {key_id} does not exist")
    signed = match["signed"].split(";")
    if not {"host", "x-acs-date", "x-acs-content-sha256"} <= set(signed):
        return key_id, Rejection(401, "InvalidAuthorization", "host, x-acs-date and x-acs-content-sha256 must be signed")
    if match["region"] != region or match["product"] != "agentrun":
        return key_id, Rejection(403, "IncorrectRegion", f"this endpoint serves region {region}")
    try:
        sent = datetime.strptime(headers.get("x-acs-date", ""), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return key_id, Rejection(401, "InvalidDate", "x-acs-date is missing or malformed")
    if abs((now or datetime.now(timezone.utc)) - sent) > MAX_CLOCK_SKEW or sent.strftime("%Y%m%d") != match["date"]:
        return key_id, Rejection(403, "RequestTimeTooSkewed", "x-acs-date is too far from the server's clock")
    canonical_headers = "".join(f"{name}:{headers.get(name, '').strip()}\n" for name in signed)
    canonical = "\n".join(
        [method.upper(), path or "/", canonical_query(raw_query), canonical_headers, ";".join(signed),
         headers.get("x-acs-content-sha256", "")]
    )
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    expected = signature(secrets[key_id], match["date"], region, "agentrun", f"{ALGORITHM}\n{digest}")
    if not hmac.compare_digest(expected, match["signature"]):
        return key_id, Rejection(403, "SignatureDoesNotMatch", "the request signature does not match")
    return key_id, None
