"""Where the CPU of one fresh gVisor sandbox goes, stage by stage, measured side by side in one run.

    uv run python benchmarks/lifecycle.py [--rounds 40] [--variants floor,interpreter,...] [--runsc PATH] [--platform NAME]

(as root, with runsc and a C compiler that links statically). It starts the self-managed
engine in this process with no warm pool and drives sandboxes through the engine's own
building blocks (``Engine.boot_sandbox``, ``Sandbox.run``, ``Sandbox.destroy``: the lifecycle the
executor uses, cgroups and ``runsc run`` included), one variant after another, round by
round, so machine noise falls on every variant alike. Each lifecycle is: boot, hand over a
trivial job, read the answer, destroy. Its CPU is that of this process and every descendant,
reaped or alive (see :class:`CpuCounter`). Just before the sandbox is killed, each of its
processes is read from /proc and put in one of these parts:

- ``runsc_run``: the ``runsc run`` process that owns the sandbox (its Go start and its work,
  and the short-lived helpers it reaped: the ``umount`` re-exec);
- ``sentry``: gVisor's kernel (``runsc-sandbox boot``), and the re-exec that started it;
- ``stubs``: the ptrace stub processes in which the sandbox's own programs run (their CPU is
  the programs' instructions; the traps they take are the sentry's);
- ``gofer``: the file server of the root filesystem and the read-only mounts;
- ``engine``: this process (the engine's own work: the bundle, the cgroup, spawning, the job's
  framing and reading, the clean-up);
- ``teardown``: the sandbox's processes after the kill (runsc's own clean-up and the exits).

A runner ends right after its answer and its sandbox winds down at once, so for the runner
variants only ``engine`` is split off and the rest is one figure (``teardown`` holds it); the
stage costs of the runner come from the differences between variants.

The variants, each a program the sandbox starts:

- ``floor``: a static C program that reads a line, writes ``42`` and waits: the sandbox machinery alone;
- ``interpreter``: ``python3 -I -S -c`` doing the same: what the interpreter's start adds;
- ``site``: the same without ``-S``: what ``site`` adds;
- ``runner``: the bare Python runner exactly as the executor starts it, with ``print(42)``;
- ``runner_no_site``: the runner started with ``-S`` as well;
- ``runner_in_rootfs``: the runner read from the root filesystem instead of its own bind mount;
- ``runner_gomaxprocs1``: the runner with ``GOMAXPROCS=1`` in runsc's environment.

Results go to ``benchmarks/results/lifecycle.json``: CPU-ms per lifecycle, per part, mean and
standard deviation between rounds, and each variant's difference from ``runner`` (mean of the
round-by-round differences, with its standard error).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from sandbox_core.runner import Job
from sandbox_selfmanaged import procs
from sandbox_selfmanaged import sandbox as sandbox_module
from sandbox_selfmanaged.engine import Engine, EngineConfig
from sandbox_selfmanaged.limits import Limits
from sandbox_selfmanaged.sandbox import LanguageRuntime, Sandbox

sys.path.insert(0, str(Path(__file__).resolve().parent))
from selfmanaged import own_cpu_seconds, process_table, tree_cpu_seconds  # noqa: E402  (a sibling script, not a package)

RESULTS = Path(__file__).resolve().parent / "results"
PARTS = ("runsc_run", "sentry", "stubs", "gofer", "engine", "teardown")
FLOOR_SOURCE = r"""
#include <unistd.h>
int main(void) {
    char byte;
    while (read(0, &byte, 1) == 1 && byte != '\n') {
    }
    write(1, "42\n", 3);
    read(0, &byte, 1);
    return 0;
}
"""
ANSWER_LINE = "import os, sys; sys.stdin.buffer.readline(); os.write(1, b'42\\n'); os.read(0, 1)"
FLOOR_INSIDE = "/opt/floor"
NO_MOUNT = ""
"""A runner host path that mounts nothing (see :func:`without_unmounted`)."""
VARIANTS = ("floor", "interpreter", "site", "runner", "runner_no_site", "runner_in_rootfs", "runner_gomaxprocs1")


@attrs.frozen
class Variant:
    """One way of starting a sandbox: its runtime, and the environment runsc is started with."""

    name: str
    runtime: LanguageRuntime
    runsc_env: dict[str, str] | None = None
    speaks_protocol: bool = True
    """The program answers a job with a result frame (else it just reads its stdin and ends)."""


def without_unmounted(build_spec: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """``build_spec`` that leaves out the mounts whose host path is :data:`NO_MOUNT`."""

    def build(**kwargs: Any) -> dict[str, Any]:
        kwargs["read_only_files"] = [(source, inside) for source, inside in kwargs["read_only_files"] if source != NO_MOUNT]
        return build_spec(**kwargs)

    return build


def compile_floor(directory: Path) -> Path:
    """The static program of the ``floor`` variant (a dynamic one would pay the loader's files)."""
    source = directory / "floor.c"
    source.write_text(FLOOR_SOURCE)
    binary = directory / "floor"
    subprocess.run(["cc", "-static", "-O2", "-o", str(binary), str(source)], check=True)
    return binary


def build_variants(engine: Engine, floor: Path, names: tuple[str, ...]) -> list[Variant]:
    runner = engine.runtimes["python"]
    python = runner.argv[0]
    flags = runner.argv[1:-1]
    plain = attrs.evolve(runner, mounts=(), runner_host_path=NO_MOUNT)
    runner_file = runner.argv[-1]
    in_rootfs = engine.layout.rootfs / runner_file.lstrip("/")  # type: ignore[union-attr]
    every = {
        "floor": Variant(
            "floor", attrs.evolve(plain, argv=(FLOOR_INSIDE,), mounts=((str(floor), FLOOR_INSIDE),)), speaks_protocol=False
        ),
        "interpreter": Variant("interpreter", attrs.evolve(plain, argv=(python, "-I", "-S", "-c", ANSWER_LINE)), speaks_protocol=False),
        "site": Variant("site", attrs.evolve(plain, argv=(python, "-I", "-c", ANSWER_LINE)), speaks_protocol=False),
        "runner": Variant("runner", runner),
        "runner_no_site": Variant("runner_no_site", attrs.evolve(runner, argv=(python, *flags, "-S", runner_file))),
        "runner_in_rootfs": Variant("runner_in_rootfs", attrs.evolve(runner, runner_host_path=NO_MOUNT)),
        "runner_gomaxprocs1": Variant("runner_gomaxprocs1", runner, runsc_env={**procs._DEFAULT_ENV, "GOMAXPROCS": "1"}),
    }
    floor_point = engine.layout.rootfs / FLOOR_INSIDE.lstrip("/")  # type: ignore[union-attr]
    floor_point.parent.mkdir(parents=True, exist_ok=True)
    floor_point.touch()
    if "runner_in_rootfs" in names:
        # The mount point of the runner is an empty file of our own root filesystem: give it the
        # runner's bytes, so the variant that mounts nothing over it reads the same program.
        os.chmod(in_rootfs, 0o644)
        in_rootfs.write_bytes(Path(runner.runner_host_path).read_bytes())
        os.chmod(in_rootfs, 0o444)
    return [every[name] for name in names]


def classify(pid: int, keeper: int, parent_of: dict[int, int]) -> str:
    """Which part a live process of a sandbox belongs to (see the module docstring).

    The ptrace stubs are forks of the sentry with an empty command line, below it in the tree.
    """
    if pid == keeper:
        return "runsc_run"
    argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0].decode(errors="replace")
    if argv0 == "runsc-gofer":
        return "gofer"
    if argv0 == "runsc-sandbox":
        return "sentry"
    ancestor = parent_of.get(pid)
    while ancestor is not None and ancestor != keeper:
        if Path(f"/proc/{ancestor}/cmdline").read_bytes().startswith(b"runsc-sandbox\0"):
            return "stubs"
        ancestor = parent_of.get(ancestor)
    return "runsc_run"


def sandbox_processes(keeper: int) -> tuple[dict[int, int], dict[int, float]]:
    """The keeper and all its live descendants: each one's parent, and its CPU-seconds (its own
    and what it reaped), from one reading of /proc."""
    children, ticks = process_table()
    per_second = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    seconds: dict[int, float] = {}
    todo = [(keeper, 0)]
    while todo:
        current, parent = todo.pop()
        parents[current] = parent
        seconds[current] = ticks.get(current, 0) / per_second
        todo += [(child, current) for child in children.get(current, [])]
    return parents, seconds


def answer(sandbox: Sandbox, variant: Variant, limits: Limits) -> tuple[int, ...]:
    """Hand the sandbox its job and read the answer, leaving its processes alive to be counted.

    A runner gets ``print(42)`` through the runner protocol; the other programs get a line, write
    ``42`` and wait on their stdin again (their stdio is returned, for the caller to close).
    """
    stdio: tuple[int, ...] = ()
    if variant.speaks_protocol:
        outcome = sandbox.run(Job(code="print(42)"), limits)
        text = outcome.stdout.output.text()
    else:
        stdio = sandbox.take_stdio()
        os.write(stdio[0], b"go\n")
        text = os.read(stdio[1], 64).decode()
    if text != "42\n":
        raise SystemExit(f"{variant.name}: unexpected answer {text!r}")
    return stdio


class CpuCounter:
    """CPU-seconds of this process and all its descendants, reaped or alive.

    On cgroup v1 this process moves into a ``cpuacct`` cgroup of its own, which every descendant
    inherits (sandboxes are moved only in the memory, pids and cpu hierarchies): its
    ``cpuacct.usage`` counts in nanoseconds. Elsewhere the /proc counters are used (clock ticks,
    10 ms each: more rounds are needed for the same precision).
    """

    def __init__(self) -> None:
        self.directory: Path | None = None
        root = Path("/sys/fs/cgroup/cpuacct")
        if (root / "cpuacct.usage").is_file():
            directory = root / f"sandbox-lifecycle-{os.getpid()}"
            directory.mkdir()
            (directory / "cgroup.procs").write_text(str(os.getpid()))
            self.directory = directory

    @property
    def source(self) -> str:
        return "cpuacct" if self.directory is not None else "proc"

    def seconds(self) -> float:
        if self.directory is not None:
            return int((self.directory / "cpuacct.usage").read_text()) / 1e9
        return tree_cpu_seconds(os.getpid())

    def close(self) -> None:
        if self.directory is not None:
            (self.directory.parent / "cgroup.procs").write_text(str(os.getpid()))
            self.directory.rmdir()
            self.directory = None


def one_lifecycle(engine: Engine, variant: Variant, limits: Limits, counter: CpuCounter) -> dict[str, float]:
    """Boot, job, destroy: CPU-seconds per part."""
    original_env = procs._DEFAULT_ENV
    if variant.runsc_env is not None:
        procs._DEFAULT_ENV = variant.runsc_env
    before = counter.seconds()
    engine_before = own_cpu_seconds(os.getpid())
    try:
        sandbox = engine.boot_sandbox(variant.runtime, limits)
    finally:
        procs._DEFAULT_ENV = original_env
    try:
        stdio = answer(sandbox, variant, limits)
        assert sandbox.keeper is not None
        parts = dict.fromkeys(PARTS, 0.0)
        # A runner ends with its answer, and the sandbox winds down at once (the sentry is reaped
        # into runsc run's counters): only the programs that stay alive can be split into parts.
        if not variant.speaks_protocol:
            tree, seconds = sandbox_processes(sandbox.keeper)
            for pid, spent in seconds.items():
                try:
                    parts[classify(pid, sandbox.keeper, tree)] += spent
                except OSError:  # it ended in between: its time went to its parent's counters
                    continue
        for fd in stdio:
            os.close(fd)
    finally:
        if not sandbox.destroy():
            raise SystemExit(f"{variant.name}: the sandbox was not cleaned up: {sandbox.cleanup_error}")
    total = counter.seconds() - before
    parts["engine"] = own_cpu_seconds(os.getpid()) - engine_before
    parts["teardown"] = total - sum(parts.values())
    parts["total"] = total
    return parts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--output", type=Path, default=RESULTS / "lifecycle.json")
    parser.add_argument("--runsc", help="the runsc binary (default: as the executor finds it)")
    parser.add_argument("--platform", default="auto", help="gVisor platform (default: auto, as the executor)")
    args = parser.parse_args()
    names = tuple(name for name in args.variants.split(",") if name)
    unknown = set(names) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants: {', '.join(sorted(unknown))} (known: {', '.join(VARIANTS)})")
    limits = Limits()
    sandbox_module.build_spec = without_unmounted(sandbox_module.build_spec)
    counter = CpuCounter()
    counted_by = counter.source
    with tempfile.TemporaryDirectory(prefix="sandbox-lifecycle-") as scratch:
        floor = compile_floor(Path(scratch))
        engine = Engine(
            EngineConfig(
                state_dir=Path(scratch) / "state",
                runsc=args.runsc,
                platform=args.platform,
                languages=("python",),
                pool_sizes={"python": 0},
                restore=False,
            )
        )
        engine.start()
        try:
            variants = build_variants(engine, floor, names)
            samples: dict[str, list[dict[str, float]]] = {v.name: [] for v in variants}
            for variant in variants:  # one unmeasured lifecycle each: caches and the first Go start warm up
                one_lifecycle(engine, variant, limits, counter)
            for round_number in range(args.rounds):
                order: list[Variant] = variants if round_number % 2 == 0 else list(reversed(variants))
                for variant in order:
                    time.sleep(0.05)
                    samples[variant.name].append(one_lifecycle(engine, variant, limits, counter))
                print(f"round {round_number + 1}/{args.rounds}", file=sys.stderr, flush=True)
        finally:
            engine.close()
            counter.close()
    report = summarize(samples)
    report["machine"] = {
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "runsc": engine.runsc_version,
        "platform": engine.runsc.platform if engine.runsc is not None else None,
        "python_in_sandbox": engine.runtimes["python"].version,
        "date": time.strftime("%Y-%m-%d"),
    }
    report["config"] = {"rounds": args.rounds, "limits": limits.to_dict(), "total_cpu_from": counted_by}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["cpu_ms_per_lifecycle"], indent=2))
    return 0


def paired_difference(variant: list[float], runner: list[float]) -> dict[str, float]:
    """Mean of the round-by-round differences (ms) and its standard error: rounds pair the variants."""
    differences = [(a - b) * 1000 for a, b in zip(variant, runner)]
    error = statistics.stdev(differences) / len(differences) ** 0.5 if len(differences) > 1 else 0.0
    return {"mean": round(statistics.fmean(differences), 1), "standard_error": round(error, 1)}


def summarize(samples: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    def mean_ms(values: list[float]) -> float:
        return round(statistics.fmean(values) * 1000, 1)

    table: dict[str, Any] = {}
    for name, rows in samples.items():
        totals = [row["total"] for row in rows]
        table[name] = {
            "total": mean_ms(totals),
            "median": round(statistics.median(totals) * 1000, 1),
            "stdev": round(statistics.stdev(totals) * 1000, 1) if len(totals) > 1 else 0.0,
            **{part: mean_ms([row[part] for row in rows]) for part in PARTS},
            "n": len(rows),
            "totals": [round(value * 1000, 1) for value in totals],
        }
    report: dict[str, Any] = {"cpu_ms_per_lifecycle": table}
    if "runner" in samples:
        report["difference_from_runner_ms"] = {
            name: paired_difference([row["total"] for row in rows], [row["total"] for row in samples["runner"]])
            for name, rows in samples.items()
            if name != "runner"
        }
    return report


if __name__ == "__main__":
    raise SystemExit(main())
