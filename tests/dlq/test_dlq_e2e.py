"""`dlq inspect` and `dlq replay` end to end: the real broker, the emulator and the worker as
processes, the commands as a user runs them (a process, AEP_CONNECTOR_* variables)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient

from connector.cli import main
from tests.dlq.letters import Spec, produce_letters
from tests.support.emulator import RunningEmulator, start_emulator
from tests.support.kafka import (
    committed_offsets,
    create_topic,
    end_offsets,
    produce,
    unique_name,
)
from tests.support.report import measurement
from tests.support.worker import drained, start_worker, wait_until, worker_env, write_mapping

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_REF = {
    "id": "https://ns.adobe.com/acme/schemas/orders",
    "contentType": "application/vnd.adobe.xed-full+json;version=1",
}
EMULATOR_BASE: dict[str, Any] = {"ims_org_id": "ACME@AdobeOrg"}
ORDERS_MAPPING: dict[str, Any] = {
    "target": {"datasetId": "ds-orders", "schemaRef": SCHEMA_REF, "sourceName": "tests"},
    "mappings": [
        {"source": "id", "destination": "_id"},
        {"source": "n", "destination": "_acme.n"},
    ],
}


def order(n: int) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    value = orjson.dumps({"id": f"id-{n}", "n": n})
    return f"key-{n}".encode(), value, [("trace", f"t-{n}".encode())]


def reject(*ids: str) -> list[dict[str, Any]]:
    return [{"pointer": "/body/xdmEntity/_id", "equals": i, "message": f"bad {i}"} for i in ids]


def dlq_env(bootstrap: str, dlq: str, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("AEP_CONNECTOR_")}
    return {
        **base,
        "AEP_CONNECTOR_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "AEP_CONNECTOR_DEAD_LETTER__TOPIC": dlq,
        **extra,
    }


def dlq_command(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`aep-connector dlq ARGS` as a process."""
    return subprocess.run(
        [sys.executable, "-m", "connector", "dlq", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def read_topic(bootstrap: str, topic: str, isolation: str = "read_committed") -> list[Any]:
    """Every record of `topic` a consumer with `isolation` sees now, partition by partition."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": unique_name("reader"),
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": isolation,
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        pending = set(partitions)
        messages: list[Any] = []
        deadline = time.monotonic() + 30
        while pending and time.monotonic() < deadline:
            for message in consumer.consume(1000, timeout=0.5):
                error = message.error()
                if error is None:
                    messages.append(message)
                elif error.code() == KafkaError._PARTITION_EOF:
                    pending.discard(message.partition())
        assert not pending, f"{topic}: partitions {pending} not read to the end"
        return messages
    finally:
        consumer.close()


def worker_passed(bootstrap: str, group: str, topic: str) -> Callable[[], bool]:
    """True once the worker's group has committed past every record now in `topic`.

    Not `drained` (committed == end offsets): a transaction's commit marker takes an offset
    after the last record, and the worker commits the offset after its last record."""
    last = {m.partition(): m.offset() for m in read_topic(bootstrap, topic)}

    def check() -> bool:
        committed = committed_offsets(bootstrap, group, topic)
        return all(committed.get(p, -1) > offset for p, offset in last.items())

    return check


def headers_of(message: Any) -> list[tuple[str, bytes | None]]:
    return list(message.headers() or [])


@dataclass
class Topics:
    bootstrap: str
    source: str
    dlq: str
    tmp_path: Path


@pytest.fixture
def topics(kafka_bootstrap: str, tmp_path: Path) -> Topics:
    source = create_topic(kafka_bootstrap, unique_name("orders"), partitions=2)
    dlq = create_topic(kafka_bootstrap, unique_name("dlq"), partitions=1)
    return Topics(kafka_bootstrap, source, dlq, tmp_path)


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[RunningEmulator]:
    with start_emulator(EMULATOR_BASE, tmp_path) as running:
        yield running


def start_worker_on(topics: Topics, emulator: RunningEmulator, group: str) -> Any:
    mappings = topics.tmp_path / "mappings"
    write_mapping(
        mappings,
        "orders",
        {"source": {"topics": [topics.source], "format": "json"}, **ORDERS_MAPPING},
    )
    env = worker_env(topics.bootstrap, group, emulator.url, mappings, topics.dlq)
    return start_worker(env, topics.tmp_path / "worker.log")


def accepted_ids(emulator: RunningEmulator) -> Counter[str]:
    return Counter(m["message"]["body"]["xdmEntity"]["_id"] for m in emulator.messages())


# ---------------------------------------------------------------------------- the whole loop


def test_rejected_records_are_fixed_replayed_and_accepted(
    topics: Topics, emulator: RunningEmulator
) -> None:
    """Rejected by the emulator → dead-lettered → emulator fixed → replayed → accepted once;
    a record still rejected comes back with its replay count and is then refused."""
    bootstrap, source, dlq = topics.bootstrap, topics.source, topics.dlq
    fixed, still_bad = {"id-3", "id-17", "id-40"}, "id-25"
    emulator.set_reject(reject(*fixed, still_bad))
    total = 60
    produce(bootstrap, source, (order(n) for n in range(total)))
    originals = {m.key(): m for m in read_topic(bootstrap, source)}
    group = unique_name("group")
    env = dlq_env(bootstrap, dlq, AEP_CONNECTOR_KAFKA__GROUP_ID=group)

    with start_worker_on(topics, emulator, group) as worker:
        wait_until(drained(bootstrap, group, source), 60, "first drain", worker)
        letters = read_topic(bootstrap, dlq)
        assert len(letters) == 4
        assert accepted_ids(emulator).keys() == {f"id-{n}" for n in range(total)} - {
            *fixed,
            still_bad,
        }

        emulator.set_reject(reject(still_bad))  # the fix: three of the four are now valid
        inspected = dlq_command("inspect", "--json", env=env)
        assert inspected.returncode == 0, inspected.stderr
        summary = orjson.loads(inspected.stdout)
        assert summary["by_stage"] == {"api": 4}
        assert summary["by_class"] == {"api_rejected": 4}
        assert summary["by_source_topic"] == {source: 4}
        assert summary["by_mapping"] == {"orders": 4}

        ends_before = end_offsets(bootstrap, source)
        replay = dlq_command("replay", "--max-replays", "1", "--json", env=env)
        assert replay.returncode == 0, replay.stderr
        report = orjson.loads(replay.stdout)
        assert (report["read"], report["replayed"], report["refused_replay_limit"]) == (4, 4, 0)
        assert report["replayed_by_topic"] == {source: 4}
        assert "replay: read 4 of 4, replayed 4" in replay.stderr

        # Byte for byte: key, value, original headers, partition; plus the count.
        replayed = [
            m for m in read_topic(bootstrap, source) if m.offset() >= ends_before[m.partition()]
        ]
        assert len(replayed) == 4
        for message in replayed:
            original = originals[message.key()]
            assert message.value() == original.value()
            assert message.partition() == original.partition()
            assert message.timestamp()[1] > original.timestamp()[1]  # the replay's time
            assert headers_of(message) == [*headers_of(original), ("aep.replay.count", b"1")]

        wait_until(worker_passed(bootstrap, group, source), 60, "the replayed records", worker)
        wait_until(lambda: len(read_topic(bootstrap, dlq)) == 5, 30, "the letter of id-25")
        counts = accepted_ids(emulator)
        assert counts.keys() == {f"id-{n}" for n in range(total)} - {still_bad}
        assert max(counts.values()) == 1, "a record was accepted twice"

        # id-25 failed again: its new letter carries the count; the same group resumes after
        # the letters it has replayed and refuses it (limit 1).
        again = read_topic(bootstrap, dlq)[-1]
        assert again.key() == b"key-25"
        assert ("aep.replay.count", b"1") in headers_of(again)
        ends_before = end_offsets(bootstrap, source)
        refused = dlq_command("replay", "--max-replays", "1", "--json", env=env)
        assert refused.returncode == 1, refused.stderr
        report = orjson.loads(refused.stdout)
        assert (report["read"], report["replayed"], report["refused_replay_limit"]) == (1, 0, 1)
        assert end_offsets(bootstrap, source) == ends_before

        inspected = dlq_command("inspect", "--json", env=env)
        assert orjson.loads(inspected.stdout)["by_replay_count"] == {"0": 4, "1": 1}
        worker.signal(signal.SIGTERM)
        assert worker.wait_exit() == 0


# ---------------------------------------------------------------------------- interrupted


def uncommitted_records_pending(bootstrap: str, topic: str) -> bool:
    """True when `topic` holds records of a transaction not yet committed or aborted."""
    return len(read_topic(bootstrap, topic, "read_uncommitted")) > len(read_topic(bootstrap, topic))


def test_an_interrupted_replay_resumes_and_replays_nothing_twice(
    topics: Topics, emulator: RunningEmulator
) -> None:
    bootstrap, source, dlq = topics.bootstrap, topics.source, topics.dlq
    total = 120
    specs = []
    for n in range(total):
        key, value, headers = order(n)
        specs.append(Spec(source, n % 2, n, key, value, original_headers=tuple(headers)))
        if n % 6 == 0:  # letters of another stage, not selected
            specs.append(
                Spec(
                    source,
                    0,
                    1000 + n,
                    b"skip",
                    b"{",
                    stage="decode",
                    error_class="invalid_json",
                    mapping=None,
                    status=None,
                )
            )
    produce_letters(bootstrap, dlq, specs)
    replay_group = unique_name("replay")
    env = dlq_env(bootstrap, dlq)
    args = ["replay", "--stage", "api", "--group", replay_group, "--json", "--batch-size", "10"]
    worker_group = unique_name("group")

    with start_worker_on(topics, emulator, worker_group) as worker:
        with (topics.tmp_path / "replay.log").open("w") as log:
            first = subprocess.Popen(
                [sys.executable, "-m", "connector", "dlq", *args, "--max-rate", "40"],
                cwd=REPO_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_until(
                lambda: committed_offsets(bootstrap, replay_group, dlq)[0] >= 40,
                60,
                "a few committed batches",
            )
            # Kill it between produce and commit: frozen with produced, uncommitted records.
            for _ in range(50):
                first.send_signal(signal.SIGSTOP)
                if uncommitted_records_pending(bootstrap, source):
                    break
                first.send_signal(signal.SIGCONT)
                time.sleep(0.05)
            else:
                raise AssertionError("never caught the replay inside a transaction")
            first.kill()
            first.wait()
        finally:
            if first.poll() is None:
                first.kill()
                first.wait()
        stopped_at = committed_offsets(bootstrap, replay_group, dlq)[0]
        assert stopped_at < len(specs), "the replay finished before it was killed"

        resumed = dlq_command(*args, env=env)
        assert resumed.returncode == 0, resumed.stderr
        report = orjson.loads(resumed.stdout)
        assert report["spans"] == [{"partition": 0, "start": stopped_at, "end": len(specs)}]
        assert report["read"] == len(specs) - stopped_at

        visible = read_topic(bootstrap, source)
        assert sorted(m.key() for m in visible) == sorted(f"key-{n}".encode() for n in range(total))
        aborted = len(read_topic(bootstrap, source, "read_uncommitted")) - len(visible)
        assert aborted > 0  # the killed transaction's records exist, aborted
        measurement(
            "dlq replay killed mid-transaction",
            f"{aborted} produced records aborted, none visible; resumed at dead-letter offset "
            f"{stopped_at} of {len(specs)}",
        )

        passed = worker_passed(bootstrap, worker_group, source)
        wait_until(passed, 60, "the replayed records", worker)
        counts = accepted_ids(emulator)
        assert counts == Counter({f"id-{n}": 1 for n in range(total)})
        assert len(read_topic(bootstrap, dlq)) == len(specs)  # nothing dead-lettered

        again = dlq_command(*args, env=env)
        assert again.returncode == 0, again.stderr
        assert orjson.loads(again.stdout)["read"] == 0


# ---------------------------------------------------------------------------- filters

T0 = 1_714_564_800_000  # 2024-05-01T12:00:00Z


def varied_specs(source: str) -> list[Spec]:
    """Letters differing in every dimension a filter reads."""
    recent_ms = time.time_ns() // 1_000_000 - 3_600_000  # within any topic's retention
    specs = []
    for n in range(40):
        stage = ["api", "map", "decode", "api"][n % 4]
        specs.append(
            Spec(
                source if n % 5 else "clicks",
                n % 3,
                n,
                f"key-{n}".encode(),
                f"value-{n}".encode(),
                stage=stage,  # type: ignore[arg-type]
                error_class={"api": "api_rejected", "map": "mapping_failure"}.get(
                    stage, "invalid_json"
                ),
                mapping=None if stage == "decode" else ("orders" if n % 2 else "other"),
                timestamp_ms=T0 + n * 60_000,
                source_timestamp_ms=recent_ms + n,
            )
        )
    return specs


def invoke(*args: str, env: dict[str, str]) -> Any:
    """`aep-connector dlq ARGS` in this process (faster for many runs); the same code path."""
    result = CliRunner().invoke(main, ["dlq", *args], env=env, catch_exceptions=False)
    return result


def test_filters_select_exactly_what_they_say(kafka_bootstrap: str) -> None:
    source = unique_name("orders")
    dlq = create_topic(kafka_bootstrap, unique_name("dlq"), partitions=2)
    specs = varied_specs(source)
    produce_letters(kafka_bootstrap, dlq, specs[:20], partition=0)
    produce_letters(kafka_bootstrap, dlq, specs[20:], partition=1)
    where = {n: (0, n) if n < 20 else (1, n - 20) for n in range(40)}
    env = {"AEP_CONNECTOR_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap}

    cases: list[tuple[list[str], set[int]]] = [
        (["--stage", "api"], {n for n in range(40) if n % 4 in (0, 3)}),
        (["--stage", "map", "--stage", "decode"], {n for n in range(40) if n % 4 in (1, 2)}),
        (["--class", "mapping_failure"], {n for n in range(40) if n % 4 == 1}),
        (["--source-topic", "clicks"], {n for n in range(40) if n % 5 == 0}),
        (["--mapping", "orders"], {n for n in range(40) if n % 4 != 2 and n % 2}),
        (["--since", "2024-05-01T12:10:00Z"], set(range(10, 40))),
        (["--until", "2024-05-01T12:10:00Z"], set(range(10))),
        (
            ["--since", "2024-05-01T12:05:00", "--until", "2024-05-01T14:07:00+02:00"],
            set(range(5, 7)),
        ),
        (["--offsets", "1:3-5", "--offsets", "0:18-"], {23, 24, 25, 18, 19}),
        (["--offsets", "-1"], {0, 1, 20, 21}),
        (["--source-offsets", "2:-10"], {n for n in range(11) if n % 3 == 2}),
        (
            ["--stage", "api", "--source-topic", source, "--since", "2024-05-01T12:20:00Z"],
            {n for n in range(20, 40) if n % 4 in (0, 3) and n % 5},
        ),
    ]
    for filters, expected in cases:
        result = invoke("inspect", "--topic", dlq, "--show-payloads", "--json", *filters, env=env)
        assert result.exit_code == 0, result.output
        lines = [orjson.loads(line) for line in result.stdout.splitlines()]
        *payloads, summary = lines
        selected = {(p["partition"], p["offset"]) for p in payloads}
        assert selected == {where[n] for n in expected}, filters
        assert (summary["scanned"], summary["selected"]) == (40, len(expected))

    # The same filters drive a replay: exactly those records reach the target, nothing else.
    target = create_topic(kafka_bootstrap, unique_name("retry"), partitions=1)
    filters = ["--stage", "api", "--mapping", "orders", "--offsets", "0:5-", "--keep-timestamps"]
    expected = {n for n in range(5, 20) if n % 4 == 3}  # partition 0 holds letters 0..19
    result = invoke(
        "replay",
        "--topic",
        dlq,
        "--to-topic",
        target,
        "--group",
        unique_name("g"),
        *filters,
        env=env,
    )
    assert result.exit_code == 0, result.output
    produced = read_topic(kafka_bootstrap, target)
    assert sorted(m.key() for m in produced) == sorted(f"key-{n}".encode() for n in expected)
    for message in produced:
        n = int(message.key().decode().removeprefix("key-"))
        assert message.value() == f"value-{n}".encode()
        assert headers_of(message) == [("aep.replay.count", b"1")]
        assert message.timestamp()[1] == specs[n].source_timestamp_ms


def test_a_dry_run_produces_nothing_and_counts_what_the_replay_does(kafka_bootstrap: str) -> None:
    source = create_topic(kafka_bootstrap, unique_name("orders"), partitions=3)
    dlq = create_topic(kafka_bootstrap, unique_name("dlq"), partitions=1)
    specs = varied_specs(source)
    specs.append(Spec(source, 0, 99, b"k", b"v", original_headers=(("aep.replay.count", b"3"),)))
    produce_letters(kafka_bootstrap, dlq, specs)
    group = unique_name("g")
    env = dlq_env(kafka_bootstrap, dlq)

    args = ["replay", "--group", group, "--stage", "api", "--source-topic", source, "--json"]
    dry = dlq_command(*args, "--dry-run", env=env)
    assert dry.returncode == 1, dry.stderr  # the letter replayed 3 times is refused
    assert end_offsets(kafka_bootstrap, source) == {0: 0, 1: 0, 2: 0}
    assert committed_offsets(kafka_bootstrap, group, dlq) == {0: -1001}
    assert "would replay" in dry.stderr

    real = dlq_command(*args, env=env)
    assert real.returncode == 1, real.stderr
    dry_report, real_report = orjson.loads(dry.stdout), orjson.loads(real.stdout)
    assert dry_report | {"dry_run": False} == real_report
    assert real_report["refused_replay_limit"] == 1
    replayed = read_topic(kafka_bootstrap, source)
    assert len(replayed) == real_report["replayed"] == real_report["replayed_by_topic"][source]
    # Back to the original partitions.
    assert all(m.partition() == specs[int(m.key()[4:])].source_partition for m in replayed)


# ---------------------------------------------------------------------------- inspect


def test_inspect_hides_payloads_joins_no_group_and_commits_nothing(kafka_bootstrap: str) -> None:
    dlq = create_topic(kafka_bootstrap, unique_name("dlq"), partitions=1)
    specs = varied_specs("orders")[:8]
    produce_letters(kafka_bootstrap, dlq, specs)
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})

    def groups() -> set[str]:
        listing = admin.list_consumer_groups().result(timeout=30)
        return {g.group_id for g in listing.valid}

    before = groups()
    env = dlq_env(kafka_bootstrap, dlq)
    plain = dlq_command("inspect", env=env)
    assert plain.returncode == 0, plain.stderr
    assert "8 letters read, 8 selected (every letter)" in plain.stdout
    assert "by stage:        api 4, map 2, decode 2" in plain.stdout
    assert "value-" not in plain.stdout + plain.stderr
    assert "key-" not in plain.stdout + plain.stderr

    shown = dlq_command("inspect", "--show-payloads", "--limit", "3", env=env)
    assert shown.returncode == 0, shown.stderr
    payloads = [orjson.loads(line) for line in shown.stdout.splitlines() if line.startswith("{")]
    assert [p["value"] for p in payloads] == ["value-0", "value-1", "value-2"]
    assert groups() == before


def test_exit_statuses_for_a_missing_topic_and_bad_options(kafka_bootstrap: str) -> None:
    env = dlq_env(kafka_bootstrap, unique_name("missing"), AEP_CONNECTOR_KAFKA__GROUP_ID="w")
    missing = dlq_command("inspect", env=env)
    assert missing.returncode == 3
    assert "is not available" in missing.stderr
    shared = dlq_command("replay", "--group", "w", env=env)
    assert shared.returncode == 2
    assert "must differ from the worker's" in shared.stderr
    bad_filter = dlq_command("replay", "--offsets", "9-1", env=env)
    assert bad_filter.returncode == 2
    assert "ends before it starts" in bad_filter.stderr
    env["AEP_CONNECTOR_KAFKA__PROPERTIES"] = '{"no.such.property": "1"}'
    for command in ("inspect", "replay"):
        bad_property = dlq_command(command, env=env)
        assert bad_property.returncode == 2
        assert "no.such.property" in bad_property.stderr


def test_a_missing_target_topic_stops_the_replay_before_any_commit(kafka_bootstrap: str) -> None:
    dlq = create_topic(kafka_bootstrap, unique_name("dlq"), partitions=1)
    produce_letters(kafka_bootstrap, dlq, varied_specs("orders")[:4])
    group = unique_name("g")
    env = dlq_env(kafka_bootstrap, dlq)
    result = dlq_command("replay", "--group", group, "--to-topic", unique_name("nowhere"), env=env)
    assert result.returncode == 3
    assert "does not exist" in result.stderr
    assert committed_offsets(kafka_bootstrap, group, dlq) == {0: -1001}


def test_sigterm_stops_after_committing_what_was_replayed(kafka_bootstrap: str) -> None:
    source = create_topic(kafka_bootstrap, unique_name("orders"), partitions=3)
    dlq = create_topic(kafka_bootstrap, unique_name("dlq"), partitions=1)
    specs = [s for s in varied_specs(source) if s.source_topic == source]
    produce_letters(kafka_bootstrap, dlq, specs)
    group = unique_name("g")
    env = dlq_env(kafka_bootstrap, dlq)
    args = ["replay", "--group", group, "--json", "--batch-size", "100"]
    replay = subprocess.Popen(
        [sys.executable, "-m", "connector", "dlq", *args, "--max-rate", "10"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Inside its only transaction (all letters fit one batch) with records produced.
        wait_until(lambda: uncommitted_records_pending(kafka_bootstrap, source), 60, "records")
        replay.send_signal(signal.SIGTERM)
        stdout, stderr = replay.communicate(timeout=60)
    finally:
        if replay.poll() is None:
            replay.kill()
            replay.wait()
    assert replay.returncode == 4, stderr
    report = orjson.loads(stdout)
    assert report["interrupted"]
    assert 0 < report["read"] < len(specs)
    stopped_at = committed_offsets(kafka_bootstrap, group, dlq)[0]
    assert stopped_at == report["read"]  # what it replayed is committed, nothing more
    replayed_first = read_topic(kafka_bootstrap, source)
    assert len(replayed_first) == report["replayed"]
    assert len(read_topic(kafka_bootstrap, source, "read_uncommitted")) == len(replayed_first)

    resumed = dlq_command(*args, env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert orjson.loads(resumed.stdout)["read"] == len(specs) - stopped_at
    keys = sorted(m.key() for m in read_topic(kafka_bootstrap, source))
    assert keys == sorted(s.key for s in specs)
