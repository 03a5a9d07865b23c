"""The runner protocol: scripts that run user code and the host-side code that reads their result."""

from __future__ import annotations

from sandbox_core.runner.protocol import (
    BoundedCapture,
    Job,
    ResultStream,
    build_result,
    new_marker,
    runner_path,
    runner_source,
)

__all__ = ["BoundedCapture", "Job", "ResultStream", "build_result", "new_marker", "runner_path", "runner_source"]
