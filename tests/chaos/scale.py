"""How big the chaos scenarios are: a CI scale that keeps the whole suite to a few minutes on
a 2-core machine, and the full scale of issue 10 (`make chaos`: CHAOS_SCALE=full)."""

from __future__ import annotations

import os
from dataclasses import dataclass

SCALE_VARIABLE = "CHAOS_SCALE"


@dataclass(frozen=True)
class Scale:
    name: str
    records: int  # produced per scenario (the poison mix adds its bad records to these)
    kills: int  # kill -9 loop: workers killed
    kill_interval_s: float  # kill -9 loop: time between kills
    rebalance_cycles: int  # 1→3→1 cycles
    rebalance_hold_s: float  # how long each group size is held
    outage_s: float  # API outage scenario: how long the emulator is away
    broker_outage_s: float  # broker restart: how long the broker is down
    shutdown_rounds: int  # SIGTERM during 413 splits: workers stopped mid-split
    token_phase_s: float  # identity outage: how long each way of failing lasts
    split_records: int  # SIGTERM during 413 splits: records of ~4 KB (all split)
    drain_timeout_s: float  # how long the end of a scenario may take to be committed


CI = Scale(
    name="ci",
    records=2_000,
    kills=2,
    kill_interval_s=2.0,
    rebalance_cycles=1,
    rebalance_hold_s=2.0,
    outage_s=4.0,
    broker_outage_s=2.0,
    shutdown_rounds=1,
    token_phase_s=1.0,
    split_records=1_500,
    drain_timeout_s=180.0,
)

FULL = Scale(
    name="full",
    records=200_000,
    kills=10,
    kill_interval_s=5.0,
    rebalance_cycles=5,
    rebalance_hold_s=8.0,
    outage_s=600.0,
    broker_outage_s=20.0,
    shutdown_rounds=3,
    token_phase_s=20.0,
    split_records=20_000,
    drain_timeout_s=900.0,
)


def current() -> Scale:
    """The scale chosen by CHAOS_SCALE (ci, the default, or full)."""
    chosen = os.environ.get(SCALE_VARIABLE, "ci").strip().lower() or "ci"
    scales = {s.name: s for s in (CI, FULL)}
    if chosen not in scales:
        raise ValueError(f"{SCALE_VARIABLE}={chosen!r}: expected one of {', '.join(scales)}")
    return scales[chosen]
