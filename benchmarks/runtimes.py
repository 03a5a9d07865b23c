"""Benchmark of warm sandboxes restored from a checkpoint vs booted, side by side in one run.

    uv run python benchmarks/runtimes.py [--rounds 20] [--duration 20] [--cache-dir DIR]

(as root, with runsc installed; the ``python`` runtime is built into the cache on first use). Two
real ``sandbox-executor`` processes serve the built-in ``python`` runtime (numpy, pandas and
matplotlib.pyplot preloaded), one restoring its warm sandboxes from a checkpoint image, the other
booting them (``--no-restore``). For a pandas + pyplot snippet (build a DataFrame, group,
aggregate, draw a bar chart that comes back as a PNG artifact) it measures, alternating between
the two executors round by round so machine noise hits both alike:

- **CPU-seconds per execution**: the whole lifecycle (the execution, destroying its sandbox and
  booting or restoring the replacement), as CPU of the executor's process tree (its own, its
  live descendants' and those it reaped), read from ``/proc``: other work on the machine is not
  counted. Each round waits until the replacement is ready;
- **latency** of one execution through the full stack (``SandboxClient`` → ``self_managed`` →
  HTTP → executor → warm sandbox), p50/p95, with the warm sandbox ready;
- **ready time** of the sandbox that served it (boot or restore, from the result's metadata);
- **memory of the idle warm sandbox** (its memory cgroup), which holds the preloaded modules;
- **sustained executions per second** at concurrency 4 (each execution needs a fresh sandbox),
  with the machine's busy CPU per execution;

and reports each as restored / booted ratios. Results go to ``benchmarks/results/runtimes.json``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx

from sandbox_core import SandboxClient
from sandbox_selfmanaged.cgroups import Cgroups
from sandbox_selfmanaged.engine import EngineConfig

RESULTS = Path(__file__).resolve().parent / "results"
SNIPPET = textwrap.dedent("""
    import matplotlib.pyplot as plt
    import pandas as pd

    def main():
        frame = pd.DataFrame({"team": ["a", "b", "c", "a", "b", "a"], "score": [3, 4, 5, 6, 7, 8]})
        totals = frame.groupby("team")["score"].agg(["sum", "mean"])
        totals["sum"].plot.bar()
        return {team: int(total) for team, total in totals["sum"].items()}
""")
EXPECTED = {"a": 17, "b": 11, "c": 5}
MODES = {"restored": (), "booted": ("--no-restore",)}


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))]


def summary(samples: list[float], unit: float = 1000.0, suffix: str = "ms") -> dict[str, float]:
    return {
        f"p50_{suffix}": round(percentile(samples, 0.50) * unit, 3),
        f"p95_{suffix}": round(percentile(samples, 0.95) * unit, 3),
        f"mean_{suffix}": round(statistics.fmean(samples) * unit, 3),
        "n": len(samples),
    }


def machine_cpu_seconds() -> float:
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds of the process and of the children it reaped)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    ticks = sum(int(v) for v in fields[11:15])  # utime, stime, cutime, cstime
    return int(fields[1]), ticks / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(root: int) -> float:
    """CPU of ``root`` and every live descendant, each including the children it reaped.

    A process's CPU is counted either while it lives (its own) or once reaped (in its reaper's),
    never twice; the executor is a subreaper, so its sandboxes' processes end up reaped by it.
    """
    stats = {pid: s for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()) if (s := _stat(pid))}
    children: dict[int, list[int]] = {}
    for pid, (parent, _cpu) in stats.items():
        children.setdefault(parent, []).append(pid)
    total, stack = 0.0, [root]
    while stack:
        pid = stack.pop()
        if pid in stats:
            total += stats[pid][1]
        stack.extend(children.get(pid, ()))
    return total


class Executor:
    """A ``sandbox-executor`` serving only the ``python`` runtime, one warm sandbox."""

    def __init__(self, workdir: Path, cache_dir: Path | None, *flags: str) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.token = secrets.token_urlsafe(24)
        workdir.mkdir(parents=True)
        self.state_dir = workdir / "state"
        self.log = workdir / "executor.log"
        command = [
            str(Path(sys.executable).with_name("sandbox-executor")), "serve", "--port", str(port),
            "--state-dir", str(self.state_dir), "--languages", "python", "--runtimes", "python",
            "--pool-size", "1", "--boot-concurrency", "1", "--max-concurrency", "8", "--log-level", "warning", *flags,
        ]
        if cache_dir is not None:
            command += ["--cache-dir", str(cache_dir)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_")} | {"SANDBOX_EXECUTOR_TOKEN": self.token}
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.http = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, trust_env=False)
        self.client = SandboxClient(provider="self_managed", config={"endpoints": [self.url], "token": self.token})

    def wait_healthy(self, timeout: float = 900) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.http.get("/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise SystemExit(f"the executor did not become healthy:\n{self.log.read_text()[-3000:]}")

    def runtime(self) -> dict[str, Any]:
        return dict(self.http.get("/healthz").json()["runtimes"]["python"])

    def settle(self, timeout: float = 60.0) -> None:
        """Wait until the warm sandbox is ready and nothing boots."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pool = self.runtime()["pool"]
            if pool["ready"] >= pool["target"] and pool["booting"] == 0:
                time.sleep(0.3)  # the janitor's destroy of the used sandbox runs after the response
                return
            time.sleep(0.05)

    def warm_memory_mib(self) -> float | None:
        """Memory cgroup usage of the idle warm sandbox(es), MiB on average."""
        self.settle()
        time.sleep(1.0)
        cgroups = Cgroups()
        parent = EngineConfig(state_dir=self.state_dir).resolved_cgroup_parent()
        usages = [cgroups.memory_current(f"{parent}/{bundle.name}") for bundle in (self.state_dir / "bundles").iterdir()]
        known = [u for u in usages if u is not None]
        return round(statistics.fmean(known) / 2**20, 1) if known else None

    def cpu(self) -> float:
        return tree_cpu_seconds(self.process.pid)

    def stop(self) -> None:
        self.client.close()
        self.http.close()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(60)


def one_round(executor: Executor, sample: dict[str, list[float]]) -> None:
    executor.settle()
    cpu_before = executor.cpu()
    started = time.perf_counter()
    result = executor.client.execute(SNIPPET, timeout=60)
    latency = time.perf_counter() - started
    assert result.ok and result.value == EXPECTED and result.artifacts, (result.status, result.stderr[-2000:])
    executor.settle()
    sample["cpu"].append(executor.cpu() - cpu_before)
    sample["latency"].append(latency)
    sample["ready"].append(float(result.metadata["sandbox_boot_seconds"]))
    sample["restored"].append(1.0 if result.metadata.get("sandbox_restored") else 0.0)


def throughput(executor: Executor, duration: float, concurrency: int) -> dict[str, Any]:
    executor.settle()
    done: list[float] = []
    failures: list[str] = []
    stop_at = time.monotonic() + duration

    def worker() -> None:
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            result = executor.client.execute(SNIPPET, timeout=60)
            if result.ok:
                done.append(time.perf_counter() - started)
            else:
                failures.append(result.status.value)

    cpu_before, wall_before = machine_cpu_seconds(), time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(worker) for _ in range(concurrency)]:
            future.result()
    wall = time.monotonic() - wall_before
    return {
        "concurrency": concurrency,
        "executions": len(done),
        "failures": len(failures),
        "executions_per_second": round(len(done) / wall, 3),
        "latency": summary(done) if done else None,
        "machine_cpu_seconds_per_execution": round((machine_cpu_seconds() - cpu_before) / max(1, len(done)), 3),
    }


def ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of each sustained-throughput run")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--cache-dir", type=Path, help="the executors' runtime cache [default: the executor's]")
    parser.add_argument("--output", type=Path, default=RESULTS / "runtimes.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-runtimes-") as scratch:
        executors = {mode: Executor(Path(scratch) / mode, args.cache_dir, *flags) for mode, flags in MODES.items()}
        try:
            for executor in executors.values():
                executor.wait_healthy()
            for executor in executors.values():  # warm-up: the image, caches, connections
                for _ in range(2):
                    one_round(executor, {k: [] for k in ("cpu", "latency", "ready", "restored")})
            samples: dict[str, dict[str, list[float]]] = {
                mode: {k: [] for k in ("cpu", "latency", "ready", "restored")} for mode in executors
            }
            for _ in range(args.rounds):
                for mode, executor in executors.items():
                    one_round(executor, samples[mode])
            memory = {mode: executor.warm_memory_mib() for mode, executor in executors.items()}
            sustained = {mode: throughput(executor, args.duration, args.concurrency) for mode, executor in executors.items()}
            restore_state = executors["restored"].runtime().get("restore")
        finally:
            for executor in executors.values():
                executor.stop()

    per_mode: dict[str, Any] = {}
    for mode, sample in samples.items():
        per_mode[mode] = {
            "cpu_seconds_per_execution": summary(sample["cpu"], unit=1.0, suffix="s"),
            "latency": summary(sample["latency"]),
            "sandbox_ready": summary(sample["ready"]),
            "share_restored": round(statistics.fmean(sample["restored"]), 3),
            "warm_sandbox_memory_mib": memory[mode],
            "sustained": sustained[mode],
        }
    restored, booted = per_mode["restored"], per_mode["booted"]
    report = {
        "benchmark": "runtimes: warm sandboxes restored from a checkpoint vs booted (python runtime, preloaded)",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_average_at_end": os.getloadavg()},
        "snippet": SNIPPET,
        "rounds": args.rounds,
        "modes": per_mode,
        "checkpoint_image": restore_state,
        "ratios_restored_over_booted": {
            "cpu_seconds_per_execution_p50": ratio(
                restored["cpu_seconds_per_execution"]["p50_s"], booted["cpu_seconds_per_execution"]["p50_s"]
            ),
            "cpu_seconds_per_execution_mean": ratio(
                restored["cpu_seconds_per_execution"]["mean_s"], booted["cpu_seconds_per_execution"]["mean_s"]
            ),
            "latency_p50": ratio(restored["latency"]["p50_ms"], booted["latency"]["p50_ms"]),
            "sandbox_ready_p50": ratio(restored["sandbox_ready"]["p50_ms"], booted["sandbox_ready"]["p50_ms"]),
            "sustained_executions_per_second": ratio(
                restored["sustained"]["executions_per_second"], booted["sustained"]["executions_per_second"]
            ),
        },
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({"ratios_restored_over_booted": report["ratios_restored_over_booted"], **{
        mode: {"cpu_s_p50": v["cpu_seconds_per_execution"]["p50_s"], "latency_ms_p50": v["latency"]["p50_ms"],
               "ready_ms_p50": v["sandbox_ready"]["p50_ms"], "per_second": v["sustained"]["executions_per_second"]}
        for mode, v in per_mode.items()}}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
