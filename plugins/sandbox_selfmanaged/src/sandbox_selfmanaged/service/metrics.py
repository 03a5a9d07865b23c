"""Prometheus metrics of one executor: executions by status, latency, pools, rejections."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class _PoolCollector(Collector):
    """Reads pool and queue gauges at scrape time, so they are never stale."""

    def __init__(self, health: Callable[[], Mapping[str, Any]], queue: Callable[[], Mapping[str, int]]) -> None:
        self._health = health
        self._queue = queue

    def collect(self) -> Iterator[Any]:
        health = self._health()
        up = GaugeMetricFamily("sandbox_executor_up", "1 when the executor can produce sandboxes")
        up.add_metric([], 1.0 if health.get("healthy") else 0.0)
        yield up
        gauges = {
            key: GaugeMetricFamily(f"sandbox_executor_pool_{key}", help_text, labels=["language"])
            for key, help_text in (
                ("ready", "Warm sandboxes ready to take an execution"),
                ("target", "Warm sandboxes the pool keeps ready"),
                ("booting", "Sandboxes being booted"),
                ("waiting", "Executions waiting for a sandbox"),
                ("busy", "Sandboxes running an execution"),
            )
        }
        boots = CounterMetricFamily("sandbox_executor_boots", "Sandbox boots that succeeded", labels=["language"])
        failures = CounterMetricFamily("sandbox_executor_boot_failures", "Sandbox boots that failed", labels=["language"])
        for language, entry in (health.get("languages") or {}).items():
            pool = entry.get("pool")
            if not pool:
                continue
            for key, family in gauges.items():
                family.add_metric([language], float(pool.get(key, 0)))
            boots.add_metric([language], float(pool.get("boots", 0)))
            failures.add_metric([language], float(pool.get("boot_failures", 0)))
        yield from gauges.values()
        yield boots
        yield failures
        queue = self._queue()
        for key, help_text in (
            ("running", "Executions holding a slot"),
            ("queued", "Requests waiting for a slot"),
            ("body_bytes_held", "Request body bytes held by the requests in progress (see --max-held-request-bytes)"),
        ):
            family = GaugeMetricFamily(f"sandbox_executor_requests_{key}", help_text)
            family.add_metric([], float(queue.get(key, 0)))
            yield family


class Metrics:
    """The executor's metrics, in a registry of their own (not the process-global one)."""

    def __init__(self, health: Callable[[], Mapping[str, Any]], queue: Callable[[], Mapping[str, int]]) -> None:
        self.registry = CollectorRegistry()
        self.executions = Counter(
            "sandbox_executor_executions", "Executions by language and result status", ["language", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "sandbox_executor_execution_seconds",
            "Time from a request being admitted to its result, by language",
            ["language"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.rejections = Counter(
            "sandbox_executor_rejections",
            "Requests refused, by reason (queue_full, unavailable: 503; body_budget: 503, body_too_large: 413, slow_body: 408)",
            ["reason"],
            registry=self.registry,
        )
        self.egress_connections = Counter(
            "sandbox_executor_egress_connections",
            "Connection attempts of sandboxes through the egress proxy, by outcome (allowed, refused)",
            ["outcome"],
            registry=self.registry,
        )
        self.egress_bytes = Counter(
            "sandbox_executor_egress_bytes",
            "Bytes through egress tunnels, by direction (sent, received)",
            ["direction"],
            registry=self.registry,
        )
        self.registry.register(_PoolCollector(health, queue))

    def count_egress(self, report: Any) -> None:
        """Add one execution's egress report (its result's ``metadata["egress"]``, if any)."""
        if not isinstance(report, Mapping):
            return
        for outcome in ("allowed", "refused"):
            self.egress_connections.labels(outcome).inc(report.get(outcome, 0))
        for direction in ("sent", "received"):
            self.egress_bytes.labels(direction).inc(report.get(f"bytes_{direction}", 0))

    def render(self) -> bytes:
        return generate_latest(self.registry)
