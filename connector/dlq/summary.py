"""What `dlq inspect` reports: counts of the selected dead letters by stage, error class,
source topic and mapping, and per combination of the four the first and last time and a
sample reason. Payloads never enter the summary; `payload_line` shows one letter on request.
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from connector.dlq.letter import StoredLetter
from connector.dlq.selection import Selection, format_time

NONE = "(none)"  # a letter without the header


@dataclass(slots=True)
class Group:
    """Letters sharing stage, error class, source topic and mapping."""

    count: int = 0
    first_ms: int | None = None
    last_ms: int | None = None
    sample_reason: str = ""  # of the latest letter: the most relevant after a fix
    first_offset: tuple[int, int] | None = None  # (partition, offset) of the dead letter
    last_offset: tuple[int, int] | None = None

    def add(self, letter: StoredLetter) -> None:
        self.count += 1
        moment = letter.timestamp_ms
        where = (letter.partition, letter.offset)
        if self.first_offset is None or where < self.first_offset:
            self.first_offset = where
        if self.last_offset is None or where > self.last_offset:
            self.last_offset = where
        if moment is not None and (self.first_ms is None or moment < self.first_ms):
            self.first_ms = moment
        if moment is not None and (self.last_ms is None or moment >= self.last_ms):
            self.last_ms = moment
            self.sample_reason = letter.reason()
        elif not self.sample_reason:
            self.sample_reason = letter.reason()


@dataclass(slots=True)
class Summary:
    topic: str
    scanned: int = 0  # letters read
    selected: int = 0  # letters the selection matched
    first_ms: int | None = None
    last_ms: int | None = None
    by_stage: Counter[str] = field(default_factory=Counter)
    by_class: Counter[str] = field(default_factory=Counter)
    by_source_topic: Counter[str] = field(default_factory=Counter)
    by_mapping: Counter[str] = field(default_factory=Counter)
    by_replay_count: Counter[str] = field(default_factory=Counter)
    groups: dict[tuple[str, str, str, str], Group] = field(default_factory=dict)

    def add(self, letter: StoredLetter) -> None:
        """Count one selected letter."""
        self.selected += 1
        stage = letter.stage or NONE
        error_class = letter.error_class or NONE
        topic = letter.source_topic or NONE
        mapping = letter.mapping or NONE
        self.by_stage[stage] += 1
        self.by_class[error_class] += 1
        self.by_source_topic[topic] += 1
        self.by_mapping[mapping] += 1
        count = letter.replay_count
        self.by_replay_count["unreadable" if count is None else str(count)] += 1
        moment = letter.timestamp_ms
        if moment is not None:
            self.first_ms = moment if self.first_ms is None else min(self.first_ms, moment)
            self.last_ms = moment if self.last_ms is None else max(self.last_ms, moment)
        key = (stage, error_class, topic, mapping)
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = Group()
        group.add(letter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "scanned": self.scanned,
            "selected": self.selected,
            "first": format_time(self.first_ms) if self.first_ms is not None else None,
            "last": format_time(self.last_ms) if self.last_ms is not None else None,
            "by_stage": dict(self.by_stage.most_common()),
            "by_class": dict(self.by_class.most_common()),
            "by_source_topic": dict(self.by_source_topic.most_common()),
            "by_mapping": dict(self.by_mapping.most_common()),
            "by_replay_count": dict(sorted(self.by_replay_count.items())),
            "groups": [
                {
                    "stage": stage,
                    "class": error_class,
                    "source_topic": topic,
                    "mapping": mapping,
                    "count": group.count,
                    "first": format_time(group.first_ms) if group.first_ms is not None else None,
                    "last": format_time(group.last_ms) if group.last_ms is not None else None,
                    "first_offset": _offset(group.first_offset),
                    "last_offset": _offset(group.last_offset),
                    "sample_reason": group.sample_reason,
                }
                for (stage, error_class, topic, mapping), group in self.groups_by_count()
            ],
        }

    def groups_by_count(self) -> list[tuple[tuple[str, str, str, str], Group]]:
        return sorted(self.groups.items(), key=lambda item: (-item[1].count, item[0]))


def _offset(where: tuple[int, int] | None) -> str | None:
    return None if where is None else f"{where[0]}:{where[1]}"


def render_text(summary: Summary, selection_text: str) -> str:
    """The summary for a terminal."""
    lines = [
        f"dead-letter topic {summary.topic}: {summary.scanned} letters read, "
        f"{summary.selected} selected ({selection_text})",
    ]
    if not summary.selected:
        return "\n".join(lines) + "\n"
    lines.append(
        f"dead-lettered from {format_time(summary.first_ms)} to {format_time(summary.last_ms)}"
    )
    lines.append("")
    for title, counts in (
        ("by stage", summary.by_stage),
        ("by error class", summary.by_class),
        ("by source topic", summary.by_source_topic),
        ("by mapping", summary.by_mapping),
    ):
        lines.append(f"{title + ':':<17}" + ", ".join(f"{k} {n}" for k, n in counts.most_common()))
    replayed = ", ".join(
        f"{'never' if k == '0' else k + 'x'} {n}"
        for k, n in sorted(summary.by_replay_count.items())
    )
    lines.append(f"{'replayed before:':<17}{replayed}")
    lines.append("")
    for (stage, error_class, topic, mapping), group in summary.groups_by_count():
        lines.append(
            f"{group.count:>7}  stage {stage}, class {error_class}, "
            f"source topic {topic}, mapping {mapping}"
        )
        lines.append(
            f"         {format_time(group.first_ms)} .. {format_time(group.last_ms)}, "
            f"offsets {_offset(group.first_offset)} .. {_offset(group.last_offset)}"
        )
        lines.append(f"         e.g. {group.sample_reason}")
    return "\n".join(lines) + "\n"


def payload_line(letter: StoredLetter) -> bytes:
    """One letter as a JSON line: where it is, key, value and every header. Bytes that are
    UTF-8 are shown as text, others as {"base64": …}."""
    return orjson.dumps(
        {
            "partition": letter.partition,
            "offset": letter.offset,
            "timestamp": format_time(letter.timestamp_ms),
            "key": _bytes(letter.key),
            "value": _bytes(letter.value),
            "headers": [[name, _bytes(value)] for name, value in letter.headers],
        }
    )


def _bytes(raw: bytes | None) -> str | dict[str, str] | None:
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(raw).decode()}


def summarize(
    topic: str,
    batches: Iterable[list[StoredLetter]],
    selection: Selection,
    on_selected: Callable[[StoredLetter], None] = lambda _letter: None,
) -> Summary:
    """Count the letters of `batches` that `selection` matches; `on_selected` sees each."""
    summary = Summary(topic)
    for batch in batches:
        summary.scanned += len(batch)
        for letter in batch:
            if selection.matches(letter):
                summary.add(letter)
                on_selected(letter)
    return summary
