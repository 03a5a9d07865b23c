"""Provider config schemas: JSON Schema export, validation with conversion, secrets, masking."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from sandbox_core.errors import ConfigValidationError
from sandbox_core.redaction import MASK
from sandbox_core.schema import ConfigField, ConfigSchema, Secret, secret_values, to_storable

TOKEN = "tok-Zq81-very-secret"

SCHEMA = ConfigSchema(
    [
        ConfigField("endpoint", "url", label="Endpoint", description="Base URL of the backend", required=True),
        ConfigField("mirrors", "url", multiple=True, description="Fallback URLs"),
        ConfigField("token", "secret", label="API token", env="FAKE_TOKEN", minimum=8),
        ConfigField("pool_size", "integer", default=4, minimum=1, maximum=64),
        ConfigField("ratio", "number", default=0.5, minimum=0, maximum=1),
        ConfigField("debug", "boolean", default=False),
        ConfigField("region", "enum", choices=("eu", "us"), default="eu"),
        ConfigField("priority", "enum", choices=(1, 2, 3)),
        ConfigField("labels", "string", multiple=True),
        ConfigField("extra", "json"),
        ConfigField("nickname", "string", minimum=2, maximum=10),
    ]
)

MINIMAL = {"endpoint": "http://127.0.0.1:8808"}


def problems(config: Any) -> dict[str, str]:
    with pytest.raises(ConfigValidationError) as caught:
        SCHEMA.validate(config, provider="fake")
    assert caught.value.provider == "fake"
    return {p.field: p.message for p in caught.value.problems}


# -- JSON Schema export --------------------------------------------------------------------------


def test_export_is_a_valid_draft_2020_12_document() -> None:
    document = SCHEMA.json_schema(title="fake")
    Draft202012Validator.check_schema(document)
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert document["title"] == "fake"
    assert document["type"] == "object" and document["additionalProperties"] is False
    assert document["required"] == ["endpoint"]
    props = document["properties"]
    assert list(props) == [f.name for f in SCHEMA.fields]
    assert all(prop["title"] for prop in props.values())
    assert props["endpoint"]["title"] == "Endpoint"
    assert props["pool_size"]["title"] == "Pool size"  # derived from the name when there is no label
    assert props["endpoint"]["description"] == "Base URL of the backend"
    assert props["endpoint"]["format"] == "uri" and props["endpoint"]["type"] == "string"
    assert props["pool_size"] == {"type": "integer", "minimum": 1, "maximum": 64, "title": "Pool size", "default": 4}
    assert props["ratio"]["type"] == "number" and props["ratio"]["maximum"] == 1
    assert props["debug"]["type"] == "boolean" and props["debug"]["default"] is False
    assert props["region"]["enum"] == ["eu", "us"] and props["region"]["default"] == "eu"
    assert props["token"]["format"] == "password" and props["token"]["writeOnly"] is True
    assert props["token"]["minLength"] == 8 and props["token"]["x-env"] == "FAKE_TOKEN"
    assert props["nickname"]["minLength"] == 2 and props["nickname"]["maxLength"] == 10
    assert props["mirrors"]["type"] == "array" and props["mirrors"]["items"]["format"] == "uri"
    assert props["labels"]["items"] == {"type": "string"}
    assert "type" not in props["extra"]  # any JSON value


def test_a_required_multiple_field_needs_at_least_one_item() -> None:
    schema = ConfigSchema([ConfigField("endpoints", "url", multiple=True, required=True)])
    assert schema.json_schema()["properties"]["endpoints"]["minItems"] == 1
    with pytest.raises(ConfigValidationError) as caught:
        schema.validate({"endpoints": []})
    assert caught.value.fields == ("endpoints",)


@pytest.mark.parametrize(
    "config",
    [
        MINIMAL,
        {**MINIMAL, "pool_size": 64, "ratio": 0, "labels": ["a"], "extra": {"k": [1, None]}, "token": TOKEN},
        {**MINIMAL, "pool_size": 0},
        {**MINIMAL, "pool_size": 65},
        {**MINIMAL, "ratio": 1.5},
        {**MINIMAL, "region": "mars"},
        {**MINIMAL, "nickname": "x"},
        {**MINIMAL, "token": "short"},
        {**MINIMAL, "endpoint": "ftp://example.org"},
        {**MINIMAL, "unknown": 1},
        {},
    ],
)
def test_the_core_and_the_exported_document_agree(config: dict[str, Any]) -> None:
    """What the admin page checks with the JSON Schema is exactly what the core accepts."""
    validator = Draft202012Validator(SCHEMA.json_schema())
    try:
        converted = SCHEMA.validate(config)
    except ConfigValidationError:
        assert not validator.is_valid(config)
    else:
        assert validator.is_valid(config)
        assert validator.is_valid(to_storable(converted))


# -- validation and conversion -------------------------------------------------------------------


def test_strings_are_converted_to_each_fields_type() -> None:
    converted = SCHEMA.validate(
        {
            "endpoint": " https://exec.example.org:8808/ ",
            "mirrors": "http://a:1, http://b:2/,",
            "pool_size": "8",
            "ratio": "0.25",
            "debug": "true",
            "region": "us",
            "priority": "2",
            "labels": '["x", "y"]',
            "extra": '{"nested": [1, true, null]}',
            "token": TOKEN,
        }
    )
    assert converted["endpoint"] == "https://exec.example.org:8808"
    assert converted["mirrors"] == ["http://a:1", "http://b:2"]
    assert converted["pool_size"] == 8 and type(converted["pool_size"]) is int
    assert converted["ratio"] == 0.25
    assert converted["debug"] is True
    assert converted["region"] == "us"
    assert converted["priority"] == 2
    assert converted["labels"] == ["x", "y"]
    assert converted["extra"] == {"nested": [1, True, None]}
    assert isinstance(converted["token"], Secret) and converted["token"].reveal() == TOKEN


@pytest.mark.parametrize(("text", "expected"), [("true", True), ("Yes", True), ("1", True), ("off", False), ("false", False), ("0", False)])
def test_boolean_spellings(text: str, expected: bool) -> None:
    assert SCHEMA.validate({**MINIMAL, "debug": text})["debug"] is expected


def test_defaults_are_filled_and_empty_values_count_as_missing() -> None:
    converted = SCHEMA.validate({**MINIMAL, "pool_size": "", "labels": []})
    assert converted == {**MINIMAL, "pool_size": 4, "ratio": 0.5, "debug": False, "region": "eu"}
    optional = ConfigSchema([ConfigField("size", "integer", default=3), ConfigField("name", "string")])
    assert optional.validate(None) == {"size": 3}


def test_each_bad_field_is_named() -> None:
    found = problems(
        {
            "endpoint": "ftp://example.org",
            "pool_size": "many",
            "ratio": "nan",
            "debug": "maybe",
            "region": "mars",
            "extra": "{not json",
            "labels": 5,
        }
    )
    assert set(found) == {"endpoint", "pool_size", "ratio", "debug", "region", "extra", "labels"}
    assert "http" in found["endpoint"]
    assert "integer" in found["pool_size"]
    assert "eu" in found["region"] and "us" in found["region"]
    assert "JSON" in found["extra"]


def test_every_problem_is_in_the_message() -> None:
    with pytest.raises(ConfigValidationError) as caught:
        SCHEMA.validate({"pool_size": "x", "colour": "red"}, provider="fake")
    message = str(caught.value)
    assert "'fake'" in message
    for field in ("pool_size", "colour", "endpoint"):
        assert field in message


def test_bound_problems_are_listed_with_the_others_at_once() -> None:
    """One round trip shows every problem: a bound is not hidden behind an unknown or missing field."""
    found = problems({"pool_size": 0, "ratio": "2", "colour": "red", "debug": "maybe", "labels": ["a", 1]})
    assert set(found) == {"endpoint", "pool_size", "ratio", "colour", "debug", "labels"}
    assert found["endpoint"] == "is required"
    assert "minimum" in found["pool_size"]


def test_unknown_fields_are_rejected_with_the_known_ones_listed() -> None:
    found = problems({**MINIMAL, "colour": "red"})
    assert list(found) == ["colour"]
    assert "unknown field" in found["colour"] and "pool_size" in found["colour"]


def test_required_fields() -> None:
    assert problems({}) == {"endpoint": "is required"}
    assert problems(None) == {"endpoint": "is required"}
    assert problems({"endpoint": ""}) == {"endpoint": "is required"}


def test_the_config_must_be_an_object() -> None:
    with pytest.raises(ConfigValidationError, match="JSON object"):
        SCHEMA.validate(["endpoint"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value"),
    [("pool_size", 0), ("pool_size", "65"), ("ratio", -0.1), ("ratio", "1.01"), ("nickname", "x"), ("nickname", "y" * 11)],
)
def test_bounds(field: str, value: Any) -> None:
    assert list(problems({**MINIMAL, field: value})) == [field]


@pytest.mark.parametrize("value", [True, 2.5, [1], {"a": 1}])
def test_an_integer_field_refuses_other_types(value: Any) -> None:
    assert list(problems({**MINIMAL, "pool_size": value})) == ["pool_size"]


def test_an_integral_float_is_an_integer() -> None:
    assert SCHEMA.validate({**MINIMAL, "pool_size": 8.0})["pool_size"] == 8


# -- secrets -------------------------------------------------------------------------------------


def test_a_secret_never_shows_its_value() -> None:
    converted = SCHEMA.validate({**MINIMAL, "token": TOKEN})
    secret = converted["token"]
    for shown in (repr(secret), str(secret), f"{secret}", f"{secret!r}", repr(converted), str(converted)):
        assert TOKEN not in shown
    assert MASK in repr(secret)
    assert secret.reveal() == TOKEN
    assert secret == Secret(TOKEN) and secret != Secret("other") and secret != TOKEN
    assert bool(secret) and not Secret("")
    assert secret_values(converted) == [TOKEN]
    assert to_storable(converted)["token"] == TOKEN


def test_a_secret_already_wrapped_is_accepted() -> None:
    assert SCHEMA.validate({**MINIMAL, "token": Secret(TOKEN)})["token"] == Secret(TOKEN)


@pytest.mark.parametrize(
    "config",
    [
        {**MINIMAL, "token": "s3cr3t!"},  # too short
        {**MINIMAL, "token": "s3cr3t!", "pool_size": 0},  # and another schema problem
        {**MINIMAL, "token": 12345678901},  # not a string
        {"token": "s3cr3t!-but-long-enough"},  # another field is missing
        {"token": "s3cr3t!-but-long-enough", "pool_size": "x"},
    ],
)
def test_error_messages_for_a_secret_never_contain_it(config: dict[str, Any]) -> None:
    with pytest.raises(ConfigValidationError) as caught:
        SCHEMA.validate(config)
    value = str(config["token"])
    assert value not in str(caught.value)
    assert value not in repr(caught.value.problems)
    if len(value) < 8:
        assert "token" in caught.value.fields


def test_mask_hides_set_secrets_only_and_copies() -> None:
    stored = {"endpoint": "http://h:1", "token": TOKEN, "pool_size": 3}
    original = copy.deepcopy(stored)
    masked = SCHEMA.mask(stored)
    assert masked == {"endpoint": "http://h:1", "token": MASK, "pool_size": 3}
    assert stored == original
    assert SCHEMA.mask({"token": ""}) == {"token": ""}
    assert SCHEMA.mask({"endpoint": "http://h:1"}) == {"endpoint": "http://h:1"}


def test_keep_stored_secrets_resolves_a_form_round_trip() -> None:
    stored = {"endpoint": "http://h:1", "token": TOKEN}
    # The form sent the mask back: the stored secret is kept.
    assert SCHEMA.keep_stored_secrets({"endpoint": "http://h:2", "token": MASK}, stored) == {
        "endpoint": "http://h:2",
        "token": TOKEN,
    }
    # A new value replaces it.
    assert SCHEMA.keep_stored_secrets({"token": "new-token-123"}, stored)["token"] == "new-token-123"
    # The mask with nothing stored means "not set", never the literal mask.
    assert SCHEMA.keep_stored_secrets({"token": MASK, "pool_size": 2}, {}) == {"pool_size": 2}
    # Non-secret fields that happen to equal the mask are left alone.
    assert SCHEMA.keep_stored_secrets({"nickname": MASK}, {"nickname": "bob"}) == {"nickname": MASK}


# -- declaring schemas ---------------------------------------------------------------------------


def test_field_names_must_be_identifiers() -> None:
    with pytest.raises(ValueError, match="identifier"):
        ConfigField("max-size", "integer")


def test_a_field_may_be_declared_only_once() -> None:
    with pytest.raises(ValueError, match="pool_size"):
        ConfigSchema([ConfigField("pool_size", "integer"), ConfigField("pool_size", "string")])


def test_unknown_field_types_are_refused() -> None:
    with pytest.raises(ValueError):
        ConfigField("x", "float")


def test_schema_lookup_and_secret_fields() -> None:
    assert SCHEMA.field("ratio").minimum == 0
    assert SCHEMA.secret_fields == ("token",)
    with pytest.raises(KeyError):
        SCHEMA.field("nope")
