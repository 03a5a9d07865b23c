"""One execution on a pooled E2B code-interpreter sandbox, and the health probe.

Each execution leases a sandbox (:mod:`sandbox_e2b.pool`) and works in a folder of its own,
``/tmp/sandbox-core/<random>``, which holds the job file and the output folder and is wiped
afterwards.

- **Python** runs in a fresh Jupyter code context (its own kernel) whose working directory is
  that folder. The code sent is a short driver around sandbox-core's Python runner: it reads the
  job from the uploaded file, deletes it, lets the runner run the user code, and writes the result
  frame through ``sys.stdout`` (a kernel streams what goes through ``sys.stdout``, not file
  descriptor 1, where the runner itself would write it). Rich results the kernel sends
  (``display()`` of a chart, say) become artifacts next to the output folder's files. The context
  is removed afterwards.
- **JavaScript** runs as a ``node`` process through the sandbox's command API, the runner reading
  the job on its stdin.

An execution that did not end cleanly (timeout, lost sandbox, failed clean-up, kernel gone)
discards its sandbox: it is killed instead of going back to the pool.
"""

from __future__ import annotations

import base64
import logging
import posixpath
import secrets as _random
import shlex
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from sandbox_core.failures import FailureKind, provider_failure
from sandbox_core.model import Artifact, ExecutionRequest, ExecutionResult, ExecutionStatus, HealthStatus
from sandbox_core.pooling import Lease, UnknownRuntimeError, runtime_template
from sandbox_core.runner import Job, build_result, runner_source
from sandbox_core.schema import secret_values
from sandbox_core.streaming import OutputCallback
from sandbox_core.timeouts import request_seconds
from sandbox_e2b import RUNTIME_NAME
from sandbox_e2b.deadline import Deadline
from sandbox_e2b.errors import E2BUnavailableError, Problem, describe
from sandbox_e2b.output import captures
from sandbox_e2b.pool import get_pool, kill, lifetime, sdk_options

if TYPE_CHECKING:
    from e2b_code_interpreter import Result, Sandbox

logger = logging.getLogger(__name__)

WORKDIR = "/tmp/sandbox-core"
"""Parent of the per-execution folders inside the sandbox (the SDK reports the path it resolved)."""
RUNNER_FILES = {"python": "runner.py", "javascript": "runner.js"}
RICH_FORMATS = (("png", "image/png", True), ("jpeg", "image/jpeg", True), ("svg", "image/svg+xml", False))
"""Rich-result formats kept as artifacts: name, MIME type, and whether the kernel sends base64."""

_DRIVER_TEMPLATE = """
def _sandbox_core_execute(job_path, runner):
    import json, os, sys
    with open(job_path, encoding="utf-8") as handle:
        job = json.load(handle)
    os.remove(job_path)
    namespace = {"__name__": "sandbox_core_runner", "__file__": "<sandbox-core-runner>"}
    exec(compile(runner, "<sandbox-core-runner>", "exec"), namespace)
    frame, value_json = namespace["_run"](job@NAMESPACE@)
    rest = json.dumps(frame, ensure_ascii=False)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    sys.stdout.write(job["marker"] + '{"value": ' + value_json + ", " + rest[1:] + "\\n")
    sys.stdout.flush()
_sandbox_core_execute(%r, %r)
del _sandbox_core_execute
"""
"""Runs the job in the context's kernel. The runner is executed in a namespace of its own (not as
``__main__``, where it would wait for a job on stdin), so the kernel's globals stay clean and the
runner's frames are left out of user tracebacks by their file name."""
_DRIVER = _DRIVER_TEMPLATE.replace("@NAMESPACE@", "")
"""One-shot: the user code runs in a fresh namespace of the runner's."""
SESSION_DRIVER = _DRIVER_TEMPLATE.replace("@NAMESPACE@", ", globals()")
"""Sessions: the user code runs in the kernel's own globals (the driver is defined there), so its
names are there for the next execution."""


class Unclean(Exception):
    """The execution cannot go on; the sandbox must not be reused."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


def fail(provider_name: str, problem: Problem, **metadata: Any) -> ExecutionResult:
    facts = {"runtime": RUNTIME_NAME, **metadata}
    return provider_failure(provider_name, problem.message, problem.kind, retry_after=problem.retry_after, **facts)


def execute(
    request: ExecutionRequest, config: Mapping[str, Any], provider_name: str, on_output: OutputCallback | None = None
) -> ExecutionResult:
    """Run ``request`` on a leased sandbox; E2B failures become ``provider_error`` results.

    ``on_output`` gets the code's output as the SDK delivers it (see :mod:`sandbox_e2b.output`).
    """
    languages = tuple(config["languages"])
    if request.language not in languages:
        return provider_failure(
            provider_name,
            f"the e2b provider is configured for {', '.join(languages)} only, not {request.language}: "
            "add it to the e2b config's languages if the template can run it",
            FailureKind.BAD_CONFIG,
            runtime=RUNTIME_NAME,
        )
    if request.runtime is not None:
        try:
            config = {**config, "template": runtime_template(config, request.runtime, "e2b")}
        except UnknownRuntimeError as exc:
            return provider_failure(provider_name, str(exc), FailureKind.BAD_CONFIG, runtime=RUNTIME_NAME)
    template = str(config["template"])
    metadata: dict[str, Any] = {"runtime": RUNTIME_NAME, "template": template, "isolation": config["isolation"]}
    pool = get_pool(config)
    started = time.monotonic()

    def attempt(lease: Lease[Sandbox]) -> ExecutionResult:
        nonlocal started
        metadata["sandbox_id"] = lease.item.sandbox_id
        metadata["sandbox_reused"] = lease.reused
        if not lease.reused:
            metadata["sandbox_create_time"] = round(time.monotonic() - started, 3)
        if lease.replaced is not None:
            metadata["sandbox_replaced"] = lease.replaced.sandbox_id
        try:
            _renew(lease, request, config)
        except _Gone:
            started = time.monotonic()  # the replacement's creation starts now
            raise
        lease.mark_started()
        return _execute_on(lease, request, config, provider_name, metadata, on_output, reusable=pool.max_idle > 0)

    # A pooled sandbox may have ended while idle (its E2B lifetime, or killed from the dashboard):
    # that shows when its lifetime is renewed, before the code started, and a new one is taken.
    try:
        return pool.run(attempt, retry_if=lambda exc: isinstance(exc, _Gone))
    except E2BUnavailableError as failed:
        metadata.pop("sandbox_id", None)
        metadata.pop("sandbox_reused", None)
        return fail(provider_name, failed.problem, **metadata)


class _Gone(E2BUnavailableError):
    """A pooled sandbox ended while it was idle (found when its lifetime was renewed)."""


def _renew(lease: Lease[Sandbox], request: ExecutionRequest, config: Mapping[str, Any]) -> None:
    """Set the sandbox's E2B lifetime for this execution; :class:`_Gone` when a pooled one ended."""
    from e2b import NotFoundException

    wanted = lifetime(config, request_seconds(request))
    if not lease.reused and wanted <= int(config["sandbox_timeout"]):
        return  # just created with that lifetime
    try:
        lease.item.set_timeout(wanted)
    except Exception as exc:
        problem = describe(exc, action="renewing the sandbox's lifetime", secrets=secret_values(config))
        if not (lease.reused and isinstance(exc, NotFoundException)):
            raise E2BUnavailableError(problem) from None
        logger.info("pooled E2B sandbox %s is gone (%s); taking a new one", lease.item.sandbox_id, problem.message)
        raise _Gone(problem) from None


def _execute_on(
    lease: Lease[Sandbox],
    request: ExecutionRequest,
    config: Mapping[str, Any],
    provider_name: str,
    metadata: dict[str, Any],
    on_output: OutputCallback | None,
    *,
    reusable: bool,
) -> ExecutionResult:
    sandbox = lease.item
    secrets = secret_values(config)
    context_id: str | None = None
    try:
        folder, job = upload_job(sandbox, request, secrets)
        write_files(sandbox, folder, request.files, secrets)
        if request.language == "python":
            context_id = _create_context(sandbox, folder, secrets)
            metadata["context_id"] = context_id
            stop = _killer(sandbox, config)
            result = run_python(sandbox, context_id, folder, job, request, config, provider_name, metadata, stop, on_output)
        else:
            result = _run_javascript(sandbox, folder, job, request, config, provider_name, metadata, on_output)
        if result.status is ExecutionStatus.TIMEOUT or result.metadata.get("kernel_lost"):
            lease.discard()
        elif reusable:  # else it is killed now: no need to tidy it up
            _clean(sandbox, folder, context_id, secrets)
        return result
    except Unclean as failed:
        lease.discard()
        return fail(provider_name, failed.problem, **metadata)


def write_files(sandbox: Sandbox, folder: str, files: Mapping[str, bytes], secrets: list[str]) -> None:
    """Write input files (names checked by the core: relative, no ``..``) into ``folder``, in one request."""
    if not files:
        return
    try:
        sandbox.files.write_files([{"path": posixpath.join(folder, name), "data": data} for name, data in files.items()])
    except Exception as exc:
        raise Unclean(describe(exc, action="writing the input files", secrets=secrets)) from None


def upload_job(sandbox: Sandbox, request: ExecutionRequest, secrets: list[str]) -> tuple[str, Job]:
    """Upload the job (and the JavaScript runner) into a new per-execution folder.

    The job's paths are those the sandbox reports it wrote, which is what its processes see.
    """
    name = _random.token_hex(8)
    try:
        if request.language == "javascript":
            sandbox.files.write(posixpath.join(WORKDIR, RUNNER_FILES["javascript"]), runner_source("javascript"))
        placeholder = sandbox.files.write(posixpath.join(WORKDIR, name, ".job"), b"")
        folder = posixpath.dirname(placeholder.path)
        job = Job(code=request.code, arguments=request.arguments, output_dir=posixpath.join(folder, "output"))
        sandbox.files.write(posixpath.join(folder, ".job"), job.encode())
    except Exception as exc:
        raise Unclean(describe(exc, action="uploading the job", secrets=secrets)) from None
    return folder, job


def _create_context(sandbox: Sandbox, folder: str, secrets: list[str]) -> str:
    try:
        context_id: str = sandbox.create_code_context(cwd=folder, language="python").id
        return context_id
    except Exception as exc:
        raise Unclean(describe(exc, action="creating a code context", secrets=secrets)) from None


def run_python(
    sandbox: Sandbox,
    context_id: str,
    folder: str,
    job: Job,
    request: ExecutionRequest,
    config: Mapping[str, Any],
    provider_name: str,
    metadata: dict[str, Any],
    stop: Callable[[], None],
    on_output: OutputCallback | None,
    *,
    driver: str = _DRIVER,
) -> ExecutionResult:
    """Run ``job`` in code context ``context_id`` with ``driver`` (the one-shot one, or a session's);
    ``stop`` ends the code when the timeout passes first."""
    from e2b import SandboxNotRunningException, SandboxUnreachableException, TimeoutException
    from e2b_code_interpreter import Context

    stdout, stderr, feed_stdout = captures(job.marker, int(config["max_output_bytes"]), on_output)
    rich: list[Result] = []
    kernel_errors: list[str] = []
    code = driver % (posixpath.join(folder, ".job"), runner_source("python"))
    deadline = Deadline(request_seconds(request), stop)

    def run() -> None:
        sandbox.run_code(
            code,
            context=Context(context_id, "python", folder),
            on_stdout=deadline.guard(lambda message: feed_stdout(message.line)),
            on_stderr=deadline.guard(lambda message: stderr.feed(message.line.encode("utf-8"))),
            on_result=deadline.guard(rich.append),
            on_error=deadline.guard(lambda error: kernel_errors.append(error.traceback or f"{error.name}: {error.value}")),
            timeout=request_seconds(request),  # a backstop only: it ends the request after about twice that
        )

    try:
        timed_out = deadline.run(run)
    except (SandboxNotRunningException, SandboxUnreachableException) as exc:
        # Subclasses of TimeoutException, but the sandbox ended or vanished: not the code's fault.
        raise Unclean(describe(exc, action="running the code", secrets=secret_values(config))) from None
    except TimeoutException as exc:
        if not str(exc).startswith("Execution timed out"):
            raise Unclean(describe(exc, action="running the code", secrets=secret_values(config))) from None
        timed_out = True
    except Exception as exc:
        raise Unclean(describe(exc, action="running the code", secrets=secret_values(config))) from None
    elapsed = deadline.elapsed
    exit_code: int | None = None
    if not timed_out and stdout.frame() is None:
        # The kernel died or was interrupted before the runner reported: its error goes to stderr.
        for text in kernel_errors:
            stderr.feed(text.encode("utf-8"))
        exit_code = 1
        metadata["kernel_lost"] = True
    result = build_result(
        provider=provider_name,
        stdout=stdout,
        stderr=stderr,
        exit_code=exit_code,
        execution_time=elapsed,
        timed_out=timed_out,
        timeout=request_seconds(request),
        metadata=metadata,
    )
    return _with_rich_results(result, rich, job.max_artifact_bytes)


def _with_rich_results(result: ExecutionResult, rich: list[Result], budget: int) -> ExecutionResult:
    """Add the kernel's image results as artifacts ``result-1.png``…, within the artifact budget."""
    budget -= sum(artifact.size for artifact in result.artifacts)
    added: list[Artifact] = []
    skipped: list[str] = []
    for item in rich:
        for fmt, mime_type, encoded in RICH_FORMATS:
            data = getattr(item, fmt, None)
            if not data:
                continue
            name = f"result-{len(added) + len(skipped) + 1}.{fmt}"
            try:
                content = base64.b64decode(data) if encoded else str(data).encode("utf-8")
            except ValueError:
                skipped.append(name)
                continue
            if len(content) > budget:
                skipped.append(name)
                continue
            budget -= len(content)
            added.append(Artifact(name=name, mime_type=mime_type, size=len(content), content=content))
            break  # one artifact per result: its best image format
    if not added and not skipped:
        return result
    metadata = dict(result.metadata)
    if skipped:
        metadata["skipped_artifacts"] = [*metadata.get("skipped_artifacts", []), *skipped]
    return attrs.evolve(result, artifacts=(*result.artifacts, *added), metadata=metadata)


def _run_javascript(
    sandbox: Sandbox,
    folder: str,
    job: Job,
    request: ExecutionRequest,
    config: Mapping[str, Any],
    provider_name: str,
    metadata: dict[str, Any],
    on_output: OutputCallback | None,
) -> ExecutionResult:
    from e2b import CommandExitException, SandboxNotRunningException, SandboxUnreachableException, TimeoutException

    stdout, stderr, feed_stdout = captures(job.marker, int(config["max_output_bytes"]), on_output)
    job_path = shlex.quote(posixpath.join(folder, ".job"))
    runner = shlex.quote(posixpath.join(posixpath.dirname(folder), RUNNER_FILES["javascript"]))
    # The job file is unlinked once the shell has opened it as stdin, before user code starts, so
    # the code cannot read the job's result marker from the file system.
    command = f"cd {shlex.quote(folder)} && {{ rm -f {job_path} && exec node {runner}; }} < {job_path}"
    exit_codes: list[int] = []
    deadline = Deadline(request_seconds(request), _killer(sandbox, config))

    def run() -> None:
        try:
            outcome = sandbox.commands.run(
                command,
                timeout=request_seconds(request),
                on_stdout=deadline.guard(feed_stdout),
                on_stderr=deadline.guard(lambda text: stderr.feed(text.encode("utf-8"))),
            )
        except CommandExitException as exited:
            exit_codes.append(exited.exit_code)
        else:
            exit_codes.append(outcome.exit_code)

    try:
        timed_out = deadline.run(run)
    except (SandboxNotRunningException, SandboxUnreachableException) as exc:
        # Subclasses of TimeoutException, but the sandbox ended or vanished: not the code's fault.
        raise Unclean(describe(exc, action="running the code", secrets=secret_values(config))) from None
    except TimeoutException:
        timed_out = True
    except Exception as exc:
        raise Unclean(describe(exc, action="running the code", secrets=secret_values(config))) from None
    exit_code = None if timed_out or not exit_codes else exit_codes[0]
    return build_result(
        provider=provider_name,
        stdout=stdout,
        stderr=stderr,
        exit_code=exit_code,
        execution_time=deadline.elapsed,
        timed_out=timed_out,
        timeout=request_seconds(request),
        metadata=metadata,
    )


def _killer(sandbox: Sandbox, config: Mapping[str, Any]) -> Callable[[], None]:
    """How a one-shot execution is stopped at its deadline: the sandbox is killed, which stops the
    code at once (a timed-out sandbox is discarded anyway, and killing it needs only the control plane)."""
    return lambda: kill(sandbox, secret_values(config))


def _clean(sandbox: Sandbox, folder: str, context_id: str | None, secrets: list[str]) -> None:
    """Remove the code context and wipe the execution's folder, so the sandbox can serve again."""
    try:
        if context_id is not None:
            sandbox.remove_code_context(context_id)
        sandbox.commands.run(f"rm -rf {shlex.quote(folder)}", timeout=30)
    except Exception as exc:
        raise Unclean(describe(exc, action="cleaning up after the execution", secrets=secrets)) from None


def check_health(config: Mapping[str, Any]) -> HealthStatus:
    """List one sandbox: a real, cheap, authenticated call that shows E2B answers this key."""
    from e2b_code_interpreter import Sandbox

    options = sdk_options(config)
    started = time.monotonic()
    try:
        Sandbox.list(limit=1, **options).next_items()
    except Exception as exc:
        problem = describe(exc, action="listing sandboxes", secrets=secret_values(config))
        return HealthStatus(
            healthy=False,
            message=problem.message,
            latency=time.monotonic() - started,
            details={"runtime": RUNTIME_NAME, "failure": problem.failure.to_dict()},
        )
    latency = time.monotonic() - started
    return HealthStatus(
        healthy=True,
        message=f"E2B API answered in {latency * 1000:.0f} ms",
        latency=latency,
        details={"runtime": RUNTIME_NAME, "template": config["template"]},
    )

