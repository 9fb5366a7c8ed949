"""SIGTERM in the middle of trouble (issue 10, edges 4 and 5).

- During 413 splits with 503s: a worker stopped while halves of its split batches are
  accepted and later halves wait out a long Retry-After must commit the accepted halves, so
  that the worker taking over re-sends nothing already accepted (duplicates must be 0).
- With a request slower than the shutdown bound: the worker exits within
  ops.shutdown_timeout_s plus its close allowance (not after the 30 s request timeout),
  without committing what is unanswered.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from connector.worker import CLOSE_ALLOWANCE_S
from tests.chaos.harness import ChaosRun

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

SHUTDOWN_BOUND_S = 3.0
#: What exiting may take beyond the bound, as the worker promises it: after the drain its
#: watchdog allows CLOSE_ALLOWANCE_S for the final commit and leaving the group (and would
#: exit with status 3 past it). Waiting for the 30 s request timeout would break it.
EXIT_MARGIN_S = CLOSE_ALLOWANCE_S

#: Each record's entity is about 4 KB: a 3 MB batch is refused with 413, its halves too, and
#: its quarters (about 750 KB) are accepted.
PAD = 4000
SPLITS = {
    "AEP_CONNECTOR_BATCHING__MAX_REQUEST_BYTES": "3000000",
    "AEP_CONNECTOR_BATCHING__MAX_RECORDS": "1000",
    "AEP_CONNECTOR_BATCHING__LINGER_MS": "200",
    "AEP_CONNECTOR_OPS__SHUTDOWN_TIMEOUT_S": str(SHUTDOWN_BOUND_S),
    # Honour the API's long Retry-After below instead of capping it at 2 s.
    "AEP_CONNECTOR_RETRY__MAX_RETRY_AFTER_S": "60",
}
#: One request at a time (one partition), so the emulator's answers follow this script:
#: the batch → 413, its first half → 413, first quarter → 503 then accepted, second quarter →
#: 503 then accepted; from then on every request gets 503 (Retry-After 1 s).
SCRIPT = {"sequence": ["ok", "ok", "503", "ok", "503", "ok"], "p503": 1.0, "retry_after_s": 1}
#: Then the API asks for a wait far past the shutdown bound: the request sleeps in a backoff
#: holding its two accepted quarters when SIGTERM comes.
LONG_WAIT = {"p503": 1.0, "retry_after_s": 30}


def test_sigterm_during_413_splits_resends_nothing_accepted(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    with ChaosRun(
        kafka_bootstrap,
        tmp_path,
        "SIGTERM during 413 splits",
        partitions=1,
        worker_settings=SPLITS,
    ) as run:
        scale = run.scale
        run.produce(scale.split_records, pad=PAD)
        held_at_sigterm = []
        for _ in range(scale.shutdown_rounds):
            run.api.set_faults(SCRIPT)
            worker = run.start_workers(1)[0]
            run.wait_for(
                lambda: not run.api.faults()["remaining_sequence"] and refusals(run) > 0,
                120,
                "the script played: splits, 503s, two quarters accepted, the next one refused",
            )
            before = refusals(run)
            run.api.set_faults(LONG_WAIT)
            run.wait_for(lambda b=before: refusals(run) > b, 30, "a refusal with Retry-After 30")
            time.sleep(1.5)  # the worker commits whatever it finished (every 0.5 s)
            held = run.ledger.accepted_uncommitted(run.topic, run.watch.last_committed)
            assert held > 0, "no accepted half was held at SIGTERM: the scenario did not happen"
            held_at_sigterm.append(held)
            run.terminate(worker)
        splits = run.api.stats()["requests_by_status"].get("413", 0)
        run.api.clear_faults()
        run.start_workers(1)
        run.wait_drained()
        summary = run.finish(
            requests_split_413=str(splits),
            accepted_but_unanswered_at_SIGTERM=", ".join(map(str, held_at_sigterm)),
        )
    assert splits > 0, "no request was split: the scenario did not happen"
    assert summary.duplicates == 0, (
        f"{summary.duplicates} records the API had accepted before SIGTERM were sent again"
    )


def refusals(run: ChaosRun) -> int:
    """503 answers so far."""
    return int(run.api.stats()["requests_by_status"].get("503", 0))


def test_request_slower_than_the_shutdown_bound(kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = {"AEP_CONNECTOR_OPS__SHUTDOWN_TIMEOUT_S": str(SHUTDOWN_BOUND_S)}
    with ChaosRun(
        kafka_bootstrap,
        tmp_path,
        "request slower than the shutdown bound",
        worker_settings=settings,
    ) as run:
        first = run.scale.records // 10
        run.produce(first)
        workers = run.start_workers(2)
        run.wait_for(
            lambda: run.have_partitions(workers) and len(run.ledger.accepted) > 0,
            60,
            "both workers in the group and first acceptances",
        )
        run.api.set_faults({"stall": True})  # every request from now on is held
        # Produced after the stall began: the workers cannot have sent them all already.
        run.produce(run.scale.records - first)
        run.wait_for(
            lambda: all(
                (run.metric(w, "aep_connector_in_flight_requests") or 0) > 0 for w in workers
            ),
            60,
            "a stalled request in each worker",
        )
        exits = run.terminate_all(workers)
        run.api.clear_faults()  # the held requests are served now, after their senders left
        run.start_workers(1)
        run.wait_drained()
        run.finish(
            shutdown_bound=f"{SHUTDOWN_BOUND_S:.0f} s",
            exits_with_a_stalled_request=", ".join(f"{t:.2f} s" for t in exits),
        )
    assert max(exits) <= SHUTDOWN_BOUND_S + EXIT_MARGIN_S, (
        f"a worker took {max(exits):.1f} s to exit after SIGTERM; bound {SHUTDOWN_BOUND_S} s"
    )
