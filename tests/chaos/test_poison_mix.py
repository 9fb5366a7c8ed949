"""Poison mix: undecodable, unmappable, too large and API-rejected records among good ones,
with two workers. Each bad record lands in the dead-letter topic, byte for byte with its
stage; each good one is accepted; commits pass the bad ones only once their letters are
confirmed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.harness import ChaosRun, poison_mix

pytestmark = [pytest.mark.chaos, pytest.mark.integration]


def test_poison_mix(kafka_bootstrap: str, tmp_path: Path) -> None:
    with ChaosRun(kafka_bootstrap, tmp_path, "poison mix") as run:
        run.produce(run.scale.records, poison_mix)
        run.start_workers(2)
        run.wait_drained()
        outcomes = run.ledger.outcomes()
        summary = run.finish(
            bad_records=", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()) if k != "accept")
        )
    assert summary.dead_lettered == sum(v for k, v in outcomes.items() if k != "accept")
