"""Delivery receipts end to end: the real broker, the emulator over HTTP, the worker as a
process. Every record the API acknowledged has exactly one receipt, and each receipt names the
xactionId the emulator gave that record; required receipts that cannot be written keep the
offsets uncommitted.
"""

from __future__ import annotations

import hashlib
import signal
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from confluent_kafka.admin import AdminClient

from tests.support.emulator import RunningEmulator, start_emulator
from tests.support.kafka import (
    committed_offsets,
    consume_all,
    create_topic,
    produce,
    unique_name,
)
from tests.support.worker import drained, start_worker, wait_until, worker_env, write_mapping
from tests.worker.test_worker_e2e import EMULATOR_BASE, order, orders_mapping

pytestmark = pytest.mark.integration


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[RunningEmulator]:
    with start_emulator(EMULATOR_BASE, tmp_path) as running:
        yield running


def receipts_env(
    bootstrap: str, group: str, emulator: RunningEmulator, tmp_path: Path, topic: str, **extra: str
) -> dict[str, str]:
    write_mapping(tmp_path / "m", "orders", orders_mapping(topic))
    dlq = create_topic(bootstrap, unique_name("dlq"), partitions=1)
    return worker_env(bootstrap, group, emulator.url, tmp_path / "m", dlq, **extra)


@pytest.mark.parametrize("required", ["false", "true"])
def test_every_acknowledged_record_has_one_receipt_naming_the_emulators_xaction_id(
    kafka_bootstrap: str, emulator: RunningEmulator, tmp_path: Path, required: str
) -> None:
    total = 3000
    topic = create_topic(kafka_bootstrap, unique_name("orders"), partitions=4)
    receipts_topic = create_topic(kafka_bootstrap, unique_name("receipts"), partitions=2)
    produce(kafka_bootstrap, topic, (order(n) for n in range(total)))
    rejected = {"id-7", "id-1500"}
    emulator.set_reject([{"pointer": "/body/xdmEntity/_id", "equals": i} for i in rejected])
    # Some answers are lost after the emulator stored the messages: it holds those records
    # twice, and the worker saw (and receipted) only the second acknowledgement.
    emulator.set_faults({"p_accept_drop": 0.1, "seed": 16})
    group = unique_name("group")
    env = receipts_env(
        kafka_bootstrap,
        group,
        emulator,
        tmp_path,
        topic,
        AEP_CONNECTOR_RECEIPTS__TOPIC=receipts_topic,
        AEP_CONNECTOR_RECEIPTS__REQUIRED=required,
        AEP_CONNECTOR_BATCHING__MAX_RECORDS="200",
    )
    started_ms = time.time_ns() // 1_000_000
    with start_worker(env, tmp_path / "worker.log") as worker:
        wait_until(drained(kafka_bootstrap, group, topic), 120, "drain", worker)
        # Receipts that are not required may still be on their way when the offsets are in.
        produced = f"aep_connector_receipts_produced_total {total - len(rejected)}.0"
        wait_until(lambda: produced in worker.get("/metrics").text, 30, "receipts", worker)
        worker.signal(signal.SIGTERM)
        assert worker.wait_exit() == 0
    assert emulator.stats()["faults_injected"].get("accept_drop", 0) > 0

    # What the emulator accepted, by source record (the mapping writes partition and offset).
    accepted_as: dict[tuple[int, int], list[str]] = defaultdict(list)
    received_ms: dict[str, int] = {}
    for line in emulator.messages():
        acme = line["message"]["body"]["xdmEntity"]["_acme"]
        accepted_as[(acme["partition"], acme["offset"])].append(line["xactionId"])
        received_ms[line["xactionId"]] = line["receivedTimeMs"]
    assert len(accepted_as) == total - len(rejected)

    receipts = [
        orjson.loads(m.value())  # type: ignore[attr-defined]
        for m in consume_all(kafka_bootstrap, receipts_topic, total, timeout_s=30)
    ]
    by_record: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
    for receipt in receipts:
        by_record[(receipt["partition"], receipt["offset"])].append(receipt)
    # Exactly one receipt per acknowledgement: each accepted record was acknowledged once.
    assert len(receipts) == total - len(rejected)
    assert set(by_record) == set(accepted_as)
    assert all(len(r) == 1 for r in by_record.values())
    twice = 0
    for record, (receipt,) in by_record.items():
        xaction_ids = accepted_as[record]
        twice += len(xaction_ids) > 1
        # The acknowledgement the worker saw is the last time the emulator stored the record.
        assert receipt["xactionId"] == xaction_ids[-1]
        assert receipt["xactionId"].startswith(receipt["batchId"] + ":")
        assert receipt["topic"] == topic
        assert (receipt["mapping"], receipt["connection"]) == ("orders", "conn-1")
        assert received_ms[receipt["xactionId"]] <= receipt["acknowledgedAtMs"]
        assert started_ms <= receipt["acknowledgedAtMs"] <= time.time_ns() // 1_000_000
    assert twice > 0, "no answer was lost: the duplicate case was not exercised"
    keys = {r["keySha256"] for r in receipts}
    assert hashlib.sha256(b"key-0").hexdigest() in keys


def test_required_receipts_that_cannot_be_written_keep_offsets_uncommitted(
    kafka_bootstrap: str, emulator: RunningEmulator, tmp_path: Path
) -> None:
    topic = create_topic(kafka_bootstrap, unique_name("orders"), partitions=2)
    receipts_topic = create_topic(kafka_bootstrap, unique_name("receipts"), partitions=1)
    group = unique_name("group")
    env = receipts_env(
        kafka_bootstrap,
        group,
        emulator,
        tmp_path,
        topic,
        AEP_CONNECTOR_RECEIPTS__TOPIC=receipts_topic,
        AEP_CONNECTOR_RECEIPTS__REQUIRED="true",
        AEP_CONNECTOR_RECEIPTS__DELIVERY_TIMEOUT_S="5",
        AEP_CONNECTOR_OPS__HALT_LINGER_S="0",
    )
    with start_worker(env, tmp_path / "worker.log") as worker:
        wait_until(lambda: _ready(worker), 60, "the worker to join its group", worker)
        # The receipts topic goes away while the worker runs.
        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
        admin.delete_topics([receipts_topic], operation_timeout=30)[receipts_topic].result(60)
        produce(kafka_bootstrap, topic, (order(n) for n in range(100)))
        emulator.wait_for(lambda s: s["messages_accepted"] == 100, 60, "the API to accept all")
        status = worker.wait_exit(60)
        output = worker.output()
    assert status == 3, output[-3000:]
    assert "receipt write to" in output
    # The API has every record, but none is finished without its receipt: nothing committed.
    assert set(committed_offsets(kafka_bootstrap, group, topic).values()) == {-1001}


def _ready(worker: Any) -> bool:
    try:
        return bool(worker.get("/readyz").status_code == 200)
    except httpx.HTTPError:  # the ops server is not up yet
        return False
