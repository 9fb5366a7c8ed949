"""Sending one batch until every message in it is accepted or rejected.

Runs in a sender thread, one batch per thread at a time. Transient failures are retried here,
in place, with backoff: the batch's lane stays busy meanwhile, so later batches of the same
partition cannot overtake it. A 413 (or a 400 on several messages) splits the batch in halves,
sent in order. Authentication failures renew the token once, then halt.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from connector.delivery.auth import TokenProvider
from connector.delivery.backoff import BackoffPolicy
from connector.delivery.batcher import Batch, OutboundMessage
from connector.delivery.outcome import Rejection, classify
from connector.delivery.transport import CERTIFICATE_ATTEMPTS, CertificateError, certificate_error
from connector.errors import (
    AuthenticationError,
    ConnectorError,
    HaltError,
    RetryableError,
    SplitRequest,
)
from connector.logs import get_logger
from connector.metrics import Metrics
from connector.settings import PlatformSettings

log = get_logger("sender")


class Interrupted(ConnectorError):
    """Shutdown or halt asked the sender to give up; the batch's records stay unfinished."""


class ApiHealth:
    """Since when every request has failed transiently (None: the API answers). Written by
    sender threads, read by the readiness probe; single assignments need no lock."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.failing_since: float | None = None

    def answered(self) -> None:
        self.failing_since = None

    def failed(self) -> None:
        if self.failing_since is None:
            self.failing_since = self._clock()


@dataclass(slots=True)
class DeliveryResult:
    """What became of every message of a batch."""

    batch: Batch
    accepted: list[OutboundMessage] = field(default_factory=list)
    rejected: list[tuple[OutboundMessage, Rejection, int]] = field(default_factory=list)


class Sender:
    def __init__(
        self,
        http: httpx.Client,
        platform: PlatformSettings,
        tokens: TokenProvider,
        policy: BackoffPolicy,
        stop: threading.Event,
        metrics: Metrics,
        health: ApiHealth,
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self._http = http
        self._base_url = platform.base_url.rstrip("/")
        self._headers = {
            "Content-Type": "application/json",
            "x-sandbox-name": platform.sandbox_name,
            **platform.extra_headers,
        }
        self._tokens = tokens
        self._policy = policy
        self._stop = stop
        self._metrics = metrics
        self._health = health
        self._wall_clock = wall_clock
        self._rng = rng or random.Random()

    def deliver(self, batch: Batch) -> DeliveryResult:
        """Send `batch`; raises HaltError, or Interrupted when asked to stop."""
        result = DeliveryResult(batch)
        parts = [batch.messages]  # a stack; halves pushed second-half first to keep order
        while parts:
            part = parts.pop()
            try:
                outcomes, attempts = self._send_part(batch.connection_id, part)
            except SplitRequest:
                self._metrics.splits.inc()
                middle = len(part) // 2
                parts.append(part[middle:])
                parts.append(part[:middle])
                continue
            for message, outcome in zip(part, outcomes, strict=True):
                if outcome is None:
                    result.accepted.append(message)
                else:
                    result.rejected.append((message, outcome, attempts))
        return result

    def _send_part(
        self, connection_id: str, messages: list[OutboundMessage]
    ) -> tuple[list[Rejection | None], int]:
        url = f"{self._base_url}/collection/batch/{connection_id}"
        # One copy of the (up to 1 MB) body, not one per concatenation.
        body = b"".join((b'{"messages":[', b",".join([m.body for m in messages]), b"]}"))
        attempt = 0
        renewed = False
        while True:
            if self._stop.is_set():
                raise Interrupted("stopped before the batch was acknowledged")
            attempt += 1
            headers: dict[str, str] = {}
            try:
                headers = {**self._headers, **self._tokens.headers()}
                outcomes = self._post(url, body, len(messages), headers)
                self._health.answered()
                return outcomes, attempt
            except AuthenticationError as exc:
                if not self._tokens.enabled:
                    raise HaltError(
                        f"{exc} (no credentials configured: set platform.auth.client_id and "
                        "client_secret for an inlet with authentication)"
                    ) from None
                if renewed:
                    raise HaltError(f"{exc} (after renewing the token)") from None
                renewed = True
                self._metrics.retries.labels("auth").inc()
                self._tokens.renew_after_rejection(headers)
            except RetryableError as exc:
                self._health.failed()
                reason = str(exc.status) if exc.status else "transport"
                if isinstance(exc, CertificateError):  # no retry fixes it: halt after a few
                    reason = CertificateError.reason
                    if attempt >= CERTIFICATE_ATTEMPTS:
                        raise HaltError(f"{exc} ({attempt} attempts)") from None
                self._metrics.retries.labels(reason).inc()
                delay = self._policy.delay(attempt, exc.retry_after_s, self._rng)
                self._metrics.backoff_seconds.inc(delay)
                log.warning(
                    "retrying request",
                    extra={
                        "fields": {
                            "connection": connection_id,
                            "reason": reason,
                            "attempt": attempt,
                            "delay_s": round(delay, 3),
                            "messages": len(messages),
                        }
                    },
                )
                if self._stop.wait(delay):
                    raise Interrupted("stopped while backing off") from None

    def _post(
        self, url: str, body: bytes, count: int, headers: dict[str, str]
    ) -> list[Rejection | None]:
        started = time.monotonic()
        try:
            response = self._http.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            self._metrics.requests.labels("error").inc()
            raise certificate_error(exc, "the API") or RetryableError(
                f"request failed: {type(exc).__name__}: {exc}"
            ) from None
        self._metrics.request_latency.observe(time.monotonic() - started)
        self._metrics.requests.labels(str(response.status_code)).inc()
        self._metrics.request_bytes.observe(len(body))
        self._metrics.request_records.observe(count)
        return classify(
            response.status_code,
            response.content,
            response.headers.get("retry-after"),
            count,
            self._wall_clock(),
        )
