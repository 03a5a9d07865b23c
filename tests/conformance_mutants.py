"""Deliberately broken providers, each wrong in one way, to show the conformance kit catches it.

Each mutant wraps the working ``UnsandboxedSubprocessProvider`` and breaks one promise of the
contract (see ``test_conformance_kit.py``, which runs the kit against every mutant). This module is
copied next to the generated test file of each run, so it imports only installed packages.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Mapping
from typing import Any

import attrs

from sandbox_core import ExecutionRequest, ExecutionResult, HealthStatus, ProviderInfo, hookimpl
from sandbox_core.model import ErrorInfo, ExecutionStatus
from sandbox_core.schema import ConfigField, ConfigSchema
from sandbox_core.streaming import OutputCallback, OutputEvent
from sandbox_core.testing import UnsandboxedSubprocessProvider

WATCHDOG_SECONDS = 3.0
"""How long the mutant that ignores timeouts lets code run before its "backend" kills it."""


class Mutant(UnsandboxedSubprocessProvider):
    """The local provider with hooks to bend a request, a config or a result.

    Its config has a ``backend`` switch: ``"down"`` plays a backend that cannot be reached, which
    a correct provider reports (unhealthy, ``provider_error``) rather than raising.
    """

    @hookimpl
    def sandbox_config_schema(self) -> ConfigSchema:
        backend = ConfigField("backend", "string", label="Backend (up, or down to play an unreachable one)", default="up")
        return ConfigSchema([*super().sandbox_config_schema().fields, backend])

    def backend_down(self, what: str) -> Any:
        if what == "health":
            return HealthStatus(healthy=False, message="cannot reach the backend")
        return ExecutionResult.provider_failure("mutant", "cannot reach the backend")

    @hookimpl
    def sandbox_health(self, config: Mapping[str, Any]) -> HealthStatus:
        if config["backend"] == "down":
            return self.backend_down("health")
        return super().sandbox_health(config)

    def bend_request(self, request: ExecutionRequest) -> ExecutionRequest:
        return request

    def bend_config(self, config: Mapping[str, Any]) -> Mapping[str, Any]:
        return config

    def bend_result(self, result: ExecutionResult, request: ExecutionRequest) -> ExecutionResult:
        return result

    def bend_events(self, on_output: OutputCallback | None) -> OutputCallback | None:
        return on_output

    @hookimpl
    def sandbox_execute(
        self, request: ExecutionRequest, config: Mapping[str, Any], provider_name: str, on_output: OutputCallback | None
    ) -> ExecutionResult:
        if config["backend"] == "down":
            return self.backend_down("execute")
        bent = self.bend_request(request)
        return self.bend_result(self._run(bent, self.bend_config(config), provider_name, self.bend_events(on_output)), bent)


def _result(result: ExecutionResult, **changes: Any) -> ExecutionResult:
    return attrs.evolve(result, **changes)


class DropsArguments(Mutant):
    def bend_request(self, request: ExecutionRequest) -> ExecutionRequest:
        return attrs.evolve(request, arguments={})


class StringifiesArguments(Mutant):
    """Passes every argument as text, like a provider that puts them in environment variables."""

    def bend_request(self, request: ExecutionRequest) -> ExecutionRequest:
        return attrs.evolve(request, arguments={k: str(v) for k, v in request.arguments.items()})


class TruncatesArguments(Mutant):
    """Cuts long string arguments, like a provider that passes them on a command line."""

    def bend_request(self, request: ExecutionRequest) -> ExecutionRequest:
        cut = {k: v[: 64 << 10] if isinstance(v, str) else v for k, v in request.arguments.items()}
        return attrs.evolve(request, arguments=cut)


class WrongValue(Mutant):
    def bend_result(self, result: ExecutionResult, request: ExecutionRequest) -> ExecutionResult:
        return _result(result, value={"wrapped": result.value}) if result.value is not None else result


class EmptyValueWithoutMain(Mutant):
    """Reports "" instead of null when the code defines no main()."""

    def bend_result(self, result: ExecutionResult, request: ExecutionRequest) -> ExecutionResult:
        return _result(result, value="") if result.value is None and result.ok else result


class StripsOutput(Mutant):
    def bend_result(self, result: ExecutionResult, request: ExecutionRequest) -> ExecutionResult:
        return _result(result, stdout=result.stdout.strip())


class AsciiOutput(Mutant):
    def bend_result(self, result: ExecutionResult, request: ExecutionRequest) -> ExecutionResult:
        return _result(result, stdout=result.stdout.encode("ascii", "replace").decode("ascii"))


class LosesStderr(Mutant):
    def bend_result(self, result: ExecutionResult, request: ExecutionRequest) -> ExecutionResult:
        return _result(result, stderr="")


class SuccessForErrors(Mutant):
    def bend_result(self, result: ExecutionResult, request: ExecutionRequest) -> ExecutionResult:
        if result.status is ExecutionStatus.ERROR:
            return _result(result, status=ExecutionStatus.SUCCESS, exit_code=0)
        return result


class ForgetsTraceback(Mutant):
    def bend_result(self, result: ExecutionResult, request: ExecutionRequest) -> ExecutionResult:
        if result.error is None:
            return result
        return _result(result, error=ErrorInfo(type=result.error.type, message=result.error.message))


class TrustsPrintedFrames(Mutant):
    """Takes the value from a result-looking line in the output, as a naive parser would."""

    FRAME = re.compile("\x1esandbox-result-[0-9a-f]+:(\\{.*\\})")

    def bend_result(self, result: ExecutionResult, request: ExecutionRequest) -> ExecutionResult:
        found = self.FRAME.search(result.stdout)
        return _result(result, value=json.loads(found.group(1))["value"]) if found else result


class StringifiesUnserializableValues(Mutant):
    """Turns a return value that is not JSON data into its repr instead of reporting an error."""

    WRAP = (
        "\n\nif callable(globals().get('main')):\n"
        "    import json as _json\n"
        "    _user_main = main\n"
        "    def main(*args, **kwargs):\n"
        "        return _json.loads(_json.dumps(_user_main(*args, **kwargs), default=repr))\n"
    )

    def bend_request(self, request: ExecutionRequest) -> ExecutionRequest:
        if request.language != "python":
            return request
        return attrs.evolve(request, code=request.code + self.WRAP)


class IgnoresTimeouts(Mutant):
    """Lets code run past its timeout until a watchdog kills it, then reports a plain crash."""

    def bend_request(self, request: ExecutionRequest) -> ExecutionRequest:
        return attrs.evolve(request, timeout=max(request.timeout, WATCHDOG_SECONDS))

    def bend_result(self, result: ExecutionResult, request: ExecutionRequest) -> ExecutionResult:
        if result.status is not ExecutionStatus.TIMEOUT:
            return result
        killed = ErrorInfo(type="ProcessExited", message="the program was killed (signal 9)")
        return _result(result, status=ExecutionStatus.ERROR, exit_code=137, error=killed)


class TimeoutLosesOutput(Mutant):
    def bend_result(self, result: ExecutionResult, request: ExecutionRequest) -> ExecutionResult:
        return _result(result, stdout="") if result.status is ExecutionStatus.TIMEOUT else result


class NeverTruncates(Mutant):
    def bend_config(self, config: Mapping[str, Any]) -> Mapping[str, Any]:
        return {**config, "max_output_bytes": 1 << 26}


class DropsArtifacts(Mutant):
    def bend_result(self, result: ExecutionResult, request: ExecutionRequest) -> ExecutionResult:
        return _result(result, artifacts=())


class JavaScriptAsPython(Mutant):
    def bend_request(self, request: ExecutionRequest) -> ExecutionRequest:
        return attrs.evolve(request, language="python")


class JavaScriptDoesNotAwait(Mutant):
    """Calls an async main() without awaiting it, so the value is a serialized Promise ({})."""

    WRAP = (
        "\n;if (typeof main === 'function') { const __user_main = main;"
        " main = function (args) { const r = __user_main(args); return r instanceof Promise ? {} : r; }; }\n"
    )

    def bend_request(self, request: ExecutionRequest) -> ExecutionRequest:
        if request.language != "javascript":
            return request
        return attrs.evolve(request, code=request.code + self.WRAP)


class WrongProviderName(Mutant):
    def bend_result(self, result: ExecutionResult, request: ExecutionRequest) -> ExecutionResult:
        return _result(result, provider="somebody-else")


class UnlabelledSchema(Mutant):
    """Its JSON Schema has no titles, so a form would show bare field names."""

    class Schema(ConfigSchema):
        def json_schema(self, title: str = "") -> dict[str, Any]:
            document = super().json_schema(title)
            for prop in document["properties"].values():
                prop.pop("title", None)
            return document

    @hookimpl
    def sandbox_config_schema(self) -> ConfigSchema:
        return self.Schema(super().sandbox_config_schema().fields)


class AcceptsAnything(Mutant):
    """Its schema checks nothing: unknown fields and out-of-range values go through."""

    class Schema(ConfigSchema):
        def validate(self, config: Mapping[str, Any] | None, *, provider: str = "") -> dict[str, Any]:
            values = {f.name: f.default for f in self.fields if f.default is not None}
            values.update(config or {})
            return values

    @hookimpl
    def sandbox_config_schema(self) -> ConfigSchema:
        return self.Schema(super().sandbox_config_schema().fields)


class Unhealthy(Mutant):
    @hookimpl
    def sandbox_health(self, config: Mapping[str, Any]) -> HealthStatus:
        return HealthStatus(healthy=False, message="backend unreachable")


class SharesFolders(Mutant):
    """Runs every execution in one folder that is never emptied, like a pool that forgets to wipe."""

    def _workdir(self) -> str:
        if not hasattr(self, "shared"):
            self.shared = super()._workdir()
        return self.shared

    def _discard_workdir(self, workdir: str) -> None:
        pass

    @hookimpl
    def sandbox_shutdown(self) -> None:
        if hasattr(self, "shared"):
            shutil.rmtree(self.shared, ignore_errors=True)
            del self.shared


class UnusableAfterShutdown(Mutant):
    """Closes its backend for good on shutdown, so the executions that follow fail."""

    closed = False

    @hookimpl
    def sandbox_shutdown(self) -> None:
        self.closed = True

    def bend_result(self, result: ExecutionResult, request: ExecutionRequest) -> ExecutionResult:
        if self.closed:
            return ExecutionResult.provider_failure("mutant", "the pool has been shut down")
        return result


class IgnoresRuntimes(Mutant):
    """Claims runtimes, then runs every request the same way whatever runtime it names."""

    @hookimpl
    def sandbox_provider_info(self) -> ProviderInfo:
        return ProviderInfo(description="claims runtimes it does not have", runtimes=True)


class RaisesWhenUnreachable(Mutant):
    """Lets the connection error of an unreachable backend escape its hooks."""

    def backend_down(self, what: str) -> Any:
        raise ConnectionError("[Errno 111] Connection refused")


class HealthyWhenUnreachable(Mutant):
    """Says healthy without asking its backend."""

    def backend_down(self, what: str) -> Any:
        return HealthStatus(healthy=True, message="ready") if what == "health" else super().backend_down(what)


class RunsWhenUnreachable(Mutant):
    """Reports success for a backend it could not reach."""

    def backend_down(self, what: str) -> Any:
        return ExecutionResult(status="success") if what == "execute" else super().backend_down(what)


class Buggy(Mutant):
    """Raises its own KeyError from every execution, as a provider with a bug does."""

    def bend_result(self, result: ExecutionResult, request: ExecutionRequest) -> ExecutionResult:
        reply: dict[str, Any] = {}
        return _result(result, value=reply["missing_key"])


class StreamsTwice(Mutant):
    """Sends every piece of output twice, as a provider that relays both a chunk and its line might."""

    def bend_events(self, on_output: OutputCallback | None) -> OutputCallback | None:
        if on_output is None:
            return None

        def twice(event: OutputEvent) -> None:
            on_output(event)
            on_output(event)

        return twice


class StreamsAtTheEnd(Mutant):
    """Claims to stream, but holds every event back until the execution is over."""

    @hookimpl
    def sandbox_execute(
        self, request: ExecutionRequest, config: Mapping[str, Any], provider_name: str, on_output: OutputCallback | None
    ) -> ExecutionResult:
        held: list[OutputEvent] = []
        result = super().sandbox_execute(request, config, provider_name, held.append)
        for event in held:
            if on_output is not None:
                on_output(event)
        return result


class StreamsPastTheLimit(Mutant):
    """Streams what its output limit cut off as well (the raw pipe, not what the result keeps)."""

    current: OutputCallback | None = None

    def bend_result(self, result: ExecutionResult, request: ExecutionRequest) -> ExecutionResult:
        if result.stdout_truncated and self.current is not None:
            self.current(OutputEvent("stdout", "y" * 999 + "\n"))
        return result

    def bend_events(self, on_output: OutputCallback | None) -> OutputCallback | None:
        self.current = on_output
        return on_output


MUTANTS: dict[str, type[Mutant]] = {
    "drops_arguments": DropsArguments,
    "ignores_runtimes": IgnoresRuntimes,
    "stringifies_arguments": StringifiesArguments,
    "truncates_arguments": TruncatesArguments,
    "wrong_value": WrongValue,
    "empty_value_without_main": EmptyValueWithoutMain,
    "strips_output": StripsOutput,
    "ascii_output": AsciiOutput,
    "loses_stderr": LosesStderr,
    "success_for_errors": SuccessForErrors,
    "forgets_traceback": ForgetsTraceback,
    "trusts_printed_frames": TrustsPrintedFrames,
    "stringifies_unserializable_values": StringifiesUnserializableValues,
    "ignores_timeouts": IgnoresTimeouts,
    "timeout_loses_output": TimeoutLosesOutput,
    "never_truncates": NeverTruncates,
    "drops_artifacts": DropsArtifacts,
    "javascript_as_python": JavaScriptAsPython,
    "javascript_does_not_await": JavaScriptDoesNotAwait,
    "wrong_provider_name": WrongProviderName,
    "unlabelled_schema": UnlabelledSchema,
    "accepts_anything": AcceptsAnything,
    "unhealthy": Unhealthy,
    "shares_folders": SharesFolders,
    "unusable_after_shutdown": UnusableAfterShutdown,
    "raises_when_unreachable": RaisesWhenUnreachable,
    "healthy_when_unreachable": HealthyWhenUnreachable,
    "runs_when_unreachable": RunsWhenUnreachable,
    "buggy": Buggy,
    "streams_twice": StreamsTwice,
    "streams_at_the_end": StreamsAtTheEnd,
    "streams_past_the_limit": StreamsPastTheLimit,
}


def make(name: str) -> Mutant:
    return MUTANTS[name]()
