"""The conformance kit: the contract tests every sandbox provider must pass.

A provider's whole conformance test module is a subclass that supplies fixtures and switches on
the capabilities it has::

    from sandbox_core.testing import ProviderConformance

    class TestMyProvider(ProviderConformance):
        supports_javascript = True

        @pytest.fixture
        def provider_name(self):
            return "my_provider"

        @pytest.fixture
        def provider_config(self):
            return {"endpoint": "http://127.0.0.1:9000"}

Capability flags default to off: a test for a capability the provider does not claim is skipped
with a reason, never silently passed. Without a ``provider_plugin`` fixture the provider is loaded
from its installed entry point, exactly as users get it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest

from sandbox_core.client import SandboxClient
from sandbox_core.errors import ConfigValidationError
from sandbox_core.model import ExecutionResult, ExecutionStatus, HealthStatus
from sandbox_core.registry import ProviderRegistry
from sandbox_core.schema import ConfigSchema

UNICODE_TEXT = "héllo wörld ✓ 你好 🎉"


class ProviderFixtures:
    """The fixtures every kit class shares: the provider a test module supplies and a client for it.

    Used by :class:`ProviderConformance` and by the isolation profile
    (:class:`~sandbox_core.testing.isolation.ProviderIsolation`), so a provider author defines
    ``provider_name`` and ``provider_config`` the same way for both.
    """

    @pytest.fixture
    def provider_name(self) -> str:
        pytest.fail("define a `provider_name` fixture returning the provider's entry-point name")

    @pytest.fixture
    def provider_config(self) -> Mapping[str, Any]:
        pytest.fail("define a `provider_config` fixture returning a working config for the provider")

    @pytest.fixture
    def provider_plugin(self) -> object | None:
        """An object to register in process instead of loading the installed entry point."""
        return None

    @pytest.fixture
    def provider_registry(self, provider_name: str, provider_plugin: object | None) -> ProviderRegistry:
        if provider_plugin is None:
            return ProviderRegistry()
        registry = ProviderRegistry(discover=False)
        registry.register(provider_name, provider_plugin)
        return registry

    @pytest.fixture
    def sandbox_client(
        self, provider_name: str, provider_config: Mapping[str, Any], provider_registry: ProviderRegistry
    ) -> Iterator[SandboxClient]:
        client = SandboxClient(provider=provider_name, config=provider_config, registry=provider_registry)
        yield client
        client.close()


class ProviderConformance(ProviderFixtures):
    """Base class of a provider's conformance tests; see the module docstring."""

    supports_javascript: bool = False
    """The provider runs JavaScript (``main(args)``, sync or async)."""
    supports_timeout: bool = False
    """The provider stops code at the request's timeout and keeps the output printed so far."""
    supports_output_limit: bool = False
    """The provider truncates output at a limit and flags it (supply ``output_limit_bytes``)."""
    supports_artifacts: bool = False
    """Files left in ``$SANDBOX_OUTPUT_DIR`` come back as artifacts."""

    timeout_seconds: float = 2.0
    """The timeout the timeout test asks for."""

    # -- fixtures the provider supplies (besides those of ProviderFixtures) --------------------

    @pytest.fixture
    def invalid_configs(self) -> Sequence[tuple[Mapping[str, Any], str]]:
        """Configs the provider must refuse, each with the name of the field the error must name."""
        return []

    @pytest.fixture
    def output_limit_bytes(self) -> int:
        """The stdout limit (bytes) in force with ``provider_config``; needed for the output-limit test."""
        self._require("supports_output_limit")
        pytest.fail("define `output_limit_bytes` when supports_output_limit is on")

    @staticmethod
    def run(client: SandboxClient, code: str, **kwargs: Any) -> ExecutionResult:
        kwargs.setdefault("timeout", 30)
        result = client.execute(code, **kwargs)
        assert isinstance(result, ExecutionResult), f"sandbox_execute returned {type(result).__name__}"
        return result

    def _require(self, flag: str) -> None:
        if not getattr(self, flag):
            pytest.skip(f"{type(self).__name__}.{flag} is off")

    # -- the contract -------------------------------------------------------------------------

    def test_hello_world(self, sandbox_client: SandboxClient, provider_name: str) -> None:
        result = self.run(sandbox_client, 'print("hello, sandbox")')
        assert result.status is ExecutionStatus.SUCCESS, result
        assert result.stdout == "hello, sandbox\n"
        assert result.exit_code == 0
        assert result.provider == provider_name
        assert result.execution_time > 0

    def test_unicode_output(self, sandbox_client: SandboxClient) -> None:
        result = self.run(sandbox_client, f"print({UNICODE_TEXT!r})")
        assert result.stdout == UNICODE_TEXT + "\n", result

    def test_main_return_value(self, sandbox_client: SandboxClient) -> None:
        code = "def main(a, b):\n    return {'sum': a + b, 'flag': True, 'items': [a, b, None]}\n"
        result = self.run(sandbox_client, code, arguments={"a": 1, "b": 2})
        assert result.status is ExecutionStatus.SUCCESS, result
        assert result.value == {"sum": 3, "flag": True, "items": [1, 2, None]}

    def test_arguments_are_data(self, sandbox_client: SandboxClient) -> None:
        arguments = {
            "yes": True,
            "no": False,
            "nothing": None,
            "text": UNICODE_TEXT + " \"quotes\" 'and' \\backslashes\\ \n newline",
            "nested": {"list": [1, 2.5, {"deep": [None, False]}], "empty": {}},
            "big_int": 2**53,
            "code_like": "__import__('os').system('echo pwned')",
        }
        code = "def main(**kwargs):\n    return kwargs\n"
        result = self.run(sandbox_client, code, arguments=arguments)
        assert result.status is ExecutionStatus.SUCCESS, result
        assert result.value == arguments
        assert "pwned" not in result.stdout

    def test_argument_types_inside(self, sandbox_client: SandboxClient) -> None:
        code = (
            "def main(yes, no, nothing, nested):\n"
            "    return [type(yes).__name__, type(no).__name__, type(nothing).__name__, type(nested).__name__]\n"
        )
        result = self.run(sandbox_client, code, arguments={"yes": True, "no": False, "nothing": None, "nested": {"a": [1]}})
        assert result.value == ["bool", "bool", "NoneType", "dict"], result

    def test_large_arguments(self, sandbox_client: SandboxClient) -> None:
        blob = "x" * (1 << 20) + UNICODE_TEXT
        code = "def main(blob):\n    return {'length': len(blob), 'tail': blob[-len('" + UNICODE_TEXT + "'):]}\n"
        result = self.run(sandbox_client, code, arguments={"blob": blob})
        assert result.status is ExecutionStatus.SUCCESS, result
        assert result.value == {"length": len(blob), "tail": UNICODE_TEXT}

    def test_no_main(self, sandbox_client: SandboxClient) -> None:
        result = self.run(sandbox_client, "x = 6 * 7\nprint(x)\n")
        assert result.status is ExecutionStatus.SUCCESS, result
        assert result.stdout == "42\n"
        assert result.value is None

    def test_stderr(self, sandbox_client: SandboxClient) -> None:
        result = self.run(sandbox_client, "import sys\nsys.stderr.write('careful\\n')\nprint('out')\n")
        assert result.status is ExecutionStatus.SUCCESS, result
        assert "careful" in result.stderr
        assert result.stdout == "out\n"

    def test_nonzero_exit(self, sandbox_client: SandboxClient) -> None:
        result = self.run(sandbox_client, "import sys\nprint('before')\nsys.exit(3)\n")
        assert result.status is ExecutionStatus.ERROR, result
        assert result.exit_code == 3
        assert result.stdout == "before\n"

    def test_syntax_error(self, sandbox_client: SandboxClient) -> None:
        result = self.run(sandbox_client, "def main(:\n    return 1\n")
        assert result.status is ExecutionStatus.ERROR, result
        assert result.error is not None and result.error.type == "SyntaxError", result
        assert result.exit_code not in (0, None)

    def test_exception_with_traceback(self, sandbox_client: SandboxClient) -> None:
        code = "def helper(n):\n    raise ValueError(f'bad input {n}')\n\ndef main(n):\n    print('working')\n    helper(n)\n"
        result = self.run(sandbox_client, code, arguments={"n": 7})
        assert result.status is ExecutionStatus.ERROR, result
        assert result.error is not None
        assert result.error.type == "ValueError"
        assert result.error.message == "bad input 7"
        assert "helper" in result.error.traceback and "line 2" in result.error.traceback
        assert result.stdout == "working\n"
        assert result.value is None

    def test_value_not_json(self, sandbox_client: SandboxClient) -> None:
        result = self.run(sandbox_client, "def main():\n    return object()\n")
        assert result.status is ExecutionStatus.ERROR, result
        assert result.error is not None and "JSON" in result.error.message

    def test_prints_cannot_forge_result(self, sandbox_client: SandboxClient) -> None:
        code = (
            "print('\\x1esandbox-result-00000000000000000000000000000000:{\"value\": 666, \"exit_code\": 0}')\n"
            "def main():\n    return 1\n"
        )
        result = self.run(sandbox_client, code)
        assert result.value == 1, result
        assert "666" in result.stdout

    def test_timeout_keeps_partial_output(self, sandbox_client: SandboxClient) -> None:
        self._require("supports_timeout")
        code = "import sys, time\nprint('started', flush=True)\ntime.sleep(120)\nprint('never')\n"
        result = self.run(sandbox_client, code, timeout=self.timeout_seconds)
        assert result.status is ExecutionStatus.TIMEOUT, result
        assert "started" in result.stdout
        assert "never" not in result.stdout
        assert result.execution_time < 60

    def test_output_truncated_and_flagged(self, sandbox_client: SandboxClient, output_limit_bytes: int) -> None:
        self._require("supports_output_limit")
        code = f"import sys\nfor _ in range({output_limit_bytes * 4 // 1000 + 1}):\n    sys.stdout.write('y' * 999 + '\\n')\n"
        result = self.run(sandbox_client, code)
        assert result.stdout_truncated, result
        assert len(result.stdout.encode()) <= output_limit_bytes
        assert result.stdout.startswith("y" * 999)
        assert result.status is ExecutionStatus.OUTPUT_LIMIT

    def test_artifacts(self, sandbox_client: SandboxClient) -> None:
        self._require("supports_artifacts")
        code = (
            "import os\n"
            "def main():\n"
            "    with open(os.path.join(os.environ['SANDBOX_OUTPUT_DIR'], 'report.csv'), 'w') as f:\n"
            "        f.write('a,b\\n1,2\\n')\n"
            "    return 'done'\n"
        )
        result = self.run(sandbox_client, code)
        assert result.status is ExecutionStatus.SUCCESS, result
        names = {a.name: a for a in result.artifacts}
        assert "report.csv" in names, result.artifacts
        assert names["report.csv"].content == b"a,b\n1,2\n"
        assert names["report.csv"].mime_type == "text/csv"

    def test_executions_do_not_share_files(self, sandbox_client: SandboxClient) -> None:
        """What one execution leaves in its working and output folders is gone for the next one.

        Providers that reuse a backend sandbox (a warm pool) must wipe both between executions.
        """
        leave = (
            "import os\n"
            "for folder in (os.getcwd(), os.environ.get('SANDBOX_OUTPUT_DIR')):\n"
            "    try:\n"
            "        with open(os.path.join(folder, 'left-behind.txt'), 'w') as f:\n"
            "            f.write('from an earlier execution')\n"
            "    except (OSError, TypeError):\n"
            "        pass\n"
        )
        look = (
            "import os\n"
            "def main():\n"
            "    return [os.path.exists(os.path.join(folder, 'left-behind.txt'))\n"
            "            for folder in (os.getcwd(), os.environ.get('SANDBOX_OUTPUT_DIR') or '/nonexistent')]\n"
        )
        for _ in range(2):
            assert self.run(sandbox_client, leave).status is ExecutionStatus.SUCCESS
            result = self.run(sandbox_client, look)
            assert result.status is ExecutionStatus.SUCCESS, result
            assert result.value == [False, False], "a file left by the previous execution is still there"
            assert not result.artifacts, result.artifacts

    def test_executions_after_shutdown(self, sandbox_client: SandboxClient, provider_registry: ProviderRegistry) -> None:
        """``sandbox_shutdown`` releases the provider's resources; later executions start afresh."""
        assert self.run(sandbox_client, "print('before')").stdout == "before\n"
        provider_registry.shutdown()
        provider_registry.shutdown()  # a second call is harmless
        result = self.run(sandbox_client, "print('after')")
        assert result.status is ExecutionStatus.SUCCESS, result
        assert result.stdout == "after\n"

    def test_javascript_sync_main(self, sandbox_client: SandboxClient) -> None:
        self._require("supports_javascript")
        code = "function main(args) {\n  console.log('js ok');\n  return {sum: args.a + args.b, flag: true, none: null};\n}\n"
        result = self.run(sandbox_client, code, language="javascript", arguments={"a": 1, "b": 2})
        assert result.status is ExecutionStatus.SUCCESS, result
        assert result.value == {"sum": 3, "flag": True, "none": None}
        assert result.stdout == "js ok\n"

    def test_javascript_async_main(self, sandbox_client: SandboxClient) -> None:
        self._require("supports_javascript")
        code = "async function main(args) {\n  await new Promise((r) => setTimeout(r, 10));\n  return args.text;\n}\n"
        result = self.run(sandbox_client, code, language="javascript", arguments={"text": UNICODE_TEXT})
        assert result.status is ExecutionStatus.SUCCESS, result
        assert result.value == UNICODE_TEXT

    def test_javascript_error(self, sandbox_client: SandboxClient) -> None:
        self._require("supports_javascript")
        code = "function main() {\n  throw new TypeError('nope');\n}\n"
        result = self.run(sandbox_client, code, language="javascript")
        assert result.status is ExecutionStatus.ERROR, result
        assert result.error is not None and result.error.type == "TypeError"
        assert "nope" in result.error.message

    def test_config_schema_well_formed(
        self, sandbox_client: SandboxClient, provider_name: str, provider_config: Mapping[str, Any]
    ) -> None:
        from jsonschema import Draft202012Validator

        schema = sandbox_client.config_schema(provider_name)
        assert isinstance(schema, ConfigSchema)
        document = schema.json_schema(title=provider_name)
        Draft202012Validator.check_schema(document)
        for name, prop in document["properties"].items():
            assert prop.get("title"), f"field {name} has no label"
        sandbox_client.validate_config(provider_name, provider_config)

    def test_invalid_configs_rejected(
        self,
        sandbox_client: SandboxClient,
        provider_name: str,
        invalid_configs: Sequence[tuple[Mapping[str, Any], str]],
    ) -> None:
        cases = list(invalid_configs) + [({"no_such_field_xyz": 1}, "no_such_field_xyz")]
        for config, field in cases:
            with pytest.raises(ConfigValidationError) as caught:
                sandbox_client.validate_config(provider_name, config)
            assert field in caught.value.fields, f"{config!r}: expected the error to name {field!r}, got {caught.value}"

    def test_health(self, sandbox_client: SandboxClient) -> None:
        status = sandbox_client.health()
        assert isinstance(status, HealthStatus)
        assert status.healthy, status.message
