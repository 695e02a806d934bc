"""Delivery counters on the app's registry (`app.metrics.Metrics.registry`)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class DeliveryMetrics:
    """What an operator watches: throughput, retries, Telegram pushing back, and give-ups."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.sent = Counter("delivery_sent", "Message parts delivered to Telegram", registry=r)
        self.retried = Counter(
            "delivery_retried", "Part sends retried after a transient error", ["reason"], registry=r
        )
        self.rate_limited = Counter(
            "delivery_rate_limited", "429 answers received, by scope", ["scope"], registry=r
        )
        self.parked = Counter(
            "delivery_parked", "Parts parked after exhausting retries", registry=r
        )
        self.permanently_failed = Counter(
            "delivery_permanently_failed",
            "Parts not sent because of a permanent error",
            ["reason"],
            registry=r,
        )
        self.plain_fallback = Counter(
            "delivery_plain_fallback", "Parts resent as plain text after a markup error", registry=r
        )
        self.hook_failures = Counter(
            "delivery_hook_failures", "on_delivered hook calls that raised", registry=r
        )
        self.queued = Gauge("delivery_parts_queued", "Parts waiting to be sent", registry=r)
        # The window in which a crash re-sends a message: from Telegram's answer to the commit.
        self.record_seconds = Histogram(
            "delivery_record_seconds",
            "Seconds from Telegram accepting a part to its send being committed",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
            registry=r,
        )
