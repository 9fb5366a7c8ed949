"""Sending one batch until every message in it is accepted, rejected, or given up on.

Runs in a request thread, one batch per thread. Transient failures are retried here, in place,
with backoff: the batch's lane stays busy meanwhile, so later batches of the same partition
cannot overtake it. A 413 (or a 400 on several messages) splits the batch in halves, sent in
order; a 207 entry that failed transiently is sent again alone with the others of its kind.
Authentication failures renew the token once, then halt. The payloads of a raw batch go one by
one, in order, to the single-message endpoint with their dataflow's x-adobe-flow-id header:
the API has no batch of raw payloads. Each attempt first waits for the connection's rate limit,
if one is set (ratelimit.py), and reports its outcome and round trip when concurrency adapts
(concurrency.py).

`deliver` never raises the connector's errors: what became of each message comes back in a
DeliveryResult, including the halves a split already got accepted when a later half is
interrupted or halts. The loop controls a request through its Ticket: cancelling it (revoke,
loss, shutdown) is noticed before every attempt, again once a token has been had (a renewal
may wait long), and during every backoff; a deadline bounds each attempt's timeout and ends a
backoff that would outlast it, also one already sleeping when the deadline is set (shutdown).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import httpx

from connector.delivery.auth import TokenProvider
from connector.delivery.backoff import BackoffPolicy
from connector.delivery.batcher import Batch, OutboundMessage, request_body
from connector.delivery.concurrency import AttemptLog
from connector.delivery.outcome import (
    TRANSIENT,
    Accepted,
    AllAccepted,
    Outcome,
    classify_batch,
    classify_single,
)
from connector.delivery.ratelimit import RateLimits
from connector.delivery.transport import (
    CERTIFICATE_ATTEMPTS,
    CertificateError,
    certificate_error,
    release,
)
from connector.errors import (
    AuthenticationError,
    DeadLetter,
    HaltError,
    RetryableError,
    SplitRequest,
    Unacknowledged,
)
from connector.logs import get_logger
from connector.metrics import Metrics
from connector.settings import PlatformSettings

if TYPE_CHECKING:
    from connector.tracing.spans import Tracing

log = get_logger("sender")

FLOW_ID_HEADER = "x-adobe-flow-id"


class Interrupted(Exception):
    """The ticket was cancelled or its deadline passed; the rest of the batch stays unfinished."""


class ApiHealth:
    """Since when every request has failed transiently (None: the API answers). Written by
    request threads, read by the readiness probe; single assignments need no lock."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.failing_since: float | None = None

    def answered(self) -> None:
        self.failing_since = None

    def failed(self) -> None:
        if self.failing_since is None:
            self.failing_since = self._clock()


@dataclass(slots=True)
class Ticket:
    """The loop's hold on one request: cancel it, or bound its time (monotonic deadline).
    Either wakes the request if it sleeps in a backoff (a Retry-After may be long)."""

    deadline: float | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)
    changed: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        self.cancelled.set()
        self.changed.set()

    def set_deadline(self, deadline: float) -> None:
        self.deadline = deadline  # written before the wake-up, so the sleeper reads it
        self.changed.set()


@dataclass(slots=True)
class DeliveryResult:
    """What became of every message of a batch.

    `unfinished` messages were neither accepted nor rejected (cancelled, deadline, halt): their
    records stay uncommitted. `halt` says why the deployment looks wrong, if it does.
    `acknowledgements[i]` is how the API named `accepted[i]` (for delivery receipts), built on
    demand from `answers`: an Accepted per message, or an AllAccepted for a request's lot.
    `attempts` counts the HTTP requests made (retries and split halves included) and
    `last_status` is the status of the last answer (None: none came), for traces.
    """

    batch: Batch
    accepted: list[OutboundMessage] = field(default_factory=list)
    answers: list[Accepted | AllAccepted] = field(default_factory=list)
    rejected: list[tuple[OutboundMessage, DeadLetter]] = field(default_factory=list)
    unfinished: list[OutboundMessage] = field(default_factory=list)
    halt: str | None = None
    attempts: int = 0
    last_status: int | None = None

    @property
    def acknowledgements(self) -> list[Accepted]:
        named: list[Accepted] = []
        for answer in self.answers:
            if isinstance(answer, AllAccepted):
                named += answer.outcomes()
            else:
                named.append(answer)
        return named


class Sender:
    def __init__(
        self,
        http: httpx.Client,
        platform: PlatformSettings,
        tokens: TokenProvider,
        policy: BackoffPolicy,
        metrics: Metrics,
        health: ApiHealth,
        max_unacknowledged: int = 5,
        wall_clock: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        rate_limits: RateLimits | None = None,
        attempts: AttemptLog | None = None,
    ) -> None:
        self._http = http
        self._base_url = platform.base_url.rstrip("/")
        self._headers = {
            "Content-Type": "application/json",
            "x-sandbox-name": platform.sandbox_name,
            **platform.extra_headers,
        }
        self._request_timeout_s = platform.request_timeout_s
        self._connect_timeout_s = platform.connect_timeout_s
        self._tokens = tokens
        self._policy = policy
        self._metrics = metrics
        self._health = health
        self._max_unacknowledged = max_unacknowledged
        self._wall_clock = wall_clock
        self._clock = clock
        self._rng = rng or random.Random()
        self._rate_limits = rate_limits  # waited for before each attempt
        self._attempts = attempts  # each attempt's outcome, for adaptive concurrency
        self.tracing: Tracing | None = None  # set when tracing is enabled

    def deliver(self, batch: Batch, ticket: Ticket | None = None) -> DeliveryResult:
        """Send `batch` until every message is accepted or rejected, or the ticket stops it."""
        ticket = ticket or Ticket()
        result = DeliveryResult(batch)
        span = self.tracing.request(batch) if self.tracing is not None else None
        parts = [batch.messages]  # a stack; halves pushed second-half first to keep order
        if batch.raw_flow_id is not None:  # a request per raw payload, first one on top
            parts = [[message] for message in reversed(batch.messages)]
        try:
            while parts:
                part = parts.pop()
                try:
                    self._send_part(batch.connection_id, part, result, ticket)
                except SplitRequest:
                    self._metrics.splits.inc()
                    middle = len(part) // 2
                    parts.append(part[middle:])
                    parts.append(part[:middle])
        except Interrupted:
            pass
        except HaltError as exc:
            result.halt = str(exc)
        if len(result.accepted) + len(result.rejected) < len(batch.messages):
            done = {id(m) for m in result.accepted}
            done.update(id(m) for m, _ in result.rejected)
            result.unfinished = [m for m in batch.messages if id(m) not in done]
        if span is not None:
            span.end(result)
        return result

    def _send_part(
        self,
        connection_id: str,
        messages: list[OutboundMessage],
        result: DeliveryResult,
        ticket: Ticket,
    ) -> None:
        """Send `messages` until each is accepted or rejected (recorded in `result`)."""
        pending = messages
        raw_flow_id = result.batch.raw_flow_id
        if raw_flow_id is None:
            url = f"{self._base_url}/collection/batch/{connection_id}"
            body = _body(pending)
        else:  # one raw payload: the API has no batch of them
            url = f"{self._base_url}/collection/{connection_id}"
            body = pending[0].body
        attempt = 0
        unacknowledged = 0
        renew = renewed = False
        headers: dict[str, str] = {}
        while True:
            limits = self._rate_limits
            if limits is not None and not limits.acquire(connection_id, len(pending), ticket):
                raise Interrupted
            self._raise_if_stopped(ticket)  # no token is fetched for a stopped request
            attempt += 1
            retry_after: float | None = None
            try:
                if renew:
                    self._tokens.renew_after_rejection(headers)
                    renew = False
                headers = {**self._headers, **self._tokens.headers()}
                # A token may take long (another thread's fetch holds the lock): a request
                # cancelled or out of time meanwhile must not be sent once it has one.
                timeout = self._attempt_timeout(ticket)
                if raw_flow_id is not None:  # the mapping's flow, whatever extra_headers say
                    headers = {k: v for k, v in headers.items() if k.lower() != FLOW_ID_HEADER}
                    headers[FLOW_ID_HEADER] = raw_flow_id
                result.attempts += 1
                outcomes = self._post(
                    connection_id, url, body, len(pending), headers, timeout, result
                )
                self._health.answered()
                pending = self._apply(pending, outcomes, attempt, result)
                if not pending:
                    return
                body = _body(pending)
                reason = "partial"  # 207 entries with 408, 429 or 5xx: only those again
            except AuthenticationError as exc:
                self._health.answered()
                if not self._tokens.enabled:
                    raise HaltError(
                        f"{exc} (no credentials configured: set platform.auth.client_id and "
                        "client_secret for an inlet with authentication)"
                    ) from None
                if renewed:
                    raise HaltError(f"{exc} (after renewing the token)") from None
                renew = renewed = True
                self._metrics.retries.labels("auth").inc()
                continue
            except Unacknowledged as exc:
                unacknowledged += 1
                if unacknowledged >= self._max_unacknowledged:
                    raise HaltError(
                        f"{exc}, {unacknowledged} times in a row: is platform.base_url the "
                        "streaming ingestion API (not a proxy or another service)?"
                    ) from None
                self._health.failed()
                reason = "unacknowledged"
            except RetryableError as exc:
                self._health.failed()
                reason = str(exc.status) if exc.status else "transport"
                retry_after = exc.retry_after_s
                if isinstance(exc, CertificateError):  # no retry fixes it: halt after a few
                    reason = CertificateError.reason
                    if attempt >= CERTIFICATE_ATTEMPTS:
                        raise HaltError(f"{exc} ({attempt} attempts)") from None
            self._back_off(connection_id, reason, attempt, retry_after, len(pending), ticket)

    def _apply(
        self,
        pending: list[OutboundMessage],
        outcomes: AllAccepted | list[Outcome],
        attempt: int,
        result: DeliveryResult,
    ) -> list[OutboundMessage]:
        """Record accepted and rejected messages; return those to send again."""
        if isinstance(outcomes, AllAccepted):  # the usual answer: all of them, in one go
            result.accepted += pending
            result.answers.append(outcomes)
            return []
        again: list[OutboundMessage] = []
        for message, outcome in zip(pending, outcomes, strict=True):
            if isinstance(outcome, Accepted):
                result.accepted.append(message)
                result.answers.append(outcome)
            elif outcome is TRANSIENT:
                again.append(message)
            else:
                result.rejected.append(
                    (message, replace(outcome, mapping=message.mapping, attempts=attempt))
                )
        return again

    def _raise_if_stopped(self, ticket: Ticket) -> None:
        if ticket.cancelled.is_set():
            raise Interrupted
        if ticket.deadline is not None and ticket.deadline <= self._clock():
            raise Interrupted

    def _attempt_timeout(self, ticket: Ticket) -> httpx.Timeout | None:
        """The timeout of the next attempt (None: the client's), or Interrupted."""
        self._raise_if_stopped(ticket)
        if ticket.deadline is None:
            return None
        left = ticket.deadline - self._clock()
        if left >= self._request_timeout_s:
            return None
        return httpx.Timeout(left, connect=min(left, self._connect_timeout_s))

    def _back_off(
        self,
        connection_id: str,
        reason: str,
        attempt: int,
        retry_after_s: float | None,
        messages: int,
        ticket: Ticket,
    ) -> None:
        self._metrics.retries.labels(reason).inc()
        delay = self._policy.delay(attempt, retry_after_s, self._rng)
        log.warning(
            "retrying request",
            extra={
                "fields": {
                    "connection": connection_id,
                    "reason": reason,
                    "attempt": attempt,
                    "delay_s": round(delay, 3),
                    "messages": messages,
                }
            },
        )
        wake_at = self._clock() + delay
        if ticket.deadline is not None and wake_at >= ticket.deadline:
            raise Interrupted
        self._metrics.backoff_seconds.inc(delay)
        left = delay
        # Woken by a cancel or a deadline set meanwhile (SIGTERM): a request sleeping in a
        # long Retry-After returns what it finished (accepted halves) instead of sleeping on.
        while ticket.changed.wait(left):
            ticket.changed.clear()
            if ticket.cancelled.is_set():
                raise Interrupted
            if ticket.deadline is not None and wake_at >= ticket.deadline:
                raise Interrupted
            left = wake_at - self._clock()
            if left <= 0:
                return

    def _post(
        self,
        connection_id: str,
        url: str,
        body: bytes,
        count: int,
        headers: dict[str, str],
        timeout: httpx.Timeout | None,
        result: DeliveryResult,
    ) -> AllAccepted | list[Outcome]:
        started = time.monotonic()
        attempt_started = self._clock()
        try:
            if timeout is None:
                response = release(self._http.post(url, content=body, headers=headers))
            else:
                response = release(
                    self._http.post(url, content=body, headers=headers, timeout=timeout)
                )
        except httpx.HTTPError as exc:
            self._metrics.requests.labels("error").inc()
            if self._attempts is not None:
                timed_out = isinstance(exc, httpx.TimeoutException)
                self._attempts.record(
                    connection_id, attempt_started, self._clock(), None, timed_out
                )
            raise certificate_error(exc, "the API") or RetryableError(
                f"request failed: {type(exc).__name__}: {exc}"
            ) from None
        if self._attempts is not None:
            self._attempts.record(
                connection_id, attempt_started, self._clock(), response.status_code
            )
        self._metrics.request_latency.observe(time.monotonic() - started)
        self._metrics.requests.labels(str(response.status_code)).inc()
        self._metrics.request_bytes.observe(len(body))
        self._metrics.request_records.observe(count)
        result.last_status = response.status_code
        retry_after = response.headers.get("retry-after")
        if result.batch.raw_flow_id is not None:
            return classify_single(
                response.status_code, response.content, retry_after, self._wall_clock()
            )
        return classify_batch(
            response.status_code, response.content, retry_after, count, self._wall_clock()
        )


def _body(messages: list[OutboundMessage]) -> bytes:
    """The request body: one copy of the (up to 1 MB) bytes, not one per concatenation."""
    return request_body([m.body for m in messages])
