"""Serves one session of the sandbox-core runner protocol (Python side): many jobs, one interpreter.

Started inside the session's sandbox (or, for the local test provider, as a plain process), the
runner forks at once: the *interpreter* child keeps one namespace for the whole session and runs
each job in it; the *parent* reads messages from stdin and answers each with one frame on stdout.
A message is ``<length>\\n<JSON object>``; its ``marker`` (fresh for every message) is taken off
by the parent and never reaches the interpreter, which was forked before it arrived, so user code
cannot make a frame (see ``sandbox_core.runner.protocol``). A frame is the marker, a JSON object
and a newline, written after everything the job printed.

Operations (``op``): ``execute`` (``code``, ``arguments``, ``timeout``, ``files`` as base64,
``output_dir``, ``max_artifact_bytes``, ``max_value_bytes``): the frame is the interpreter's
report as ``python_runner`` makes it, plus ``timed_out`` and ``session_restarted``. ``upload``
(``path``, ``data`` base64), ``download`` (``path``; answers ``data``), ``list`` (answers
``files``: ``[{"path", "size"}]``): files live in the working folder, the runner's current
directory. A failed file operation answers ``{"error": {"type", "message"}}``.

When a job outlives its ``timeout`` the parent kills the interpreter (with everything it started)
and forks a new one: the session's names are lost, its files are kept, and the frame says so. An
interpreter that dies by itself is replaced the same way, and so is one whose job the host stops:
while a job runs the parent reads stdin too, and a ``cancel`` message with the job's marker (the
host's caller left) ends the job at once (the frame says ``cancelled``). End of stdin ends the
session.

Helpers come from ``python_runner`` (same folder), so both runners report alike.
"""

import json
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from sandbox_core.runner import python_runner as _runner
else:  # inside a sandbox there is no sandbox_core package: the runners sit side by side
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import python_runner as _runner

    del sys.path[0]

_SIGKILL = 9
_WAKE_SECONDS = 0.2
"""How often a waiting parent checks that the interpreter is still alive."""
_MAX_FILE_BYTES = 32 << 20
"""sandbox_core.files.MAX_FILE_BYTES (this file runs where sandbox_core is not installed)."""


class _Messages:
    """Length-prefixed messages read from a descriptor, a chunk at a time (syscalls are dear in gVisor)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = b""

    def _fill(self) -> bool:
        chunk = os.read(self.fd, 1 << 20)
        self.buffer += chunk
        return bool(chunk)

    def next(self) -> "bytes | None":
        """The next message, or None at the end of the stream (``EOFError`` when it stops inside one)."""
        while b"\n" not in self.buffer[:24]:
            if len(self.buffer) >= 24:
                raise ValueError("not a message header")
            if not self._fill():
                if self.buffer:
                    raise EOFError
                return None
        header, _, rest = self.buffer.partition(b"\n")
        size = int(header)
        while len(rest) < size:
            self.buffer = header + b"\n" + rest
            if not self._fill():
                raise EOFError
            header, _, rest = self.buffer.partition(b"\n")
        self.buffer = rest[size:]
        return rest[:size]


def _send(fd: int, body: bytes) -> None:
    _runner._write_all(fd, b"%d\n" % len(body) + body)


def _run_job(namespace: "dict[str, Any]", job: "dict[str, Any]") -> bytes:
    """Run one job in the session's namespace; the report as JSON bytes (value first)."""
    source = job["code"]
    arguments = job.get("arguments") or {}
    output_dir = job.get("output_dir")
    if output_dir:
        try:
            if os.path.isdir(output_dir) and os.listdir(output_dir):
                import shutil

                shutil.rmtree(output_dir)  # artifacts are what this job leaves, not the last one's
            os.makedirs(output_dir, exist_ok=True)
        except OSError:
            output_dir = None
        else:
            os.environ["SANDBOX_OUTPUT_DIR"] = output_dir
    frame: "dict[str, Any]" = {"exit_code": 0, "error": None, "has_main": False}
    value_json = "null"
    previous_main = namespace.get("main")
    try:
        exec(compile(source, _runner._CODE_FILENAME, "exec"), namespace)
        main = namespace.get("main")
        if callable(main) and main is not previous_main:  # only a main this job defined is called
            frame["has_main"] = True
            value = main(**arguments)
            try:
                value_json = json.dumps(value, ensure_ascii=False, allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise TypeError(f"main() returned a value that is not JSON data: {exc}") from None
    except SystemExit as exc:
        status = exc.code
        if status is None:
            status = 0
        elif not isinstance(status, int):
            sys.stderr.write(f"{status}\n")
            status = 1
        frame["exit_code"] = status if 0 <= status < 256 else 1
    except BaseException as exc:  # user code failed: report it, as python itself would on stderr
        info = _runner._error_info(exc, source)
        try:
            sys.stderr.write(info["traceback"])
        except Exception:
            pass
        frame["exit_code"] = 1
        frame["error"] = info
    limit = job.get("max_value_bytes")
    if isinstance(limit, int) and len(value_json) * 4 > limit:
        size = len(value_json.encode("utf-8", "surrogatepass"))
        if size > limit:
            frame["value_too_large"] = size
            value_json = "null"
    _runner._save_open_figures(output_dir)
    frame["artifacts"], frame["skipped_artifacts"] = _runner._collect_artifacts(output_dir, int(job.get("max_artifact_bytes", 0)))
    _runner._flush_user_streams()
    rest = json.dumps(frame, ensure_ascii=False)
    return ('{"value": ' + value_json + ", " + rest[1:]).encode("utf-8", "surrogatepass")


def _interpret(job_fd: int, report_fd: int, announce: bool) -> None:
    """The interpreter child: run jobs from ``job_fd`` in one namespace until it closes; never returns.

    ``announce``: say on stderr when the preloaded imports are done (the host waits for that line
    when the session boots); a replacement interpreter keeps quiet, or its line would end up in
    the output of the session's next execution.
    """
    try:
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)  # user code must see an empty stdin, not the messages
        os.close(devnull)
        _runner._whole_stdio()
        if announce:
            _runner._preload(sys.argv[1:])
        else:
            stderr = os.dup(2)
            quiet = os.open(os.devnull, os.O_WRONLY)
            os.dup2(quiet, 2)
            os.close(quiet)
            _runner._preload(sys.argv[1:])
            os.dup2(stderr, 2)
            os.close(stderr)
        sys.argv = [_runner._CODE_FILENAME]
        namespace: "dict[str, Any]" = {"__name__": "__main__", "__builtins__": __builtins__, "__file__": _runner._CODE_FILENAME}
        reseeded = False
        jobs = _Messages(job_fd)
        while True:
            raw = jobs.next()
            if raw is None:
                break
            if not reseeded:
                _runner._reseed()
                reseeded = True
            job = json.loads(raw)
            del raw
            report = _run_job(namespace, job)
            del job
            _send(report_fd, report)
    except BaseException:
        try:
            import traceback

            traceback.print_exc()
            _runner._flush_user_streams()
        except BaseException:
            pass
    os._exit(0)


class _Interpreter:
    """The parent's handle on the interpreter child: start, give a job, wait with a deadline, replace."""

    def __init__(self) -> None:
        self.pid = 0
        self.job_w = self.report_r = -1
        self.start(announce=True)

    def start(self, announce: bool) -> None:
        job_r, self.job_w = os.pipe()
        self.report_r, report_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(self.job_w)
            os.close(self.report_r)
            os.setpgid(0, 0)
            _interpret(job_r, report_w, announce)
        os.close(job_r)
        os.close(report_w)
        self.pid = pid

    def kill(self) -> None:
        """Kill the interpreter and everything it started, then wait for it."""
        try:
            if os.getpid() == 1:
                os.kill(-1, _SIGKILL)  # process 1 of a sandbox: nothing else may survive
            else:
                os.killpg(self.pid, _SIGKILL)
        except OSError:
            pass
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass
        if os.getpid() == 1:
            try:
                while True:
                    os.waitpid(-1, 0)
            except ChildProcessError:
                pass
        for fd in (self.job_w, self.report_r):
            try:
                os.close(fd)
            except OSError:
                pass

    def restart(self) -> None:
        self.kill()
        self.start(announce=False)

    def ended(self) -> "int | None":
        """The interpreter's exit status if it has ended, else None."""
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            return 1
        if pid == 0:
            return None
        return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)

    def run(self, job: bytes, timeout: float, host: "_Messages", marker: bytes) -> "tuple[bytes | None, str, int]":
        """Give the interpreter ``job``; (report, what happened, exit status).

        What happened: ``done``, ``timeout`` (the interpreter was replaced), ``died`` (it
        ended by itself and was replaced) or ``cancelled`` (the host's ``cancel`` message for
        ``marker`` came on ``host``, its messages: the interpreter was replaced).
        """
        import select
        import time

        deadline = time.monotonic() + timeout
        try:
            _send(self.job_w, job)
        except OSError:
            pass
        reports = _Messages(self.report_r)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.restart()
                return None, "timeout", 128 + _SIGKILL
            if b"\n" in host.buffer:
                ready = [host.fd]  # a message came with the job's bytes
            else:
                ready = select.select([self.report_r, host.fd], [], [], min(remaining, _WAKE_SECONDS))[0]
            if host.fd in ready:
                said = _host_says(host, marker)
                if said == "end":
                    self.kill()
                    os._exit(0)
                if said == "cancel":
                    self.restart()
                    return None, "cancelled", 128 + _SIGKILL
                continue
            if not ready:
                status = self.ended()
                if status is not None:
                    self.restart()
                    return None, "died", status
                continue
            if not reports._fill():  # the interpreter is ending: give it a moment to say how
                status = None
                for _ in range(20):
                    status = self.ended()
                    if status is not None:
                        break
                    time.sleep(0.01)
                self.restart()
                return None, "died", 1 if status is None else status
            header, newline, rest = reports.buffer.partition(b"\n")
            if (newline and not header.isdigit()) or len(header) > 24:  # not a report: the code wrote here
                self.restart()
                return None, "died", 1
            if newline and len(rest) >= int(header):
                break
        try:
            report = reports.next()
        except (EOFError, ValueError):
            report = None
        if report is None:
            self.restart()
            return None, "died", 1
        return report, "done", 0


def _host_says(host: "_Messages", marker: bytes) -> str:
    """Read the host's message that came while a job ran: ``cancel`` (stop this job), ``end`` or ``nothing``.

    ``end``: stdin ended (the host is gone). Anything but a ``cancel`` for this job's marker is
    nothing (the host sends nothing else while a job runs).
    """
    try:
        raw = host.next()
    except (EOFError, ValueError):
        raw = None
    if raw is None:
        return "end"
    try:
        message = json.loads(raw)
        stops = message.get("op") == "cancel" and message.get("marker", "").encode("utf-8") == marker
    except Exception:
        stops = False
    return "cancel" if stops else "nothing"


def _file_path(name: "Any") -> str:
    """A name relative to the working folder (the host checked it; checked again, cheaply)."""
    if not isinstance(name, str) or not name or name.startswith("/") or ".." in name.split("/") or "\0" in name:
        raise ValueError(f"bad file name {name!r}")
    return name


def _write_file(name: "Any", data: bytes) -> None:
    path = _file_path(name)
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)


def _files() -> "list[dict[str, Any]]":
    found = []
    for root, dirs, names in os.walk("."):
        dirs.sort()
        for name in sorted(names):
            path = os.path.join(root, name)
            if os.path.islink(path) or not os.path.isfile(path):
                continue
            found.append({"path": os.path.relpath(path, "."), "size": os.path.getsize(path)})
    return found


def _answer(interpreter: _Interpreter, message: "dict[str, Any]", host: "_Messages", marker: bytes) -> bytes:
    """The frame body (a JSON object) answering one message (``marker``'s, read from ``host``)."""
    import base64

    op = message.get("op")
    try:
        if op == "execute":
            for name, data in (message.pop("files", None) or {}).items():
                _write_file(name, base64.b64decode(data))
            timeout = float(message.pop("timeout", 30))
            job = json.dumps(message, ensure_ascii=False).encode("utf-8", "surrogatepass")
            report, happened, status = interpreter.run(job, timeout, host, marker)
            if report is not None and report.startswith(b"{") and report.endswith(b"}") and b"\n" not in report:
                return report[:-1] + b', "timed_out": false, "session_restarted": false}'
            error = None
            if happened == "cancelled":
                error = {
                    "type": "ExecutionCancelled",
                    "message": (
                        "the execution was stopped (its caller left); "
                        "a new interpreter was started and the names defined so far are lost"
                    ),
                    "traceback": "",
                }
            if happened == "died":
                error = {
                    "type": "InterpreterExited",
                    "message": (
                        f"the session's interpreter ended (status {status}); "
                        "a new one was started and the names defined so far are lost"
                    ),
                    "traceback": "",
                }
            return json.dumps({
                "value": None, "exit_code": 0 if happened == "timeout" else status, "error": error, "artifacts": [],
                "timed_out": happened == "timeout", "cancelled": happened == "cancelled", "session_restarted": True,
            }).encode("utf-8")
        if op == "upload":
            _write_file(message.get("path"), base64.b64decode(message.get("data", "")))
            return b"{}"
        if op == "download":
            path = _file_path(message.get("path"))
            if os.path.getsize(path) > _MAX_FILE_BYTES:
                raise ValueError(f"{path} is larger than {_MAX_FILE_BYTES} bytes")
            with open(path, "rb") as handle:
                return json.dumps({"data": base64.b64encode(handle.read()).decode("ascii")}).encode("ascii")
        if op == "list":
            return json.dumps({"files": _files()}, ensure_ascii=False).encode("utf-8", "surrogatepass")
        raise ValueError(f"unknown operation {op!r}")
    except Exception as exc:
        return json.dumps({"error": {"type": type(exc).__name__, "message": str(exc)}}, ensure_ascii=False).encode("utf-8", "surrogatepass")


def _serve() -> None:
    interpreter = _Interpreter()
    messages = _Messages(0)
    while True:
        try:
            raw = messages.next()
        except (EOFError, ValueError):
            raw = None
        if raw is None:
            break
        try:
            message = json.loads(raw)
            marker = message.pop("marker").encode("utf-8")
        except Exception:
            continue  # not a message from the host: nobody to answer
        del raw
        if message.get("op") == "cancel":
            continue  # it came as its job ended: nothing left to stop, and its caller reads no answer
        body = _answer(interpreter, message, messages, marker)
        _runner._write_all(1, marker + body + b"\n")
    interpreter.kill()
    os._exit(0)


if __name__ == "__main__":
    _serve()
