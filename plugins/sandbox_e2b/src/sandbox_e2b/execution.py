"""One execution in a fresh E2B sandbox, and the health probe, through the official E2B SDK.

Each execution creates its own sandbox from the configured template, uploads the sandbox-core
runner and the encoded job, runs the runner with the job on its stdin, streams its output into
the runner protocol's bounded readers, and kills the sandbox in a ``finally``: whether the code
succeeded, failed, timed out or the provider itself failed. Nothing survives into another
execution, which is why no sandbox is ever reused. The SDK is imported inside the functions
because it takes over a second to import.
"""

from __future__ import annotations

import logging
import math
import posixpath
import shlex
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sandbox_core.model import ExecutionRequest, ExecutionResult, HealthStatus
from sandbox_core.runner import BoundedCapture, Job, ResultStream, build_result, runner_source
from sandbox_core.schema import Secret, secret_values

from sandbox_e2b import RUNTIME_NAME
from sandbox_e2b.errors import E2BUnavailableError, Problem, describe

if TYPE_CHECKING:
    from e2b import Sandbox

logger = logging.getLogger(__name__)

WORKDIR = "/tmp/sandbox-core"
"""Where the runner and the job go inside the sandbox (the SDK reports the path it resolved)."""
RUNNER_FILES = {"python": "runner.py", "javascript": "runner.js"}
INTERPRETERS = {"python": "python3", "javascript": "node"}
LIFETIME_MARGIN = 60
"""Seconds a sandbox may outlive the execution's timeout before E2B kills it by itself."""
SANDBOX_METADATA = {"created_by": "sandbox-core"}


def sdk_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """The connection options every SDK call gets, from the validated config.

    ``debug`` is pinned off so that an ``E2B_DEBUG`` in the environment cannot send the key to
    localhost; empty fields fall back to the SDK's own defaults (and its E2B_* variables).
    """
    api_key = config["api_key"]
    options: dict[str, Any] = {
        "api_key": api_key.reveal() if isinstance(api_key, Secret) else str(api_key),
        "request_timeout": float(config.get("request_timeout") or 30.0),
        "debug": False,
    }
    for name in ("domain", "api_url", "sandbox_url"):
        if config.get(name):
            options[name] = config[name]
    return options


def _fail(provider_name: str, problem: Problem, **metadata: Any) -> ExecutionResult:
    facts = {"runtime": RUNTIME_NAME, **metadata, **problem.metadata()}
    return ExecutionResult.provider_failure(provider_name, problem.message, **facts)


def execute(request: ExecutionRequest, config: Mapping[str, Any], provider_name: str) -> ExecutionResult:
    """Run ``request`` in a new sandbox and kill it afterwards; E2B failures become ``provider_error``."""
    languages = tuple(config.get("languages") or ())
    if request.language not in languages:
        return ExecutionResult.provider_failure(
            provider_name,
            f"the e2b provider is configured for {', '.join(languages)} only, not {request.language}: "
            "add it to the e2b config's languages if the template can run it",
            runtime=RUNTIME_NAME,
        )
    secrets = secret_values(config)
    options = sdk_options(config)
    template = str(config.get("template") or "")
    metadata: dict[str, Any] = {"runtime": RUNTIME_NAME, "template": template}
    started = time.monotonic()
    try:
        sandbox = _create(template, request, config, options, secrets)
    except E2BUnavailableError as failed:
        return _fail(provider_name, failed.problem, template=template)
    metadata["sandbox_id"] = sandbox.sandbox_id
    metadata["sandbox_create_time"] = round(time.monotonic() - started, 3)
    try:
        result = _run(sandbox, request, config, provider_name, metadata, secrets)
    except E2BUnavailableError as failed:
        result = _fail(provider_name, failed.problem, **metadata)
    finally:
        _kill(sandbox, secrets)
    return result


def _create(
    template: str, request: ExecutionRequest, config: Mapping[str, Any], options: Mapping[str, Any], secrets: list[str]
) -> Sandbox:
    from e2b import Sandbox

    lifetime = max(int(config.get("sandbox_timeout") or 300), math.ceil(request.timeout) + LIFETIME_MARGIN)
    try:
        sandbox = Sandbox.create(template=template or None, timeout=lifetime, metadata=dict(SANDBOX_METADATA), **options)
    except Exception as exc:
        raise E2BUnavailableError(describe(exc, action="creating a sandbox", secrets=secrets)) from None
    logger.info("created E2B sandbox %s from template %s", sandbox.sandbox_id, template)
    return sandbox


def _upload(sandbox: Sandbox, request: ExecutionRequest, secrets: list[str]) -> tuple[str, Job]:
    """Upload the runner, then the job; returns the command that runs it and the job.

    Files are named by their path in :data:`WORKDIR`; the command and the job's output folder use
    the paths the sandbox reports it wrote, which is what its processes see.
    """
    language = request.language
    try:
        runner = sandbox.files.write(posixpath.join(WORKDIR, RUNNER_FILES[language]), runner_source(language))
        output_dir = posixpath.join(posixpath.dirname(runner.path), "output")
        job = Job(code=request.code, arguments=request.arguments, output_dir=output_dir)
        job_file = sandbox.files.write(posixpath.join(WORKDIR, "job.json"), job.encode())
    except Exception as exc:
        raise E2BUnavailableError(describe(exc, action="uploading the job", secrets=secrets)) from None
    # The job file is unlinked once the shell has opened it as stdin, before user code starts, so
    # the code cannot read the job's result marker from the file system.
    job_path = shlex.quote(job_file.path)
    command = f"{{ rm -f {job_path} && exec {INTERPRETERS[language]} {shlex.quote(runner.path)}; }} < {job_path}"
    return command, job


def _run(
    sandbox: Sandbox,
    request: ExecutionRequest,
    config: Mapping[str, Any],
    provider_name: str,
    metadata: dict[str, Any],
    secrets: list[str],
) -> ExecutionResult:
    from e2b import CommandExitException, SandboxNotRunningException, SandboxUnreachableException, TimeoutException

    command, job = _upload(sandbox, request, secrets)
    limit = int(config.get("max_output_bytes") or 1 << 20)
    stdout, stderr = ResultStream(job.marker, limit), BoundedCapture(limit)
    exit_code: int | None = None
    timed_out = False
    started = time.monotonic()
    try:
        outcome = sandbox.commands.run(
            command,
            timeout=request.timeout,
            on_stdout=lambda text: stdout.feed(text.encode("utf-8")),
            on_stderr=lambda text: stderr.feed(text.encode("utf-8")),
            retain_output=False,
        )
        exit_code = outcome.exit_code
    except CommandExitException as exited:
        exit_code = exited.exit_code
    except (SandboxNotRunningException, SandboxUnreachableException) as exc:
        raise E2BUnavailableError(describe(exc, action="running the code", secrets=secrets)) from None
    except TimeoutException:
        # The command stream's deadline is the execution's timeout; what was printed until then
        # is already in the readers. The sandbox (and the code in it) is killed by the caller.
        timed_out = True
    except Exception as exc:
        raise E2BUnavailableError(describe(exc, action="running the code", secrets=secrets)) from None
    return build_result(
        provider=provider_name,
        stdout=stdout,
        stderr=stderr,
        exit_code=exit_code,
        execution_time=time.monotonic() - started,
        timed_out=timed_out,
        timeout=request.timeout,
        metadata=metadata,
    )


def _kill(sandbox: Sandbox, secrets: list[str]) -> None:
    """Kill the sandbox; a failure is logged, and E2B still ends it at its lifetime."""
    try:
        killed = sandbox.kill()
    except Exception as exc:
        problem = describe(exc, action=f"killing sandbox {sandbox.sandbox_id}", secrets=secrets)
        logger.warning("%s; E2B ends it when its lifetime runs out", problem.message)
    else:
        logger.info("%s E2B sandbox %s", "killed" if killed else "already gone:", sandbox.sandbox_id)


def check_health(config: Mapping[str, Any]) -> HealthStatus:
    """List one sandbox: a real, cheap, authenticated call that shows E2B answers this key."""
    from e2b import Sandbox

    options = sdk_options(config)
    started = time.monotonic()
    try:
        Sandbox.list(limit=1, **options).next_items()
    except Exception as exc:
        problem = describe(exc, action="listing sandboxes", secrets=secret_values(config))
        return HealthStatus(
            healthy=False, message=problem.message, latency=time.monotonic() - started, details=problem.metadata()
        )
    latency = time.monotonic() - started
    return HealthStatus(
        healthy=True,
        message=f"E2B API answered in {latency * 1000:.0f} ms",
        latency=latency,
        details={"runtime": RUNTIME_NAME, "template": config.get("template")},
    )
