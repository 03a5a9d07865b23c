"""The provider (client side) works without the executor service's stack, which is an extra.

Where agents run, ``pip install sandbox-selfmanaged`` brings the provider only; the machines that
run code install ``sandbox-selfmanaged[executor]``. Each check runs in a fresh interpreter in which
the service's libraries cannot be imported, as if they were not installed.
"""

from __future__ import annotations

import json
import subprocess
import sys

from selfmanaged_support import free_port

SERVICE_STACK = ("fastapi", "starlette", "uvicorn", "httptools", "uvloop", "prometheus_client", "pydantic")

BLOCKER = f"""
import importlib.abc, sys

class _NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {SERVICE_STACK!r} or name.startswith("sandbox_selfmanaged.service"):
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, _NotInstalled())
"""


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", BLOCKER + code], capture_output=True, text=True, timeout=120, check=False)


def test_the_provider_runs_without_the_service_stack() -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    probe = f"""
import json
from sandbox_core import SandboxClient
client = SandboxClient(provider="self_managed", config={{"endpoints": [{endpoint!r}], "token": "t0ken-value", "retries": 0}})
result = client.execute("print(1)")
health = client.health()
print(json.dumps({{"status": result.status.value, "message": result.error.message, "healthy": health.healthy,
                  "service": sorted(m for m in sys.modules if m.startswith("sandbox_selfmanaged.service"))}}))
"""
    process = _run(probe)
    assert process.returncode == 0, process.stderr
    report = json.loads(process.stdout)
    assert report["status"] == "provider_error" and endpoint in report["message"], report
    assert report["healthy"] is False and report["service"] == []


def test_the_executor_command_names_the_extra_it_needs() -> None:
    process = _run("from sandbox_selfmanaged.cli import main\nsys.exit(main(['serve', '--port', '1']))\n")
    assert process.returncode == 2, process.stderr
    assert "pip install 'sandbox-selfmanaged[executor]'" in process.stderr and "fastapi" in process.stderr, process.stderr
    assert "Traceback" not in process.stderr


def test_the_executor_runtime_command_needs_no_service_stack() -> None:
    process = _run("from sandbox_selfmanaged.cli import main\nsys.exit(main(['runtime', '--help']))\n")
    assert process.returncode == 0 and "usage:" in process.stdout, process.stderr
