"""The consumer group churns while records flow and the API misbehaves a little: workers are
killed with SIGKILL and replaced, and the group grows from one worker to three and back."""

from __future__ import annotations

import random
import time
from functools import partial
from pathlib import Path

import pytest

from tests.chaos.harness import ChaosRun
from tests.support.worker import RunningWorker

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

#: The storms of issue 10's hostile-operator run, kept light enough that records still flow.
FLAKY_API = {"p503": 0.1, "p429": 0.05, "p_drop": 0.02, "retry_after_s": 1, "seed": 10}


def test_kill_9_loop(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Three workers; every few seconds one with requests in flight is killed with SIGKILL
    while records flow, and a new one is started (the dead one's partitions move once its
    session times out)."""
    with ChaosRun(kafka_bootstrap, tmp_path, "kill -9 loop") as run:
        scale = run.scale
        run.api.set_faults({**FLAKY_API, "latency_ms": 20})
        feeding = run.start_feeding(scale.records, over_s=scale.kills * scale.kill_interval_s)
        run.start_workers(3)
        chooser = random.Random(7)
        for _ in range(scale.kills):
            time.sleep(scale.kill_interval_s)  # the storm's schedule, not a wait for a condition
            victims = run.wait_for_some(lambda: busy(run), 60, "a worker with requests in flight")
            run.kill(chooser.choice(victims))
            run.start_workers(1)
        feeding.join()
        run.api.clear_faults()
        run.wait_drained()
        run.finish(kills=str(scale.kills))


def busy(run: ChaosRun) -> list[RunningWorker]:
    """Workers with requests in flight: a kill there loses answers and uncommitted work."""
    return [w for w in run.alive() if (run.metric(w, "aep_connector_in_flight_requests") or 0) > 0]


def test_one_three_one_rebalances(kafka_bootstrap: str, tmp_path: Path) -> None:
    """One worker, then three (two join), then one again (two leave on SIGTERM), repeated."""
    with ChaosRun(kafka_bootstrap, tmp_path, "1→3→1 rebalances") as run:
        scale = run.scale
        run.api.set_faults(FLAKY_API)
        hold = scale.rebalance_hold_s
        feeding = run.start_feeding(scale.records, over_s=scale.rebalance_cycles * 2 * hold)
        run.start_workers(1)
        for _ in range(scale.rebalance_cycles):
            time.sleep(hold)
            joining = run.start_workers(2)
            run.wait_for(partial(run.have_partitions, joining), 60, "two workers to join")
            time.sleep(hold)
            run.terminate_all(joining)
        feeding.join()
        run.api.clear_faults()
        run.wait_drained()
        run.finish(cycles=str(scale.rebalance_cycles))
