"""Raw payloads end to end: the real broker, the emulator with a dataflow inlet, the worker as a
process. Every record is accepted once under its flow id or dead-lettered with the API's
reason, and the group's committed offsets reach the end: nothing is lost.

A flow id the inlet does not know is answered 400 (a malformed request), so its records are
dead-lettered like any other 400, replayable once the mapping is fixed; a deployment whose
every record goes that way is stopped by the dead-letter circuit breaker (docs/raw-payloads.md).
"""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.support.emulator import RunningEmulator, start_emulator
from tests.support.kafka import committed_offsets, create_topic, end_offsets, produce, unique_name
from tests.support.worker import drained, wait_until, write_mapping
from tests.worker.test_worker_e2e import (
    Scenario,
    header_map,
    order,
    orders_mapping,
    parse_metrics,
)

pytestmark = pytest.mark.integration

FLOW = "f2ae0194-8bd8-4a40-a4d9-f07bdc3e6ce2"
UNKNOWN_FLOW = "0c2f4b1a-0000-4a55-9b7e-2d4c8f1e6a90"
EMULATOR = {
    "ims_org_id": "ACME@AdobeOrg",
    "connections": {
        "conn-1": {},  # the XDM mapping's inlet (platform.connection_id)
        "http-api": {"dataflows": {FLOW: {"dataset": "ds-raw"}}},
    },
}


def raw_mapping(topic: str, flow: str) -> dict[str, Any]:
    return {
        "source": {"topics": [topic], "format": "json"},
        "target": {"mode": "raw", "connectionId": "http-api", "flowId": flow},
    }


@pytest.fixture
def dataflow_emulator(tmp_path: Path) -> Iterator[RunningEmulator]:
    with start_emulator(EMULATOR, tmp_path) as running:
        yield running


def test_raw_records_are_accepted_under_their_flow_and_unknown_flows_dead_lettered(
    scenario: Scenario, dataflow_emulator: RunningEmulator
) -> None:
    emulator = dataflow_emulator
    other = create_topic(scenario.bootstrap, unique_name("other"), partitions=1)
    produce(scenario.bootstrap, scenario.topic, (order(n) for n in range(300)))
    produce(scenario.bootstrap, other, (order(n) for n in range(1000, 1020)))
    # The orders topic feeds an XDM mapping and a raw one; the other topic a raw mapping whose
    # flow the inlet does not know.
    write_mapping(scenario.mappings_dir, "orders", orders_mapping(scenario.topic))
    write_mapping(scenario.mappings_dir, "orders-raw", raw_mapping(scenario.topic, FLOW))
    write_mapping(scenario.mappings_dir, "misrouted", raw_mapping(other, UNKNOWN_FLOW))

    with scenario.worker(scenario.env(emulator)) as worker:
        scenario.wait_drained(worker)
        wait_until(drained(scenario.bootstrap, scenario.group, other), 60, "other", worker)
        metrics = worker.get("/metrics").text
        worker.signal(signal.SIGTERM)
        assert worker.wait_exit() == 0

    raw = emulator.messages(connection="http-api")
    assert Counter(m["flowId"] for m in raw) == {FLOW: 300}
    assert all(m["raw"] and m["datasetId"] == "ds-raw" for m in raw)
    expected = {n: orjson.loads(order(n)[1]) for n in range(300)}
    assert sorted(m["message"]["n"] for m in raw) == list(range(300))  # each once
    assert all(m["message"] == expected[m["message"]["n"]] for m in raw)  # the record itself
    xdm = emulator.messages(connection="conn-1")
    assert len(xdm) == 300
    assert all("raw" not in m for m in xdm)

    letters = scenario.dead_letters(20)
    assert len(letters) == 20
    for letter in letters:
        headers = header_map(letter)
        assert headers["aep.dlq.source.topic"] == other.encode()
        assert headers["aep.dlq.stage"] == b"api"
        assert headers["aep.dlq.http.status"] == b"400"
        assert headers["aep.dlq.mapping"] == b"misrouted"
        assert f"unknown flow '{UNKNOWN_FLOW}'".encode() in headers["aep.dlq.api.message"]
    assert sorted(orjson.loads(m.value())["n"] for m in letters) == list(range(1000, 1020))  # type: ignore[attr-defined]

    stats = emulator.stats()
    assert stats["accepted_by_flow"] == {FLOW: 300}
    sums = parse_metrics(metrics)
    assert sums["aep_connector_requests_total"] == stats["requests_total"]
    assert 'aep_connector_records_accepted_total{mapping="orders-raw"} 300.0' in metrics
    assert 'aep_connector_records_dead_lettered_total{reason="api_rejected",stage="api"} 20.0' in (
        metrics
    )


def test_a_wrong_flow_id_for_every_record_trips_the_breaker_and_loses_nothing(
    scenario: Scenario, dataflow_emulator: RunningEmulator
) -> None:
    produce(scenario.bootstrap, scenario.topic, (order(n) for n in range(200)))
    write_mapping(scenario.mappings_dir, "misrouted", raw_mapping(scenario.topic, UNKNOWN_FLOW))
    env = scenario.env(dataflow_emulator, AEP_CONNECTOR_DEAD_LETTER__MAX_CONSECUTIVE="25")
    with scenario.worker(env) as worker:
        assert worker.wait_exit() == 3  # halted
    assert "dead-letter circuit breaker tripped" in worker.output()
    assert dataflow_emulator.messages() == []
    letters = scenario.dead_letters(25)
    committed = committed_offsets(scenario.bootstrap, scenario.group, scenario.topic)
    ends = end_offsets(scenario.bootstrap, scenario.topic)
    # Only dead-lettered records are committed; the rest wait for the fixed mapping.
    assert sum(max(0, offset) for offset in committed.values()) <= len(letters)
    assert len(letters) < sum(ends.values()) == 200
