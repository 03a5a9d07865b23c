"""Runtimes (package sets) through the public API, on real gVisor: pandas, charts, requests, axios.

The default runtimes are built once into a cache kept between test runs (pytest's cache folder),
since building ``python`` downloads numpy, pandas and matplotlib; later runs reuse the build.
The custom runtime is built from a wheel made here, with ``--no-index``: no registry involved.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import textwrap
import zipfile
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from selfmanaged_support import EXECUTOR, Executor, assert_clean_shutdown, start_executor

from sandbox_core import SandboxClient
from sandbox_core.model import ExecutionResult, ExecutionStatus

PROBE_PACKAGE = "sandbox_probe_pkg"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _wheel(folder: Path, version: str = "1.0") -> Path:
    """A minimal pure-Python wheel of ``sandbox_probe_pkg`` (a zip with its dist-info)."""
    name = f"{PROBE_PACKAGE}-{version}-py3-none-any.whl"
    info = f"{PROBE_PACKAGE}-{version}.dist-info"
    files = {
        f"{PROBE_PACKAGE}/__init__.py": f"VERSION = {version!r}\n\ndef answer():\n    return 42\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {PROBE_PACKAGE.replace('_', '-')}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{info}/RECORD"] = "".join(f"{path},,\n" for path in files) + f"{info}/RECORD,,\n"
    path = folder / name
    with zipfile.ZipFile(path, "w") as archive:
        for member, text in files.items():
            archive.writestr(member, text)
    return path


def _runtime_cli(cache: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXECUTOR, "runtime", *args, "--cache-dir", str(cache)], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def runtime_cache(request: pytest.FixtureRequest) -> Path:
    return Path(request.config.cache.mkdir("sandbox-runtimes"))


@pytest.fixture(scope="module")
def probe_runtime(runtime_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The custom runtime ``probe``, built with the CLI from a requirements file naming a local wheel."""
    folder = tmp_path_factory.mktemp("probe-runtime")
    _wheel(folder)
    (folder / "requirements.txt").write_text(f"--no-index\n./{PROBE_PACKAGE}-1.0-py3-none-any.whl\n")
    built = _runtime_cli(runtime_cache, "build", "probe", "--language", "python", "--requirements", str(folder / "requirements.txt"))
    assert built.returncode == 0, built.stderr
    return "probe"


@pytest.fixture(scope="module")
def runtime_executor(runtime_cache: Path, probe_runtime: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Executor]:
    running = start_executor(
        tmp_path_factory.mktemp("runtimes"),
        "--runtimes", f"python,javascript,{probe_runtime}",
        "--cache-dir", str(runtime_cache),
        "--pool-size", "1",
        timeout=900,  # the first run builds the default runtimes (downloads); later runs reuse them
    )
    yield running
    assert_clean_shutdown(running)


@pytest.fixture
def client(runtime_executor: Executor) -> Iterator[SandboxClient]:
    config = {"endpoints": [runtime_executor.url], "token": runtime_executor.token}
    with closing(SandboxClient(provider="self_managed", config=config)) as sandbox:
        yield sandbox


def _ok(result: ExecutionResult) -> Any:
    assert result.status is ExecutionStatus.SUCCESS, (result.status, result.stderr, result.error)
    return result.value


def test_pandas_and_numpy_compute_the_right_value(client: SandboxClient) -> None:
    code = textwrap.dedent("""
        import numpy as np
        import pandas as pd

        def main(rows):
            frame = pd.DataFrame(rows)
            totals = frame.groupby("team")["score"].sum().to_dict()
            return {"totals": {k: int(v) for k, v in totals.items()}, "mean": float(np.mean(frame["score"]))}
    """)
    rows = [{"team": "a", "score": 3}, {"team": "b", "score": 4}, {"team": "a", "score": 5}]
    # No runtime named: the language's default runtime ("python") has them.
    assert _ok(client.execute(code, arguments={"rows": rows})) == {"totals": {"a": 8, "b": 4}, "mean": 4.0}
    named = client.execute(code, arguments={"rows": rows}, runtime="python")
    assert _ok(named)["totals"] == {"a": 8, "b": 4}
    assert named.metadata["sandbox_runtime"] == "python"


def test_code_reaching_no_preloaded_module_runs_in_a_plain_sandbox_of_the_runtime(client: SandboxClient) -> None:
    plain = client.execute("import sys\ndef main():\n    return 'pandas' in sys.modules\n")
    assert _ok(plain) is False
    assert (plain.metadata["sandbox_runtime"], plain.metadata["sandbox_preloaded"]) == ("python", False)
    preloaded = client.execute("import pandas\ndef main():\n    return 'pandas' in __import__('sys').modules\n")
    assert _ok(preloaded) is True
    assert (preloaded.metadata["sandbox_runtime"], preloaded.metadata["sandbox_preloaded"]) == ("python", True)
    # The rule cannot see this import, yet the runtime's packages import in a plain sandbox all the same.
    hidden = client.execute("def main():\n    return getattr(print.__self__, '__imp' + 'ort__')('numpy').__name__\n", runtime="python")
    assert _ok(hidden) == "numpy"
    assert hidden.metadata["sandbox_preloaded"] is False


def test_open_and_shown_figures_come_back_as_png_artifacts(client: SandboxClient) -> None:
    code = textwrap.dedent("""
        import matplotlib.pyplot as plt

        def main():
            plt.figure()
            plt.bar(["一", "二"], [1, 2])
            plt.title("图表 chart")
            plt.figure()
            plt.plot([1, 2, 3])
            plt.show()
            return plt.get_backend()
    """)
    result = client.execute(code)
    assert _ok(result).lower() == "agg"
    assert "Glyph" not in result.stderr and "cannot be shown" not in result.stderr, result.stderr
    figures = sorted(a.name for a in result.artifacts)
    assert figures == ["figure-1.png", "figure-2.png"]
    for artifact in result.artifacts:
        assert artifact.mime_type == "image/png" and artifact.content.startswith(PNG_SIGNATURE) and artifact.size > 1000


def test_figures_fit_the_artifact_budget_and_saved_files_keep_working(runtime_executor: Executor) -> None:
    code = textwrap.dedent("""
        import os
        import matplotlib.pyplot as plt

        def main():
            plt.plot([1, 2])
            plt.savefig(os.path.join(os.environ["SANDBOX_OUTPUT_DIR"], "mine.png"))
            plt.figure()
            plt.plot([3, 4])
    """)
    result = runtime_executor.execute(code, limits={"max_artifact_bytes": 200_000})
    assert result["status"] == "success", result
    names = sorted(a["name"] for a in result["artifacts"])
    assert names == ["figure-1.png", "figure-2.png", "mine.png"]
    assert base64.b64decode(result["artifacts"][0]["content_base64"]).startswith(PNG_SIGNATURE)
    tight = runtime_executor.execute(code, limits={"max_artifact_bytes": 1024})
    assert tight["status"] == "success" and tight["artifacts"] == []


def test_requests_imports_and_the_network_stays_off(client: SandboxClient) -> None:
    code = textwrap.dedent("""
        import requests

        def main():
            try:
                requests.get("http://example.com/", timeout=5)
            except requests.RequestException as exc:
                return {"version": requests.__version__, "failed": type(exc).__name__}
            return "reached the network"
    """)
    value = _ok(client.execute(code))
    assert value["failed"] == "ConnectionError" and value["version"]


def test_javascript_requires_axios(client: SandboxClient) -> None:
    code = "const axios = require('axios');\nfunction main() { return typeof axios.get; }\n"
    result = client.execute(code, language="javascript")
    assert _ok(result) == "function"
    assert result.metadata["sandbox_runtime"] == "javascript"


def test_code_cannot_write_into_the_runtime_folder(client: SandboxClient) -> None:
    code = textwrap.dedent("""
        import os
        import numpy

        def main():
            folder = os.path.dirname(os.path.dirname(numpy.__file__))
            outcomes = []
            for target in (os.path.join(folder, "planted.py"), numpy.__file__):
                try:
                    with open(target, "a") as handle:
                        handle.write("x = 1\\n")
                    outcomes.append("written")
                except OSError as exc:
                    outcomes.append(type(exc).__name__)
            return outcomes
    """)
    assert _ok(client.execute(code)) == ["PermissionError", "PermissionError"]


def test_unknown_runtime_is_a_clear_error(client: SandboxClient) -> None:
    result = client.execute("def main():\n    return 1\n", runtime="no-such-runtime")
    assert result.status is ExecutionStatus.PROVIDER_ERROR
    assert result.error is not None
    message = result.error.message
    assert "unknown runtime 'no-such-runtime'" in message
    assert "javascript, probe, python" in message


def test_runtime_of_another_language_is_refused(client: SandboxClient) -> None:
    result = client.execute("function main() { return 1; }", language="javascript", runtime="python")
    assert result.status is ExecutionStatus.PROVIDER_ERROR
    assert "is a python runtime" in result.error.message  # type: ignore[union-attr]


def test_custom_runtime_is_importable_in_its_sandboxes_only(client: SandboxClient) -> None:
    code = f"def main():\n    import {PROBE_PACKAGE}\n    return {PROBE_PACKAGE}.answer()\n"
    assert _ok(client.execute(code, runtime="probe")) == 42
    for other in ({"runtime": "python"}, {}):
        result = client.execute(code, **other)
        assert result.status is ExecutionStatus.ERROR and result.error is not None
        assert result.error.type == "ModuleNotFoundError", result.error


def test_runtimes_are_advertised_with_package_versions(runtime_executor: Executor) -> None:
    response = runtime_executor.http.get("/v1/runtimes")
    assert response.status_code == 200, response.text
    served = {entry["name"]: entry for entry in response.json()}
    assert set(served) == {"python", "javascript", "probe"}
    assert served["python"]["language"] == "python" and served["python"]["available"]
    assert {"numpy", "pandas", "matplotlib", "requests"} <= set(served["python"]["packages"])
    assert "axios" in served["javascript"]["packages"]
    assert served["probe"]["packages"] == {"sandbox-probe-pkg": "1.0"}
    anonymous = runtime_executor.http.get("/v1/runtimes", headers={"Authorization": ""})
    assert anonymous.status_code == 401
    health = runtime_executor.health().json()
    assert health["runtimes"]["probe"]["available"] and health["status"] == "ok"
    # A preloading runtime has a second pool, of plain sandboxes; a runtime without preload has none.
    assert "plain_pool" in health["runtimes"]["python"] and "plain_pool" not in health["runtimes"]["probe"]


def test_health_through_the_provider_lists_runtimes(client: SandboxClient) -> None:
    status = client.health()
    [probe] = status.details["endpoints"].values()
    assert probe["runtimes"]["python"]["packages"]["pandas"]
    assert probe["runtimes"]["javascript"]["language"] == "javascript"


def test_runtime_cli_lists_and_removes(tmp_path: Path) -> None:
    """``runtime build/list/remove`` on a cache of its own; the wheel is local (no registry)."""
    cache = tmp_path / "cache"
    _wheel(tmp_path, "2.5")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(f"--no-index\n{PROBE_PACKAGE}-2.5-py3-none-any.whl\n")
    built = _runtime_cli(cache, "build", "mine", "--language", "python", "--requirements", str(requirements))
    assert built.returncode == 0, built.stderr
    assert "runtime mine: install:" in built.stderr  # progress is shown
    listing = _runtime_cli(cache, "list", "--json")
    entries = {entry["name"]: entry for entry in json.loads(listing.stdout)}
    assert entries["mine"]["built"] and entries["mine"]["packages"] == {"sandbox-probe-pkg": "2.5"}
    assert entries["mine"]["source"] == "custom"
    assert entries["python"]["source"] == "built-in" and not entries["python"]["built"]
    removed = _runtime_cli(cache, "remove", "mine")
    assert removed.returncode == 0, removed.stderr
    after = {entry["name"] for entry in json.loads(_runtime_cli(cache, "list", "--json").stdout)}
    assert "mine" not in after
    unknown = _runtime_cli(cache, "remove", "nothing-here")
    assert unknown.returncode == 2 and "unknown runtime 'nothing-here'" in unknown.stderr
    failing = tmp_path / "missing.txt"
    failing.write_text("--no-index\nsurely-not-a-local-package-xyz\n")
    broken = _runtime_cli(cache, "build", "broken", "--language", "python", "--requirements", str(failing))
    assert broken.returncode == 1 and "install failed" in broken.stderr
    assert "broken" not in {entry["name"] for entry in json.loads(_runtime_cli(cache, "list", "--json").stdout)}


_ENSURE_TWICE = """
import json, sys
from pathlib import Path
from sandbox_selfmanaged.procs import ProcessSupervisor
from sandbox_selfmanaged.rootfs import probe_python
from sandbox_selfmanaged.runtime_store import RuntimeStore
from sandbox_selfmanaged.runtimes import RuntimeDefinition, Toolchain

cache, wheel_a, wheel_b = sys.argv[1:]
supervisor = ProcessSupervisor()
toolchain = Toolchain(python=probe_python("/usr/bin/python3", supervisor), node=None)
store = RuntimeStore(Path(cache))
first = RuntimeDefinition(name="again", language="python", requirements=("--no-index", wheel_a))
one = store.ensure(first, toolchain, supervisor)
two = store.ensure(first, toolchain, supervisor)
changed = RuntimeDefinition(name="again", language="python", requirements=("--no-index", wheel_b))
three = store.ensure(changed, toolchain, supervisor)
print(json.dumps({
    "same": one.path == two.path and one.built_at == two.built_at,
    "rebuilt": three.path != one.path, "old_removed": not one.path.exists(),
    "versions": [one.packages, three.packages],
}))
"""


def test_a_runtime_is_rebuilt_only_when_its_definition_changes(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    wheel_a, wheel_b = _wheel(first, "1.0"), _wheel(second, "1.1")
    outcome = subprocess.run(
        [sys.executable, "-c", _ENSURE_TWICE, str(tmp_path / "cache"), str(wheel_a), str(wheel_b)],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert outcome.returncode == 0, outcome.stderr
    report = json.loads(outcome.stdout.strip().splitlines()[-1])
    assert report["same"] and report["rebuilt"] and report["old_removed"]
    assert report["versions"] == [{"sandbox-probe-pkg": "1.0"}, {"sandbox-probe-pkg": "1.1"}]


def test_sandbox_cli_shows_runtimes_and_runs_with_one(runtime_executor: Executor, tmp_path: Path) -> None:
    sandbox = str(Path(EXECUTOR).with_name("sandbox"))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SANDBOX_DATABASE_URL": f"sqlite:///{tmp_path / 'settings.db'}"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sandbox, *args], env=env, capture_output=True, text=True, timeout=120, check=False)

    config = json.dumps({"endpoints": [runtime_executor.url], "token": runtime_executor.token})
    assert cli("config", "set", "self_managed", "--json", config, "--activate").returncode == 0
    health = cli("health")
    assert health.returncode == 0, health.stderr
    assert "runtime probe (python): sandbox-probe-pkg 1.0" in health.stdout
    assert "runtime javascript (javascript): " in health.stdout and "axios " in health.stdout
    code = f"import {PROBE_PACKAGE}\ndef main():\n    return {PROBE_PACKAGE}.VERSION\n"
    ran = cli("exec", "-c", code, "--runtime", "probe", "--json")
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["value"] == "1.0"


def test_ragflow_run_with_pandas_returns_the_chart(runtime_executor: Executor) -> None:
    """RAGFlow's "Normal: Python with pandas" case, plus a chart, through ``POST /run``."""
    code = textwrap.dedent("""
        import pandas as pd
        import matplotlib.pyplot as plt

        def main(arg1: str) -> dict:
            df = pd.DataFrame({"a": [1, 2, 3], "b": [4, 5, 6]})
            df.plot(x="a", y="b")
            return {"result": int(df["a"].sum() + df["b"].sum()), "arg": arg1}
    """)
    body = {"code_b64": base64.b64encode(code.encode()).decode(), "language": "python", "arguments": {"arg1": "x"}}
    response = runtime_executor.http.post("/run", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["status"] == "success", answer
    assert answer["result"]["value"] == {"result": 21, "arg": "x"}
    [chart] = answer["artifacts"]
    assert chart["name"] == "figure-1.png" and chart["mime_type"] == "image/png"
    assert base64.b64decode(chart["content_b64"]).startswith(PNG_SIGNATURE)


def test_a_runtime_whose_build_fails_is_not_served(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    definitions = cache / "runtimes" / "definitions"
    definitions.mkdir(parents=True)
    broken = {"name": "broken", "language": "python", "requirements": ["--no-index", "surely-not-a-local-package-xyz"]}
    (definitions / "broken.json").write_text(json.dumps(broken))
    running = start_executor(
        tmp_path, "--runtimes", "broken", "--cache-dir", str(cache), "--languages", "python", "--pool-size", "1", wait="live"
    )
    try:
        health = running.health()
        assert health.status_code == 200, health.text
        body = health.json()
        assert body["status"] == "degraded" and "runtime broken: build failed" in body["message"]
        assert body["runtimes"]["broken"]["available"] is False
        assert "surely-not-a-local-package-xyz" in running.log()
        refused = running.http.post("/v1/execute", json={"code": "print(1)", "runtime": "broken"})
        assert refused.status_code == 503 and "runtime 'broken' is unavailable: build failed" in refused.json()["detail"]
        bare = running.execute("def main():\n    import json\n    return 'bare'\n")
        assert bare["value"] == "bare" and bare["metadata"]["sandbox_runtime"] is None
    finally:
        assert_clean_shutdown(running)
