"""The quick start (`make demo` → scripts/demo) end to end, run twice as a user would.

The demo runs as a subprocess on the test session's broker and registry (passed through
KAFKA_BOOTSTRAP_SERVERS / SCHEMA_REGISTRY_URL, so it starts no second broker). Its summary is
checked against what the test reads itself: the source topics, the dead-letter topic, the
emulator's record file and the group's committed offsets. The second run proves reruns work:
the topics hold only that run's records and everything adds up again.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.support.kafka import committed_offsets, consume_all, end_offsets

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO = REPO_ROOT / "scripts" / "demo"
RECORDS = 400
API_LIMIT = 1_048_576

#: The poison records the demo promises, by key: the dead-letter stage and error class.
POISON = {
    b"poison-invalid-json": ("decode", "invalid_json"),
    b"poison-too-large": ("validate", "too_large"),
    b"poison-bad-birthdate": ("map", "mapping_failure"),
    b"poison-tombstone": ("decode", "tombstone"),
    b"poison-rejected-by-api": ("api", "api_rejected"),
}


def run_demo(
    bootstrap: str, registry: str, state_dir: Path, summary_file: Path
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AEP_CONNECTOR_")}
    env |= {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "SCHEMA_REGISTRY_URL": registry}
    command = [sys.executable, str(DEMO), "--records", str(RECORDS)]
    command += ["--state-dir", str(state_dir), "--json-summary", str(summary_file)]
    result = subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, f"demo failed:\n{result.stdout}\n{result.stderr}"
    return result, orjson.loads(summary_file.read_bytes())


def expected_outcome(message: Any) -> str:
    """What the connector must do with one source record, judged from its bytes alone."""
    key, value = message.key(), message.value()
    if key in POISON:
        return "/".join(POISON[key])
    assert value is not None, f"unexpected tombstone {key!r}"
    assert len(value) < API_LIMIT, f"unexpected oversized record {key!r}"
    record = orjson.loads(value)
    return "filtered" if record.get("eventType") == "heartbeat" else "accepted"


def check_run(bootstrap: str, state_dir: Path, summary: dict[str, Any], stdout: str) -> None:
    assert summary["ok"], summary["problems"]
    assert summary["worker_exit_status"] == 0
    produced: dict[str, int] = summary["produced"]
    assert summary["produced_total"] == RECORDS + len(POISON) == sum(produced.values())
    assert set(produced) == {"web.commerce", "crm.profiles"}

    # The topics hold exactly this run's records (recreated), each judged independently.
    outcomes: Counter[str] = Counter()
    accepted_positions: set[str] = set()
    accepted_customers: set[str] = set()
    for topic, count in produced.items():
        assert sum(end_offsets(bootstrap, topic).values()) == count
        messages: list[Any] = consume_all(bootstrap, topic, count, timeout_s=30)
        assert len(messages) == count
        for message in messages:
            outcome = expected_outcome(message)
            outcomes[outcome] += 1
            if outcome == "accepted" and topic == "web.commerce":
                accepted_positions.add(f"{topic}/{message.partition()}/{message.offset()}")
            elif outcome == "accepted":
                accepted_customers.add(orjson.loads(message.value())["customerId"])

    assert summary["accepted"] == outcomes["accepted"]
    assert summary["filtered"] == outcomes["filtered"] > 0
    assert summary["dead_lettered"] == len(POISON)
    assert summary["accepted"] + summary["dead_lettered"] + summary["filtered"] == sum(
        produced.values()
    )

    # What the emulator accepted: each expected record once, nothing else.
    lines = [orjson.loads(line) for line in Path(summary["record_file"]).read_bytes().splitlines()]
    assert len(lines) == summary["accepted"]
    entities = [line["message"]["body"]["xdmEntity"] for line in lines]
    web = [e["_acme"]["kafkaPosition"] for e in entities if "kafkaPosition" in e.get("_acme", {})]
    crm = [e["_acme"]["customerId"] for e in entities if "customerId" in e.get("_acme", {})]
    assert len(web) + len(crm) == len(lines)
    assert sorted(web) == sorted(accepted_positions)
    assert sorted(crm) == sorted(accepted_customers)

    # The dead-letter topic: every poison record, with the reason in its headers.
    letters: list[Any] = consume_all(
        bootstrap, summary["dead_letter_topic"], len(POISON), timeout_s=30
    )
    reasons = {}
    for message in letters:
        headers = dict(message.headers())
        reasons[message.key()] = (
            headers["aep.dlq.stage"].decode(),
            headers["aep.dlq.error.class"].decode(),
        )
    assert reasons == POISON
    assert {(d["stage"], d["reason"]) for d in summary["dead_letters"]} == set(POISON.values())

    # The group committed every partition to its end.
    for topic in produced:
        ends = end_offsets(bootstrap, topic)
        assert committed_offsets(bootstrap, summary["group"], topic) == ends
        assert summary["committed"][topic] == {str(p): o for p, o in ends.items()}

    # The printed summary says the same, and how to look at what the emulator received.
    assert "aep-connector demo: summary" in stdout
    assert f"filtered = all {summary['produced_total']:,} produced\n" in stdout
    for stage, reason in POISON.values():
        assert f"{stage}/{reason}" in stdout
    assert f"head -n 2 {summary['record_file']}" in stdout
    assert "demo: stopped everything it started" in stdout

    # It stopped what it started: the emulator is gone.
    assert not (state_dir / "emulator.json").exists()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{summary['emulator_url']}/__emulator/health", timeout=2)


def test_demo_runs_end_to_end_and_reruns(
    kafka_bootstrap: str, schema_registry_url: str, tmp_path: Path
) -> None:
    state_dir = tmp_path / "demo"
    groups = []
    for run in ("first", "second"):
        result, summary = run_demo(
            kafka_bootstrap, schema_registry_url, state_dir, tmp_path / f"{run}.json"
        )
        check_run(kafka_bootstrap, state_dir, summary, result.stdout)
        groups.append(summary["group"])
        # Quiet (issue 14): no raw client log lines (librdkafka's "%4|...|GETPID|...") and no
        # Python warnings; only the demo's own lines and the summary.
        printed = result.stdout + result.stderr
        assert not re.search(r"^%\d\|", printed, re.MULTILINE), printed
        assert "Warning" not in printed, printed
    assert groups[0] != groups[1]
