"""Client-side rate limits per connection: messages per second and requests per second.

The Platform throttles a connection that sends more than about 10,000 messages or 1,000
requests a second (it answers 429). A budget kept on this side stays under the API's limit
instead of bouncing off it, and lets several workers share an inlet by dividing its budget.

Each connection has a token bucket per limit, shared by every request thread of the worker.
Before each attempt (retries and split halves too: the API counts each request), a request
reserves one request token and one message token per message. A reservation is granted at once
and may leave a bucket in debt; the thread then waits until the debt is paid back. So waiting
threads are served in the order they asked, and a batch larger than a bucket still passes
(after which the average rate still holds).

While a request waits, its slot stays taken: batches queue behind it, the buffered messages
grow and consumption pauses (source/flow.py), so a binding limit never makes the worker buffer
without bound. A waiting request honours its ticket: cancelling it ends the wait at once, and a
deadline it cannot meet ends the wait as soon as that is known; either way the request's tokens
are given back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

from connector.metrics import Metrics

#: How often a waiting request looks at its deadline again (a shutdown or halt may move it).
RECHECK_S = 0.1


class Hold(Protocol):
    """The loop's hold on a request (sender.Ticket): cancel it, or bound its time."""

    @property
    def cancelled(self) -> threading.Event: ...

    @property
    def deadline(self) -> float | None: ...


class TokenBucket:
    """`rate_per_s` tokens a second, at most `capacity` held; starts full. Not thread-safe:
    ConnectionRateLimit holds a lock around it."""

    def __init__(self, rate_per_s: float, capacity: float, now: float) -> None:
        self.rate_per_s = rate_per_s
        self.capacity = capacity
        self._tokens = capacity
        self._updated = now

    def reserve(self, cost: float, now: float) -> float:
        """Take `cost` tokens, into debt if need be; returns the seconds until the debt is paid."""
        self._refill(now)
        self._tokens -= cost
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate_per_s

    def give_back(self, cost: float, now: float) -> None:
        """Return a reservation that was not used."""
        self._refill(now)
        self._tokens = min(self.capacity, self._tokens + cost)

    def tokens(self, now: float) -> float:
        self._refill(now)
        return self._tokens

    def _refill(self, now: float) -> None:
        elapsed = now - self._updated
        if elapsed > 0:
            self._tokens = min(self.capacity, self._tokens + elapsed * self.rate_per_s)
            self._updated = now


class ConnectionRateLimit:
    """The message and request buckets of one connection, reserved together under one lock."""

    def __init__(
        self,
        messages_per_s: float | None,
        requests_per_s: float | None,
        burst_s: float,
        now: float,
    ) -> None:
        self._lock = threading.Lock()
        self._messages = _bucket(messages_per_s, burst_s, now)
        self._requests = _bucket(requests_per_s, burst_s, now)

    def reserve(self, messages: int, now: float) -> float:
        """Reserve one request of `messages` messages; returns the seconds to wait before it."""
        wait = 0.0
        with self._lock:
            if self._messages is not None:
                wait = self._messages.reserve(messages, now)
            if self._requests is not None:
                wait = max(wait, self._requests.reserve(1, now))
        return wait

    def give_back(self, messages: int, now: float) -> None:
        with self._lock:
            if self._messages is not None:
                self._messages.give_back(messages, now)
            if self._requests is not None:
                self._requests.give_back(1, now)


def _bucket(rate: float | None, burst_s: float, now: float) -> TokenBucket | None:
    if rate is None:
        return None
    return TokenBucket(rate, max(1.0, rate * burst_s), now)


def _wait(event: threading.Event, seconds: float) -> bool:
    return event.wait(seconds)


class RateLimits:
    """Every connection's rate limit, shared by the worker's request threads."""

    def __init__(
        self,
        messages_per_s: float | None,
        requests_per_s: float | None,
        burst_s: float,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
        wait: Callable[[threading.Event, float], bool] = _wait,
    ) -> None:
        self._messages_per_s = messages_per_s
        self._requests_per_s = requests_per_s
        self._burst_s = burst_s
        self._metrics = metrics
        self._clock = clock
        self._wait = wait  # event.wait in production; tests advance a fake clock instead
        self._lock = threading.Lock()
        self._connections: dict[str, ConnectionRateLimit] = {}

    def acquire(self, connection_id: str, messages: int, hold: Hold) -> bool:
        """Wait until one request of `messages` messages may be sent on `connection_id`.
        False: cancelled, or the hold's deadline comes first (the tokens are given back)."""
        limit = self.connection(connection_id)
        started = self._clock()
        ready_at = started + limit.reserve(messages, started)
        if ready_at <= started:
            return True
        now = started
        while now < ready_at:
            deadline = hold.deadline
            if (deadline is not None and ready_at >= deadline) or self._wait(
                hold.cancelled, min(ready_at - now, RECHECK_S)
            ):
                limit.give_back(messages, self._clock())
                self._waited(connection_id, started)
                return False
            now = self._clock()
        self._waited(connection_id, started)
        return True

    def _waited(self, connection_id: str, started: float) -> None:
        self._metrics.rate_limit_waits.labels(connection_id).inc()
        self._metrics.rate_limit_wait_seconds.labels(connection_id).inc(self._clock() - started)

    def connection(self, connection_id: str) -> ConnectionRateLimit:
        """The connection's buckets, made on first use; every thread gets the same ones."""
        with self._lock:
            limit = self._connections.get(connection_id)
            if limit is None:
                limit = ConnectionRateLimit(
                    self._messages_per_s, self._requests_per_s, self._burst_s, self._clock()
                )
                self._connections[connection_id] = limit
            return limit
