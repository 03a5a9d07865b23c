"""The fake AgentRun checks what the real service checks, so the provider tests prove something."""

from __future__ import annotations

import hashlib
import time
from datetime import datetime, timedelta, timezone

import httpx
from fake_agentrun import FakeAgentRun
from fake_agentrun.signing import ALGORITHM, canonical_query, signature, verify


def test_unsigned_requests_are_refused(fake_agentrun: FakeAgentRun) -> None:
    answer = httpx.post(f"{fake_agentrun.url}/sandboxes", json={"templateName": fake_agentrun.credentials.template_name})
    assert answer.status_code == 401
    assert answer.json()["code"] == "MissingAuthorization"


def _signed_headers(secret: str, key_id: str, when: datetime, path: str, host: str) -> dict[str, str]:
    stamp, day = when.strftime("%Y-%m-%dT%H:%M:%SZ"), when.strftime("%Y%m%d")
    headers = {"host": host, "x-acs-date": stamp, "x-acs-content-sha256": "UNSIGNED-PAYLOAD"}
    names = "host;x-acs-content-sha256;x-acs-date"
    canonical = "\n".join(
        ["GET", path, canonical_query(""), "".join(f"{n}:{headers[n]}\n" for n in names.split(";")), names, "UNSIGNED-PAYLOAD"]
    )
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    mac = signature(secret, day, "cn-hangzhou", "agentrun", f"{ALGORITHM}\n{digest}")
    headers["agentrun-authorization"] = (
        f"{ALGORITHM} Credential={key_id}/{day}/cn-hangzhou/agentrun/aliyun_v4_request,SignedHeaders={names},Signature={mac}"
    )
    return headers


def test_signature_checks_secret_and_clock() -> None:
    secrets = {"AK": "right"}
    now = datetime.now(timezone.utc)
    good = _signed_headers("right", "AK", now, "/sandboxes/x", "127.0.0.1:1")
    assert verify("GET", "/sandboxes/x", "", good, secrets, "cn-hangzhou") == ("AK", None)

    wrong = _signed_headers("wrong", "AK", now, "/sandboxes/x", "127.0.0.1:1")
    assert verify("GET", "/sandboxes/x", "", wrong, secrets, "cn-hangzhou")[1].code == "SignatureDoesNotMatch"

    other_path = verify("GET", "/sandboxes/y", "", good, secrets, "cn-hangzhou")[1]
    assert other_path is not None and other_path.code == "SignatureDoesNotMatch"

    stale = _signed_headers("right", "AK", now - timedelta(hours=1), "/sandboxes/x", "127.0.0.1:1")
    assert verify("GET", "/sandboxes/x", "", stale, secrets, "cn-hangzhou")[1].code == "RequestTimeTooSkewed"

    assert verify("GET", "/sandboxes/x", "", good, secrets, "cn-beijing")[1].code == "IncorrectRegion"
    assert verify("GET", "/sandboxes/x", "", good, {"OTHER": "right"}, "cn-hangzhou")[1].code == "InvalidAccessKeyId.NotFound"


def test_contexts_keep_their_own_interpreter_state(fake_agentrun: FakeAgentRun) -> None:
    """The fake's contexts are real interpreters: what one defines stays in it, and only in it.

    Driven through the provider's own session (the SDK over HTTP), as an execution would be.
    """
    from sandbox_aliyun.execution import connection_from
    from sandbox_aliyun.session import InterpreterSandbox

    config = {**fake_agentrun.config(), "sandbox_idle_timeout": 120}
    sandbox = InterpreterSandbox.open(connection_from(config), 30, time.monotonic() + 30)
    try:
        first, second = sandbox.new_context(), sandbox.new_context()
        assert fake_agentrun.store.get(str(sandbox.sandbox_id)) is not None
        assert fake_agentrun.store.live_contexts() >= 2
        sandbox.execute_python("answer = 41", first, 10)
        same = sandbox.execute_python("print(answer + 1)", first, 10)
        other = sandbox.execute_python("print(answer)", second, 10)
        assert [r for r in same["results"] if r["type"] == "stdout"] == [{"type": "stdout", "text": "42\n"}]
        assert [r["name"] for r in other["results"] if r["type"] == "error"] == ["NameError"]
        assert sandbox.delete_context(first) and sandbox.delete_context(second)
        assert not fake_agentrun.store.get(str(sandbox.sandbox_id)).contexts
    finally:
        sandbox.release()
    assert sandbox.released and sandbox.sandbox_id in fake_agentrun.store.deleted
