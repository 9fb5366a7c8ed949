"""Every message between its mapping and its result: open batches, batches ready to send, and
requests in flight. The only place that knows what is in flight.

    add ─▶ Batcher (per lane) ─▶ ready (closed batches, in order) ─▶ a request thread each
      ─▶ results queue ─▶ collect() hands DeliveryResults to the loop

A *lane* is the unit of ordering. With `ordering: partition` a lane is one connection and one
partition, and a lane has at most one request in flight, so retries cannot reorder it. With
`ordering: none` a lane is a connection, and several of its requests may be in flight.
Either way a connection holds at most `max_in_flight_per_connection` of the request slots,
so one inlet that is down (its requests retrying) cannot starve the others. With
`adaptive_concurrency` a connection holds at most its adaptive limit, which moves between 1 and
that cap on the attempts its requests report (concurrency.py).

Each request runs in a thread of its own (long-lived threads, threads.py) and only hands its
result back; the loop applies it.
Cancelling a request (revoke, partition loss, shutdown) frees its lane and slot at once; the
thread notices before its next attempt or during its backoff and its late result is ignored.
A request that hands back unfinished messages (the shutdown deadline or a halt stopped it)
ends its partitions' sending: their later batches are dropped, never sent past it.
A request thread is a daemon: one still inside a POST when the process must exit is abandoned,
never waited for; a cancelled request keeps its thread until it returns, and the next request
gets another.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
import queue
from collections import Counter, deque
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass

from connector.delivery.batcher import Batch, Batcher, Lane, OutboundMessage, request_size
from connector.delivery.concurrency import AttemptLog, ConnectionLimits
from connector.delivery.sender import DeliveryResult, Sender, Ticket
from connector.delivery.threads import RequestThreads
from connector.metrics import Metrics
from connector.offsets import PartitionKey
from connector.settings import BatchingSettings


@dataclass(slots=True)
class _Request:
    batch: Batch
    ticket: Ticket


class RequestCrashed(Exception):
    """A request thread died of an unexpected exception (a bug); the loop must stop."""


class Dispatcher:
    def __init__(
        self,
        batching: BatchingSettings,
        connections: int,
        sender: Sender,
        clock: Callable[[], float],
        attempts: AttemptLog | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        """`attempts`: where the sender reports its attempts; given, each connection's limit
        adapts to them (the sender and the dispatcher must share it)."""
        self._batcher = Batcher(
            batching.max_request_bytes, batching.max_records, batching.linger_ms / 1000, clock
        )
        self._sender = sender
        self._ordered = batching.ordering == "partition"
        self.slots = batching.max_in_flight_requests
        self.slots_per_connection = batching.max_in_flight_per_connection or math.ceil(
            self.slots / max(1, connections)
        )
        self.limits = ConnectionLimits(self.slots_per_connection, attempts, clock, metrics)
        self._ready: deque[Batch] = deque()
        self._requests: dict[int, _Request] = {}
        self._busy_lanes: set[Lane] = set()
        self._per_connection: Counter[str] = Counter()
        self._ids = itertools.count()
        self._results: queue.SimpleQueue[tuple[int, DeliveryResult | BaseException]] = (
            queue.SimpleQueue()
        )
        self._arrived: list[tuple[int, DeliveryResult | BaseException]] = []
        self._deadline: float | None = None
        self._threads = RequestThreads(self.slots)

    # ------------------------------------------------------------------ taking messages

    def add(self, message: OutboundMessage) -> None:
        if self._ordered:
            topic, partition = message.state.key
            lane: Lane = (message.connection_id, topic, partition)
        else:
            lane = message.connection_id  # one lane per connection: no tuple per message
        if message.raw_flow_id is not None:  # a dataflow's raw payloads: a lane of their own
            lane = (lane, message.raw_flow_id)
        closed = self._batcher.add(lane, message)
        if closed:
            self._ready.extend(closed)

    def next_due_in(self) -> float | None:
        """Seconds until an open batch is due (None: none open)."""
        return self._batcher.next_due_in()

    def flush(self) -> None:
        """Close every open batch so it can be sent (shutdown)."""
        self._ready.extend(self._batcher.flush())

    # ------------------------------------------------------------------ sending

    def dispatch(self) -> None:
        """Close due batches and start requests for ready batches while slots are free."""
        # A lingering batch whose lane cannot send now (a request in flight or a batch queued
        # in strict order; its connection's slots all taken otherwise) is left open: it keeps
        # filling instead of waiting, closed and half empty. Other lanes' batches queue in
        # order after linger_ms, and keep filling until their request starts (_start seals
        # them), so no lane waits for ever and none leaves emptier than the wait allowed.
        limits = self.limits
        limits.update()
        blocked = {batch.lane for batch in self._ready}
        if self._ordered:
            blocked |= self._busy_lanes
        else:
            full = {c for c, n in self._per_connection.items() if n >= limits.limit(c)}
            blocked |= full  # a connection's lane is its id
        self._ready.extend(self._batcher.queue_due(blocked))  # open until they start
        free = self.slots - len(self._requests)
        if not self._ready or free <= 0:
            return
        waiting: deque[Batch] = deque()
        while self._ready:
            batch = self._ready.popleft()
            if free > 0 and self._may_start(batch):
                self._start(batch)
                free -= 1
            else:
                waiting.append(batch)
        self._ready = waiting

    def _may_start(self, batch: Batch) -> bool:
        if self._per_connection[batch.connection_id] >= self.limits.limit(batch.connection_id):
            return False
        return not (self._ordered and batch.lane in self._busy_lanes)

    def _start(self, batch: Batch) -> None:
        self._batcher.seal(batch)
        number = next(self._ids)
        ticket = Ticket(deadline=self._deadline)
        self._requests[number] = _Request(batch, ticket)
        self._busy_lanes.add(batch.lane)
        self._per_connection[batch.connection_id] += 1
        self.limits.started(batch.connection_id, self._per_connection[batch.connection_id])
        self._threads.run(functools.partial(self._send, number, batch, ticket))

    def _send(self, number: int, batch: Batch, ticket: Ticket) -> None:
        try:
            result: DeliveryResult | BaseException = self._sender.deliver(batch, ticket)
        except BaseException as exc:  # a bug in the sender: the loop re-raises it
            result = exc
        self._results.put((number, result))

    def _release(self, number: int) -> _Request:
        request = self._requests.pop(number)
        self._busy_lanes.discard(request.batch.lane)
        self._per_connection[request.batch.connection_id] -= 1
        return request

    # ------------------------------------------------------------------ results

    def wait(self, timeout_s: float) -> None:
        """Block until a request has finished or `timeout_s` has passed."""
        if self._arrived or not self._requests:
            return
        with contextlib.suppress(queue.Empty):
            self._arrived.append(self._results.get(timeout=max(0.0, timeout_s)))

    def collect(self) -> list[DeliveryResult]:
        """Results of finished requests; late results of cancelled requests are dropped."""
        arrived, self._arrived = self._arrived, []
        while True:
            try:
                arrived.append(self._results.get_nowait())
            except queue.Empty:
                break
        results: list[DeliveryResult] = []
        for number, result in arrived:
            if number not in self._requests:
                continue  # cancelled: its lane and slot were freed already
            self._release(number)
            if isinstance(result, BaseException):
                raise RequestCrashed(f"request thread failed: {type(result).__name__}") from result
            if result.unfinished:
                # Interrupted by the deadline (shutdown) or a halt. A later batch of these
                # partitions would reach the API ahead of the unfinished messages and could
                # never be committed (the commit stops at them): the next owner would send it
                # again. So nothing more of them is sent; the next owner sends it all, in order.
                self.drop({m.state.key for m in result.unfinished})
            results.append(result)
        return results

    # ------------------------------------------------------------------ revoke, loss, shutdown

    def drop(self, keys: Collection[PartitionKey]) -> None:
        """Forget unsent messages of `keys` (revoked or lost partitions)."""
        self._batcher.drop(lambda m: m.state.key not in keys)
        for batch in self._ready:
            if any(m.state.key in keys for m in batch.messages):
                batch.messages = [m for m in batch.messages if m.state.key not in keys]
                batch.size = request_size([m.body for m in batch.messages])
        self._ready = deque(b for b in self._ready if b.messages)

    def involves(self, keys: Collection[PartitionKey]) -> bool:
        """Whether a request in flight carries messages of `keys`."""
        return any(self._touches(r.batch, keys) for r in self._requests.values())

    def cancel(self, keys: Collection[PartitionKey] | None = None) -> None:
        """Cancel requests carrying messages of `keys` (None: every request); their lanes and
        slots are free at once and their results ignored. Messages of other partitions in a
        cancelled request (`ordering: none`) are queued again."""
        for number, request in list(self._requests.items()):
            if keys is not None and not self._touches(request.batch, keys):
                continue
            request.ticket.cancel()
            self._release(number)
            if keys is not None:
                for message in request.batch.messages:
                    if message.state.key not in keys:
                        self.add(message)

    def set_deadline(self, deadline: float) -> None:
        """No attempt of any request, running or to come, lasts past `deadline` (shutdown)."""
        self._deadline = deadline
        for request in self._requests.values():
            request.ticket.set_deadline(deadline)

    @staticmethod
    def _touches(batch: Batch, keys: Collection[PartitionKey]) -> bool:
        return any(m.state.key in keys for m in batch.messages)

    # ------------------------------------------------------------------ flow control

    @property
    def in_flight(self) -> int:
        return len(self._requests)

    @property
    def busy(self) -> bool:
        """Whether anything is ready to send or in flight."""
        return bool(self._ready or self._requests)

    def buffered(self) -> tuple[int, int]:
        """Messages and bytes held: open batches, ready batches and requests in flight."""
        records = self._batcher.buffered_records
        size = self._batcher.buffered_bytes
        for batch in self._batches():
            records += len(batch.messages)
            size += batch.size
        return records, size

    def in_flight_bytes(self) -> int:
        return sum(r.batch.size for r in self._requests.values())

    def _batches(self) -> Iterable[Batch]:
        yield from self._ready
        for request in self._requests.values():
            yield request.batch
