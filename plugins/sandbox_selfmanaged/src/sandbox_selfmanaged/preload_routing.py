"""Whether a Python request needs a runtime's preloaded sandbox, or a plain one of the same runtime will do.

A runtime that preloads modules (the default ``python`` runtime: numpy, pandas,
matplotlib.pyplot) pays for them in every sandbox: about a CPU-second of boot and 90–140 MiB each
inside gVisor. Most code never touches them. Such code runs in a *plain* sandbox of the same
runtime: the same packages, mounted and importable, only not imported before the job.

The rule, read from the code's syntax tree on the host (:func:`needs_preload`). The code needs the
preloaded sandbox when it

- imports (``import x``, ``from x import y``, at any depth: inside functions too) a module that is
  not in the standard library: a preloaded module, or any other package, which may import one;
- imports relatively (``from . import x``);
- imports a standard module that imports modules named at run time (importlib, pickle, runpy,
  logging.config, unittest, ...), or mentions ``__import__``, ``import_module``, ``exec``,
  ``eval``, ``__builtins__`` or ``builtins`` (as a name, an attribute or a string);
- cannot be parsed here for another reason than a syntax error (too deeply nested: unsure).

Everything else runs plain, including code with a syntax error (it fails before it could import
anything). The choice never changes a result: in a plain sandbox the packages still import, at
their import cost, which counts against the code's time limit. So the rule errs towards the
preloaded sandbox whenever the code could reach a preloaded module, and does not need to be
complete against code written to defeat it (such code only makes itself slower). The standard
library is the executor's own list (``sys.stdlib_module_names``); where the sandbox's Python
differs, a module missing from that list goes to the preloaded pool, and one the sandbox lacks
fails to import in either.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Sequence

DYNAMIC_IMPORTERS = frozenset({
    "bdb", "builtins", "code", "codeop", "concurrent", "cProfile", "doctest", "imp", "importlib", "logging",
    "multiprocessing", "pdb", "pickle", "_pickle", "pkgutil", "profile", "pydoc", "runpy", "shelve", "site",
    "timeit", "trace", "unittest", "zipimport",
})
"""Standard modules that can import a module named at run time (by name, from a pickle, from a config)."""

DYNAMIC_NAMES = frozenset({"__import__", "import_module", "exec", "eval", "__builtins__", "builtins"})
"""Names through which code imports what its syntax does not show."""


def needs_preload(code: str, preload: Sequence[str]) -> bool:
    """True when ``code`` may import one of ``preload`` (or cannot be read well enough to tell)."""
    if not preload:
        return False
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):  # not Python (ValueError: a NUL byte): it fails before importing
        return False
    except (RecursionError, MemoryError):
        return True
    plain_modules = sys.stdlib_module_names - DYNAMIC_IMPORTERS
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            if any(alias.name.partition(".")[0] not in plain_modules for alias in node.names):
                return True
        elif isinstance(node, ast.ImportFrom):
            if node.level or (node.module or "").partition(".")[0] not in plain_modules:
                return True
        elif isinstance(node, ast.Name) and node.id in DYNAMIC_NAMES:
            return True
        elif isinstance(node, ast.Attribute) and node.attr in DYNAMIC_NAMES:
            return True
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in DYNAMIC_NAMES:
            return True
    return False
