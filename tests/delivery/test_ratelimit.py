"""Client-side rate limits: token buckets on an injected clock, waiting that honours the
ticket, buckets shared by threads, and the sender waiting before each attempt."""

from __future__ import annotations

import threading

import httpx
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.delivery.ratelimit import RECHECK_S, ConnectionRateLimit, RateLimits, TokenBucket
from connector.delivery.sender import Ticket
from connector.metrics import Metrics
from tests.delivery.test_concurrency import sender_with
from tests.delivery.test_dispatcher import Clock
from tests.delivery.test_sender import accept_all, batch


class FakeWait:
    """Stands in for Event.wait: time passes on the fake clock, nobody sleeps."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.waits: list[float] = []

    def __call__(self, event: threading.Event, seconds: float) -> bool:
        self.waits.append(seconds)
        if event.is_set():
            return True
        self.clock.now += seconds
        return event.is_set()


def limits(
    messages_per_s: float | None = None,
    requests_per_s: float | None = None,
    burst_s: float = 1.0,
) -> tuple[RateLimits, Clock, FakeWait, Metrics]:
    clock = Clock()
    wait = FakeWait(clock)
    metrics = Metrics()
    rate_limits = RateLimits(messages_per_s, requests_per_s, burst_s, metrics, clock, wait)
    return rate_limits, clock, wait, metrics


# ---------------------------------------------------------------------------- the bucket


def test_a_bucket_starts_full_goes_into_debt_and_refills_at_its_rate() -> None:
    bucket = TokenBucket(rate_per_s=100, capacity=50, now=0.0)
    assert bucket.reserve(50, 0.0) == 0.0  # the burst
    assert bucket.reserve(20, 0.0) == 0.2  # 20 tokens of debt: 0.2 s at 100/s
    assert bucket.reserve(10, 0.1) == 0.2  # 10 refilled, 10 more taken: still 20 owed
    assert bucket.tokens(10.0) == 50  # never more than the capacity


def test_a_reservation_larger_than_the_bucket_passes_and_the_debt_holds_the_rate() -> None:
    bucket = TokenBucket(rate_per_s=10, capacity=10, now=0.0)
    assert bucket.reserve(30, 0.0) == 2.0  # 20 owed


def test_giving_back_shortens_the_wait_of_those_behind() -> None:
    bucket = TokenBucket(rate_per_s=10, capacity=10, now=0.0)
    bucket.reserve(10, 0.0)
    bucket.reserve(10, 0.0)
    bucket.give_back(10, 0.0)
    assert bucket.reserve(5, 0.0) == 0.5


def test_a_connection_waits_for_the_slower_of_its_two_limits() -> None:
    limit = ConnectionRateLimit(messages_per_s=1000, requests_per_s=2, burst_s=1.0, now=0.0)
    assert limit.reserve(10, 0.0) == 0.0
    assert limit.reserve(10, 0.0) == 0.0
    assert limit.reserve(10, 0.0) == 0.5  # the third request in the first second
    limit = ConnectionRateLimit(messages_per_s=100, requests_per_s=1000, burst_s=1.0, now=0.0)
    assert limit.reserve(150, 0.0) == 0.5  # 50 messages owed at 100/s


# ---------------------------------------------------------------------------- waiting


def test_requests_proceed_at_the_rate_and_the_wait_is_counted() -> None:
    rate_limits, clock, _, metrics = limits(messages_per_s=100, burst_s=0.5)
    sent_at = []
    for _ in range(10):
        assert rate_limits.acquire("c1", 25, Ticket())
        sent_at.append(clock.now)
    # 50 at once (the burst), then 25 every quarter of a second.
    assert sent_at == pytest.approx([0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0])
    assert metrics.rate_limit_waits.labels("c1")._value.get() == 8
    assert metrics.rate_limit_wait_seconds.labels("c1")._value.get() == pytest.approx(2.0)


def test_each_connection_has_its_own_budget() -> None:
    rate_limits, clock, _, _ = limits(requests_per_s=1)
    assert rate_limits.acquire("c1", 1, Ticket())
    assert rate_limits.acquire("c2", 1, Ticket())
    assert clock.now == 0.0
    assert rate_limits.acquire("c1", 1, Ticket())
    assert clock.now == pytest.approx(1.0)


def test_a_cancelled_ticket_ends_the_wait_and_gives_the_tokens_back() -> None:
    rate_limits, clock, wait, _ = limits(requests_per_s=1)
    assert rate_limits.acquire("c1", 1, Ticket())
    cancelled = Ticket()
    cancelled.cancel()
    assert not rate_limits.acquire("c1", 1, cancelled)
    assert clock.now == 0.0  # no time waited
    assert rate_limits.acquire("c1", 1, Ticket())
    assert clock.now == pytest.approx(1.0)  # as if the cancelled request had never asked
    assert wait.waits[0] == RECHECK_S


def test_a_deadline_before_the_turn_ends_the_wait_at_once() -> None:
    rate_limits, clock, _, _ = limits(messages_per_s=10)
    assert rate_limits.acquire("c1", 10, Ticket())
    assert not rate_limits.acquire("c1", 10, Ticket(deadline=0.5))  # its turn would be 1.0
    assert clock.now == 0.0
    assert rate_limits.acquire("c1", 10, Ticket(deadline=1.5))
    assert clock.now == pytest.approx(1.0)


def test_a_deadline_moved_during_the_wait_is_noticed() -> None:
    clock = Clock()
    wait = FakeWait(clock)
    ticket = Ticket()

    def halt_soon(event: threading.Event, seconds: float) -> bool:
        if clock.now >= 0.3:
            ticket.deadline = clock.now  # the loop halts: no attempt may start
        return wait(event, seconds)

    rate_limits = RateLimits(None, 0.5, 1.0, Metrics(), clock, halt_soon)
    assert rate_limits.acquire("c1", 1, Ticket())
    assert not rate_limits.acquire("c1", 1, ticket)  # its turn was at 2.0
    assert clock.now < 0.5


@given(
    sizes=st.lists(st.integers(min_value=1, max_value=300), min_size=1, max_size=60),
    rate=st.sampled_from([50.0, 200.0, 1000.0]),
    burst_s=st.sampled_from([0.1, 0.5, 1.0]),
)
def test_no_window_carries_more_than_the_burst_plus_the_rate(
    sizes: list[int], rate: float, burst_s: float
) -> None:
    rate_limits, clock, _, _ = limits(messages_per_s=rate, burst_s=burst_s)
    sent: list[tuple[float, int]] = []
    for size in sizes:
        assert rate_limits.acquire("c1", size, Ticket())
        sent.append((clock.now, size))
    capacity = max(1.0, rate * burst_s)
    for i, (start, _) in enumerate(sent):
        for j in range(i, len(sent)):
            end = sent[j][0]
            carried = sum(size for _, size in sent[i : j + 1])
            # A request over the whole bucket passes alone, then its debt holds the rate.
            largest = max(size for _, size in sent[i : j + 1])
            assert carried <= max(capacity, largest) + rate * (end - start) + 1e-6


def test_threads_share_one_budget() -> None:
    # Four request threads reserve on one connection at the same instant (an injected time,
    # nobody waits): between them they take the schedule's turns one after another, as a
    # single thread would, each turn once; none gets a turn of its own budget.
    rate, burst_s, size, threads, each = 2000.0, 0.01, 10, 4, 25
    rate_limits = RateLimits(rate, None, burst_s, Metrics(), clock=lambda: 0.0)
    waits: list[float] = []
    start = threading.Barrier(threads)

    def reserve() -> None:
        start.wait()
        for _ in range(each):
            waits.append(rate_limits.connection("c1").reserve(size, 0.0))

    workers = [threading.Thread(target=reserve) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(10)
    capacity = rate * burst_s
    expected = [max(0.0, (size * n - capacity) / rate) for n in range(1, threads * each + 1)]
    assert sorted(waits) == pytest.approx(expected)


# ---------------------------------------------------------------------------- the sender


def test_the_sender_waits_before_every_attempt_retries_included() -> None:
    clock = Clock()
    posted: list[tuple[float, int]] = []
    script = [503]

    def handler(request: httpx.Request) -> httpx.Response:
        posted.append((clock.now, len(orjson.loads(request.content)["messages"])))
        if script:
            return httpx.Response(script.pop(0), headers={"Retry-After": "0"})
        return accept_all(request)

    rate_limits = RateLimits(None, 2, 0.5, Metrics(), clock, FakeWait(clock))
    sender = sender_with(handler, clock, rate_limits=rate_limits)
    assert len(sender.deliver(batch(3)).accepted) == 3
    assert len(sender.deliver(batch(3)).accepted) == 3
    # One request at once (the burst), then one each half second: the retry paid too.
    assert [(pytest.approx(t), n) for t, n in posted] == [(0.0, 3), (0.5, 3), (1.0, 3)]


def test_a_request_cancelled_while_it_waits_sends_nothing() -> None:
    clock = Clock()
    posted: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        posted.append(clock.now)
        return accept_all(request)

    wait = FakeWait(clock)
    ticket = Ticket()

    def cancel_meanwhile(event: threading.Event, seconds: float) -> bool:
        ticket.cancel()  # a revoke while the request waits for its turn
        return wait(event, seconds)

    rate_limits = RateLimits(10, None, 1.0, Metrics(), clock, cancel_meanwhile)
    sender = sender_with(handler, clock, rate_limits=rate_limits)
    assert len(sender.deliver(batch(10)).accepted) == 10
    result = sender.deliver(batch(5), ticket)
    assert len(result.unfinished) == 5
    assert result.accepted == []
    assert posted == [0.0]
