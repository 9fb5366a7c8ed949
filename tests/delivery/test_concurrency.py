"""Adaptive concurrency: the AIMD controller on an injected clock, the attempt hand-off, the
dispatcher keeping each connection under its limit, and the sender's reports."""

from __future__ import annotations

import random

import httpx
from hypothesis import given
from hypothesis import strategies as st

from connector.delivery.auth import TokenProvider
from connector.delivery.backoff import BackoffPolicy
from connector.delivery.concurrency import (
    AimdController,
    AttemptLog,
    ConnectionLimits,
    is_backpressure,
)
from connector.delivery.dispatcher import Dispatcher
from connector.delivery.ratelimit import RateLimits
from connector.delivery.sender import ApiHealth, Sender
from connector.metrics import Metrics
from connector.settings import AuthSettings, BatchingSettings, PlatformSettings
from tests.delivery.test_dispatcher import Clock, ScriptedSender, message, settle
from tests.delivery.test_sender import Handler, accept_all, batch

RTT = 0.05


def saturated_interval(
    controller: AimdController, now: float, rtt: float = RTT, backpressure: bool = False
) -> float:
    """One interval in which every slot is used and attempts take `rtt`; returns its end."""
    controller.started(controller.limit)
    now += rtt
    controller.observe(now, None if backpressure else rtt, backpressure)
    now += rtt  # past the interval's end (one mean round trip)
    controller.observe(now, rtt, False)
    return now


def warmed(maximum: int, limit: int) -> tuple[AimdController, float]:
    """A controller that has measured steady round trips and grown to `limit`."""
    controller = AimdController(maximum)
    now = 0.0
    controller.observe(now, RTT, False)  # the first round trip: the reference
    for _ in range(limit - 1):  # one step per interval
        now = saturated_interval(controller, now)
    assert controller.limit == limit
    return controller, now


# ---------------------------------------------------------------------------- the controller


def test_starts_at_one_and_grows_by_one_per_interval_while_round_trips_stay_steady() -> None:
    controller = AimdController(maximum=5)
    assert controller.limit == 1
    controller.observe(0.0, RTT, False)
    limits = []
    now = 0.0
    for _ in range(6):
        now = saturated_interval(controller, now)
        limits.append(controller.limit)
    assert limits == [2, 3, 4, 5, 5, 5]  # additive, and never past the maximum


def test_does_not_grow_a_limit_that_is_not_used() -> None:
    controller, now = warmed(maximum=10, limit=3)
    for _ in range(5):
        controller.started(controller.limit - 1)  # demand below the limit
        now += 2 * RTT
        controller.observe(now, RTT, False)
    assert controller.limit == 3


def test_back_pressure_cuts_the_limit_multiplicatively_down_to_one() -> None:
    controller, now = warmed(maximum=40, limit=30)
    limits = []
    for _ in range(40):
        now = saturated_interval(controller, now, backpressure=True)
        limits.append(controller.limit)
    assert limits[:4] == [27, 24, 21, 18]  # 0.9 of itself, rounded down
    assert limits[-1] == 1  # and never below one
    assert min(limits) == 1


def test_a_round_trip_spike_cuts_the_limit() -> None:
    controller, now = warmed(maximum=10, limit=8)
    now = saturated_interval(controller, now, rtt=RTT * 3)
    assert controller.limit == 7


def test_round_trips_within_the_tolerance_leave_the_limit_alone() -> None:
    controller, now = warmed(maximum=10, limit=6)
    controller.started(controller.limit)
    now += 2 * RTT
    controller.observe(now, RTT * 1.03, False)  # slower than the mean, but within 5 %
    assert controller.limit == 6


def test_the_limit_recovers_once_the_pressure_ends() -> None:
    controller, now = warmed(maximum=8, limit=8)
    for _ in range(10):
        now = saturated_interval(controller, now, backpressure=True)
    assert controller.limit == 1
    for _ in range(7):
        now = saturated_interval(controller, now)
    assert controller.limit == 8


def test_one_adjustment_per_interval_however_many_attempts_report() -> None:
    controller, now = warmed(maximum=20, limit=10)
    controller.started(controller.limit)
    for step in range(50):  # many attempts within one mean round trip
        controller.observe(now + step * RTT / 100, None, True)
    assert controller.limit == 10  # the interval has not ended yet
    controller.tick(now + 2 * RTT)
    assert controller.limit == 9


def test_nothing_changes_before_the_first_round_trip() -> None:
    controller = AimdController(maximum=10, initial=4)
    for second in range(10):
        controller.started(controller.limit)
        controller.observe(float(second), None, True)  # only back pressure, never an answer
    assert controller.limit == 4


def test_tells_why_it_decreased() -> None:
    reasons: list[str] = []
    controller = AimdController(maximum=10, initial=1, on_decrease=reasons.append)
    controller.observe(0.0, RTT, False)
    now = 0.0
    for _ in range(4):
        now = saturated_interval(controller, now)
    now = saturated_interval(controller, now, backpressure=True)
    now = saturated_interval(controller, now, rtt=RTT * 4)
    assert reasons == ["backpressure", "rtt"]


events = st.lists(
    st.tuples(
        st.floats(min_value=0.0, max_value=0.5),  # time since the previous event
        st.one_of(st.none(), st.floats(min_value=0.001, max_value=2.0)),  # round trip
        st.booleans(),  # back pressure
        st.integers(min_value=0, max_value=64),  # requests in flight at a start
    ),
    max_size=200,
)


@given(maximum=st.integers(min_value=1, max_value=64), script=events)
def test_the_limit_stays_between_one_and_the_maximum_and_grows_by_one_at_most(
    maximum: int, script: list[tuple[float, float | None, bool, int]]
) -> None:
    controller = AimdController(maximum)
    now = 0.0
    for gap, rtt, backpressure, in_flight in script:
        before = controller.limit
        now += gap
        controller.started(in_flight)
        controller.observe(now, rtt, backpressure)
        assert 1 <= controller.limit <= maximum
        assert controller.limit <= before + 1
        if backpressure and controller.limit != before:
            assert controller.limit < before  # back pressure never lets it grow


# ---------------------------------------------------------------------------- the hand-off


def test_which_answers_are_back_pressure() -> None:
    assert [is_backpressure(s, False) for s in (200, 207, 400, 408, 413, 429)] == [
        False,
        False,
        False,
        True,
        False,
        True,
    ]
    assert [is_backpressure(s, False) for s in (500, 501, 502, 503, 504)] == [
        True,
        False,
        True,
        True,
        True,
    ]
    assert is_backpressure(None, timed_out=True)
    assert not is_backpressure(None, timed_out=False)  # refused: the API is away, not loaded


def test_only_success_answers_give_round_trips() -> None:
    log = AttemptLog()
    log.record("c", 1.0, 1.2, 207)
    log.record("c", 1.0, 1.5, 429)
    log.record("c", 1.0, 9.0, None, timed_out=True)
    attempts = log.drain()
    assert [(a.rtt_s is not None, a.backpressure) for a in attempts] == [
        (True, False),
        (False, True),
        (False, True),
    ]
    assert abs((attempts[0].rtt_s or 0) - 0.2) < 1e-9
    assert log.drain() == []


def test_fixed_limits_are_the_cap_and_are_published() -> None:
    metrics = Metrics()
    limits = ConnectionLimits(6, None, lambda: 0.0, metrics)
    assert limits.limit("c1") == 6
    limits.started("c1", 1)
    assert metrics.concurrency_limit.labels("c1")._value.get() == 6


def test_adaptive_limits_follow_the_reported_attempts_per_connection() -> None:
    metrics = Metrics()
    clock = Clock()
    log = AttemptLog()
    limits = ConnectionLimits(4, log, clock, metrics)
    assert limits.limit("c1") == 1
    assert limits.limit("c2") == 1
    log.record("c1", 0.0, RTT, 200)
    limits.update()
    for _ in range(3):
        limits.started("c1", limits.limit("c1"))
        clock.now += 2 * RTT
        log.record("c1", clock.now - RTT, clock.now, 200)
        limits.update()
    assert limits.limit("c1") == 4
    assert limits.limit("c2") == 1  # each connection has its own limit
    assert metrics.concurrency_limit.labels("c1")._value.get() == 4
    limits.started("c1", 4)
    clock.now += 2 * RTT
    log.record("c1", clock.now - RTT, clock.now, 429)
    limits.update()
    assert limits.limit("c1") == 3
    assert metrics.concurrency_limit.labels("c1")._value.get() == 3
    assert metrics.concurrency_decreases.labels("c1", "backpressure")._value.get() == 1


# ---------------------------------------------------------------------------- the dispatcher


def test_the_dispatcher_keeps_a_connection_under_its_adaptive_limit() -> None:
    clock = Clock()
    sender = ScriptedSender()
    log = AttemptLog()
    settings = BatchingSettings(
        ordering="none", linger_ms=0, max_records=1, max_in_flight_requests=4
    )
    dispatcher = Dispatcher(settings, 1, sender, clock, log)  # type: ignore[arg-type]
    for offset in range(8):
        dispatcher.add(message(0, offset))
    settle(dispatcher, sender, 1)
    assert dispatcher.in_flight == 1  # the limit starts at one, though four slots are free
    # Steady round trips while the one slot is used: the limit grows, one per interval.
    log.record("c1", 0.0, RTT, 200)
    clock.now += 2 * RTT
    log.record("c1", clock.now - RTT, clock.now, 200)
    settle(dispatcher, sender, 2)
    assert dispatcher.in_flight == 2
    assert dispatcher.limits.limit("c1") == 2
    sender.release.set()


def test_a_connection_at_its_adaptive_limit_keeps_its_batch_filling() -> None:
    # As a busy lane's batch does: closed, it would wait half empty behind the limit.
    clock = Clock()
    sender = ScriptedSender()
    settings = BatchingSettings(
        ordering="none", linger_ms=50, max_records=100, max_in_flight_requests=4
    )
    dispatcher = Dispatcher(settings, 1, sender, clock, AttemptLog())  # type: ignore[arg-type]
    dispatcher.add(message(0, 0))
    clock.now = 1.0
    settle(dispatcher, sender, 1)  # the limit, 1, is used; three slots are free
    for offset in range(1, 4):
        dispatcher.add(message(0, offset))
    clock.now = 2.0
    dispatcher.dispatch()
    assert dispatcher.next_due_in() == 0.0  # due, but held open: still with the batcher
    assert dispatcher.buffered()[0] == 4
    assert len(sender.started) == 1
    sender.release.set()


def test_without_an_attempt_log_the_dispatcher_uses_the_whole_cap() -> None:
    sender = ScriptedSender()
    settings = BatchingSettings(
        ordering="none", linger_ms=0, max_records=1, max_in_flight_requests=4
    )
    dispatcher = Dispatcher(settings, 1, sender, Clock())  # type: ignore[arg-type]
    for offset in range(8):
        dispatcher.add(message(0, offset))
    settle(dispatcher, sender, 4)
    assert dispatcher.in_flight == 4
    sender.release.set()


# ---------------------------------------------------------------------------- the sender


def sender_with(
    handler: Handler,
    clock: Clock,
    attempts: AttemptLog | None = None,
    rate_limits: RateLimits | None = None,
    metrics: Metrics | None = None,
) -> Sender:
    """A sender against a scripted API (as in test_sender), with the flow controls given."""
    metrics = metrics or Metrics()
    http = httpx.Client(transport=httpx.MockTransport(handler))
    platform = PlatformSettings(base_url="http://api.test", sandbox_name="dev")
    return Sender(
        http,
        platform,
        TokenProvider(AuthSettings(), http, clock, metrics),
        BackoffPolicy(initial_s=0.0001, max_s=0.001, max_retry_after_s=0.001),
        metrics,
        ApiHealth(clock),
        clock=clock,
        rng=random.Random(0),
        rate_limits=rate_limits,
        attempts=attempts,
    )


def test_the_sender_reports_every_attempt_with_its_round_trip() -> None:
    clock = Clock()
    script = [429, 503]

    def handler(request: httpx.Request) -> httpx.Response:
        clock.now += 0.25  # the API takes a quarter of a second
        if script:
            return httpx.Response(script.pop(0), headers={"Retry-After": "0"})
        return accept_all(request)

    log = AttemptLog()
    sender = sender_with(handler, clock, attempts=log)
    assert len(sender.deliver(batch(2)).accepted) == 2
    attempts = log.drain()
    assert [(a.connection_id, a.backpressure) for a in attempts] == [
        ("conn", True),
        ("conn", True),
        ("conn", False),
    ]
    assert [a.rtt_s for a in attempts] == [None, None, 0.25]


def test_the_sender_reports_timeouts_as_back_pressure() -> None:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            raise httpx.ReadTimeout("slow")
        if calls["n"] == 2:
            raise httpx.ConnectError("refused")
        return accept_all(request)

    log = AttemptLog()
    sender = sender_with(handler, Clock(), attempts=log)
    sender.deliver(batch(1))
    assert [a.backpressure for a in log.drain()] == [True, False, False]
