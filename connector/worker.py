"""The worker: the loop, commits, rebalancing, shutdown and probes.

One record's path, and the module that holds each step:

    consume (source/kafka.py) ─▶ process: decode, map, envelope (process.py)
      ─▶ batch and send, bounded in flight (delivery/dispatcher.py, delivery/sender.py)
      ─▶ accepted | rejected ─▶ dead-letter topic (deadletter.py)
      ─▶ offset tracker (offsets.py) ─▶ commit (here)

Everything but the HTTP requests runs on this one thread, including the Kafka callbacks
(rebalance, commit), so the tracker needs no locks. Request threads only hand back results,
and the dead-letter writer only hands back confirmations; this thread applies both.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from typing import Any

import httpx
from confluent_kafka import Consumer as KafkaConsumer
from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from connector.deadletter import CircuitBreaker, DeadLetterWriter
from connector.delivery.auth import TokenProvider
from connector.delivery.backoff import BackoffPolicy
from connector.delivery.batcher import OutboundMessage
from connector.delivery.dispatcher import Dispatcher
from connector.delivery.sender import ApiHealth, DeliveryResult, Sender
from connector.errors import DeadLetter, HaltError, RetryableError
from connector.logs import get_logger
from connector.mapping import CompiledMapping
from connector.metrics import Metrics
from connector.offsets import OffsetTracker, PartitionKey, PartitionState
from connector.process import Processed, Route, Routes, process
from connector.records import SourceRecord
from connector.settings import Settings
from connector.source.kafka import (
    Consumer,
    anchored,
    consumer_config,
    producer_config,
    restart_fetching,
    source_record,
)

log = get_logger("worker")

EXIT_OK = 0
EXIT_CRASH = 1  # an unexpected error (a bug): the log names it
EXIT_HALT = 3
DECODE_RETRY_LIMIT_S = 60.0  # a schema registry down longer than this halts the worker
HALT_GRACE_S = 2.0  # how long a halt waits for requests to hand back what they finished
CLOSE_ALLOWANCE_S = 10.0  # beyond the shutdown bound, for the final commit and close

#: A dead letter on its way: the partition state and offset it finishes once confirmed.
LetterToken = tuple[PartitionState, int]


class Worker:
    """Runs the path until stopped (exit 0), halted (exit 3) or crashed (exit 1)."""

    def __init__(
        self,
        settings: Settings,
        mappings: list[CompiledMapping],
        metrics: Metrics | None = None,
        consumer_factory: Callable[[dict[str, Any]], Consumer] = KafkaConsumer,
        dead_letters: DeadLetterWriter[LetterToken] | None = None,
        http: httpx.Client | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.clock = clock
        self.wall_clock = wall_clock
        self.routes = Routes(settings, mappings, self.metrics)
        self.tracker = OffsetTracker()
        self.breaker = CircuitBreaker(
            settings.dead_letter.max_ratio,
            settings.dead_letter.window,
            settings.dead_letter.max_consecutive,
        )
        self._mappings = mappings
        self._skipped = {
            reason: self.metrics.records_skipped.labels(reason)
            for reason in ("filter", "tombstone", "refetched")
        }
        retry = settings.retry
        self._backoff = BackoffPolicy(
            retry.initial_backoff_ms / 1000, retry.max_backoff_ms / 1000, retry.max_retry_after_s
        )
        self._rng = random.Random()

        self.stop_requested = threading.Event()  # SIGTERM/SIGINT
        self.halt_reason: str | None = None
        self.joined = False
        self.last_turn = clock()
        self.api_health = ApiHealth(clock)
        self.backpressure = False
        self.paused: set[PartitionKey] = set()  # what this worker told the consumer to pause
        self._resumed: set[PartitionKey] = set()  # may see re-fetched offsets until a new one
        self._reseeked: set[PartitionKey] = set()  # rest of this consume batch is stale
        self._last_commit = clock()
        self._closing = False
        self._watchdog: threading.Timer | None = None

        self.consumer = consumer_factory(consumer_config(settings) | {"on_commit": self._on_commit})
        self.dead_letters: DeadLetterWriter[LetterToken] = dead_letters or DeadLetterWriter(
            producer_config(settings),
            settings.dead_letter.topic,
            self.metrics,
            queue_full_timeout_s=settings.dead_letter.queue_full_timeout_s,
        )
        batching = settings.batching
        platform = settings.platform
        self.http = http or httpx.Client(
            timeout=httpx.Timeout(platform.request_timeout_s, connect=platform.connect_timeout_s),
            limits=httpx.Limits(
                max_connections=batching.max_in_flight_requests + 1,
                max_keepalive_connections=batching.max_in_flight_requests + 1,
            ),
        )
        tokens = TokenProvider(platform.auth, self.http, clock, self.metrics)
        sender = Sender(
            self.http,
            platform,
            tokens,
            self._backoff,
            self.metrics,
            self.api_health,
            max_unacknowledged=retry.max_unacknowledged,
            wall_clock=wall_clock,
            clock=clock,
        )
        self.dispatcher = Dispatcher(batching, len(self.routes.connections()), sender, clock)

    # ------------------------------------------------------------------ the loop

    def run(self) -> int:
        """Consume until stopped or halted; returns the process exit status."""
        try:
            self.dead_letters.check_topic()
            self._subscribe()
            while not self.stop_requested.is_set():
                self._turn()
            return self._shutdown()
        except HaltError as exc:
            return self._halt(str(exc))
        except KafkaException as exc:
            return self._halt(f"Kafka client error: {exc}")
        except Exception as exc:  # a bug: stop cleanly, never hang, never commit unfinished
            return self._crash(exc)
        finally:
            if self._watchdog is not None:
                self._watchdog.cancel()

    def _subscribe(self) -> None:
        topics = sorted({t for m in self._mappings for t in m.source_topics})
        patterns = sorted(
            {anchored(m.topic_pattern.pattern) for m in self._mappings if m.topic_pattern}
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
                "fields": {"topics": topics, "patterns": patterns, "mappings": len(self._mappings)}
            },
        )

    def _turn(self) -> None:
        """One iteration: take records, send what is due, apply results, commit."""
        kafka = self.settings.kafka
        timeout = kafka.consume_timeout_ms / 1000
        due_in = self.dispatcher.next_due_in()
        if due_in is not None or self.dispatcher.busy:
            timeout = min(timeout, max(due_in or 0.0, 0.005))
        messages = self.consumer.consume(kafka.consume_batch_size, timeout)
        self._raise_if_halted()
        if messages:
            self._take(messages)
        self._exchange()
        self._raise_if_halted()
        self.breaker.raise_if_open()
        self._backpressure()
        if self.clock() - self._last_commit >= kafka.commit_interval_ms / 1000:
            self._follow_markers()
            self._commit(asynchronous=True)
        self.last_turn = self.clock()

    def _exchange(self) -> None:
        """Start due requests; apply the API's results and the dead-letter confirmations."""
        self.dispatcher.dispatch()
        for result in self.dispatcher.collect():
            self._apply(result)
        self._confirm(self.dead_letters.poll())

    def _raise_if_halted(self) -> None:
        if self.halt_reason is not None:
            raise HaltError(self.halt_reason)

    # ------------------------------------------------------------------ records in

    def _take(self, messages: list[Message]) -> None:
        now_ms = int(self.wall_clock() * 1000)
        for message in messages:
            record = source_record(message)
            if record is None:
                continue
            key = (record.topic, record.partition)
            if key in self._reseeked:
                continue  # fetched before this worker's seek: the seek delivers it again
            state = self.tracker.state(key)
            if state is None:  # a record of a partition no longer assigned: its owner reads it
                continue
            if record.offset <= state.last_added:
                if not self._accept_earlier(record, state):
                    continue
                state = self.tracker.state(key) or state  # started over: a fresh state
            route = self.routes.get(record.topic)
            route.consumed.inc()
            self._track(record, state, self._process(record, route, now_ms))
        self._reseeked.clear()

    def _accept_earlier(self, record: SourceRecord, state: PartitionState) -> bool:
        """A record at or below the last taken offset of its partition: skip or start over?

        Right after a resume the client may deliver a range again: those records are on
        their way already, and taking them twice would only send duplicates. Anywhere else
        the log went backwards (truncation, an offset reset): the partition starts over.
        """
        key = state.key
        if key in self._resumed:
            self._skipped["refetched"].inc()
            return False
        self._start_over(record, state)
        return key not in self._reseeked

    def _start_over(self, record: SourceRecord, state: PartitionState) -> None:
        """The partition's offsets went backwards: finish cleanly what can be, then track it
        afresh from the lowest offset not yet finished, so nothing is skipped."""
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
        self.metrics.offset_rewinds.inc()
        self.dispatcher.drop([key])
        self.dispatcher.cancel([key])
        self._commit(asynchronous=False, keys=[key])
        self.tracker.assign(key)
        if start < record.offset:
            self.consumer.seek(TopicPartition(key[0], key[1], start))
            self._reseeked.add(key)

    def _process(self, record: SourceRecord, route: Route, now_ms: int) -> Processed:
        """process(), riding out a schema registry outage (it is not the record's fault)."""
        give_up_at = self.clock() + DECODE_RETRY_LIMIT_S
        attempt = 0
        while True:
            try:
                return process(record, route, now_ms)
            except RetryableError as exc:
                attempt += 1
                if self.clock() >= give_up_at:
                    raise HaltError(f"decoding kept failing: {exc}") from None
                delay = self._backoff.delay(attempt, None, self._rng)
                log.warning(
                    "decode retry",
                    extra={"fields": {"error": str(exc), "delay_s": round(delay, 3)}},
                )
                if self.stop_requested.wait(delay):
                    raise HaltError(f"stopped while decoding kept failing: {exc}") from None

    def _track(self, record: SourceRecord, state: PartitionState, processed: Processed) -> None:
        """Register the record's parts with the tracker, then hand them on."""
        self._resumed.discard(state.key)
        if processed.filtered:
            self._skipped["filter"].inc(processed.filtered)
        elif processed.tombstone:
            self._skipped["tombstone"].inc()
        state.add(record.offset, len(processed.messages) + len(processed.dead_letters))
        for letter in processed.dead_letters:
            self._dead_letter(record, state, letter)
        for body, target in processed.messages:
            self.dispatcher.add(
                OutboundMessage(body, record, state, target.mapping.name, target.connection_id)
            )

    def _dead_letter(self, record: SourceRecord, state: PartitionState, letter: DeadLetter) -> None:
        fields: dict[str, object] = {
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "stage": letter.stage,
            "reason": letter.error_class,
            "status": letter.status,
            "mapping": letter.mapping,
        }
        if log.isEnabledFor(logging.DEBUG):  # error texts can quote field values (a payload)
            fields["error"] = letter.message[:300]
        log.warning("dead-lettering record", extra={"fields": fields})
        self.dead_letters.send(record, letter, (state, record.offset), self.stop_requested)

    # ------------------------------------------------------------------ results in

    def _apply(self, result: DeliveryResult) -> None:
        """Finish what the API accepted, dead-letter what it rejected."""
        accepted: dict[Any, int] = {}
        for message in result.accepted:
            state = message.state
            if state.active:
                state.finish(message.record.offset)
                self.breaker.record(False)
                accepted[message.mapping] = accepted.get(message.mapping, 0) + 1
        for mapping, count in accepted.items():
            self.metrics.records_accepted.labels(mapping).inc(count)
        for message, letter in result.rejected:
            if message.state.active:
                self._dead_letter(message.record, message.state, letter)
        if result.halt is not None:
            self.halt_reason = self.halt_reason or result.halt

    def _confirm(self, tokens: Iterable[LetterToken]) -> None:
        for state, offset in tokens:
            if state.active:
                state.finish(offset)
                self.breaker.record(True)

    # ------------------------------------------------------------------ flow control

    def _backpressure(self) -> None:
        batching = self.settings.batching
        records, size = self.dispatcher.buffered()
        records += self.dead_letters.pending
        metrics = self.metrics
        metrics.buffered_records.set(records)
        metrics.buffered_bytes.set(size)
        metrics.in_flight_requests.set(self.dispatcher.in_flight)
        metrics.in_flight_bytes.set(self.dispatcher.in_flight_bytes())
        over = records >= batching.max_buffered_records or size >= batching.max_buffered_bytes
        if over and not self.backpressure:
            self._set_backpressure(True)
        elif self.backpressure and (
            records < batching.max_buffered_records // 2 and size < batching.max_buffered_bytes // 2
        ):
            self._set_backpressure(False)

    def _set_backpressure(self, on: bool) -> None:
        assignment = self.consumer.assignment()
        self.backpressure = on
        if on:
            self._pause(assignment)
        else:
            self._resume(assignment)
            restart_fetching(self.consumer, assignment)
        log.info(
            "consumption paused" if on else "consumption resumed",
            extra={"fields": {"partitions": len(assignment)}},
        )

    def _pause(self, partitions: list[TopicPartition]) -> None:
        if partitions:
            self.consumer.pause(partitions)
        self.paused |= {(tp.topic, tp.partition) for tp in partitions}
        self.metrics.paused_partitions.set(len(self.paused))

    def _resume(self, partitions: list[TopicPartition]) -> None:
        if partitions:
            self.consumer.resume(partitions)
        keys = {(tp.topic, tp.partition) for tp in partitions}
        self._resumed |= keys & self.paused
        self.paused -= keys
        self.metrics.paused_partitions.set(len(self.paused))

    # ------------------------------------------------------------------ offsets

    def _commit(self, asynchronous: bool, keys: list[PartitionKey] | None = None) -> None:
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

    def _follow_markers(self) -> None:
        """A transaction's commit marker takes an offset the consumer never returns: without
        this, an idle partition's committed offset would stay one short of its end (lag 1).

        Only between turns, when every record consume() returned has been taken: the
        consumer's position may then be past the last record only by such markers.
        """
        idle = [
            TopicPartition(*state.key)
            for state in self.tracker.states()
            if state.pending == 0 and state.last_added >= 0
        ]
        if not idle:
            return
        for tp in self.consumer.position(idle):
            state = self.tracker.state((tp.topic, tp.partition))
            if state is not None and tp.offset >= 0:
                state.skip_to(tp.offset)

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
        # librdkafka keeps a partition's pause flag across a revoke and a new assignment:
        # set it on every assignment, whichever way it was left.
        if self.backpressure:
            self._pause(partitions)
        else:
            self._resume(partitions)
        self.metrics.assigned_partitions.set(len(self.tracker.keys()))
        log.info(
            "partitions assigned",
            extra={"fields": {"partitions": [f"{tp.topic}/{tp.partition}" for tp in partitions]}},
        )

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        keys = {(tp.topic, tp.partition) for tp in partitions}
        try:
            self.dispatcher.drop(keys)
            if self.halt_reason is None and not self._closing:
                # Let their requests finish, within a bound below the session timeout.
                bound = min(
                    self.settings.ops.shutdown_timeout_s,
                    self.settings.kafka.session_timeout_ms / 2000,
                )
                deadline = self.clock() + bound
                self._drain(lambda: self.dispatcher.involves(keys), deadline)
                self._confirm(self.dead_letters.flush(max(0.0, deadline - self.clock())))
            self.dispatcher.cancel(keys)
            self._commit(asynchronous=False, keys=sorted(keys))  # only finished offsets
        except HaltError as exc:
            self.halt_reason = self.halt_reason or str(exc)
        finally:
            self._forget(keys, partitions)
        log.info(
            "partitions revoked", extra={"fields": {"partitions": [f"{t}/{p}" for t, p in keys]}}
        )

    def _on_lost(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        keys = {(tp.topic, tp.partition) for tp in partitions}
        self.dispatcher.drop(keys)
        self.dispatcher.cancel(keys)
        self._forget(keys, partitions)  # another member may own them already: commit nothing
        log.warning(
            "partitions lost", extra={"fields": {"partitions": [f"{t}/{p}" for t, p in keys]}}
        )

    def _forget(self, keys: set[PartitionKey], partitions: list[TopicPartition]) -> None:
        for key in keys:
            self.tracker.release(key)
        self.paused -= keys
        self._resumed -= keys
        self.metrics.paused_partitions.set(len(self.paused))
        self.metrics.assigned_partitions.set(len(self.tracker.keys()))

    def _drain(self, busy: Callable[[], bool], deadline: float) -> None:
        """Keep sending and applying results while `busy()`, until `deadline` (or a halt,
        unless halting is what this drain is for)."""
        halting = self.halt_reason is not None
        while busy() and self.clock() < deadline and (halting or self.halt_reason is None):
            self.dispatcher.wait(min(0.1, max(0.0, deadline - self.clock())))
            self._exchange()

    # ------------------------------------------------------------------ ending

    def _shutdown(self) -> int:
        """Stop fetching, flush, let requests finish (bounded), commit, close."""
        bound = self.settings.ops.shutdown_timeout_s
        log.info("shutting down", extra={"fields": {"pending": self.tracker.pending}})
        self._arm_watchdog(bound + CLOSE_ALLOWANCE_S)
        deadline = self.clock() + bound
        self.dispatcher.flush()
        self.dispatcher.set_deadline(deadline)
        # No attempt outlives the deadline, so the requests hand back what they finished
        # (accepted halves of a split batch included) right after it.
        self._drain(lambda: self.dispatcher.busy, deadline + HALT_GRACE_S)
        self.dispatcher.cancel()
        remaining = max(1.0, deadline - self.clock())
        self._confirm(self.dead_letters.flush(remaining))
        self._follow_markers()
        self._commit(asynchronous=False)
        self._close()
        log.info("stopped", extra={"fields": {"unfinished": self.tracker.pending}})
        return EXIT_OK

    def _halt(self, reason: str, status: int = EXIT_HALT) -> int:
        """Stop at once; commit only what is finished; exit non-zero for a restart."""
        self.halt_reason = reason
        self.metrics.halted.set(1)
        self.metrics.breaker_open.set(1 if self.breaker.tripped else 0)
        log.error(f"halted: {reason}", extra={"fields": {"reason": reason}})
        self._arm_watchdog(HALT_GRACE_S + CLOSE_ALLOWANCE_S)
        with contextlib.suppress(Exception):
            # Requests hand back what the API accepted so far; none starts another attempt.
            self.dispatcher.set_deadline(self.clock())
            self._drain(lambda: self.dispatcher.in_flight > 0, self.clock() + HALT_GRACE_S)
        self.dispatcher.cancel()
        with contextlib.suppress(Exception):
            self._confirm(self.dead_letters.flush(5.0))
        with contextlib.suppress(Exception):
            self._commit(asynchronous=False)
        self._close()
        return status

    def _crash(self, exc: Exception) -> int:
        where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        place = f" at {os.path.basename(where.filename)}:{where.lineno}" if where else ""
        # The message of an unexpected error may quote record values: only at DEBUG.
        log.debug("unexpected error", exc_info=exc)
        return self._halt(f"unexpected error {type(exc).__name__}{place}", EXIT_CRASH)

    def _close(self) -> None:
        self._closing = True
        try:
            self.consumer.close()
        except (KafkaException, RuntimeError) as exc:
            log.warning("consumer close failed", extra={"fields": {"error": str(exc)}})
        self.http.close()

    def _arm_watchdog(self, seconds: float) -> None:
        """The last resort of the exit bound: librdkafka's commit and close can block on
        brokers that do not answer. Past `seconds` the process exits without committing more
        (nothing unfinished was committed; records are consumed again)."""

        def expire() -> None:
            log.error("exit bound exceeded; exiting", extra={"fields": {"bound_s": seconds}})
            os._exit(EXIT_HALT)

        if self._watchdog is not None:
            self._watchdog.cancel()
        self._watchdog = threading.Timer(seconds, expire)
        self._watchdog.daemon = True
        self._watchdog.start()

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
