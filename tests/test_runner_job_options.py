"""The runners' optional job fields (``run_name``, ``artifact_extensions``, ``promote_working_dir``),
run for real as host processes in a scratch working directory, and the symbolic-link rule."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sandbox_core.model import ExecutionResult, ExecutionStatus
from sandbox_core.runner import BoundedCapture, Job, ResultStream, build_result, runner_path

INTERPRETERS = {"python": [sys.executable, "-I", "-B"], "javascript": [shutil.which("node") or "node"]}
LANGUAGES = [
    "python",
    pytest.param("javascript", marks=pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")),
]
WRITE_FILES = {
    "python": (
        "import os\n"
        "for name in ('chart.png', 'notes.txt', '.hidden.png'):\n"
        "    open(name, 'w').write(name)\n"
        "open('out/table.CSV', 'w').write('a,b')\n"
        "open('out/log.txt', 'w').write('log')\n"
        "os.symlink('table.CSV', 'out/link.csv')\n"
    ),
    "javascript": (
        "const fs = require('fs');\n"
        "for (const name of ['chart.png', 'notes.txt', '.hidden.png']) fs.writeFileSync(name, name);\n"
        "fs.writeFileSync('out/table.CSV', 'a,b');\n"
        "fs.writeFileSync('out/log.txt', 'log');\n"
        "fs.symlinkSync('table.CSV', 'out/link.csv');\n"
    ),
}


def run_job(language: str, workdir: Path, **fields: Any) -> ExecutionResult:
    job = Job(output_dir=str(workdir / "out"), **fields)
    done = subprocess.run(
        [*INTERPRETERS[language], str(runner_path(language))],
        input=job.encode(), capture_output=True, cwd=workdir, timeout=60, check=False,
    )
    stdout, stderr = ResultStream(job.marker), BoundedCapture()
    stdout.feed(done.stdout)
    stderr.feed(done.stderr)
    return build_result(provider="test", stdout=stdout, stderr=stderr, exit_code=done.returncode, execution_time=0.1)


def test_run_name_is_the_codes_module_name(tmp_path: Path) -> None:
    code = "def main():\n    return __name__\nif __name__ == '__main__':\n    print('guarded block ran')\n"
    default = run_job("python", tmp_path, code=code)
    assert default.value == "__main__" and default.stdout == "guarded block ran\n"
    renamed = run_job("python", tmp_path, code=code, run_name="main")
    assert renamed.value == "main" and renamed.stdout == ""


@pytest.mark.parametrize("language", LANGUAGES)
def test_artifact_extensions_filter_and_promote(language: str, tmp_path: Path) -> None:
    result = run_job(
        language, tmp_path, code=WRITE_FILES[language], artifact_extensions=(".png", ".csv"), promote_working_dir=True,
    )
    assert result.status is ExecutionStatus.SUCCESS, result
    assert sorted(a.name for a in result.artifacts) == ["chart.png", "table.CSV"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden.png", "notes.txt", "out"], "only chart.png moved"


@pytest.mark.parametrize("language", LANGUAGES)
def test_without_options_every_regular_file_is_collected_and_nothing_moves(language: str, tmp_path: Path) -> None:
    result = run_job(language, tmp_path, code=WRITE_FILES[language])
    assert sorted(a.name for a in result.artifacts) == ["log.txt", "table.CSV"], "symbolic links are never collected"
    assert (tmp_path / "chart.png").is_file()
