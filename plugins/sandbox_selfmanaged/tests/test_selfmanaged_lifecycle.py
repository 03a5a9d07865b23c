"""The sandbox lifecycle leaves nothing behind: runsc state, cgroups and processes come and go with sandboxes.

Real gVisor, real cgroups. The executor of these tests runs a bounded mix of executions that end in
every way a sandbox can end (a result, a timeout kill, a memory kill, an output flood kill); once
the janitor is done, exactly the warm pool's sandboxes exist, each with its runsc state, its
cgroup and its processes, and nothing else does.
"""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from selfmanaged_support import Executor, assert_clean_shutdown, require_gvisor, start_executor

from sandbox_selfmanaged.cgroups import LIMITED_CONTROLLERS, Cgroups
from sandbox_selfmanaged.engine import EngineConfig

MIXED_EXECUTIONS = 300
POOL = 2
KINDS = {
    "success": ("def main():\n    return 'fine'\n", {}, 30.0),
    "timeout": ("import time\nprint('sleeping', flush=True)\ntime.sleep(60)\n", {}, 0.5),
    "memory_limit": ("blocks = []\nfor _ in range(16):\n    blocks.append(bytearray(16 << 20))\n", {"memory_mb": 96}, 30.0),
    "output_limit": ("import sys\nwhile True:\n    sys.stdout.write('y' * 999 + '\\n')\n", {"max_output_bytes": 16384}, 30.0),
}


@pytest.fixture(scope="module")
def lifecycle_executor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Executor]:
    running = start_executor(
        tmp_path_factory.mktemp("lifecycle"),
        "--python-pool-size", str(POOL),
        "--javascript-pool-size", "0",
        "--max-concurrency", "4",
        "--runtimes", "",  # bare interpreters: every sandbox is booted fresh (no checkpoint restores)
    )
    yield running
    assert_clean_shutdown(running)


def _runsc_ids(executor: Executor) -> set[str]:
    """Sandboxes runsc keeps state for, from its files' names: ``<id>_sandbox:<id>.state`` (release
    20221219); a folder ``<id>`` and a control socket ``runsc-<id>.sock`` (release 20240729)."""
    root = executor.state_dir / "runsc"
    if not root.is_dir():
        return set()
    return {name.removeprefix("runsc-").removesuffix(".sock").split("_")[0] for name in os.listdir(root)}


def _cgroup_names(cgroups: Cgroups, parent: str) -> dict[str, set[str]]:
    """Per controller directory: the sandbox cgroups under the executor's parent."""
    return {str(base): {p.name for p in base.iterdir() if p.is_dir()} for base in cgroups.directories(parent) if base.is_dir()}


def _sandbox_processes(executor: Executor) -> dict[int, str]:
    """Every process naming the executor's state directory but the executor and its watchdog, with its memory cgroup."""
    state_dir = executor.state_dir
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == executor.process.pid:
            continue
        try:
            argv = (entry / "cmdline").read_bytes()
            if str(state_dir).encode() not in argv or b"watchdog" in argv:
                continue
            lines = (entry / "cgroup").read_text().splitlines()
        except OSError:
            continue
        found[int(entry.name)] = _memory_cgroup(lines)
    return found


def _memory_cgroup(lines: list[str]) -> str:
    """The memory cgroup in ``/proc/PID/cgroup`` lines (v1's memory controller, else v2's unified one)."""
    paths = {controller: path for _id, controllers, path in (line.split(":", 2) for line in lines) for controller in controllers.split(",")}
    return paths.get("memory", paths.get("", ""))


def _unsettled(executor: Executor) -> list[str]:
    """Why the warm pool is not simply full and idle (empty when it is)."""
    pool = executor.health().json()["languages"]["python"]["pool"]
    return [f"pool not settled: {pool}"] if pool["ready"] != POOL or pool["booting"] or pool["busy"] else []


def _settle(executor: Executor) -> None:
    deadline = time.monotonic() + 60
    while _unsettled(executor) and time.monotonic() < deadline:
        time.sleep(0.1)


def _leftovers(executor: Executor) -> list[str]:
    """What exists beyond the warm pool's sandboxes (empty when the lifecycle cleaned up)."""
    problems = _unsettled(executor)
    sandboxes = set(os.listdir(executor.state_dir / "bundles"))
    if len(sandboxes) != POOL:
        problems.append(f"bundles: {sorted(sandboxes)}")
    if _runsc_ids(executor) != sandboxes:
        problems.append(f"runsc state {sorted(_runsc_ids(executor))} is not the pool's {sorted(sandboxes)}")
    cgroups = Cgroups()
    parent = EngineConfig(state_dir=executor.state_dir).resolved_cgroup_parent()
    for base, names in _cgroup_names(cgroups, parent).items():
        if names - sandboxes:
            problems.append(f"cgroups left in {base}: {sorted(names - sandboxes)}")
    for pid, cgroup in _sandbox_processes(executor).items():
        if cgroup.rsplit("/", 1)[-1] not in sandboxes:
            problems.append(f"process {pid} runs outside every pool sandbox's cgroup ({cgroup})")
    return problems


def test_mixed_endings_leave_no_state_cgroup_or_process(lifecycle_executor: Executor) -> None:
    kinds = list(KINDS)

    def one(index: int) -> str:
        code, limits, timeout = KINDS[kinds[index % len(kinds)]]
        return str(lifecycle_executor.execute(code, timeout=timeout, limits=limits)["status"])

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        statuses = list(pool.map(one, range(MIXED_EXECUTIONS)))
    expected = [kinds[i % len(kinds)] for i in range(MIXED_EXECUTIONS)]
    assert statuses == expected
    deadline = time.monotonic() + 60
    while (problems := _leftovers(lifecycle_executor)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert problems == []
    lifecycle_executor.assert_healthy()


def test_warm_sandbox_processes_all_live_in_its_cgroup(lifecycle_executor: Executor) -> None:
    """runsc itself, the gofer and the sentry of a warm sandbox: all inside that sandbox's limits."""
    _settle(lifecycle_executor)
    sandboxes = set(os.listdir(lifecycle_executor.state_dir / "bundles"))
    for pid, cgroup in _sandbox_processes(lifecycle_executor).items():
        assert cgroup.rsplit("/", 1)[-1] in sandboxes, (pid, cgroup)
    cgroups = Cgroups()
    parent = EngineConfig(state_dir=lifecycle_executor.state_dir).resolved_cgroup_parent()
    for sandbox in sandboxes:
        for procs in cgroups.procs_files(f"{parent}/{sandbox}"):
            names = {Path(Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()).name for pid in procs.read_text().split()}
            assert {"runsc", "runsc-gofer", "runsc-sandbox"} <= names, (procs, names)


def test_cgroup_is_created_with_its_limits_entered_before_exec_and_removed() -> None:
    require_gvisor()
    cgroups = Cgroups()
    if not cgroups.available:
        pytest.skip("no cgroup filesystem")
    path = f"/sandbox-lifecycle-test-{os.getpid()}/one"
    try:
        cgroups.create(path, memory_bytes=64 << 20, cpu_quota_us=50_000, cpu_period_us=100_000, pids=40)
        files = cgroups.procs_files(path)
        assert len(files) == (1 if cgroups.v2 else len(LIMITED_CONTROLLERS))
        limit_file = files[0].with_name("memory.max" if cgroups.v2 else "memory.limit_in_bytes")
        assert int(limit_file.read_text()) == 64 << 20
        done = subprocess.run(
            cgroups.join_argv(path, ["/bin/cat", "/proc/self/cgroup"]), capture_output=True, text=True, timeout=30, check=True
        )
        seen = {c: p for _id, cs, p in (line.split(":", 2) for line in done.stdout.splitlines()) for c in cs.split(",")}
        for controller in ("",) if cgroups.v2 else LIMITED_CONTROLLERS:
            assert seen[controller] == path, seen
        assert cgroups.remove(path)
        assert not any(f.parent.exists() for f in files)
    finally:
        cgroups.remove_tree(path.rsplit("/", 1)[0])
