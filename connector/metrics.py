"""Every metric the worker exports, with its name and labels, in one place.

Metrics live in a registry owned by the worker (not the process-global one), so that tests can
run several workers in one process and read exact values.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_BYTES_BUCKETS = (1_000, 10_000, 50_000, 100_000, 250_000, 500_000, 750_000, 900_000, 1_048_576)
_RECORD_BUCKETS = (1, 5, 10, 50, 100, 250, 500, 1000, 2500, 5000)
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    """The worker's metrics. Names are prefixed `aep_connector_`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        p = "aep_connector_"
        self.records_consumed = Counter(
            p + "records_consumed", "Records read from Kafka.", ["topic"], registry=r
        )
        self.records_accepted = Counter(
            p + "records_accepted", "Messages the API accepted.", ["mapping"], registry=r
        )
        self.records_dead_lettered = Counter(
            p + "records_dead_lettered",
            "Records confirmed in the dead-letter topic.",
            ["stage", "reason"],
            registry=r,
        )
        self.records_skipped = Counter(
            p + "records_skipped",
            "Records not sent on purpose (filter, tombstone).",
            ["reason"],
            registry=r,
        )
        self.offset_rewinds = Counter(
            p + "offset_rewinds",
            "Times a partition's offsets went backwards (log truncation, offset reset) and "
            "it was processed again from its lowest unfinished offset.",
            registry=r,
        )
        self.field_warnings = Counter(
            p + "mapping_field_warnings",
            "Destination fields left out because their expression failed.",
            ["mapping"],
            registry=r,
        )
        self.requests = Counter(
            p + "requests", "Requests to the API by status code.", ["status"], registry=r
        )
        self.request_bytes = Histogram(
            p + "request_bytes", "Request body sizes.", buckets=_BYTES_BUCKETS, registry=r
        )
        self.request_records = Histogram(
            p + "request_records", "Messages per request.", buckets=_RECORD_BUCKETS, registry=r
        )
        self.request_latency = Histogram(
            p + "request_latency_seconds",
            "Time from sending a request to its answer.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.retries = Counter(
            p + "retries", "Requests retried, by reason.", ["reason"], registry=r
        )
        self.backoff_seconds = Counter(
            p + "backoff_seconds", "Time spent waiting before retries.", registry=r
        )
        self.splits = Counter(p + "batch_splits", "Batches split after 413/400.", registry=r)
        self.concurrency_limit = Gauge(
            p + "concurrency_limit",
            "Requests a connection may have in flight: the adaptive limit, or the fixed cap.",
            ["connection"],
            registry=r,
        )
        self.concurrency_decreases = Counter(
            p + "concurrency_decreases",
            "Times the adaptive limit fell, by reason (backpressure, rtt).",
            ["connection", "reason"],
            registry=r,
        )
        self.rate_limit_waits = Counter(
            p + "rate_limit_waits",
            "Requests that waited for the client-side rate limit.",
            ["connection"],
            registry=r,
        )
        self.rate_limit_wait_seconds = Counter(
            p + "rate_limit_wait_seconds",
            "Time requests spent waiting for the client-side rate limit.",
            ["connection"],
            registry=r,
        )
        self.in_flight_requests = Gauge(
            p + "in_flight_requests", "Requests awaiting an answer.", registry=r
        )
        self.in_flight_bytes = Gauge(
            p + "in_flight_bytes", "Bytes of requests awaiting an answer.", registry=r
        )
        self.buffered_records = Gauge(
            p + "buffered_records", "Messages buffered or in flight.", registry=r
        )
        self.buffered_bytes = Gauge(
            p + "buffered_bytes", "Bytes of messages buffered or in flight.", registry=r
        )
        self.paused_partitions = Gauge(
            p + "paused_partitions", "Partitions paused for backpressure.", registry=r
        )
        self.assigned_partitions = Gauge(
            p + "assigned_partitions", "Partitions assigned to this worker.", registry=r
        )
        self.token_renewals = Counter(
            p + "token_renewals", "OAuth tokens fetched.", ["reason"], registry=r
        )
        self.committed_offset = Gauge(
            p + "committed_offset",
            "Last committed offset per partition.",
            ["topic", "partition"],
            registry=r,
        )
        self.consumer_lag = Gauge(
            p + "consumer_lag",
            "High watermark minus committed position, per partition.",
            ["topic", "partition"],
            registry=r,
        )
        self.commits = Counter(p + "commits", "Offset commits, by result.", ["result"], registry=r)
        self.breaker_open = Gauge(
            p + "dead_letter_breaker_open",
            "1 when the dead-letter circuit breaker has tripped.",
            registry=r,
        )
        self.halted = Gauge(p + "halted", "1 when the worker has halted.", registry=r)
        self.receipts_produced = Counter(
            p + "receipts_produced",
            "Delivery receipts confirmed in the receipts topic.",
            registry=r,
        )
        self.receipts_failed = Counter(
            p + "receipts_failed",
            "Delivery receipts that could not be delivered, by reason (delivery: Kafka "
            "refused or timed out; queue_full: the producer's queue was full).",
            ["reason"],
            registry=r,
        )
