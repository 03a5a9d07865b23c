"""Request bodies read without turning user data into Python objects.

A request's ``arguments`` are relayed to the sandbox as the bytes received: only their top-level
names are decoded (and checked). The other fields are small by nature (code is one string) and
are validated by the route's pydantic model in strict mode, so a wrong type is a 422 naming the
field rather than a silent conversion (``"memory_mb": "64"`` is refused).
"""

from __future__ import annotations

import functools
from typing import Any

import msgspec
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from sandbox_core.runner.rawjson import ArgumentsError, RawArguments

SMALL_FIELD_BYTES = 64 << 10
"""A non-string field larger than this is refused before it is decoded (no valid one is)."""

RAW_FIELD = "arguments"
LARGE_OBJECT_FIELDS = frozenset({"files"})
"""Object fields whose size only the body limit bounds (input files: names to base64 strings)."""


async def read_body(request: Request) -> bytearray:
    """The whole body in one buffer (the gate has already bounded its size)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
    return body


def parse_body(body: bytearray, model: type[BaseModel]) -> tuple[Any, RawArguments | None]:
    """Validate ``body`` against ``model`` and return it with its ``arguments`` left as text.

    Raises :class:`RequestValidationError`: ``json_invalid`` (the service answers 400) or
    per-field errors located under ``body`` (422).
    """
    fields = _split(body, model)
    arguments: RawArguments | None = None
    values: dict[str, Any] = {}
    for name, raw in fields.items():
        if name == RAW_FIELD:
            kind = _first_byte(raw)
            if kind == b"{":
                try:
                    arguments = RawArguments.from_json(raw)
                except ArgumentsError as exc:
                    raise _invalid((name,), str(exc), "value_error") from None
                values[name] = {}
            else:
                values[name] = None if kind == b"n" else []  # stand-ins: let the model word the error
        elif _first_byte(raw) != b'"' and name not in LARGE_OBJECT_FIELDS and len(memoryview(raw)) > SMALL_FIELD_BYTES:
            raise _invalid((name,), f"value larger than {SMALL_FIELD_BYTES} bytes", "too_long")
        else:
            values[name] = msgspec.json.decode(raw)
    try:
        validated = model.model_validate(values, strict=True)
    except ValidationError as exc:
        raise RequestValidationError(
            [{"loc": ("body", *error["loc"]), "msg": error["msg"], "type": error["type"]} for error in exc.errors()]
        ) from None
    return validated, arguments


@functools.cache
def _fields_of(model: type[BaseModel]) -> tuple[list[str], type[msgspec.Struct]]:
    """``model``'s field names, and a struct that holds each one as undecoded JSON."""
    known = [field.alias or name for name, field in model.model_fields.items()]
    shape = msgspec.defstruct(
        f"{model.__name__}Fields",
        [(name, msgspec.Raw | msgspec.UnsetType, msgspec.UNSET) for name in known],
        forbid_unknown_fields=model.model_config.get("extra") == "forbid",
    )
    return known, shape


def _split(body: bytearray, model: type[BaseModel]) -> dict[str, msgspec.Raw]:
    """The body's top-level fields as undecoded JSON, checking syntax and that it is an object."""
    known, shape = _fields_of(model)
    try:
        parsed = msgspec.json.decode(body, type=shape)
    except msgspec.ValidationError as exc:  # valid JSON, wrong shape (a subclass of DecodeError)
        message = str(exc)
        if message.startswith("Object contains unknown field `"):
            name = message.split("`")[1]
            raise _invalid((name,), "Extra inputs are not permitted", "extra_forbidden") from None
        raise _invalid((), "Input should be a JSON object", "model_attributes_type") from None
    except msgspec.DecodeError as exc:
        raise RequestValidationError([{"loc": ("body",), "msg": f"JSON decode error: {exc}", "type": "json_invalid"}]) from None
    return {name: getattr(parsed, name) for name in known if getattr(parsed, name) is not msgspec.UNSET}


def _first_byte(raw: msgspec.Raw) -> bytes:
    view = memoryview(raw)
    return bytes(view[:1])  # msgspec hands fields over without surrounding whitespace


def _invalid(loc: tuple[str, ...], msg: str, kind: str) -> RequestValidationError:
    return RequestValidationError([{"loc": ("body", *loc), "msg": msg, "type": kind}])
