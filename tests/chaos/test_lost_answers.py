"""Accept, then drop the answer (issue 10, edge 12): the emulator stores a batch and closes
the connection before answering, as when a load balancer or the network loses a response.
The worker cannot know the batch was accepted; it must send it again (duplicates, counted)
and lose nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.harness import ChaosRun

pytestmark = [pytest.mark.chaos, pytest.mark.integration]


def test_accepted_then_dropped_answers(kafka_bootstrap: str, tmp_path: Path) -> None:
    with ChaosRun(kafka_bootstrap, tmp_path, "accept, then drop the answer") as run:
        run.api.set_faults({"p_accept_drop": 0.2, "p503": 0.05, "retry_after_s": 1, "seed": 12})
        run.start_workers(2)
        run.produce(run.scale.records)
        run.wait_drained()
        stats = run.api.stats()
        dropped = stats["faults_injected"].get("accept_drop", 0)
        summary = run.finish(answers_dropped_after_accepting=str(dropped))
    assert dropped > 0, "no answer was dropped: the scenario did not happen"
    assert summary.duplicates > 0, "answers were lost, yet nothing was sent twice"
