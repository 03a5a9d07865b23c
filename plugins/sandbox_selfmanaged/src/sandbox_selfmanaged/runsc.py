"""The ``runsc`` command line, with the flags every call needs on this engine.

Every call passes ``--root`` (our own state directory, never the default shared one), ``--log``
to a file (the default is stdout, which would be the sandbox's stdout when we pass pipes),
``--network=none``, the platform (chosen by :mod:`~sandbox_selfmanaged.runsc_platform`: systrap
when the binary has it, else ptrace; ``kvm`` hangs on nested virtualisation) and ``--rootless=false``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from sandbox_selfmanaged.errors import RuntimeMissingError
from sandbox_selfmanaged.procs import CommandResult, ProcessSupervisor

logger = logging.getLogger(__name__)

DEFAULT_RUNSC = "/usr/bin/runsc"


def find_runsc(configured: str | None) -> str:
    """The runsc binary to use, or a :class:`RuntimeMissingError` telling how to install it."""
    candidate = configured or shutil.which("runsc") or DEFAULT_RUNSC
    if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
        return candidate
    raise RuntimeMissingError(
        f"runsc not found at {candidate}: install the Debian package runsc "
        "(apt-get install runsc, or plugins/sandbox_selfmanaged/scripts/install-system-deps.sh) "
        "or pass --runsc PATH"
    )


class Runsc:
    """Runs ``runsc`` subcommands for one engine (one state directory)."""

    def __init__(
        self,
        binary: str,
        root_dir: Path,
        supervisor: ProcessSupervisor,
        *,
        platform: str = "ptrace",
        debug_log_dir: Path | None = None,
        host_uds: bool = False,
    ) -> None:
        self.binary = binary
        self.root_dir = root_dir
        self.supervisor = supervisor
        self.platform = platform
        self.debug_log_dir = debug_log_dir
        self.host_uds = host_uds
        """Let sandboxes connect to host Unix sockets bound into them (only egress binds one)."""

    def argv(self, log_file: Path | str, *args: str, extra_flags: Sequence[str] = ()) -> list[str]:
        """The full command line of one subcommand, global flags (``extra_flags`` last) first."""
        command = [
            self.binary,
            f"--root={self.root_dir}",
            f"--log={log_file}",
            "--network=none",
            f"--platform={self.platform}",
            "--rootless=false",
        ]
        if self.host_uds:
            command.append("--host-uds=open")
        if self.debug_log_dir is not None:
            command += ["--debug", f"--debug-log={self.debug_log_dir}/"]
        return command + list(extra_flags) + list(args)

    def run(self, log_file: Path | str, *args: str, timeout: float = 30.0) -> CommandResult:
        return self.supervisor.run(self.argv(log_file, *args), timeout=timeout)

    def version(self) -> str:
        """``runsc --version``'s first line, e.g. ``runsc version 0.0~20221219.0``."""
        result = self.supervisor.run([self.binary, "--version"], timeout=15)
        if not result.ok:
            raise RuntimeMissingError(f"{self.binary} --version failed: {result.output_text()}")
        return result.stdout.decode("utf-8", "replace").splitlines()[0].strip()

    def list_ids(self) -> list[str]:
        """Ids of every container in our state directory (leftovers included)."""
        if not self.root_dir.is_dir():
            return []
        try:
            result = self.run(os.devnull, "list", "--format=json", timeout=30)
        except OSError as exc:  # runsc cannot be run (removed, not executable)
            logger.warning("runsc list could not be run: %s", exc)
            return []
        if not result.ok:
            logger.warning("runsc list failed: %s", result.output_text())
            return []
        try:
            entries = json.loads(result.stdout or b"[]") or []
        except ValueError:
            return []
        return [str(entry["id"]) for entry in entries if isinstance(entry, dict) and "id" in entry]

    def delete(self, container_id: str, log_file: Path | str = os.devnull, *, timeout: float = 30.0) -> CommandResult:
        return self.run(log_file, "delete", "--force", container_id, timeout=timeout)

    def run_argv(self, container_id: str, bundle: Path, pid_file: Path, log_file: Path | str) -> Sequence[str]:
        """``runsc run``: one process that creates the sandbox, starts it, waits for it and deletes it.

        It replaces ``create`` + ``start`` + ``delete`` (three starts of the runsc binary, ≈ 8 ms
        of CPU each) and cleans up by itself when the sandbox is SIGKILLed. ``--ignore-cgroups``:
        the caller has put it in the sandbox's cgroup, limits written (see
        :meth:`~sandbox_selfmanaged.cgroups.Cgroups.join_argv`).
        """
        return self.argv(log_file, "run", f"--bundle={bundle}", f"--pid-file={pid_file}", container_id, extra_flags=("--ignore-cgroups",))

    def has_state(self, container_id: str) -> bool:
        """Whether runsc still keeps state for ``container_id`` (its files in our state directory)."""
        try:
            return any(container_id in name for name in os.listdir(self.root_dir))
        except FileNotFoundError:
            return False

    def restore_argv(self, container_id: str, bundle: Path, pid_file: Path, log_file: Path | str, image: Path) -> Sequence[str]:
        """``runsc restore``: create a sandbox from a checkpoint image and resume it (detached).

        Unlike :meth:`run_argv`, runsc sets up the cgroup itself and the sandbox is deleted with
        :meth:`delete`: a restore that stays attached fails on this runsc ("unexpected EOF").
        """
        return self.argv(
            log_file, "restore", f"--image-path={image}", f"--bundle={bundle}", f"--pid-file={pid_file}", "--detach", container_id
        )

    def checkpoint(self, container_id: str, image: Path, log_file: Path | str, *, timeout: float = 60.0) -> CommandResult:
        """Save a running sandbox's whole state into ``image`` (the sandbox ends with it)."""
        return self.run(log_file, "checkpoint", f"--image-path={image}", container_id, timeout=timeout)
