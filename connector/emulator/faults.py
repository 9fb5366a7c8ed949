"""Which failure, if any, to inject into the next request: a pure, seeded decision.

The plan's `sequence` is consumed first, one step per request; then each request draws one
number from a `random.Random` seeded by the plan (or the top-level seed), so a given seed and
request order always give the same failures. Waiting (latency, stall) is the server's job.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass
from typing import Literal

from connector.emulator.config import FaultPlan

FaultKind = Literal["ok", "500", "503", "429", "drop", "accept_drop", "stall"]
Endpoint = Literal["collection", "token"]


@dataclass(frozen=True, slots=True)
class FaultAction:
    """What to do with one request: wait `delay_ms`, then answer as `kind` says."""

    kind: FaultKind = "ok"
    delay_ms: int = 0
    retry_after_s: int | None = None


NO_FAULT = FaultAction()


class FaultInjector:
    """The current fault plan with its generator and what is left of its sequence."""

    def __init__(self, default_seed: int, plan: FaultPlan | None = None) -> None:
        self._default_seed = default_seed
        self._plan: FaultPlan | None = None
        self._random = random.Random(default_seed)
        self._sequence: deque[str] = deque()
        self.set_plan(plan)

    @property
    def plan(self) -> FaultPlan | None:
        return self._plan

    @property
    def remaining_sequence(self) -> list[str]:
        return list(self._sequence)

    def set_plan(self, plan: FaultPlan | None) -> None:
        """Replace the plan; the generator restarts from the plan's seed."""
        self._plan = plan
        seed = plan.seed if plan is not None and plan.seed is not None else self._default_seed
        self._random = random.Random(seed)
        self._sequence = deque(plan.sequence if plan is not None else ())

    def next_action(self, endpoint: Endpoint = "collection") -> FaultAction:
        plan = self._plan
        if plan is None or (endpoint == "token" and not plan.include_token_endpoint):
            return NO_FAULT
        if self._sequence:
            return _step_action(self._sequence.popleft(), plan)
        if plan.stall:
            return FaultAction("stall", plan.latency_ms)
        draw = self._random.random()
        odds: tuple[tuple[FaultKind, float], ...] = (
            ("drop", plan.p_drop),
            ("500", plan.p500),
            ("503", plan.p503),
            ("429", plan.p429),
            # Last, so that adding it left the draws of the other kinds as they were.
            ("accept_drop", plan.p_accept_drop),
        )
        for kind, probability in odds:
            if draw < probability:
                return _action(kind, plan.latency_ms, plan)
            draw -= probability
        return _action("ok", plan.latency_ms, plan)


_STEP_KINDS: dict[str, FaultKind] = {
    "ok": "ok",
    "500": "500",
    "503": "503",
    "429": "429",
    "drop": "drop",
    "accept_drop": "accept_drop",
    "stall": "stall",
}


def _step_action(step: str, plan: FaultPlan) -> FaultAction:
    if step.startswith("delay:"):
        return FaultAction("ok", plan.latency_ms + int(step.removeprefix("delay:")))
    kind = _STEP_KINDS.get(step)
    if kind is None:  # FaultPlan validates steps; this guards a plan built without validation.
        raise ValueError(f"unknown fault step {step!r}")
    return _action(kind, plan.latency_ms, plan)


def _action(kind: FaultKind, delay_ms: int, plan: FaultPlan) -> FaultAction:
    retry_after = {"503": plan.retry_after_s, "429": plan.retry_after_429_s}.get(kind)
    return FaultAction(kind, delay_ms, retry_after)
