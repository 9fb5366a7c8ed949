"""One dead letter as the worker wrote it: the original record plus context headers.

The worker (connector/deadletter.py) appends headers named `aep.dlq.*` after the record's own
headers. A replay strips those and appends `aep.replay.count`; when a replayed record fails
again, its new dead letter carries that count among the original headers, so the next replay
knows how often the record has already gone round.

Pure: no Kafka types, so that the header logic is tested without a broker.
"""

from __future__ import annotations

from dataclasses import dataclass

from connector.deadletter import HEADER_PREFIX

#: How many times the record has been replayed; among the record's own headers.
REPLAY_COUNT_HEADER = "aep.replay.count"

Header = tuple[str, bytes | None]

#: Characters of a reason shown by `inspect` (the headers keep up to 1000).
REASON_LIMIT = 200


@dataclass(frozen=True, slots=True)
class StoredLetter:
    """A record of the dead-letter topic, with the worker's context headers parsed.

    `partition`, `offset` and `timestamp_ms` are the dead letter's own (when it was
    dead-lettered); the `source_*` fields say where the original record was. Context fields
    are None when the header is absent (e.g. `mapping` for a record that failed to decode).
    `replay_count` is None when the header is present but unreadable.
    """

    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...]
    source_topic: str | None = None
    source_partition: int | None = None
    source_offset: int | None = None
    source_timestamp_ms: int | None = None
    stage: str | None = None
    error_class: str | None = None
    error_message: str | None = None
    http_status: int | None = None
    api_message: str | None = None
    attempts: int | None = None
    mapping: str | None = None
    replay_count: int | None = 0

    @classmethod
    def parse(
        cls,
        partition: int,
        offset: int,
        timestamp_ms: int | None,
        key: bytes | None,
        value: bytes | None,
        headers: tuple[Header, ...],
    ) -> StoredLetter:
        context: dict[str, str] = {}
        replay_count: int | None = 0
        for name, raw in headers:
            # The last occurrence wins: the worker's headers come after the record's own.
            if name.startswith(HEADER_PREFIX) and raw is not None:
                context[name.removeprefix(HEADER_PREFIX)] = raw.decode("utf-8", "replace")
            elif name == REPLAY_COUNT_HEADER:
                replay_count = _count(raw)
        get = context.get
        return cls(
            partition,
            offset,
            timestamp_ms,
            key,
            value,
            headers,
            source_topic=get("source.topic"),
            source_partition=_int(get("source.partition")),
            source_offset=_int(get("source.offset")),
            source_timestamp_ms=_int(get("source.timestamp")),
            stage=get("stage"),
            error_class=get("error.class"),
            error_message=get("error.message"),
            http_status=_int(get("http.status")),
            api_message=get("api.message"),
            attempts=_int(get("attempts")),
            mapping=get("mapping"),
            replay_count=replay_count,
        )

    def original_headers(self) -> list[Header]:
        """The record's own headers, in order, byte for byte: everything but `aep.dlq.*`."""
        return [(k, v) for k, v in self.headers if not k.startswith(HEADER_PREFIX)]

    def replay_headers(self) -> list[Header]:
        """The headers of the replayed record: the original ones, replay count incremented."""
        if self.replay_count is None:
            raise ValueError("the replay count header is unreadable")
        kept = [(k, v) for k, v in self.original_headers() if k != REPLAY_COUNT_HEADER]
        return [*kept, (REPLAY_COUNT_HEADER, str(self.replay_count + 1).encode())]

    def reason(self) -> str:
        """The error message on one line, shortened: what `inspect` shows as a sample."""
        text = self.error_message or self.api_message or "(no error message header)"
        text = " ".join(text.split())
        return text if len(text) <= REASON_LIMIT else text[: REASON_LIMIT - 1] + "…"


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _count(raw: bytes | None) -> int | None:
    """A replay count is a non-negative decimal number; anything else is unreadable."""
    if raw is None or not raw.isdigit():
        return None
    return int(raw)
