"""The README's main job: execute a sample ``main(**arguments)`` in gVisor and print the result.

The sample uses pandas and leaves a matplotlib chart open, which comes back as an artifact
(``figure-1.png``); artifacts are saved under ``sandbox-output/`` and their paths printed with
the result. The executor builds its default runtimes (numpy, pandas, matplotlib, requests;
axios) on its first start, once: their progress is shown while the job waits for it.

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
import pandas as pd
import matplotlib.pyplot as plt


def main(name: str, sales: dict) -> dict:
    print("computing inside the sandbox with pandas...")
    frame = pd.DataFrame({"month": list(sales), "sales": list(sales.values())})
    frame["change_pct"] = frame["sales"].pct_change().fillna(0).mul(100).round(1)
    axes = frame.plot.bar(x="month", y="sales", legend=False, title=f"Sales of {name}")
    axes.set_ylabel("units")
    best = frame.loc[frame["sales"].idxmax()]
    return {
        "greeting": f"Hello, {name}!",
        "total": int(frame["sales"].sum()),
        "best_month": str(best["month"]),
        "change_pct": frame["change_pct"].tolist(),
    }
'''
ARGUMENTS = {"name": "sandbox-core ✓", "sales": {"Jan": 120, "Feb": 135, "Mar": 128, "Apr": 160}}
PROVIDER = "self_managed"
OUTPUT_DIR = "sandbox-output"
READY_TIMEOUT = 1800.0
"""Seconds to wait for a new executor: its first start builds the default runtimes (downloads)."""


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
    deadline = time.monotonic() + READY_TIMEOUT
    shown = 0
    while time.monotonic() < deadline:
        shown = _show_runtime_progress(log_path, shown)
        if process.poll() is not None:
            with open(log_path, encoding="utf-8", errors="replace") as handle:
                sys.stderr.write(handle.read()[-4000:])
            sys.exit(f"sandbox-executor exited with code {process.returncode} (see above)")
        if _alive(url):
            return process
        time.sleep(0.2)
    process.terminate()
    sys.exit(f"sandbox-executor did not become ready within {READY_TIMEOUT:g} s")


def _show_runtime_progress(log_path: str, offset: int) -> int:
    """Echo the executor log's runtime build lines written since ``offset``; the new offset."""
    with open(log_path, "rb") as handle:
        handle.seek(offset)
        data = handle.read()
    complete = data.rfind(b"\n") + 1
    for line in data[:complete].decode("utf-8", "replace").splitlines():
        if "runtime " in line:
            print(line.split(": ", 1)[-1], file=sys.stderr)
    return offset + complete


def _save_artifacts(result: dict[str, object], artifacts: list[tuple[str, bytes]]) -> None:
    """Write the artifacts into OUTPUT_DIR and show their paths instead of their base64 content."""
    if not artifacts:
        return
    os.makedirs(OUTPUT_DIR, exist_ok=True)
    saved = []
    for name, content in artifacts:
        path = os.path.abspath(os.path.join(OUTPUT_DIR, os.path.basename(name)))
        with open(path, "wb") as handle:
            handle.write(content)
        saved.append({"name": name, "size": len(content), "saved_to": path})
    result["artifacts"] = saved


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
        outcome = client.execute(SAMPLE, language="python", timeout=60, arguments=ARGUMENTS, requested_by="main-job")
        printed = outcome.to_dict()
        _save_artifacts(printed, [(artifact.name, artifact.content) for artifact in outcome.artifacts])
        print(json.dumps(printed, indent=2, ensure_ascii=False))
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
