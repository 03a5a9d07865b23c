"""Provider config schemas: declaration, JSON Schema export, validation and conversion, masking.

A provider declares its config as a :class:`ConfigSchema` of :class:`ConfigField` records. The core
derives a standard JSON Schema document from it (for UIs and the admin API), converts and validates
configs against that same document (so the UI and the core can never disagree), and masks secrets
for display. Secret values reach providers wrapped in :class:`Secret`, whose ``repr`` hides them,
so a config printed in a log or a traceback shows no credential.

A secret field names the fields it authenticates against (``bound_to``: the URLs, regions or
accounts it is sent to). A form may send a saved secret back as :data:`MASK` to keep it, but only
while none of those fields changed: otherwise whoever may edit the config could point the endpoint
at their own server and receive the secret. URL fields refuse ``user:password@`` credentials,
which would otherwise show in every config read, message and HTTP log.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import attrs

from sandbox_core.errors import ConfigValidationError, FieldProblem
from sandbox_core.redaction import MASK, mask_secrets, mask_url

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


class Secret:
    """A secret config value (token, key). ``str``/``repr`` are masked; :meth:`reveal` gives it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for the one place that must send it to a backend."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __repr__(self) -> str:
        return f"Secret({MASK!r})" if self._value else "Secret('')"

    __str__ = __repr__


def _as_tuple(values: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(values)


class FieldType(str, enum.Enum):
    """The kinds of value a config field can hold."""

    STRING = "string"
    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"
    ENUM = "enum"
    SECRET = "secret"
    URL = "url"
    JSON = "json"


@attrs.frozen
class ConfigField:
    """One setting of a provider.

    ``minimum``/``maximum`` bound numbers (and the length of strings); ``choices`` lists the
    allowed values of an enum; ``multiple`` makes the field a non-empty-when-required list of
    values of ``type`` (e.g. several endpoint URLs); ``env`` names the environment variable that
    conventionally holds the value (used by ``sandbox config set NAME --from-env``);
    ``bound_to`` (secret fields only) names the fields the secret authenticates against: a saved
    secret is kept only while those stay the same (see :meth:`ConfigSchema.keep_stored_secrets`).
    """

    name: str = attrs.field()
    type: FieldType = attrs.field(converter=FieldType)
    label: str = ""
    description: str = ""
    default: Any = None
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[Any, ...] = attrs.field(default=(), converter=_as_tuple)
    multiple: bool = False
    env: str | None = None
    bound_to: tuple[str, ...] = attrs.field(default=(), converter=_as_tuple)

    @name.validator
    def _check_name(self, _attribute: attrs.Attribute[str], value: str) -> None:
        if not value.isidentifier():
            raise ValueError(f"config field name {value!r} must be an identifier")

    @bound_to.validator
    def _check_bound_to(self, _attribute: attrs.Attribute[tuple[str, ...]], value: tuple[str, ...]) -> None:
        if value and self.type is not FieldType.SECRET:
            raise ValueError(f"config field {self.name!r}: only a secret field can be bound to other fields")

    @property
    def is_secret(self) -> bool:
        return self.type is FieldType.SECRET

    def json_schema(self) -> dict[str, Any]:
        """This field as a JSON Schema property."""
        item = self._item_schema()
        schema: dict[str, Any] = {"type": "array", "items": item} if self.multiple else item
        if self.multiple and self.required:
            schema["minItems"] = 1
        schema["title"] = self.label or self.name.replace("_", " ").capitalize()
        if self.description:
            schema["description"] = self.description
        if self.default is not None:
            schema["default"] = self.default
        if self.env:
            schema["x-env"] = self.env
        if self.bound_to:
            schema["x-bound-to"] = list(self.bound_to)
        return schema

    def _item_schema(self) -> dict[str, Any]:
        bounds: dict[str, Any] = {}
        if self.type in (FieldType.INTEGER, FieldType.NUMBER):
            if self.minimum is not None:
                bounds["minimum"] = self.minimum
            if self.maximum is not None:
                bounds["maximum"] = self.maximum
        elif self.type in (FieldType.STRING, FieldType.SECRET):
            if self.minimum is not None:
                bounds["minLength"] = int(self.minimum)
            if self.maximum is not None:
                bounds["maxLength"] = int(self.maximum)
        if self.type is FieldType.ENUM:
            return {"enum": list(self.choices)}
        if self.type is FieldType.SECRET:
            return {"type": "string", "format": "password", "writeOnly": True, "x-secret": True, **bounds}
        if self.type is FieldType.URL:
            return {"type": "string", "format": "uri", "pattern": "^https?://", **bounds}
        if self.type is FieldType.JSON:
            return {"x-widget": "json"}
        return {"type": self.type.value, **bounds}


def _fields(values: Iterable[ConfigField]) -> tuple[ConfigField, ...]:
    return tuple(values)


@attrs.frozen
class ConfigSchema:
    """The whole config a provider accepts, in display order."""

    fields: tuple[ConfigField, ...] = attrs.field(converter=_fields)

    @fields.validator
    def _check_unique(self, _attribute: attrs.Attribute[Any], value: tuple[ConfigField, ...]) -> None:
        names = [f.name for f in value]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"config schema declares fields more than once: {', '.join(duplicates)}")
        for field in value:
            unknown = [bound for bound in field.bound_to if bound not in names or bound == field.name]
            if unknown:
                raise ValueError(f"secret field {field.name!r} is bound to fields the schema does not declare: {', '.join(unknown)}")

    def field(self, name: str) -> ConfigField:
        for candidate in self.fields:
            if candidate.name == name:
                return candidate
        raise KeyError(name)

    @property
    def secret_fields(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields if f.is_secret)

    def json_schema(self, title: str = "") -> dict[str, Any]:
        """The standard JSON Schema document UIs render forms from and configs are checked against."""
        document: dict[str, Any] = {
            "$schema": JSON_SCHEMA_DIALECT,
            "type": "object",
            "properties": {f.name: f.json_schema() for f in self.fields},
            "required": [f.name for f in self.fields if f.required],
            "additionalProperties": False,
        }
        if title:
            document["title"] = title
        return document

    def validate(self, config: Mapping[str, Any] | None, *, provider: str = "") -> dict[str, Any]:
        """Convert ``config`` to typed values, fill defaults, check it; secrets come back as :class:`Secret`.

        Strings are accepted for every type (``"8"`` for an integer, ``"true"`` for a boolean,
        JSON text for a JSON field) so values typed on a command line or in a form work. Raises
        :class:`ConfigValidationError` listing every problem, each naming its field.
        """
        if config is None:
            config = {}
        if not isinstance(config, Mapping):
            raise ConfigValidationError(provider, [FieldProblem("", "the config must be a JSON object")])
        problems: list[FieldProblem] = []
        known = {f.name for f in self.fields}
        for key in config:
            if key not in known:
                problems.append(FieldProblem(str(key), f"unknown field; known fields: {', '.join(sorted(known))}"))
        converted: dict[str, Any] = {}
        for field in self.fields:
            raw = config.get(field.name)
            if raw is None or raw == "" or (field.multiple and raw == []):
                if field.default is not None:
                    converted[field.name] = field.default
                elif field.required:
                    problems.append(FieldProblem(field.name, "is required"))
                continue
            try:
                converted[field.name] = _convert(field, raw)
            except ValueError as exc:
                problems.append(FieldProblem(field.name, str(exc)))
        # The schema check sees only the fields that converted, so a missing or unconvertible
        # field is reported once, by the loop above, and the other fields' problems still show.
        reported = {p.field for p in problems}
        problems.extend(
            p
            for p in _schema_problems(self.json_schema(), converted, self.secret_fields)
            if p.field and p.field.split(".")[0] not in reported
        )
        if problems:
            raise ConfigValidationError(provider, problems)
        for field in self.fields:
            if field.is_secret and field.name in converted:
                converted[field.name] = Secret(converted[field.name])
        return converted

    def type_problems(self, config: Mapping[str, Any]) -> list[FieldProblem]:
        """Values whose JSON type is not the field's: for JSON APIs, where ``"yes"`` for a boolean
        or ``"8"`` for an integer is a client's mistake, not something typed on a command line.

        Only the types are checked (unset values and unknown fields are :meth:`validate`'s
        concern); a JSON field may hold any value, or JSON text as a form sends it.
        """
        problems: list[FieldProblem] = []
        for field in self.fields:
            raw = config.get(field.name)
            if raw is None or raw == "":
                continue
            if field.multiple:
                if not isinstance(raw, list):
                    problems.append(FieldProblem(field.name, f"must be a JSON array, got {_json_type(raw)}"))
                    continue
                items = [(f"{field.name}.{index}", item) for index, item in enumerate(raw)]
            else:
                items = [(field.name, raw)]
            for path, item in items:
                wanted = _wrong_type(field, item)
                if wanted:
                    problems.append(FieldProblem(path, f"must be {wanted}, got {_json_type(item)}"))
        return problems

    def secrets_in(self, config: Mapping[str, Any]) -> list[str]:
        """The non-empty values of the secret fields in ``config`` (as given or validated), to scrub from messages."""
        values = (config.get(name) for name in self.secret_fields)
        revealed = (value.reveal() if isinstance(value, Secret) else value for value in values)
        return [value for value in revealed if isinstance(value, str) and value]

    def mask(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """A copy for display: every non-empty secret replaced by :data:`MASK`, and the password
        of a URL saved with ``user:password@`` (before such URLs were refused) masked too."""
        return mask_secrets(config, self.secret_fields, [f.name for f in self.fields if f.type is FieldType.URL])

    def keep_stored_secrets(self, submitted: Mapping[str, Any], stored: Mapping[str, Any], *, provider: str = "") -> dict[str, Any]:
        """Resolve a form round trip: a secret sent back as :data:`MASK` keeps the stored value.

        Only while none of the fields the secret is bound to changed: otherwise the secret would go
        to a place its owner never sent it to, so :class:`ConfigValidationError` asks for it again,
        naming the secret and the changed fields. A secret with no stored value is dropped.
        """
        merged = dict(submitted)
        problems: list[FieldProblem] = []
        for field in self.fields:
            if not field.is_secret or merged.get(field.name) != MASK:
                continue
            if not stored.get(field.name):
                merged.pop(field.name)
                continue
            moved = [name for name in field.bound_to if self._normalized(name, merged) != self._normalized(name, stored)]
            if moved:
                problems.append(
                    FieldProblem(
                        field.name,
                        f"enter it again: the saved {field.label or field.name} is kept only while "
                        f"{' and '.join(moved)} stay{'s' if len(moved) == 1 else ''} the same",
                    )
                )
            else:
                merged[field.name] = stored[field.name]
        if problems:
            raise ConfigValidationError(provider, problems)
        return merged

    def _normalized(self, name: str, config: Mapping[str, Any]) -> Any:
        """Field ``name``'s value in ``config`` as validation would see it (default when unset)."""
        field = self.field(name)
        raw = config.get(name)
        if raw is None or raw == "" or (field.multiple and raw == []):
            return field.default
        try:
            return _convert(field, raw)
        except ValueError:
            return raw  # compared as given; validation reports it


def _wrong_type(field: ConfigField, value: Any) -> str | None:
    """What JSON type ``value`` should have been, or None when it has the right one."""
    kind = field.type
    if kind in (FieldType.STRING, FieldType.SECRET, FieldType.URL):
        return None if isinstance(value, str) else "a JSON string"
    if kind is FieldType.BOOLEAN:
        return None if isinstance(value, bool) else "a JSON boolean (true or false)"
    if kind is FieldType.INTEGER:
        return None if isinstance(value, int) and not isinstance(value, bool) else "a JSON integer"
    if kind is FieldType.NUMBER:
        return None if isinstance(value, (int, float)) and not isinstance(value, bool) else "a JSON number"
    if kind is FieldType.ENUM:
        return None if any(type(value) is type(c) for c in field.choices) else "one of " + json.dumps(list(field.choices))
    return None


def _json_type(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array", dict: "an object"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def to_storable(config: Mapping[str, Any]) -> dict[str, Any]:
    """A validated config as plain JSON data for the settings store (secrets revealed)."""
    return {k: (v.reveal() if isinstance(v, Secret) else v) for k, v in config.items()}


def secret_values(config: Mapping[str, Any]) -> list[str]:
    """The revealed secrets of a validated config, to scrub them from any message shown."""
    return [v.reveal() for v in config.values() if isinstance(v, Secret) and v.reveal()]


def _convert(field: ConfigField, raw: Any) -> Any:
    if field.multiple:
        if isinstance(raw, str):
            raw = _parse_list(raw)
        if not isinstance(raw, (list, tuple)):
            raise ValueError("must be a list")
        return [_convert_one(field, item) for item in raw]
    return _convert_one(field, raw)


def _parse_list(text: str) -> list[Any]:
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            value = json.loads(stripped)
        except ValueError as exc:
            raise ValueError(f"is not a JSON list: {exc}") from None
        if not isinstance(value, list):
            raise ValueError("must be a list")
        return value
    return [part.strip() for part in stripped.split(",") if part.strip()]


def _convert_one(field: ConfigField, raw: Any) -> Any:
    kind = field.type
    if isinstance(raw, Secret):
        raw = raw.reveal()
    if kind in (FieldType.STRING, FieldType.SECRET):
        if not isinstance(raw, str):
            raise ValueError(f"must be a string, got {type(raw).__name__}")
        return raw
    if kind is FieldType.URL:
        if not isinstance(raw, str):
            raise ValueError("must be a URL string")
        try:
            parts = urlsplit(raw.strip())
        except ValueError:
            raise ValueError(f"{mask_url(raw)!r} is not a valid URL") from None  # e.g. a bad IPv6 host
        if "@" in parts.netloc:
            # Never quote it: the part before "@" is a credential.
            raise ValueError(
                "must not contain a user name or password (user:password@host): credentials in a URL "
                "show in logs and messages; give them in the provider's secret field instead"
            )
        if parts.scheme not in ("http", "https") or not parts.netloc:
            shown = repr(raw) if "@" not in raw else "the value"  # "user:pw@host" has no scheme
            raise ValueError(f"{shown} is not an http(s) URL such as http://127.0.0.1:8808")
        return raw.strip().rstrip("/")
    if kind is FieldType.BOOLEAN:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return raw.strip().lower() in ("true", "yes", "on", "1")
        raise ValueError(f"must be true or false, got {raw!r}")
    if kind is FieldType.INTEGER:
        if isinstance(raw, bool):
            raise ValueError("must be an integer, got a boolean")
        if isinstance(raw, int):
            return raw
        if isinstance(raw, float) and raw.is_integer():
            return int(raw)
        if isinstance(raw, str):
            try:
                return int(raw.strip())
            except ValueError:
                pass
        raise ValueError(f"must be an integer, got {raw!r}")
    if kind is FieldType.NUMBER:
        if isinstance(raw, bool):
            raise ValueError("must be a number, got a boolean")
        try:
            number = float(raw) if isinstance(raw, (int, float, str)) else math.nan
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise ValueError(f"must be a finite number, got {raw!r}")
        return int(number) if isinstance(raw, int) else number
    if kind is FieldType.ENUM:
        if raw in field.choices:
            return raw
        if isinstance(raw, str):
            for choice in field.choices:
                if str(choice) == raw.strip():
                    return choice
        raise ValueError(f"must be one of: {', '.join(map(str, field.choices))}; got {raw!r}")
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise ValueError(f"is not valid JSON: {exc}") from None
    return raw


def _schema_problems(
    document: Mapping[str, Any], instance: Mapping[str, Any], secret_fields: Iterable[str]
) -> Iterable[FieldProblem]:
    # jsonschema is imported here, not at module import: it is only needed when a config is checked.
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(document)
    secret_fields = set(secret_fields)
    for error in sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path))):
        path = ".".join(str(part) for part in error.absolute_path)
        message = error.message
        if error.absolute_path and error.absolute_path[0] in secret_fields:
            # jsonschema quotes the offending value; for a secret that would print it.
            message = f"does not satisfy {error.validator} = {error.validator_value}"
        elif error.validator == "pattern":
            message = "must be an http(s) URL"
        yield FieldProblem(path, message)
