"""The API's answers become per-message outcomes or one error class, as DESIGN rule 4 says."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.delivery.backoff import BackoffPolicy
from connector.delivery.outcome import (
    TRANSIENT,
    Accepted,
    AllAccepted,
    _entry,
    api_message,
    classify,
    classify_batch,
    parse_retry_after,
    rejection,
)
from connector.errors import (
    AuthenticationError,
    HaltError,
    RetryableError,
    SplitRequest,
    Unacknowledged,
)

NOW = 1_700_000_000.0
NOW_MS = 1_700_000_000_000


def accepted(xaction_id: str | None, batch_id: str | None = "1:2:3") -> Accepted:
    return Accepted(batch_id, xaction_id, NOW_MS)


def body207(*entries: str) -> bytes:
    responses = ",".join(entries)
    return (
        b'{"inletId":"i","batchId":"1:2:3","receivedTimeMs":1,"responses":['
        + responses.encode()
        + b"]}"
    )


def test_207_all_three_rejection_shapes_matched_by_position() -> None:
    body = body207(
        '{"xactionId":"1:2:3:0"}',
        '{"statusCode":400,"message":"documented shape"}',
        '{"status":400,"message":"observed shape"}',
        '{"xactionId":"1:2:3:3","status":422,"message":"with an xactionId"}',
        '{"xactionId":"1:2:3:4"}',
    )
    outcomes = classify(207, body, None, 5, NOW)
    assert outcomes == [
        accepted("1:2:3:0"),
        rejection(400, "documented shape"),
        rejection(400, "observed shape"),
        rejection(422, "with an xactionId"),
        accepted("1:2:3:4"),
    ]


def test_accepted_entries_carry_the_batch_id_and_their_own_xaction_id() -> None:
    """What delivery receipts record: the API's names, as given, never made up."""
    body = b'{"batchId":"b-7","responses":[{"xactionId":"x:0"},{},{"xactionId":42}]}'
    assert classify(207, body, None, 3, NOW) == [
        accepted("x:0", "b-7"),
        accepted(None, "b-7"),  # accepted without an xactionId: still accepted
        accepted(None, "b-7"),  # not a string: not an identifier
    ]
    without_batch = classify(207, b'{"responses":[{"xactionId":"x:0"}]}', None, 1, NOW)
    assert without_batch == [accepted("x:0", None)]


def test_a_plain_answer_is_kept_whole_and_names_each_message_as_classify_does() -> None:
    plain = body207('{"xactionId":"x:0"}', '{"xactionId":"x:1"}', '{"xactionId":"x:2"}')
    answer = classify_batch(207, plain, None, 3, NOW)
    assert answer == AllAccepted("1:2:3", ["x:0", "x:1", "x:2"], NOW_MS)
    assert isinstance(answer, AllAccepted)
    assert answer.outcomes() == classify(207, plain, None, 3, NOW)
    assert classify(207, plain, None, 3, NOW) == [accepted("x:0"), accepted("x:1"), accepted("x:2")]


@pytest.mark.parametrize(
    "entries",
    [
        ('{"xactionId":"x:0"}', '{"status":400,"message":"bad"}', '{"xactionId":"x:2"}'),
        ('{"xactionId":"x:0"}', "{}", '{"xactionId":"x:2"}'),
        ('{"xactionId":"x:0"}', '{"xactionId":"x:1"}', '{"status":503}'),
        ('{"xactionId":7}', '{"xactionId":"x:1"}'),
        ('{"xactionId":"x:0","extra":1}',),
    ],
)
def test_an_answer_with_any_other_entry_is_read_entry_by_entry(entries: tuple[str, ...]) -> None:
    answer = classify_batch(207, body207(*entries), None, len(entries), NOW)
    assert not isinstance(answer, AllAccepted)
    assert answer == [_entry(orjson.loads(e), "1:2:3", NOW_MS) for e in entries]


def test_rejections_are_dead_letters_of_the_api_stage() -> None:
    (letter,) = classify(207, body207('{"status":400,"message":"bad field"}'), None, 1, NOW)
    assert not isinstance(letter, Accepted)
    assert letter is not TRANSIENT
    assert (letter.stage, letter.error_class, letter.status) == ("api", "api_rejected", 400)
    assert letter.api_message == "bad field"
    assert letter.message == "API rejected the message (400): bad field"


@pytest.mark.parametrize("status", [408, 429, 500, 503, "503"])
def test_207_entries_that_failed_transiently_are_retried_not_dead_lettered(
    status: int | str,
) -> None:
    entry = f'{{"status":{status if isinstance(status, int) else chr(34) + status + chr(34)}}}'
    body = body207('{"xactionId":"a"}', entry, '{"statusCode":400,"message":"bad"}')
    assert classify(207, body, None, 3, NOW) == [accepted("a"), TRANSIENT, rejection(400, "bad")]


def test_207_with_the_wrong_number_of_entries_acknowledges_nothing() -> None:
    with pytest.raises(Unacknowledged, match="1 results for 2"):
        classify(207, body207('{"xactionId":"a"}'), None, 2, NOW)
    with pytest.raises(Unacknowledged, match="without per-message results"):
        classify(207, b"<html>", None, 2, NOW)


@pytest.mark.parametrize("status", [200, 201, 202, 204])
@pytest.mark.parametrize("body", [b"", b"{}", b"OK", b'{"responses":"all good"}'])
def test_a_success_without_per_message_results_acknowledges_nothing(
    status: int, body: bytes
) -> None:
    """A proxy or a wrong base URL answering 200 must not ack every message."""
    with pytest.raises(Unacknowledged):
        classify(status, body, None, 3, NOW)


def test_a_200_with_one_result_per_message_is_read_like_a_207() -> None:
    body = body207('{"xactionId":"a"}', '{"status":400,"message":"no"}')
    assert classify(200, body, None, 2, NOW) == [accepted("a"), rejection(400, "no")]


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_transient_statuses_retry(status: int) -> None:
    with pytest.raises(RetryableError) as caught:
        classify(status, b'{"message":"busy"}', "7", 10, NOW)
    assert caught.value.status == status
    assert caught.value.retry_after_s == 7.0


@pytest.mark.parametrize("status", [400, 413])
def test_too_large_or_bad_request_splits_then_rejects_one(status: int) -> None:
    with pytest.raises(SplitRequest):
        classify(status, b"", None, 2, NOW)
    assert classify(status, b'{"message":"no"}', None, 1, NOW) == [rejection(status, "no")]


@pytest.mark.parametrize("status", [401, 403])
def test_auth_statuses(status: int) -> None:
    with pytest.raises(AuthenticationError):
        classify(status, b"", None, 1, NOW)


@pytest.mark.parametrize("status", [404, 501, 415, 405])
def test_deployment_errors_halt(status: int) -> None:
    with pytest.raises(HaltError):
        classify(status, b"", None, 1, NOW)


def test_retry_after_forms() -> None:
    assert parse_retry_after("120", NOW) == 120.0
    assert parse_retry_after(None, NOW) is None
    assert parse_retry_after("soon", NOW) is None
    # An HTTP date 30 s from now.
    assert parse_retry_after("Tue, 14 Nov 2023 22:13:50 GMT", NOW) == pytest.approx(30.0)


@pytest.mark.parametrize(
    "value",
    ["0", "-5", "nan", "NaN", "inf", "-inf", "Tue, 14 Nov 2023 22:12:00 GMT", "", "1e400"],
)
def test_an_unusable_retry_after_is_treated_as_absent(value: str) -> None:
    """Zero, negative, NaN, infinite or a past date would otherwise disable backoff."""
    assert parse_retry_after(value, NOW) is None


def test_api_message_is_short_and_single_line() -> None:
    assert api_message(b'{"title":"Bad", "x": 1}') == "Bad"
    assert api_message(b"line1\nline2") == "line1 line2"
    assert len(api_message(b"x" * 5000)) == 500


def test_backoff_full_jitter_and_retry_after_cap() -> None:
    import random

    policy = BackoffPolicy(initial_s=0.1, max_s=2.0, max_retry_after_s=30.0)
    rng = random.Random(1)
    delays = [policy.delay(attempt, None, rng) for attempt in range(1, 12)]
    assert all(0 <= d <= min(2.0, 0.1 * 2 ** (n)) for n, d in enumerate(delays))
    assert policy.delay(1, 600.0, rng) == 30.0
    assert policy.delay(3, 4.5, rng) == 4.5
    # A valid but tiny Retry-After never undercuts the policy's minimum.
    assert policy.delay(1, 0.001, rng) == 0.1


_JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 600), st.text(max_size=8), st.sampled_from(["429"])
)
_ENTRY_KEYS = st.sampled_from(["xactionId", "statusCode", "status", "message", "title", "other"])


@settings(max_examples=300, deadline=None)
@given(
    entries=st.lists(
        st.one_of(st.dictionaries(_ENTRY_KEYS, _JSON_SCALARS, max_size=3), _JSON_SCALARS),
        max_size=6,
    )
)
def test_every_entry_reads_as_the_general_rule_says(entries: list[object]) -> None:
    """The shortcut for plain {"xactionId": …} entries gives what the general reading gives."""
    body = orjson.dumps({"batchId": "1:2:3", "responses": entries})
    expected = [_entry(entry, "1:2:3", NOW_MS) for entry in entries]
    assert classify(207, body, None, len(entries), NOW) == expected
