"""The emulator's notion of time for token expiry and rate limits.

Tests move it forward through the control API (`POST /__emulator/clock`) instead of sleeping,
and unit tests inject any callable.
"""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], float]
"""Seconds from an arbitrary origin that never goes backwards."""


class AdjustableClock:
    """Monotonic time plus an offset that can only grow."""

    def __init__(self, base: Clock = time.monotonic) -> None:
        self._base = base
        self._offset = 0.0

    def now(self) -> float:
        return self._base() + self._offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self._offset += seconds

    @property
    def offset(self) -> float:
        return self._offset
