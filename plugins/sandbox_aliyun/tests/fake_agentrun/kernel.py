"""The fake's code-interpreter kernel: one per context, keeping its variables between executions.

It is started as ``python kernel.py`` in the sandbox's folder and reads one JSON request per line
on stdin (``{"code": ...}``). It runs the code in one namespace that lives as long as the process
(the context), with ``sys.stdout``/``sys.stderr`` captured, and answers one JSON line on its real
stdout: ``{"stdout", "stderr", "error"}``, ``error`` being ``{"name", "value", "traceback"}`` or
null. A kill of the process is how the fake ends a context or an execution past its timeout.
"""

import io
import json
import sys
import traceback


def serve() -> None:
    namespace = {"__name__": "__main__"}
    answer = sys.stdout
    for line in sys.stdin:
        request = json.loads(line)
        out, err = io.StringIO(), io.StringIO()
        sys.stdout, sys.stderr = out, err
        error = None
        try:
            exec(compile(request["code"], "<cell>", "exec"), namespace)
        except BaseException as exc:  # the interpreter reports every failure of a cell
            error = {"name": type(exc).__name__, "value": str(exc), "traceback": traceback.format_exc()}
        finally:
            sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
        answer.write(json.dumps({"stdout": out.getvalue(), "stderr": err.getvalue(), "error": error}) + "\n")
        answer.flush()


if __name__ == "__main__":
    serve()
