"""The Kafka broker restarts under load: a broker of this scenario's own (scripts/local-kafka
with its own state directory; the restart keeps its ports and data) is stopped while two
workers deliver records, some of them poison for the dead-letter topic, and started again
after a while. Consumers, the dead-letter producer and commits must all recover."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.harness import ChaosRun, poison_mix
from tests.support.kafka import (
    ServiceUnavailable,
    start_local_service,
    stop_local_service,
    wait_for_broker,
)

pytestmark = [pytest.mark.chaos, pytest.mark.integration]


@pytest.fixture
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The state directory of a broker for this test alone (started, stopped on exit)."""
    state_dir = tmp_path_factory.mktemp("restarting-broker")
    try:
        bootstrap = start_local_service("kafka", state_dir)
    except ServiceUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    wait_for_broker(bootstrap)
    try:
        yield state_dir
    finally:
        stop_local_service("kafka", state_dir)


def test_broker_restart(own_broker: Path, tmp_path: Path) -> None:
    bootstrap = start_local_service("kafka", own_broker)  # running: just its address
    with ChaosRun(bootstrap, tmp_path, "broker restart") as run:
        scale = run.scale
        run.start_workers(2)
        feeding = run.start_feeding(
            scale.records, over_s=6 + scale.broker_outage_s, outcome_of=poison_mix
        )
        run.wait_for(lambda: len(run.ledger.accepted) > 0, 60, "first acceptances")
        stopped = time.monotonic()
        stop_local_service("kafka", own_broker)
        time.sleep(scale.broker_outage_s)  # the outage's length, not a wait for a condition
        assert start_local_service("kafka", own_broker) == bootstrap
        down = time.monotonic() - stopped
        feeding.join()
        run.wait_drained()
        run.finish(broker_down=f"{down:.0f} s", failed_samples=str(run.watch.failed_samples))
