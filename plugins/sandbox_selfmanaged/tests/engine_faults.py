"""Drives a real :class:`~sandbox_selfmanaged.engine.Engine` with one injected fault; prints a report.

Run by test_selfmanaged_hardening.py as ``python engine_faults.py SCENARIO STATE_DIR`` in a
process of its own (the engine becomes a child subreaper and reaps every child of its process).
Scenarios: ``result_fails`` (building one result raises), ``stall`` (boots hang until released),
``failing_boots`` (every JavaScript boot fails until restored), ``cancel_waiting`` (a request
waiting for a held boot is cancelled). The last stdout line is
``REPORT {json}``; the engine is closed at the end, leaving the state directory empty.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import attrs

from sandbox_core.model import ExecutionRequest
from sandbox_selfmanaged import engine as engine_module
from sandbox_selfmanaged.engine import Engine, EngineConfig
from sandbox_selfmanaged.limits import Limits
from sandbox_selfmanaged.sandbox import Cancellation, Sandbox

WAIT = 30.0


def run(engine: Engine, code: str, language: str = "python", cancel: Cancellation | None = None) -> dict[str, Any]:
    """One execution, released at once: its status, error message and stdout, or what it raised."""
    limits = attrs.evolve(engine.config.defaults, timeout=20.0)
    try:
        result, release = engine.run(ExecutionRequest(code=code, language=language, timeout=20.0), limits, cancel)
    except Exception as exc:  # the report says what was raised; the test judges it
        return {"raised": f"{type(exc).__name__}: {exc}"}
    release()
    return {"status": result.status.value, "error": result.error.message if result.error else None, "stdout": result.stdout}


def wait_until(condition: Callable[[], bool], seconds: float = WAIT) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def replace_boot(engine: Engine, boot: Callable[[Callable[[str, Limits], Sandbox], str, Limits], Sandbox]) -> None:
    """Route the pool's boots through ``boot(real_boot, language, limits)``."""
    assert engine.pool is not None
    real = engine.pool._boot
    engine.pool._boot = lambda language, limits: boot(real, language, limits)


def result_fails(engine: Engine, report: dict[str, Any]) -> None:
    real = engine_module.build_result
    calls: list[int] = []

    def broken(**kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise TypeError("'int' object is not iterable")
        return real(**kwargs)

    engine_module.build_result = broken  # type: ignore[assignment]
    report["first"] = run(engine, "print('before the failure')")

    def settled() -> bool:
        assert engine.runsc is not None
        pool = engine.health()["languages"]["python"]["pool"]
        return bool(pool["ready"] == 1 and pool["busy"] == 0 and len(engine.runsc.list_ids()) == 1)

    report["settled"] = wait_until(settled, 60)
    report["health"] = engine.health()["healthy"]
    report["second"] = run(engine, "print('after')")


def stall(engine: Engine, report: dict[str, Any]) -> None:
    gate = threading.Event()

    def held(real: Callable[[str, Limits], Sandbox], language: str, limits: Limits) -> Sandbox:
        gate.wait(60)
        return real(language, limits)

    replace_boot(engine, held)
    report["first"] = run(engine, "print('takes the warm sandbox')")
    outcome: dict[str, Any] = {}
    waiter = threading.Thread(target=lambda: outcome.update(run(engine, "print('waited')")))
    waiter.start()
    wait_until(lambda: not engine.health()["healthy"])
    health = engine.health()
    report["stalled"] = {"healthy": health["healthy"], "message": health["message"]}
    gate.set()
    waiter.join(60)
    report["second"] = outcome
    report["health_after"] = engine.health()["healthy"]


def failing_boots(engine: Engine, report: dict[str, Any]) -> None:
    restored = threading.Event()

    def failing(real: Callable[[str, Limits], Sandbox], language: str, limits: Limits) -> Sandbox:
        if language == "javascript" and not restored.is_set():
            raise RuntimeError("gVisor could not start a sandbox: injected failure")
        return real(language, limits)

    replace_boot(engine, failing)
    report["first"] = run(engine, "console.log('takes the warm sandbox')", "javascript")
    wait_until(lambda: not engine.health()["healthy"])
    health = engine.health()
    report["failing"] = {"healthy": health["healthy"], "message": health["message"], "python": run(engine, "print('python still works')")}
    restored.set()
    report["health_after"] = wait_until(lambda: bool(engine.health()["healthy"]))


def cancel_waiting(engine: Engine, report: dict[str, Any]) -> None:
    gate = threading.Event()

    def held(real: Callable[[str, Limits], Sandbox], language: str, limits: Limits) -> Sandbox:
        gate.wait(60)
        return real(language, limits)

    replace_boot(engine, held)
    report["first"] = run(engine, "print('takes the warm sandbox')")
    outcome: dict[str, Any] = {}
    with Cancellation() as cancel:
        waiter = threading.Thread(target=lambda: outcome.update(run(engine, "print('never runs')", cancel=cancel)))
        waiter.start()
        wait_until(lambda: engine.health()["languages"]["python"]["pool"]["waiting"] == 1)
        cancel.set()
        waiter.join(WAIT)
        report["cancelled"] = outcome
        report["waiting_after"] = engine.health()["languages"]["python"]["pool"]["waiting"]
    gate.set()
    report["second"] = run(engine, "print('after')")


SCENARIOS = {"result_fails": result_fails, "stall": stall, "failing_boots": failing_boots, "cancel_waiting": cancel_waiting}


def main(scenario: str, state_dir: str) -> None:
    extra: dict[str, Any] = {"stall_timeout": 2.0} if scenario == "stall" else {}
    languages = ("python", "javascript") if scenario == "failing_boots" else ("python",)
    engine = Engine(EngineConfig(state_dir=state_dir, languages=languages, pool_sizes={"python": 1, "javascript": 1}, **extra))
    engine.start()
    try:
        report: dict[str, Any] = {"ready": engine.wait_ready(90)}
        SCENARIOS[scenario](engine, report)
        print("REPORT " + json.dumps(report), flush=True)
    finally:
        engine.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
