"""Runs one job of the sandbox-core runner protocol inside a sandbox (Python side).

Started before any code is known (a warm sandbox waits here), the runner forks at once: the
*child* will run the code, the *parent* reads the job. The parent reads one JSON job from stdin
until EOF (``{"marker", "code", "arguments", "output_dir", "max_artifact_bytes",
"max_value_bytes", "run_name", "artifact_extensions", "promote_working_dir"}``, marker first),
takes the result marker off it and hands the rest to the child through a pipe, so the marker
never exists in the process that runs user code. The child runs the code as ``run_name``
(``__main__`` by default), calls ``main(**arguments)`` when the code defines it, writes its
report (a JSON object) to a private pipe and exits. The parent waits for its end (told by
SIGCHLD, never by the pipe's end of file, see ``_collect_report``), stops every other
process when it is process 1 of a sandbox (nothing else may write while the frame is written),
and writes one result frame to stdout after everything the user printed: the marker, the report
with the child's real exit status added, and a newline. See ``sandbox_core.runner.protocol`` for
what remains possible. With ``--preload=a,b`` the child imports those modules before the job
arrives and says so on stderr (a runtime's warm sandboxes, see ``_preload``).

This file must stay lean: every import costs dearly inside gVisor, so only what the success path
needs is imported up front (``io`` is already loaded by the interpreter, ``select`` and ``_signal``
are built in). JSON goes through the C scanner and encoder of ``_json`` that :mod:`json` itself uses:
``import json`` pulls in ``re`` and ``enum``, about 31 ms of CPU per sandbox inside gVisor.

What runs per job is kept short: everything that can happen before the job arrives (the fork,
the pipes, the signal set-up, a warm-up of the decoding, compiling and encoding paths in both
processes, whose first touches of memory shared since the fork cost a copy-on-write fault each)
happens while the sandbox waits in the warm pool.
"""

import _json
import io
import os
import select
import sys

# Signature annotations are quoted and typing is imported for the type checker only: importing typing
# here would slow down every run, and the sandbox's Python may predate builtin generics.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal as _signal  # the same functions, but typed (``signal`` itself imports enum)
    from typing import Any
else:
    import _signal

_CODE_FILENAME = "<code>"
_MARKER_PREFIX = b'{"marker": '
_MAX_TEXT = 64 * 1024
_MAX_ARTIFACTS = 1000
_MAX_SKIPPED = 100
_MAX_NAME = 1024
_SIGKILL = 9
_WHITESPACE = " \t\n\r"
PRELOAD_READY = b"sandbox-runner: preloaded\n"


class _DecoderSettings:
    """What ``json.loads`` passes to the C scanner: plain dicts, lists, ints and floats."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}.__getitem__


_scan_json = _json.make_scanner(_DecoderSettings())  # type: ignore[arg-type]  # its stub names no settings type


def _loads(data: "bytes | str") -> "Any":
    """``json.loads`` of one document (UTF-8 bytes or text), without importing :mod:`json`."""
    text = data.decode("utf-8", "surrogatepass") if isinstance(data, bytes) else data
    start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        value, end = _scan_json(text, start)
    except StopIteration:
        raise ValueError("not a JSON document") from None
    if text[end:].strip(_WHITESPACE):
        raise ValueError("extra data after the JSON document")
    return value


def _not_json(value: "Any") -> "Any":
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _dumps(value: "Any") -> str:
    """``json.dumps(value, ensure_ascii=False, allow_nan=False)`` without importing :mod:`json`."""
    encode = _json.make_encoder({}, _not_json, _json.encode_basestring, None, ": ", ", ", False, False, False)
    return "".join(encode(value, 0))


class _WholeWrites(io.FileIO):
    """A raw stdout/stderr that writes all it is given.

    With ``python -u`` the text streams write straight to their raw file and drop whatever a short
    write left over; under gVisor one write to a pipe stops at 64 KiB, so a large ``print`` lost
    its tail. This raw file writes again until everything is out.
    """

    def write(self, data: "Any") -> int:
        view = memoryview(data).cast("B")
        total = len(view)
        done = 0
        while done < total:
            written = super().write(view[done:])
            if written is None:  # a non-blocking pipe is full: wait for room instead of spinning
                os.set_blocking(self.fileno(), True)
                continue
            done += written
        return total


def _whole_stdio() -> None:
    for name, fd in (("stdout", 1), ("stderr", 2)):
        old = getattr(sys, name)
        stream = io.TextIOWrapper(
            _WholeWrites(fd, "w", closefd=False),
            encoding=getattr(old, "encoding", None) or "utf-8",
            errors=getattr(old, "errors", None) or "strict",
            write_through=True,
        )
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)


def _write_all(fd: int, data: "Any") -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            os.set_blocking(fd, True)
            continue
        view = view[written:]


def _read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _cut(text: str) -> str:
    return text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT] + f"... [{len(text) - _MAX_TEXT} characters cut]"


def _error_info(exc: BaseException, source: str) -> "dict[str, str]":
    """Type, message and a traceback that shows the user's frames only."""
    import linecache
    import traceback

    linecache.cache[_CODE_FILENAME] = (len(source), None, source.splitlines(True), _CODE_FILENAME)
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    lines = traceback.format_exception(type(exc), exc, tb)
    try:
        message = str(exc)
    except Exception:
        message = f"<{type(exc).__name__} whose message cannot be shown>"
    return {"type": type(exc).__name__, "message": _cut(message), "traceback": _cut("".join(lines))}


def _promote(output_dir: str, extensions: "tuple[str, ...]") -> None:
    """Move regular files with these extensions from the top of the working directory into the output folder."""
    for name in os.listdir("."):
        if name.startswith(".") or os.path.splitext(name)[1].lower() not in extensions:
            continue
        if os.path.islink(name) or not os.path.isfile(name):
            continue
        try:
            os.replace(name, os.path.join(output_dir, name))
        except OSError:
            pass


def _collect_artifacts(
    output_dir: "str | None", max_total: int, extensions: "tuple[str, ...]" = ()
) -> "tuple[list[dict[str, Any]], list[str]]":
    """Regular files left in the output folder (only ``extensions`` when given), in name order,
    until the byte or count budget is spent. Symbolic links are never followed."""
    artifacts: list[dict[str, Any]] = []
    skipped: list[str] = []
    budget = max_total
    if not output_dir or not os.path.isdir(output_dir) or not os.listdir(output_dir):
        return artifacts, skipped  # the usual case: skip the imports below, they are slow in gVisor
    import base64
    import mimetypes

    for root, dirs, files in os.walk(output_dir):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            rel = os.path.relpath(path, output_dir)
            if os.path.islink(path) or (extensions and os.path.splitext(name)[1].lower() not in extensions):
                continue
            try:
                if os.path.islink(path) or not os.path.isfile(path):
                    continue
                size = os.path.getsize(path)
                if size > budget or len(artifacts) >= _MAX_ARTIFACTS or len(rel) > _MAX_NAME:
                    skipped.append(rel[:_MAX_NAME])
                    continue
                with open(path, "rb") as handle:
                    content = handle.read(budget + 1)
            except OSError:
                skipped.append(rel[:_MAX_NAME])
                continue
            if len(content) > budget:  # grew while being read
                skipped.append(rel)
                continue
            budget -= len(content)
            mime = mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"
            artifacts.append({
                "name": rel,
                "mime_type": mime,
                "size": len(content),
                "content_base64": base64.b64encode(content).decode("ascii"),
            })
    return artifacts, skipped[:_MAX_SKIPPED]


def _save_open_figures(output_dir: "str | None") -> None:
    """Save matplotlib figures the code left open (or showed) as ``figure-N.png`` artifacts.

    Only when the code imported pyplot itself: nothing is imported here otherwise. Saving errors
    are the code's business (a broken figure), so they go to stderr and do not fail the run.
    """
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is None or not output_dir:
        return
    try:
        numbers = pyplot.get_fignums()
    except Exception:
        return
    index = 0
    for number in numbers:
        index += 1
        while os.path.exists(os.path.join(output_dir, f"figure-{index}.png")):
            index += 1
        try:
            pyplot.figure(number).savefig(os.path.join(output_dir, f"figure-{index}.png"), format="png")
        except Exception as exc:
            sys.stderr.write(f"figure {number} could not be saved: {type(exc).__name__}: {exc}\n")
        finally:
            pyplot.close(number)


def _run(job: "dict[str, Any]", namespace: "dict[str, Any] | None" = None) -> "tuple[dict[str, Any], str]":
    """Run the job's code; the report (without its value) and the value as JSON text.

    Also called by providers that run the runner inside a kernel of their own (E2B, Aliyun).
    ``namespace``: the globals to run in instead of a fresh module namespace, for a session whose
    interpreter keeps its names from one job to the next; ``main`` is then called only when this
    job's code (re)defined it, never a ``main`` an earlier job left there.
    """
    source = job["code"]
    arguments = job.get("arguments") or {}
    output_dir = job.get("output_dir")
    if output_dir:
        try:
            os.makedirs(output_dir, exist_ok=True)
        except OSError:
            output_dir = None
        else:
            os.environ["SANDBOX_OUTPUT_DIR"] = output_dir
    frame: dict[str, Any] = {"exit_code": 0, "error": None, "has_main": False}
    value_json = "null"
    if namespace is None:
        namespace = {"__name__": job.get("run_name") or "__main__", "__builtins__": __builtins__, "__file__": _CODE_FILENAME}
    earlier_main = namespace.get("main")
    try:
        code = compile(source, _CODE_FILENAME, "exec")
        exec(code, namespace)
        main = namespace.get("main")
        if callable(main) and main is not earlier_main:
            frame["has_main"] = True
            value = main(**arguments)
            try:
                value_json = _dumps(value)
            except (TypeError, ValueError) as exc:
                raise TypeError(f"main() returned a value that is not JSON data: {exc}") from None
    except SystemExit as exc:
        status = exc.code
        if status is None:
            status = 0
        elif not isinstance(status, int):
            sys.stderr.write(f"{status}\n")
            status = 1
        frame["exit_code"] = status
    except BaseException as exc:  # user code failed: report it, as python itself would on stderr
        info = _error_info(exc, source)
        try:
            sys.stderr.write(info["traceback"])
        except Exception:
            pass
        frame["exit_code"] = 1
        frame["error"] = info
    if not 0 <= frame["exit_code"] < 256:
        frame["exit_code"] = 1
    limit = job.get("max_value_bytes")
    if isinstance(limit, int) and len(value_json) * 4 > limit:  # only then count the UTF-8 bytes
        size = len(value_json.encode("utf-8", "surrogatepass"))
        if size > limit:
            frame["value_too_large"] = size
            value_json = "null"
    _save_open_figures(output_dir)
    extensions = tuple(job.get("artifact_extensions") or ())
    if output_dir and extensions and job.get("promote_working_dir"):
        _promote(output_dir, extensions)
    frame["artifacts"], frame["skipped_artifacts"] = _collect_artifacts(output_dir, int(job.get("max_artifact_bytes", 0)), extensions)
    return frame, value_json


def _flush_user_streams() -> None:
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        if stream is None:
            continue
        try:
            stream.flush()
        except Exception:  # user code may have closed or replaced the stream
            pass


def _preload(argv: "list[str]") -> None:
    """Import the modules named by ``--preload=a,b`` before the job arrives, then say so on stderr.

    Done in the child, the process that will run the code. A runtime's heavy packages (pandas:
    about a second of CPU in gVisor) are imported while the sandbox is warm, not while the code
    waits; the executor waits for the ready line (and may checkpoint the sandbox right after it).
    A module that fails to import ends the child with the error on stderr: the sandbox is
    unusable and its boot must fail loudly.
    """
    modules = [m for a in argv if a.startswith("--preload=") for m in a[len("--preload="):].split(",") if m]
    if not modules:
        return
    for name in modules:
        try:
            __import__(name)
        except BaseException as exc:
            _write_all(2, f"preload failed: {name}: {type(exc).__name__}: {exc}\n".encode("utf-8", "replace"))
            os._exit(1)
    _write_all(2, PRELOAD_READY)


def _reseed() -> None:
    """Give every generator seeded at start-up fresh entropy (the sandbox may be a restored clone).

    Sandboxes restored from one checkpoint share their memory as it was then: ``random``'s state
    included. ``os.urandom`` asks the kernel each time and needs nothing.
    """
    modules = sys.modules
    if "random" in modules:
        modules["random"].seed()
    if "tempfile" in modules:
        setattr(modules["tempfile"], "_name_sequence", None)  # its generator of names, remade on use
    if "numpy.random" in modules:
        modules["numpy.random"].seed()


def _warm_up_child() -> None:
    """Go once through the job's decoding, compiling and encoding paths before the job arrives.

    Their first touches of memory shared with the parent since the fork are copy-on-write faults,
    traps of tens of microseconds each under gVisor: taken here, they are off the job's path.
    """
    job = _loads('{"code": "pass", "arguments": {"a": [1, 2.5, true, null, "\\u00e9"]}}')
    exec(compile(job["code"], _CODE_FILENAME, "exec"), {"__name__": "__warm_up__", "__builtins__": __builtins__})
    _dumps({"value": job["arguments"], "exit_code": 0, "error": None}).encode("utf-8", "surrogatepass")


def _child(job_fd: int, report_fd: int) -> None:
    """Run the job's code and write the report; never returns."""
    status = 1
    try:
        # Ready before the job arrives (the sandbox waits here): none of this is on the job's path.
        _signal.set_wakeup_fd(-1)  # the parent's child watch (see _serve) is not the code's business
        _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)  # user code must see an empty stdin, not the job
        os.close(devnull)
        _whole_stdio()
        _preload(sys.argv[1:])
        sys.argv = [_CODE_FILENAME]
        _warm_up_child()
        raw = _read_all(job_fd)
        os.close(job_fd)
        _reseed()
        job = _loads(raw)
        del raw
        frame, value_json = _run(job)
        del job
        status = frame["exit_code"]
        _flush_user_streams()
        rest = _dumps(frame)
        report = ('{"value": ' + value_json + ", " + rest[1:]).encode("utf-8", "surrogatepass")
        header = b"%d\n" % len(report)
        if len(report) < 1 << 20:  # one write: the parent wakes once
            _write_all(report_fd, header + report)
        else:
            _write_all(report_fd, header)
            _write_all(report_fd, report)
    except BaseException:  # the runner itself failed: say why on stderr and end without a report
        try:
            import traceback

            traceback.print_exc()
            _flush_user_streams()
        except BaseException:
            pass
        status = 1
    finally:
        os._exit(status)


def _split_job(raw: bytes) -> "tuple[bytes, bytes]":
    """The marker and the job without it (what the child receives)."""
    if raw.startswith(_MARKER_PREFIX):
        end = raw.find(b'"', len(_MARKER_PREFIX) + 1)
        if end > 0 and raw[end + 1:end + 3] == b", ":
            marker = _loads(raw[len(_MARKER_PREFIX):end + 1])
            return marker.encode("utf-8"), b"{" + raw[end + 3:]
    job = _loads(raw)
    marker = job.pop("marker")
    return marker.encode("utf-8"), _dumps(job).encode("utf-8", "surrogatepass")


def _ignore_signal(signum: int, frame: "Any") -> None:
    """A Python-level SIGCHLD handler, so that the wake-up pipe hears of every child that ends."""


def _collect_report(report_r: int, wake_r: int, pid: int) -> "tuple[bytes, int]":
    """The child's length-prefixed report (``b""`` if it ended without a whole one) and its exit status.

    The pipe is read until the child has ended, whatever came first (bytes beyond the announced
    length, or something that is not a report, are dropped), so a child blocked on a full pipe
    can always finish. A process the code forked inherits the report pipe's write end: the child's
    end is learnt from SIGCHLD (a byte on ``wake_r``) and ``waitpid``, never from an end of file
    that such a process could withhold, so it can neither make the parent wait nor hide that the
    child ended without a whole report. A whole report is not enough to stop waiting (or to kill
    the child): the code can write one of its own into the pipe and then fail, and only the exit
    status the kernel gives shows that (the child exits right after its report, ≈ 0.5 ms in gVisor).
    """
    data = bytearray()
    expected = -1  # -1: no header yet; -2: not a report

    def take(chunk: bytes) -> int:
        if expected == -1 or len(data) < expected:
            data.extend(chunk)
        if expected == -1:
            newline = data.find(b"\n", 0, 24)
            if newline > 0 and data[:newline].isdigit():
                return newline + 1 + int(data[:newline])
            if newline >= 0 or len(data) >= 24:
                return -2
        return expected

    status = -1
    while status < 0:
        ready = select.select((report_r, wake_r), (), ())[0]
        if wake_r in ready:
            os.read(wake_r, 4096)
            ended, wait_status = os.waitpid(pid, os.WNOHANG)
            if ended:
                status = wait_status
        if report_r in ready and status < 0:
            chunk = os.read(report_r, 1 << 20)
            if chunk:
                expected = take(chunk)
            else:  # no writer is left: the child has closed its end, it can only end now
                status = os.waitpid(pid, 0)[1]
    os.set_blocking(report_r, False)  # the child has ended: take what it left in the pipe
    try:
        while True:
            chunk = os.read(report_r, 1 << 20)
            if not chunk:
                break
            expected = take(chunk)
    except BlockingIOError:
        pass
    status = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
    if expected < 0 or len(data) < expected:
        return b"", status
    return bytes(memoryview(data)[data.find(b"\n") + 1:expected]), status


def _frame(marker: bytes, report: bytes, status: int) -> "list[bytes | memoryview]":
    """The result frame's pieces: the marker, the report with the child's real exit status, a newline."""
    if report.startswith(b"{") and report.endswith(b"}") and b"\n" not in report:
        tail = b', "runner_exit_code": %d}\n' % status
        if len(report) < 1 << 20:  # one write: the host reads the frame in one go
            return [marker + report[:-1] + tail]
        return [marker, memoryview(report)[:-1], tail]
    return [marker + b'{"exit_code": %d, "runner_exit_code": %d, "error": {"type": "InvalidResultFrame", '
            b'"message": "the code overwrote the runner\'s report", "traceback": ""}}\n' % (status, status)]


def _serve() -> None:
    job_r, job_w = os.pipe()
    report_r, report_w = os.pipe()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    # Set before the fork, so that no child's end can go unheard.
    _signal.signal(_signal.SIGCHLD, _ignore_signal)
    _signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    pid = os.fork()
    if pid == 0:
        for fd in (job_w, report_r, wake_r, wake_w):
            os.close(fd)
        _child(job_r, report_w)
    for fd in (job_r, report_w):
        os.close(fd)
    _split_job(b'{"marker": "\\u001ewarm-up:", "code": "pass"}')  # see _warm_up_child: the parent's faults, taken now
    raw = _read_all(0)
    try:
        marker, body = _split_job(raw)
    except Exception:  # not a job: the child gets nothing, says so on stderr and ends
        marker, body = b"", b""
    del raw
    try:
        _write_all(job_w, body)
    except OSError:  # the child is gone; its exit status tells the rest
        pass
    os.close(job_w)
    del body
    report, status = _collect_report(report_r, wake_r, pid)
    if os.getpid() == 1:
        # Process 1 of a sandbox: stop everything the code left running, so that nothing else
        # writes to stdout while the frame is written (never done outside a sandbox).
        try:
            os.kill(-1, _SIGKILL)
        except OSError:
            pass
        try:  # a killed process may still finish the write it was in: wait until all are dead
            while True:
                os.waitpid(-1, 0)
        except ChildProcessError:
            pass
    if report and marker:
        for piece in _frame(marker, report, status):
            _write_all(1, piece)
    os._exit(status)


if __name__ == "__main__":
    _serve()
