"""The one mask, text scrubber and config masker every display and message path uses."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from sandbox_core.redaction import MASK, mask_secrets, mask_url, scrub
from sandbox_core.schema import Secret


def test_a_secret_that_is_a_prefix_of_another_leaves_no_tail() -> None:
    assert scrub("a=abc123 b=abc123-LONGER-TAIL", ["abc123", "abc123-LONGER-TAIL"]) == f"a={MASK} b={MASK}"


@pytest.mark.parametrize("secret", ["k", "k3", "k3y"])
def test_secrets_of_every_length_are_scrubbed(secret: str) -> None:
    assert scrub(f"pin {secret}!", [secret]) == f"pin {MASK}!"


def test_encoded_forms_of_a_secret_are_scrubbed() -> None:
    secret = 'p@ss/wörd"\\'
    text = f"url=http://u:{quote(secret, safe='')}@h body={json.dumps({'key': secret})} ascii={json.dumps(secret)}"
    scrubbed = scrub(text, [secret])
    assert "ss" not in scrubbed and scrubbed.count(MASK) == 3, scrubbed


def test_empty_secrets_change_nothing() -> None:
    assert scrub("nothing to hide", ["", ""]) == "nothing to hide"


def test_mask_secrets_masks_set_secrets_urls_and_nested_paths_only() -> None:
    config = {
        "token": Secret("t0k"),
        "unset": Secret(""),
        "empty": "",
        "endpoints": ["http://u:pw@h:1/x", "http://h:2"],
        "auth": {"password": "pw", "user": "bob"},
    }
    masked = mask_secrets(config, ["token", "unset", "empty", "missing", "auth.password"], ["endpoints", "absent"])
    assert masked == {
        "token": MASK,
        "unset": Secret(""),
        "empty": "",
        "endpoints": [f"http://u:{MASK}@h:1/x", "http://h:2"],
        "auth": {"password": MASK, "user": "bob"},
    }
    assert config["auth"] == {"password": "pw", "user": "bob"}, "the original is left alone"


def test_mask_url_leaves_other_values_alone() -> None:
    assert mask_url("mysql://root:p%40ss@db/x?y=1") == f"mysql://root:{MASK}@db/x?y=1"
    assert mask_url("http://user@host/") == "http://user@host/"
