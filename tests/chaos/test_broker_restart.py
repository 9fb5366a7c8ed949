"""The Kafka broker restarts under load: a broker of this scenario's own (scripts/local-kafka
with its own state directory; the restart keeps its ports and data) is stopped while two
workers deliver records, some of them poison for the dead-letter topic, and started again
after a while. Consumers, the dead-letter producer and commits must all recover. The broker
starts in the background before the scenario runs (tests/chaos/conftest.py)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.chaos.harness import ChaosRun, poison_mix
from tests.support.kafka import start_local_service, stop_local_service

pytestmark = [pytest.mark.chaos, pytest.mark.integration]


def test_broker_restart(own_broker: Path, tmp_path: Path) -> None:
    bootstrap = start_local_service("kafka", own_broker)  # running: just its address
    with ChaosRun(bootstrap, tmp_path, "broker restart") as run:
        scale = run.scale
        run.start_workers(2)
        feeding = run.start_feeding(
            scale.records, over_s=6 + scale.broker_outage_s, outcome_of=poison_mix
        )
        run.wait_for(lambda: len(run.ledger.accepted) > 0, 60, "first acceptances")
        stopping = time.monotonic()
        stop_local_service("kafka", own_broker)
        stopped = time.monotonic()
        time.sleep(scale.broker_outage_s)  # the outage's length, not a wait for a condition
        starting = time.monotonic()
        assert start_local_service("kafka", own_broker) == bootstrap
        back = time.monotonic()
        feeding.join()
        run.wait_drained()
        drained = time.monotonic()
        run.finish(
            broker_down=f"{back - stopping:.0f} s (stopping {stopped - stopping:.0f} s, "
            f"starting {back - starting:.0f} s)",
            drained_after_it_was_back=f"{drained - back:.0f} s",
            failed_samples=str(run.watch.failed_samples),
        )
