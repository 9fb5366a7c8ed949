"""The worker: one record's path from poll to commit, wired together.

    consume ─▶ decode ─▶ map (one message per matching mapping) ─▶ envelope ─▶ batch (lane)
      ─▶ send (sender threads, bounded in flight) ─▶ accepted | rejected ─▶ dead-letter topic
      ─▶ offset tracker ─▶ commit

Everything but the HTTP requests runs on this one thread, including the Kafka callbacks
(rebalance, commit and dead-letter delivery reports), so the tracker needs no locks. Sender
threads only hand back results, which this thread applies.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from prometheus_client import Counter

from connector.deadletter import CircuitBreaker, DeadLetterWriter, context_headers
from connector.delivery.auth import TokenProvider
from connector.delivery.backoff import BackoffPolicy
from connector.delivery.batcher import (
    FRAMING_BYTES,
    Batch,
    Batcher,
    OutboundMessage,
    request_size,
)
from connector.delivery.sender import ApiHealth, DeliveryResult, Interrupted, Sender
from connector.delivery.transport import build_http_client
from connector.errors import HaltError, PoisonError, RetryableError
from connector.kafka_errors import halt_reason
from connector.logs import get_logger
from connector.mapping import CompiledMapping, MappingFailure
from connector.metrics import Metrics
from connector.offsets import OffsetTracker, PartitionState
from connector.records import RecordMeta, SourceRecord
from connector.settings import API_MAX_REQUEST_BYTES, Settings
from connector.source.decode import (
    ConfluentAvroDecoder,
    Decoder,
    FixedAvroDecoder,
    RegistrySchemas,
    decode_json,
)

log = get_logger("worker")

EXIT_OK = 0
EXIT_HALT = 3
DECODE_RETRY_LIMIT_S = 60.0  # a schema registry down longer than this halts the worker


@dataclass(slots=True)
class Route:
    """What to do with records of one topic: how to decode them and which mappings apply.

    It also holds the topic's consumed-records counter: looking a labelled metric up costs
    about a microsecond, too much to pay for every record."""

    decoder: Decoder
    mappings: list[CompiledMapping]
    consumed: Counter  # records_consumed{topic=…}


def consumer_config(settings: Settings) -> dict[str, Any]:
    kafka = settings.kafka
    config: dict[str, Any] = {
        "bootstrap.servers": kafka.bootstrap_servers,
        "group.id": kafka.group_id,
        "client.id": kafka.client_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "partition.assignment.strategy": "cooperative-sticky",
        "auto.offset.reset": kafka.auto_offset_reset,
        "session.timeout.ms": kafka.session_timeout_ms,
        "max.poll.interval.ms": kafka.max_poll_interval_ms,
        # librdkafka prefetches up to 64 MB per consumer by default; keep memory bounded.
        "queued.max.messages.kbytes": 16_384,
        # When that queue is full, librdkafka waits this long before fetching again. Its
        # default, 1 s, is longer than the worker takes to empty 16 MB: the worker sat idle
        # until the next fetch (see docs/performance.md).
        "fetch.queue.backoff.ms": 20,
        **kafka.properties,
        **{k: v.get_secret_value() for k, v in kafka.secret_properties.items()},
    }
    return config


def producer_config(settings: Settings) -> dict[str, Any]:
    kafka = settings.kafka
    consumer_only = {
        "group.id",
        "enable.auto.commit",
        "enable.auto.offset.store",
        "partition.assignment.strategy",
        "auto.offset.reset",
        "session.timeout.ms",
        "max.poll.interval.ms",
        "queued.max.messages.kbytes",
    }
    return {
        k: v
        for k, v in consumer_config(settings).items()
        if k not in consumer_only and not k.startswith(("fetch.", "group."))
    } | {"client.id": f"{kafka.client_id}-dlq"}


class Worker:
    """Runs the path until stopped (exit 0) or halted (exit 3)."""

    def __init__(
        self,
        settings: Settings,
        mappings: list[CompiledMapping],
        metrics: Metrics | None = None,
        consumer_factory: Callable[[dict[str, Any]], Any] = Consumer,
        dead_letters: DeadLetterWriter | None = None,
        http: httpx.Client | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.mappings = mappings
        self.metrics = metrics or Metrics()
        self.clock = clock
        self.wall_clock = wall_clock
        batching = settings.batching
        self.tracker = OffsetTracker()
        self.batcher = Batcher(
            batching.max_request_bytes, batching.max_records, batching.linger_ms / 1000, clock
        )
        self.ready: deque[Batch] = deque()
        self.in_flight: dict[concurrent.futures.Future[DeliveryResult], Batch] = {}
        self.busy_lanes: set[object] = set()
        self.breaker = CircuitBreaker(
            settings.dead_letter.max_ratio,
            settings.dead_letter.window,
            settings.dead_letter.max_consecutive,
        )
        self.routes: dict[str, Route] = {}
        self._ordered = batching.ordering == "partition"
        # Metric children used per record or per batch, looked up once (see Route).
        self._filtered = self.metrics.records_skipped.labels("filter")
        self._warnings_by_mapping: dict[str, Counter] = {}
        self._accepted_by_mapping: dict[str, Counter] = {}
        self._avro: ConfluentAvroDecoder | None = None
        self._fixed_avro: dict[Path, FixedAvroDecoder] = {}

        self.stop_requested = threading.Event()  # SIGTERM/SIGINT
        self.senders_stop = threading.Event()  # senders give up retrying
        self.halt_reason: str | None = None
        self.paused = False
        self.joined = False
        self.last_turn = clock()
        self.api_health = ApiHealth(clock)
        self._last_commit = clock()
        self._closing = False
        self._refetch_logged = False

        self.consumer = consumer_factory(
            consumer_config(settings)
            | {"on_commit": self._on_commit, "error_cb": self._on_consumer_error}
        )
        self.dead_letters = dead_letters or DeadLetterWriter(
            producer_config(settings), settings.dead_letter.topic, self.metrics
        )
        self.http = http or build_http_client(
            settings.platform, batching.max_in_flight_requests + 1
        )
        tokens = TokenProvider(settings.platform.auth, self.http, clock, self.metrics)
        retry = settings.retry
        self.sender = Sender(
            self.http,
            settings.platform,
            tokens,
            BackoffPolicy(
                retry.initial_backoff_ms / 1000,
                retry.max_backoff_ms / 1000,
                retry.max_retry_after_s,
            ),
            self.senders_stop,
            self.metrics,
            self.api_health,
            wall_clock,
        )
        self.executor = concurrent.futures.ThreadPoolExecutor(
            batching.max_in_flight_requests, thread_name_prefix="sender"
        )

    # ------------------------------------------------------------------ the loop

    def run(self) -> int:
        """Consume until stopped or halted; returns the process exit status."""
        try:
            self.dead_letters.check_topic()
            self._subscribe()
            while not self.stop_requested.is_set():
                self._turn()
        except HaltError as exc:
            return self._halt(str(exc))
        except KafkaException as exc:
            return self._halt(f"Kafka client error: {exc}")
        try:
            return self._shutdown()
        except HaltError as exc:
            return self._halt(str(exc))

    def _subscribe(self) -> None:
        topics = sorted({t for m in self.mappings for t in m.source_topics})
        patterns = sorted(
            {_anchored(m.topic_pattern.pattern) for m in self.mappings if m.topic_pattern}
        )
        self.consumer.subscribe(
            topics + patterns,
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        log.info(
            "subscribed",
            extra={
                "fields": {"topics": topics, "patterns": patterns, "mappings": len(self.mappings)}
            },
        )

    def _turn(self) -> None:
        """One iteration: take records, send what is due, apply results, commit."""
        kafka = self.settings.kafka
        timeout = kafka.consume_timeout_ms / 1000
        due_in = self.batcher.next_due_in()
        if due_in is not None or self.in_flight or self.ready:
            timeout = min(timeout, max(due_in or 0.0, 0.005))
        messages = self.consumer.consume(kafka.consume_batch_size, timeout)
        self._raise_if_halted()
        if messages:
            now_ms = int(self.wall_clock() * 1000)
            for message in messages:
                self._take(message, now_ms)
        self._dispatch()
        self._collect()
        self.dead_letters.poll()
        self.breaker.raise_if_open()
        self._backpressure()
        if self.clock() - self._last_commit >= kafka.commit_interval_ms / 1000:
            self._commit(asynchronous=True)
        self.last_turn = self.clock()

    def _raise_if_halted(self) -> None:
        if self.halt_reason is not None:
            raise HaltError(self.halt_reason)

    def _on_consumer_error(self, error: KafkaError) -> None:
        """Client errors (failed logins, brokers down) come here, not through consume(); it
        runs inside consume(), on this thread, which then halts if a reason was set."""
        reason = halt_reason(error)
        if reason is not None:
            self.halt_reason = self.halt_reason or reason
            return
        log.warning("consumer error", extra={"fields": {"error": str(error)}})

    # ------------------------------------------------------------------ one record

    def _take(self, message: Message, now_ms: int) -> None:
        error = message.error()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                return
            reason = halt_reason(error)  # fatal, or one no retry fixes (authentication)
            if reason is not None:
                raise HaltError(reason)
            log.warning("consumer error", extra={"fields": {"error": str(error)}})
            return
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        if topic is None or partition is None or offset is None:
            return
        state = self.tracker.state((topic, partition))
        if state is None:  # a record of a partition no longer assigned: its owner reads it
            return
        if offset <= state.last_added:
            # The client fetched a range again (seen after pause/resume): this record is
            # already on its way; taking it twice would only send a duplicate.
            self.metrics.records_skipped.labels("refetched").inc()
            if not self._refetch_logged:
                self._refetch_logged = True
                log.warning(
                    "consumer delivered an offset again; skipping re-fetched records",
                    extra={
                        "fields": {
                            "partition": f"{topic}/{partition}",
                            "offset": offset,
                            "last": state.last_added,
                        }
                    },
                )
            return
        kind, timestamp = message.timestamp()
        headers = message.headers()
        record = SourceRecord(
            topic,
            partition,
            offset,
            timestamp if kind else None,
            message.key(),
            message.value(),
            _headers(headers) if headers else (),
        )
        route = self.routes.get(topic) or self._route(topic)
        route.consumed.inc()
        if record.value is None:
            if self.settings.dead_letter.tombstones == "skip":
                self.metrics.records_skipped.labels("tombstone").inc()
                state.add(offset, 0)
            else:
                state.add(offset, 1)
                self._dead_letter(
                    record, state, PoisonError("decode", "tombstone (null value)", "tombstone")
                )
            return
        try:
            value = self._decode(route.decoder, record.value)
        except PoisonError as exc:
            state.add(offset, 1)
            self._dead_letter(record, state, exc)
            return

        meta = RecordMeta.of(record)
        outbound: list[OutboundMessage] = []
        poisoned: list[tuple[PoisonError, str]] = []
        for mapping in route.mappings:
            try:
                result = mapping.apply(value, meta)
            except MappingFailure as exc:
                poisoned.append((PoisonError("map", str(exc), "mapping_failure"), mapping.name))
                continue
            if result.warnings:
                self._field_warnings(mapping.name).inc(len(result.warnings))
            if result.entity is None:
                self._filtered.inc()
                continue
            try:
                body = mapping.envelope(result.entity, now_ms)
            except (TypeError, ValueError) as exc:  # a value JSON cannot represent
                poisoned.append((PoisonError("map", f"envelope: {exc}", "envelope"), mapping.name))
                continue
            if len(body) + FRAMING_BYTES > API_MAX_REQUEST_BYTES:  # alone in a request
                poisoned.append(
                    (
                        PoisonError(
                            "validate",
                            f"message of {len(body)} bytes exceeds the API's 1 MB request limit",
                            "too_large",
                        ),
                        mapping.name,
                    )
                )
                continue
            connection = mapping.connection_id
            assert connection is not None  # checked when the worker was built
            outbound.append(OutboundMessage(body, record, state, mapping.name, connection))

        state.add(offset, len(outbound) + len(poisoned))
        for poison, name in poisoned:
            self._dead_letter(record, state, poison, name)
        for item in outbound:
            connection = item.connection_id
            lane = (connection, topic, partition) if self._ordered else (connection,)
            closed = self.batcher.add(lane, item)
            if closed:
                self.ready.extend(closed)

    def _field_warnings(self, mapping: str) -> Counter:
        counter = self._warnings_by_mapping.get(mapping)
        if counter is None:
            counter = self._warnings_by_mapping[mapping] = self.metrics.field_warnings.labels(
                mapping
            )
        return counter

    def _route(self, topic: str) -> Route:
        route = self.routes.get(topic)
        if route is None:
            chosen = [m for m in self.mappings if m.matches(topic)]
            if not chosen:
                raise HaltError(f"no mapping selects topic {topic!r}")
            formats = {(m.source_format, m.schema_path) for m in chosen}
            if len(formats) > 1:
                raise HaltError(
                    f"mappings {[m.name for m in chosen]} read topic {topic!r} in different formats"
                )
            route = Route(
                self._decoder_for(chosen[0]), chosen, self.metrics.records_consumed.labels(topic)
            )
            self.routes[topic] = route
        return route

    def _decoder_for(self, mapping: CompiledMapping) -> Decoder:
        if mapping.source_format == "json":
            return decode_json
        if mapping.source_format == "avro-schema":
            assert mapping.schema_path is not None
            path = mapping.schema_path
            if path not in self._fixed_avro:
                self._fixed_avro[path] = FixedAvroDecoder(path)
            return self._fixed_avro[path]
        if self._avro is None:
            kafka = self.settings.kafka
            if not kafka.schema_registry_url:
                raise HaltError(f"mapping {mapping.name} reads Avro but no schema registry is set")
            config = {
                "url": kafka.schema_registry_url,
                **kafka.schema_registry_properties,
                **{
                    k: v.get_secret_value()
                    for k, v in kafka.schema_registry_secret_properties.items()
                },
            }
            self._avro = ConfluentAvroDecoder(RegistrySchemas(config))
        return self._avro

    def _decode(self, decoder: Decoder, value: bytes) -> Any:
        """Decode, riding out a schema registry outage (it is not the record's fault)."""
        give_up_at = self.clock() + DECODE_RETRY_LIMIT_S
        attempt = 0
        while True:
            try:
                return decoder(value)
            except RetryableError as exc:
                attempt += 1
                if self.clock() >= give_up_at:
                    raise HaltError(f"decoding kept failing: {exc}") from None
                log.warning("decode retry", extra={"fields": {"error": str(exc)}})
                delay = min(2.0 ** min(attempt, 5) * 0.1, 5.0)
                if self.stop_requested.wait(delay):
                    raise HaltError(f"stopped while decoding kept failing: {exc}") from None

    def _dead_letter(
        self,
        record: SourceRecord,
        state: PartitionState,
        error: PoisonError,
        mapping: str | None = None,
        attempts: int = 0,
    ) -> None:
        headers = context_headers(
            record,
            error.stage,
            error.reason,
            str(error),
            mapping,
            error.status,
            error.api_message,
            attempts,
        )
        fields: dict[str, object] = {
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "stage": error.stage,
            "reason": error.reason,
            "status": error.status,
            "mapping": mapping,
        }
        if log.isEnabledFor(logging.DEBUG):
            # Error texts can quote field values (a record's payload): only at DEBUG.
            fields["error"] = str(error)[:300]
        log.warning("dead-lettering record", extra={"fields": fields})
        offset = record.offset

        def confirmed() -> None:
            state.finish(offset)
            self.breaker.record(True)

        self.dead_letters.send(record, headers, (error.stage, error.reason), confirmed)

    # ------------------------------------------------------------------ sending

    def _dispatch(self) -> None:
        """Start requests for ready batches while slots are free, one per lane at a time."""
        # A lingering batch of a busy lane (a request in flight, or a batch already queued)
        # is left open: it could not be sent before its lane frees anyway, and meanwhile it
        # keeps filling instead of waiting, closed and half empty. Under load requests go out
        # nearly full; other lanes' batches still close after linger_ms and queue in order.
        busy = self.busy_lanes.union(batch.lane for batch in self.ready)
        self.ready.extend(self.batcher.due(busy))
        free = self.settings.batching.max_in_flight_requests - len(self.in_flight)
        if not self.ready or free <= 0:
            return
        waiting: deque[Batch] = deque()
        while self.ready:
            batch = self.ready.popleft()
            if free > 0 and batch.lane not in self.busy_lanes:
                future = self.executor.submit(self.sender.deliver, batch)
                self.in_flight[future] = batch
                self.busy_lanes.add(batch.lane)
                free -= 1
            else:
                waiting.append(batch)
        self.ready = waiting
        self.metrics.in_flight_requests.set(len(self.in_flight))

    def _collect(self) -> None:
        """Apply the results of finished requests."""
        for future in [f for f in self.in_flight if f.done()]:
            batch = self.in_flight.pop(future)
            self.busy_lanes.discard(batch.lane)
            try:
                result = future.result()
            except (Interrupted, concurrent.futures.CancelledError):
                continue  # shutting down: these records stay unfinished and uncommitted
            accepted: dict[str, int] = {}  # per mapping, counted once per batch
            for message in result.accepted:
                if message.state.active:
                    accepted[message.mapping] = accepted.get(message.mapping, 0) + 1
                    message.state.finish(message.record.offset)
                    self.breaker.record(False)
            for mapping, count in accepted.items():
                self._accepted(mapping).inc(count)
            for message, rejection, attempts in result.rejected:
                if message.state.active:
                    error = PoisonError(
                        "api",
                        f"API rejected the message ({rejection.status}): {rejection.message}",
                        "api_rejected",
                        status=rejection.status,
                        api_message=rejection.message,
                    )
                    self._dead_letter(
                        message.record, message.state, error, message.mapping, attempts
                    )
        self.metrics.in_flight_requests.set(len(self.in_flight))

    def _accepted(self, mapping: str) -> Counter:
        counter = self._accepted_by_mapping.get(mapping)
        if counter is None:
            counter = self._accepted_by_mapping[mapping] = self.metrics.records_accepted.labels(
                mapping
            )
        return counter

    # ------------------------------------------------------------------ flow control

    def buffered(self) -> tuple[int, int]:
        """Messages and bytes buffered, ready or in flight, plus unconfirmed dead letters."""
        records = self.batcher.buffered_records + self.dead_letters.pending
        size = self.batcher.buffered_bytes
        for batch in (*self.ready, *self.in_flight.values()):
            records += len(batch.messages)
            size += batch.size
        return records, size

    def _backpressure(self) -> None:
        batching = self.settings.batching
        records, size = self.buffered()
        self.metrics.buffered_records.set(records)
        self.metrics.buffered_bytes.set(size)
        self.metrics.in_flight_bytes.set(sum(b.size for b in self.in_flight.values()))
        over = records >= batching.max_buffered_records or size >= batching.max_buffered_bytes
        if over and not self.paused:
            self._set_paused(True)
        elif self.paused and (
            records < batching.max_buffered_records // 2 and size < batching.max_buffered_bytes // 2
        ):
            self._set_paused(False)

    def _set_paused(self, paused: bool) -> None:
        assignment = self.consumer.assignment()
        if paused:
            self.consumer.pause(assignment)
        else:
            self.consumer.resume(assignment)
            self._restart_fetching(assignment)
        self.paused = paused
        self.metrics.paused_partitions.set(len(assignment) if paused else 0)
        log.info(
            "consumption paused" if paused else "consumption resumed",
            extra={"fields": {"partitions": len(assignment)}},
        )

    def _restart_fetching(self, partitions: list[TopicPartition]) -> None:
        """Make the client fetch resumed partitions now.

        librdkafka notices a resumed partition only when its broker thread next wakes up: data
        came back a whole second after the pause, however short (docs/performance.md).
        Seeking each partition to where this worker left off wakes that thread at once; the
        position is the same, so no record is skipped or read twice.
        """
        for tp in self.consumer.position(partitions):
            if tp.offset < 0:  # nothing consumed from it yet: its first fetch is on its way
                continue
            try:
                self.consumer.seek(tp)
            except KafkaException as exc:  # e.g. not being fetched yet; it starts by itself
                log.debug("seek after resume failed", extra={"fields": {"error": str(exc)}})

    # ------------------------------------------------------------------ offsets

    def _commit(self, asynchronous: bool, keys: list[tuple[str, int]] | None = None) -> None:
        self._last_commit = self.clock()
        positions = self.tracker.commit_positions(keys)
        if not positions:
            return
        offsets = [TopicPartition(t, p, o) for (t, p), o in positions.items()]
        if asynchronous:
            self.consumer.commit(offsets=offsets, asynchronous=True)
            return
        try:
            committed = self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            self.metrics.commits.labels("error").inc()
            log.warning("synchronous commit failed", extra={"fields": {"error": str(exc)}})
            return
        self._on_commit(None, committed or [])

    def _on_commit(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        if error is not None:
            self.metrics.commits.labels("error").inc()
            log.warning("commit failed", extra={"fields": {"error": str(error)}})
            return
        done = {
            (tp.topic, tp.partition): tp.offset
            for tp in partitions
            if tp.error is None and tp.offset >= 0
        }
        self.tracker.mark_committed(done)
        self.metrics.commits.labels("ok").inc()
        for (topic, partition), offset in done.items():
            self.metrics.committed_offset.labels(topic, str(partition)).set(offset)
            # The high watermark from the last fetch response: no request to the broker.
            _low, high = self.consumer.get_watermark_offsets(
                TopicPartition(topic, partition), cached=True
            )
            if high is not None and high >= 0:
                lag = max(0, high - offset)
                self.metrics.consumer_lag.labels(topic, str(partition)).set(lag)
        log.debug(
            "committed",
            extra={"fields": {"offsets": {f"{t}/{p}": o for (t, p), o in done.items()}}},
        )

    # ------------------------------------------------------------------ rebalancing

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self.joined = True
        for tp in partitions:
            self.tracker.assign((tp.topic, tp.partition))
        if self.paused and partitions:
            consumer.pause(partitions)
        self.metrics.assigned_partitions.set(len(self.tracker.keys()))
        log.info(
            "partitions assigned",
            extra={"fields": {"partitions": [f"{tp.topic}/{tp.partition}" for tp in partitions]}},
        )

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        keys = [(tp.topic, tp.partition) for tp in partitions]
        try:
            if self.halt_reason is None:
                # Let their requests finish, within a bound below the session timeout.
                deadline = self.clock() + min(
                    self.settings.ops.shutdown_timeout_s,
                    self.settings.kafka.session_timeout_ms / 2000,
                )
                self._finish_partitions(set(keys), deadline)
            self._commit(asynchronous=False, keys=keys)  # only finished offsets, in any case
        except HaltError as exc:
            self.halt_reason = self.halt_reason or str(exc)
        finally:
            self._forget(keys)
        log.info(
            "partitions revoked", extra={"fields": {"partitions": [f"{t}/{p}" for t, p in keys]}}
        )

    def _on_lost(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        keys = [(tp.topic, tp.partition) for tp in partitions]
        self._forget(keys)  # another member may own them already: commit nothing
        log.warning(
            "partitions lost", extra={"fields": {"partitions": [f"{t}/{p}" for t, p in keys]}}
        )

    def _finish_partitions(self, keys: set[tuple[str, int]], deadline: float) -> None:
        """Drop unsent messages of `keys`, then wait (until `deadline`) for their requests."""

        def not_revoked(message: OutboundMessage) -> bool:
            return message.state.key not in keys

        self.batcher.drop(not_revoked)
        for batch in self.ready:
            batch.messages = [m for m in batch.messages if not_revoked(m)]
            batch.size = request_size([m.body for m in batch.messages])
        self.ready = deque(b for b in self.ready if b.messages)

        def involved() -> list[concurrent.futures.Future[DeliveryResult]]:
            return [
                f for f, b in self.in_flight.items() if any(m.state.key in keys for m in b.messages)
            ]

        while (waiting := involved()) and self.clock() < deadline:
            concurrent.futures.wait(waiting, timeout=min(0.1, max(0.0, deadline - self.clock())))
            self._collect()
            self.dead_letters.poll()
        self.dead_letters.flush(max(0.0, deadline - self.clock()))

    def _forget(self, keys: Iterable[tuple[str, int]]) -> None:
        keys = set(keys)
        for key in keys:
            self.tracker.release(key)
        self.batcher.drop(lambda m: m.state.key not in keys)
        for batch in self.ready:
            batch.messages = [m for m in batch.messages if m.state.key not in keys]
        self.ready = deque(b for b in self.ready if b.messages)
        self.metrics.assigned_partitions.set(len(self.tracker.keys()))

    # ------------------------------------------------------------------ ending

    def _shutdown(self) -> int:
        """Stop fetching, flush, wait for in-flight requests (bounded), commit, close."""
        log.info("shutting down", extra={"fields": {"pending": self.tracker.pending}})
        deadline = self.clock() + self.settings.ops.shutdown_timeout_s
        self.ready.extend(self.batcher.flush())
        while (self.ready or self.in_flight) and self.clock() < deadline:
            self._dispatch()
            if self.in_flight:
                concurrent.futures.wait(
                    list(self.in_flight),
                    timeout=min(0.1, max(0.0, deadline - self.clock())),
                    return_when=concurrent.futures.FIRST_COMPLETED,
                )
            self._collect()
            self.dead_letters.poll()
        self.senders_stop.set()
        self.executor.shutdown(wait=True, cancel_futures=True)
        self._collect()
        self.dead_letters.flush(max(1.0, deadline - self.clock()))
        self._commit(asynchronous=False)
        self._close()
        log.info("stopped", extra={"fields": {"unfinished": self.tracker.pending}})
        return EXIT_OK

    def _halt(self, reason: str) -> int:
        """Stop at once; commit only what is finished; exit non-zero for a restart."""
        self.halt_reason = reason
        self.metrics.halted.set(1)
        self.metrics.breaker_open.set(1 if self.breaker.tripped else 0)
        log.error(f"halted: {reason}", extra={"fields": {"reason": reason}})
        self.senders_stop.set()
        self.executor.shutdown(wait=True, cancel_futures=True)
        for future in self.in_flight:
            try:
                accepted = future.result(timeout=0).accepted
            except Exception:  # noqa: S112 - interrupted, cancelled or the halt itself
                continue
            for message in accepted:
                if message.state.active:
                    message.state.finish(message.record.offset)
        with contextlib.suppress(HaltError):
            self.dead_letters.flush(5.0)
        self._commit(asynchronous=False)
        self._close()
        return EXIT_HALT

    def _close(self) -> None:
        self._closing = True
        try:
            self.consumer.close()
        except (KafkaException, RuntimeError) as exc:
            log.warning("consumer close failed", extra={"fields": {"error": str(exc)}})
        self.http.close()

    # ------------------------------------------------------------------ probes

    def liveness(self) -> tuple[bool, str]:
        idle = self.clock() - self.last_turn
        if idle > self.settings.ops.liveness_timeout_s:
            return False, f"main loop has not turned for {idle:.0f} s"
        return True, "ok"

    def readiness(self) -> tuple[bool, str]:
        if self.halt_reason is not None:
            return False, f"halted: {self.halt_reason}"
        if not self.joined:
            return False, "not yet in the consumer group"
        failing = self.api_health.failing_since
        if failing is not None:
            span = self.clock() - failing
            if span > self.settings.ops.readiness_api_failure_s:
                return False, f"the API has been failing for {span:.0f} s"
        return True, "ok"


def _headers(
    headers: list[tuple[str, str | bytes | None]] | dict[str, str | bytes | None] | None,
) -> tuple[tuple[str, bytes | None], ...]:
    """Kafka headers as (name, bytes) pairs, whatever form the client returned."""
    if not headers:
        return ()
    pairs = headers.items() if isinstance(headers, dict) else headers
    return tuple((k, v.encode() if isinstance(v, str) else v) for k, v in pairs)


def _anchored(pattern: str) -> str:
    """librdkafka subscribes to a regex only when the name starts with '^'."""
    return pattern if pattern.startswith("^") else "^" + pattern
