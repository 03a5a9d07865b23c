"""Warm sandboxes restored from a checkpoint of a preloaded one, on real gVisor.

The built-in ``python`` runtime preloads numpy, pandas and matplotlib.pyplot, so its warm
sandboxes are restored clones of one checkpoint image. They must compute right, must not share
random state, must keep every limit, and a broken image must fall back to booting, visibly.
The runtime build is shared with ``test_selfmanaged_runtimes`` (pytest's cache folder).
"""

from __future__ import annotations

import json
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selfmanaged_support import Executor, assert_clean_shutdown, start_executor

from sandbox_selfmanaged.runtimes import BUILTIN_DEFINITIONS, RuntimeDefinition

RANDOM_STATE = "import os, random\n\ndef main():\n    return [random.random(), os.urandom(16).hex()]\n"


@pytest.fixture(scope="module")
def runtime_cache(request: pytest.FixtureRequest) -> Path:
    return Path(request.config.cache.mkdir("sandbox-runtimes"))


def _start(tmp_path: Path, runtime_cache: Path) -> Executor:
    return start_executor(
        tmp_path, "--runtimes", "python", "--languages", "python", "--cache-dir", str(runtime_cache),
        "--pool-size", "1", timeout=900,  # the first run builds the runtime
    )


@pytest.fixture(scope="module")
def restoring(runtime_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Executor]:
    running = _start(tmp_path_factory.mktemp("restore"), runtime_cache)
    _wait_for_image(running)
    yield running
    assert_clean_shutdown(running)


def _restored(executor: Executor, code: str, **fields: Any) -> dict[str, Any]:
    """Run ``code`` in a restored sandbox: only code that may reach a preloaded module gets one."""
    result = executor.execute("import numpy\n" + code, **fields)
    assert result["metadata"]["sandbox_restored"] is True, result["metadata"]
    return result


def _restore_health(executor: Executor) -> dict[str, Any]:
    response = executor.health()
    return dict(response.json()["runtimes"]["python"]["restore"])


def _wait_for_image(executor: Executor) -> None:
    """The image is made by the pool's first boot, which may still run when the executor is healthy."""
    deadline = time.monotonic() + 120
    while _restore_health(executor)["state"] == "pending" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _restore_health(executor)["state"] == "ready", executor.health().text


def test_restored_sandboxes_compute_pandas_right(restoring: Executor) -> None:
    code = textwrap.dedent("""
        import pandas as pd

        def main(rows):
            frame = pd.DataFrame(rows)
            return {k: int(v) for k, v in frame.groupby("team")["score"].sum().items()}
    """)
    rows = [{"team": "a", "score": 3}, {"team": "b", "score": 4}, {"team": "a", "score": 5}]
    for _ in range(2):
        result = _restored(restoring, code, arguments={"rows": rows})
        assert result["status"] == "success" and result["value"] == {"a": 8, "b": 4}, result
    restore = _restore_health(restoring)
    assert restore["state"] == "ready" and restore["restores"] >= 2 and restore["failures"] == 0, restore


def test_restored_clones_do_not_share_random_state(restoring: Executor) -> None:
    first = _restored(restoring, RANDOM_STATE)["value"]
    second = _restored(restoring, RANDOM_STATE)["value"]
    assert first[0] != second[0], "random.random() repeats across restored sandboxes: not re-seeded"
    assert first[1] != second[1], "os.urandom repeats across restored sandboxes"


def test_numpy_global_generator_is_reseeded(restoring: Executor) -> None:
    code = "import numpy\n\ndef main():\n    return float(numpy.random.random())\n"
    assert _restored(restoring, code)["value"] != _restored(restoring, code)["value"]


def test_limits_apply_to_restored_sandboxes(restoring: Executor) -> None:
    spin = "def main():\n    while True:\n        pass\n"
    timed_out = _restored(restoring, spin, timeout=1)
    assert timed_out["status"] == "timeout", timed_out
    hog = textwrap.dedent("""
        def main():
            blocks = []
            for _ in range(64):
                blocks.append(bytearray(16 << 20))
            return len(blocks)
    """)
    # 64 x 16 MiB: above the 192 MiB asked for here (not the image's 256: the sandbox's own cgroup).
    squeezed = _restored(restoring, hog, limits={"memory_mb": 192})
    assert squeezed["status"] == "memory_limit", squeezed
    # Process and file-size limits are rlimits, saved inside the image: the pool's own.
    rlimits = (
        "import resource\n\n"
        "def main():\n"
        "    return [resource.getrlimit(resource.RLIMIT_NPROC)[0], resource.getrlimit(resource.RLIMIT_FSIZE)[0]]\n"
    )
    result = _restored(restoring, rlimits)
    assert result["value"] == [result["metadata"]["limits"]["processes"], result["metadata"]["limits"]["max_file_bytes"]], result


def test_a_broken_image_falls_back_to_booting_and_says_so(runtime_cache: Path, tmp_path: Path) -> None:
    executor = _start(tmp_path, runtime_cache)
    try:
        _wait_for_image(executor)
        images = list((executor.state_dir / "images" / "python").iterdir())
        assert images, "no checkpoint image in the state directory"
        for image in images:
            with open(image, "r+b") as handle:
                size = handle.seek(0, 2)
                handle.seek(size // 3)
                handle.write(b"\xff" * 4096)
                handle.truncate(size // 2)
        results = [executor.execute("import pandas\n\ndef main():\n    return int(pandas.Series([1, 2]).sum())\n") for _ in range(3)]
        for result in results:
            assert result["status"] == "success" and result["value"] == 3, result
        assert results[-1]["metadata"]["sandbox_restored"] is False
        health = executor.health().json()
        restore = health["runtimes"]["python"]["restore"]
        assert restore["state"] == "failed" and restore["failures"] >= 1 and restore["plain_boots"] >= 1, restore
        assert "restoring from the checkpoint failed" in restore["error"], restore
        assert health["status"] == "degraded" and "runtime python" in health["message"], health
    finally:
        assert_clean_shutdown(executor)


def test_preload_is_part_of_a_definition_and_checked() -> None:
    assert BUILTIN_DEFINITIONS["python"].preload == ("numpy", "pandas", "matplotlib.pyplot")
    mine = RuntimeDefinition(name="mine", language="python", requirements=("x",), preload=("pandas", "matplotlib.pyplot"))
    assert RuntimeDefinition.from_dict(mine.to_dict()) == mine
    assert mine.digest("py") == RuntimeDefinition(name="mine", language="python", requirements=("x",)).digest("py")
    with pytest.raises(ValueError, match="preload: 'os; import x' is not a Python module name"):
        RuntimeDefinition(name="bad", language="python", requirements=("x",), preload=("os; import x",))
    with pytest.raises(ValueError, match="only Python runtimes preload"):
        RuntimeDefinition(name="js", language="javascript", requirements=("axios",), preload=("axios",))


def test_a_module_that_cannot_be_preloaded_fails_boots_loudly(runtime_cache: Path, tmp_path: Path) -> None:
    """``--preload`` of a module the runtime lacks: its sandboxes never boot, health and executions say why."""
    from test_selfmanaged_runtimes import PROBE_PACKAGE, _runtime_cli, _wheel

    _wheel(tmp_path)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(f"--no-index\n{tmp_path}/{PROBE_PACKAGE}-1.0-py3-none-any.whl\n")
    built = _runtime_cli(
        runtime_cache, "build", "misload", "--language", "python", "--requirements", str(requirements),
        "--preload", f"{PROBE_PACKAGE},no_such_module_xyz",
    )
    assert built.returncode == 0, built.stderr
    listed = {entry["name"]: entry for entry in json.loads(_runtime_cli(runtime_cache, "list", "--json").stdout)}
    assert listed["misload"]["preload"] == [PROBE_PACKAGE, "no_such_module_xyz"]
    executor = start_executor(
        tmp_path, "--runtimes", "misload", "--languages", "python", "--cache-dir", str(runtime_cache), "--pool-size", "1",
    )
    try:
        code = f"import {PROBE_PACKAGE}\nprint(1)"  # not the standard library: it needs the preloaded sandbox
        response = executor.http.post("/v1/execute", json={"code": code, "runtime": "misload"})
        assert response.status_code == 503 and "preload failed: no_such_module_xyz: ModuleNotFoundError" in response.text, response.text
        pool = executor.health().json()["runtimes"]["misload"]["pool"]
        assert pool["failing"] and "no_such_module_xyz" in pool["last_error"], pool
        # Code that needs no preloaded module runs in the runtime's plain sandboxes, which boot.
        plain = executor.execute("def main():\n    return 'x'", runtime="misload")
        assert plain["status"] == "success" and plain["metadata"]["sandbox_preloaded"] is False, plain
    finally:
        assert_clean_shutdown(executor)
        _runtime_cli(runtime_cache, "remove", "misload")
