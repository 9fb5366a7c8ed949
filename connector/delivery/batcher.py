"""Grouping serialized envelopes into request bodies: pure logic with an injected clock.

A *lane* is the unit of ordering: in strict ordering a lane is one connection and one
partition, so that at most one request per partition is in flight and retries cannot reorder
it; without strict ordering a lane is a whole connection.

Raw payloads (`target.mode: raw`) are batched like envelopes, in lanes of their own (one flow
per lane): the API has no batch of raw payloads, so the sender posts a raw batch's payloads one
by one, in order, each to the single-message endpoint (connector.delivery.sender).
"""

from __future__ import annotations

from collections.abc import Callable, Container, Hashable, Iterator
from dataclasses import dataclass, field

from connector.offsets import PartitionState
from connector.records import SourceRecord

#: b'{"messages":[' + b']}' around the comma-separated messages.
FRAMING_BYTES = len(b'{"messages":[]}')
#: Raw payloads in one raw batch at most. Each is a request of its own, so small groups let
#: several request slots share a backlog (`ordering: none`) and keep a group's time in flight
#: (what a rebalance waits for) short; a group still spares a thread and a loop turn per payload.
MAX_RAW_GROUP = 50

Lane = Hashable


@dataclass(slots=True)
class OutboundMessage:
    """One envelope on its way to the API, and what to finish when it is done."""

    body: bytes
    record: SourceRecord
    state: PartitionState
    mapping: str
    connection_id: str
    #: A raw payload's dataflow (x-adobe-flow-id); None for an XDM envelope.
    raw_flow_id: str | None = None


@dataclass(slots=True)
class Batch:
    """Messages for one request, in the order they were added. A raw batch (`raw_flow_id`)
    holds raw payloads of one dataflow, each sent in a single-message request of its own."""

    lane: Lane
    connection_id: str
    created_at: float
    messages: list[OutboundMessage] = field(default_factory=list)
    size: int = FRAMING_BYTES  # the request body's size, framing and commas included
    raw_flow_id: str | None = None
    #: In the dispatcher's queue while still open (`Batcher.queue_due`): it keeps taking
    #: records until its request starts (`Batcher.seal`), so that a batch waiting for a
    #: request slot leaves as full as the wait allowed, not as it was when it stopped lingering.
    queued: bool = False

    def body(self) -> bytes:
        return request_body([m.body for m in self.messages])


def request_size(bodies: list[bytes]) -> int:
    """Bytes of the request body that carries `bodies`."""
    return FRAMING_BYTES + sum(len(b) for b in bodies) + max(0, len(bodies) - 1)


def request_body(bodies: list[bytes]) -> bytes:
    """The request body that carries `bodies`, made with one copy of them.

    Joining twice (the messages, then the framing around them) allocated a second ~1 MB buffer
    per request; glibc returned the pair's memory to the system and took it back on the next
    request, some 400 page faults each time: 1.2 ms of a request thread's CPU, 2 µs per message.
    """
    if not bodies:
        return b'{"messages":[]}'
    parts = list(bodies)
    parts[0] = b'{"messages":[' + parts[0]
    parts[-1] += b"]}"
    return b",".join(parts)


class Batcher:
    """Open batches per lane; a batch closes when full, or when it has lingered long enough.

    `buffered_records` and `buffered_bytes` count the messages of open batches that are not
    queued yet (the dispatcher counts queued ones with its queue).
    """

    def __init__(
        self,
        max_bytes: int,
        max_records: int,
        linger_s: float,
        clock: Callable[[], float],
    ) -> None:
        self.max_bytes = max_bytes
        self.max_records = max_records
        self.linger_s = linger_s
        self._clock = clock
        self._open: dict[Lane, Batch] = {}
        self.buffered_records = 0
        self.buffered_bytes = 0

    def add(self, lane: Lane, message: OutboundMessage) -> list[Batch]:
        """Add a message; return the batches that closed and are not queued yet (the lane's
        previous batch when the message does not fit in it, and the new one when the message
        fills it).

        A message too big to share a request with anything gets a batch of its own.
        """
        closed: list[Batch] = []
        size = len(message.body)
        batch = self._open.get(lane)
        if batch is not None and (
            batch.size + size + 1 > self.max_bytes or len(batch.messages) >= self.max_records
        ):
            self._close(lane, closed)
            batch = None
        if batch is None:
            batch = Batch(
                lane, message.connection_id, self._clock(), raw_flow_id=message.raw_flow_id
            )
            self._open[lane] = batch
            batch.size += size  # the first message needs no comma
        else:
            batch.size += size + 1
        messages = batch.messages
        messages.append(message)
        if not batch.queued:
            self.buffered_records += 1
            self.buffered_bytes += size
        count = len(messages)
        if (
            count >= self.max_records
            or batch.size >= self.max_bytes
            or (count >= MAX_RAW_GROUP and batch.raw_flow_id is not None)
        ):
            self._close(lane, closed)
        return closed

    def due(self, skip: Container[Lane] = ()) -> list[Batch]:
        """Close and return batches whose oldest message has waited `linger_s`, oldest first.

        Batches of lanes in `skip` are left open to keep filling: the worker passes the lanes
        that could not send them yet anyway.
        """
        due = self._due(skip)
        closed: list[Batch] = []
        for batch in due:
            self._close(batch.lane, closed)
        return closed

    def queue_due(self, skip: Container[Lane] = ()) -> list[Batch]:
        """Batches whose oldest message has waited `linger_s`, oldest first, marked queued and
        left open: the dispatcher queues them in this order, and each keeps taking records
        until its request starts (`seal`) or it is full. A batch that waits for a request
        slot thus keeps its place in line and fills meanwhile.

        Batches of lanes in `skip` are neither queued nor closed (as with `due`).
        """
        due = self._due(skip)
        for batch in due:
            batch.queued = True
            self.buffered_records -= len(batch.messages)
            self.buffered_bytes -= _message_bytes(batch)
        return due

    def seal(self, batch: Batch) -> None:
        """Close `batch` as its request starts: it takes no more records (no-op when it
        closed already, full or flushed)."""
        if self._open.get(batch.lane) is batch:
            del self._open[batch.lane]

    def _due(self, skip: Container[Lane]) -> list[Batch]:
        now = self._clock()
        linger_s = self.linger_s
        return [
            batch
            for lane, batch in self._open.items()  # insertion order: the oldest batch first
            if not batch.queued and now - batch.created_at >= linger_s and lane not in skip
        ]

    def next_due_in(self) -> float | None:
        """Seconds until the next batch is due (0 if one is), None when none can be (nothing
        open, or only queued batches)."""
        waiting = [batch.created_at for batch in self._open.values() if not batch.queued]
        if not waiting:
            return None
        return max(0.0, min(waiting) + self.linger_s - self._clock())

    def flush(self) -> list[Batch]:
        """Close every open batch (shutdown); returns those not queued yet."""
        closed: list[Batch] = []
        for lane in list(self._open):
            self._close(lane, closed)
        return closed

    def drop(self, keep: Callable[[OutboundMessage], bool]) -> int:
        """Remove messages that `keep` rejects (revoked partitions); returns how many."""
        dropped = 0
        for lane in list(self._open):
            batch = self._open[lane]
            kept: list[OutboundMessage] = []
            removed_bytes = 0
            for message in batch.messages:
                if keep(message):
                    kept.append(message)
                else:
                    removed_bytes += len(message.body)
            removed = len(batch.messages) - len(kept)
            if removed == 0:
                continue
            dropped += removed
            if not batch.queued:
                self.buffered_records -= removed
                self.buffered_bytes -= removed_bytes
            batch.messages = kept
            batch.size = request_size([m.body for m in kept])
            if not kept:
                del self._open[lane]
        return dropped

    def _close(self, lane: Lane, closed: list[Batch]) -> None:
        """Close the lane's batch; append it to `closed` unless it is queued already."""
        batch = self._open.pop(lane)
        if not batch.queued:
            self.buffered_records -= len(batch.messages)
            self.buffered_bytes -= _message_bytes(batch)
            closed.append(batch)

    def __iter__(self) -> Iterator[Batch]:
        return iter(list(self._open.values()))


def _message_bytes(batch: Batch) -> int:
    """The messages' own bytes: the body's size without framing and commas."""
    return batch.size - FRAMING_BYTES - max(0, len(batch.messages) - 1)
