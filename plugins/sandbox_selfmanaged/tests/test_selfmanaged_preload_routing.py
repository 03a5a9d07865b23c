"""Which sandbox of a preloading runtime a Python request needs: the rule, then the engine on real gVisor.

A runtime that preloads modules (the default ``python`` one: numpy, pandas, matplotlib.pyplot)
costs about a CPU-second and 90–140 MiB per sandbox. Code that cannot reach those modules runs in
a plain sandbox of the same runtime (its packages still importable); when in doubt, the preloaded one.
"""

from __future__ import annotations

import pytest

from sandbox_selfmanaged.preload_routing import needs_preload

PRELOAD = ("numpy", "pandas", "matplotlib.pyplot")


@pytest.mark.parametrize(
    "code",
    [
        "print(42)",
        "import json, math\nfrom datetime import date\ndef main(x):\n    return json.dumps({'x': math.sqrt(x)})\n",
        "import os.path\nfrom collections import abc\n",
        "def f(:\n",  # not Python: it fails before it could import anything
        "text = 'import pandas'\nprint(text)\n",
    ],
)
def test_code_reaching_no_preloaded_module_runs_plain(code: str) -> None:
    assert needs_preload(code, PRELOAD) is False


@pytest.mark.parametrize(
    "code",
    [
        "import pandas as pd",
        "import numpy.linalg",
        "from matplotlib import pyplot as plt",
        "def main():\n    import pandas\n    return 1\n",
        "import seaborn",  # not the standard library: it may import a preloaded module itself
        "from . import sibling",
        "m = __import__('pandas')",
        "import importlib\nimportlib.import_module('pandas')",
        "from importlib import import_module as load\nload('numpy')",
        "exec('import pandas')",
        "eval(compile('__import__(\"numpy\")', 'x', 'eval'))",
        "import pickle\npickle.loads(data)",
        "getattr(__builtins__, '__imp' + 'ort__')('numpy')",
        "import builtins\nbuiltins.__dict__['__import__']('numpy')",
        "import logging.config\nlogging.config.dictConfig({})",
    ],
)
def test_code_that_may_reach_a_preloaded_module_runs_preloaded(code: str) -> None:
    assert needs_preload(code, PRELOAD) is True


def test_without_preload_nothing_needs_it() -> None:
    assert needs_preload("import pandas", ()) is False
