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

Optional capability flags default to off: a test for a capability the provider does not claim is
skipped with a reason, never silently passed. Output streaming is checked for every provider
(events joined equal the result's output, and stop at the output limit); that events arrive while
the code runs is checked for providers whose ``ProviderInfo.streaming`` is on. Timeouts are not optional: ``supports_timeout`` is
on unless the provider opts out with a ``no_timeout_reason``. The "never raise for an unreachable
backend" clauses are checked directly against the hooks with an ``unreachable_config`` fixture.
Without a ``provider_plugin`` fixture the provider is loaded from its installed entry point,
exactly as users get it. A failing test says in one line which field of the result is wrong and
how the execution ended (see :func:`describe`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest

from sandbox_core.client import SandboxClient
from sandbox_core.errors import ConfigValidationError, ProviderUnavailableError
from sandbox_core.model import ExecutionRequest, ExecutionResult, ExecutionStatus, HealthStatus
from sandbox_core.registry import ProviderRegistry
from sandbox_core.schema import ConfigSchema
from sandbox_core.streaming import STREAMS, OutputEvent

UNICODE_TEXT = "héllo wörld ✓ 你好 🎉"

_FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\S+)')


def _clip(text: str, size: int = 120) -> str:
    return text if len(text) <= size else text[: size - 1] + "…"


def _show(value: Any) -> str:
    if isinstance(value, ExecutionStatus):
        value = value.value
    return _clip(repr(value))


def describe(result: ExecutionResult) -> str:
    """One short line saying how an execution ended and, when it failed, why: for assertion messages.

    For a provider's own exception it names the last frame of the traceback the core kept in
    ``metadata["traceback"]``, so the cause shows without reading the whole result.
    """
    parts = [f"status={result.status.value}"]
    if result.exit_code is not None:
        parts.append(f"exit_code={result.exit_code}")
    if result.error is not None:
        parts.append(f"error={result.error.type}: {_clip(result.error.message)}")
    frames = _FRAME.findall(str(result.metadata.get("traceback") or ""))
    if frames:
        path, line, function = frames[-1]
        parts.append(f"raised in {function} at {path.rsplit('/', 1)[-1]}:{line}")
    if result.stderr.strip() and result.status is not ExecutionStatus.SUCCESS:
        parts.append(f"stderr ends {_clip(result.stderr.strip().splitlines()[-1], 80)!r}")
    return "; ".join(parts)


def check(result: ExecutionResult, field: str, ok: bool, wanted: str) -> None:
    """Fail with one line naming ``field`` of ``result`` when ``ok`` is false."""
    if not ok:
        actual = _show(getattr(result, field))
        pytest.fail(f"result.{field} is {actual}, expected {wanted} ({describe(result)})", pytrace=False)


def expect(result: ExecutionResult, field: str, expected: Any) -> None:
    """Fail with one line naming ``field`` when ``result.field != expected``."""
    check(result, field, getattr(result, field) == expected, _show(expected))


STREAMING_CODE = (
    "import sys\n"
    "for i in range(3):\n"
    "    print('out', i, flush=True)\n"
    "    sys.stderr.write(f'err {i}\\n')\n"
    "    sys.stderr.flush()\n"
    "def main():\n"
    "    return 'done'\n"
)


def check_events(result: ExecutionResult, events: Sequence[Any]) -> None:
    """Fail in one line unless ``events`` are output events whose text, joined per stream, is the result's."""
    for event in events:
        if not isinstance(event, OutputEvent) or event.stream not in STREAMS or not event.text:
            pytest.fail(f"on_output got {_clip(repr(event))}, expected OutputEvent('stdout'|'stderr', non-empty text)",
                        pytrace=False)
    for stream in STREAMS:
        streamed = "".join(e.text for e in events if e.stream == stream)
        check(result, stream, streamed == getattr(result, stream), f"the text of its {stream} events, {_show(streamed)}")


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
    supports_timeout: bool = True
    """The provider stops code at the request's timeout and keeps the output printed so far.

    Required of code that runs untrusted input: a provider that cannot do it turns this off *and*
    says why in :attr:`no_timeout_reason` (shown in the skip); off without a reason fails."""
    no_timeout_reason: str = ""
    """Why this provider does not enforce timeouts (only with ``supports_timeout = False``)."""
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
    def unreachable_config(self) -> Mapping[str, Any]:
        """A valid config whose backend cannot be reached (e.g. a closed local port), to check that
        ``sandbox_health`` and ``sandbox_execute`` report it instead of raising.

        Without it those tests are skipped, saying so; a provider with no backend to lose
        overrides it to skip with its own reason."""
        pytest.skip(
            f"{type(self).__name__} defines no `unreachable_config` fixture (a config whose backend "
            "cannot be reached), so the unreachable-backend clauses are not checked"
        )

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
        expect(result, "status", ExecutionStatus.SUCCESS)
        expect(result, "stdout", "hello, sandbox\n")
        expect(result, "exit_code", 0)
        expect(result, "provider", provider_name)
        check(result, "execution_time", result.execution_time > 0, "a positive number of seconds")

    def test_unicode_output(self, sandbox_client: SandboxClient) -> None:
        result = self.run(sandbox_client, f"print({UNICODE_TEXT!r})")
        expect(result, "stdout", UNICODE_TEXT + "\n")

    def test_main_return_value(self, sandbox_client: SandboxClient) -> None:
        code = "def main(a, b):\n    return {'sum': a + b, 'flag': True, 'items': [a, b, None]}\n"
        result = self.run(sandbox_client, code, arguments={"a": 1, "b": 2})
        expect(result, "status", ExecutionStatus.SUCCESS)
        expect(result, "value", {"sum": 3, "flag": True, "items": [1, 2, None]})

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
        expect(result, "status", ExecutionStatus.SUCCESS)
        expect(result, "value", arguments)
        check(result, "stdout", "pwned" not in result.stdout, "no output from an argument that looks like code")

    def test_argument_types_inside(self, sandbox_client: SandboxClient) -> None:
        code = (
            "def main(yes, no, nothing, nested):\n"
            "    return [type(yes).__name__, type(no).__name__, type(nothing).__name__, type(nested).__name__]\n"
        )
        result = self.run(sandbox_client, code, arguments={"yes": True, "no": False, "nothing": None, "nested": {"a": [1]}})
        expect(result, "value", ["bool", "bool", "NoneType", "dict"])

    def test_large_arguments(self, sandbox_client: SandboxClient) -> None:
        blob = "x" * (1 << 20) + UNICODE_TEXT
        code = "def main(blob):\n    return {'length': len(blob), 'tail': blob[-len('" + UNICODE_TEXT + "'):]}\n"
        result = self.run(sandbox_client, code, arguments={"blob": blob})
        expect(result, "status", ExecutionStatus.SUCCESS)
        expect(result, "value", {"length": len(blob), "tail": UNICODE_TEXT})

    def test_no_main(self, sandbox_client: SandboxClient) -> None:
        result = self.run(sandbox_client, "x = 6 * 7\nprint(x)\n")
        expect(result, "status", ExecutionStatus.SUCCESS)
        expect(result, "stdout", "42\n")
        expect(result, "value", None)

    def test_stderr(self, sandbox_client: SandboxClient) -> None:
        result = self.run(sandbox_client, "import sys\nsys.stderr.write('careful\\n')\nprint('out')\n")
        expect(result, "status", ExecutionStatus.SUCCESS)
        check(result, "stderr", "careful" in result.stderr, "to contain 'careful'")
        expect(result, "stdout", "out\n")

    def test_nonzero_exit(self, sandbox_client: SandboxClient) -> None:
        result = self.run(sandbox_client, "import sys\nprint('before')\nsys.exit(3)\n")
        expect(result, "status", ExecutionStatus.ERROR)
        expect(result, "exit_code", 3)
        expect(result, "stdout", "before\n")

    def test_syntax_error(self, sandbox_client: SandboxClient) -> None:
        result = self.run(sandbox_client, "def main(:\n    return 1\n")
        expect(result, "status", ExecutionStatus.ERROR)
        check(result, "error", result.error is not None and result.error.type == "SyntaxError", "a SyntaxError")
        check(result, "exit_code", result.exit_code not in (0, None), "a non-zero exit code")

    def test_exception_with_traceback(self, sandbox_client: SandboxClient) -> None:
        code = "def helper(n):\n    raise ValueError(f'bad input {n}')\n\ndef main(n):\n    print('working')\n    helper(n)\n"
        result = self.run(sandbox_client, code, arguments={"n": 7})
        expect(result, "status", ExecutionStatus.ERROR)
        error = result.error
        check(result, "error", error is not None and (error.type, error.message) == ("ValueError", "bad input 7"),
              "ValueError: bad input 7")
        assert error is not None
        check(result, "error", "helper" in error.traceback and "line 2" in error.traceback,
              "a traceback naming helper() at line 2")
        expect(result, "stdout", "working\n")
        expect(result, "value", None)

    def test_value_not_json(self, sandbox_client: SandboxClient) -> None:
        result = self.run(sandbox_client, "def main():\n    return object()\n")
        expect(result, "status", ExecutionStatus.ERROR)
        check(result, "error", result.error is not None and "JSON" in result.error.message,
              "an error saying the value is not JSON")

    def test_prints_cannot_forge_result(self, sandbox_client: SandboxClient) -> None:
        code = (
            "print('\\x1esandbox-result-00000000000000000000000000000000:{\"value\": 666, \"exit_code\": 0}')\n"
            "def main():\n    return 1\n"
        )
        result = self.run(sandbox_client, code)
        expect(result, "value", 1)
        check(result, "stdout", "666" in result.stdout, "the forged line, kept as plain output")

    def test_timeout_keeps_partial_output(self, sandbox_client: SandboxClient) -> None:
        if not self.supports_timeout:
            if not self.no_timeout_reason:
                pytest.fail(
                    f"{type(self).__name__}.supports_timeout is off without a reason: a provider that runs untrusted "
                    "code must stop it at its timeout; to opt out, set no_timeout_reason to say why",
                    pytrace=False,
                )
            pytest.skip(f"{type(self).__name__}.supports_timeout is off: {self.no_timeout_reason}")
        code = "import sys, time\nprint('started', flush=True)\ntime.sleep(120)\nprint('never')\n"
        result = self.run(sandbox_client, code, timeout=self.timeout_seconds)
        expect(result, "status", ExecutionStatus.TIMEOUT)
        check(result, "stdout", "started" in result.stdout and "never" not in result.stdout,
              "'started' (printed before the timeout) only")
        check(result, "execution_time", result.execution_time < 60, "well under the 120 s the code asked for")

    def test_output_truncated_and_flagged(self, sandbox_client: SandboxClient, output_limit_bytes: int) -> None:
        self._require("supports_output_limit")
        code = f"import sys\nfor _ in range({output_limit_bytes * 4 // 1000 + 1}):\n    sys.stdout.write('y' * 999 + '\\n')\n"
        result = self.run(sandbox_client, code)
        expect(result, "stdout_truncated", True)
        check(result, "stdout", len(result.stdout.encode()) <= output_limit_bytes and result.stdout.startswith("y" * 999),
              f"the first {output_limit_bytes} bytes of the output at most")
        expect(result, "status", ExecutionStatus.OUTPUT_LIMIT)

    # -- streaming: output events (every provider; the core streams for those that do not) -------

    def test_streamed_output_equals_the_result(self, sandbox_client: SandboxClient) -> None:
        """The events of each stream, joined, are the result's output, and the result is the one a
        call without streaming returns."""
        events: list[OutputEvent] = []
        result = self.run(sandbox_client, STREAMING_CODE, on_output=events.append)
        plain = self.run(sandbox_client, STREAMING_CODE)
        for field in ("status", "stdout", "stderr", "exit_code", "value", "error", "stdout_truncated", "stderr_truncated"):
            expect(result, field, getattr(plain, field))
        expect(result, "stdout", "out 0\nout 1\nout 2\n")
        check_events(result, events)

    def test_events_arrive_while_the_code_runs(
        self, sandbox_client: SandboxClient, provider_registry: ProviderRegistry, provider_name: str,
        provider_config: Mapping[str, Any],
    ) -> None:
        """A streaming provider's ``sandbox_execute`` itself sends output as it comes: a line
        printed a second before another arrives that much earlier (by the events' timestamps)."""
        if not provider_registry.provider_info(provider_name).streaming:
            pytest.skip(f"provider {provider_name!r} does not stream (ProviderInfo.streaming is off): "
                        "the core emits its output as events after the result")
        config = sandbox_client.validate_config(provider_name, provider_config)
        code = "import time\nprint('first', flush=True)\ntime.sleep(1)\nprint('second', flush=True)\n"
        events: list[OutputEvent] = []
        received: list[float] = []

        def record(event: OutputEvent) -> None:
            received.append(time.time())
            events.append(event)

        result = provider_registry.execute(provider_name, ExecutionRequest(code=code, timeout=30), config, record)
        expect(result, "stdout", "first\nsecond\n")
        check_events(result, events)
        first = next(i for i, e in enumerate(events) if "first" in e.text)
        second = next(i for i, e in enumerate(events) if "second" in e.text)
        gap = received[second] - received[first]
        check(result, "stdout", gap >= 0.5,
              f"'first' streamed well before 'second', but on_output got them {gap:.3f} s apart (sent only at the end?)")

    def test_streaming_stops_at_the_output_limit(self, sandbox_client: SandboxClient, output_limit_bytes: int) -> None:
        """A flood streams no more than the result keeps: events stop at the limit, the result is flagged."""
        self._require("supports_output_limit")
        code = f"import sys\nfor _ in range({output_limit_bytes * 4 // 1000 + 1}):\n    sys.stdout.write('y' * 999 + '\\n')\n"
        events: list[OutputEvent] = []
        result = self.run(sandbox_client, code, on_output=events.append)
        expect(result, "stdout_truncated", True)
        expect(result, "status", ExecutionStatus.OUTPUT_LIMIT)
        streamed = "".join(e.text for e in events if e.stream == "stdout")
        check(result, "stdout", len(streamed.encode()) <= output_limit_bytes,
              f"events within the {output_limit_bytes}-byte limit, but {len(streamed.encode())} bytes were streamed")
        check_events(result, events)

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
        expect(result, "status", ExecutionStatus.SUCCESS)
        report = {a.name: a for a in result.artifacts}.get("report.csv")
        check(result, "artifacts", report is not None, "an artifact named report.csv")
        assert report is not None
        check(result, "artifacts", (report.content, report.mime_type) == (b"a,b\n1,2\n", "text/csv"),
              "report.csv with its content 'a,b\\n1,2\\n' and mime type text/csv")

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
            expect(self.run(sandbox_client, leave), "status", ExecutionStatus.SUCCESS)
            result = self.run(sandbox_client, look)
            expect(result, "status", ExecutionStatus.SUCCESS)
            check(result, "value", result.value == [False, False],
                  "[False, False]: a file left by the previous execution in [working folder, output folder] is still there")
            check(result, "artifacts", not result.artifacts, "none (they were left by the previous execution)")

    def test_executions_after_shutdown(self, sandbox_client: SandboxClient, provider_registry: ProviderRegistry) -> None:
        """``sandbox_shutdown`` releases the provider's resources; later executions start afresh."""
        expect(self.run(sandbox_client, "print('before')"), "stdout", "before\n")
        provider_registry.shutdown()
        provider_registry.shutdown()  # a second call is harmless
        result = self.run(sandbox_client, "print('after')")
        expect(result, "status", ExecutionStatus.SUCCESS)
        expect(result, "stdout", "after\n")

    def test_javascript_sync_main(self, sandbox_client: SandboxClient) -> None:
        self._require("supports_javascript")
        code = "function main(args) {\n  console.log('js ok');\n  return {sum: args.a + args.b, flag: true, none: null};\n}\n"
        result = self.run(sandbox_client, code, language="javascript", arguments={"a": 1, "b": 2})
        expect(result, "status", ExecutionStatus.SUCCESS)
        expect(result, "value", {"sum": 3, "flag": True, "none": None})
        expect(result, "stdout", "js ok\n")

    def test_javascript_async_main(self, sandbox_client: SandboxClient) -> None:
        self._require("supports_javascript")
        code = "async function main(args) {\n  await new Promise((r) => setTimeout(r, 10));\n  return args.text;\n}\n"
        result = self.run(sandbox_client, code, language="javascript", arguments={"text": UNICODE_TEXT})
        expect(result, "status", ExecutionStatus.SUCCESS)
        expect(result, "value", UNICODE_TEXT)

    def test_javascript_error(self, sandbox_client: SandboxClient) -> None:
        self._require("supports_javascript")
        code = "function main() {\n  throw new TypeError('nope');\n}\n"
        result = self.run(sandbox_client, code, language="javascript")
        expect(result, "status", ExecutionStatus.ERROR)
        check(result, "error", result.error is not None and result.error.type == "TypeError" and "nope" in result.error.message,
              "TypeError: nope")

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

    def test_unknown_runtime_is_a_clear_error(self, sandbox_client: SandboxClient) -> None:
        """A runtime the provider does not have is refused, naming it; never run with another one."""
        name = "no-such-runtime-3f9c"
        try:
            result = sandbox_client.execute("def main():\n    return 'ran'\n", runtime=name)
        except ValueError as exc:  # the core refuses runtimes for providers that offer none
            assert name in str(exc), exc
            return
        check(result, "status", result.status is not ExecutionStatus.SUCCESS,
              "a refusal: an unknown runtime must not be replaced by a default")
        check(result, "error", result.error is not None and name in result.error.message, f"an error naming {name!r}")

    def test_unreachable_backend_health_reports_it(
        self, sandbox_client: SandboxClient, provider_registry: ProviderRegistry, provider_name: str,
        unreachable_config: Mapping[str, Any],
    ) -> None:
        """``sandbox_health`` itself (not the client that guards it) returns unhealthy, never raises."""
        config = sandbox_client.validate_config(provider_name, unreachable_config)
        try:
            status = provider_registry.health(provider_name, config)
        except Exception as exc:
            pytest.fail(f"sandbox_health raised {type(exc).__name__}: {_clip(str(exc))} for an unreachable backend; "
                        "it must return HealthStatus(healthy=False, message=...)", pytrace=False)
        assert status is not None, "the provider has no sandbox_health hook"
        assert not status.healthy, f"sandbox_health says healthy for an unreachable backend: {status.message}"
        assert status.message, "sandbox_health gave no message an operator can act on"

    def test_unreachable_backend_execute_reports_it(
        self, sandbox_client: SandboxClient, provider_registry: ProviderRegistry, provider_name: str,
        unreachable_config: Mapping[str, Any],
    ) -> None:
        """``sandbox_execute`` itself reports a provider_error (or raises ProviderUnavailableError)."""
        config = sandbox_client.validate_config(provider_name, unreachable_config)
        request = ExecutionRequest(code="print('hi')", timeout=self.timeout_seconds)
        try:
            result = provider_registry.execute(provider_name, request, config)
        except ProviderUnavailableError:
            return
        except Exception as exc:
            pytest.fail(f"sandbox_execute raised {type(exc).__name__}: {_clip(str(exc))} for an unreachable backend; "
                        "it must return a provider_error result or raise ProviderUnavailableError", pytrace=False)
        expect(result, "status", ExecutionStatus.PROVIDER_ERROR)

    def test_health(self, sandbox_client: SandboxClient) -> None:
        status = sandbox_client.health()
        assert isinstance(status, HealthStatus)
        assert status.healthy, f"unhealthy: {status.message}"

