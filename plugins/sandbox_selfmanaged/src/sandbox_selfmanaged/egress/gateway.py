"""The executor's egress: its operator allowlist, the proxy, and what each sandbox needs for it.

With an allowlist configured (``sandbox-executor serve --egress-allow host:port ...``) every
sandbox boots with:

- its own directory holding one proxy socket, bound read-only at ``/run/egress`` (runsc runs with
  ``--host-uds=open`` so the sandbox may connect to it; nothing else it can see is a socket:
  its root is the engine's own read-only tree);
- the shim (:mod:`.shim`) wrapping its runner, listening on ``127.0.0.1:3128`` for clients that
  honour ``HTTPS_PROXY`` and on one ``127.0.0.X`` per exact name for those that do not;
- an ``/etc/hosts`` mapping those names to their ``127.0.0.X``.

The listeners serve every name of the operator's allowlist; each execution's own (narrower)
list is enforced by the proxy, which starts it with :meth:`EgressGateway.begin` and cuts it with
:meth:`EgressGateway.end`. With no policy an execution's attempts are all refused (and logged).
Without an operator allowlist none of this exists and sandboxes boot exactly as before.
"""

from __future__ import annotations

import secrets
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path

import attrs

from sandbox_selfmanaged.egress.allowlist import Allowlist
from sandbox_selfmanaged.egress.proxy import (
    SOCKET_NAME,
    EgressLimits,
    EgressProxy,
    EgressReport,
    Observer,
    Resolver,
    SandboxEgress,
    system_resolver,
)
from sandbox_selfmanaged.errors import EgressPolicyError
from sandbox_selfmanaged.rootfs import ETC_FILES, RUNNER_DIR
from sandbox_selfmanaged.sandbox import LanguageRuntime

SOCKET_DIR_INSIDE = "/run/egress"
SHIM_INSIDE = f"{RUNNER_DIR}/egress_shim.py"
PROXY_PORT = 3128
SHIM_SOURCE = Path(__file__).with_name("shim.py")
MAX_MAPPED_NAMES = 250
"""Exact names get 127.0.0.2 and up; wildcard entries work through ``HTTPS_PROXY`` only."""


class EgressGateway:
    """Owns the proxy and the per-sandbox sockets of one engine.

    :param allowlist: the operator's maximum; requests may only narrow it.
    :param directory: ours alone (the engine's ``state_dir/egress``), created mode 0700 so no
        other host user reaches a sandbox's socket.
    :param python: the interpreter path, inside the sandbox, that runs the shim.
    """

    def __init__(
        self,
        allowlist: Allowlist,
        directory: Path,
        python: str,
        *,
        resolver: Resolver = system_resolver,
        limits: EgressLimits | None = None,
        observer: Observer | None = None,
    ) -> None:
        names = sorted({rule.name for rule in allowlist.rules if not rule.wildcard})
        if len(names) > MAX_MAPPED_NAMES:
            raise EgressPolicyError(f"the egress allowlist names at most {MAX_MAPPED_NAMES} exact hosts, not {len(names)}")
        self.allowlist = allowlist
        self.directory = directory
        self.python = python
        self.addresses = {name: f"127.0.0.{index + 2}" for index, name in enumerate(names)}
        directory.mkdir(mode=0o700)
        self.hosts_file = directory / "hosts"
        self.hosts_file.write_text(ETC_FILES["hosts"] + "".join(f"{self.addresses[name]}\t{name}\n" for name in names))
        self.hosts_file.chmod(0o444)
        self.shim_file = directory / "shim.py"
        shutil.copyfile(SHIM_SOURCE, self.shim_file)
        self.shim_file.chmod(0o444)
        self.proxy = EgressProxy(resolver=resolver, limits=limits, observer=observer)
        self._sockets: dict[str, SandboxEgress] = {}
        self._lock = threading.Lock()

    def prepare_rootfs(self, rootfs: Path) -> None:
        """Create the mount points the sandboxes' egress mounts need in the engine's root tree."""
        (rootfs / SOCKET_DIR_INSIDE.lstrip("/")).mkdir(parents=True, exist_ok=True)
        (rootfs / SHIM_INSIDE.lstrip("/")).touch()

    def prepare(self, runtime: LanguageRuntime) -> tuple[LanguageRuntime, SandboxEgress]:
        """A socket for one sandbox to be booted, and ``runtime`` changed to run the shim first."""
        socket = self.proxy.listen("pending", self.directory / secrets.token_hex(8))
        listeners = [
            f"{self.addresses[rule.name]}:{rule.port}={rule.name}" for rule in self.allowlist.rules if not rule.wildcard
        ]
        argv = (
            self.python, "-I", "-S", SHIM_INSIDE, f"{SOCKET_DIR_INSIDE}/{SOCKET_NAME}", str(PROXY_PORT), *listeners,
            "--", *runtime.argv,
        )
        mounts = (
            *runtime.mounts,
            (str(socket.directory), SOCKET_DIR_INSIDE),
            (str(self.hosts_file), "/etc/hosts"),
            (str(self.shim_file), SHIM_INSIDE),
        )
        return attrs.evolve(runtime, argv=argv, mounts=mounts), socket

    def attach(self, sandbox_id: str, socket: SandboxEgress) -> None:
        """Record that ``socket`` belongs to the booted sandbox ``sandbox_id``."""
        socket.sandbox = sandbox_id
        with self._lock:
            self._sockets[sandbox_id] = socket

    def narrow(self, requested: Sequence[str]) -> Allowlist:
        """The allowlist of one execution: ``requested`` checked against the operator's."""
        return self.allowlist.narrow(requested)

    def begin(self, sandbox_id: str, allowlist: Allowlist) -> None:
        """Start an execution's policy on its sandbox's socket."""
        with self._lock:
            socket = self._sockets[sandbox_id]
        socket.begin(allowlist)

    def end(self, sandbox_id: str) -> EgressReport:
        """End the execution's policy (its tunnels are cut) and report what it did."""
        with self._lock:
            socket = self._sockets.get(sandbox_id)
        return socket.end() if socket is not None else EgressReport()

    def forget(self, sandbox_id: str) -> None:
        """Close a sandbox's socket and remove its directory (the sandbox is gone or going)."""
        with self._lock:
            socket = self._sockets.pop(sandbox_id, None)
        if socket is not None:
            self.discard(socket)

    @staticmethod
    def discard(socket: SandboxEgress) -> None:
        """Close ``socket`` and remove its directory."""
        socket.close()
        shutil.rmtree(socket.directory, ignore_errors=True)

    def close(self) -> None:
        """Close every socket and stop the proxy."""
        with self._lock:
            sockets = list(self._sockets.values())
            self._sockets.clear()
        for socket in sockets:
            self.discard(socket)
        self.proxy.close()
