"""Benchmark of the self-managed gVisor provider, everything measured side by side in one run.

    uv run --with matplotlib python benchmarks/selfmanaged.py [--rounds 60] [--duration 8] [--baseline DIR]

(as root, with runsc installed). It starts a real ``sandbox-executor`` and measures:

- CPU-seconds per fresh-sandbox execution at concurrency 1, 4 and 16: the executor and
  everything it starts (runsc, gofers, sentries; reaped or alive), counted from /proc, so other
  load on a shared machine does not enter the figure. With ``--baseline DIR`` (another checkout
  with its own ``.venv``, e.g. ``git worktree add --detach DIR <older commit>`` then
  ``uv sync --all-packages`` in it) that checkout's executor runs alongside and both are measured
  in paired blocks that alternate, so the previous design's figure comes from the same run;
  ``--compare-runsc PATH`` does the same for this checkout's executor on another runsc binary
  (a newer gVisor release), once per platform it offers (systrap, ptrace), and writes
  ``selfmanaged-runsc-compare.json``; ``--cpu-only`` stops there;
- latency of one trivial execution, p50/p95, interleaved round by round so machine noise hits
  every method alike: the full stack (``sandbox_core.SandboxClient`` → ``self_managed`` provider →
  HTTP → executor → warm gVisor sandbox) for Python and JavaScript; an unsandboxed
  ``python3 -I -c`` subprocess (and ``node -e``); a naive ``runsc do`` per execution. Between
  measurements the warm pool is allowed to refill, so this is the latency of a request that
  finds the executor idle;
- sustained executions per second at concurrency 1, 4 and 16 (failures counted), with latency
  and the executor's CPU-seconds per execution;
- memory of one idle warm sandbox, from its memory cgroup and as PSS of its processes (RSS
  would count shared pages once per sandbox).

Results go to ``benchmarks/results/selfmanaged.json`` and ``selfmanaged.png``
(``selfmanaged-cpu.json`` with ``--cpu-only``).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from sandbox_core import SandboxClient
from sandbox_selfmanaged.cgroups import Cgroups
from sandbox_selfmanaged.engine import EngineConfig
from sandbox_selfmanaged.runsc_platform import supported_platforms

RESULTS = Path(__file__).resolve().parent / "results"
PYTHON_CODE = "print(42)"
JS_CODE = "console.log(42)"
POOL = {"python": 4, "javascript": 2}


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(samples, 0.50) * 1000, 2),
        "p95_ms": round(percentile(samples, 0.95) * 1000, 2),
        "mean_ms": round(statistics.fmean(samples) * 1000, 2),
        "n": len(samples),
    }


def cpu_seconds() -> float:
    """Busy CPU time of the whole machine so far (all cores), from /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def process_table() -> tuple[dict[int, list[int]], dict[int, int]]:
    """Every live process's children, and its CPU clock ticks (utime, stime, cutime, cstime), from /proc."""
    children: dict[int, list[int]] = {}
    ticks: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            text = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        pid = int(entry.name)
        children.setdefault(int(fields[1]), []).append(pid)
        ticks[pid] = sum(int(v) for v in fields[11:15])
    return children, ticks


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of ``pid`` and every descendant it started, reaped or alive (from /proc).

    A reaped child's time (and what it reaped) is in its parent's ``cutime``/``cstime``; the
    executor is the subreaper of every runsc process and sandbox, so the executor's own four
    counters plus the four of each live descendant count each CPU-second exactly once.
    """
    children, ticks = process_table()
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        total += ticks.get(current, 0)
        todo += children.get(current, [])
    return total / os.sysconf("SC_CLK_TCK")


def cgroup_pss_bytes(cgroups: Cgroups, path: str) -> int:
    """Proportional set size of every process in the sandbox cgroup ``path`` (RSS would count the
    pages sandboxes share once per sandbox)."""
    pss = 0
    for pid in cgroups.procs_files(path)[0].read_text().split():  # the memory controller's (v1) or the one (v2)
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss += int(line.split()[1]) * 1024
        except OSError:
            continue
    return pss


def own_cpu_seconds(pid: int) -> float:
    """CPU time of ``pid`` itself (all its threads), its children not included."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Executor:
    """A sandbox-executor subprocess for a benchmark (``executable``: another checkout's, for a baseline).

    ``runtimes`` None serves the executor's default runtimes; ``extra`` flags come last and win.
    The other benchmarks start theirs through this class too.
    """

    def __init__(
        self,
        workdir: Path,
        runtimes: str | None,
        executable: str | None = None,
        *,
        extra: Sequence[str] = (),
        ready_timeout: float = 120.0,
    ) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = secrets.token_urlsafe(24)
        workdir.mkdir(parents=True, exist_ok=True)
        self.state_dir = workdir / "state"
        self.log = workdir / "executor.log"
        executable = executable or str(Path(sys.executable).with_name("sandbox-executor"))
        command = [
            executable, "serve", "--port", str(self.port), "--state-dir", str(self.state_dir),
            "--python-pool-size", str(POOL["python"]), "--javascript-pool-size", str(POOL["javascript"]),
            "--max-concurrency", "16", "--queue-size", "64", "--log-level", "warning",
            *(("--runtimes", runtimes) if runtimes is not None else ()),
            *extra,
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_")} | {"SANDBOX_EXECUTOR_TOKEN": self.token}
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.http = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, trust_env=False)
        deadline = time.monotonic() + ready_timeout
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

    @property
    def config(self) -> dict[str, Any]:
        """The ``self_managed`` provider config that reaches this executor."""
        return {"endpoints": [self.url], "token": self.token}

    def health(self) -> dict[str, Any]:
        return self.http.get("/healthz").json()

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until every warm pool is full and nothing boots (the machine is idle again)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pools = [entry["pool"] for entry in self.health()["languages"].values()]
            if all(p["ready"] >= p["target"] and p["booting"] == 0 for p in pools):
                return
            time.sleep(0.02)

    def descendants(self) -> int:
        """How many processes the executor has running (itself excluded)."""
        count, todo = -1, [self.process.pid]
        while todo:
            pid = todo.pop()
            count += 1
            try:
                for task in Path(f"/proc/{pid}/task").iterdir():
                    todo += [int(p) for p in (task / "children").read_text().split()]
            except OSError:
                continue
        return count

    def wait_descendants(self, count: int, timeout: float = 10.0) -> None:
        """Wait until no more than ``count`` processes run under the executor (used sandboxes are gone)."""
        deadline = time.monotonic() + timeout
        while self.descendants() > count and time.monotonic() < deadline:
            time.sleep(0.02)

    def stop(self) -> None:
        self.http.close()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(60)


def measure_latency(executor: Executor, client: SandboxClient, rounds: int, runsc_root: Path) -> tuple[dict[str, Any], dict[str, float]]:
    runsc = shutil.which("runsc") or "/usr/bin/runsc"
    runsc_root.mkdir(parents=True, exist_ok=True)
    node = shutil.which("node") or "/usr/bin/node"
    inner: list[float] = []

    def full_stack(language: str, code: str) -> Callable[[], None]:
        def run() -> None:
            result = client.execute(code, language=language, timeout=30)
            assert result.ok and result.stdout == "42\n", result
            if language == "python":
                inner.append(result.execution_time)
        return run

    def command(argv: list[str]) -> Callable[[], None]:
        def run() -> None:
            out = subprocess.run(argv, capture_output=True, stdin=subprocess.DEVNULL, check=True).stdout
            assert out.strip() == b"42", out
        return run

    methods: dict[str, Callable[[], None]] = {
        "full_stack_python": full_stack("python", PYTHON_CODE),
        "full_stack_javascript": full_stack("javascript", JS_CODE),
        "unsandboxed_python_subprocess": command(["/usr/bin/python3", "-I", "-c", PYTHON_CODE]),
        "unsandboxed_node_subprocess": command([node, "-e", JS_CODE]),
        "runsc_do_python": command([
            runsc, f"--root={runsc_root}", f"--log={runsc_root}/runsc.log", "--network=none", "--platform=ptrace",
            "do", "/usr/bin/python3", "-c", PYTHON_CODE,
        ]),
    }
    samples: dict[str, list[float]] = {name: [] for name in methods}
    for name, run in methods.items():  # warm-up: caches, connections, lazy imports
        for _ in range(3):
            run()
            executor.settle()
    inner.clear()
    for _ in range(rounds):
        for name, run in methods.items():
            executor.settle()
            started = time.perf_counter()
            run()
            samples[name].append(time.perf_counter() - started)
    return {name: summary(values) for name, values in samples.items()}, summary(inner)


def run_executions(
    client: SandboxClient, concurrency: int, *, count: int | None = None, until: float | None = None
) -> tuple[list[float], list[str]]:
    """Trivial executions from ``concurrency`` threads: ``count`` in all, or as many as fit before ``until``."""
    latencies: list[float] = []
    failures: list[str] = []
    left = [count if count is not None else -1]
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if left[0] == 0 or (until is not None and time.monotonic() >= until):
                    return
                left[0] -= 1
            started = time.perf_counter()
            result = client.execute(PYTHON_CODE, timeout=60)
            if result.ok and result.stdout == "42\n":
                latencies.append(time.perf_counter() - started)
            else:
                failures.append(f"{result.status.value}: {result.error}")

    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(worker) for _ in range(concurrency)]:
            future.result()
    return latencies, failures


def measure_throughput(executor: Executor, client: SandboxClient, concurrency: int, duration: float) -> dict[str, Any]:
    executor.settle()
    cpu_before, wall_before = tree_cpu_seconds(executor.process.pid), time.monotonic()
    latencies, failures = run_executions(client, concurrency, until=wall_before + duration)
    wall = time.monotonic() - wall_before
    executor.settle()  # the refills the executions caused are part of their cost
    cpu = tree_cpu_seconds(executor.process.pid) - cpu_before
    return {
        "concurrency": concurrency,
        "executions": len(latencies),
        "failures": len(failures),
        "failure_examples": failures[:3],
        "executions_per_second": round(len(latencies) / wall, 2),
        "latency": summary(latencies),
        "executor_cpu_seconds_per_execution": round(cpu / max(1, len(latencies)), 4),
    }


def measure_cpu(
    executors: dict[str, Executor], clients: dict[str, SandboxClient], concurrency: int, blocks: int, per_block: int
) -> dict[str, Any]:
    """CPU-seconds per fresh-sandbox execution of each executor: paired blocks, interleaved.

    Each block runs ``per_block`` trivial executions at ``concurrency`` on one executor, then
    waits until its warm pool is refilled and the used sandboxes are gone, so a block pays for
    exactly its own sandboxes. The executors alternate block by block (the order flips every
    round), so load from the rest of the machine falls on both alike. CPU is counted for the
    executor and everything it starts (:func:`tree_cpu_seconds`), not the whole machine.
    """
    spent: dict[str, list[float]] = {name: [] for name in executors}
    own: dict[str, list[float]] = {name: [] for name in executors}
    failures: dict[str, list[str]] = {name: [] for name in executors}
    for block in range(blocks):
        names = list(executors) if block % 2 == 0 else list(reversed(executors))
        for name in names:
            executor = executors[name]
            executor.settle()
            idle = executor.descendants()
            before, own_before = tree_cpu_seconds(executor.process.pid), own_cpu_seconds(executor.process.pid)
            latencies, failed = run_executions(clients[name], concurrency, count=per_block)
            executor.settle()
            executor.wait_descendants(idle)
            done = max(1, len(latencies))
            spent[name].append((tree_cpu_seconds(executor.process.pid) - before) / done)
            own[name].append((own_cpu_seconds(executor.process.pid) - own_before) / done)
            failures[name] += failed
    return {
        name: {
            "cpu_seconds_per_execution": round(statistics.fmean(values), 4),
            "stdev_between_blocks": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
            "executor_own_cpu_seconds_per_execution": round(statistics.fmean(own[name]), 4),
            "blocks": len(values),
            "executions": blocks * per_block,
            "failures": len(failures[name]),
        }
        for name, values in spent.items()
    }


def measure_memory(executor: Executor) -> dict[str, Any]:
    executor.settle()
    time.sleep(1.0)  # let the interpreters finish starting
    cgroups = Cgroups()
    parent = EngineConfig(state_dir=executor.state_dir).resolved_cgroup_parent()
    per_language: dict[str, dict[str, list[float]]] = {}
    for bundle in sorted((executor.state_dir / "bundles").iterdir()):
        spec = json.loads((bundle / "config.json").read_text())
        language = "javascript" if "node" in spec["process"]["args"][0] else "python"
        path = f"{parent}/{bundle.name}"
        usage = cgroups.memory_current(path)
        pss = cgroup_pss_bytes(cgroups, path)
        entry = per_language.setdefault(language, {"cgroup_mib": [], "pss_mib": []})
        if usage is not None:
            entry["cgroup_mib"].append(usage / 2**20)
        entry["pss_mib"].append(pss / 2**20)
    return {
        language: {key: round(statistics.fmean(values), 1) for key, values in entry.items() if values}
        | {"sandboxes": len(entry["pss_mib"])}
        for language, entry in per_language.items()
    }


def checkout_commit(checkout: Path) -> str:
    """The baseline as a commit (a checkout's path says nothing on another machine)."""
    done = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)
    return f"commit {done.stdout.strip()}" if done.returncode == 0 else checkout.name


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    latency = results["latency"]
    names = list(latency)
    labels = [
        n.replace("_", " ").replace("full stack", "full stack\n").replace("unsandboxed", "unsandboxed\n").replace("runsc do", "runsc do\n")
        for n in names
    ]
    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    positions = range(len(names))
    left.bar([p - 0.2 for p in positions], [latency[n]["p50_ms"] for n in names], width=0.4, label="p50")
    left.bar([p + 0.2 for p in positions], [latency[n]["p95_ms"] for n in names], width=0.4, label="p95")
    left.set_xticks(list(positions), labels, fontsize=8)
    left.set_ylabel("ms per trivial execution (idle executor)")
    left.set_title("Latency of one trivial execution")
    left.legend()
    for p, n in zip(positions, names):
        left.annotate(f"{latency[n]['p50_ms']:.0f}", (p - 0.2, latency[n]["p50_ms"]), ha="center", va="bottom", fontsize=8)
    runs = results["throughput"]
    concurrency = [r["concurrency"] for r in runs]
    right.plot(concurrency, [r["executions_per_second"] for r in runs], marker="o", color="tab:green", label="executions/s")
    right.set_ylim(bottom=0)
    right.set_xscale("log", base=2)
    right.set_xticks(concurrency, [str(c) for c in concurrency])
    right.set_xlabel("concurrent clients")
    right.set_ylabel("executions per second (Python, full stack)")
    right.set_title("Sustained throughput, fresh sandbox per execution")
    twin = right.twinx()
    twin.plot(concurrency, [r["latency"]["p95_ms"] for r in runs], marker="s", linestyle="--", color="tab:red", label="p95 latency (ms)")
    twin.set_ylabel("p95 latency (ms)")
    twin.set_ylim(bottom=0)
    lines = right.get_lines() + twin.get_lines()
    right.legend(lines, [line.get_label() for line in lines], loc="upper left")
    machine = results["machine"]
    figure.suptitle(f"sandbox-selfmanaged on {machine['cpus']} CPUs, {machine['runsc']} (platform {machine['platform']})", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60, help="latency samples per method")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per throughput level")
    parser.add_argument("--cpu-blocks", type=int, default=6, help="interleaved blocks per executor and concurrency (CPU per execution)")
    parser.add_argument("--cpu-per-block", type=int, default=16, help="executions per block")
    parser.add_argument(
        "--baseline", type=Path, default=None,
        help="another checkout (with its own .venv, e.g. a git worktree of an older commit) whose executor's "
        "CPU per execution is measured interleaved with this one's",
    )
    parser.add_argument(
        "--compare-runsc", type=Path, default=None,
        help="another runsc binary (e.g. a newer gVisor release): executors using it, one per platform it offers "
        "(systrap, ptrace), have their CPU per execution measured interleaved with this one's; implies --cpu-only",
    )
    parser.add_argument("--cpu-only", action="store_true", help="measure only CPU per execution (no latency, throughput, memory)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument(
        "--runtimes", default="",
        help="runtimes the executor serves ('' = bare interpreters: the per-sandbox cost of the isolation itself, "
        "comparable across releases; package runtimes are measured by benchmarks/runtimes.py)",
    )
    args = parser.parse_args()
    if args.compare_runsc is not None:
        args.cpu_only = True
        if not os.access(args.compare_runsc, os.X_OK):
            raise SystemExit(f"--compare-runsc: {args.compare_runsc} is not an executable")
    if os.geteuid() != 0:
        raise SystemExit("run as root: runsc needs it")
    baseline_executable = None
    if args.baseline is not None:
        baseline_executable = str(args.baseline.resolve() / ".venv" / "bin" / "sandbox-executor")
        if not os.access(baseline_executable, os.X_OK):
            raise SystemExit(f"--baseline: {baseline_executable} is missing (run uv sync --all-packages in that checkout)")
    args.output.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-selfmanaged-"))
    executors = {"current": Executor(workdir / "current", args.runtimes)}
    latency: dict[str, Any] = {}
    in_sandbox: dict[str, float] = {}
    memory: dict[str, Any] = {}
    throughput: list[dict[str, Any]] = []
    try:
        if baseline_executable is not None:
            executors["baseline"] = Executor(workdir / "baseline", args.runtimes, baseline_executable)
        compared: dict[str, str] = {}
        if args.compare_runsc is not None:
            for name in ("systrap", "ptrace"):
                if name in supported_platforms(str(args.compare_runsc)):
                    extra = ("--runsc", str(args.compare_runsc), "--platform", name)
                    executors[f"other_runsc_{name}"] = Executor(workdir / f"other-{name}", args.runtimes, extra=extra)
                    compared[f"other_runsc_{name}"] = executors[f"other_runsc_{name}"].health()["runtime"]["version"]
        health = executors["current"].health()
        clients = {
            name: SandboxClient(provider="self_managed", config={"endpoints": [executor.url], "token": executor.token})
            for name, executor in executors.items()
        }
        try:
            cpu = {
                f"concurrency_{c}": measure_cpu(executors, clients, c, args.cpu_blocks, args.cpu_per_block)
                for c in (1, 4, 16)
            }
            for name in [name for name in executors if name != "current"]:
                executors.pop(name).stop()
            if not args.cpu_only:
                executor, client = executors["current"], clients["current"]
                latency, in_sandbox = measure_latency(executor, client, args.rounds, workdir / "runsc-do")
                memory = measure_memory(executor)
                throughput = [measure_throughput(executor, client, c, args.duration) for c in (1, 4, 16)]
        finally:
            for client in clients.values():
                client.close()
    finally:
        for executor in executors.values():
            executor.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    results: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "kernel": platform.release(),
            "runsc": health["runtime"]["version"],
            "platform": health["runtime"]["platform"],
            "cgroups": health["runtime"]["cgroups"],
            "python_in_sandbox": health["languages"]["python"]["version"],
            "node_in_sandbox": health["languages"]["javascript"]["version"],
            "date": time.strftime("%Y-%m-%d"),
        },
        "config": {
            "rounds": args.rounds, "throughput_seconds": args.duration, "cpu_blocks": args.cpu_blocks,
            "cpu_per_block": args.cpu_per_block, "baseline": checkout_commit(args.baseline) if args.baseline else None,
            "warm_pool": POOL, "runtimes": args.runtimes, "code": {"python": PYTHON_CODE, "javascript": JS_CODE},
            "compared_runsc": compared or None,
        },
        "cpu_per_execution": cpu,
    }
    if not args.cpu_only:
        baseline = latency["unsandboxed_python_subprocess"]["p50_ms"]
        results |= {
            "latency": latency,
            "python_time_inside_executor": in_sandbox,
            "ratios": {
                "full_stack_python_p50_over_unsandboxed_python_p50": round(latency["full_stack_python"]["p50_ms"] / baseline, 2),
                "full_stack_javascript_p50_over_unsandboxed_node_p50": round(
                    latency["full_stack_javascript"]["p50_ms"] / latency["unsandboxed_node_subprocess"]["p50_ms"], 2
                ),
                "runsc_do_p50_over_full_stack_python_p50": round(
                    latency["runsc_do_python"]["p50_ms"] / latency["full_stack_python"]["p50_ms"], 2
                ),
            },
            "throughput": throughput,
            "memory_per_warm_sandbox": memory,
        }
    name = "selfmanaged.json"
    if args.cpu_only:
        name = "selfmanaged-runsc-compare.json" if compared else "selfmanaged-cpu.json"
    (args.output / name).write_text(json.dumps(results, indent=2) + "\n")
    if not args.cpu_only:
        try:
            chart(results, args.output / "selfmanaged.png")
        except ImportError:
            print("matplotlib is not installed: no chart (uv run --with matplotlib ...)", file=sys.stderr)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
