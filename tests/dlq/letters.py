"""Dead letters as the worker writes them, for the dlq tests.

The context headers come from the worker's own `context_headers`, so the tests read exactly
the format the worker produces.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from confluent_kafka import Producer

from connector.deadletter import context_headers
from connector.dlq.letter import Header, StoredLetter
from connector.errors import DeadLetter as ErrorLetter
from connector.errors import Stage
from connector.records import SourceRecord


@dataclass(frozen=True)
class Spec:
    """One dead letter: the original record and why it failed."""

    source_topic: str
    source_partition: int
    source_offset: int
    key: bytes | None
    value: bytes | None
    stage: Stage = "api"
    error_class: str = "api_rejected"
    mapping: str | None = "orders"
    message: str = "API rejected the message (400): bad"
    status: int | None = 400
    source_timestamp_ms: int | None = 1_700_000_000_000
    original_headers: tuple[Header, ...] = field(default=())
    timestamp_ms: int | None = None  # of the dead letter itself; None: when produced

    def source_record(self) -> SourceRecord:
        return SourceRecord(
            self.source_topic,
            self.source_partition,
            self.source_offset,
            self.source_timestamp_ms,
            self.key,
            self.value,
            self.original_headers,
        )

    def headers(self) -> list[Header]:
        """The dead letter's headers: the original ones, then the worker's context."""
        reason = ErrorLetter(
            self.stage,
            self.error_class,
            self.message,
            self.status,
            "bad" if self.status else None,
            self.mapping,
            1 if self.stage == "api" else 0,
        )
        context = context_headers(self.source_record(), reason)
        return [*self.original_headers, *context]

    def letter(self, partition: int = 0, offset: int = 0) -> StoredLetter:
        """The StoredLetter the reader makes of this spec at `partition`/`offset`."""
        return StoredLetter.parse(
            partition, offset, self.timestamp_ms, self.key, self.value, tuple(self.headers())
        )


def produce_letters(bootstrap: str, topic: str, specs: list[Spec], partition: int = 0) -> None:
    """Write `specs` to the dead-letter `topic`, in order, and wait for every one."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    failures: list[str] = []

    def delivered(error: object, _message: object) -> None:
        if error is not None:
            failures.append(str(error))

    for spec in specs:
        kwargs: dict[str, object] = {}
        if spec.timestamp_ms is not None:
            kwargs["timestamp"] = spec.timestamp_ms
        producer.produce(
            topic,
            key=spec.key,
            value=spec.value,
            headers=spec.headers(),
            partition=partition,
            on_delivery=delivered,
            **kwargs,
        )
    assert producer.flush(30) == 0
    assert not failures, failures
