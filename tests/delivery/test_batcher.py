"""Batches never exceed the byte or count limits, framing counted; linger closes them."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.delivery.batcher import (
    FRAMING_BYTES,
    Batcher,
    OutboundMessage,
    request_body,
    request_size,
)
from connector.offsets import PartitionState
from connector.records import SourceRecord


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


STATE = PartitionState(("t", 0))


def message(size: int, offset: int = 0) -> OutboundMessage:
    body = b'"' + b"x" * (size - 2) + b'"'
    record = SourceRecord("t", 0, offset, None, None, body)
    return OutboundMessage(body, record, STATE, "m", "conn")


def test_request_size_counts_framing_and_commas() -> None:
    bodies = [b"{}", b"[1]", b'"a"']
    assert request_size(bodies) == len(b'{"messages":[' + b",".join(bodies) + b"]}")
    assert request_size([]) == FRAMING_BYTES


def test_closes_before_overflowing_bytes() -> None:
    clock = FakeClock()
    batcher = Batcher(max_bytes=100, max_records=100, linger_s=1.0, clock=clock)
    assert batcher.add("lane", message(40)) == []
    assert batcher.add("lane", message(40)) == []  # 15 + 40 + 1 + 40 = 96
    closed = batcher.add("lane", message(40))
    assert len(closed) == 1
    assert len(closed[0].messages) == 2
    assert closed[0].size == len(closed[0].body()) == 96
    assert batcher.buffered_records == 1


def test_closes_when_the_count_is_reached() -> None:
    batcher = Batcher(max_bytes=10_000, max_records=3, linger_s=1.0, clock=FakeClock())
    assert batcher.add("lane", message(10)) == []
    assert batcher.add("lane", message(10)) == []
    closed = batcher.add("lane", message(10))
    assert [len(b.messages) for b in closed] == [3]
    assert batcher.buffered_records == 0


def test_oversized_message_gets_a_batch_of_its_own() -> None:
    batcher = Batcher(max_bytes=100, max_records=10, linger_s=1.0, clock=FakeClock())
    batcher.add("lane", message(10))
    closed = batcher.add("lane", message(200))
    assert [len(b.messages) for b in closed] == [1, 1]
    assert closed[1].size == FRAMING_BYTES + 200


def test_linger_and_lanes() -> None:
    clock = FakeClock()
    batcher = Batcher(max_bytes=10_000, max_records=100, linger_s=0.05, clock=clock)
    batcher.add("a", message(10))
    clock.now = 0.03
    batcher.add("b", message(10))
    assert batcher.next_due_in() == 0.05 - 0.03
    assert batcher.due() == []
    clock.now = 0.05
    due = batcher.due()
    assert [b.lane for b in due] == ["a"]
    clock.now = 0.08
    assert [b.lane for b in batcher.due()] == ["b"]
    assert batcher.next_due_in() is None


def test_due_leaves_skipped_lanes_open_to_keep_filling() -> None:
    """The worker skips busy lanes: their batches could not be sent yet anyway."""
    clock = FakeClock()
    batcher = Batcher(max_bytes=10_000, max_records=100, linger_s=0.05, clock=clock)
    for lane in ("a", "b", "c"):
        batcher.add(lane, message(10))
        clock.now += 0.01
    clock.now = 1.0  # all three have lingered long enough
    assert [b.lane for b in batcher.due(skip={"b"})] == ["a", "c"]
    batcher.add("b", message(10))  # the skipped batch kept filling
    assert batcher.next_due_in() == 0.0
    assert [len(b.messages) for b in batcher.due()] == [2]
    assert batcher.buffered_records == 0


def test_drop_removes_only_rejected_messages() -> None:
    batcher = Batcher(max_bytes=10_000, max_records=100, linger_s=1.0, clock=FakeClock())
    for offset in range(4):
        batcher.add("lane", message(10, offset))
    assert batcher.drop(lambda m: m.record.offset % 2 == 0) == 2
    (batch,) = batcher.flush()
    assert [m.record.offset for m in batch.messages] == [0, 2]
    assert batch.size == len(batch.body())
    assert batcher.buffered_records == 0
    assert batcher.buffered_bytes == 0


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=2, max_value=400), min_size=1, max_size=80),
    max_bytes=st.integers(min_value=50, max_value=2000),
    max_records=st.integers(min_value=1, max_value=20),
)
def test_no_batch_exceeds_the_limits(sizes: list[int], max_bytes: int, max_records: int) -> None:
    batcher = Batcher(max_bytes=max_bytes, max_records=max_records, linger_s=1.0, clock=FakeClock())
    batches = []
    for offset, size in enumerate(sizes):
        batches.extend(batcher.add("lane", message(size, offset)))
    batches.extend(batcher.flush())
    order = [m.record.offset for b in batches for m in b.messages]
    assert order == list(range(len(sizes)))  # nothing lost, nothing reordered
    for batch in batches:
        body = batch.body()
        assert batch.size == len(body)
        assert len(batch.messages) <= max_records
        assert len(body) <= max_bytes or len(batch.messages) == 1
        assert len(orjson.loads(body)["messages"]) == len(batch.messages)


def test_request_body_is_the_framed_comma_separated_messages() -> None:
    bodies = [b"{}", b"[1]", b'"a"']
    assert request_body(bodies) == b'{"messages":[{},[1],"a"]}'
    assert request_body([b"{}"]) == b'{"messages":[{}]}'
    assert request_body([]) == b'{"messages":[]}'
    assert bodies == [b"{}", b"[1]", b'"a"']  # the caller's list is left alone


def test_a_queued_batch_keeps_filling_until_sealed() -> None:
    """queue_due hands out due batches still open: the dispatcher queues them, and they take
    records until their request starts, or until they are full."""
    clock = FakeClock()
    batcher = Batcher(max_bytes=10_000, max_records=3, linger_s=0.05, clock=clock)
    batcher.add("a", message(10, 0))
    batcher.add("b", message(10, 0))
    clock.now = 1.0
    queued = batcher.queue_due(skip={"b"})
    assert [b.lane for b in queued] == ["a"]
    (batch,) = queued
    assert batch.queued
    # Queued batches are the dispatcher's to count, and are not due again.
    assert (batcher.buffered_records, batcher.buffered_bytes) == (1, 10)
    assert batcher.queue_due(skip={"b"}) == []
    assert batcher.add("a", message(10, 1)) == []  # still open: it took the record
    assert [m.record.offset for m in batch.messages] == [0, 1]
    assert batch.size == len(batch.body())
    assert (batcher.buffered_records, batcher.buffered_bytes) == (1, 10)
    batcher.seal(batch)
    closed = batcher.add("a", message(10, 2))  # a new batch: the sealed one took no more
    assert closed == []
    assert [m.record.offset for m in batch.messages] == [0, 1]
    assert (batcher.buffered_records, batcher.buffered_bytes) == (2, 20)
    batcher.seal(batch)  # sealing again changes nothing


def test_a_queued_batch_that_fills_up_is_not_handed_out_twice() -> None:
    clock = FakeClock()
    batcher = Batcher(max_bytes=10_000, max_records=2, linger_s=0.0, clock=clock)
    batcher.add("a", message(10, 0))
    (batch,) = batcher.queue_due()
    assert batcher.add("a", message(10, 1)) == []  # full now, closed, but queued already
    assert len(batch.messages) == 2
    fresh = batcher.add("a", message(10, 2))
    assert fresh == []
    assert batcher.next_due_in() == 0.0  # the new batch
    (later,) = batcher.flush()
    assert later is not batch
    assert [m.record.offset for m in later.messages] == [2]
    assert (batcher.buffered_records, batcher.buffered_bytes) == (0, 0)


def test_next_due_in_ignores_queued_batches_and_flush_returns_only_unqueued() -> None:
    clock = FakeClock()
    batcher = Batcher(max_bytes=10_000, max_records=100, linger_s=0.05, clock=clock)
    batcher.add("a", message(10))
    clock.now = 0.05
    batcher.queue_due()
    assert batcher.next_due_in() is None
    batcher.add("b", message(10))
    assert batcher.next_due_in() == 0.05
    assert [b.lane for b in batcher.flush()] == ["b"]


def test_drop_from_a_queued_batch_leaves_the_unqueued_counts_alone() -> None:
    batcher = Batcher(max_bytes=10_000, max_records=100, linger_s=0.0, clock=FakeClock())
    for offset in range(3):
        batcher.add("a", message(10, offset))
    (queued,) = batcher.queue_due()
    batcher.add("b", message(10, 1))
    assert batcher.drop(lambda m: m.record.offset != 1) == 2
    assert [m.record.offset for m in queued.messages] == [0, 2]
    assert queued.size == len(queued.body())
    assert (batcher.buffered_records, batcher.buffered_bytes) == (0, 0)  # b's was dropped too
