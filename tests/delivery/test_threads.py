"""The dispatcher's long-lived request threads: reused, never waited for, never too many."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from connector.delivery.threads import RequestThreads

WAIT_S = 10.0  # a bound for the test to fail rather than hang; events end every wait first


def test_sequential_jobs_share_one_thread() -> None:
    threads = RequestThreads(keep=4)
    names: list[str] = []
    for _ in range(20):
        done = threading.Event()

        def job(done: threading.Event = done) -> None:
            names.append(threading.current_thread().name)
            done.set()

        threads.run(job)
        assert done.wait(WAIT_S)
        _wait_idle(threads, 1)
    assert set(names) == {"request-1"}
    assert threads.alive == 1


def test_a_blocked_job_never_delays_the_next() -> None:
    """A cancelled request may sit in a POST: the next request gets a thread of its own."""
    threads = RequestThreads(keep=1)
    release = threading.Event()
    blocked = threading.Event()
    second_ran = threading.Event()

    def stuck() -> None:
        blocked.set()
        release.wait(WAIT_S)

    threads.run(stuck)
    assert blocked.wait(WAIT_S)
    threads.run(second_ran.set)
    assert second_ran.wait(WAIT_S)
    release.set()
    _wait_alive(threads, 1)  # the one over `keep` ends once idle


def test_concurrent_jobs_run_at_once_and_extra_threads_end() -> None:
    threads = RequestThreads(keep=2)
    count = 5
    barrier = threading.Barrier(count + 1)
    for _ in range(count):
        threads.run(lambda: barrier.wait(WAIT_S) and None)
    barrier.wait(WAIT_S)  # every job is running at the same time: five threads
    assert threads.alive == count
    _wait_alive(threads, 2)


def _wait_idle(threads: RequestThreads, idle: int) -> None:
    _wait_until(lambda: threads._idle == idle)


def _wait_alive(threads: RequestThreads, alive: int) -> None:
    _wait_until(lambda: threads.alive == alive)


def _wait_until(condition: Callable[[], bool]) -> None:
    """Poll a condition the threads reach on their own (no clock is injected into threads)."""
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.001)
