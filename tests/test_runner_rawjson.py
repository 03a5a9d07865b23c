"""JSON relayed as text: raw arguments into a job, a frame's value kept raw, raw values written out."""

from __future__ import annotations

import json

import pytest

from sandbox_core.model import ExecutionRequest
from sandbox_core.runner import BoundedCapture, Job, ResultStream, build_result, new_marker
from sandbox_core.runner.rawjson import ArgumentsError, RawArguments, RawJSON, decode_frame, encode_parts


def test_raw_arguments_check_names_and_keep_values_as_text() -> None:
    text = b'{"a": [1, {"b": null}], "\\u00e9t\\u00e9": "x"}'
    arguments = RawArguments.from_json(text)
    assert list(arguments) == ["a", "été"] and arguments["a"] == [1, {"b": None}]
    assert bytes(memoryview(arguments.data)) == text
    assert ExecutionRequest(code="pass", arguments=arguments).arguments is arguments


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"[1]", "must be a JSON object"),
        (b'{"not a name": 1}', "not a valid parameter name"),
        (b'{"a": [1,}', "not valid JSON"),
        (b"{" + b",".join(b'"k%d": 0' % i for i in range(20)) + b"}", "more than 10 arguments"),
    ],
)
def test_raw_arguments_refused(text: bytes, message: str) -> None:
    with pytest.raises(ArgumentsError, match=message):
        RawArguments.from_json(text, max_names=10)


def test_job_with_raw_arguments_encodes_as_with_a_dict() -> None:
    raw = Job(code="x", arguments=RawArguments.from_json(b'{"n": [1, 2.5, "\\u2713"]}'), marker="m")
    plain = Job(code="x", arguments={"n": [1, 2.5, "✓"]}, marker="m")
    assert json.loads(raw.encode()) == json.loads(plain.encode())
    assert b"".join(raw.parts()) == raw.encode()


def test_frame_value_stays_raw() -> None:
    frame = decode_frame(b'{"value": [[], []], "exit_code": 0, "artifacts": []}\n')
    assert frame is not None and isinstance(frame["value"], RawJSON)
    assert bytes(frame["value"]) == b"[[], []]" and frame["exit_code"] == 0
    assert decode_frame(b'{"value": null}') == {"value": None}
    assert decode_frame(b'{"value": [1,') is None
    assert decode_frame(b"[1]") is None
    assert decode_frame(b"{" + b",".join(b'"k%d": 0' % i for i in range(100)) + b"}") is None


def test_build_result_keeps_the_value_raw_only_when_asked() -> None:
    marker = new_marker()
    stream_text = b"out\n" + marker.encode() + b'{"value": {"a": [1]}, "exit_code": 0, "has_main": true}\n'
    results = []
    for raw in (False, True):
        stream = ResultStream(marker)
        stream.feed(stream_text)
        result = build_result(provider="p", stdout=stream, stderr=BoundedCapture(), exit_code=0, execution_time=0.1, raw_value=raw)
        results.append(result)
    assert results[0].value == {"a": [1]}
    assert isinstance(results[1].value, RawJSON) and results[1].value.decode() == {"a": [1]}
    assert json.loads(b"".join(encode_parts(results[1].to_dict()))) == results[0].to_dict()


def test_encode_parts_splices_raw_values_and_leaves_strings_alone() -> None:
    body = {"value": RawJSON(b'[1, "\\u0000"]'), "stdout": "\x00 not a placeholder \x00", "n": [RawJSON(bytearray(b"{}"))]}
    parts = encode_parts(body)
    assert json.loads(b"".join(parts)) == {"value": [1, "\x00"], "stdout": "\x00 not a placeholder \x00", "n": [{}]}
    with pytest.raises(TypeError):
        encode_parts({"x": object()})
