"""Filters select exactly what they say: parsing of offsets and times, and matching."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.dlq.letter import StoredLetter
from connector.dlq.selection import (
    OffsetRange,
    Selection,
    format_time,
    parse_offset_range,
    parse_time,
)
from tests.dlq.letters import Spec


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0:100-199", OffsetRange(0, 100, 199)),
        ("2:42", OffsetRange(2, 42, 42)),
        ("42", OffsetRange(None, 42, 42)),
        ("0:100-", OffsetRange(0, 100, None)),
        ("-99", OffsetRange(None, None, 99)),
        ("1:-99", OffsetRange(1, None, 99)),
        (" 10-20 ", OffsetRange(None, 10, 20)),
    ],
)
def test_offset_ranges(text: str, expected: OffsetRange) -> None:
    assert parse_offset_range(text) == expected
    assert parse_offset_range(str(expected)) == expected


@pytest.mark.parametrize("text", ["", "-", "0:", "a-b", "1:2:3", "0:20-10", "1.5", "0:-"])
def test_bad_offset_ranges_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"offset range|ends before"):
        parse_offset_range(text)


def test_offset_range_bounds_are_inclusive() -> None:
    span = OffsetRange(0, 10, 12)
    assert [o for o in range(8, 15) if span.contains(0, o)] == [10, 11, 12]
    assert not span.contains(1, 11)
    assert not span.contains(None, 11)
    assert OffsetRange(None, None, 3).contains(7, 3)


NOW_MS = 1_714_564_800_000  # 2024-05-01T12:00:00Z


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T12:00:00Z", NOW_MS),
        ("2024-05-01T12:00:00", NOW_MS),  # no zone: UTC
        ("2024-05-01T14:00:00+02:00", NOW_MS),
        ("2024-05-01", NOW_MS - 12 * 3600 * 1000),
        ("2024-05-01T12:00:00.250Z", NOW_MS + 250),
        ("90s", NOW_MS - 90_000),
        ("15m", NOW_MS - 15 * 60_000),
        ("2h", NOW_MS - 2 * 3600_000),
        ("7d", NOW_MS - 7 * 86_400_000),
        ("1.5h", NOW_MS - 5400_000),
    ],
)
def test_times(text: str, expected: int) -> None:
    assert parse_time(text, NOW_MS) == expected


@pytest.mark.parametrize("text", ["yesterday", "2h ago", "5w", "2024-13-01", ""])
def test_bad_times_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_time(text, NOW_MS)


def test_format_time_is_utc_to_the_millisecond() -> None:
    assert format_time(NOW_MS + 7) == "2024-05-01T12:00:00.007Z"
    assert format_time(None) == "-"
    assert datetime.fromisoformat(format_time(NOW_MS)) == datetime(2024, 5, 1, 12, tzinfo=UTC)


# --- matching: a letter matches exactly when every given criterion holds ------------------

STAGES = ["decode", "map", "validate", "api"]
CLASSES = ["api_rejected", "invalid_json", "mapping_failure"]
TOPICS = ["orders", "clicks"]
MAPPINGS = ["orders", "clicks"]

letters = st.builds(
    lambda stage, error_class, topic, mapping, partition, offset, sp, so, ts: Spec(
        source_topic=topic,
        source_partition=sp,
        source_offset=so,
        key=b"k",
        value=b"v",
        stage=stage,
        error_class=error_class,
        mapping=mapping,
        timestamp_ms=ts,
    ).letter(partition, offset),
    st.sampled_from(STAGES),
    st.sampled_from(CLASSES),
    st.sampled_from(TOPICS),
    st.none() | st.sampled_from(MAPPINGS),
    st.integers(0, 2),
    st.integers(0, 30),
    st.integers(0, 2),
    st.integers(0, 30),
    st.none() | st.integers(0, 100),
)
ranges = st.builds(
    OffsetRange, st.none() | st.integers(0, 2), st.none() | st.integers(0, 30), st.none()
) | st.builds(
    lambda p, a, n: OffsetRange(p, a, a + n),
    st.none() | st.integers(0, 2),
    st.integers(0, 30),
    st.integers(0, 10),
)


def subset(values: list[str]) -> st.SearchStrategy[frozenset[str]]:
    return st.frozensets(st.sampled_from(values), max_size=2)


selections = st.builds(
    Selection,
    stages=subset(STAGES),
    error_classes=subset(CLASSES),
    source_topics=subset(TOPICS),
    mappings=subset(MAPPINGS),
    since_ms=st.none() | st.integers(0, 100),
    until_ms=st.none() | st.integers(0, 100),
    offsets=st.tuples() | st.tuples(ranges) | st.tuples(ranges, ranges),
    source_offsets=st.tuples() | st.tuples(ranges),
)


def in_ranges(ranges: tuple[OffsetRange, ...], partition: int | None, offset: int | None) -> bool:
    """Membership written out without OffsetRange.contains."""
    return any(
        (r.partition is None or r.partition == partition)
        and (r.first is None or (offset is not None and offset >= r.first))
        and (r.last is None or (offset is not None and offset <= r.last))
        for r in ranges
    )


@given(letters, selections)
def test_a_letter_matches_exactly_when_every_criterion_holds(
    letter: StoredLetter, selection: Selection
) -> None:
    ts = letter.timestamp_ms
    expected = all(
        [
            not selection.stages or letter.stage in selection.stages,
            not selection.error_classes or letter.error_class in selection.error_classes,
            not selection.source_topics or letter.source_topic in selection.source_topics,
            not selection.mappings or letter.mapping in selection.mappings,
            selection.since_ms is None or (ts is not None and ts >= selection.since_ms),
            selection.until_ms is None or (ts is not None and ts < selection.until_ms),
            not selection.offsets or in_ranges(selection.offsets, letter.partition, letter.offset),
            not selection.source_offsets
            or in_ranges(selection.source_offsets, letter.source_partition, letter.source_offset),
        ]
    )
    assert selection.matches(letter) == expected


def test_an_empty_selection_matches_every_letter_even_without_headers() -> None:
    assert Selection().matches(StoredLetter.parse(0, 0, None, None, None, ()))
    assert Selection().everything


def test_a_criterion_does_not_match_a_letter_without_its_header() -> None:
    bare = StoredLetter.parse(0, 5, None, None, None, ())
    assert not Selection(stages=frozenset({"api"})).matches(bare)
    assert not Selection(mappings=frozenset({"orders"})).matches(bare)
    assert not Selection(since_ms=0).matches(bare)
    assert not Selection(source_offsets=(OffsetRange(None, None, None),)).matches(bare)


def test_describe_names_every_criterion() -> None:
    selection = Selection(
        stages=frozenset({"map", "api"}),
        mappings=frozenset({"orders"}),
        since_ms=NOW_MS,
        offsets=(OffsetRange(0, 1, 9),),
    )
    assert selection.describe() == (
        "stage in {api, map} and mapping in {orders} and dead-lettered at or after "
        "2024-05-01T12:00:00.000Z and offsets 0:1-9"
    )
    assert Selection().describe() == "every letter"
