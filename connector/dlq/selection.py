"""Which dead letters a command applies to.

Every criterion given must match (AND); the values of one criterion are alternatives (OR).
A criterion left empty matches every letter. A letter without the header a criterion reads
(e.g. no `mapping` for a record that failed to decode) does not match that criterion.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from connector.dlq.letter import StoredLetter


@dataclass(frozen=True, slots=True)
class OffsetRange:
    """Offsets `first`..`last` (both inclusive, either open) of one partition, or of all."""

    partition: int | None
    first: int | None
    last: int | None

    def contains(self, partition: int | None, offset: int | None) -> bool:
        if partition is None or offset is None:
            return False
        if self.partition is not None and partition != self.partition:
            return False
        if self.first is not None and offset < self.first:
            return False
        return self.last is None or offset <= self.last

    def __str__(self) -> str:
        where = "" if self.partition is None else f"{self.partition}:"
        first = "" if self.first is None else str(self.first)
        last = "" if self.last is None else str(self.last)
        return where + (first if first == last else f"{first}-{last}")


_RANGE = re.compile(r"(?:(?P<partition>\d+):)?(?P<first>\d*)(?P<dash>-?)(?P<last>\d*)")


def parse_offset_range(text: str) -> OffsetRange:
    """`[PARTITION:]FIRST-LAST`, either end open (`100-`, `-200`), or one offset (`3:42`)."""
    match = _RANGE.fullmatch(text.strip())
    if match is None or not (match["first"] or match["last"]):
        raise ValueError(
            f"{text!r} is not an offset range: [PARTITION:]FIRST-LAST, e.g. 0:100-199, "
            "0:100-, -99, 0:42"
        )
    partition = int(match["partition"]) if match["partition"] else None
    first = int(match["first"]) if match["first"] else None
    last = int(match["last"]) if match["last"] else None
    if not match["dash"]:
        last = first  # a single offset
    if first is not None and last is not None and last < first:
        raise ValueError(f"{text!r}: the range ends before it starts")
    return OffsetRange(partition, first, last)


_AGO = re.compile(r"(?P<amount>\d+(?:\.\d+)?)(?P<unit>[smhd])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(text: str, now_ms: int) -> int:
    """Milliseconds since the epoch from ISO 8601 (no zone: UTC; a date alone: its midnight)
    or from a duration before now (`90s`, `15m`, `2h`, `7d`)."""
    text = text.strip()
    ago = _AGO.fullmatch(text)
    if ago is not None:
        return now_ms - round(float(ago["amount"]) * _UNIT_S[ago["unit"]] * 1000)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is neither an ISO 8601 time (2024-05-01T12:00:00Z, 2024-05-01) "
            "nor a duration ago (90s, 15m, 2h, 7d)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


def format_time(ms: int | None) -> str:
    """ISO 8601 in UTC, to the millisecond; '-' for no time."""
    if ms is None:
        return "-"
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


@dataclass(frozen=True, slots=True)
class Selection:
    """The filters of `dlq inspect` and `dlq replay`."""

    stages: frozenset[str] = frozenset()
    error_classes: frozenset[str] = frozenset()
    source_topics: frozenset[str] = frozenset()
    mappings: frozenset[str] = frozenset()
    since_ms: int | None = None  # dead-lettered at or after
    until_ms: int | None = None  # dead-lettered before
    offsets: tuple[OffsetRange, ...] = ()  # of the dead-letter topic
    source_offsets: tuple[OffsetRange, ...] = ()  # of the original record

    def matches(self, letter: StoredLetter) -> bool:
        if self.stages and letter.stage not in self.stages:
            return False
        if self.error_classes and letter.error_class not in self.error_classes:
            return False
        if self.source_topics and letter.source_topic not in self.source_topics:
            return False
        if self.mappings and letter.mapping not in self.mappings:
            return False
        if self.since_ms is not None or self.until_ms is not None:
            moment = letter.timestamp_ms
            if moment is None:
                return False
            if self.since_ms is not None and moment < self.since_ms:
                return False
            if self.until_ms is not None and moment >= self.until_ms:
                return False
        if self.offsets and not any(
            r.contains(letter.partition, letter.offset) for r in self.offsets
        ):
            return False
        return not self.source_offsets or any(
            r.contains(letter.source_partition, letter.source_offset) for r in self.source_offsets
        )

    @property
    def everything(self) -> bool:
        return self == Selection()

    def describe(self) -> str:
        """The criteria in words, for the reports ('every letter' when there are none)."""
        parts = [
            f"{name} in {{{', '.join(sorted(values))}}}"
            for name, values in (
                ("stage", self.stages),
                ("class", self.error_classes),
                ("source topic", self.source_topics),
                ("mapping", self.mappings),
            )
            if values
        ]
        if self.since_ms is not None:
            parts.append(f"dead-lettered at or after {format_time(self.since_ms)}")
        if self.until_ms is not None:
            parts.append(f"dead-lettered before {format_time(self.until_ms)}")
        if self.offsets:
            parts.append(f"offsets {', '.join(map(str, self.offsets))}")
        if self.source_offsets:
            parts.append(f"source offsets {', '.join(map(str, self.source_offsets))}")
        return " and ".join(parts) if parts else "every letter"
