"""Several OS processes writing to one settings database at the same time, on each backend.

The workers are real processes (multiprocessing, spawn): each opens its own SettingsStore, waits
at a barrier so that all start writing together, and reports a traceback instead of raising.
"""

from __future__ import annotations

import multiprocessing
import traceback
from typing import Any

from sandbox_core.settings import SettingsStore

PROCESSES = 3
SAVES_PER_PROCESS = 50
ROWS_PER_PROCESS = 5
WORKER_TIMEOUT = 120


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
