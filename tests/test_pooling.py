"""The warm pool providers build on, and the ``sandbox_shutdown`` hook that empties it."""

from __future__ import annotations

import itertools
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from sandbox_core import ExecutionRequest, ExecutionResult, hookimpl
from sandbox_core.client import SandboxClient
from sandbox_core.pooling import (
    OpenSessions,
    PendingDestroys,
    PoolClosedError,
    PoolSet,
    SandboxPool,
    config_key,
    pool_config_fields,
)
from sandbox_core.registry import ProviderRegistry
from sandbox_core.schema import ConfigField, ConfigSchema, Secret


class Backend:
    """Counts the 'sandboxes' a pool creates and destroys, like a cloud would bill them."""

    def __init__(self, fail_create: bool = False, fail_destroy: bool = False) -> None:
        self._ids = itertools.count(1)
        self.live: set[int] = set()
        self.destroyed: list[int] = []
        self.fail_create = fail_create
        self.fail_destroy = fail_destroy
        self._lock = threading.Lock()

    def create(self) -> int:
        if self.fail_create:
            raise RuntimeError("quota exceeded")
        with self._lock:
            item = next(self._ids)
            self.live.add(item)
        return item

    def destroy(self, item: int) -> None:
        if self.fail_destroy:
            raise RuntimeError("backend said no")
        with self._lock:
            self.live.remove(item)
            self.destroyed.append(item)

    def pool(self, max_idle: int = 2, idle_timeout: float = 60.0) -> SandboxPool[int]:
        return SandboxPool(self.create, self.destroy, max_idle=max_idle, idle_timeout=idle_timeout, name="test")


def test_a_returned_item_serves_the_next_lease() -> None:
    backend = Backend()
    pool = backend.pool()
    with pool.lease() as first:
        assert not first.reused
    with pool.lease() as second:
        assert second.reused and second.item == first.item
    assert pool.stats().created == 1 and backend.live == {first.item}
    pool.shutdown()
    assert backend.live == set()


def test_discarded_and_failed_items_are_destroyed_not_reused() -> None:
    backend = Backend()
    pool = backend.pool()
    with pool.lease() as discarded:
        discarded.discard()
    with pytest.raises(ValueError), pool.lease() as failed:
        raise ValueError("the execution broke the sandbox")
    assert backend.destroyed == [discarded.item, failed.item]
    assert backend.live == set() and pool.stats().idle == 0


def test_max_idle_zero_destroys_every_item_after_use() -> None:
    backend = Backend()
    pool = backend.pool(max_idle=0)
    items = []
    for _ in range(3):
        with pool.lease() as lease:
            assert not lease.reused
            items.append(lease.item)
    assert len(set(items)) == 3 and backend.live == set()


def test_concurrent_leases_never_keep_more_than_max_idle() -> None:
    backend = Backend()
    pool = backend.pool(max_idle=3)
    start = threading.Barrier(12)

    def use(_: int) -> int:
        start.wait()
        with pool.lease() as lease:
            time.sleep(0.02)
            return lease.item

    with ThreadPoolExecutor(12) as workers:
        used = list(workers.map(use, range(12)))
    stats = pool.stats()
    assert len(set(used)) == 12  # all twelve ran at once, so none could share
    assert stats.idle == 3 and stats.leased == 0
    assert len(backend.live) == 3 and stats.created - stats.destroyed == 3
    pool.shutdown()
    assert backend.live == set()


def test_idle_items_expire_on_their_own() -> None:
    backend = Backend()
    pool = backend.pool(idle_timeout=0.2)
    with pool.lease() as lease:
        pass
    assert backend.live == {lease.item}
    deadline = time.monotonic() + 10
    while backend.live and time.monotonic() < deadline:
        time.sleep(0.02)
    assert backend.live == set(), "the reaper did not destroy the idle item"
    with pool.lease() as fresh:
        assert not fresh.reused


def test_an_expired_item_is_never_handed_out() -> None:
    backend = Backend()
    pool = backend.pool(idle_timeout=0.05)
    with pool.lease() as old:
        pass
    # Whether the reaper or the lease gets there first, the old item must not come back.
    time.sleep(0.1)
    with pool.lease() as lease:
        assert lease.item != old.item and not lease.reused
    assert old.item in backend.destroyed


def test_shutdown_destroys_idle_now_and_leased_on_return() -> None:
    backend = Backend()
    pool = backend.pool()
    with pool.lease() as idle:
        pass
    with pool.lease() as other, pool.lease() as leased:
        assert other.item == idle.item
        pool.shutdown()
        assert backend.live == {leased.item, other.item}
    assert backend.live == set()
    with pytest.raises(PoolClosedError, match="shut down"), pool.lease():
        pass


def test_create_failure_propagates_and_leaves_nothing_leased() -> None:
    backend = Backend(fail_create=True)
    pool = backend.pool()
    with pytest.raises(RuntimeError, match="quota"), pool.lease():
        pass
    assert pool.stats().leased == 0


def test_destroy_failure_is_logged_and_swallowed(caplog: pytest.LogCaptureFixture) -> None:
    backend = Backend(fail_destroy=True)
    pool = backend.pool(max_idle=0)
    with pool.lease():
        pass
    assert any("could not destroy a test sandbox" in r.getMessage() for r in caplog.records)
    assert pool.stats().destroyed == 1


def test_pool_set_keeps_one_pool_per_key_and_renews_after_shutdown() -> None:
    backend = Backend()
    pools: PoolSet[int] = PoolSet()
    first = pools.get("config-a", backend.pool)
    assert pools.get("config-a", backend.pool) is first
    assert pools.get("config-b", backend.pool) is not first
    with first.lease():
        pass
    pools.shutdown()
    assert backend.live == set() and first.closed
    renewed = pools.get("config-a", backend.pool)
    assert renewed is not first and not renewed.closed


class PooledProvider:
    """A provider holding a pool, as a SaaS provider does."""

    def __init__(self) -> None:
        self.backend = Backend()
        self.pools: PoolSet[int] = PoolSet()
        self.shutdowns = 0

    @hookimpl
    def sandbox_config_schema(self) -> ConfigSchema:
        return ConfigSchema([])

    @hookimpl
    def sandbox_execute(self, request: ExecutionRequest, config: Mapping[str, Any]) -> ExecutionResult:
        pool = self.pools.get("only", self.backend.pool)
        with pool.lease() as lease:
            return ExecutionResult(status="success", stdout=f"{lease.item}\n", exit_code=0)

    @hookimpl
    def sandbox_shutdown(self) -> None:
        self.shutdowns += 1
        self.pools.shutdown()


class BrokenShutdownProvider(PooledProvider):
    @hookimpl
    def sandbox_shutdown(self) -> None:
        raise RuntimeError("cannot reach the backend")


def test_client_close_shuts_down_the_providers_it_used() -> None:
    registry = ProviderRegistry(discover=False)
    used, unused = PooledProvider(), PooledProvider()
    registry.register("pooled", used)
    registry.register("idle", unused)
    client = SandboxClient(provider="pooled", config={}, registry=registry)
    assert client.execute("x").stdout == client.execute("x").stdout  # the second reused the first
    assert len(used.backend.live) == 1

    client.close()

    assert used.shutdowns == 1 and used.backend.live == set()
    assert unused.shutdowns == 0


def test_registry_shutdown_reaches_loaded_providers_despite_a_broken_one(caplog: pytest.LogCaptureFixture) -> None:
    registry = ProviderRegistry(discover=False)
    broken, pooled = BrokenShutdownProvider(), PooledProvider()
    registry.register("a_broken", broken)
    registry.register("b_pooled", pooled)
    for name in ("a_broken", "b_pooled"):
        SandboxClient(provider=name, config={}, registry=registry).execute("x")

    registry.shutdown()

    assert pooled.backend.live == set() and pooled.shutdowns == 1
    assert any("'a_broken' failed to shut down" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


def test_pooled_sandboxes_are_released_when_the_process_exits(tmp_path: Path) -> None:
    """The process-wide registry shuts its providers down at exit, without anyone calling close()."""
    marker = tmp_path / "released"
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from sandbox_core import ExecutionResult, hookimpl
        from sandbox_core.client import execute_code
        from sandbox_core.registry import get_registry
        from sandbox_core.schema import ConfigField, ConfigSchema, Secret
        import sandbox_core.client as client_module

        class Provider:
            held = []

            @hookimpl
            def sandbox_config_schema(self):
                return ConfigSchema([])

            @hookimpl
            def sandbox_execute(self, request, config):
                self.held.append("sandbox")
                return ExecutionResult(status="success", exit_code=0)

            @hookimpl
            def sandbox_shutdown(self):
                Path({str(marker)!r}).write_text(f"released {{len(self.held)}}")

        get_registry().register("exiting", Provider())
        client_module._default_client = client_module.SandboxClient(provider="exiting", config={{}})
        assert execute_code("x").ok
        """
    )
    env = {**os.environ, "SANDBOX_DATABASE_URL": f"sqlite:///{tmp_path / 'unused.db'}"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env, check=False)
    assert done.returncode == 0, done.stderr
    assert marker.read_text() == "released 1"


def test_pool_config_fields_validate_like_any_schema() -> None:
    from sandbox_core.errors import ConfigValidationError
    from sandbox_core.pooling import pool_config_fields

    schema = ConfigSchema(pool_config_fields("files outside the job folder", default_size=3, max_size=4))
    assert schema.validate({}) == {"isolation": "pooled", "pool_size": 3, "pool_idle_timeout": 60.0}
    assert "files outside the job folder are shared" in schema.fields[0].description
    with pytest.raises(ConfigValidationError) as caught:
        schema.validate({"isolation": "shared", "pool_size": 5, "pool_idle_timeout": 0})
    assert set(caught.value.fields) == {"isolation", "pool_size", "pool_idle_timeout"}


# -- the retry rule: a reused item that failed before the code started --------------------------


class Vanished(Exception):
    """The item is gone (the backend deleted it while it was idle)."""


def _retry_if_vanished(exc: Exception) -> bool:
    return isinstance(exc, Vanished)


def test_a_reused_item_failing_before_the_code_started_is_replaced_once() -> None:
    backend = Backend()
    pool = backend.pool()
    with pool.lease() as warm:
        pass
    seen: list[tuple[int, bool, int | None]] = []

    def work(lease: Any) -> str:
        seen.append((lease.item, lease.reused, lease.replaced))
        if lease.item == warm.item:
            raise Vanished("sandbox not found")
        lease.mark_started()
        return "ran"

    assert pool.run(work, retry_if=_retry_if_vanished) == "ran"
    assert seen == [(warm.item, True, None), (warm.item + 1, False, warm.item)]
    assert warm.item in backend.destroyed and backend.live == {warm.item + 1}


def test_the_retry_takes_a_new_item_not_another_idle_one() -> None:
    backend = Backend()
    pool = backend.pool(max_idle=3)
    with pool.lease() as a, pool.lease() as b:
        pass
    used: list[int] = []

    def work(lease: Any) -> None:
        used.append(lease.item)
        if lease.reused:
            raise Vanished("gone")

    pool.run(work, retry_if=_retry_if_vanished)
    assert len(used) == 2 and used[1] not in (a.item, b.item)


@pytest.mark.parametrize("case", ["started", "new-item", "not-the-items-fault"])
def test_failures_are_not_retried_after_the_code_started_on_a_new_item_or_when_not_the_items_fault(case: str) -> None:
    backend = Backend()
    pool = backend.pool()
    if case != "new-item":
        with pool.lease():
            pass
    calls = 0

    def work(lease: Any) -> None:
        nonlocal calls
        calls += 1
        if case == "started":
            lease.mark_started()
        raise (RuntimeError("throttled") if case == "not-the-items-fault" else Vanished("gone"))

    with pytest.raises((Vanished, RuntimeError)):
        pool.run(work, retry_if=_retry_if_vanished)
    assert calls == 1
    assert backend.live == set()  # the failed item is destroyed, not kept


def test_a_second_failure_propagates() -> None:
    backend = Backend()
    pool = backend.pool()
    with pool.lease():
        pass

    def work(lease: Any) -> None:
        raise Vanished(f"item {lease.item} gone")

    with pytest.raises(Vanished, match="item 2 gone"):
        pool.run(work, retry_if=_retry_if_vanished)
    assert backend.live == set() and pool.stats().leased == 0


# -- items whose destruction failed ------------------------------------------------------------------


class Refusing(Backend):
    """A backend that refuses the first ``refusals`` destroys (throttling), then accepts."""

    def __init__(self, refusals: float) -> None:
        super().__init__()
        self.refusals = refusals
        self.tries = 0

    def destroy(self, item: int) -> None:
        self.tries += 1
        if self.tries <= self.refusals:
            raise RuntimeError("throttled")
        super().destroy(item)


def _wait(condition: Any, seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return bool(condition())


def test_pending_destroys_are_retried_until_they_succeed() -> None:
    backend = Refusing(refusals=2)
    pending: PendingDestroys[int] = PendingDestroys(backend.destroy, label=lambda i: f"sb-{i}", first_delay=0.05)
    item = backend.create()
    pending.add(item, give_up_after=60)
    assert pending.pending() == [f"sb-{item}"]
    assert _wait(lambda: not pending.pending())
    assert backend.live == set() and backend.tries == 3


def test_pending_destroys_give_up_at_their_deadline(caplog: pytest.LogCaptureFixture) -> None:
    backend = Refusing(refusals=float("inf"))
    pending: PendingDestroys[int] = PendingDestroys(backend.destroy, label=lambda i: f"sb-{i}", first_delay=0.05, name="test")
    pending.add(backend.create(), give_up_after=0.3)
    assert _wait(lambda: not pending.pending())
    assert backend.live == {1} and backend.tries >= 2
    assert any("gave up destroying test sandbox sb-1" in r.getMessage() for r in caplog.records)


def test_pool_set_shutdown_retries_pending_destroys_at_once() -> None:
    backend = Backend()
    pending: PendingDestroys[int] = PendingDestroys(backend.destroy, first_delay=3600)  # the thread would wait an hour
    pools: PoolSet[int] = PoolSet(pending=pending)
    pending.add(backend.create(), give_up_after=7200)

    pools.shutdown()

    assert backend.live == set() and pending.pending() == []


def test_runtime_template_maps_a_runtime_or_refuses_naming_the_mapped_ones() -> None:
    from sandbox_core.pooling import UnknownRuntimeError, runtime_template

    config = {"runtime_templates": {"python": "data-template", "node": "js-template"}}
    assert runtime_template(config, "python", "acme") == "data-template"
    with pytest.raises(UnknownRuntimeError, match="unknown runtime 'gpu': the acme config's runtime_templates has node, python"):
        runtime_template(config, "gpu", "acme")
    with pytest.raises(UnknownRuntimeError, match="has no runtime"):
        runtime_template({}, "python", "acme")
    with pytest.raises(UnknownRuntimeError, match="has no runtime"):
        runtime_template({"runtime_templates": "not a mapping"}, "python", "acme")


POOLED_SCHEMA = ConfigSchema(
    [ConfigField("api_key", "secret"), ConfigField("endpoint", "string"), ConfigField("label", "string"), *pool_config_fields("nothing")]
)


def test_config_key_tells_configs_apart_by_the_chosen_fields_and_never_holds_a_secret() -> None:
    config = POOLED_SCHEMA.validate({"api_key": "s3cret-value", "endpoint": "a", "label": "x"})
    key = config_key(config, ("api_key", "endpoint"))
    assert "s3cret-value" not in key and key == config_key(dict(config), ("endpoint", "api_key"))
    assert key == config_key({**config, "label": "y"}, ("api_key", "endpoint"))  # not a chosen field
    assert key != config_key({**config, "endpoint": "b"}, ("api_key", "endpoint"))
    assert key != config_key({**config, "api_key": Secret("another")}, ("api_key", "endpoint"))
    assert key == config_key({**config, "api_key": "s3cret-value"}, ("api_key", "endpoint"))  # revealed or not


def test_pool_set_derives_a_configs_pool_from_its_key_fields_and_pool_fields() -> None:
    backend = Backend()
    pools: PoolSet[int] = PoolSet(("api_key", "endpoint"), name="acme")
    config = POOLED_SCHEMA.validate({"api_key": "k", "endpoint": "a", "pool_size": 3, "pool_idle_timeout": 90})
    pool = pools.for_config(config, backend.create, backend.destroy)
    assert (pool.max_idle, pool.idle_timeout, pool.name) == (3, 90.0, "acme")
    assert pools.for_config({**config, "label": "other"}, backend.create, backend.destroy) is pool
    for changed in ({"api_key": Secret("k2")}, {"endpoint": "b"}, {"pool_size": 1}, {"pool_idle_timeout": 30.0}):
        assert pools.for_config({**config, **changed}, backend.create, backend.destroy) is not pool, changed
    strict = pools.for_config({**config, "isolation": "strict"}, backend.create, backend.destroy)
    assert strict is not pool and strict.max_idle == 0
    with strict.lease():
        pass
    assert backend.live == set()  # strict: destroyed when its lease ended
    pools.shutdown()


def test_open_sessions_end_all_at_shutdown_and_each_at_its_deadline(caplog: pytest.LogCaptureFixture) -> None:
    ended: list[str] = []
    sessions = OpenSessions("acme")

    def ender(handle: str) -> Any:
        def end() -> None:
            if handle == "broken":
                raise RuntimeError("backend said no")
            ended.append(handle)

        return end

    sessions.add("short", ender("short"), deadline=time.monotonic() + 0.2)
    sessions.add("long", ender("long"), deadline=time.monotonic() + 3600)
    sessions.add("closed", ender("closed"))
    sessions.add("broken", ender("broken"))
    sessions.discard("closed")
    assert _wait(lambda: ended == ["short"])
    assert sessions.handles() == ["broken", "long"]
    sessions.end_all()
    assert sorted(ended) == ["long", "short"] and sessions.handles() == []
    assert any("could not end acme session broken" in r.getMessage() for r in caplog.records)
