"""Property-based fuzzing of the admin API from its own OpenAPI document (schemathesis).

Bounded on purpose (a few dozen examples per operation and mode, well under a minute): it looks
for server errors and for answers that contradict the published document, not for coverage.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from admin_support import AUTH, GuardedLocalProvider
from fastapi import FastAPI

schemathesis = pytest.importorskip("schemathesis")

# After the importorskip on purpose: without schemathesis (which brings hypothesis) the module is skipped, not broken.
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

MAX_EXAMPLES = 50
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture
def fuzzed_app(admin_app: FastAPI, register_provider: Any) -> FastAPI:
    # The document's example provider name, so generated requests also reach a real config.
    register_provider("self_managed", GuardedLocalProvider())
    return admin_app


def test_the_api_never_fails_with_5xx_and_keeps_to_its_openapi_document(fuzzed_app: FastAPI) -> None:
    schema = schemathesis.openapi.from_asgi("/api/v1/sandbox/openapi.json", fuzzed_app, headers=AUTH)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 6
    started = time.monotonic()
    for operation in operations:
        strategies = [
            operation.as_strategy(schemathesis.GenerationMode.POSITIVE),
            operation.as_strategy(schemathesis.GenerationMode.NEGATIVE),
            *schema.get_strategies_from_examples(operation),
        ]

        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=st.one_of(strategies))
        def check(case: Any) -> None:
            case.call_and_validate(headers=AUTH, checks=CHECKS)

        check()
    assert time.monotonic() - started < 90
