"""Execution limits: what one execution may use, the operator's defaults and maximums.

A request may ask for limits of its own, each at most the operator's maximum. Memory bounds the
whole sandbox (interpreter, the code's data and every file it writes to its tmpfs ``/tmp`` and
work folder: gVisor counts tmpfs against memory and ignores tmpfs ``size=``), so a file-size limit
above the memory limit buys nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from sandbox_selfmanaged.errors import LimitError

MIB = 1 << 20


@attrs.frozen
class Limits:
    """The limits one execution runs under.

    :param timeout: wall-clock seconds before the sandbox is killed (partial output is kept).
    :param memory_mb: memory of the whole sandbox, files in its tmpfs included.
    :param processes: processes and threads the code may run at once (``RLIMIT_NPROC``).
    :param max_output_bytes: bytes of stdout and of stderr kept; more is truncated and flagged.
    :param max_file_bytes: largest file the code may write (``RLIMIT_FSIZE``).
    :param max_artifact_bytes: total bytes of output-folder files returned as artifacts.
    :param cpus: CPUs' worth of time per second the sandbox may use (cgroup CPU quota).
    """

    timeout: float = 30.0
    memory_mb: int = 256
    processes: int = 32
    max_output_bytes: int = 1 * MIB
    max_file_bytes: int = 64 * MIB
    max_artifact_bytes: int = 8 * MIB
    cpus: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @property
    def memory_bytes(self) -> int:
        return self.memory_mb * MIB

    def boot_key(self) -> tuple[int, int, float]:
        """What is fixed when a sandbox boots: its rlimits and CPU quota.

        Executions whose limits have the same key can use the same warm pool. Memory is not part
        of it: the engine changes a warm sandbox's memory limit through its cgroup.
        """
        return (self.processes, self.max_file_bytes, self.cpus)


MINIMUMS = Limits(
    timeout=0.1,
    memory_mb=64,
    processes=4,
    max_output_bytes=1024,
    max_file_bytes=4096,
    max_artifact_bytes=0,
    cpus=0.1,
)
"""Below these an interpreter cannot even start in a sandbox, so requests cannot ask for less."""

DEFAULT_MAXIMUMS = Limits(
    timeout=300.0,
    memory_mb=2048,
    processes=256,
    max_output_bytes=16 * MIB,
    max_file_bytes=1024 * MIB,
    max_artifact_bytes=64 * MIB,
    cpus=4.0,
)

REQUEST_FIELDS = ("memory_mb", "processes", "max_output_bytes", "max_file_bytes", "max_artifact_bytes")
"""Limits a request may set (timeout travels on its own; CPU is the operator's call)."""


def check_within(limits: Limits, maximums: Limits, *, prefix: str = "") -> None:
    """Raise :class:`LimitError` naming the first field outside ``[MINIMUMS, maximums]``."""
    for field in attrs.fields(Limits):
        value = getattr(limits, field.name)
        low, high = getattr(MINIMUMS, field.name), getattr(maximums, field.name)
        if value < low:
            raise LimitError(prefix + field.name, f"must be at least {low}, got {value}")
        if value > high:
            raise LimitError(prefix + field.name, f"must be at most {high} (the operator's maximum), got {value}")


def resolve(
    defaults: Limits,
    maximums: Limits,
    *,
    timeout: float | None = None,
    requested: Mapping[str, Any] | None = None,
) -> Limits:
    """The limits for one request: the operator's defaults overridden by what it asked for.

    Unknown fields and values above the maximums raise :class:`LimitError` (the service turns
    it into a 422 naming the field).
    """
    changes: dict[str, Any] = {}
    for name, value in (requested or {}).items():
        if value is None:
            continue
        if name not in REQUEST_FIELDS:
            raise LimitError(f"limits.{name}", f"unknown limit; known: {', '.join(REQUEST_FIELDS)}")
        if isinstance(value, bool) or not isinstance(value, int):
            raise LimitError(f"limits.{name}", f"must be an integer, got {value!r}")
        changes[name] = value
    if timeout is not None:
        changes["timeout"] = float(timeout)
    limits = attrs.evolve(defaults, **changes)
    for name in changes:
        value = getattr(limits, name)
        label = name if name == "timeout" else f"limits.{name}"
        low, high = getattr(MINIMUMS, name), getattr(maximums, name)
        if value < low:
            raise LimitError(label, f"must be at least {low}, got {value}")
        if value > high:
            raise LimitError(label, f"must be at most {high} (the operator's maximum), got {value}")
    return limits
