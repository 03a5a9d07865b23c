"""The host side of one remote run: the code sent to the interpreter, and reading what came back.

:func:`build_request_code` turns an execution into the Python text of one ``contexts/execute``
request (the bootstrap script plus its payload, see :mod:`sandbox_aliyun.bootstrap`).
:func:`read_envelope` finds the bootstrap's envelope (framed by the run's random marker) in the
interpreter's reply, and :func:`result_from_envelope` feeds the runner's output through
sandbox-core's runner protocol (:class:`~sandbox_core.runner.ResultStream`,
:func:`~sandbox_core.runner.build_result`), so statuses, values, errors and artifacts mean exactly
what they mean for every other provider.
"""

from __future__ import annotations

import base64
import functools
import json
import secrets
from collections.abc import Mapping
from importlib import resources
from typing import Any

import attrs

from sandbox_aliyun.errors import JobNotRunError, MissingInterpreterError, NoResultError
from sandbox_aliyun.limits import HARD_TIMEOUT, REPORT_MARGIN
from sandbox_core.model import ExecutionResult
from sandbox_core.runner import BoundedCapture, Job, ResultStream, build_result, runner_source
from sandbox_core.runner.protocol import DEFAULT_MAX_ARTIFACT_BYTES, DEFAULT_MAX_VALUE_BYTES, RUNNER_FILES

ENVELOPE_MARKER_PREFIX = "sandbox-aliyun-envelope-"
"""The envelope marker of a run is this and 32 random hex digits: letters, digits and a dash only,
which no line processing changes and base64 (the envelope's own encoding) never contains."""
FLOOD_FACTOR = 8
"""Output beyond this many times the limit stops the program: it is a flood, not output."""
OUTPUT_DIR = "/tmp/sandbox-output"
"""A placeholder: the bootstrap replaces it with a folder inside the job's own temporary folder."""
MAX_FRAME_BYTES = DEFAULT_MAX_VALUE_BYTES + DEFAULT_MAX_ARTIFACT_BYTES * 2


def new_envelope_marker() -> str:
    return ENVELOPE_MARKER_PREFIX + secrets.token_hex(16)


@attrs.frozen
class RemoteRun:
    """One execution as it will be sent: the job (with its secret marker), its limits, and the
    marker framing the bootstrap's envelope in the interpreter's reply."""

    job: Job
    language: str
    timeout: float
    max_output_bytes: int
    files: Mapping[str, bytes] = attrs.field(factory=dict, repr=False)
    """Input files put into the job's working folder before the code runs."""
    envelope_marker: str = attrs.field(factory=new_envelope_marker)

    @classmethod
    def create(
        cls,
        code: str,
        arguments: Mapping[str, Any],
        language: str,
        timeout: float,
        max_output_bytes: int,
        files: Mapping[str, bytes] | None = None,
    ) -> RemoteRun:
        job = Job(code=code, arguments=arguments, output_dir=OUTPUT_DIR)
        return cls(job, language, timeout, max_output_bytes, dict(files or {}))


@functools.cache
def _bootstrap_source() -> str:
    """The bootstrap's source, read once per process (it goes out with every execution)."""
    return (resources.files("sandbox_aliyun") / "bootstrap.py").read_text(encoding="utf-8")


def build_request_code(run: RemoteRun) -> str:
    """The Python source of the ``contexts/execute`` request for ``run``."""
    payload = {
        "language": run.language,
        "runner_name": RUNNER_FILES[run.language],
        "runner_source": runner_source(run.language),
        "job_b64": base64.b64encode(run.job.encode()).decode("ascii"),
        "marker": run.job.marker,
        "envelope_marker": run.envelope_marker,
        # At the hard limit the service would cut the reply off; stopping the code a little
        # earlier keeps its partial output.
        "timeout": min(run.timeout, HARD_TIMEOUT - REPORT_MARGIN),
        "max_output_bytes": run.max_output_bytes,
        "flood_bytes": run.max_output_bytes * FLOOD_FACTOR,
        "max_frame_bytes": MAX_FRAME_BYTES,
        "files": {name: base64.b64encode(data).decode("ascii") for name, data in run.files.items()},
    }
    encoded = base64.b64encode(json.dumps(payload, ensure_ascii=False).encode("utf-8")).decode("ascii")
    # The bootstrap module ends with definitions only; the call below is what runs it.
    return f"{_bootstrap_source()}\n\nbootstrap({encoded!r})\n"


def stdout_text(reply: Any, marker: str) -> str:
    """The stdout of an interpreter reply, its items joined in order.

    The reply is ``{"results": [{"type": "stdout", "text": ...}, ...]}``; a long stdout may arrive
    as several items, cut anywhere, so they are joined as they are. When that holds no envelope,
    top-level ``stdout`` or ``output`` strings are tried, in case a service version reports it so.
    """
    if not isinstance(reply, Mapping):
        return ""
    items = reply.get("results")
    text = ""
    if isinstance(items, list):
        text = "".join(str(i.get("text", "")) for i in items if isinstance(i, Mapping) and i.get("type") == "stdout")
    if marker not in text:
        text += "".join(reply[key] for key in ("stdout", "output") if isinstance(reply.get(key), str))
    return text


def describe_failure(reply: Any) -> str:
    """A short description of an interpreter reply that holds no envelope: its error items, or
    what about its shape differs from what the provider expects."""
    if not isinstance(reply, Mapping):
        return f"the execute reply is a {type(reply).__name__}, not a JSON object: AgentRun's reply format may have changed"
    items = reply.get("results")
    if not isinstance(items, list):
        return (
            f"the execute reply has no 'results' list (its keys: {', '.join(sorted(map(str, reply))) or 'none'}): "
            "AgentRun's reply format may have changed"
        )
    parts = []
    for item in items:
        if isinstance(item, Mapping) and item.get("type") in ("error", "stderr"):
            text = item.get("text") or item.get("value") or item.get("name") or ""
            parts.append(str(text).strip()[-300:])
    return "; ".join(p for p in parts if p) or "no output"


def read_envelope(reply: Any, marker: str) -> dict[str, Any]:
    """The bootstrap's envelope (framed by ``marker``) from an interpreter reply; :class:`NoResultError` when absent.

    Everything between the two markers is base64 once whitespace is removed, so line ends added,
    removed or changed on the way (``\r\n``, lines split apart or run together) do not matter.
    """
    text = stdout_text(reply, marker)
    start = text.find(marker)
    if start < 0:
        raise NoResultError(f"the code interpreter returned no result: {describe_failure(reply)}")
    end = text.find(marker, start + len(marker))
    if end < 0:
        raise NoResultError("the code interpreter returned a cut-off result (the envelope's closing marker is missing)")
    encoded = "".join(text[start + len(marker) : end].split())
    try:
        envelope = json.loads(base64.b64decode(encoded, validate=True))
    except ValueError as exc:
        raise NoResultError(f"the code interpreter returned a damaged result: {exc}") from None
    if not isinstance(envelope, dict):
        raise NoResultError("the code interpreter returned a damaged result (the envelope is not a JSON object)")
    if envelope.get("error"):
        failed = MissingInterpreterError if envelope.get("missing_interpreter") else JobNotRunError
        raise failed(f"the sandbox could not run the job: {envelope['error']}")
    return envelope


def result_from_envelope(
    run: RemoteRun, envelope: Mapping[str, Any], provider: str, execution_time: float, metadata: Mapping[str, Any]
) -> ExecutionResult:
    """The ExecutionResult of a run, by sandbox-core's shared rules."""
    stdout = ResultStream(run.job.marker, run.max_output_bytes, max_frame_bytes=MAX_FRAME_BYTES)
    stderr = BoundedCapture(run.max_output_bytes)
    stdout.feed(base64.b64decode(envelope.get("stdout_b64") or ""))
    stderr.feed(base64.b64decode(envelope.get("stderr_b64") or ""))
    meta = dict(metadata)
    meta["flooded"] = bool(envelope.get("flooded"))
    exit_code = envelope.get("exit_code")
    return build_result(
        provider=provider,
        stdout=stdout,
        stderr=stderr,
        exit_code=exit_code if isinstance(exit_code, int) else None,
        execution_time=execution_time,
        timed_out=bool(envelope.get("timed_out")),
        timeout=run.timeout,
        metadata=meta,
    )
