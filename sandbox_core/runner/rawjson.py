"""JSON that passes through the host as text: arguments going in, a ``main()`` value coming out.

A host that only relays user data must not turn it into Python objects: 30 MB of ``[[],[],…]``
is 30 MB of text but about a gigabyte of Python lists. :class:`RawJSON` carries a value as its
encoded bytes; :class:`RawArguments` carries a JSON object whose top-level names are known
(checked as Python parameter names) while its values stay text. Both are checked for syntax by
:mod:`msgspec` without building the values.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Mapping
from typing import Any

import msgspec

MAX_ARGUMENTS = 10_000
"""Top-level names an arguments object may have (each decoded name costs host memory)."""


class RawJSON:
    """One JSON value kept as its UTF-8 text; :meth:`decode` turns it into Python data when needed."""

    __slots__ = ("data",)

    def __init__(self, data: bytes | bytearray | memoryview | msgspec.Raw) -> None:
        self.data = data

    def __bytes__(self) -> bytes:
        return bytes(self.data)

    @property
    def nbytes(self) -> int:
        return memoryview(self.data).nbytes

    def __repr__(self) -> str:
        return f"RawJSON(<{self.nbytes} bytes>)"

    def is_null(self) -> bool:
        return self.nbytes <= 64 and bytes(self.data).strip() == b"null"

    def decode(self) -> Any:
        return msgspec.json.decode(self.data)


class ArgumentsError(ValueError):
    """The arguments are not a JSON object of valid parameter names."""


class _Name(str):
    """A top-level argument name (a distinct type so that decoding calls the name check)."""


class RawArguments(Mapping[str, Any]):
    """A JSON object of arguments whose values stay text until someone reads one.

    Build it with :meth:`from_json`; :attr:`data` is the object's text as received, which
    :class:`~sandbox_core.runner.Job` forwards to the runner unchanged.
    """

    def __init__(self, data: bytes | bytearray | memoryview | msgspec.Raw, values: Mapping[str, msgspec.Raw]) -> None:
        self.data = data
        self._values = values

    @classmethod
    def from_json(cls, data: bytes | bytearray | memoryview | msgspec.Raw, *, max_names: int = MAX_ARGUMENTS) -> RawArguments:
        """Check ``data`` is a JSON object of at most ``max_names`` valid parameter names.

        Only the names are decoded; a bad name or one name too many stops the decoding at once,
        so the check costs memory in proportion to ``max_names``, whatever ``data`` holds.
        Raises :class:`ArgumentsError` saying what is wrong.
        """
        seen = 0

        def check_name(_type: type, name: Any) -> _Name:
            nonlocal seen
            seen += 1
            if seen > max_names:
                raise ValueError(f"more than {max_names} arguments")
            if not isinstance(name, str) or not name.isidentifier():
                raise ValueError(f"{name!r} is not a valid parameter name")
            return _Name(name)

        decoder = msgspec.json.Decoder(dict[_Name, msgspec.Raw], dec_hook=check_name)
        try:
            values = decoder.decode(data)
        except msgspec.ValidationError as exc:
            raise ArgumentsError(_plain(str(exc))) from None
        except msgspec.DecodeError as exc:
            raise ArgumentsError(f"not valid JSON: {exc}") from None
        return cls(data, {str(name): raw for name, raw in values.items()})

    def __getitem__(self, name: str) -> Any:
        return msgspec.json.decode(self._values[name])

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"RawArguments({', '.join(self._values)}; <{memoryview(self.data).nbytes} bytes>)"


def _plain(message: str) -> str:
    """msgspec's message without its location suffix (the caller names the field)."""
    text = message.split(" - at `", 1)[0]
    return "must be a JSON object of argument names" if text.startswith("Expected `object`") else text


def encode_parts(value: Any) -> list[memoryview]:
    """``value`` as JSON in consecutive pieces, each :class:`RawJSON` / :class:`RawArguments`
    inside it a view of its text as received (so a relayed value is never copied whole)."""
    raws: list[Any] = []
    token = "\x00" + secrets.token_hex(16) + "\x00"  # unguessable: user text cannot forge it

    def stand_in(item: Any) -> str:
        if isinstance(item, (RawJSON, RawArguments)):
            raws.append(item.data)
            return token
        raise TypeError(f"{type(item).__name__} is not JSON data")

    encoded = msgspec.json.encode(value, enc_hook=stand_in)
    view, placeholder = memoryview(encoded), msgspec.json.encode(token)
    parts, start = [], 0
    for raw in raws:
        at = encoded.index(placeholder, start)
        parts += [view[start:at], memoryview(raw).cast("B")]
        start = at + len(placeholder)
    parts.append(view[start:])
    return parts


MAX_FRAME_FIELDS = 64
"""Top-level names a result frame may have; a forged frame with more is no frame."""


def decode_frame(data: bytes | bytearray | memoryview) -> dict[str, Any] | None:
    """A runner's result frame with its ``value`` kept as :class:`RawJSON` (None for ``null``).

    None when ``data`` is not one complete JSON object. Every other field is decoded.
    """
    seen = 0

    def count_field(_type: type, name: Any) -> _Name:
        nonlocal seen
        seen += 1
        if seen > MAX_FRAME_FIELDS:
            raise ValueError("too many fields")
        return _Name(name)

    try:
        fields = msgspec.json.Decoder(dict[_Name, msgspec.Raw], dec_hook=count_field).decode(data)
        frame: dict[str, Any] = {}
        for name, raw in fields.items():
            if name == "value":
                value = RawJSON(raw)
                frame["value"] = None if value.is_null() else value
            else:
                frame[str(name)] = msgspec.json.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return frame
