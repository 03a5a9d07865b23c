"""Access key checks: the offline shape check of the key id (which must catch a pasted secret,
whitespace and garbage, yet accept real ids), and the rejected-key message when the id and the
secret come from different places."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fake_agentrun import FakeAgentRun

from sandbox_core.client import SandboxClient
from sandbox_core.errors import ConfigValidationError
from sandbox_core.model import ExecutionStatus

PROVIDER = "aliyun_codeinterpreter"
PASTED_SECRET = "q8Ew3ZrT0yUi9OpAsDfGhJkL2mN4bV"  # the 30-character shape of a secret, made up


def _problems(fake: FakeAgentRun, **overrides: Any) -> dict[str, str]:
    """The validation problems of the fake's config with ``overrides``, by field (empty: valid)."""
    config = {k: v for k, v in fake.config(**overrides).items() if v is not None}
    client = SandboxClient(provider=PROVIDER, config=fake.config())
    try:
        client.validate_config(PROVIDER, config)
    except ConfigValidationError as exc:
        return {p.field: p.message for p in exc.problems}
    return {}


@pytest.mark.parametrize(
    "key_id",
    ["LTAI5tAbCdEfGhIjKlMnOpQr", "LTAIabcdefgh1234", "STS.NUb7Xx1yZzAaBbCcDdEeFf01", "AbCdEfGh12345678"],
    ids=["long-term-24", "long-term-16", "sts", "older-16"],
)
def test_real_key_id_shapes_are_accepted(fake_agentrun: FakeAgentRun, key_id: str) -> None:
    assert "access_key_id" not in _problems(fake_agentrun, access_key_id=key_id)


@pytest.mark.parametrize(
    "key_id",
    [" LTAI5tAbCdEfGhIjKlMnOpQr", "LTAI5tAbCdEfGhIjKlMnOpQr\n", '"LTAI5tAbCdEfGhIjKlMnOpQr"', "LTAI-5t-AbCd", "short"],
    ids=["leading-space", "trailing-newline", "quoted", "punctuation", "too-short"],
)
def test_garbage_key_ids_are_refused_by_shape(fake_agentrun: FakeAgentRun, key_id: str) -> None:
    problems = _problems(fake_agentrun, access_key_id=key_id)
    assert "is not an AccessKey ID" in problems["access_key_id"]


def test_a_pasted_secret_is_recognised_and_not_repeated(fake_agentrun: FakeAgentRun) -> None:
    problems = _problems(fake_agentrun, access_key_id=PASTED_SECRET)
    assert "looks like an AccessKey secret" in problems["access_key_id"]
    assert PASTED_SECRET not in json.dumps(problems)


def test_a_bad_key_id_from_the_environment_names_the_variable(
    fake_agentrun: FakeAgentRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTRUN_ACCESS_KEY_ID", PASTED_SECRET)
    problems = _problems(fake_agentrun, access_key_id=None)
    assert "(from AGENTRUN_ACCESS_KEY_ID)" in problems["access_key_id"]
    assert PASTED_SECRET not in json.dumps(problems)


def test_a_rejected_key_from_two_places_names_each(
    fake_agentrun: FakeAgentRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTRUN_ACCESS_KEY_SECRET", "wrong-secret-from-env")
    config = {k: v for k, v in fake_agentrun.config().items() if k != "access_key_secret"}
    client = SandboxClient(provider=PROVIDER, config=config)
    try:
        result = client.execute("print(1)")
    finally:
        client.close()

    assert result.status is ExecutionStatus.PROVIDER_ERROR, result
    assert result.error is not None
    message = result.error.message
    assert f"{fake_agentrun.credentials.access_key_id} (from the config)" in message
    assert "check the config's access_key_id and AGENTRUN_ACCESS_KEY_SECRET in the environment" in message
    assert "wrong-secret-from-env" not in json.dumps(result.to_dict())
