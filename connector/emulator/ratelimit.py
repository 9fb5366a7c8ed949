"""Per-connection rate limits: one token bucket for requests and one for messages.

A request is admitted when each bucket holds at least its cost, or is full when the cost exceeds
the bucket's size (so a batch larger than the burst can still pass, after which the bucket is
in debt and the average rate still holds). A refused request takes nothing.
"""

from __future__ import annotations

from connector.emulator.clock import Clock
from connector.emulator.config import RateLimitConfig


class TokenBucket:
    """Tokens refill continuously at `rate_per_s` up to `capacity`; the bucket starts full."""

    def __init__(self, rate_per_s: float, capacity: float, clock: Clock) -> None:
        self.rate_per_s = rate_per_s
        self.capacity = capacity
        self._clock = clock
        self._tokens = capacity
        self._updated = clock()

    @property
    def tokens(self) -> float:
        self._refill()
        return self._tokens

    def can_take(self, cost: float) -> bool:
        self._refill()
        return self._tokens >= min(cost, self.capacity)

    def take(self, cost: float) -> None:
        """Remove `cost` tokens, possibly going below zero; check can_take first."""
        self._refill()
        self._tokens -= cost

    def _refill(self) -> None:
        now = self._clock()
        elapsed = now - self._updated
        if elapsed > 0:
            self._tokens = min(self.capacity, self._tokens + elapsed * self.rate_per_s)
            self._updated = now


class ConnectionLimiter:
    """The request and message buckets of one connection, charged together or not at all."""

    def __init__(self, config: RateLimitConfig, clock: Clock) -> None:
        self.retry_after_s = config.retry_after_s
        self._requests = _bucket(config.requests_per_s, config.requests_burst, clock)
        self._messages = _bucket(config.messages_per_s, config.messages_burst, clock)

    def admit(self, messages: int) -> bool:
        """Charge one request and `messages` messages if both budgets allow it."""
        if self._requests is not None and not self._requests.can_take(1):
            return False
        if self._messages is not None and not self._messages.can_take(messages):
            return False
        if self._requests is not None:
            self._requests.take(1)
        if self._messages is not None:
            self._messages.take(messages)
        return True


def _bucket(rate: float | None, burst: float | None, clock: Clock) -> TokenBucket | None:
    if rate is None:
        return None
    capacity = burst if burst is not None else max(1.0, rate)
    return TokenBucket(rate, capacity, clock)
