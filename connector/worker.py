"""The worker: the loop, commits, rebalancing, shutdown and probes.

One record's path, and the module that holds each step:

    consume (source/kafka.py) ─▶ take: track and process (intake.py, process.py)
      ─▶ batch and send, bounded in flight (delivery/dispatcher.py, delivery/sender.py)
      ─▶ accepted | rejected ─▶ dead-letter topic (deadletter.py)
      ─▶ [optional] accepted ─▶ delivery receipt (receipts.py)
      ─▶ offset tracker (offsets.py) ─▶ commit (here)

Everything but the HTTP requests runs on this one thread, including the Kafka callbacks
(rebalance, commit), so the tracker needs no locks. Request threads only hand back results,
and the dead-letter and receipt writers only hand back confirmations; this thread applies them.
"""

from __future__ import annotations

import contextlib
import operator
import os
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import httpx
from confluent_kafka import Consumer as KafkaConsumer
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from connector.deadletter import CircuitBreaker, DeadLetterWriter
from connector.delivery import backoff_policy, build_dispatcher, http_client
from connector.delivery.batcher import OutboundMessage
from connector.delivery.sender import ApiHealth, DeliveryResult
from connector.errors import HaltError
from connector.intake import Intake, LetterToken
from connector.logs import get_logger
from connector.mapping import CompiledMapping
from connector.metrics import Metrics
from connector.offsets import OffsetTracker, PartitionKey, PartitionState
from connector.process import Routes
from connector.receipts import ReceiptWriter
from connector.settings import Settings
from connector.source.flow import PauseControl
from connector.source.kafka import (
    Consumer,
    anchored,
    consumer_config,
    halt_reason,
    producer_config,
)
from connector.tracing import start_tracing

if TYPE_CHECKING:
    from connector.tracing.spans import Tracing

log = get_logger("worker")

EXIT_OK = 0
EXIT_CRASH = 1  # an unexpected error (a bug): the log names it
EXIT_HALT = 3
HALT_GRACE_S = 2.0  # how long a halt waits for requests to hand back what they finished
CLOSE_ALLOWANCE_S = 10.0  # beyond the shutdown bound, for the final commit and close
_MAPPING_OF = operator.attrgetter("mapping")  # of an OutboundMessage

__all__ = ["EXIT_CRASH", "EXIT_HALT", "EXIT_OK", "LetterToken", "Worker"]


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
        receipts: ReceiptWriter[LetterToken] | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics = metrics or Metrics()
        self.clock = clock
        self.wall_clock = wall_clock
        self.stop_requested = threading.Event()  # SIGTERM/SIGINT
        self.halt_reason: str | None = None
        self.joined = False
        self.last_turn = clock()
        self.api_health = ApiHealth(clock)
        self._mappings = mappings
        self._last_commit = clock()
        self._closing = False
        self._watchdog: threading.Timer | None = None

        self.tracker = OffsetTracker()
        self.breaker = CircuitBreaker(
            settings.dead_letter.max_ratio,
            settings.dead_letter.window,
            settings.dead_letter.max_consecutive,
        )
        self.consumer = consumer_factory(
            consumer_config(settings)
            | {"on_commit": self._on_commit, "error_cb": self._on_consumer_error}
        )
        self.dead_letters: DeadLetterWriter[LetterToken] = dead_letters or DeadLetterWriter(
            producer_config(settings),
            settings.dead_letter.topic,
            metrics,
            queue_full_timeout_s=settings.dead_letter.queue_full_timeout_s,
        )
        self.receipts = receipts
        if receipts is None and settings.receipts.topic:
            self.receipts = ReceiptWriter(
                producer_config(settings, "receipts"), settings.receipts, metrics
            )
        self.http = http or http_client(settings)
        self.tracing: Tracing | None = start_tracing(settings)  # None unless tracing.enabled
        self.dead_letters.tracing = self.tracing
        routes = Routes(settings, mappings, metrics)
        self.dispatcher = build_dispatcher(
            settings,
            self.http,
            len(routes.connections()),
            metrics,
            self.api_health,
            clock,
            wall_clock,
            self.tracing,
        )
        self.flow = PauseControl(self.consumer, self.tracker, settings.batching, metrics)
        self.intake = Intake(
            routes,
            self.tracker,
            self.dispatcher,
            self.dead_letters,
            self.breaker,
            self.consumer,
            metrics,
            backoff_policy(settings),
            self.stop_requested,
            clock,
        )

    # ------------------------------------------------------------------ the loop

    def run(self) -> int:
        """Consume until stopped or halted; returns the process exit status."""
        try:
            self.dead_letters.check_topic()
            if self.receipts is not None:
                self.receipts.check_topic()
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
            self.intake.take(messages, int(self.wall_clock() * 1000))
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
        if self.receipts is not None:
            self._confirm(self.receipts.poll())

    def _on_consumer_error(self, error: KafkaError) -> None:
        """Client errors (failed logins, brokers down) come here, not through consume(); it
        runs inside consume(), on this thread, which then halts if a reason was set."""
        reason = halt_reason(error)
        if reason is not None:
            self.halt_reason = self.halt_reason or reason
            return
        log.warning("consumer error", extra={"fields": {"error": str(error)}})

    def _raise_if_halted(self) -> None:
        if self.halt_reason is not None:
            raise HaltError(self.halt_reason)

    # ------------------------------------------------------------------ results in

    def _apply(self, result: DeliveryResult) -> None:
        """Finish what the API accepted (with receipts: once the receipt writer hands the
        token back), dead-letter what it rejected."""
        receipts = self.receipts
        # Per batch where it can be: the counter notes each mapping's count once.
        accepted = [message for message in result.accepted if message.state.active]
        if receipts is None:
            _finish_accepted(accepted)
        self.breaker.accepted(len(accepted))
        for mapping, count in Counter(map(_MAPPING_OF, accepted)).items():
            self.metrics.records_accepted.labels(mapping).inc(count)
        if receipts is not None:
            for message, named in zip(result.accepted, result.acknowledgements, strict=True):
                state = message.state
                if state.active:
                    token = (state, message.record.offset)
                    receipts.send(message, named, token, self.stop_requested)
        for message, letter in result.rejected:
            state = message.state
            if state.active:
                self.breaker.answered(True)
                offset = message.record.offset
                self.dead_letters.send(message.record, letter, (state, offset), self.stop_requested)
        if result.halt is not None:
            self.halt_reason = self.halt_reason or result.halt

    def _confirm(self, tokens: Iterable[LetterToken]) -> None:
        """Finish what the dead-letter writer confirmed, and accepted records whose receipts
        are done (at once, unless receipts are required)."""
        for state, offset in tokens:
            if state.active:
                state.finish(offset)

    def _flush_receipts(self, timeout_s: float) -> None:
        if self.receipts is not None:
            self._confirm(self.receipts.flush(timeout_s))

    # ------------------------------------------------------------------ flow control

    def _backpressure(self) -> None:
        records, size = self.dispatcher.buffered()
        records += self.dead_letters.pending
        if self.receipts is not None:
            records += self.receipts.pending
        metrics = self.metrics
        metrics.buffered_records.set(records)
        metrics.buffered_bytes.set(size)
        metrics.in_flight_requests.set(self.dispatcher.in_flight)
        metrics.in_flight_bytes.set(self.dispatcher.in_flight_bytes())
        self.flow.update(records, size)

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
        self.flow.assigned(partitions)
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
                self._flush_receipts(max(0.0, deadline - self.clock()))
            self.dispatcher.cancel(keys)
            if not self._closing:  # closing: the final commit came just before
                self._commit(asynchronous=False, keys=sorted(keys))  # only finished offsets
        except HaltError as exc:
            self.halt_reason = self.halt_reason or str(exc)
        finally:
            self._forget(keys)
        log.info(
            "partitions revoked", extra={"fields": {"partitions": [f"{t}/{p}" for t, p in keys]}}
        )

    def _on_lost(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        keys = {(tp.topic, tp.partition) for tp in partitions}
        self.dispatcher.drop(keys)
        self.dispatcher.cancel(keys)
        self._forget(keys)  # another member may own them already: commit nothing
        log.warning(
            "partitions lost", extra={"fields": {"partitions": [f"{t}/{p}" for t, p in keys]}}
        )

    def _forget(self, keys: set[PartitionKey]) -> None:
        for key in keys:
            self.tracker.release(key)
        self.flow.forget(keys)
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
        self._flush_receipts(max(1.0, deadline - self.clock()))
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
            self._flush_receipts(5.0)
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
        except Exception as exc:  # librdkafka raises KafkaError itself from close()
            log.warning("consumer close failed", extra={"fields": {"error": str(exc)}})
        self.http.close()
        if self.tracing is not None:
            self.tracing.shutdown()

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


def _finish_accepted(messages: list[OutboundMessage]) -> None:
    """Finish accepted messages, a run of one partition's (a request's usual content) at a
    time: a call per run, not per message."""
    state: PartitionState | None = None
    offsets: list[int] = []
    for message in messages:
        if message.state is not state:
            if state is not None:
                state.finish_many(offsets)
            state, offsets = message.state, []
        offsets.append(message.record.offset)
    if state is not None:
        state.finish_many(offsets)
