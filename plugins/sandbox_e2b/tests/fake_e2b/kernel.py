"""The fake's Python "kernel": one persistent interpreter behind one code context.

Run as ``python kernel.py`` with the context's folder as its working directory. It reads code
blocks as JSON lines ``{"code": ...}`` on stdin and runs each in one namespace kept between
blocks, as a Jupyter kernel does, answering JSON lines on the file descriptor it was started
with as stdout:

- ``{"type": "stdout"|"stderr", "text", "timestamp"}`` for every write to ``sys.stdout`` or
  ``sys.stderr``, as it happens;
- ``{"type": "result", "text", "png"?, "is_main_result"}`` for ``display(obj)`` (``png`` from
  ``obj._repr_png_()``, base64, as IPython sends it) and for the value of a last expression;
- ``{"type": "error", "name", "value", "traceback"}`` when the block raised;
- ``{"type": "end"}`` when the block is done.

File descriptors 1 and 2 point at /dev/null, as in a real kernel whose process output is not
streamed: only what goes through ``sys.stdout``/``sys.stderr`` reaches the client.
"""

import ast
import base64
import builtins
import json
import os
import sys
import threading
import time
import traceback

_lock = threading.Lock()
_channel = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
_requests = os.fdopen(os.dup(0), "rb")
_null = os.open(os.devnull, os.O_RDWR)
for _fd in (0, 1, 2):
    os.dup2(_null, _fd)


def _send(event):
    with _lock:
        _channel.write(json.dumps(event) + "\n")
        _channel.flush()


class _Stream:
    """A text stream that sends each write as one event, unbuffered."""

    def __init__(self, name):
        self.name = name
        self.encoding = "utf-8"
        self.errors = "strict"

    def write(self, text):
        if text:
            _send({"type": self.name, "text": text, "timestamp": time.time_ns()})
        return len(text)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        pass

    def isatty(self):
        return False

    def fileno(self):
        raise OSError("the kernel's streams have no file descriptor")

    def writable(self):
        return True


def _result(obj, is_main):
    event = {"type": "result", "text": repr(obj), "is_main_result": is_main}
    png = getattr(obj, "_repr_png_", None)
    if callable(png):
        data = png()
        if isinstance(data, bytes):
            data = base64.b64encode(data).decode("ascii")
        if data:
            event["png"] = data
    _send(event)


def display(*objects):
    """IPython's ``display``: each object becomes a (non-main) result."""
    for obj in objects:
        _result(obj, False)


builtins.display = display
sys.stdout = _Stream("stdout")
sys.stderr = _Stream("stderr")
sys.stdin = open(os.devnull)
_namespace = {"__name__": "__main__", "__builtins__": builtins}


def _run(code):
    tree = ast.parse(code, "<cell>", "exec")
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    exec(compile(tree, "<cell>", "exec"), _namespace)
    if last is not None:
        value = eval(compile(last, "<cell>", "eval"), _namespace)
        if value is not None:
            _result(value, True)


def main():
    for line in _requests:
        request = json.loads(line)
        try:
            _run(request["code"])
        except BaseException as exc:
            _send({
                "type": "error",
                "name": type(exc).__name__,
                "value": str(exc),
                "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
            })
        _send({"type": "end"})


if __name__ == "__main__":
    main()
