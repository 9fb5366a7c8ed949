"""Exponential backoff with full jitter, and how Retry-After overrides it."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    initial_s: float
    max_s: float
    max_retry_after_s: float

    def delay(self, attempt: int, retry_after_s: float | None, rng: random.Random) -> float:
        """Seconds to wait before retry number `attempt` (1-based).

        A server's Retry-After wins (capped at max_retry_after_s); otherwise full jitter:
        uniform in [0, min(max, initial * 2^(attempt-1))].
        """
        if retry_after_s is not None:
            return min(retry_after_s, self.max_retry_after_s)
        ceiling = min(self.max_s, self.initial_s * (2 ** min(attempt - 1, 30)))
        return rng.uniform(0, ceiling)
