"""The pytest fixtures sandbox-core ships are there in any project that installs it (pytest11)."""

from __future__ import annotations

import pytest


def test_the_fixtures_are_available_without_any_conftest(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_uses_fixtures='''
import os
from sandbox_core import ExecutionResult, execute_code, hookimpl
from sandbox_core.registry import get_registry
from sandbox_core.schema import ConfigSchema

class Hello:
    @hookimpl
    def sandbox_config_schema(self):
        return ConfigSchema([])

    @hookimpl
    def sandbox_execute(self, request):
        return ExecutionResult(status="success", stdout="hello from the test provider", exit_code=0)

def test_register_and_execute(register_provider, sandbox_settings, sandbox_registry):
    assert os.environ["SANDBOX_DATABASE_URL"].startswith("sqlite:///")
    assert get_registry() is sandbox_registry and sandbox_registry.names() == []
    register_provider("hello", Hello())
    sandbox_settings.set_active_provider("hello")
    assert execute_code("anything").stdout == "hello from the test provider"

def test_the_next_test_starts_empty(sandbox_registry):
    assert sandbox_registry.names() == []
'''
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
