"""The sender against a scripted API (httpx MockTransport): retries, splits, tokens, halts."""

from __future__ import annotations

import gc
import random
import threading
import time
from collections.abc import Callable

import httpx
import orjson
import pytest

from connector.delivery.auth import TokenProvider
from connector.delivery.backoff import BackoffPolicy
from connector.delivery.batcher import Batch, OutboundMessage
from connector.delivery.dispatcher import Dispatcher
from connector.delivery.sender import ApiHealth, DeliveryResult, Sender, Ticket
from connector.errors import RetryableError
from connector.metrics import Metrics
from connector.offsets import PartitionState
from connector.records import SourceRecord
from connector.settings import AuthSettings, BatchingSettings, PlatformSettings

STATE = PartitionState(("t", 0))
Handler = Callable[[httpx.Request], httpx.Response]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def batch(count: int) -> Batch:
    messages = []
    for i in range(count):
        body = orjson.dumps({"n": i})
        messages.append(
            OutboundMessage(body, SourceRecord("t", 0, i, None, None, body), STATE, "m", "conn")
        )
    return Batch(("conn",), "conn", 0.0, messages)


def accept_all(request: httpx.Request) -> httpx.Response:
    count = len(orjson.loads(request.content)["messages"])
    return httpx.Response(
        207,
        json={
            "inletId": "i",
            "batchId": "b",
            "responses": [{"xactionId": f"b:{i}"} for i in range(count)],
        },
    )


def make_sender(
    handler: Handler,
    auth: AuthSettings | None = None,
    clock: Clock | None = None,
    max_unacknowledged: int = 5,
    wall_clock: Callable[[], float] = lambda: 1_700_000_000.5,
) -> tuple[Sender, Metrics, TokenProvider]:
    metrics = Metrics()
    http = httpx.Client(transport=httpx.MockTransport(handler))
    platform = PlatformSettings(
        base_url="http://api.test", sandbox_name="dev", extra_headers={"x-adobe-flow-id": "f"}
    )
    clock = clock or Clock()
    tokens = TokenProvider(auth or AuthSettings(), http, clock, metrics)
    sender = Sender(
        http,
        platform,
        tokens,
        BackoffPolicy(initial_s=0.0001, max_s=0.001, max_retry_after_s=0.001),
        metrics,
        ApiHealth(clock),
        max_unacknowledged=max_unacknowledged,
        wall_clock=wall_clock,
        clock=clock,
        rng=random.Random(0),
    )
    return sender, metrics, tokens


def test_headers_and_path() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return accept_all(request)

    sender, _, _ = make_sender(handler)
    result = sender.deliver(batch(3))
    assert len(result.accepted) == 3
    request = seen[0]
    assert request.url.path == "/collection/batch/conn"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-sandbox-name"] == "dev"
    assert request.headers["x-adobe-flow-id"] == "f"
    assert "authorization" not in request.headers


def test_transient_failures_are_retried_until_accepted() -> None:
    script = [503, 429, 500]

    def handler(request: httpx.Request) -> httpx.Response:
        if script:
            return httpx.Response(script.pop(0), headers={"Retry-After": "0"})
        return accept_all(request)

    sender, metrics, _ = make_sender(handler)
    result = sender.deliver(batch(2))
    assert len(result.accepted) == 2
    assert result.rejected == []
    assert metrics.retries.labels("503")._value.get() == 1
    assert metrics.retries.labels("429")._value.get() == 1


def test_connection_errors_are_retried() -> None:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] < 3:
            raise httpx.ConnectError("refused")
        return accept_all(request)

    sender, _, _ = make_sender(handler)
    assert len(sender.deliver(batch(1)).accepted) == 1
    assert calls["n"] == 3


def test_413_splits_in_halves_keeping_order() -> None:
    sizes: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        messages = orjson.loads(request.content)["messages"]
        sizes.append(len(messages))
        if len(messages) > 2:
            return httpx.Response(413, json={"message": "too large"})
        return accept_all(request)

    sender, metrics, _ = make_sender(handler)
    result = sender.deliver(batch(8))
    assert [m.record.offset for m in result.accepted] == list(range(8))
    assert sizes == [8, 4, 2, 2, 4, 2, 2]
    assert metrics.splits._value.get() == 3


def test_partial_rejection_is_reported_per_message() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            207,
            json={
                "responses": [
                    {"xactionId": "b:0"},
                    {"status": 400, "message": "bad field"},
                    {"xactionId": "b:2"},
                ]
            },
        )

    sender, _, _ = make_sender(handler)
    result = sender.deliver(batch(3))
    assert [m.record.offset for m in result.accepted] == [0, 2]
    ((message, letter),) = result.rejected
    assert message.record.offset == 1
    assert (letter.stage, letter.error_class, letter.status) == ("api", "api_rejected", 400)
    assert letter.api_message == "bad field"
    assert (letter.mapping, letter.attempts) == ("m", 1)


AUTH = AuthSettings(
    client_id="cid", client_secret="secret", token_url="http://ims.test/ims/token/v3"
)


def test_token_is_fetched_cached_and_renewed_before_expiry() -> None:
    issued: list[str] = []
    clock = Clock()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/ims/token/v3":
            form = dict(httpx.QueryParams(request.content.decode()))
            assert form["grant_type"] == "client_credentials"
            assert form["client_secret"] == "secret"
            issued.append(f"tok{len(issued)}")
            return httpx.Response(
                200, json={"access_token": issued[-1], "token_type": "bearer", "expires_in": 100}
            )
        assert request.headers["authorization"] == f"Bearer {issued[-1]}"
        return accept_all(request)

    sender, metrics, _ = make_sender(handler, AUTH, clock=clock)
    sender.deliver(batch(1))
    sender.deliver(batch(1))
    assert issued == ["tok0"]
    clock.now += 81  # within a fifth of the 100 s lifetime of expiry
    sender.deliver(batch(1))
    assert issued == ["tok0", "tok1"]
    assert metrics.token_renewals.labels("expiry")._value.get() == 1


def test_requests_and_token_fetches_leave_nothing_for_the_cyclic_collector() -> None:
    """A request's objects, its ~1 MB body with them, and a token fetch's (the client secret
    in its form) are freed when it is done: in a reference cycle they would wait for the
    collector's next pass (see connector.delivery.transport.release)."""
    clock = Clock()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/ims/token/v3":
            return httpx.Response(
                200, json={"access_token": "tok", "token_type": "bearer", "expires_in": 100}
            )
        return accept_all(request)

    sender, _, _ = make_sender(handler, AUTH, clock=clock)
    sender.deliver(batch(3))  # the client's connection pool and lazy imports, made once
    clock.now += 81  # the next delivery renews the token first
    gc.collect()
    gc.disable()
    try:
        sender.deliver(batch(3))
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        left = [
            type(o).__qualname__
            for o in gc.garbage
            if type(o).__module__.split(".")[0] in ("httpx", "httpcore")
        ]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert left == []


def test_401_renews_once_then_succeeds() -> None:
    tokens_issued = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/ims/token/v3":
            tokens_issued["n"] += 1
            return httpx.Response(
                200, json={"access_token": f"t{tokens_issued['n']}", "expires_in": 3600}
            )
        if request.headers["authorization"] == "Bearer t1":
            return httpx.Response(401, json={"message": "expired"})
        return accept_all(request)

    sender, _, _ = make_sender(handler, AUTH)
    assert len(sender.deliver(batch(2)).accepted) == 2
    assert tokens_issued["n"] == 2


def test_persistent_403_halts() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/ims/token/v3":
            return httpx.Response(200, json={"access_token": "t", "expires_in": 3600})
        return httpx.Response(403, json={"message": "forbidden"})

    sender, _, _ = make_sender(handler, AUTH)
    result = sender.deliver(batch(1))
    assert "403" in (result.halt or "")
    assert len(result.unfinished) == 1


def test_wrong_client_secret_halts() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"error": "invalid_client", "error_description": "bad"})

    sender, _, _ = make_sender(handler, AUTH)
    assert "refused the client credentials" in (sender.deliver(batch(1)).halt or "")


def test_token_endpoint_outage_is_transient() -> None:
    auth = TokenProvider(
        AUTH,
        httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(503))),
        Clock(),
        Metrics(),
    )
    with pytest.raises(RetryableError):
        auth.headers()


@pytest.mark.parametrize("status", [404, 501])
def test_unknown_inlet_and_501_halt(status: int) -> None:
    sender, _, _ = make_sender(lambda r: httpx.Response(status))
    assert str(status) in (sender.deliver(batch(1)).halt or "")


def test_a_cancelled_ticket_stops_a_batch_that_keeps_failing() -> None:
    ticket = Ticket()
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 5:
            ticket.cancel()
        return httpx.Response(503)

    sender, _, _ = make_sender(handler)
    result = sender.deliver(batch(2), ticket)
    assert calls["n"] == 5  # noticed during the backoff after the fifth attempt
    assert (result.accepted, result.rejected, result.halt) == ([], [], None)
    assert len(result.unfinished) == 2


def test_a_ticket_cancelled_before_the_first_attempt_sends_nothing() -> None:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        return accept_all(request)

    ticket = Ticket()
    ticket.cancel()
    sender, _, _ = make_sender(handler)
    assert len(sender.deliver(batch(1), ticket).unfinished) == 1
    assert calls["n"] == 0


def test_a_deadline_bounds_each_attempt_and_stops_retrying() -> None:
    clock = Clock()
    timeouts: list[float | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        timeouts.append(request.extensions["timeout"]["read"])
        clock.now += 2.0  # each attempt takes two seconds
        return httpx.Response(503)

    sender, _, _ = make_sender(handler, clock=clock)
    ticket = Ticket(deadline=clock.now + 5.0)
    result = sender.deliver(batch(1), ticket)
    # Five seconds left: the first attempt gets them all, the next the three that remain,
    # the third the last one; then the deadline has passed and nothing more is tried.
    assert timeouts == [5.0, 3.0, 1.0]
    assert len(result.unfinished) == 1
    assert result.halt is None


def test_accepted_halves_of_a_split_batch_are_kept_when_a_later_half_is_interrupted() -> None:
    ticket = Ticket()

    def handler(request: httpx.Request) -> httpx.Response:
        messages = orjson.loads(request.content)["messages"]
        if len(messages) > 2:
            return httpx.Response(413)
        if messages[0]["n"] >= 2:  # the second half keeps failing until the stop
            ticket.cancel()
            return httpx.Response(503)
        return accept_all(request)

    sender, _, _ = make_sender(handler)
    result = sender.deliver(batch(4), ticket)
    assert [m.record.offset for m in result.accepted] == [0, 1]
    assert [m.record.offset for m in result.unfinished] == [2, 3]


def test_accepted_halves_of_a_split_batch_are_kept_when_a_later_half_halts() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        messages = orjson.loads(request.content)["messages"]
        if len(messages) > 2:
            return httpx.Response(413)
        if messages[0]["n"] >= 2:
            return httpx.Response(404)
        return accept_all(request)

    sender, _, _ = make_sender(handler)
    result = sender.deliver(batch(4))
    assert [m.record.offset for m in result.accepted] == [0, 1]
    assert [m.record.offset for m in result.unfinished] == [2, 3]
    assert "404" in (result.halt or "")


def test_only_207_entries_that_failed_transiently_are_sent_again() -> None:
    sent: list[list[int]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        numbers = [m["n"] for m in orjson.loads(request.content)["messages"]]
        sent.append(numbers)
        if len(sent) == 1:
            entries: list[dict[str, object]] = [
                {"xactionId": "b:0"},
                {"status": 429, "message": "slow down"},
                {"statusCode": 400, "message": "bad"},
                {"status": 503},
            ]
            return httpx.Response(207, json={"responses": entries})
        return accept_all(request)

    sender, metrics, _ = make_sender(handler)
    result = sender.deliver(batch(4))
    assert sent == [[0, 1, 2, 3], [1, 3]]
    assert sorted(m.record.offset for m in result.accepted) == [0, 1, 3]
    assert [(m.record.offset, letter.status) for m, letter in result.rejected] == [(2, 400)]
    assert metrics.retries.labels("partial")._value.get() == 1


def test_a_success_without_results_is_retried_then_halts() -> None:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        return httpx.Response(200, text="OK")

    sender, metrics, _ = make_sender(handler, max_unacknowledged=3)
    result = sender.deliver(batch(2))
    assert calls["n"] == 3
    assert result.accepted == []
    assert len(result.unfinished) == 2
    assert "base_url" in (result.halt or "")
    assert metrics.retries.labels("unacknowledged")._value.get() == 2


def test_a_failing_token_endpoint_during_renewal_is_retried() -> None:
    """401 → renew → the identity service answers 503 (then times out): back off and retry."""
    script = {"api": [401], "ims": [200, 503, "timeout", 200]}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/ims/token/v3":
            step = script["ims"].pop(0)
            if step == "timeout":
                raise httpx.ReadTimeout("identity service timed out")
            if step != 200:
                return httpx.Response(int(step))
            return httpx.Response(200, json={"access_token": f"t{len(script['ims'])}"})
        if script["api"]:
            return httpx.Response(script["api"].pop(0))
        return accept_all(request)

    sender, metrics, _ = make_sender(handler, AUTH)
    result: DeliveryResult = sender.deliver(batch(2))
    assert len(result.accepted) == 2
    assert result.halt is None
    assert script == {"api": [], "ims": []}
    assert metrics.token_renewals.labels("rejected")._value.get() == 1


def test_401_without_credentials_halts_saying_so() -> None:
    sender, _, _ = make_sender(lambda r: httpx.Response(401, json={"message": "token required"}))
    assert "no credentials configured" in (sender.deliver(batch(1)).halt or "")


def test_retries_are_logged_without_payloads(caplog: pytest.LogCaptureFixture) -> None:
    script = [503]

    def handler(request: httpx.Request) -> httpx.Response:
        if script:
            return httpx.Response(script.pop(0), headers={"Retry-After": "0"})
        return accept_all(request)

    sender, _, _ = make_sender(handler)
    with caplog.at_level("WARNING", logger="aep_connector"):
        sender.deliver(batch(2))
    (record,) = [r for r in caplog.records if r.getMessage() == "retrying request"]
    fields = record.fields  # type: ignore[attr-defined]
    assert fields["reason"] == "503"
    assert fields["messages"] == 2
    assert '"n"' not in caplog.text


def test_each_accepted_message_keeps_the_ids_of_the_answer_that_accepted_it() -> None:
    """Receipts name the request that acknowledged a message: after a split and a partial
    retry, each message carries its own answer's batchId and xactionId."""
    requests = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        offsets = [m["n"] for m in orjson.loads(request.content)["messages"]]
        requests["n"] += 1
        batch_id = f"batch-{requests['n']}"
        if len(offsets) > 2:
            return httpx.Response(413)
        responses = [
            {"status": 503} if n == 1 and requests["n"] == 2 else {"xactionId": f"{batch_id}:{i}"}
            for i, n in enumerate(offsets)
        ]
        return httpx.Response(207, json={"batchId": batch_id, "responses": responses})

    sender, _, _ = make_sender(handler, wall_clock=lambda: 1_700_000_000.5)
    result = sender.deliver(batch(4))
    named = {
        m.record.offset: (a.batch_id, a.xaction_id, a.at_ms)
        for m, a in zip(result.accepted, result.acknowledgements, strict=True)
    }
    at = 1_700_000_000_500
    assert named == {
        0: ("batch-2", "batch-2:0", at),  # 1: the whole batch (413); 2: the first half
        1: ("batch-3", "batch-3:0", at),  # 503 in batch-2: sent again alone
        2: ("batch-4", "batch-4:0", at),
        3: ("batch-4", "batch-4:1", at),
    }


# The loop stops requests through the dispatcher (Dispatcher.set_deadline at SIGTERM,
# Dispatcher.cancel at a revoke); these tests send through a real Dispatcher and Sender.


class WatchedSender(Sender):
    """A Sender that says when a delivery has returned (the dispatcher drops the results of
    cancelled requests, so a test cannot wait for them)."""

    returned = threading.Event()

    def deliver(self, batch: Batch, ticket: Ticket | None = None) -> DeliveryResult:
        try:
            return super().deliver(batch, ticket)
        finally:
            self.returned.set()


def dispatching(
    handler: Handler, auth: AuthSettings | None = None, max_retry_after_s: float = 0.001
) -> tuple[Dispatcher, WatchedSender, Metrics]:
    metrics = Metrics()
    http = httpx.Client(transport=httpx.MockTransport(handler))
    platform = PlatformSettings(base_url="http://api.test", sandbox_name="dev")
    tokens = TokenProvider(auth or AuthSettings(), http, time.monotonic, metrics)
    policy = BackoffPolicy(initial_s=0.0001, max_s=0.001, max_retry_after_s=max_retry_after_s)
    sender = WatchedSender(
        http, platform, tokens, policy, metrics, ApiHealth(time.monotonic), rng=random.Random(0)
    )
    sender.returned = threading.Event()
    settings = BatchingSettings(max_records=4, linger_ms=0)
    return Dispatcher(settings, 1, sender, time.monotonic), sender, metrics


def await_value(read: Callable[[], float]) -> None:
    deadline = time.monotonic() + 5
    while not read():
        assert time.monotonic() < deadline, "the request never got there"
        time.sleep(0.001)


def test_a_deadline_set_during_a_long_backoff_wakes_the_request_with_its_accepted_halves() -> None:
    """SIGTERM while a split batch's second half sleeps in a 30 s Retry-After: the request
    returns at once with the first half accepted, for the final commit (issue 10, edge 4)."""

    def handler(request: httpx.Request) -> httpx.Response:
        messages = orjson.loads(request.content)["messages"]
        if len(messages) > 2:
            return httpx.Response(413)
        if messages[0]["n"] >= 2:
            return httpx.Response(503, headers={"Retry-After": "30"})
        return accept_all(request)

    dispatcher, _, metrics = dispatching(handler, max_retry_after_s=60)
    for message in batch(4).messages:
        dispatcher.add(message)
    dispatcher.dispatch()
    await_value(metrics.backoff_seconds._value.get)  # the second half sleeps 30 s
    dispatcher.set_deadline(time.monotonic() + 3)
    dispatcher.wait(5)
    results = dispatcher.collect()
    assert len(results) == 1, "the sleeping request did not return when the deadline came"
    assert [m.record.offset for m in results[0].accepted] == [0, 1]
    assert [m.record.offset for m in results[0].unfinished] == [2, 3]


def test_a_request_cancelled_while_it_waits_for_a_token_sends_nothing() -> None:
    """A revoke while the request renews a refused token: once the identity service answers,
    the cancelled request must not POST (the partition's new owner sends those records)."""
    posts: list[str] = []
    fetching, answer = threading.Event(), threading.Event()
    issued: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/ims/token/v3":
            if issued:  # the renewal: held until the test lets it answer
                fetching.set()
                answer.wait(5)
            issued.append(f"t{len(issued)}")
            return httpx.Response(200, json={"access_token": issued[-1], "expires_in": 3600})
        posts.append(request.headers["authorization"])
        if len(posts) == 1:
            return httpx.Response(403, json={"message": "token expired"})
        return accept_all(request)

    dispatcher, sender, _ = dispatching(handler, AUTH)
    for message in batch(2).messages:
        dispatcher.add(message)
    dispatcher.dispatch()
    assert fetching.wait(5), "the request never renewed its token"
    dispatcher.cancel([STATE.key])
    answer.set()
    assert sender.returned.wait(5)
    assert posts == ["Bearer t0"], "the cancelled request was sent again with the new token"
