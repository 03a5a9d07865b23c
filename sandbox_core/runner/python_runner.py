"""Runs one job of the sandbox-core runner protocol inside a sandbox (Python side).

Started before any code is known (a warm sandbox waits here), it reads one JSON job from stdin
until EOF: ``{"code", "arguments", "marker", "output_dir", "max_artifact_bytes", "run_name",
"artifact_extensions", "promote_working_dir"}``. It runs the code as ``run_name`` (default
``__main__``), calls ``main(**arguments)`` when the code defines it, and writes one result frame
to stdout after everything the user printed: the job's random marker followed by a JSON object
and a newline. The marker is only known to this process, so user prints cannot fake a
result. This file must stay lean: every import costs dearly inside gVisor, so only what the
success path needs is imported up front.
"""

import json
import os
import sys

# Signature annotations are quoted and typing is imported for the type checker only: importing typing
# here would slow down every run, and the sandbox's Python may predate builtin generics.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_write = os.write
_CODE_FILENAME = "<code>"


def _emit(marker: str, frame: "dict[str, Any]", value_json: str) -> None:
    """Write the result frame on the real stdout, after flushing what user code printed.

    ``value_json`` is the already serialized return value, spliced in so that a large value is
    serialized only once.
    """
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        if stream is None:
            continue
        try:
            stream.flush()
        except Exception:  # user code may have closed or replaced the stream
            pass
    rest = json.dumps(frame, ensure_ascii=False)
    text = marker + '{"value": ' + value_json + ", " + rest[1:] + "\n"
    data = text.encode("utf-8", "surrogatepass")
    view = memoryview(data)
    while view:
        written = _write(1, view)
        view = view[written:]


def _error_info(exc: BaseException, source: str) -> "dict[str, str]":
    """Type, message and a traceback that shows the user's frames only."""
    import linecache
    import traceback

    linecache.cache[_CODE_FILENAME] = (len(source), None, source.splitlines(True), _CODE_FILENAME)
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    lines = traceback.format_exception(type(exc), exc, tb)
    return {"type": type(exc).__name__, "message": str(exc), "traceback": "".join(lines)}


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
    until the byte budget is spent. Symbolic links are never followed."""
    artifacts: list[dict[str, Any]] = []
    skipped: list[str] = []
    budget = max_total
    if not output_dir or not os.path.isdir(output_dir) or not os.listdir(output_dir):
        return artifacts, skipped  # the usual case: skip the imports below, they are slow in gVisor
    import base64
    import mimetypes

    for root, _dirs, files in os.walk(output_dir):
        for name in sorted(files):
            path = os.path.join(root, name)
            rel = os.path.relpath(path, output_dir)
            if os.path.islink(path) or (extensions and os.path.splitext(name)[1].lower() not in extensions):
                continue
            try:
                size = os.path.getsize(path)
                if size > budget:
                    skipped.append(rel)
                    continue
                with open(path, "rb") as handle:
                    content = handle.read(budget + 1)
            except OSError:
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
    return artifacts, skipped


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


def _run(job: "dict[str, Any]") -> "tuple[dict[str, Any], str]":
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
    namespace: dict[str, Any] = {"__name__": job.get("run_name") or "__main__", "__builtins__": __builtins__, "__file__": _CODE_FILENAME}
    try:
        code = compile(source, _CODE_FILENAME, "exec")
        exec(code, namespace)
        main = namespace.get("main")
        if callable(main):
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
        frame["exit_code"] = status
    except BaseException as exc:  # user code failed: report it, as python itself would on stderr
        info = _error_info(exc, source)
        try:
            sys.stderr.write(info["traceback"])
        except Exception:
            pass
        frame["exit_code"] = 1
        frame["error"] = info
    _save_open_figures(output_dir)
    extensions = tuple(job.get("artifact_extensions") or ())
    if output_dir and extensions and job.get("promote_working_dir"):
        _promote(output_dir, extensions)
    frame["artifacts"], frame["skipped_artifacts"] = _collect_artifacts(output_dir, int(job.get("max_artifact_bytes", 0)), extensions)
    return frame, value_json


def _serve() -> None:
    raw = sys.stdin.buffer.read()
    job = json.loads(raw)
    marker = job["marker"]
    sys.stdin = open(os.devnull)  # user code must see an empty stdin, not the job
    sys.argv = [_CODE_FILENAME]
    frame, value_json = _run(job)
    _emit(marker, frame, value_json)
    os._exit(frame["exit_code"] if 0 <= frame["exit_code"] < 256 else 1)


if __name__ == "__main__":
    _serve()
