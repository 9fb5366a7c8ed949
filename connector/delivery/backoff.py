"""Exponential backoff with full jitter, and how Retry-After overrides it.

One policy serves every retry of the worker: API requests, token renewals and schema registry
look-ups while decoding.
"""

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

        A server's Retry-After wins, kept between initial_s and max_retry_after_s (callers pass
        None for an unusable one, see outcome.parse_retry_after); otherwise full jitter:
        uniform in [0, min(max, initial * 2^(attempt-1))].
        """
        if retry_after_s is not None:
            return max(self.initial_s, min(retry_after_s, self.max_retry_after_s))
        ceiling = min(self.max_s, self.initial_s * (2 ** min(attempt - 1, 30)))
        return rng.uniform(0, ceiling)
