"""Getting envelopes to the API: batching, the HTTP client, tokens, and reading the answers."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx

from connector.delivery.auth import TokenProvider
from connector.delivery.backoff import BackoffPolicy
from connector.delivery.concurrency import AttemptLog
from connector.delivery.dispatcher import Dispatcher
from connector.delivery.ratelimit import RateLimits
from connector.delivery.sender import ApiHealth, Sender
from connector.delivery.transport import build_http_client
from connector.metrics import Metrics
from connector.settings import Settings

if TYPE_CHECKING:
    from connector.tracing.spans import Tracing


def http_client(settings: Settings) -> httpx.Client:
    """The API client: kept-alive connections, one per request slot and one for tokens."""
    return build_http_client(settings.platform, settings.batching.max_in_flight_requests + 1)


def backoff_policy(settings: Settings) -> BackoffPolicy:
    retry = settings.retry
    return BackoffPolicy(
        retry.initial_backoff_ms / 1000, retry.max_backoff_ms / 1000, retry.max_retry_after_s
    )


def build_dispatcher(
    settings: Settings,
    http: httpx.Client,
    connections: int,
    metrics: Metrics,
    health: ApiHealth,
    clock: Callable[[], float],
    wall_clock: Callable[[], float],
    tracing: Tracing | None = None,
) -> Dispatcher:
    """The delivery stack of a worker: dispatcher → sender → token provider → HTTP client,
    with the flow controls the settings ask for (docs/flow-control.md)."""
    platform = settings.platform
    batching = settings.batching
    # The sender reports attempts here and the dispatcher adapts each connection's limit.
    attempts = AttemptLog() if batching.adaptive_concurrency else None
    rate_limits = None
    if batching.max_messages_per_s is not None or batching.max_requests_per_s is not None:
        rate_limits = RateLimits(
            batching.max_messages_per_s,
            batching.max_requests_per_s,
            batching.rate_limit_burst_s,
            metrics,
            clock,
        )
    sender = Sender(
        http,
        platform,
        TokenProvider(platform.auth, http, clock, metrics),
        backoff_policy(settings),
        metrics,
        health,
        max_unacknowledged=settings.retry.max_unacknowledged,
        wall_clock=wall_clock,
        clock=clock,
        rate_limits=rate_limits,
        attempts=attempts,
    )
    sender.tracing = tracing
    return Dispatcher(batching, connections, sender, clock, attempts, metrics)
