"""Consumed messages become tracked work: each record is processed (process.py) and its parts
handed to the dispatcher (messages) or the dead-letter writer (dead letters), after the
tracker has been told how many parts will finish it.

Two things decide whether a record is taken at all:
- a record at or below the last offset taken from its partition, right after a resume, was
  fetched again by the client: it is on its way already and is skipped;
- anywhere else the partition's log went backwards (a truncation, an offset reset): the
  partition starts over from its lowest unfinished offset, so nothing is skipped.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable

from confluent_kafka import Message, TopicPartition

from connector.deadletter import CircuitBreaker, DeadLetterWriter
from connector.delivery.backoff import BackoffPolicy
from connector.delivery.batcher import OutboundMessage
from connector.delivery.dispatcher import Dispatcher
from connector.errors import HaltError, RetryableError
from connector.logs import get_logger
from connector.metrics import Metrics
from connector.offsets import OffsetTracker, PartitionKey, PartitionState
from connector.process import Processed, Route, Routes, process
from connector.records import SourceRecord
from connector.source.kafka import Consumer, source_record

log = get_logger("intake")

DECODE_RETRY_LIMIT_S = 60.0  # a schema registry down longer than this halts the worker

#: A dead letter on its way: the partition state and offset it finishes once confirmed.
LetterToken = tuple[PartitionState, int]


class Intake:
    def __init__(
        self,
        routes: Routes,
        tracker: OffsetTracker,
        dispatcher: Dispatcher,
        dead_letters: DeadLetterWriter[LetterToken],
        breaker: CircuitBreaker,
        consumer: Consumer,
        metrics: Metrics,
        backoff: BackoffPolicy,
        stop: threading.Event,
        clock: Callable[[], float],
    ) -> None:
        self._routes = routes
        self._tracker = tracker
        self._dispatcher = dispatcher
        self._dead_letters = dead_letters
        self._breaker = breaker
        self._consumer = consumer
        self._metrics = metrics
        self._backoff = backoff
        self._stop = stop
        self._clock = clock
        self._rng = random.Random()
        self._skipped = {
            reason: metrics.records_skipped.labels(reason)
            for reason in ("filter", "tombstone", "refetched")
        }
        self._reseeked: set[PartitionKey] = set()  # the rest of this batch is stale
        #: Records skipped as filtered out or as tombstones in this batch (counted at its end).
        self._filtered = 0
        self._tombstones = 0
        #: Parts taken since the breaker last heard of one, none dead-lettered: the breaker
        #: notes such a run at once (before the next dead letter, or at the end of the batch).
        self._passed = 0

    def take(self, messages: list[Message], now_ms: int) -> None:
        # The record path: names bound once per batch; the consumed and field-warning counts
        # added once per topic or mapping and batch (a labelled counter's inc takes a lock: a
        # microsecond per record); the partition's state and the topic's route looked up once
        # per run of one partition (librdkafka hands out a fetch's records partition by
        # partition).
        tracker_state = self._tracker.state
        route_of = self._routes.get
        reseeked = self._reseeked
        track = self._track
        consumed: dict[str, int] = {}
        warned: dict[str, int] = {}  # field warnings by mapping
        run_topic: str | None = None
        run_partition = -1
        state: PartitionState | None = None
        route: Route | None = None
        try:
            for message in messages:
                record = source_record(message)
                if record is None:
                    continue
                topic = record.topic
                if record.partition != run_partition or topic != run_topic:
                    run_topic, run_partition = topic, record.partition
                    state = tracker_state((topic, run_partition))
                    route = None  # looked up for the first record taken
                if reseeked and (topic, run_partition) in reseeked:
                    continue  # fetched before a seek: the seek delivers it again
                if state is None:  # a partition no longer assigned: its owner reads the record
                    continue
                if record.offset <= state.last_added:
                    if state.may_refetch:
                        self._skipped["refetched"].inc()
                        continue
                    state = self._start_over(record, state)
                    if state is None:
                        continue
                if route is None:
                    route = route_of(topic)
                consumed[topic] = consumed.get(topic, 0) + 1
                try:
                    processed = process(record, route, now_ms)
                except RetryableError as exc:
                    processed = self._process_again(record, route, now_ms, exc)
                if processed.warnings:
                    for mapping, warnings in processed.warnings:
                        warned[mapping] = warned.get(mapping, 0) + len(warnings)
                track(record, state, processed)
        finally:
            for topic, count in consumed.items():
                route_of(topic).consumed.inc(count)
            for mapping, count in warned.items():
                self._metrics.field_warnings.labels(mapping).inc(count)
            if self._filtered:
                self._skipped["filter"].inc(self._filtered)
                self._filtered = 0
            if self._tombstones:
                self._skipped["tombstone"].inc(self._tombstones)
                self._tombstones = 0
            reseeked.clear()
            self._note_passed()

    def _start_over(self, record: SourceRecord, state: PartitionState) -> PartitionState | None:
        """The partition's offsets went backwards: drop its work in progress and track it afresh
        from the lowest offset not yet finished (None: fetched again from there by a seek).
        Finished offsets below that stay finished: the next commit starts from them."""
        key = state.key
        start = min(record.offset, state.first_unfinished())
        log.warning(
            "partition offsets went backwards; processing it again from the lowest unfinished",
            extra={
                "fields": {
                    "partition": f"{key[0]}/{key[1]}",
                    "offset": record.offset,
                    "last": state.last_added,
                    "from": start,
                }
            },
        )
        self._metrics.offset_rewinds.inc()
        self._dispatcher.drop([key])
        self._dispatcher.cancel([key])
        fresh = self._tracker.assign(key)
        if start == record.offset:
            return fresh
        self._consumer.seek(TopicPartition(key[0], key[1], start))
        self._reseeked.add(key)
        return None

    def _process_again(
        self, record: SourceRecord, route: Route, now_ms: int, error: RetryableError
    ) -> Processed:
        """process() failed for a reason that is not the record's (a schema registry that
        cannot be reached): retry with backoff, up to DECODE_RETRY_LIMIT_S after the failure."""
        give_up_at = self._clock() + DECODE_RETRY_LIMIT_S
        attempt = 0
        while True:
            attempt += 1
            if self._clock() >= give_up_at:
                raise HaltError(f"decoding kept failing: {error}") from None
            delay = self._backoff.delay(attempt, None, self._rng)
            log.warning(
                "decode retry",
                extra={"fields": {"error": str(error), "delay_s": round(delay, 3)}},
            )
            if self._stop.wait(delay):
                raise HaltError(f"stopped while decoding kept failing: {error}") from None
            try:
                return process(record, route, now_ms)
            except RetryableError as exc:
                error = exc

    def _track(self, record: SourceRecord, state: PartitionState, processed: Processed) -> None:
        """Tell the tracker how many parts finish the record, then hand the parts on."""
        state.may_refetch = False
        messages, letters = processed.messages, processed.dead_letters
        if processed.filtered:
            self._filtered += processed.filtered
        elif processed.tombstone:
            self._tombstones += 1
        state.add(record.offset, len(messages) + len(letters))
        if letters:
            self._note_passed()
            for letter in letters:
                self._breaker.decided_locally(True)
                self._dead_letters.send(record, letter, (state, record.offset), self._stop)
        elif not messages:
            self._passed += 1  # filtered out or a skipped tombstone: one part, not dead
        self._passed += len(messages)
        add = self._dispatcher.add
        for body, target in messages:
            add(
                OutboundMessage(
                    body, record, state, target.name, target.connection_id, target.raw_flow_id
                )
            )

    def _note_passed(self) -> None:
        if self._passed:
            self._breaker.passed_locally(self._passed)
            self._passed = 0
