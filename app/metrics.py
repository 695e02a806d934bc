"""Prometheus metrics, one registry per app instance.

A registry per `create_app()` (rather than prometheus_client's process-global default) lets
tests build several apps in one process without "duplicated timeseries" errors. Subsystems add
their own collectors to `Metrics.registry` (see `app/delivery/metrics.py`).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    """The gateway's own counters; `/metrics` renders `registry`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.webhook_requests = Counter(
            "gateway_webhook_requests", "Webhook requests by outcome", ["outcome"], registry=r
        )
        self.updates_processed = Counter(
            "gateway_updates_processed", "Updates finished by the pipeline", ["outcome"], registry=r
        )
        self.update_failures = Counter(
            "gateway_update_failures", "Failed processing attempts by step", ["step"], registry=r
        )
        self.inbox_pending = Gauge(
            "gateway_inbox_pending", "Updates waiting or in progress", registry=r
        )
        self.ingest_batch_size = Histogram(
            "gateway_ingest_batch_size",
            "Updates committed per inbox transaction",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=r,
        )
        self.retry_queue = Counter(
            "gateway_storage_retry", "History-write retry queue events", ["event"], registry=r
        )
        self.agent_calls = Counter(
            "gateway_agent_calls", "Agent answers by source", ["source"], registry=r
        )
