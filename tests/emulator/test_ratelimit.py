"""Token buckets with an injected clock."""

from __future__ import annotations

from connector.emulator.config import RateLimitConfig
from connector.emulator.ratelimit import ConnectionLimiter, TokenBucket


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_starts_full_and_refills_at_its_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=2, capacity=4, clock=clock)
    for _ in range(4):
        assert bucket.can_take(1)
        bucket.take(1)
    assert not bucket.can_take(1)
    clock.now += 0.25
    assert not bucket.can_take(1)  # half a token
    clock.now += 0.25
    assert bucket.can_take(1)
    clock.now += 100
    assert bucket.tokens == 4  # capped at the capacity


def test_a_cost_above_the_capacity_passes_a_full_bucket_and_leaves_a_debt() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=10, capacity=10, clock=clock)
    assert bucket.can_take(25)
    bucket.take(25)
    assert bucket.tokens == -15
    clock.now += 2.0
    assert not bucket.can_take(10)  # 5 tokens: the debt is paid back at the rate
    clock.now += 0.5
    assert bucket.can_take(10)


def test_a_connection_is_charged_for_both_budgets_or_neither() -> None:
    clock = FakeClock()
    config = RateLimitConfig(
        requests_per_s=1, requests_burst=2, messages_per_s=1, messages_burst=10
    )
    limiter = ConnectionLimiter(config, clock)
    assert limiter.admit(6)
    assert not limiter.admit(6)  # only 4 messages left
    assert limiter.admit(4)  # the refusal took no request token: this is the second request
    assert not limiter.admit(0)  # now the request budget is spent
    clock.now += 1
    assert limiter.admit(1)


def test_the_default_burst_is_one_seconds_worth_but_at_least_one() -> None:
    clock = FakeClock()
    limiter = ConnectionLimiter(RateLimitConfig(requests_per_s=0.5), clock)
    assert limiter.admit(100)  # no message budget configured
    assert not limiter.admit(1)
    clock.now += 2
    assert limiter.admit(1)
    assert limiter.retry_after_s is None
