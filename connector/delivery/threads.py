"""Long-lived threads that run the dispatcher's requests, one request per thread at a time.

A thread per request cost a thread's creation for every request and made the loop wait in
`Thread.start` until the new thread had run (it takes the GIL first). Here a request goes to an
idle thread when there is one and to a new thread otherwise, so a request never waits for
another to end: one that the loop gave up on (cancelled, still inside a POST or a backoff)
keeps its thread, and the next request gets another. A thread that finishes while `keep`
threads are idle already ends, so the count settles at what the requests in flight need.
Threads are daemons: one still inside a POST when the process must exit is abandoned, never
waited for.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable


class RequestThreads:
    def __init__(self, keep: int, name: str = "request") -> None:
        """`keep`: idle threads kept waiting at most (the dispatcher's request slots)."""
        self._keep = max(1, keep)
        self._name = name
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # threads waiting for a job and not promised one yet
        self._started = 0
        self.alive = 0

    def run(self, job: Callable[[], None]) -> None:
        """Run `job` in a thread of its own at once (it must not raise: nobody would see it)."""
        with self._lock:
            if self._idle:
                self._idle -= 1  # promised this job: the queue never holds more jobs than waiters
                spawn = False
            else:
                self._started += 1
                self.alive += 1
                spawn = True
        self._jobs.put(job)
        if spawn:
            thread = threading.Thread(
                target=self._serve, name=f"{self._name}-{self._started}", daemon=True
            )
            thread.start()

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            job()
            with self._lock:
                if self._idle >= self._keep:
                    self.alive -= 1
                    return
                self._idle += 1
