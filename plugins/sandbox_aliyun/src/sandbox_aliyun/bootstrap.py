"""The script that runs INSIDE the AgentRun code interpreter and drives the sandbox-core runner.

The provider sends this module's source, followed by one call of :func:`bootstrap` with a base64
payload, as a single ``contexts/execute`` request in the interpreter's Python language. It writes
the runner and the encoded job to a fresh temporary folder, starts the runner as a child process
(``python3`` or ``node``) with the job on stdin and its output going to files, enforces the wall
time and an output-flood cap itself, and prints ONE envelope: JSON with the exit code, the
timeout/flood flags, and the runner's stdout and stderr (base64, already bounded), itself base64
encoded, between two lines holding only the run's random envelope marker. Nothing in it is touched
by processing that splits, joins or normalises lines between the kernel and the provider (no
control characters, no line ends inside, whitespace ignored when read), and user code cannot
forge it: its output goes to files, and the marker is new for every run.

Why a child process instead of running the code in the interpreter's own kernel: the kernel keeps
state between requests and cannot be stopped at a deadline without losing the output printed so
far; a child process gives the runner protocol's clean ``__main__``, a real exit code and partial
output on timeout, exactly as every other provider has.

Only the standard library may be used here, and nothing from this package: the text runs in the
remote interpreter, where sandbox-aliyun is not installed and the Python version is the
template's (annotations that are not plain names are therefore written as strings).
"""

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

POLL_SECONDS = 0.02


def _head(path: str, limit: int) -> bytes:
    """The first ``limit`` bytes of a file (one more, to show it was longer)."""
    with open(path, "rb") as handle:
        return handle.read(limit + 1)


def _stdout_for_host(path: str, marker: bytes, limit: int, max_frame: int) -> bytes:
    """User output (at most limit + 1 bytes) followed by the result frame, if the runner wrote one."""
    with open(path, "rb") as handle:
        data = handle.read()
    index = data.find(marker)
    if index < 0:
        return data[: limit + 1]
    frame = data[index : index + len(marker) + max_frame + 1]
    return data[: min(index, limit + 1)] + frame


def _kill(process: "subprocess.Popen[bytes]") -> None:  # noqa: UP037 (remote Python may predate 3.9)
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def bootstrap(payload_b64: str) -> None:
    """Run one job described by the payload and print the envelope."""
    payload = json.loads(base64.b64decode(payload_b64).decode("utf-8"))
    workdir = tempfile.mkdtemp(prefix="sandbox-job-")
    started = time.monotonic()
    envelope: dict[str, object] = {"exit_code": None, "timed_out": False, "flooded": False, "error": None}
    try:
        for name, content in (payload.get("files") or {}).items():
            # Input files, their names checked by the host (relative, no ".."): into the job's folder.
            target = os.path.join(workdir, name)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "wb") as handle:
                handle.write(base64.b64decode(content))
        runner = os.path.join(workdir, payload["runner_name"])
        with open(runner, "w", encoding="utf-8") as handle:
            handle.write(payload["runner_source"])
        # The output folder is made per job, inside the job's own temporary folder, so artifacts
        # can never come from an earlier job and are removed with it.
        job = json.loads(base64.b64decode(payload["job_b64"]).decode("utf-8", "surrogatepass"))
        job["output_dir"] = os.path.join(workdir, "output")
        job_path = os.path.join(workdir, "job.json")
        with open(job_path, "wb") as handle:
            handle.write(json.dumps(job, ensure_ascii=False).encode("utf-8", "surrogatepass"))
        if payload["language"] == "python":
            interpreter = sys.executable or shutil.which("python3")
        else:
            interpreter = shutil.which("node")
        if not interpreter:
            envelope["error"] = f"no interpreter for {payload['language']} in this sandbox template"
            envelope["missing_interpreter"] = True
            return
        out_path, err_path = os.path.join(workdir, "stdout"), os.path.join(workdir, "stderr")
        limit, cap = int(payload["max_output_bytes"]), int(payload["flood_bytes"])
        deadline = started + float(payload["timeout"])
        with open(job_path, "rb") as stdin, open(out_path, "wb") as stdout, open(err_path, "wb") as stderr:
            process = subprocess.Popen(
                [interpreter, runner],
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
                cwd=workdir,
                # Home and temporary files inside the job's folder too, so they go with it.
                env=dict(os.environ, HOME=workdir, TMPDIR=workdir),
                start_new_session=True,
            )
            while process.poll() is None:
                if time.monotonic() >= deadline:
                    envelope["timed_out"] = True
                    break
                if os.path.getsize(out_path) > cap or os.path.getsize(err_path) > cap:
                    envelope["flooded"] = True
                    break
                time.sleep(POLL_SECONDS)
            _kill(process)  # also ends anything the code left running in the background
            process.wait()
        code = process.returncode
        if envelope["timed_out"] or envelope["flooded"]:
            code = None
        elif code is not None and code < 0:
            code = 128 - code
        envelope["exit_code"] = code
        marker = payload["marker"].encode("utf-8")
        stdout_bytes = _stdout_for_host(out_path, marker, limit, int(payload["max_frame_bytes"]))
        envelope["stdout_b64"] = base64.b64encode(stdout_bytes).decode("ascii")
        envelope["stderr_b64"] = base64.b64encode(_head(err_path, limit)).decode("ascii")
    except Exception as exc:  # report, never raise: a traceback here would hide the envelope
        envelope["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        envelope["elapsed"] = time.monotonic() - started
        shutil.rmtree(workdir, ignore_errors=True)
        encoded = base64.b64encode(json.dumps(envelope).encode("ascii")).decode("ascii")
        marker = payload["envelope_marker"]
        sys.stdout.write("\n" + marker + "\n" + encoded + "\n" + marker + "\n")
        sys.stdout.flush()
