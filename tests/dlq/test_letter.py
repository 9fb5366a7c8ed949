"""A dead letter's headers: the worker's context parsed, the original headers given back byte
for byte, the replay count carried and incremented."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.dlq.letter import REPLAY_COUNT_HEADER, StoredLetter
from tests.dlq.letters import Spec


def spec(**overrides: object) -> Spec:
    fields: dict[str, object] = {
        "source_topic": "orders",
        "source_partition": 3,
        "source_offset": 41,
        "key": b"k",
        "value": b'{"id": 1}',
    }
    fields.update(overrides)
    return Spec(**fields)  # type: ignore[arg-type]


def test_context_headers_are_parsed() -> None:
    letter = spec(original_headers=(("trace", b"abc"),)).letter(partition=1, offset=7)
    assert (letter.partition, letter.offset) == (1, 7)
    assert letter.source_topic == "orders"
    assert (letter.source_partition, letter.source_offset) == (3, 41)
    assert letter.source_timestamp_ms == 1_700_000_000_000
    assert (letter.stage, letter.error_class, letter.mapping) == ("api", "api_rejected", "orders")
    assert letter.error_message == "API rejected the message (400): bad"
    assert (letter.http_status, letter.api_message, letter.attempts) == (400, "bad", 1)
    assert letter.replay_count == 0


def test_absent_headers_are_none() -> None:
    letter = spec(stage="decode", mapping=None, status=None, source_timestamp_ms=None).letter()
    assert letter.mapping is None
    assert letter.http_status is None
    assert letter.api_message is None
    assert letter.source_timestamp_ms is None
    assert letter.attempts is None


def test_a_record_that_is_no_dead_letter_has_no_context() -> None:
    letter = StoredLetter.parse(0, 0, None, b"k", b"v", (("trace", b"x"),))
    assert letter.source_topic is None
    assert letter.stage is None
    assert letter.original_headers() == [("trace", b"x")]


def test_original_headers_keep_order_duplicates_and_null_values() -> None:
    original = (("b", b"1"), ("a", None), ("b", b"\xff\x00"), ("aep.other", b"kept"))
    letter = spec(original_headers=original).letter()
    assert letter.original_headers() == list(original)


def test_replay_headers_drop_the_context_and_count_one() -> None:
    original = (("trace", b"abc"), ("a", None))
    letter = spec(original_headers=original).letter()
    assert letter.replay_headers() == [*original, (REPLAY_COUNT_HEADER, b"1")]


def test_replay_count_is_incremented_from_the_previous_replay() -> None:
    original = (("trace", b"abc"), (REPLAY_COUNT_HEADER, b"2"), ("z", b"z"))
    letter = spec(original_headers=original).letter()
    assert letter.replay_count == 2
    assert letter.replay_headers() == [("trace", b"abc"), ("z", b"z"), (REPLAY_COUNT_HEADER, b"3")]


@pytest.mark.parametrize("raw", [b"", b"two", b"-1", b"1.0", None])
def test_an_unreadable_replay_count_is_none(raw: bytes | None) -> None:
    letter = spec(original_headers=((REPLAY_COUNT_HEADER, raw),)).letter()
    assert letter.replay_count is None
    with pytest.raises(ValueError, match="unreadable"):
        letter.replay_headers()


def test_reason_is_one_short_line() -> None:
    letter = spec(message="first line\n  second\tline " + "x" * 500).letter()
    reason = letter.reason()
    assert reason.startswith("first line second line x")
    assert len(reason) == 200
    assert reason.endswith("…")
    assert "\n" not in reason


header_names = st.text(min_size=1, max_size=12).filter(
    lambda name: not name.startswith("aep.dlq.") and name != REPLAY_COUNT_HEADER
)
header_values = st.none() | st.binary(max_size=20)


@given(
    st.lists(st.tuples(header_names, header_values), max_size=8),
    st.none() | st.integers(min_value=0, max_value=10**6),
)
def test_replay_gives_back_every_original_header_byte_for_byte(
    original: list[tuple[str, bytes | None]], previous: int | None
) -> None:
    headers = list(original)
    if previous is not None:
        headers.insert(len(headers) // 2, (REPLAY_COUNT_HEADER, str(previous).encode()))
    letter = spec(original_headers=tuple(headers)).letter()
    replayed = letter.replay_headers()
    assert replayed[:-1] == original
    assert replayed[-1] == (REPLAY_COUNT_HEADER, str((previous or 0) + 1).encode())
    # A dead letter of the replayed record reads the new count.
    again = spec(original_headers=tuple(replayed)).letter()
    assert again.replay_count == (previous or 0) + 1
