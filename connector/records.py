"""The unit of work that flows through the connector: one Kafka record and where it came from.

Kept free of confluent-kafka types so that decoding, mapping and offset logic can be tested
without a broker.
"""

from __future__ import annotations

from typing import NamedTuple


class SourceRecord(NamedTuple):
    """One consumed Kafka record, with its original bytes kept for the dead-letter topic.

    A named tuple: immutable like a frozen dataclass, and built in a third of the time (a
    frozen dataclass sets each field through object.__setattr__); one is built for every
    record consumed.
    """

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()


class RecordMeta(NamedTuple):
    """Kafka metadata that mapping expressions may read (under the name `_kafka`).

    `key` and header values are exposed as text (UTF-8, undecodable bytes replaced) because
    expressions work on strings; the original bytes stay on SourceRecord. A named tuple for the
    reason SourceRecord is one: one is built for every record a mapping reads.
    """

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: str | None
    headers: dict[str, str | None]

    @classmethod
    def of(cls, record: SourceRecord) -> RecordMeta:
        # Positional arguments, and no work for the usual record without headers.
        headers = record.headers
        key = record.key
        return cls(
            record.topic,
            record.partition,
            record.offset,
            record.timestamp_ms,
            None if key is None else key.decode("utf-8", errors="replace"),
            {name: _text(value) for name, value in headers} if headers else {},
        )


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("utf-8", errors="replace")
