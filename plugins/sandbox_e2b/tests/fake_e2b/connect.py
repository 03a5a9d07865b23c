"""The Connect protocol's framing, as envd speaks it to the SDK (JSON codec, no compression).

A streaming Connect call sends and receives *envelopes*: one flags byte, a 4-byte big-endian
length, then that many bytes of message (here JSON). The last envelope of a response has flag
``0x02`` (end of stream) and holds ``{}`` or ``{"error": {"code": ..., "message": ...}}``.
"""

from __future__ import annotations

import json
import struct
from typing import Any

CONTENT_TYPE = "application/connect+json"
FLAG_COMPRESSED = 0x01
FLAG_END_STREAM = 0x02
_HEADER = struct.Struct(">BI")


def envelope(message: Any, *, flags: int = 0) -> bytes:
    data = json.dumps(message, separators=(",", ":")).encode("utf-8")
    return _HEADER.pack(flags, len(data)) + data


def end_stream(error_code: str | None = None, message: str = "") -> bytes:
    body: dict[str, Any] = {}
    if error_code is not None:
        body["error"] = {"code": error_code, "message": message}
    return envelope(body, flags=FLAG_END_STREAM)


def read_single(body: bytes) -> Any:
    """The one JSON message of a server-streaming request body."""
    if len(body) < _HEADER.size:
        raise ValueError("request body shorter than an envelope header")
    flags, length = _HEADER.unpack_from(body)
    if flags & FLAG_COMPRESSED:
        raise ValueError("compressed request messages are not supported")
    data = body[_HEADER.size:_HEADER.size + length]
    if len(data) != length:
        raise ValueError("truncated request envelope")
    return json.loads(data or b"{}")
