"""Adaptive request concurrency per connection: an AIMD loop on round trips and back pressure,
after Vector's adaptive request concurrency (ARC).

A connection's limit is how many of its requests may be in flight at once. It starts at 1 and
is reconsidered once per interval of about one mean round trip:

- it rises by one when, during the interval, the connection used its whole limit, no attempt
  met back pressure and the mean round trip stayed at or below its long-run mean: more requests
  in flight did not make the API slower, so there is room;
- it falls to `DECREASE_RATIO` of itself (by one at least) when an attempt met back pressure
  (429, 408, a 5xx but 501, a timeout) or the mean round trip rose past the long-run mean by
  more than `RTT_DEVIATION_SCALE` deviations (and `RTT_TOLERANCE` of the mean): requests queue
  at the API, and sending more would only queue more;
- it stays between 1 and the connection's slot cap (the configured maximum).

Additive increase and multiplicative decrease converge on the largest limit the API serves
without slowing down, and back off fast when it pushes back; the cap keeps the limit where the
operator allows. The long-run mean and deviation are exponentially weighted (`EWMA_ALPHA`) over
the intervals' means. Only attempts answered 2xx give round trips: an error answer is fast or
slow for reasons that say nothing about load.

Request threads report each attempt into an AttemptLog, a queue whose put and get are atomic,
so no lock is shared with the loop; the loop drains it when it dispatches, and only the loop
touches the controllers.
"""

from __future__ import annotations

import math
import queue
from collections.abc import Callable
from typing import NamedTuple

from connector.logs import get_logger
from connector.metrics import Metrics

log = get_logger("concurrency")

DECREASE_RATIO = 0.9  # ARC's default: a gentle cut, repeated each interval the pressure lasts
EWMA_ALPHA = 0.4  # weight of the newest interval in the long-run round-trip mean
RTT_DEVIATION_SCALE = 2.5  # deviations of the round trip that are still normal
# Round trips within this share of their mean are never a spike: a very steady API (a deviation
# near zero) must not read a fraction of a millisecond of noise as congestion.
RTT_TOLERANCE = 0.05


class Attempt(NamedTuple):
    """One HTTP attempt, as the controller sees it."""

    connection_id: str
    finished_at: float  # monotonic seconds, the loop's clock
    rtt_s: float | None  # None: no valid round trip (not answered 2xx)
    backpressure: bool


def is_backpressure(status: int | None, timed_out: bool) -> bool:
    """Whether an answer (None: a transport error) says the API is overloaded."""
    if status is None:
        return timed_out
    return status in (408, 429) or (status >= 500 and status != 501)


class AttemptLog:
    """Attempts handed from request threads to the loop (SimpleQueue: put and get are atomic)."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Attempt] = queue.SimpleQueue()

    def record(
        self,
        connection_id: str,
        started: float,
        finished: float,
        status: int | None,
        timed_out: bool = False,
    ) -> None:
        """Called by a request thread after each attempt; `status` None: no answer."""
        answered = status is not None and 200 <= status < 300
        rtt = finished - started if answered else None
        self._queue.put(Attempt(connection_id, finished, rtt, is_backpressure(status, timed_out)))

    def drain(self) -> list[Attempt]:
        attempts: list[Attempt] = []
        if self._queue.empty():  # most loop turns: no exception raised and caught for nothing
            return attempts
        while True:
            try:
                attempts.append(self._queue.get_nowait())
            except queue.Empty:
                return attempts


class _Ewma:
    """Exponentially weighted mean and variance (None until the first value)."""

    def __init__(self, alpha: float) -> None:
        self._alpha = alpha
        self.mean: float | None = None
        self.variance = 0.0

    def update(self, value: float) -> None:
        if self.mean is None:
            self.mean = value
            return
        difference = value - self.mean
        increment = self._alpha * difference
        self.mean += increment
        self.variance = (1 - self._alpha) * (self.variance + difference * increment)


class AimdController:
    """The limit of one connection (see the module docstring for the rules). Loop thread only."""

    def __init__(
        self,
        maximum: int,
        initial: int = 1,
        on_decrease: Callable[[str], None] | None = None,
    ) -> None:
        self.maximum = maximum
        self._on_decrease = on_decrease  # told why, each time the limit falls
        self.limit = max(1, min(initial, maximum))
        self._past = _Ewma(EWMA_ALPHA)
        self._next_update = 0.0
        self._rtt_sum = 0.0
        self._rtt_count = 0
        self._backpressure = False
        self._reached = False

    def started(self, in_flight: int) -> None:
        """A request started; `in_flight` counts it. Only a used limit may grow."""
        if in_flight >= self.limit:
            self._reached = True

    def observe(self, now: float, rtt_s: float | None, backpressure: bool) -> None:
        """An attempt finished at `now` (monotonic seconds)."""
        if backpressure:
            self._backpressure = True
        if rtt_s is not None:
            self._rtt_sum += rtt_s
            self._rtt_count += 1
        self.tick(now)

    def tick(self, now: float) -> None:
        """End the interval if it is due: adjust the limit, then start the next interval."""
        if self._past.mean is None:
            if self._rtt_count == 0:
                return  # no round trip measured yet: nothing to compare with
            first = self._rtt_sum / self._rtt_count
            self._past.update(first)
            self._next_update = now + first
            self._rtt_sum, self._rtt_count = 0.0, 0  # the reference; the flags carry on
            return
        if now < self._next_update:
            return
        current = self._rtt_sum / self._rtt_count if self._rtt_count else None
        self._adjust(self._past.mean, math.sqrt(self._past.variance), current)
        if current is not None:
            self._past.update(current)
        self._next_update = now + self._past.mean
        self._reset()

    def _adjust(self, mean: float, deviation: float, current: float | None) -> None:
        if (
            self.limit < self.maximum
            and self._reached
            and not self._backpressure
            and current is not None
            and current <= mean
        ):
            self.limit += 1
            return
        spike = current is not None and current > mean + max(
            RTT_DEVIATION_SCALE * deviation, RTT_TOLERANCE * mean
        )
        if self.limit > 1 and (self._backpressure or spike):
            self.limit = max(1, min(self.limit - 1, math.floor(self.limit * DECREASE_RATIO)))
            if self._on_decrease is not None:
                self._on_decrease("backpressure" if self._backpressure else "rtt")

    def _reset(self) -> None:
        self._rtt_sum = 0.0
        self._rtt_count = 0
        self._backpressure = False
        self._reached = False


class ConnectionLimits:
    """How many requests each connection may have in flight: its slot cap, or, given an
    AttemptLog, an AIMD controller's limit under that cap. Loop thread only."""

    def __init__(
        self,
        cap: int,
        attempts: AttemptLog | None,
        clock: Callable[[], float],
        metrics: Metrics | None = None,
    ) -> None:
        self.cap = cap
        self.adaptive = attempts is not None
        self._attempts = attempts
        self._clock = clock
        self._metrics = metrics
        self._controllers: dict[str, AimdController] = {}
        self._published: dict[str, int] = {}

    def limit(self, connection_id: str) -> int:
        if self._attempts is None:
            return self.cap
        return self._controller(connection_id).limit

    def started(self, connection_id: str, in_flight: int) -> None:
        if self._attempts is None:
            self._publish(connection_id, self.cap)
            return
        self._controller(connection_id).started(in_flight)

    def update(self) -> None:
        """Feed the attempts reported since the last call, and end intervals that are due."""
        if self._attempts is None:
            return
        for attempt in self._attempts.drain():
            controller = self._controller(attempt.connection_id)
            controller.observe(attempt.finished_at, attempt.rtt_s, attempt.backpressure)
        now = self._clock()
        for connection_id, controller in self._controllers.items():
            controller.tick(now)
            self._publish(connection_id, controller.limit)

    def _controller(self, connection_id: str) -> AimdController:
        controller = self._controllers.get(connection_id)
        if controller is None:
            metrics = self._metrics

            def decreased(reason: str) -> None:
                if metrics is not None:
                    metrics.concurrency_decreases.labels(connection_id, reason).inc()

            controller = AimdController(self.cap, on_decrease=decreased)
            self._controllers[connection_id] = controller
            self._publish(connection_id, controller.limit)
        return controller

    def _publish(self, connection_id: str, limit: int) -> None:
        if self._published.get(connection_id) == limit:
            return
        self._published[connection_id] = limit
        log.debug(
            "concurrency limit", extra={"fields": {"connection": connection_id, "limit": limit}}
        )
        if self._metrics is not None:
            self._metrics.concurrency_limit.labels(connection_id).set(limit)
