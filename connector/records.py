"""The unit of work that flows through the connector: one Kafka record and where it came from.

Kept free of confluent-kafka types so that decoding, mapping and offset logic can be tested
without a broker.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True, frozen=True)
class SourceRecord:
    """One consumed Kafka record, with its original bytes kept for the dead-letter topic."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = field(default=())


@dataclass(slots=True, frozen=True)
class RecordMeta:
    """Kafka metadata that mapping expressions may read (under the name `_kafka`).

    `key` and header values are exposed as text (UTF-8, undecodable bytes replaced) because
    expressions work on strings; the original bytes stay on SourceRecord.
    """

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: str | None
    headers: dict[str, str | None]

    @classmethod
    def of(cls, record: SourceRecord) -> RecordMeta:
        # Built for every record a mapping reads: positional arguments, no work for the
        # usual record without headers.
        headers = record.headers
        return cls(
            record.topic,
            record.partition,
            record.offset,
            record.timestamp_ms,
            _text(record.key),
            {name: _text(value) for name, value in headers} if headers else {},
        )


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("utf-8", errors="replace")
