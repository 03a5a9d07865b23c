"""Several OS processes writing to one settings database at the same time, on each backend.

The workers are real processes (multiprocessing, spawn): each opens its own SettingsStore, waits
at a barrier so that all start writing together, and reports a traceback instead of raising.
"""

from __future__ import annotations

import multiprocessing
import traceback
from typing import Any

from sandbox_core.errors import ConfigConflictError
from sandbox_core.settings import SettingsStore

PROCESSES = 3
SAVES_PER_PROCESS = 50
ROWS_PER_PROCESS = 5
WORKER_TIMEOUT = 120
INCREMENTS_PER_PROCESS = 25


def _saving_worker(url: str, index: int, barrier: Any, results: Any) -> None:
    try:
        with SettingsStore(url) as store:
            store.version()  # connect and prepare before the race starts
            barrier.wait(timeout=WORKER_TIMEOUT)
            for i in range(SAVES_PER_PROCESS):
                provider = f"worker{index}_row{i % ROWS_PER_PROCESS}"
                store.save_provider_config(provider, {"worker": index, "i": i, "pad": "x" * 200})
        results.put((index, None))
    except BaseException:
        results.put((index, traceback.format_exc()))


def _counting_worker(url: str, index: int, barrier: Any, results: Any) -> None:
    """Read-modify-write of one shared counter, retrying whenever ``expected`` reports a conflict."""
    try:
        conflicts = 0
        with SettingsStore(url) as store:
            store.version()
            barrier.wait(timeout=WORKER_TIMEOUT)
            for _ in range(INCREMENTS_PER_PROCESS):
                while True:
                    seen = store.provider_config("counter")
                    try:
                        store.save_provider_config("counter", {"n": seen.get("n", 0) + 1}, expected=seen)
                        break
                    except ConfigConflictError:
                        conflicts += 1
        results.put((index, conflicts))
    except BaseException:
        results.put((index, traceback.format_exc()))


def _seeding_worker(url: str, index: int, barrier: Any, results: Any) -> None:
    try:
        store = SettingsStore(url)
        barrier.wait(timeout=WORKER_TIMEOUT)
        inserted = store.seed_defaults()  # the first use of this store: creates the table too
        store.close()
        results.put((index, inserted))
    except BaseException:
        results.put((index, traceback.format_exc()))


def _run_workers(target: Any, url: str) -> dict[int, Any]:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES)
    results = ctx.Queue()
    processes = [ctx.Process(target=target, args=(url, n, barrier, results)) for n in range(PROCESSES)]
    for process in processes:
        process.start()
    outcome = dict(results.get(timeout=WORKER_TIMEOUT) for _ in processes)
    for process in processes:
        process.join(timeout=WORKER_TIMEOUT)
        assert process.exitcode == 0
    return outcome


def test_concurrent_writer_processes_lose_nothing(database_url: str) -> None:
    with SettingsStore(database_url) as store:
        start = store.version()

    outcome = _run_workers(_saving_worker, database_url)

    failures = {index: error for index, error in outcome.items() if error is not None}
    assert failures == {}
    with SettingsStore(database_url) as store:
        for index in range(PROCESSES):
            for row in range(ROWS_PER_PROCESS):
                last = SAVES_PER_PROCESS - ROWS_PER_PROCESS + row
                config = store.provider_config(f"worker{index}_row{row}")
                assert (config["worker"], config["i"]) == (index, last)
        assert store.version() == start + PROCESSES * SAVES_PER_PROCESS


def test_concurrent_seeding_inserts_each_default_once(database_url: str) -> None:
    outcome = _run_workers(_seeding_worker, database_url)

    for value in outcome.values():
        assert isinstance(value, list), value  # a str here is a worker's traceback
    inserted = [name for names in outcome.values() for name in names]
    assert sorted(inserted) == ["sandbox.audit", "sandbox.provider_type", "sandbox.self_managed"]
    with SettingsStore(database_url) as store:
        assert store.version() == 1  # one seeding transaction, whoever won
        assert store.active_provider() == "self_managed"


def test_expected_config_makes_read_modify_write_lose_nothing(database_url: str) -> None:
    """``expected`` is checked inside the write transaction: no increment is lost to a race."""
    outcome = _run_workers(_counting_worker, database_url)
    assert all(isinstance(conflicts, int) for conflicts in outcome.values()), outcome
    with SettingsStore(database_url) as store:
        assert store.provider_config("counter") == {"n": PROCESSES * INCREMENTS_PER_PROCESS}


def test_a_stale_expected_config_writes_nothing(database_url: str) -> None:
    with SettingsStore(database_url) as mine, SettingsStore(database_url) as theirs:
        mine.save_provider_config("shared", {"owner": "me"})
        seen = mine.provider_config("shared")
        theirs.save_provider_config("shared", {"owner": "them"})
        version = mine.version()
        try:
            mine.save_provider_config("shared", {"owner": "me again"}, activate=True, expected=seen)
        except ConfigConflictError as exc:
            assert "changed by someone else" in str(exc)
        else:
            raise AssertionError("a stale write went through")
        assert mine.provider_config("shared") == {"owner": "them"}
        assert mine.version() == version
        assert mine.get("sandbox.provider_type") != "shared"
