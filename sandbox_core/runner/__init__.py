"""The runner protocol: scripts that run user code and the host-side code that reads their result.

Providers use :class:`Job`, :class:`ResultStream`, :class:`BoundedCapture` and :func:`build_result`
(see :mod:`sandbox_core.runner.protocol`); anything that writes artifacts to disk uses
:func:`safe_artifact_path` (see :mod:`sandbox_core.runner.artifact_names`). Sessions run
``session_runner.py`` (one interpreter, many jobs) through a
:class:`~sandbox_core.runner.session_channel.SessionChannel`.
"""

from __future__ import annotations

from sandbox_core.runner.artifact_names import safe_artifact_name, safe_artifact_path
from sandbox_core.runner.protocol import (
    BoundedCapture,
    Job,
    ResultStream,
    build_result,
    frame_budget,
    new_marker,
    runner_path,
    runner_source,
)

__all__ = [
    "BoundedCapture",
    "Job",
    "ResultStream",
    "build_result",
    "frame_budget",
    "new_marker",
    "runner_path",
    "runner_source",
    "safe_artifact_name",
    "safe_artifact_path",
]
