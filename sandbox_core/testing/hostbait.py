"""Bait on the host for the isolation profile: things a sandbox must neither see nor reach.

:class:`HostBait` plants, for the duration of a ``with`` block, a canary file, a canary
environment variable, a canary process and two loopback listeners (TCP and UDP) on the machine
that runs the checks. The isolation cases tell the sandboxed code where they are and then look, on
the host, whether anything of the sandbox got through. Everything carries one random token, so
the checks never confuse the bait with anything else on the machine, and everything is removed
on exit, including processes an unsandboxed provider let escape.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from types import TracebackType

SLEEPER = "import sys, time; time.sleep(float(sys.argv[1]))"
"""A program that only waits: its command line carries a canary token, for process scans."""

CANARY_ENV = "SANDBOX_ISOLATION_CANARY"
CANARY_PROCESS_SECONDS = 600


class HostBait:
    """The canaries and listeners of one isolation run (see the module docstring)."""

    def __init__(self) -> None:
        self.token = secrets.token_hex(12)
        self.env_name = CANARY_ENV
        self.folder = Path()
        self.file = Path()
        self.tcp_port = 0
        self.udp_port = 0
        self._tcp: socket.socket | None = None
        self._udp: socket.socket | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._old_env: str | None = None
        self._contacts: list[str] = []

    @property
    def process_tag(self) -> str:
        """The word in the canary process's command line."""
        return f"isolation-canary-{self.token}"

    def __enter__(self) -> HostBait:
        self.folder = Path(tempfile.mkdtemp(prefix="sandbox-isolation-"))
        self.file = self.folder / f"canary-{self.token}.txt"
        self.file.write_text(self.token, encoding="utf-8")
        self._old_env = os.environ.get(self.env_name)
        os.environ[self.env_name] = self.token
        self._process = subprocess.Popen(
            [sys.executable, "-c", SLEEPER, str(CANARY_PROCESS_SECONDS), self.process_tag],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._tcp.bind(("127.0.0.1", 0))
        self._tcp.listen(16)
        self._tcp.setblocking(False)
        self.tcp_port = self._tcp.getsockname()[1]
        self._udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._udp.bind(("127.0.0.1", 0))
        self._udp.setblocking(False)
        self.udp_port = self._udp.getsockname()[1]
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        for sock in (self._tcp, self._udp):
            if sock is not None:
                sock.close()
        if self._process is not None:
            self._process.kill()
            self._process.wait()
        if self._old_env is None:
            os.environ.pop(self.env_name, None)
        else:
            os.environ[self.env_name] = self._old_env
        shutil.rmtree(self.folder, ignore_errors=True)
        self.kill_processes_tagged(self.token)

    def contacts(self) -> list[str]:
        """What reached the loopback listeners since the last call (connections and datagrams).

        Loopback delivery is synchronous: once the sandboxed code's ``connect`` or ``sendto``
        returned, the connection waits in the listen backlog and the datagram in the socket
        buffer, so draining them without blocking misses nothing.
        """
        assert self._tcp is not None and self._udp is not None
        while True:
            try:
                connection, peer = self._tcp.accept()
            except BlockingIOError:
                break
            connection.close()
            self._contacts.append(f"TCP connection to 127.0.0.1:{self.tcp_port} from {peer[0]}:{peer[1]}")
        while True:
            try:
                data, peer = self._udp.recvfrom(2048)
            except BlockingIOError:
                break
            self._contacts.append(f"UDP datagram of {len(data)} bytes to 127.0.0.1:{self.udp_port} from {peer[0]}:{peer[1]}")
        seen, self._contacts = self._contacts, []
        return seen

    @staticmethod
    def processes_tagged(tag: str) -> list[int]:
        """Host processes whose command line contains ``tag`` (only the bait's own are excluded)."""
        found = []
        for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if tag.encode() in cmdline and b"isolation-canary-" not in cmdline:
                found.append(int(entry.name))
        return found

    @classmethod
    def kill_processes_tagged(cls, tag: str) -> list[int]:
        """Kill host processes tagged ``tag`` (escaped from an unsandboxed provider); return their pids."""
        found = cls.processes_tagged(tag)
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        return found
