"""The chaos suite's invariant checker catches what it is there to catch (unit tests: no
broker, no processes)."""

from __future__ import annotations

from typing import Any

from tests.chaos.ledger import ORIGIN_HEADER, Expected, Ledger, Letter, Outcome, parse_id

TOPIC = "chaos-t"


def produced(ledger: Ledger, partition: int, offset: int, outcome: Outcome = "accept") -> Expected:
    n = partition * 1000 + offset
    key = f"k{n}".encode()
    expected = Expected(outcome, n, key, b'{"n": %d}' % n)
    ledger.produced_record((TOPIC, partition, offset), expected)
    return expected


def accepted_line(partition: int, offset: int, at_ms: int, n: int | None = None) -> dict[str, Any]:
    entity = {
        "_id": f"{TOPIC}/{partition}/{offset}",
        "_acme": {"n": n or partition * 1000 + offset},
    }
    return {"receivedTimeMs": at_ms, "message": {"body": {"xdmEntity": entity}}}


def letter(
    expected: Expected, partition: int, offset: int, at_ms: int, stage: str = "decode"
) -> Letter:
    headers = (
        (ORIGIN_HEADER, expected.key),
        ("aep.dlq.source.topic", TOPIC.encode()),
        ("aep.dlq.source.partition", str(partition).encode()),
        ("aep.dlq.source.offset", str(offset).encode()),
        ("aep.dlq.source.timestamp", b"1"),
        ("aep.dlq.stage", stage.encode()),
        ("aep.dlq.error.class", b"invalid_json"),
        ("aep.dlq.error.message", b"bad"),
    )
    return Letter(at_ms, expected.key, expected.value, headers)


def test_a_commit_covering_only_finished_records_passes() -> None:
    ledger = Ledger()
    for offset in range(3):
        produced(ledger, 0, offset)
    ledger.accept(accepted_line(0, 0, 100))
    ledger.accept(accepted_line(0, 1, 110))
    assert ledger.check_commits(TOPIC, {0: 2}, at_ms=120) == []
    assert ledger.check_commits(TOPIC, {0: -1001, 1: -1001}, at_ms=120) == []


def test_a_commit_ahead_of_an_unfinished_record_is_caught() -> None:
    ledger = Ledger()
    for offset in range(3):
        produced(ledger, 0, offset)
    ledger.accept(accepted_line(0, 0, 100))
    ledger.accept(accepted_line(0, 2, 100))
    found = ledger.check_commits(TOPIC, {0: 3}, at_ms=120)
    assert len(found) == 1
    assert "offset 1" in found[0]
    assert ledger.summary().commit_ahead == found


def test_an_acceptance_after_the_sample_does_not_excuse_the_commit() -> None:
    """The commit was read at 120 ms; the record was accepted only at 130 ms."""
    ledger = Ledger()
    produced(ledger, 0, 0)
    ledger.accept(accepted_line(0, 0, 130))
    assert ledger.check_commits(TOPIC, {0: 1}, at_ms=120) != []


def test_a_dead_letter_finishes_a_record_from_its_append_time() -> None:
    ledger = Ledger()
    expected = produced(ledger, 0, 0, "decode")
    ledger.dead_letter(letter(expected, 0, 0, at_ms=150))
    assert ledger.check_commits(TOPIC, {0: 1}, at_ms=140) != []
    assert ledger.check_commits(TOPIC, {0: 1}, at_ms=150) == []


def test_lost_duplicated_and_misrouted_records_are_counted() -> None:
    ledger = Ledger()
    produced(ledger, 0, 0)
    produced(ledger, 0, 1)  # never accepted: lost
    bad = produced(ledger, 0, 2, "decode")
    good_letter = produced(ledger, 0, 3)
    ledger.accept(accepted_line(0, 0, 100))
    ledger.accept(accepted_line(0, 0, 200))  # a duplicate
    ledger.accept(accepted_line(0, 2, 100))  # a poison record accepted
    ledger.dead_letter(letter(good_letter, 0, 3, 100))  # a good record dead-lettered
    del bad
    summary = ledger.summary()
    assert summary.lost == 1
    assert summary.duplicates == 1
    assert len(summary.wrong_outcome) == 2


def test_a_dead_letter_must_keep_bytes_headers_and_stage() -> None:
    ledger = Ledger()
    expected = produced(ledger, 0, 0, "map")
    wrong_stage = letter(expected, 0, 0, 100, stage="decode")
    ledger.dead_letter(wrong_stage)
    assert "stage" in ledger.summary().wrong_outcome[0]

    ledger = Ledger()
    expected = produced(ledger, 0, 0, "decode")
    stripped = letter(expected, 0, 0, 100)
    ledger.dead_letter(Letter(100, stripped.key, stripped.value, stripped.headers[1:]))
    assert "own headers" in ledger.summary().wrong_outcome[0]

    ledger = Ledger()
    expected = produced(ledger, 0, 0, "decode")
    changed = letter(expected, 0, 0, 100)
    ledger.dead_letter(Letter(100, changed.key, b"other", changed.headers))
    assert "differs" in ledger.summary().wrong_outcome[0]


def test_an_entity_that_does_not_match_its_record_is_reported() -> None:
    ledger = Ledger()
    produced(ledger, 0, 0)
    ledger.accept(accepted_line(0, 0, 100, n=999))
    ledger.accept({"receivedTimeMs": 1, "message": {"body": {"xdmEntity": {"_id": "x"}}}})
    assert len(ledger.summary().unknown) == 2


def test_commit_regressions_are_counted() -> None:
    ledger = Ledger()
    for offset in range(3):
        produced(ledger, 0, offset)
        ledger.accept(accepted_line(0, offset, 100))
    ledger.check_commits(TOPIC, {0: 3}, at_ms=120)
    ledger.check_commits(TOPIC, {0: 1}, at_ms=130)
    assert ledger.summary().commit_regressions == 1


def test_ids_are_parsed_from_the_right() -> None:
    assert parse_id("chaos-ab/3/17") == ("chaos-ab", 3, 17)
    assert parse_id("a/b/c/4/5") == ("a/b/c", 4, 5)
    assert parse_id("x") is None
    assert parse_id(7) is None
