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
    record consumed. Mappings read their `_kafka` metadata from it directly: the key and
    header values are decoded to text only where an expression reads them.
    """

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()
