"""The API's answers become per-message outcomes or one error class, as DESIGN rule 4 says."""

from __future__ import annotations

import pytest

from connector.delivery.backoff import BackoffPolicy
from connector.delivery.outcome import Rejection, api_message, classify, parse_retry_after
from connector.errors import AuthenticationError, HaltError, RetryableError, SplitRequest

NOW = 1_700_000_000.0


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
        None,
        Rejection(400, "documented shape"),
        Rejection(400, "observed shape"),
        Rejection(422, "with an xactionId"),
        None,
    ]


def test_207_with_the_wrong_number_of_entries_is_retried_not_guessed() -> None:
    with pytest.raises(RetryableError, match="1 responses for 2"):
        classify(207, body207('{"xactionId":"a"}'), None, 2, NOW)
    with pytest.raises(RetryableError, match="unreadable"):
        classify(207, b"<html>", None, 2, NOW)


def test_plain_200_accepts_everything() -> None:
    assert classify(200, b"{}", None, 3, NOW) == [None, None, None]


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
    assert classify(status, b'{"message":"no"}', None, 1, NOW) == [Rejection(status, "no")]


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
    assert parse_retry_after("Tue, 14 Nov 2023 22:12:00 GMT", NOW) == 0.0


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
