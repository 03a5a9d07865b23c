"""Hostile code against real gVisor sandboxes: every attack is bounded (counts, sizes, time).

If isolation were broken, these tests fail instead of harming the machine: fork loops stop at a
count, allocations at twice the limit, writes at a byte budget, network attempts target only a
server this test runs on 127.0.0.1.
"""

from __future__ import annotations

import concurrent.futures
import json
import socket
import threading
from pathlib import Path

from selfmanaged_support import Executor, child_pids

import sandbox_selfmanaged
from sandbox_selfmanaged.oci import THREAD_VARIABLES

MIB = 1 << 20


def _lines(result: dict) -> dict:
    """The JSON object the probe code returned from main()."""
    assert result["status"] == "success", result
    return result["value"]


# -- what the sandbox can see ---------------------------------------------------------------------


def test_host_files_are_invisible(executor: Executor) -> None:
    package_dir = str(Path(sandbox_selfmanaged.__file__).parent)
    code = f"""
import os
def main():
    found = {{}}
    for path in ["/etc/shadow", "/etc/sudoers", "/root", "/home", "/var", "/opt", "/srv", "/work/main",
                 {package_dir!r}, {str(executor.state_dir)!r}, "/usr/bin/runsc", "/usr/bin/sh", "/bin/bash",
                 "/usr/lib/python3/dist-packages"]:
        found[path] = os.path.exists(path)
    return {{"found": found, "root": sorted(os.listdir("/")), "etc": sorted(os.listdir("/etc"))}}
"""
    seen = _lines(executor.execute(code))
    assert not any(seen["found"].values()), seen["found"]
    assert set(seen["root"]) <= {"bin", "dev", "etc", "lib", "lib64", "proc", "sandbox", "sys", "tmp", "usr", "work"}, seen["root"]
    assert set(seen["etc"]) == {"group", "hostname", "hosts", "nsswitch.conf", "passwd"}, seen["etc"]


def test_environment_is_minimal_and_holds_no_executor_secret(executor: Executor) -> None:
    code = """
import os
def main():
    return {
        "env": dict(os.environ),
        "proc1": open("/proc/1/environ", "rb").read().decode(),
        "self": open("/proc/self/environ", "rb").read().decode(),
    }
"""
    seen = _lines(executor.execute(code))
    # Sandboxes of a Python runtime (numpy & co.) also get native thread-pool sizes, nothing else.
    assert set(seen["env"]) - set(THREAD_VARIABLES) == {"PATH", "HOME", "LANG", "SANDBOX_OUTPUT_DIR"}, seen["env"]
    assert executor.token and executor.token not in json.dumps(seen)
    assert "SANDBOX_EXECUTOR" not in json.dumps(seen)


def test_runsc_processes_do_not_inherit_the_token(executor: Executor) -> None:
    """Not from inside: on the host, no child of the executor carries the token in its environment."""
    assert executor.token
    children = child_pids(executor.process.pid)
    assert children, "the warm pool should have sandbox processes adopted by the executor"
    for pid in children:
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        assert executor.token.encode() not in environ


def test_runs_as_unprivileged_user_without_capabilities(executor: Executor) -> None:
    code = """
import os
def main():
    status = dict(line.split(":\\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\\t" in line)
    return {"uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "groups": os.getgroups(),
            "caps": [status["CapEff"].strip(), status["CapPrm"].strip(), status["CapBnd"].strip()],
            "no_new_privs": status.get("NoNewPrivs", "").strip()}
"""
    seen = _lines(executor.execute(code))
    assert seen["uid"] == seen["euid"] == 65534
    assert seen["gid"] == 65534 and seen["groups"] in ([], [65534])
    assert seen["caps"] == ["0000000000000000"] * 3, seen["caps"]


def test_root_filesystem_is_read_only(executor: Executor) -> None:
    code = """
import errno
def main():
    results = {}
    for path in ["/usr/evil", "/etc/passwd", "/evil", "/sandbox/python_runner.py"]:
        try:
            with open(path, "a") as handle:
                handle.write("x")
            results[path] = "written"
        except OSError as exc:
            results[path] = errno.errorcode.get(exc.errno, str(exc.errno))
    return results
"""
    seen = _lines(executor.execute(code))
    assert all(outcome in ("EACCES", "EROFS", "EPERM") for outcome in seen.values()), seen


def test_javascript_sees_the_same_walls(executor: Executor) -> None:
    code = """
const fs = require("fs");
function main() {
  const tryRead = (p) => { try { fs.readFileSync(p); return "read"; } catch (e) { return e.code; } };
  const tryWrite = (p) => { try { fs.writeFileSync(p, "x"); return "written"; } catch (e) { return e.code; } };
  return {uid: process.getuid(), env: Object.keys(process.env).sort(), shadow: tryRead("/etc/shadow"),
          usr: tryWrite("/usr/evil"), tmp: tryWrite("/tmp/ok")};
}
"""
    seen = _lines(executor.execute(code, "javascript"))
    assert seen["uid"] == 65534
    assert seen["env"] == ["HOME", "LANG", "PATH", "SANDBOX_OUTPUT_DIR"]
    assert seen["shadow"] == "ENOENT"
    assert seen["usr"] in ("EACCES", "EROFS", "EPERM")
    assert seen["tmp"] == "written"


# -- network --------------------------------------------------------------------------------------


def test_no_network_reaches_the_host(executor: Executor) -> None:
    connections: list[object] = []
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        server.settimeout(0.2)
        port = server.getsockname()[1]
        stop = threading.Event()

        def accept() -> None:
            while not stop.is_set():
                try:
                    connection, _ = server.accept()
                except (TimeoutError, OSError):
                    continue
                connections.append(connection)
                connection.close()

        watcher = threading.Thread(target=accept, daemon=True)
        watcher.start()
        code = f"""
import socket
def main():
    outcome = {{}}
    try:
        socket.create_connection(("127.0.0.1", {port}), timeout=2).close()
        outcome["host_loopback"] = "connected"
    except OSError as exc:
        outcome["host_loopback"] = type(exc).__name__
    try:
        socket.getaddrinfo("example.com", 80)
        outcome["dns"] = "resolved"
    except OSError as exc:
        outcome["dns"] = type(exc).__name__
    outcome["interfaces"] = [name for _index, name in socket.if_nameindex()]
    return outcome
"""
        try:
            seen = _lines(executor.execute(code, timeout=20))
        finally:
            stop.set()
            watcher.join()
    assert connections == [], "the sandbox reached a server on the host's loopback"
    assert seen["host_loopback"] != "connected"
    assert seen["dns"] != "resolved"
    assert seen["interfaces"] == ["lo"], seen["interfaces"]


# -- resource limits ------------------------------------------------------------------------------


def test_fork_bomb_hits_the_process_limit(executor: Executor) -> None:
    code = """
import errno, os, time
def main():
    children, failure = 0, None
    for _ in range(200):
        try:
            pid = os.fork()
        except OSError as exc:
            failure = errno.errorcode.get(exc.errno, str(exc.errno))
            break
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        children += 1
    return {"children": children, "failure": failure}
"""
    # Memory enough for 16 processes of the default runtime (pandas preloaded: ≈ 33 MiB per forked
    # child), so that the process limit is what stops them.
    result = executor.execute(code, timeout=30, limits={"processes": 16, "memory_mb": 1024})
    seen = _lines(result)
    assert seen["failure"] == "EAGAIN", seen
    assert seen["children"] < 16
    executor.assert_healthy()


def test_memory_bomb_is_reported_as_memory_limit(executor: Executor) -> None:
    code = """
blocks = []
for step in range(16):  # 16 MiB steps, up to twice the 128 MiB limit
    blocks.append(bytearray(16 << 20))
    print("allocated", (step + 1) * 16, "MiB", flush=True)
print("survived")
"""
    result = executor.execute(code, timeout=30, limits={"memory_mb": 128})
    assert result["status"] == "memory_limit", result
    assert "survived" not in result["stdout"]
    assert "allocated 16 MiB" in result["stdout"]
    assert result["error"]["type"] == "MemoryLimitExceeded"
    executor.assert_healthy()


def test_file_size_limit(executor: Executor) -> None:
    code = """
import errno
def main():
    written = 0
    try:
        with open("/tmp/big", "wb") as handle:
            for _ in range(64):  # 1 MiB at a time, at most 64 MiB
                handle.write(b"x" * (1 << 20))
                handle.flush()
                written += 1
    except OSError as exc:
        return {"written_mib": written, "error": errno.errorcode.get(exc.errno)}
    return {"written_mib": written, "error": None}
"""
    seen = _lines(executor.execute(code, timeout=30, limits={"max_file_bytes": 8 * MIB}))
    assert seen["error"] == "EFBIG", seen
    assert seen["written_mib"] <= 8


def test_disk_fill_counts_against_memory(executor: Executor) -> None:
    code = """
import errno
count = 0
try:
    for count in range(1, 33):  # 8 MiB files, at most 256 MiB: twice the memory limit
        with open(f"/tmp/fill-{count}", "wb") as handle:
            handle.write(b"x" * (8 << 20))
    print("wrote everything")
except OSError as exc:
    print("stopped by", errno.errorcode.get(exc.errno), "after", count, flush=True)
"""
    result = executor.execute(code, timeout=30, limits={"memory_mb": 128, "max_file_bytes": 16 * MIB})
    assert "wrote everything" not in result["stdout"], result
    assert result["status"] in ("memory_limit", "success"), result
    executor.assert_healthy()


def test_output_flood_is_truncated_flagged_and_bounded(executor: Executor) -> None:
    code = "import sys\nwhile True:\n    sys.stdout.write('y' * 999 + '\\n')\n"
    limit = 64 * 1024
    before = _peak_rss(executor)
    result = executor.execute(code, timeout=60, limits={"max_output_bytes": limit})
    assert result["status"] == "output_limit", {k: v for k, v in result.items() if k != "stdout"}
    assert result["stdout_truncated"] is True
    assert len(result["stdout"].encode()) <= limit
    assert result["execution_time"] < 30, "the flood should be stopped long before the timeout"
    assert _peak_rss(executor) - before < 64 * MIB, "the executor's memory grew with the flood"
    executor.assert_healthy()


def _peak_rss(executor: Executor) -> int:
    for line in Path(f"/proc/{executor.process.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


# -- time and state -------------------------------------------------------------------------------


def test_timeout_keeps_partial_output(executor: Executor) -> None:
    code = "import time\nprint('started')\nprint('halfway')\ntime.sleep(60)\nprint('never')\n"
    result = executor.execute(code, timeout=1.5)
    assert result["status"] == "timeout", result
    assert result["stdout"] == "started\nhalfway\n"
    assert 1.4 < result["execution_time"] < 10
    assert result["error"]["type"] == "TimeoutError"


def test_javascript_timeout(executor: Executor) -> None:
    result = executor.execute("console.log('spinning');\nwhile (true) {}\n", "javascript", timeout=1.5)
    assert result["status"] == "timeout", result
    assert result["stdout"] == "spinning\n"


def test_nothing_survives_into_the_next_execution(executor: Executor) -> None:
    leave = """
import os, subprocess
open("/tmp/left-behind", "w").write("secret of the previous user")
open("/work/left-behind", "w").write("secret")
if os.fork() == 0:
    import time
    time.sleep(30)
    os._exit(0)
def main():
    return sorted(os.listdir("/proc"))
"""
    first = _lines(executor.execute(leave))
    look = """
import os
def main():
    return {"tmp": sorted(os.listdir("/tmp")), "work": sorted(os.listdir("/work")),
            "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()), "me": os.getpid()}
"""
    second = _lines(executor.execute(look))
    assert "left-behind" not in second["tmp"] and second["work"] == [], second
    # Only the runner: process 1 reads the job, the code runs in its child (see python_runner).
    runner = sorted({1, second["me"]})
    assert second["pids"] == runner, f"processes from the previous execution are visible: {second['pids']} (first saw {first})"


def test_fifty_executions_at_eight_way_concurrency(executor: Executor) -> None:
    def one(index: int) -> dict:
        return executor.execute("def main(i):\n    return {'i': i, 'square': i * i}\n", arguments={"i": index}, timeout=60)

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(one, range(50)))
    assert [r["status"] for r in results] == ["success"] * 50, [r for r in results if r["status"] != "success"][:2]
    assert [r["value"] for r in results] == [{"i": i, "square": i * i} for i in range(50)]
    sandbox_ids = {r["metadata"]["sandbox_id"] for r in results}
    assert len(sandbox_ids) == 50, "a sandbox was used for more than one execution"
