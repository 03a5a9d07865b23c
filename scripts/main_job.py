"""The README's main job: execute a sample ``main(**arguments)`` in gVisor and print the result.

It uses the settings database exactly as an application would (``SANDBOX_DATABASE_URL``, or the
embedded SQLite file seeded on first use with the ``self_managed`` provider pointing at a local
executor). If nothing answers at the configured endpoint, it starts a ``sandbox-executor`` on
that loopback port for the duration of the job, with a fresh token that it also stores (as a
secret) in the provider's config, and stops it afterwards.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from urllib.parse import urlsplit

import httpx

from sandbox_core import SandboxClient
from sandbox_core.settings import SettingsStore

SAMPLE = '''\
def main(name: str, numbers: list, shout: bool = False) -> dict:
    greeting = f"Hello, {name}!"
    print("computing inside the sandbox...")
    return {
        "greeting": greeting.upper() if shout else greeting,
        "total": sum(numbers),
        "count": len(numbers),
    }
'''
ARGUMENTS = {"name": "sandbox-core ✓", "numbers": [1, 2, 3.5], "shout": False}
PROVIDER = "self_managed"


def _alive(url: str) -> bool:
    try:
        return httpx.get(f"{url}/livez", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def _start_executor(url: str, token: str, workdir: str) -> subprocess.Popen[bytes]:
    parts = urlsplit(url)
    executable = shutil.which("sandbox-executor")
    if executable is None:
        sys.exit("sandbox-executor is not installed: run `bash scripts/bootstrap.sh run` from the repository")
    log_path = os.path.join(workdir, "executor.log")
    print(f"starting sandbox-executor on {parts.hostname}:{parts.port} (log: {log_path})", file=sys.stderr)
    process = subprocess.Popen(
        [executable, "serve", "--host", parts.hostname or "127.0.0.1", "--port", str(parts.port or 8808),
         "--state-dir", os.path.join(workdir, "state")],
        env={**os.environ, "SANDBOX_EXECUTOR_TOKEN": token},
        stdout=open(log_path, "ab"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            with open(log_path, encoding="utf-8", errors="replace") as handle:
                sys.stderr.write(handle.read()[-4000:])
            sys.exit(f"sandbox-executor exited with code {process.returncode} (see above)")
        if _alive(url):
            return process
        time.sleep(0.2)
    process.terminate()
    sys.exit("sandbox-executor did not become ready within 60 s")


def main() -> int:
    store = SettingsStore()
    store.seed_defaults()
    if store.get("sandbox.provider_type") in (None, ""):
        store.set_active_provider(PROVIDER, source="cli")
    provider = store.active_provider()
    print(f"settings: {store.describe()}; active provider: {provider}", file=sys.stderr)
    executor = None
    workdir = tempfile.mkdtemp(prefix="sandbox-main-job-")
    try:
        if provider == PROVIDER:
            config = store.provider_config(PROVIDER)
            url = (config.get("endpoints") or ["http://127.0.0.1:8808"])[0]
            if not _alive(url):
                token = secrets.token_urlsafe(24)
                store.save_provider_config(PROVIDER, {**config, "token": token}, source="cli")
                executor = _start_executor(url, token, workdir)
        client = SandboxClient(settings=store)
        result = client.health()
        if not result.healthy:
            print(f"warning: provider {provider} reports unhealthy: {result.message}", file=sys.stderr)
        outcome = client.execute(SAMPLE, language="python", timeout=30, arguments=ARGUMENTS, requested_by="main-job")
        print(json.dumps(outcome.to_dict(), indent=2, ensure_ascii=False))
        return 0 if outcome.ok else 1
    finally:
        if executor is not None:
            executor.send_signal(signal.SIGTERM)
            try:
                executor.wait(timeout=30)
            except subprocess.TimeoutExpired:
                executor.kill()
        shutil.rmtree(workdir, ignore_errors=True)
        store.close()


if __name__ == "__main__":
    sys.exit(main())
