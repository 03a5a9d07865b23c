"""The janitor tells the engine about every sandbox it is handed, whatever path handed it."""

from __future__ import annotations

import threading
from typing import cast

from sandbox_selfmanaged.janitor import Janitor
from sandbox_selfmanaged.sandbox import Sandbox


class _Doomed:
    """Stands in for a sandbox: the janitor only kills and destroys it."""

    def __init__(self, name: str) -> None:
        self.id = name
        self.killed = False
        self.destroyed = threading.Event()
        self.cleanup_error = ""

    def kill(self) -> None:
        self.killed = True

    def destroy(self) -> bool:
        self.destroyed.set()
        return True


def test_every_disposed_sandbox_is_let_go_of_once_and_destroyed() -> None:
    # A warm sandbox that died idle in the pool reaches the janitor without passing through an
    # execution's release: the executor's per-sandbox state (its egress socket) must go with it.
    seen: list[str] = []
    janitor = Janitor(on_dispose=lambda sandbox: seen.append(sandbox.id))
    doomed = [_Doomed(f"sbx-{n}") for n in range(3)]
    try:
        for sandbox in doomed:
            janitor.dispose(cast(Sandbox, sandbox))
        for sandbox in doomed:
            assert sandbox.destroyed.wait(10), f"{sandbox.id} was not destroyed"
    finally:
        janitor.close()
    assert seen == ["sbx-0", "sbx-1", "sbx-2"]
    assert all(sandbox.killed for sandbox in doomed)


def test_a_failing_let_go_does_not_keep_a_sandbox_alive() -> None:
    def broken(_sandbox: Sandbox) -> None:
        raise OSError("socket directory already gone")

    janitor = Janitor(on_dispose=broken)
    doomed = _Doomed("sbx-x")
    try:
        janitor.dispose(cast(Sandbox, doomed))
        assert doomed.destroyed.wait(10)
    finally:
        janitor.close()
