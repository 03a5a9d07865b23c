"""Warm sandboxes of a preloading runtime restored from a checkpoint instead of booted.

A runtime that preloads heavy modules (pandas, matplotlib) makes every boot pay for their
imports: about 2 CPU-seconds inside gVisor. Instead, the first sandbox of such a runtime is booted
as a *template*: once its runner has preloaded and blocks reading its job, ``runsc checkpoint``
saves the whole sandbox into an image (about 20 MB) and ends it. Every later sandbox of that
runtime is ``runsc restore``-d from the image: a new, separate sandbox (own sentry, own cgroup,
own pipes) that resumes where the template stopped, at about a third of the CPU. Each is still
used for one execution and destroyed.

An image belongs to one engine run (in its state directory, made again at each start, so it
always matches the runtime's current build and the root filesystem) and to the pool's boot
limits (rlimits live inside the saved kernel): sandboxes booted for other limits are booted
plainly, with the same preload.

Restored clones start from the same memory. The runner re-seeds what Python seeds at start
(``random``, numpy's global generator, ``tempfile``'s names) after its job arrives, and
``os.urandom`` asks the sentry, which draws from the host each time. What stays identical is
described in the self-managed provider's documentation (address-space layout, hash seed).

Failures never fail an execution: when an image cannot be made or a restore fails, the sandbox
is booted plainly, the error is logged and shown in health, and a new image is tried only after
:data:`RETRY_SECONDS`.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from sandbox_selfmanaged.errors import ExecutorError
from sandbox_selfmanaged.runsc import Runsc
from sandbox_selfmanaged.sandbox import Sandbox

logger = logging.getLogger(__name__)

RETRY_SECONDS = 300.0
"""After a failed image or restore, plain boots for this long before an image is tried again."""

Boot = Callable[[Path | None], Sandbox]
"""Boots a sandbox of one runtime under the pool's limits: plainly (None) or from an image."""


@attrs.define
class _Image:
    path: Path | None = None
    made_seconds: float = 0.0
    size_bytes: int = 0
    restores: int = 0
    plain_boots: int = 0
    failures: int = 0
    error: str | None = None
    retry_at: float = 0.0
    lock: threading.Lock = attrs.field(factory=threading.Lock)


class Checkpoints:
    """The checkpoint images of one engine, one per preloading runtime (pool key)."""

    def __init__(self, directory: Path, runsc: Runsc) -> None:
        self.directory = directory
        self.runsc = runsc
        self._images: dict[str, _Image] = {}
        self._lock = threading.Lock()

    def boot(self, key: str, boot: Boot) -> Sandbox:
        """A sandbox of ``key``: restored from its image (made now if there is none), else booted."""
        with self._lock:
            image = self._images.setdefault(key, _Image())
        path = self._image_path(key, image, boot)
        if path is None:
            sandbox = boot(None)
            with self._lock:
                image.plain_boots += 1
            return sandbox
        try:
            sandbox = boot(path)
        except ExecutorError as exc:
            self._failed(key, image, f"restoring from the checkpoint failed, booting instead: {exc}", path)
            sandbox = boot(None)
            with self._lock:
                image.plain_boots += 1
            return sandbox
        with self._lock:
            image.restores += 1
        return sandbox

    def _image_path(self, key: str, image: _Image, boot: Boot) -> Path | None:
        """The image to restore from, made here by the first caller (others wait for it)."""
        with image.lock:
            if image.path is not None:
                return image.path
            if time.monotonic() < image.retry_at:
                return None
            return self._make(key, image, boot)

    def _make(self, key: str, image: _Image, boot: Boot) -> Path | None:
        started = time.monotonic()
        target = self.directory / key
        partial = self.directory / f".{key}.partial"
        shutil.rmtree(target, ignore_errors=True)
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        try:
            template = boot(None)
        except ExecutorError:
            shutil.rmtree(partial, ignore_errors=True)
            raise  # a plain boot failing is the pool's to report and retry, as for any boot
        try:
            result = self.runsc.checkpoint(template.id, partial, template.log_file)
        finally:
            template.destroy()
        if not result.ok:
            self._failed(key, image, f"making the checkpoint failed, booting instead: {result.output_text()}", partial)
            return None
        partial.rename(target)
        size = sum(entry.stat().st_size for entry in target.iterdir() if entry.is_file())
        with self._lock:
            image.path = target
            image.made_seconds = time.monotonic() - started
            image.size_bytes = size
            image.error = None
        logger.info("checkpoint of runtime %s made in %.2fs (%.1f MB)", key, image.made_seconds, size / 1e6)
        return target

    def _failed(self, key: str, image: _Image, message: str, path: Path) -> None:
        logger.error("runtime %s: %s", key, message)
        shutil.rmtree(path, ignore_errors=True)
        with self._lock:
            image.path = None
            image.failures += 1
            image.error = message[-2000:]
            image.retry_at = time.monotonic() + RETRY_SECONDS

    def status(self, key: str) -> dict[str, Any] | None:
        """What health shows of ``key``'s image: state, counters and the last error."""
        with self._lock:
            image = self._images.get(key)
            if image is None:
                return {"state": "pending", "restores": 0, "plain_boots": 0, "failures": 0, "error": None}
            state = "ready" if image.path is not None else ("failed" if image.error else "pending")
            return {
                "state": state,
                "image_bytes": image.size_bytes if image.path is not None else None,
                "made_seconds": round(image.made_seconds, 3) if image.path is not None else None,
                "restores": image.restores,
                "plain_boots": image.plain_boots,
                "failures": image.failures,
                "error": image.error,
            }

    def failing(self) -> dict[str, str]:
        """The keys whose sandboxes are booted, not restored, because of an error."""
        with self._lock:
            return {key: image.error for key, image in self._images.items() if image.error and image.path is None}
