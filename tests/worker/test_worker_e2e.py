"""The worker end to end: real broker, the emulator over HTTP, the worker as a real process.

Every test checks the invariant: each produced record is either accepted by the emulator
exactly as the mapping says, or in the dead-letter topic with the right reason; and at the
end the group's committed offsets equal the end offsets.
"""

from __future__ import annotations

import io
import os
import signal
import struct
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro
import httpx
import orjson
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from connector.mapping import TargetDefaults, load_mapping_file
from connector.records import SourceRecord
from tests.support.emulator import RunningEmulator, start_emulator
from tests.support.kafka import (
    committed_offsets,
    consume_all,
    create_topic,
    end_offsets,
    produce,
    unique_name,
)
from tests.support.report import measurement
from tests.support.worker import (
    RunningWorker,
    drained,
    free_port,
    start_worker,
    wait_until,
    worker_env,
    write_mapping,
)

pytestmark = pytest.mark.integration

SCHEMA_REF = {
    "id": "https://ns.adobe.com/acme/schemas/orders",
    "contentType": "application/vnd.adobe.xed-full+json;version=1",
}
EMULATOR_BASE: dict[str, Any] = {"ims_org_id": "ACME@AdobeOrg"}


def orders_mapping(topic: str, **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "source": {"topics": [topic], "format": "json"},
        "target": {"datasetId": "ds-orders", "schemaRef": SCHEMA_REF, "sourceName": "tests"},
        "mappings": [
            {"source": "id", "destination": "_id"},
            {"sourceType": "EXPRESSION", "source": "upper(name)", "destination": "_acme.name"},
            {"source": "n", "destination": "_acme.n"},
            {"sourceType": "EXPRESSION", "source": "_kafka.key", "destination": "_acme.key"},
            {
                "sourceType": "EXPRESSION",
                "source": "_kafka.partition",
                "destination": "_acme.partition",
            },
            {"sourceType": "EXPRESSION", "source": "_kafka.offset", "destination": "_acme.offset"},
            {"sourceType": "STATIC", "source": "web", "destination": "channel._type"},
        ],
    }
    spec.update(overrides)
    return spec


def order(n: int, pad: int = 0) -> tuple[bytes, bytes]:
    value = {"id": f"id-{n}", "name": f"order {n}", "n": n}
    if pad:
        value["pad"] = "x" * pad
    return f"key-{n}".encode(), orjson.dumps(value)


@dataclass
class Scenario:
    bootstrap: str
    topic: str
    dlq: str
    group: str
    mappings_dir: Path
    tmp_path: Path

    def env(self, emulator: RunningEmulator, **extra: str) -> dict[str, str]:
        return worker_env(
            self.bootstrap, self.group, emulator.url, self.mappings_dir, self.dlq, **extra
        )

    def worker(self, env: dict[str, str], name: str = "worker") -> Any:
        return start_worker(env, self.tmp_path / f"{name}.log")

    def dead_letters(self, expected: int) -> list[Any]:
        return consume_all(self.bootstrap, self.dlq, expected, timeout_s=20 if expected else 2)

    def wait_drained(self, worker: RunningWorker, timeout_s: float = 120) -> None:
        wait_until(drained(self.bootstrap, self.group, self.topic), timeout_s, "drain", worker)


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[RunningEmulator]:
    with start_emulator(EMULATOR_BASE, tmp_path) as running:
        yield running


def check_entities(
    mapping_path: Path, accepted: list[dict[str, Any]], pad: int = 0
) -> Counter[str]:
    """Every accepted entity equals what the mapping makes of its record; returns id counts."""
    mapping = load_mapping_file(mapping_path, TargetDefaults("conn-1", "ACME@AdobeOrg"))
    counts: Counter[str] = Counter()
    for line in accepted:
        entity = line["message"]["body"]["xdmEntity"]
        n = entity["_acme"]["n"]
        key, value = order(n, pad)
        meta = SourceRecord(
            topic="",
            partition=entity["_acme"]["partition"],
            offset=entity["_acme"]["offset"],
            timestamp_ms=None,
            key=key,
            value=value,
        )
        expected = mapping.apply(orjson.loads(value), meta).entity
        assert entity == expected
        assert line["message"]["header"]["datasetId"] == "ds-orders"
        assert line["message"]["header"]["imsOrgId"] == "ACME@AdobeOrg"
        counts[entity["_id"]] += 1
    return counts


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text → {metric name: value summed over its labels}."""
    sums: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_and_labels, _, value = line.rpartition(" ")
        name = name_and_labels.split("{")[0]
        sums[name] = sums.get(name, 0.0) + float(value)
    return sums


def header_map(message: Any) -> dict[str, bytes]:
    return {k: v for k, v in (message.headers() or [])}


# ---------------------------------------------------------------------------- 1. throughput


def test_all_json_records_accepted_once(scenario: Scenario, emulator: RunningEmulator) -> None:
    total = 10_000
    produce(scenario.bootstrap, scenario.topic, (order(n) for n in range(total)))
    path = write_mapping(scenario.mappings_dir, "orders", orders_mapping(scenario.topic))
    started = time.monotonic()
    with scenario.worker(scenario.env(emulator)) as worker:
        scenario.wait_drained(worker)
        elapsed = time.monotonic() - started
        readiness = worker.get("/readyz")
        metrics = worker.get("/metrics").text
        worker.signal(signal.SIGTERM)
        assert worker.wait_exit() == 0
    measurement(
        "worker test 1: 10,000 JSON records, 4 partitions",
        f"{total / elapsed:,.0f} records/s (start to last commit, incl. process start)",
    )
    counts = check_entities(path, emulator.messages())
    assert len(counts) == total
    assert max(counts.values()) == 1, "a record was accepted twice"
    assert scenario.dead_letters(0) == []
    assert readiness.status_code == 200
    sums = parse_metrics(metrics)
    assert sums["aep_connector_records_consumed_total"] == total
    assert sums["aep_connector_committed_offset"] == total  # the end offsets, summed
    assert "aep_connector_consumer_lag{" in metrics
    assert sums["aep_connector_consumer_lag"] == 0
    assert sums["aep_connector_requests_total"] == emulator.stats()["requests_total"]
    assert f'aep_connector_records_accepted_total{{mapping="orders"}} {total}.0' in metrics


def thread_cpus(pid: int) -> dict[str, str]:
    """Each thread's allowed CPUs (Cpus_allowed_list of /proc/<pid>/task/<tid>/status)."""
    allowed: dict[str, str] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        status = (task / "status").read_text()
        name = (task / "comm").read_text().strip()
        allowed[f"{name}/{task.name}"] = status.split("Cpus_allowed_list:")[1].split()[0]
    return allowed


@pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs CPU affinity and two CPUs",
)
def test_single_cpu_keeps_every_thread_on_one_cpu_and_loses_nothing(
    scenario: Scenario, emulator: RunningEmulator
) -> None:
    total = 2_000
    produce(scenario.bootstrap, scenario.topic, (order(n) for n in range(total)))
    path = write_mapping(scenario.mappings_dir, "orders", orders_mapping(scenario.topic))
    env = scenario.env(emulator) | {"AEP_CONNECTOR_OPS__SINGLE_CPU": "true"}
    with scenario.worker(env) as worker:
        scenario.wait_drained(worker)
        allowed = thread_cpus(worker.process.pid)
        worker.signal(signal.SIGTERM)
        assert worker.wait_exit() == 0
    # The main thread, librdkafka's, the ops server's and the request threads: one CPU.
    assert len(allowed) > 3, allowed
    assert len(set(allowed.values())) == 1, allowed
    cpu = next(iter(allowed.values()))
    assert cpu.isdigit(), allowed
    assert '"threads kept on one CPU"' in worker.output()
    counts = check_entities(path, emulator.messages())
    assert len(counts) == total
    assert max(counts.values()) == 1
    assert scenario.dead_letters(0) == []


# ---------------------------------------------------------------------------- 2. Avro


AVRO_SCHEMA = {
    "type": "record",
    "name": "Order",
    "namespace": "acme",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "name", "type": "string"},
        {"name": "n", "type": "long"},
    ],
}


def avro_datum(n: int) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(
        out, fastavro.parse_schema(AVRO_SCHEMA), {"id": f"id-{n}", "name": f"order {n}", "n": n}
    )
    return out.getvalue()


def test_avro_through_the_registry(
    scenario: Scenario, emulator: RunningEmulator, schema_registry_url: str
) -> None:
    client = SchemaRegistryClient({"url": schema_registry_url})
    schema_id = client.register_schema(
        f"{scenario.topic}-value", Schema(orjson.dumps(AVRO_SCHEMA).decode(), "AVRO")
    )
    framed = [
        (f"key-{n}".encode(), struct.pack(">bI", 0, schema_id) + avro_datum(n)) for n in range(500)
    ]
    produce(scenario.bootstrap, scenario.topic, framed)
    path = write_mapping(
        scenario.mappings_dir,
        "orders",
        orders_mapping(scenario.topic, source={"topics": [scenario.topic], "format": "avro"}),
    )
    env = scenario.env(emulator, AEP_CONNECTOR_KAFKA__SCHEMA_REGISTRY_URL=schema_registry_url)
    with scenario.worker(env) as worker:
        scenario.wait_drained(worker)
    counts = check_entities(path, emulator.messages())
    assert sorted(counts) == sorted(f"id-{n}" for n in range(500))


def test_avro_with_a_fixed_schema_file(scenario: Scenario, emulator: RunningEmulator) -> None:
    schema_file = scenario.mappings_dir / "schemas" / "order.avsc"
    schema_file.parent.mkdir(parents=True)
    schema_file.write_bytes(orjson.dumps(AVRO_SCHEMA))
    produce(
        scenario.bootstrap,
        scenario.topic,
        ((f"key-{n}".encode(), avro_datum(n)) for n in range(300)),
    )
    path = write_mapping(
        scenario.mappings_dir,
        "orders",
        orders_mapping(
            scenario.topic,
            source={
                "topics": [scenario.topic],
                "format": "avro-schema",
                "schema": "schemas/order.avsc",
            },
        ),
    )
    with scenario.worker(scenario.env(emulator)) as worker:
        scenario.wait_drained(worker)
    counts = check_entities(path, emulator.messages())
    assert sorted(counts) == sorted(f"id-{n}" for n in range(300))


# ---------------------------------------------------------------------------- 3. poison


def test_poison_records_are_dead_lettered_with_stage_reason_and_bytes(
    scenario: Scenario, emulator: RunningEmulator, schema_registry_url: str
) -> None:
    good = [order(n) for n in range(200)]
    invalid_json = (b"bad-json", b'{"id": "broken", ')
    big = (b"big", orjson.dumps({"id": "big", "name": "big", "n": 1, "blob": "y" * 1_200_000}))
    strict_failure = (b"strict", orjson.dumps({"id": "strict", "name": "s", "n": "not-a-number"}))
    produce(
        scenario.bootstrap,
        scenario.topic,
        [*good[:100], invalid_json, big, strict_failure, *good[100:]],
    )

    avro_topic = create_topic(scenario.bootstrap, unique_name("avro"), partitions=1)
    schema_id = SchemaRegistryClient({"url": schema_registry_url}).register_schema(
        f"{avro_topic}-value", Schema(orjson.dumps(AVRO_SCHEMA).decode(), "AVRO")
    )
    wrong_magic = (b"magic", b"\x01" + struct.pack(">I", schema_id) + avro_datum(1))
    unknown_id = (b"unknown", struct.pack(">bI", 0, 987_654) + avro_datum(2))
    good_avro = (b"key-5", struct.pack(">bI", 0, schema_id) + avro_datum(5))
    produce(scenario.bootstrap, avro_topic, [wrong_magic, unknown_id, good_avro])

    mapping = orders_mapping(scenario.topic, strict=True)
    mapping["mappings"] = [
        *mapping["mappings"],
        {"sourceType": "EXPRESSION", "source": "to_integer(n) + 0", "destination": "_acme.qty"},
        {"source": "blob", "destination": "_acme.blob"},
    ]
    write_mapping(scenario.mappings_dir, "orders", mapping)
    write_mapping(
        scenario.mappings_dir,
        "avro-orders",
        orders_mapping(avro_topic, source={"topics": [avro_topic], "format": "avro"}),
    )
    env = scenario.env(emulator, AEP_CONNECTOR_KAFKA__SCHEMA_REGISTRY_URL=schema_registry_url)
    with scenario.worker(env) as worker:
        scenario.wait_drained(worker)
        wait_until(
            drained(scenario.bootstrap, scenario.group, avro_topic), 60, "avro drain", worker
        )

    letters = {m.key(): m for m in scenario.dead_letters(5)}
    expected = {
        b"bad-json": (invalid_json[1], b"decode", b"invalid_json"),
        b"big": (big[1], b"validate", b"too_large"),
        b"strict": (strict_failure[1], b"map", b"mapping_failure"),
        b"magic": (wrong_magic[1], b"decode", b"wire_format"),
        b"unknown": (unknown_id[1], b"decode", b"unknown_schema"),
    }
    assert set(letters) == set(expected)
    for key, (value, stage, reason) in expected.items():
        message = letters[key]
        headers = header_map(message)
        assert message.value() == value, key
        assert headers["aep.dlq.stage"] == stage, key
        assert headers["aep.dlq.error.class"] == reason, key
        assert headers["aep.dlq.source.topic"] in (scenario.topic.encode(), avro_topic.encode())
        assert int(headers["aep.dlq.source.offset"]) >= 0
        assert headers["aep.dlq.error.message"]
    assert b"_acme.qty" in header_map(letters[b"strict"])["aep.dlq.error.message"]
    accepted_ids = {m["message"]["body"]["xdmEntity"]["_id"] for m in emulator.messages()}
    assert accepted_ids == {f"id-{n}" for n in range(200)} | {"id-5"}


def test_hostile_regex_input_never_blocks_the_stream(
    scenario: Scenario, emulator: RunningEmulator
) -> None:
    """Issue 11: a record built to make a regex backtrack. On a pattern RE2 runs (linear time)
    a 60,000-character string maps in milliseconds; on a pattern only the backtracking engine
    can run, the evaluation budget turns the record into a dead letter (map/too_slow); the
    records around it flow on."""
    hostile_re2 = {"id": "re2", "name": "r", "n": 1, "s": "a," * 30_000, "t": "b"}
    hostile_fallback = {"id": "fallback", "name": "f", "n": 2, "s": "a,b,c", "t": "a" * 40}
    records = [
        order(0),
        (b"re2", orjson.dumps(hostile_re2)),
        (b"fallback", orjson.dumps(hostile_fallback)),
        order(3),
    ]
    produce(scenario.bootstrap, scenario.topic, records, partition=0)
    for partition in (1, 2, 3):  # every partition has a record, so the drain check can end
        produce(scenario.bootstrap, scenario.topic, [order(10 + partition)], partition=partition)
    mapping = orders_mapping(scenario.topic)
    mapping["mappings"] = [
        *mapping["mappings"],
        {
            "sourceType": "EXPRESSION",
            "source": 'extract_regex(s, "([^,]+),[^,]*,([^,]+)")',
            "destination": "_acme.parts",
        },
        # A lookahead: not RE2, so the guarded backtracking engine runs it.
        {
            "sourceType": "EXPRESSION",
            "source": 'matches_regex(t, "^(?:a|a)*(?=b)")',
            "destination": "_acme.flag",
        },
    ]
    write_mapping(scenario.mappings_dir, "orders", mapping)
    started = time.monotonic()
    with scenario.worker(scenario.env(emulator)) as worker:
        scenario.wait_drained(worker)
        assert worker.alive()
    (letter,) = scenario.dead_letters(1)
    headers = header_map(letter)
    assert letter.key() == b"fallback"
    assert (headers["aep.dlq.stage"], headers["aep.dlq.error.class"]) == (b"map", b"too_slow")
    accepted = {m["message"]["body"]["xdmEntity"]["_id"] for m in emulator.messages()}
    assert accepted == {"id-0", "re2", "id-3", "id-11", "id-12", "id-13"}
    measurement(
        "hostile regex records (60k chars on RE2; a backtracking pattern)",
        f"drained in {time.monotonic() - started:.1f} s incl. start; 1 dead letter (too_slow)",
    )


# ---------------------------------------------------------------------------- 4. partial 207


@pytest.mark.parametrize("shape", ["statusCode", "status", "status_with_xaction"])
def test_partial_rejection_dead_letters_exactly_the_rejected(
    scenario: Scenario, tmp_path: Path, shape: str
) -> None:
    rejected_ids = {"id-3", "id-77", "id-150", "id-299"}
    config = {
        **EMULATOR_BASE,
        "rejection_shape": shape,
        "reject": [
            {"pointer": "/body/xdmEntity/_id", "equals": i, "message": f"bad {i}"}
            for i in sorted(rejected_ids)
        ],
    }
    produce(scenario.bootstrap, scenario.topic, (order(n) for n in range(300)))
    path = write_mapping(scenario.mappings_dir, "orders", orders_mapping(scenario.topic))
    with (
        start_emulator(config, tmp_path) as emulator,
        scenario.worker(scenario.env(emulator)) as worker,
    ):
        scenario.wait_drained(worker)
        counts = check_entities(path, emulator.messages())
    assert set(counts) == {f"id-{n}" for n in range(300)} - rejected_ids
    assert max(counts.values()) == 1
    letters = scenario.dead_letters(len(rejected_ids))
    assert {orjson.loads(m.value())["id"] for m in letters} == rejected_ids
    for message in letters:
        headers = header_map(message)
        assert headers["aep.dlq.stage"] == b"api"
        assert headers["aep.dlq.http.status"] == b"400"
        expected_message = f"bad {orjson.loads(message.value())['id']}".encode()
        assert headers["aep.dlq.api.message"].endswith(expected_message)


# ---------------------------------------------------------------------------- 5. transient


def test_transient_faults_lose_nothing_and_dead_letter_nothing(
    scenario: Scenario, emulator: RunningEmulator
) -> None:
    emulator.set_faults({"p503": 0.3, "p429": 0.1, "retry_after_s": 1, "seed": 7})
    total = 3000
    produce(scenario.bootstrap, scenario.topic, (order(n) for n in range(total)))
    path = write_mapping(scenario.mappings_dir, "orders", orders_mapping(scenario.topic))
    env = scenario.env(emulator, AEP_CONNECTOR_BATCHING__MAX_RECORDS="100")
    with scenario.worker(env) as worker:
        scenario.wait_drained(worker)
    stats = emulator.stats()
    assert stats["requests_by_status"].get("503", 0) > 0
    assert stats["requests_by_status"].get("429", 0) > 0
    counts = check_entities(path, emulator.messages())
    assert len(counts) == total
    assert scenario.dead_letters(0) == []


# ---------------------------------------------------------------------------- 6. 413


def test_requests_over_the_api_limit_are_split(
    scenario: Scenario, emulator: RunningEmulator
) -> None:
    total = 1500
    produce(scenario.bootstrap, scenario.topic, (order(n, pad=4000) for n in range(total)))
    mapping = orders_mapping(scenario.topic)
    mapping["mappings"].append({"source": "pad", "destination": "_acme.pad"})
    path = write_mapping(scenario.mappings_dir, "orders", mapping)
    env = scenario.env(
        emulator,
        AEP_CONNECTOR_BATCHING__MAX_REQUEST_BYTES="3000000",
        AEP_CONNECTOR_BATCHING__LINGER_MS="500",
    )
    with scenario.worker(env) as worker:
        scenario.wait_drained(worker)
    assert emulator.stats()["requests_by_status"].get("413", 0) > 0
    counts = check_entities(path, emulator.messages(), pad=4000)
    assert len(counts) == total
    assert max(counts.values()) == 1
    assert scenario.dead_letters(0) == []


# ---------------------------------------------------------------------------- 7. commit after ack


def test_no_commit_while_the_api_stalls_and_nothing_lost_after_kill_9(
    scenario: Scenario, emulator: RunningEmulator
) -> None:
    total = 4000
    produce(scenario.bootstrap, scenario.topic, (order(n) for n in range(total)))
    path = write_mapping(scenario.mappings_dir, "orders", orders_mapping(scenario.topic))
    emulator.set_faults({"stall": True})
    env = scenario.env(
        emulator,
        AEP_CONNECTOR_BATCHING__MAX_RECORDS="50",
        AEP_CONNECTOR_BATCHING__MAX_BUFFERED_RECORDS="400",
        # The killed worker stays a group member until its session times out.
        AEP_CONNECTOR_KAFKA__SESSION_TIMEOUT_MS="6000",
    )
    with scenario.worker(env, "first") as worker:
        wait_until(
            lambda: emulator.stats()["requests_stalled"] >= 1, 30, "a stalled request", worker
        )
        # A bounded observation window: nothing may be committed while nothing is acknowledged.
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            assert all(
                o < 0
                for o in committed_offsets(
                    scenario.bootstrap, scenario.group, scenario.topic
                ).values()
            )
            time.sleep(0.2)
        emulator.set_faults({"latency_ms": 100})
        wait_until(
            lambda: emulator.stats()["messages_accepted"] >= total // 4,
            60,
            "a quarter accepted",
            worker,
        )
        worker.signal(signal.SIGKILL)
        worker.wait_exit()
    committed_before = sum(
        max(o, 0)
        for o in committed_offsets(scenario.bootstrap, scenario.group, scenario.topic).values()
    )
    assert committed_before < total
    emulator.clear_faults()
    with scenario.worker(env, "second") as worker:
        scenario.wait_drained(worker)
    counts = check_entities(path, emulator.messages())
    assert len(counts) == total, "records were lost"
    duplicates = sum(counts.values()) - total
    measurement("worker test 7: duplicates after kill -9", f"{duplicates} of {total} records")


# ---------------------------------------------------------------------------- 8. auth


def auth_config() -> dict[str, Any]:
    return {
        **EMULATOR_BASE,
        "connections": {"conn-1": {"authentication": True}},
        "credentials": [{"client_id": "worker", "client_secret": "right-secret"}],
        "token_lifetime_s": 1,
    }


def test_expiring_tokens_are_renewed_and_nothing_is_lost(
    scenario: Scenario, tmp_path: Path
) -> None:
    total = 2000
    produce(scenario.bootstrap, scenario.topic, (order(n) for n in range(total)))
    path = write_mapping(scenario.mappings_dir, "orders", orders_mapping(scenario.topic))
    with start_emulator(auth_config(), tmp_path) as emulator:
        emulator.set_faults({"latency_ms": 150})
        env = scenario.env(
            emulator,
            AEP_CONNECTOR_BATCHING__MAX_RECORDS="50",
            AEP_CONNECTOR_PLATFORM__AUTH__CLIENT_ID="worker",
            AEP_CONNECTOR_PLATFORM__AUTH__CLIENT_SECRET="right-secret",
            AEP_CONNECTOR_PLATFORM__AUTH__TOKEN_URL=emulator.token_url,
        )
        with scenario.worker(env) as worker:
            scenario.wait_drained(worker)
            worker.signal(signal.SIGTERM)
            assert worker.wait_exit() == 0
            output = worker.output()
        stats = emulator.stats()
        counts = check_entities(path, emulator.messages())
    # Nothing a run prints may contain the secret or a record's payload.
    assert "right-secret" not in output
    for fragment in ('"order ', "id-1", "key-1", "Bearer "):
        assert fragment not in output
    assert '"client_secret":"**********"' in output
    assert stats["tokens_issued"] >= 2
    assert len(counts) == total
    assert scenario.dead_letters(0) == []


def test_wrong_client_secret_halts_without_dead_letters_or_commits(
    scenario: Scenario, tmp_path: Path
) -> None:
    produce(scenario.bootstrap, scenario.topic, (order(n) for n in range(200)))
    write_mapping(scenario.mappings_dir, "orders", orders_mapping(scenario.topic))
    with start_emulator(auth_config(), tmp_path) as emulator:
        env = scenario.env(
            emulator,
            AEP_CONNECTOR_PLATFORM__AUTH__CLIENT_ID="worker",
            AEP_CONNECTOR_PLATFORM__AUTH__CLIENT_SECRET="wrong-secret",
            AEP_CONNECTOR_PLATFORM__AUTH__TOKEN_URL=emulator.token_url,
            AEP_CONNECTOR_OPS__HALT_LINGER_S="3",
        )
        with scenario.worker(env) as worker:
            wait_until(
                lambda: (
                    probe(worker, "/readyz")[0] == 503 and "halted" in probe(worker, "/readyz")[1]
                ),
                60,
                "readiness to report the halt",
                worker,
            )
            assert parse_metrics(worker.get("/metrics").text)["aep_connector_halted"] == 1
            status = worker.wait_exit(60)
            output = worker.output()
        assert emulator.stats()["messages_accepted"] == 0
    assert status == 3
    assert "halted: token endpoint refused the client credentials" in output
    assert "wrong-secret" not in output
    assert scenario.dead_letters(0) == []
    assert all(
        o < 0
        for o in committed_offsets(scenario.bootstrap, scenario.group, scenario.topic).values()
    )


def probe(worker: RunningWorker, path: str) -> tuple[int, str]:
    """Status and body of an ops endpoint; (0, "") while it does not answer yet."""
    try:
        response = worker.get(path)
    except httpx.TransportError:
        return 0, ""
    return response.status_code, response.text


def test_not_ready_before_joining_the_group(tmp_path: Path) -> None:
    unreachable = f"127.0.0.1:{free_port()}"  # nothing listens: the group can never be joined
    mappings = tmp_path / "m"
    write_mapping(mappings, "orders", orders_mapping("orders"))
    env = worker_env(
        unreachable,
        "g",
        "http://127.0.0.1:9",
        mappings,
        "dlq",
        AEP_CONNECTOR_OPS__HALT_LINGER_S="0",
    )
    with start_worker(env, tmp_path / "worker.log") as worker:
        wait_until(lambda: probe(worker, "/readyz")[0] != 0, 30, "the ops server", worker)
        assert probe(worker, "/readyz") == (503, "not yet in the consumer group\n")
        assert probe(worker, "/healthz") == (200, "ok\n")
        assert "aep_connector_halted 0.0" in worker.get("/metrics").text
        worker.signal(signal.SIGTERM)
        assert worker.wait_exit(60) == 0


# ---------------------------------------------------------------------------- 9. SIGTERM


def test_sigterm_exits_cleanly_with_commits_covering_exactly_the_accepted(
    scenario: Scenario, emulator: RunningEmulator
) -> None:
    total = 4000
    produce(scenario.bootstrap, scenario.topic, (order(n) for n in range(total)))
    write_mapping(scenario.mappings_dir, "orders", orders_mapping(scenario.topic))
    emulator.set_faults({"latency_ms": 100})
    env = scenario.env(
        emulator,
        AEP_CONNECTOR_BATCHING__MAX_RECORDS="50",
        AEP_CONNECTOR_BATCHING__MAX_BUFFERED_RECORDS="400",
    )
    with scenario.worker(env) as worker:
        wait_until(
            lambda: emulator.stats()["messages_accepted"] >= total // 4,
            60,
            "a quarter accepted",
            worker,
        )
        worker.signal(signal.SIGTERM)
        assert worker.wait_exit(30) == 0
        assert "shutting down" in worker.output()
    committed = committed_offsets(scenario.bootstrap, scenario.group, scenario.topic)
    accepted: dict[int, list[int]] = {}
    for line in emulator.messages():
        acme = line["message"]["body"]["xdmEntity"]["_acme"]
        accepted.setdefault(acme["partition"], []).append(acme["offset"])
    assert sum(len(v) for v in accepted.values()) < total, "SIGTERM came after the end"
    duplicates = 0
    for partition, position in committed.items():
        offsets = accepted.get(partition, [])
        duplicates += len(offsets) - len(set(offsets))
        assert set(offsets) == set(range(max(position, 0))), f"partition {partition}"
    measurement("worker test 9: duplicates after SIGTERM", f"{duplicates}")
    assert end_offsets(scenario.bootstrap, scenario.topic)
