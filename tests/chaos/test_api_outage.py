"""The API goes away.

- Outage: the emulator process is stopped (connections refused) while records keep arriving;
  the workers' resident memory is sampled throughout. It must stay bounded (the workers
  pause), and everything is delivered once the API is back.
- Outage until the workers pause, then scale out, recover, scale in (issue 10, edge 3): the
  new workers take partitions away from paused ones; after the recovery the extra workers
  leave, and the partitions that were revoked while paused come back to their first owners,
  who must fetch them again: records produced afterwards reach the API.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.chaos.harness import PARTITIONS, ChaosRun
from tests.support.worker import RunningWorker

pytestmark = [pytest.mark.chaos, pytest.mark.integration]


def megabytes(kb: int) -> str:
    return f"{kb / 1024:.0f} MB"


def test_api_outage_with_memory_sampled(kafka_bootstrap: str, tmp_path: Path) -> None:
    with ChaosRun(kafka_bootstrap, tmp_path, "API outage") as run:
        scale = run.scale
        run.start_workers(2)
        run.produce(scale.records // 10)
        run.wait_for(lambda: len(run.ledger.accepted) > 0, 60, "first acceptances")
        before = run.watch.peak_rss_kb
        run.stop_emulator()
        outage_started = time.monotonic()
        feeding = run.start_feeding(scale.records - scale.records // 10, over_s=scale.outage_s / 2)
        time.sleep(scale.outage_s)  # the outage's length, not a wait for a condition
        during = max((kb for t, kb in run.watch.rss_timeline if t >= outage_started), default=0)
        at_end = run.watch.rss_timeline[-1][1]
        run.start_emulator()
        feeding.join()
        run.wait_drained()
        run.finish(
            outage=f"{scale.outage_s:.0f} s",
            RSS_before_outage=megabytes(before),
            RSS_peak_during_outage=megabytes(during),
            RSS_at_outage_end=megabytes(at_end),
        )


PAUSING = {  # a small buffer: the worker pauses soon after the API fails
    "AEP_CONNECTOR_BATCHING__MAX_RECORDS": "50",
    "AEP_CONNECTOR_BATCHING__MAX_BUFFERED_RECORDS": "200",
}


#: Records produced after the scale-in: spread over all six partitions by their keys, and
#: fewer than PAUSING's buffer, so the first worker does not pause again.
AFTER_SCALE_IN = 120


def assigned(run: ChaosRun, workers: list[RunningWorker]) -> int:
    return int(sum(run.metric(w, "aep_connector_assigned_partitions") or 0 for w in workers))


def paused(run: ChaosRun, worker: RunningWorker) -> bool:
    return (run.metric(worker, "aep_connector_paused_partitions") or 0) > 0


def test_outage_pause_scale_out_recover_scale_in(kafka_bootstrap: str, tmp_path: Path) -> None:
    """One worker owns every partition and pauses; two more take four of them away while it
    is paused; after the recovery they leave and all six return to the first worker, which
    must fetch them all again (librdkafka kept their pause flags across the revoke)."""
    with ChaosRun(
        kafka_bootstrap,
        tmp_path,
        "outage, pause, scale out, recover, scale in",
        worker_settings=PAUSING,
    ) as run:
        first = run.start_workers(1)[0]
        run.wait_for(lambda: run.have_partitions([first]), 60, "the first worker to join")
        run.api.set_faults({"p503": 1.0, "retry_after_s": 1})
        run.produce(run.scale.records - AFTER_SCALE_IN)
        run.wait_for(lambda: paused(run, first), 60, "the first worker to pause")
        extra = run.start_workers(2)
        everyone = [first, *extra]
        run.wait_for(
            lambda: run.have_partitions(extra) and assigned(run, everyone) == PARTITIONS,
            60,
            "scale out: two more workers with their share",
        )
        moved = PARTITIONS - assigned(run, [first])
        run.api.clear_faults()
        run.wait_drained()
        run.terminate_all(extra)  # scale in: the partitions revoked while paused come back
        run.wait_for(
            lambda: assigned(run, [first]) == PARTITIONS,
            30,
            "every partition back with the first worker",
        )
        # Records on every partition, the returning ones too; fewer than make the worker pause
        # (resuming from backpressure would resume every partition and hide a stuck one).
        run.produce(AFTER_SCALE_IN)
        run.wait_drained(timeout_s=30)
        run.finish(partitions_revoked_while_paused=str(moved))
