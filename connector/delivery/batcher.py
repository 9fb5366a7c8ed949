"""Grouping serialized envelopes into request bodies: pure logic with an injected clock.

A *lane* is the unit of ordering: in strict ordering a lane is one connection and one
partition, so that at most one request per partition is in flight and retries cannot reorder
it; without strict ordering a lane is a whole connection.

A raw payload (`target.mode: raw`) is never batched: the API has no batch of raw payloads, so
its batch holds that one message and closes at once (a single-message request).
"""

from __future__ import annotations

from collections.abc import Callable, Container, Hashable, Iterator
from dataclasses import dataclass, field

from connector.offsets import PartitionState
from connector.records import SourceRecord

#: b'{"messages":[' + b']}' around the comma-separated messages.
FRAMING_BYTES = len(b'{"messages":[]}')

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
    holds one raw payload, the whole body of a single-message request."""

    lane: Lane
    connection_id: str
    created_at: float
    messages: list[OutboundMessage] = field(default_factory=list)
    size: int = FRAMING_BYTES  # the request body's size, framing and commas included
    raw_flow_id: str | None = None

    def body(self) -> bytes:
        if self.raw_flow_id is not None:
            return self.messages[0].body
        return b'{"messages":[' + b",".join([m.body for m in self.messages]) + b"]}"


def request_size(bodies: list[bytes]) -> int:
    """Bytes of the request body that carries `bodies`."""
    return FRAMING_BYTES + sum(len(b) for b in bodies) + max(0, len(bodies) - 1)


class Batcher:
    """Open batches per lane; a batch closes when full, or when it has lingered long enough."""

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
        """Add a message; return the batches that closed (the lane's previous batch when the
        message does not fit in it, and the new one when the message fills it).

        A message too big to share a request with anything gets a batch of its own, and so
        does a raw payload, at once.
        """
        size = len(message.body)
        if message.raw_flow_id is not None:
            return [
                Batch(
                    lane, message.connection_id, self._clock(), [message], size, message.raw_flow_id
                )
            ]
        closed: list[Batch] = []
        batch = self._open.get(lane)
        if batch is not None and (
            batch.size + size + 1 > self.max_bytes or len(batch.messages) >= self.max_records
        ):
            closed.append(self._close(lane))
            batch = None
        if batch is None:
            batch = Batch(lane, message.connection_id, self._clock())
            self._open[lane] = batch
            batch.size += size  # the first message needs no comma
        else:
            batch.size += size + 1
        batch.messages.append(message)
        self.buffered_records += 1
        self.buffered_bytes += size
        if len(batch.messages) >= self.max_records or batch.size >= self.max_bytes:
            closed.append(self._close(lane))
        return closed

    def due(self, skip: Container[Lane] = ()) -> list[Batch]:
        """Close and return batches whose oldest message has waited `linger_s`, oldest first.

        Batches of lanes in `skip` are left open to keep filling: the worker passes the lanes
        that could not send them yet anyway.
        """
        now = self._clock()
        lanes = [
            lane
            for lane, batch in self._open.items()  # insertion order: the oldest batch first
            if now - batch.created_at >= self.linger_s and lane not in skip
        ]
        return [self._close(lane) for lane in lanes]

    def next_due_in(self) -> float | None:
        """Seconds until the next batch is due (0 if one is), None when nothing is open."""
        if not self._open:
            return None
        now = self._clock()
        oldest = min(batch.created_at for batch in self._open.values())
        return max(0.0, oldest + self.linger_s - now)

    def flush(self) -> list[Batch]:
        """Close every open batch (shutdown)."""
        return [self._close(lane) for lane in list(self._open)]

    def drop(self, keep: Callable[[OutboundMessage], bool]) -> int:
        """Remove messages that `keep` rejects (revoked partitions); returns how many."""
        dropped = 0
        for lane in list(self._open):
            batch = self._open[lane]
            kept = [m for m in batch.messages if keep(m)]
            removed = len(batch.messages) - len(kept)
            if removed == 0:
                continue
            dropped += removed
            self.buffered_records -= removed
            self.buffered_bytes -= sum(len(m.body) for m in batch.messages if not keep(m))
            if kept:
                batch.messages = kept
                batch.size = request_size([m.body for m in kept])
            else:
                del self._open[lane]
        return dropped

    def _close(self, lane: Lane) -> Batch:
        batch = self._open.pop(lane)
        self.buffered_records -= len(batch.messages)
        self.buffered_bytes -= sum(len(m.body) for m in batch.messages)
        return batch

    def __iter__(self) -> Iterator[Batch]:
        return iter(list(self._open.values()))
