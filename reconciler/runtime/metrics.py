"""Prometheus metrics of the scheduled loop: a registry of its own, served on 127.0.0.1 by default.

Updated from each tick's report; the values are the ones the tick saw, on the injected clock.
"""

from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from reconciler.engine.health import CONDITION_TYPES, condition_counts
from reconciler.runtime.ticks import TickReport

OUTCOMES = (
    "converged",
    "drift",
    "corrected",
    "partial",
    "blocked",
    "failed",
    "locked",
    "error",
)
DURATION_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, float("inf"))


class LoopMetrics:
    """The loop's gauges and counters; ``registry`` is never the global one."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.last_tick = Gauge(
            "reconciler_last_tick_timestamp_seconds",
            "When the last tick ended (unix seconds).",
            registry=r,
        )
        self.last_outcome = Gauge(
            "reconciler_last_tick_outcome",
            "1 for the outcome of the last tick, 0 for every other outcome.",
            ["outcome"],
            registry=r,
        )
        self.last_duration = Gauge(
            "reconciler_last_tick_duration_seconds", "How long the last tick took.", registry=r
        )
        self.durations = Histogram(
            "reconciler_tick_duration_seconds",
            "How long ticks take.",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.drifted = Gauge(
            "reconciler_drifted_objects",
            "Objects that differed from the manifests when the last tick observed the estate.",
            registry=r,
        )
        self.remaining = Gauge(
            "reconciler_drift_remaining_objects",
            "Objects still differing from the manifests after the last tick.",
            registry=r,
        )
        self.deferred = Gauge(
            "reconciler_actions_deferred",
            "Actions the last tick left for a maintenance window.",
            registry=r,
        )
        self.applied = Counter(
            "reconciler_actions_applied", "Actions applied by the loop.", registry=r
        )
        self.failed = Counter(
            "reconciler_actions_failed", "Actions the loop tried that failed.", registry=r
        )
        self.ticks = Counter("reconciler_ticks", "Ticks run, by outcome.", ["outcome"], registry=r)
        self.conditions = Gauge(
            "reconciler_conditions",
            "Unhealthy conditions the last tick observed, by type (docs/semantics.md, Conditions).",
            ["type"],
            registry=r,
        )
        self.skipped = Counter(
            "reconciler_ticks_skipped",
            "Ticks not run because the tick before overran the interval.",
            registry=r,
        )
        for outcome in OUTCOMES:
            self.last_outcome.labels(outcome=outcome).set(0)
            self.ticks.labels(outcome=outcome)
        for kind in CONDITION_TYPES:
            self.conditions.labels(type=kind).set(0)

    def tick_done(self, report: TickReport) -> None:
        self.last_tick.set(report.ended_at)
        for outcome in OUTCOMES:
            self.last_outcome.labels(outcome=outcome).set(1 if outcome == report.outcome else 0)
        self.last_duration.set(report.duration_seconds)
        self.durations.observe(report.duration_seconds)
        self.drifted.set(len(report.drifted))
        self.remaining.set(len(report.remaining))
        self.deferred.set(len(report.deferred))
        self.applied.inc(report.applied)
        self.failed.inc(report.failed)
        self.ticks.labels(outcome=report.outcome).inc()
        counts = condition_counts(report.notes)
        for kind in sorted(set(CONDITION_TYPES) | set(counts)):
            self.conditions.labels(type=kind).set(counts.get(kind, 0))

    def ticks_skipped(self, count: int) -> None:
        self.skipped.inc(count)


class MetricsServer:
    """``/metrics`` over HTTP on a daemon thread; port 0 picks a free port (see ``port``)."""

    def __init__(self, metrics: LoopMetrics, port: int, address: str = "127.0.0.1") -> None:
        server, thread = start_http_server(port, address, registry=metrics.registry)
        self._server: WSGIServer = server
        self._thread: threading.Thread = thread

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    @property
    def url(self) -> str:
        host = str(self._server.server_address[0])
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5.0)
