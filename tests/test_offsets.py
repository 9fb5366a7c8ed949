"""The offset tracker never lets a commit pass an unfinished record, whatever the order."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.offsets import OffsetTracker, PartitionState


def test_contiguous_run_only() -> None:
    state = PartitionState(("t", 0))
    for offset in (10, 11, 12):
        state.add(offset, 1)
    state.finish(12)
    state.finish(11)
    assert state.position is None
    state.finish(10)
    assert state.position == 13


def test_gaps_in_the_log_are_not_waited_for() -> None:
    state = PartitionState(("t", 0))
    state.add(5, 1)
    state.add(9, 1)  # 6..8 were compacted away or are transaction markers
    state.finish(5)
    assert state.position == 6
    state.finish(9)
    assert state.position == 10


def test_fan_out_finishes_when_every_part_is_done() -> None:
    state = PartitionState(("t", 0))
    state.add(0, 3)
    state.finish(0)
    state.finish(0)
    assert state.position is None
    state.finish(0)
    assert state.position == 1
    with pytest.raises(ValueError, match="more often"):
        state.finish(0)


def test_zero_parts_finishes_at_once_but_not_past_earlier_records() -> None:
    state = PartitionState(("t", 0))
    state.add(0, 1)
    state.add(1, 0)  # filtered out by every mapping
    assert state.position is None
    state.finish(0)
    assert state.position == 2


def test_offsets_must_increase() -> None:
    state = PartitionState(("t", 0))
    state.add(3, 1)
    with pytest.raises(ValueError, match="after 3"):
        state.add(3, 1)


def test_late_results_after_release_are_ignored() -> None:
    tracker = OffsetTracker()
    old = tracker.assign(("t", 0))
    old.add(0, 1)
    tracker.release(("t", 0))
    old.finish(0)  # arrives after the revoke: ignored, no error
    assert old.position is None
    new = tracker.assign(("t", 0))
    assert new is not old
    assert tracker.commit_positions() == {}


def test_commit_positions_report_only_moves() -> None:
    tracker = OffsetTracker()
    a = tracker.assign(("a", 0))
    b = tracker.assign(("b", 1))
    a.add(0, 1)
    b.add(7, 1)
    a.finish(0)
    assert tracker.commit_positions() == {("a", 0): 1}
    tracker.mark_committed({("a", 0): 1})
    assert tracker.commit_positions() == {}
    b.finish(7)
    assert tracker.commit_positions([("b", 1)]) == {("b", 1): 8}
    assert tracker.pending == 0


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[tuple[int, int]], list[int]]:
    gaps = draw(st.lists(st.integers(min_value=1, max_value=3), min_size=1, max_size=60))
    offsets = []
    current = draw(st.integers(min_value=0, max_value=1000))
    for gap in gaps:
        current += gap
        offsets.append(current)
    records = [(offset, draw(st.integers(min_value=0, max_value=3))) for offset in offsets]
    results = [offset for offset, parts in records for _ in range(parts)]
    order = draw(st.permutations(results))
    return records, list(order)


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_position_never_passes_an_unfinished_record(
    scenario: tuple[list[tuple[int, int]], list[int]],
) -> None:
    records, order = scenario
    state = PartitionState(("t", 0))
    for offset, parts in records:
        state.add(offset, parts)
    remaining = {offset: parts for offset, parts in records if parts}
    for offset in order:
        state.finish(offset)
        remaining[offset] -= 1
        if remaining[offset] == 0:
            del remaining[offset]
        if state.position is not None:
            # Everything below the position is finished ...
            assert all(o >= state.position for o in remaining)
        if remaining:
            # ... and the position reaches up to the first unfinished record.
            first_unfinished = min(remaining)
            finished_before = [o for o, _ in records if o < first_unfinished]
            expected = max(finished_before) + 1 if finished_before else None
            assert state.position == expected
    assert state.position == records[-1][0] + 1
    assert state.pending == 0


@settings(max_examples=300, deadline=None)
@given(scenarios(), st.lists(st.integers(min_value=1, max_value=8), min_size=1, max_size=20))
def test_finish_many_is_finish_in_turn(
    scenario: tuple[list[tuple[int, int]], list[int]], sizes: list[int]
) -> None:
    """The results of a request, finished in one call, leave the state as one call each."""
    records, order = scenario
    one_by_one, at_once = PartitionState(("t", 0)), PartitionState(("t", 0))
    for offset, parts in records:
        one_by_one.add(offset, parts)
        at_once.add(offset, parts)
    start = 0
    for size in sizes * (len(order) // len(sizes) + 1):
        if start >= len(order):
            break
        chunk = order[start : start + size]
        start += size
        for offset in chunk:
            one_by_one.finish(offset)
        at_once.finish_many(chunk)
        assert at_once.position == one_by_one.position
        assert at_once.pending == one_by_one.pending
        assert at_once.first_unfinished() == one_by_one.first_unfinished()


def test_finish_many_refuses_an_offset_finished_too_often_and_ignores_a_released_state() -> None:
    state = PartitionState(("t", 0))
    state.add(5, 1)
    with pytest.raises(ValueError, match="finished more often"):
        state.finish_many([5, 5])
    state.add(6, 1)
    state.active = False
    state.finish_many([6, 6])  # a late result of a released partition changes nothing
    assert state.pending == 1


def test_skip_to_follows_the_consumer_only_when_nothing_is_unfinished() -> None:
    state = PartitionState(("t", 0))
    state.add(0, 1)
    state.add(1, 0)
    state.skip_to(3)  # offset 0 is unfinished: the position must not move
    assert state.position is None
    state.finish(0)
    assert state.position == 2
    state.skip_to(3)  # offset 2 was a transaction marker
    assert state.position == 3
    state.add(3, 1)
    state.skip_to(2)  # never backwards
    assert state.position == 3
