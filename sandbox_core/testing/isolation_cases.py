"""The cases of the isolation profile: for each, the attack, its bounds and the judgement.

Each :class:`IsolationCase` has a ``check`` that runs its probe code through a :class:`Probe`
(a way to execute code, the host's bait, the bounds) and returns the evidence of a pass, or
raises :class:`CaseFailed` with the evidence of a failure. Probe code takes its parameters as
``main()`` arguments (data, never pasted into source) and reports what it saw as its value.
:mod:`sandbox_core.testing.isolation` runs them, from pytest or from ``sandbox check-isolation``.

Every attack is bounded (:class:`Bounds`: process counts, bytes, seconds), so a sandbox that fails
to stop it fails the case, not the machine. Network probes never send traffic off the machine:
they connect only to listeners of the host's loopback, and "is there a way out" is asked with a
UDP ``connect``, which looks up a route and sends nothing. A name is resolved only where no route
exists.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from sandbox_core.model import ExecutionResult, ExecutionStatus
from sandbox_core.testing.hostbait import SLEEPER, HostBait

MIB = 1 << 20
OUTSIDE_ADDRESSES = ("203.0.113.1", "2001:db8::1")
"""Documentation addresses (RFC 5737, RFC 3849): a route to them is a route out of the machine."""
METADATA_ADDRESSES = ("169.254.169.254", "fd00:ec2::254")
"""The cloud metadata service (IPv4, and AWS's IPv6 form)."""
CREDENTIAL_NAME = re.compile(r"TOKEN|SECRET|PASSW|API_?KEY|ACCESS_?KEY|CREDENTIAL", re.IGNORECASE)


@attrs.frozen
class Bounds:
    """How far each attack goes. Set them above the provider's limits and within what the machine can afford."""

    forks: int = 512
    """Processes the fork bomb starts at most."""
    memory_mib: int = 1024
    """MiB the memory bomb holds at most."""
    disk_mib: int = 1024
    """MiB the disk fill writes at most (in 4 MiB files, so a per-file limit alone does not stop it)."""
    flood_mib: int = 64
    """MiB the output flood prints at most."""
    timeout: float = 3.0
    """The timeout the timeout case asks for."""
    linger: float = 30.0
    """Seconds a left-behind process waits before it exits on its own."""
    attack_timeout: float = 90.0
    """The timeout of every other attack execution."""

    def replace(self, changes: Mapping[str, str]) -> Bounds:
        """These bounds with some changed from text (``{"memory_mib": "4096"}``); ``ValueError`` names a bad one."""
        fields = attrs.fields_dict(Bounds)
        values: dict[str, Any] = {}
        for name, text in changes.items():
            if name not in fields:
                raise ValueError(f"unknown bound {name!r}; choose from: {', '.join(fields)}")
            kind = int if fields[name].type in (int, "int") else float
            try:
                value = kind(text)
            except ValueError:
                raise ValueError(f"bound {name} must be a{'n integer' if kind is int else ' number'}, got {text!r}") from None
            if not 0 < value < float("inf"):
                raise ValueError(f"bound {name} must be positive and finite, got {text!r}")
            values[name] = value
        return attrs.evolve(self, **values)


class CaseFailed(Exception):
    """Raised inside a case's check: the case fails with this message as its evidence."""


Execute = Callable[..., ExecutionResult]


@attrs.frozen
class Probe:
    """What a case's check works with: a way to execute code, the host's bait, and the bounds."""

    execute: Execute
    bait: HostBait
    bounds: Bounds

    def value(self, result: ExecutionResult, what: str) -> Any:
        """The value main() returned, or fail the case when the probe itself did not run."""
        if result.status is not ExecutionStatus.SUCCESS:
            raise CaseFailed(f"the {what} probe did not run: {describe(result)}")
        return result.value

    def still_works(self, after: str) -> None:
        """The provider still runs a trivial program after an attack."""
        result = self.execute("def main():\n    return 'fine'\n", timeout=60)
        if result.status is not ExecutionStatus.SUCCESS or result.value != "fine":
            raise CaseFailed(f"after {after}, the next execution failed: {describe(result)}")


@attrs.frozen
class IsolationCase:
    """One thing a sandbox must prevent: ``check`` runs the attack and returns the evidence of a pass."""

    name: str
    summary: str
    check: Callable[[Probe], str]
    language: str = "python"


def describe(result: ExecutionResult) -> str:
    text = result.status.value
    if result.error is not None:
        text += f" ({result.error.type}: {result.error.message[:300]})"
    return text


# -- what the sandbox can see ---------------------------------------------------------------------

HOST_FILE = """
import os
def main(path, folder):
    seen = {"file": os.path.exists(path), "folder": os.path.isdir(folder)}
    try:
        with open(path, encoding="utf-8") as handle:
            seen["content"] = handle.read(200)
    except OSError as exc:
        seen["error"] = type(exc).__name__
    return seen
"""


def _host_files_invisible(probe: Probe) -> str:
    bait = probe.bait
    seen = probe.value(probe.execute(HOST_FILE, arguments={"path": str(bait.file), "folder": str(bait.folder)}), "file")
    if seen.get("content") == bait.token:
        raise CaseFailed(f"the sandbox read the host's canary file {bait.file}")
    if seen.get("file") or seen.get("folder"):
        raise CaseFailed(f"the host's canary folder {bait.folder} is visible in the sandbox: {seen}")
    return f"the host's canary file {bait.file} is not there ({seen.get('error', 'not found')})"


HOST_ENVIRONMENT = """
import os
def main(token, name):
    own = sorted(key for key, value in os.environ.items() if key == name or token in value)
    others = []
    if os.path.isdir("/proc"):
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    with open(f"/proc/{pid}/environ", "rb") as handle:
                        if token.encode() in handle.read():
                            others.append(int(pid))
                except OSError:
                    pass
    return {"own": own, "processes": others, "names": sorted(os.environ)}
"""


def _host_environment_invisible(probe: Probe) -> str:
    bait = probe.bait
    arguments = {"token": bait.token, "name": bait.env_name}
    seen = probe.value(probe.execute(HOST_ENVIRONMENT, arguments=arguments), "environment")
    if seen["own"]:
        raise CaseFailed(f"the caller's canary variable {bait.env_name} reached the sandbox's environment")
    if seen["processes"]:
        raise CaseFailed(f"the sandbox read the canary variable in /proc/<pid>/environ of processes {seen['processes'][:10]}")
    credentials = [name for name in seen["names"] if CREDENTIAL_NAME.search(name)]
    if credentials:
        raise CaseFailed(f"the sandbox's environment holds credential-like variables: {credentials}")
    return f"canary variable not visible; the environment holds only {', '.join(seen['names'])}"


HOST_PROCESSES = """
import os
def main(tag):
    pids = [pid for pid in os.listdir("/proc") if pid.isdigit()] if os.path.isdir("/proc") else []
    hits = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                if tag.encode() in handle.read():
                    hits.append(int(pid))
        except OSError:
            pass
    return {"visible": len(pids), "hits": hits}
"""


def _host_processes_invisible(probe: Probe) -> str:
    tag = probe.bait.process_tag
    seen = probe.value(probe.execute(HOST_PROCESSES, arguments={"tag": tag}), "process")
    if seen["hits"]:
        raise CaseFailed(f"the sandbox sees the host's canary process (pid {seen['hits'][0]})")
    return f"the host's canary process is not visible (the sandbox sees {seen['visible']} process(es))"


JAVASCRIPT_HOST = """
const fs = require("fs");
function main(args) {
  const seen = {env: Object.keys(process.env).filter((k) => k === args.name || String(process.env[k]).includes(args.token)), processes: []};
  try { seen.content = fs.readFileSync(args.path, "utf8"); } catch (error) { seen.error = error.code; }
  let pids = [];
  try { pids = fs.readdirSync("/proc").filter((p) => /^[0-9]+$/.test(p)); } catch (error) { /* no /proc */ }
  for (const pid of pids) {
    try { if (fs.readFileSync(`/proc/${pid}/cmdline`).includes(args.tag)) seen.processes.push(Number(pid)); } catch (error) { /* gone */ }
  }
  return seen;
}
"""


def _javascript_host_invisible(probe: Probe) -> str:
    bait = probe.bait
    arguments = {"path": str(bait.file), "token": bait.token, "name": bait.env_name, "tag": bait.process_tag}
    result = probe.execute(JAVASCRIPT_HOST, language="javascript", arguments=arguments)
    seen = probe.value(result, "JavaScript")
    if seen.get("content") == bait.token:
        raise CaseFailed(f"JavaScript read the host's canary file {bait.file}")
    if seen["env"]:
        raise CaseFailed(f"the caller's canary variable reached JavaScript's environment: {seen['env']}")
    if seen["processes"]:
        raise CaseFailed(f"JavaScript sees the host's canary process (pid {seen['processes'][0]})")
    return f"JavaScript sees no host canary: file {seen.get('error', 'not found')}, variable and process not visible"


# -- network --------------------------------------------------------------------------------------

HOST_LOOPBACK = """
import errno, socket
def name(exc):
    return errno.errorcode.get(exc.errno, type(exc).__name__) if exc.errno else type(exc).__name__
def main(tcp_port, udp_port, token):
    seen = {}
    try:
        with socket.create_connection(("127.0.0.1", tcp_port), timeout=3) as conn:
            conn.sendall(token.encode())
        seen["tcp"] = "connected"
    except OSError as exc:
        seen["tcp"] = name(exc)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(token.encode(), ("127.0.0.1", udp_port))
        seen["udp"] = "sent"
    except OSError as exc:
        seen["udp"] = name(exc)
    return seen
"""


def _host_loopback_unreachable(probe: Probe) -> str:
    bait = probe.bait
    bait.contacts()
    arguments = {"tcp_port": bait.tcp_port, "udp_port": bait.udp_port, "token": bait.token}
    seen = probe.value(probe.execute(HOST_LOOPBACK, arguments=arguments, timeout=30), "loopback")
    contacts = bait.contacts()
    if contacts:
        raise CaseFailed(f"the sandbox reached the host's loopback: {'; '.join(contacts)}")
    return (
        f"nothing reached the host's listeners on 127.0.0.1 (inside the sandbox: TCP {seen['tcp']}, "
        f"UDP {seen['udp']}, which stayed on its own loopback)"
    )


ROUTES = """
import errno, socket
def name(exc):
    return errno.errorcode.get(exc.errno, type(exc).__name__) if exc.errno else type(exc).__name__
def route(address):
    # connect() on a UDP socket only looks up a route: no packet is sent.
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect((address, 53))
        return "route"
    except OSError as exc:
        return name(exc)
def main(addresses, resolve):
    seen = {"routes": {}, "nameservers": [], "interfaces": []}
    try:
        seen["interfaces"] = [n for _i, n in socket.if_nameindex()]
    except OSError:
        pass
    try:
        with open("/etc/resolv.conf") as handle:
            for line in handle:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver":
                    seen["nameservers"].append(parts[1].split("%")[0])
    except OSError:
        pass
    for address in list(addresses) + [ns for ns in seen["nameservers"] if not ns.startswith(("127.", "::1"))]:
        seen["routes"][address] = route(address)
    if resolve and "route" not in seen["routes"].values():
        try:
            socket.getaddrinfo(resolve, 443)
            seen["dns"] = "resolved"
        except OSError as exc:
            seen["dns"] = name(exc)
    return seen
"""


def _no_outside_network(probe: Probe) -> str:
    arguments = {"addresses": list(OUTSIDE_ADDRESSES), "resolve": "example.com"}
    seen = probe.value(probe.execute(ROUTES, arguments=arguments, timeout=30), "route")
    routes = {address: how for address, how in seen["routes"].items() if how == "route"}
    if routes:
        raise CaseFailed(
            f"the sandbox has a route out of the machine (to {', '.join(routes)}; interfaces {seen['interfaces']}); "
            "no name was resolved, to send nothing out"
        )
    if seen.get("dns") == "resolved":
        raise CaseFailed("the sandbox resolved a name (DNS works) although it has no route out")
    described = ", ".join(f"{address}: {how}" for address, how in seen["routes"].items())
    return f"no route out ({described}); DNS: {seen.get('dns')}; interfaces: {', '.join(seen['interfaces']) or 'none'}"


def _cloud_metadata_refused(probe: Probe) -> str:
    arguments = {"addresses": list(METADATA_ADDRESSES), "resolve": ""}
    seen = probe.value(probe.execute(ROUTES, arguments=arguments, timeout=30), "metadata")
    reachable = [address for address in METADATA_ADDRESSES if seen["routes"].get(address) == "route"]
    if reachable:
        raise CaseFailed(f"the cloud metadata address {reachable[0]} is routable from the sandbox (nothing was sent)")
    return "the metadata address is unreachable: " + ", ".join(f"{a}: {seen['routes'][a]}" for a in METADATA_ADDRESSES)


EGRESS_PROXY = """
import os, socket
from urllib.parse import urlsplit
def main(port):
    proxies = {}
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        url = urlsplit(os.environ.get(name) or "")
        if url.hostname and url.port:
            proxies[f"{url.hostname}:{url.port}"] = (url.hostname, url.port)
    targets = [f"127.0.0.1:{port}", f"localhost:{port}", f"2130706433:{port}", f"0x7f.1:{port}", f"[::1]:{port}",
               f"user@127.0.0.1:{port}", f"127.0.0.1.:{port}"]
    answers = {}
    for label, where in proxies.items():
        requests = [f"CONNECT {target} HTTP/1.1\\r\\nHost: {target}\\r\\n\\r\\n" for target in targets]
        requests.append(f"GET http://127.0.0.1:{port}/ HTTP/1.1\\r\\nHost: 127.0.0.1:{port}\\r\\n\\r\\n")
        for request in requests:
            try:
                with socket.create_connection(where, timeout=5) as conn:
                    conn.sendall(request.encode())
                    answer = conn.recv(200).split(b"\\r\\n")[0].decode("ascii", "replace")
            except OSError as exc:
                answer = f"error {type(exc).__name__}"
            answers[f"{label} {request.split(chr(13))[0]}"] = answer
    return {"proxies": sorted(proxies), "answers": answers}
"""


def _egress_proxy_refuses_host(probe: Probe) -> str:
    bait = probe.bait
    bait.contacts()
    seen = probe.value(probe.execute(EGRESS_PROXY, arguments={"port": bait.tcp_port}, timeout=60), "egress proxy")
    contacts = bait.contacts()
    if contacts:
        raise CaseFailed(f"the sandbox's proxy connected to the host's loopback: {'; '.join(contacts)}")
    opened = [request for request, answer in seen["answers"].items() if answer.split(" ")[1:2] == ["200"]]
    if opened:
        raise CaseFailed(f"the sandbox's proxy accepted {opened[0]!r}")
    if not seen["proxies"]:
        return "the sandbox advertises no proxy (HTTPS_PROXY and the like are unset)"
    answers = sorted(set(seen["answers"].values()))
    return f"the proxy ({', '.join(seen['proxies'])}) refused every host address form ({'; '.join(answers)}); nothing reached the host"


# -- resource limits ------------------------------------------------------------------------------

FORK_BOMB = """
import errno, os, time
def main(count, linger):
    children, failure = 0, None
    deadline = time.time() + linger
    for _ in range(count):
        try:
            pid = os.fork()
        except OSError as exc:
            failure = errno.errorcode.get(exc.errno, str(exc.errno))
            break
        if pid == 0:
            time.sleep(max(0.0, deadline - time.time()))
            os._exit(0)
        children += 1
    return {"children": children, "failure": failure}
"""


def _fork_bomb_contained(probe: Probe) -> str:
    count = probe.bounds.forks
    arguments = {"count": count, "linger": min(probe.bounds.linger, 10.0)}
    result = probe.execute(FORK_BOMB, arguments=arguments, timeout=probe.bounds.attack_timeout)
    if result.status is ExecutionStatus.SUCCESS:
        seen = result.value
        if seen["failure"] is None:
            raise CaseFailed(f"all {count} processes started: no process limit below the bound")
        evidence = f"fork refused with {seen['failure']} after {seen['children']} processes"
    elif result.status in (ExecutionStatus.ERROR, ExecutionStatus.MEMORY_LIMIT):
        evidence = f"the sandbox stopped the fork bomb: {describe(result)}"
    else:
        raise CaseFailed(f"the fork bomb was not contained: {describe(result)}")
    probe.still_works("the fork bomb")
    return evidence + "; the next execution ran fine"


MEMORY_BOMB = """
held, blocks = 0, []
def main(limit_mib):
    global held
    try:
        while held < limit_mib:
            blocks.append(b"\\x01" * (16 << 20))  # written, so every page is really used
            held += 16
            print("holding", held, "MiB", flush=True)
    except MemoryError:
        return {"held_mib": held, "stopped": "MemoryError"}
    return {"held_mib": held, "stopped": None}
"""


def _held(stdout: str) -> str:
    lines = [line for line in stdout.splitlines() if line.startswith("holding ")]
    return lines[-1].split(" ", 1)[1] if lines else "0 MiB"


def _memory_bomb_contained(probe: Probe) -> str:
    bound = probe.bounds.memory_mib
    result = probe.execute(MEMORY_BOMB, arguments={"limit_mib": bound}, timeout=probe.bounds.attack_timeout)
    if result.status is ExecutionStatus.SUCCESS:
        seen = result.value
        if seen["stopped"] is None:
            raise CaseFailed(f"the code held all {bound} MiB: no memory limit below the bound")
        evidence = f"allocation refused ({seen['stopped']}) at {seen['held_mib']} MiB"
    elif result.status in (ExecutionStatus.MEMORY_LIMIT, ExecutionStatus.ERROR):
        evidence = f"stopped while holding {_held(result.stdout)}: {describe(result)}"
    else:
        raise CaseFailed(f"the memory bomb was not contained: {describe(result)}")
    probe.still_works("the memory bomb")
    return evidence + "; the next execution ran fine"


DISK_FILL = """
import errno, os
def main(limit_mib):
    chunk = b"\\x02" * (1 << 20)
    written, stopped, files = 0, None, []
    folders = [os.getcwd(), os.environ.get("HOME") or "/tmp", "/tmp"]
    try:
        while written < limit_mib:
            path = None
            for folder in folders:
                try:
                    candidate = os.path.join(folder, f"isolation-fill-{len(files)}")
                    handle = open(candidate, "wb")
                    path = candidate
                    break
                except OSError:
                    continue
            if path is None:
                stopped = "no writable folder"
                break
            files.append(path)
            with handle:
                for _ in range(4):  # 4 MiB per file, under any per-file size limit
                    handle.write(chunk)
                    handle.flush()
                    written += 1
            print("written", written, "MiB", flush=True)
    except OSError as exc:
        stopped = errno.errorcode.get(exc.errno, str(exc.errno))
    finally:
        for path in files:
            try:
                os.remove(path)
            except OSError:
                pass
    return {"written_mib": written, "stopped": stopped}
"""


def _disk_fill_stopped(probe: Probe) -> str:
    bound = probe.bounds.disk_mib
    result = probe.execute(DISK_FILL, arguments={"limit_mib": bound}, timeout=probe.bounds.attack_timeout)
    if result.status is ExecutionStatus.SUCCESS:
        seen = result.value
        if seen["stopped"] is None:
            raise CaseFailed(f"the code wrote all {bound} MiB: no disk limit below the bound")
        evidence = f"writing stopped ({seen['stopped']}) after {seen['written_mib']} MiB"
    elif result.status in (ExecutionStatus.MEMORY_LIMIT, ExecutionStatus.ERROR):
        lines = [line for line in result.stdout.splitlines() if line.startswith("written ")]
        written = lines[-1].split(" ", 1)[1] if lines else "0 MiB"
        evidence = f"stopped after {written} written: {describe(result)}"
    else:
        raise CaseFailed(f"the disk fill was not stopped: {describe(result)}")
    probe.still_works("the disk fill")
    return evidence + "; the next execution ran fine"


OUTPUT_FLOOD = """
import sys
def main(limit_mib):
    block = ("y" * 1023 + "\\n") * 64
    for _ in range(limit_mib * 16):
        sys.stdout.write(block)
    sys.stdout.flush()
    return limit_mib
"""


def _output_flood_truncated(probe: Probe) -> str:
    bound = probe.bounds.flood_mib * MIB
    result = probe.execute(OUTPUT_FLOOD, arguments={"limit_mib": probe.bounds.flood_mib}, timeout=probe.bounds.attack_timeout)
    kept = len(result.stdout.encode("utf-8"))
    if result.status is ExecutionStatus.PROVIDER_ERROR:
        raise CaseFailed(f"the flood broke the provider: {describe(result)}")
    if not result.stdout_truncated or kept >= bound:
        raise CaseFailed(f"{kept} of {bound} bytes came back and the output is not flagged as truncated")
    probe.still_works("the output flood")
    return f"kept {kept} of {bound} bytes, flagged truncated, status {result.status.value}; the next execution ran fine"


# -- time and state -------------------------------------------------------------------------------

SPAWN = """
import os, sys
def spawn(tag, linger, detach):
    # A process that waits with the tag in its command line; detached ones leave the session.
    # Returns once it runs under that command line: the pipe's write end closes on exec.
    ready, started = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(ready)
            if detach:
                os.setsid()
                if os.fork():
                    os._exit(0)
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            os.execv(sys.executable, [sys.executable, "-c", SLEEPER, str(linger), tag])
        finally:
            os._exit(0)
    os.close(started)
    os.read(ready, 1)
    os.close(ready)
    if detach:
        os.waitpid(pid, 0)
    return pid
""".replace("SLEEPER", repr(SLEEPER))

LEAVE_BEHIND = SPAWN + """
def main(tag, linger):
    left = []
    for folder in dict.fromkeys((os.getcwd(), os.environ.get("HOME"), "/tmp", "/dev/shm", os.environ.get("SANDBOX_OUTPUT_DIR"))):
        if folder:
            try:
                with open(os.path.join(folder, tag), "w") as handle:
                    handle.write("left by an earlier execution")
                left.append(folder)
            except OSError:
                pass
    spawn(tag, linger, detach=True)
    return left
"""

LOOK_FOR_LEFTOVERS = """
import os
def main(tag):
    folders = [os.getcwd(), os.environ.get("HOME"), "/tmp", "/dev/shm", os.environ.get("SANDBOX_OUTPUT_DIR")]
    files = sorted({f for f in folders if f and os.path.exists(os.path.join(f, tag))})
    processes = []
    for pid in (os.listdir("/proc") if os.path.isdir("/proc") else []):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as handle:
                    if tag.encode() in handle.read():
                        processes.append(int(pid))
            except OSError:
                pass
    return {"files": files, "processes": processes}
"""

LOOKS = 2
"""Executions that look for leftovers: with a pool that reuses sandboxes, more looks land on the used one."""


def _look_for_leftovers(probe: Probe, tag: str, what: str) -> None:
    """Fail when later executions, or the host, see files or processes tagged ``tag``."""
    try:
        for _ in range(LOOKS):
            seen = probe.value(probe.execute(LOOK_FOR_LEFTOVERS, arguments={"tag": tag}), "leftover")
            if seen["processes"]:
                raise CaseFailed(f"a process {what} is still running in a later execution (pid {seen['processes'][0]})")
            if seen["files"]:
                raise CaseFailed(f"files {what} are still there for a later execution, in {seen['files']}")
    finally:
        escaped = probe.bait.kill_processes_tagged(tag)
        _remove_host_files(tag)
    if escaped:
        raise CaseFailed(f"a process {what} ran on this machine, outside any sandbox (pid {escaped[0]}, now killed)")


def _remove_host_files(tag: str) -> None:
    """Remove files an unsandboxed provider let the code write on the host (the names carry the random tag)."""
    for folder in ("/tmp", "/dev/shm", str(Path.home())):
        try:
            (Path(folder) / tag).unlink()
        except OSError:
            pass


def _nothing_survives(probe: Probe) -> str:
    tag = f"isolation-left-{probe.bait.token}"
    arguments = {"tag": tag, "linger": probe.bounds.linger}
    left = probe.value(probe.execute(LEAVE_BEHIND, arguments=arguments), "leave-behind")
    _look_for_leftovers(probe, tag, "left by an earlier execution")
    return f"an execution left files in {left or 'no folder'} and a detached process; the next {LOOKS} executions saw none of it"


TIMEOUT_WITH_CHILDREN = SPAWN + """
import time
def main(tag, linger):
    spawn(tag, linger, detach=False)
    spawn(tag, linger, detach=True)
    print("children started", flush=True)
    time.sleep(linger)
"""


def _timeout_kills_children(probe: Probe) -> str:
    tag = f"isolation-child-{probe.bait.token}"
    arguments = {"tag": tag, "linger": probe.bounds.linger}
    result = probe.execute(TIMEOUT_WITH_CHILDREN, arguments=arguments, timeout=probe.bounds.timeout)
    if result.status is not ExecutionStatus.TIMEOUT:
        probe.bait.kill_processes_tagged(tag)
        raise CaseFailed(f"the execution was not stopped at its {probe.bounds.timeout:g}s timeout: {describe(result)}")
    if "children started" not in result.stdout:
        probe.bait.kill_processes_tagged(tag)
        raise CaseFailed(f"the children had not started when the {probe.bounds.timeout:g}s timeout hit; raise Bounds.timeout")
    _look_for_leftovers(probe, tag, "started by an execution that timed out")
    return f"after the {probe.bounds.timeout:g}s timeout, neither a child nor a detached grandchild was left running"


# -- the result protocol --------------------------------------------------------------------------

FORGE_PYTHON = """
import gc, json, os, sys
PREFIX = "\\x1esandbox-result-"

def markers():
    # Look for the runner's marker wherever user code can reach: the calling frames and gc.
    found = []
    def look(value):
        if isinstance(value, str) and len(value) == len(PREFIX) + 33 and value.startswith(PREFIX) and value not in found:
            found.append(value)
    def scan(container):
        values = container.values() if isinstance(container, dict) else container
        for value in list(values)[:1000]:
            look(value)
            if isinstance(value, dict):
                for inner in list(value.values())[:1000]:
                    look(inner)
    frame = sys._getframe()
    while frame is not None:
        scan(frame.f_locals)
        scan(frame.f_globals)
        frame = frame.f_back
    for obj in gc.get_objects()[:300000]:
        if isinstance(obj, (dict, list, tuple)):
            scan(obj)
    return found

def forged(marker):
    frame = {"value": FORGED, "exit_code": 0, "error": None, "has_main": True, "artifacts": [], "skipped_artifacts": []}
    return (marker + json.dumps(frame) + "\\n").encode()

write, exit_now = os.write, os._exit
sent = set()

def intercept(fd, data):
    # Stands in for os.write: the runner's own frame is replaced by a forged one (learning its marker).
    text = bytes(data)
    at = text.find(PREFIX.encode())
    if at < 0:
        return write(fd, data)
    marker = text[at:text.find(b":", at) + 1].decode()
    if marker not in sent:
        sent.add(marker)
        write(fd, text[:at] + forged(marker))
    return len(text)

sys.stdout.flush()
for marker in [PREFIX + "0" * 32 + ":"] + markers():
    if marker not in sent:
        sent.add(marker)
        write(1, forged(marker))
frame = sys._getframe().f_back  # the callers' globals, not this code's own
while frame is not None:
    for key, value in list(frame.f_globals.items()):
        if value is write:
            frame.f_globals[key] = intercept
    frame = frame.f_back
os.write = intercept
os._exit = lambda code: exit_now(0)
raise RuntimeError("this execution failed; a forged frame says otherwise")
"""


FORGE_JAVASCRIPT = """
const fs = require("fs");
const PREFIX = "\\x1esandbox-result-";
const realWrite = fs.writeSync;
const sent = new Set();
const forged = (marker) =>
  marker + JSON.stringify({value: FORGED, exit_code: 0, error: null, has_main: true, artifacts: [], skipped_artifacts: []}) + "\\n";
fs.writeSync = function (fd, data, ...rest) {
  // The runner's own frame is replaced by a forged one (learning its marker).
  const text = typeof data === "string" ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString("utf8");
  const at = text.indexOf(PREFIX);
  if (at < 0) return realWrite.call(fs, fd, data, ...rest);
  const marker = text.slice(at, text.indexOf(":", at) + 1);
  if (!sent.has(marker)) { sent.add(marker); realWrite.call(fs, fd, text.slice(0, at) + forged(marker)); }
  return typeof rest[1] === "number" ? rest[1] : Buffer.byteLength(text);
};
const reallyExit = process.reallyExit;
process.reallyExit = () => reallyExit.call(process, 0);
const zero = PREFIX + "0".repeat(32) + ":";
sent.add(zero);
realWrite.call(fs, 1, forged(zero));
function main() {
  throw new Error("this execution failed; a forged frame says otherwise");
}
"""


def _forge_case(language: str, template: str) -> Callable[[Probe], str]:
    def check(probe: Probe) -> str:
        forged = {"forged": probe.bait.token}
        code = template.replace("FORGED", repr(forged) if language == "python" else json.dumps(forged))
        result = probe.execute(code, language=language, timeout=60)
        if result.status is ExecutionStatus.SUCCESS:
            raise CaseFailed(f"a forged result frame turned a failing execution into success with value {result.value!r}")
        if result.value == forged:
            raise CaseFailed(f"the forged value came back (status {result.status.value})")
        if result.status is not ExecutionStatus.ERROR:
            raise CaseFailed(f"the forgery did not end as the code's error: {describe(result)}")
        probe.still_works("the forgery")
        return f"the forgery came back as {describe(result)}, without the forged value; the next execution ran fine"

    return check




CASES: tuple[IsolationCase, ...] = (
    IsolationCase("host_files_invisible", "a canary file on the host cannot be read", _host_files_invisible),
    IsolationCase(
        "host_environment_invisible",
        "the caller's environment (a canary variable) is not visible, nor credential-like variables",
        _host_environment_invisible,
    ),
    IsolationCase("host_processes_invisible", "a canary process on the host is not visible", _host_processes_invisible),
    IsolationCase(
        "host_loopback_unreachable",
        "TCP and UDP listeners on the host's 127.0.0.1 receive nothing",
        _host_loopback_unreachable,
    ),
    IsolationCase("no_outside_network", "no route out of the machine, and no name resolution (DNS)", _no_outside_network),
    IsolationCase("cloud_metadata_refused", "the cloud metadata address 169.254.169.254 is unreachable", _cloud_metadata_refused),
    IsolationCase(
        "egress_proxy_refuses_host",
        "an egress proxy the sandbox is given (HTTPS_PROXY) reaches no host address, however written",
        _egress_proxy_refuses_host,
    ),
    IsolationCase("fork_bomb_contained", "a fork bomb hits a process limit; the next execution is fine", _fork_bomb_contained),
    IsolationCase("memory_bomb_contained", "a memory bomb is stopped; the next execution is fine", _memory_bomb_contained),
    IsolationCase("disk_fill_stopped", "filling the disk with many files is stopped", _disk_fill_stopped),
    IsolationCase("output_flood_truncated", "an output flood is cut and flagged as truncated", _output_flood_truncated),
    IsolationCase(
        "nothing_survives_execution",
        "files and background processes are gone for the next execution",
        _nothing_survives,
    ),
    IsolationCase("timeout_kills_children", "a timeout ends child and detached processes too", _timeout_kills_children),
    IsolationCase(
        "result_frames_unforgeable",
        "code that forges a success frame and then raises comes back as an error",
        _forge_case("python", FORGE_PYTHON),
    ),
    IsolationCase(
        "javascript_host_invisible",
        "JavaScript sees no host canary (file, variable, process)",
        _javascript_host_invisible,
        language="javascript",
    ),
    IsolationCase(
        "javascript_result_frames_unforgeable",
        "JavaScript that forges a success frame and then throws comes back as an error",
        _forge_case("javascript", FORGE_JAVASCRIPT),
        language="javascript",
    ),
)
"""The profile, in the order it runs."""

CASE_NAMES = tuple(case.name for case in CASES)
