"""Raw (non-XDM) payloads of HTTP API source dataflows, over HTTP.

The main emulator's connection "dataflow" is a dataflow inlet with two flows: FLOW_ID (target
dataset SEED_DATASET) and OTHER_FLOW_ID (no dataset configured). Other connections are not.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import orjson
import pytest

from tests.emulator.conftest import (
    FLOW_ID,
    HEADERS,
    OTHER_FLOW_ID,
    SEED_DATASET,
    envelope,
    event,
)
from tests.support.emulator import RunningEmulator

pytestmark = pytest.mark.integration

RAW = {"customerId": "c-1", "name": "Jane Doe", "visits": [{"page": "/home"}], "note": ""}
XACTION_ID = re.compile(r"^\d{13}:\d{4,}:1$")


def post_raw(
    http: httpx.Client,
    emulator: RunningEmulator,
    payload: Any,
    *,
    connection: str = "dataflow",
    flow_id: str | None = FLOW_ID,
    batch: bool = False,
    **params: str,
) -> httpx.Response:
    headers = dict(HEADERS)
    if flow_id is not None:
        headers["x-adobe-flow-id"] = flow_id
    url = emulator.batch_url(connection) if batch else emulator.collection_url(connection)
    return http.post(url, content=orjson.dumps(payload), headers=headers, params=params)


def listed(http: httpx.Client, emulator: RunningEmulator, **params: str) -> list[Any]:
    """GET /__emulator/messages with filters (the helper knows connection and dataset only)."""
    response = http.get(f"{emulator.url}/__emulator/messages", params=params)
    assert response.status_code == 200
    return [orjson.loads(line) for line in response.content.splitlines()]


def test_a_raw_payload_with_its_flow_id_is_accepted_and_stored_as_sent(
    http: httpx.Client, emulator: RunningEmulator
) -> None:
    response = post_raw(http, emulator, RAW)
    assert response.status_code == 200
    answer = response.json()
    assert set(answer) == {"inletId", "xactionId", "receivedTimeMs", "syncValidation"}
    assert answer["inletId"] == "dataflow"
    assert XACTION_ID.match(answer["xactionId"])
    assert answer["syncValidation"] == {"skipped": True}

    (stored,) = emulator.messages()
    assert stored == {
        "connectionId": "dataflow",
        "xactionId": answer["xactionId"],
        "receivedTimeMs": int(answer["receivedTimeMs"]),
        "datasetId": SEED_DATASET,  # the flow's target dataset
        "message": RAW,  # as sent: no envelope, and empty values are Data Prep's business
        "flowId": FLOW_ID,
        "raw": True,
    }
    stats = emulator.stats()
    assert stats["messages_accepted"] == 1
    assert stats["accepted_by_flow"] == {FLOW_ID: 1}
    assert stats["accepted_by_dataset"] == {SEED_DATASET: 1}
    record = emulator.config_file.parent / "accepted.jsonl"
    assert orjson.loads(record.read_bytes().splitlines()[-1])["flowId"] == FLOW_ID


def test_stored_raw_payloads_can_be_listed_by_flow(
    http: httpx.Client, emulator: RunningEmulator
) -> None:
    assert post_raw(http, emulator, {"a": 1}).status_code == 200
    assert post_raw(http, emulator, {"b": 2}, flow_id=OTHER_FLOW_ID).status_code == 200
    assert (
        post_raw(http, emulator, event("xdm"), connection="open", flow_id=None).status_code == 200
    )

    other = listed(http, emulator, flow=OTHER_FLOW_ID)
    assert [(m["message"], m["datasetId"]) for m in other] == [({"b": 2}, None)]
    assert [m["message"] for m in listed(http, emulator, flow=FLOW_ID)] == [{"a": 1}]
    assert [m["message"] for m in listed(http, emulator, dataset=SEED_DATASET)] == [
        {"a": 1},
        event("xdm"),
    ]
    everything = emulator.messages()
    assert ["raw" in m for m in everything] == [True, True, False]


def test_a_raw_payload_without_a_flow_id_is_refused_on_a_dataflow_inlet(
    http: httpx.Client, emulator: RunningEmulator
) -> None:
    response = post_raw(http, emulator, RAW, flow_id=None)
    assert response.status_code == 400
    assert response.json()["message"] == (
        "header x-adobe-flow-id: required but missing: connection 'dataflow' is a dataflow "
        "inlet and the body is not an XDM message (a raw payload needs the id of its dataflow)"
    )
    assert emulator.messages() == []


@pytest.mark.parametrize("batch", [False, True])
def test_an_unknown_flow_id_is_refused(
    http: httpx.Client, emulator: RunningEmulator, batch: bool
) -> None:
    body = {"messages": [event("a")]} if batch else RAW
    response = post_raw(http, emulator, body, flow_id="no-such-flow", batch=batch)
    assert response.status_code == 400
    assert response.json()["message"] == (
        "header x-adobe-flow-id: unknown flow 'no-such-flow' for connection 'dataflow' "
        f"(known: {OTHER_FLOW_ID}, {FLOW_ID})"
    )
    assert emulator.stats()["bytes_received"] == 0  # refused before the body was read


@pytest.mark.parametrize("connection", ["open", "any-inlet"])
def test_raw_payloads_are_still_rejected_elsewhere(
    http: httpx.Client,
    emulator: RunningEmulator,
    default_emulator: RunningEmulator,
    connection: str,
) -> None:
    target = emulator if connection == "open" else default_emulator
    response = post_raw(http, target, RAW, connection=connection)  # flow id header and all
    assert response.status_code == 400
    assert response.json()["message"] == (
        "header: required but missing; body: required but missing"
    )
    assert target.messages() == []


def test_xdm_messages_on_a_dataflow_inlet_name_one_of_its_flows(
    http: httpx.Client, emulator: RunningEmulator
) -> None:
    without = post_raw(http, emulator, event("a"), flow_id=None)
    assert without.status_code == 400
    assert without.json()["message"] == "header.flowId: required but missing"

    unknown = event("b")
    unknown["header"]["flowId"] = "elsewhere"
    refused = post_raw(http, emulator, unknown, flow_id=None)
    assert refused.json()["message"].startswith('header.flowId: unknown flow "elsewhere"')

    known = event("c")
    known["header"]["flowId"] = FLOW_ID
    assert post_raw(http, emulator, known, flow_id=None).status_code == 200
    (stored,) = emulator.messages()
    assert stored["message"] == known
    assert "raw" not in stored


def test_the_batch_endpoint_of_a_dataflow_inlet_takes_xdm_messages_only(
    http: httpx.Client, emulator: RunningEmulator
) -> None:
    xdm = event("x")
    xdm["header"]["flowId"] = FLOW_ID
    response = post_raw(http, emulator, {"messages": [xdm, RAW]}, batch=True)
    assert response.status_code == 207
    entries = response.json()["responses"]
    assert "xactionId" in entries[0]
    assert entries[1]["statusCode"] == 400
    assert entries[1]["message"].startswith("messages[1].header: required but missing")


def test_a_raw_payload_must_be_an_object(http: httpx.Client, emulator: RunningEmulator) -> None:
    response = post_raw(http, emulator, [RAW])
    assert response.status_code == 400
    assert response.json()["message"] == "body: a raw payload must be a JSON object, got an array"


def test_reject_rules_point_into_the_raw_payload(
    http: httpx.Client, emulator: RunningEmulator
) -> None:
    emulator.set_reject([{"pointer": "/customerId", "equals": "c-1", "status": 422}])
    response = post_raw(http, emulator, RAW)
    assert response.status_code == 422
    assert (
        response.json()["message"]
        == '(message): rejected by reject rule 0: /customerId equals "c-1"'
    )
    assert post_raw(http, emulator, {**RAW, "customerId": "c-2"}).status_code == 200
    assert emulator.stats()["messages_rejected"] == 1


def test_sync_validation_of_a_raw_payload_passes_its_checks(
    http: httpx.Client, emulator: RunningEmulator
) -> None:
    response = post_raw(http, emulator, RAW, syncValidation="true")
    assert response.status_code == 200
    assert response.json()["syncValidation"] == {"status": "pass"}


def test_an_envelope_sent_with_a_flow_id_is_taken_as_a_raw_payload(
    http: httpx.Client, emulator: RunningEmulator
) -> None:
    """The header says what the body is: the dataflow's mapping will read it as raw data."""
    message = envelope({"_id": "e"})
    assert post_raw(http, emulator, message).status_code == 200
    (stored,) = emulator.messages()
    assert (stored["raw"], stored["message"]) == (True, message)
