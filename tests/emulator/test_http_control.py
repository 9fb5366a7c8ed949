"""The control and inspection API under /__emulator/, and the test helper itself."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.emulator.conftest import HEADERS, OTHER_DATASET, SEED_DATASET, envelope, event
from tests.support.emulator import EmulatorStartError, RunningEmulator, start_emulator

pytestmark = pytest.mark.integration


def post_batch(
    http: httpx.Client, emulator: RunningEmulator, connection: str, messages: list[Any]
) -> tuple[httpx.Response, int]:
    body = orjson.dumps({"messages": messages})
    response = http.post(emulator.batch_url(connection), content=body, headers=HEADERS)
    return response, len(body)


def test_messages_are_served_as_received_and_filterable(
    http: httpx.Client, emulator: RunningEmulator
) -> None:
    first = [event("a1"), envelope(dataset=OTHER_DATASET), event("reject-me")]
    response, _ = post_batch(http, emulator, "open", first)
    entries = response.json()["responses"]
    post_batch(http, emulator, "datasets", [event("b1")])

    everything = emulator.messages()
    assert [m["connectionId"] for m in everything] == ["open", "open", "datasets"]
    assert everything[0]["message"] == first[0]
    assert everything[1]["message"] == first[1]
    assert [m["xactionId"] for m in everything[:2]] == [e["xactionId"] for e in entries[:2]]
    assert set(everything[0]) == {
        "connectionId",
        "xactionId",
        "receivedTimeMs",
        "datasetId",
        "message",
    }
    assert [m["datasetId"] for m in emulator.messages(connection="open")] == [
        SEED_DATASET,
        OTHER_DATASET,
    ]
    by_dataset = emulator.messages(dataset=SEED_DATASET)
    assert [m["message"]["body"]["xdmEntity"]["_id"] for m in by_dataset] == ["a1", "b1"]
    assert emulator.messages(connection="datasets", dataset=OTHER_DATASET) == []


def test_a_large_message_listing_streams_completely(
    http: httpx.Client, emulator: RunningEmulator
) -> None:
    padding = "p" * 900
    for batch in range(3):
        messages = [event(f"{batch}-{i}", padding=padding) for i in range(200)]
        assert post_batch(http, emulator, "open", messages)[0].status_code == 207
    listed = emulator.messages()
    assert len(listed) == 600
    assert listed[-1]["message"]["body"]["xdmEntity"]["_id"] == "2-199"


def test_stats_count_requests_messages_and_bytes(
    http: httpx.Client, emulator: RunningEmulator
) -> None:
    _, size_1 = post_batch(http, emulator, "open", [event("a"), {"header": {}}])
    _, size_2 = post_batch(http, emulator, "datasets", [envelope(dataset=OTHER_DATASET)])
    post_batch(http, emulator, "nope", [event("a")])
    stats = emulator.stats()
    assert stats["requests_by_status"] == {"207": 2, "404": 1}
    assert stats["requests_total"] == 3
    assert (stats["messages_accepted"], stats["messages_rejected"]) == (2, 1)
    assert stats["bytes_received"] == size_1 + size_2  # the 404 was refused before reading
    assert stats["accepted_by_connection"] == {"open": 1, "datasets": 1}
    assert stats["accepted_by_dataset"] == {SEED_DATASET: 1, OTHER_DATASET: 1}
    assert stats["messages_stored"] == 2
    assert stats["bytes_stored"] == size_1 + size_2


def test_the_store_is_bounded_by_bytes_as_well_as_messages(
    http: httpx.Client, tmp_path: Path
) -> None:
    padding = "p" * 2_000
    bodies = [orjson.dumps({"messages": [event(f"m{i}", padding=padding)]}) for i in range(4)]
    size = len(bodies[0])
    config = {"max_stored_bytes": 2 * size + 100, "max_stored_messages": 1_000}
    with start_emulator(config, tmp_path) as emulator:
        for body in bodies:
            response = http.post(emulator.batch_url("c"), content=body, headers=HEADERS)
            assert response.status_code == 207
        stats = emulator.stats()
        assert (stats["messages_accepted"], stats["messages_stored"]) == (4, 2)
        assert (stats["bytes_stored"], stats["messages_evicted"]) == (2 * size, 2)
        kept = [m["message"]["body"]["xdmEntity"]["_id"] for m in emulator.messages()]
        assert kept == ["m2", "m3"]

        big = orjson.dumps({"messages": [event("big", padding="b" * 3 * size)]})
        assert http.post(emulator.batch_url("c"), content=big, headers=HEADERS).status_code == 207
        stats = emulator.stats()
        assert (stats["messages_stored"], stats["bytes_stored"]) == (0, 0)  # too big to keep
        assert stats["messages_accepted"] == 5


def test_reset_forgets_messages_and_counters(http: httpx.Client, emulator: RunningEmulator) -> None:
    post_batch(http, emulator, "open", [event("a")])
    emulator.set_faults({"p503": 1})
    emulator.reset()
    assert emulator.messages() == []
    stats = emulator.stats()
    assert (stats["requests_total"], stats["messages_accepted"], stats["bytes_received"]) == (
        0,
        0,
        0,
    )
    assert post_batch(http, emulator, "open", [event("a")])[0].status_code == 207


def test_reject_rules_change_at_run_time(http: httpx.Client, emulator: RunningEmulator) -> None:
    configured = http.get(f"{emulator.url}/__emulator/reject").json()
    assert [rule["equals"] for rule in configured] == ["reject-me"]

    emulator.set_reject(
        [{"pointer": "/body/xdmEntity/tier", "equals": 3, "status": 422, "message": "tier 3"}]
    )
    messages = [event("a", tier=3), event("reject-me"), event("b", tier=2)]
    entries = post_batch(http, emulator, "open", messages)[0].json()["responses"]
    assert entries[0] == {"statusCode": 422, "message": "messages[0]: tier 3"}
    assert [("xactionId" in e) for e in entries] == [False, True, True]  # replaced, not added

    emulator.clear_reject()
    entries = post_batch(http, emulator, "open", messages)[0].json()["responses"]
    assert all("xactionId" in e for e in entries)

    emulator.reset()  # back to the configuration's rule
    entries = post_batch(http, emulator, "open", messages)[0].json()["responses"]
    assert [("xactionId" in e) for e in entries] == [True, False, True]


@pytest.mark.parametrize(
    ("path", "body", "fragment"),
    [
        ("reject", b'[{"pointer": "no-slash", "equals": 1}]', "0.pointer: String should match"),
        ("reject", b'{"pointer": "/a", "equals": 1}', "Input should be a valid list"),
        ("reject", b'[{"pointer": "/a"}]', "0.equals: Field required"),
        ("clock", b'{"advance_s": -1}', "body.advance_s: expected a number of seconds >= 0"),
        ("clock", b'{"advance": 1}', "body.advance_s"),
    ],
)
def test_invalid_control_requests_are_400(
    http: httpx.Client, emulator: RunningEmulator, path: str, body: bytes, fragment: str
) -> None:
    response = http.post(f"{emulator.url}/__emulator/{path}", content=body)
    assert response.status_code == 400
    assert fragment in response.json()["message"]


def test_an_unknown_messages_filter_is_400(http: httpx.Client, emulator: RunningEmulator) -> None:
    response = http.get(f"{emulator.url}/__emulator/messages", params={"inlet": "x"})
    assert response.status_code == 400
    assert response.json()["message"] == "query: unknown parameter(s) inlet"


def test_the_clock_only_moves_forward(emulator: RunningEmulator) -> None:
    before = emulator.stats()["clock_offset_s"]
    emulator.advance_clock(2.5)
    assert emulator.stats()["clock_offset_s"] == before + 2.5


def test_accepted_messages_are_appended_to_the_record_file(
    http: httpx.Client, emulator: RunningEmulator
) -> None:
    record = emulator.config_file.parent / "accepted.jsonl"
    before = record.read_bytes().splitlines()
    entries = post_batch(http, emulator, "open", [event("r1"), {"bad": 1}, event("r2")])[0].json()
    after = record.read_bytes().splitlines()
    added = [orjson.loads(line) for line in after[len(before) :]]
    assert [line["xactionId"] for line in added] == [
        entries["responses"][0]["xactionId"],
        entries["responses"][2]["xactionId"],
    ]
    assert added[1]["message"] == event("r2")


def test_the_helper_reports_an_emulator_that_cannot_start(tmp_path: Path) -> None:
    with (
        pytest.raises(
            EmulatorStartError, match=re.escape("connections.c1.authentcation: unknown key")
        ),
        start_emulator({"connections": {"c1": {"authentcation": True}}}, tmp_path),
    ):
        pass


def test_the_helper_stops_the_process_on_exit(tmp_path: Path) -> None:
    with start_emulator(None, tmp_path) as emulator:
        assert "listening on http://127.0.0.1:" in emulator.output()
        process = emulator.process
    assert process.poll() is not None
