"""The collection endpoints over HTTP, against emulator processes on loopback ports."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from tests.emulator.conftest import (
    HEADERS,
    ORG,
    OTHER_DATASET,
    PROFILE_SCHEMA_ID,
    envelope,
    event,
    seed_batch,
    seed_single,
)
from tests.support.emulator import RunningEmulator

pytestmark = pytest.mark.integration

XACTION_ID = re.compile(r"^\d{13}:\d{4,}:1$")
BATCH_ID = re.compile(r"^\d{13}:\d{4,}:(\d+)$")
LIMIT = 1_048_576


def post_batch(
    http: httpx.Client, emulator: RunningEmulator, connection: str, messages: list[Any]
) -> httpx.Response:
    return http.post(
        emulator.batch_url(connection),
        content=orjson.dumps({"messages": messages}),
        headers=HEADERS,
    )


def post_one(
    http: httpx.Client, emulator: RunningEmulator, connection: str, message: Any, **params: str
) -> httpx.Response:
    return http.post(
        emulator.collection_url(connection),
        content=orjson.dumps(message),
        headers=HEADERS,
        params=params,
    )


# --- success shapes, and the API reference's own examples --------------------------------------


def test_the_seed_single_example_is_accepted_as_printed(
    http: httpx.Client, default_emulator: RunningEmulator
) -> None:
    response = post_one(http, default_emulator, "any-inlet", seed_single())
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"inletId", "xactionId", "receivedTimeMs", "syncValidation"}
    assert body["inletId"] == "any-inlet"
    assert XACTION_ID.match(body["xactionId"])
    assert body["receivedTimeMs"].isdigit()  # a string, as in the reference's example answer
    assert body["syncValidation"] == {"skipped": True}
    assert [m["message"] for m in default_emulator.messages()] == [seed_single()]


def test_the_seed_batch_example_is_accepted_as_printed(
    http: httpx.Client, default_emulator: RunningEmulator
) -> None:
    response = post_batch(http, default_emulator, "another-inlet", seed_batch()["messages"])
    assert response.status_code == 207
    body = response.json()
    assert set(body) == {"inletId", "batchId", "receivedTimeMs", "responses"}
    assert body["inletId"] == "another-inlet"
    assert BATCH_ID.match(body["batchId"])
    assert isinstance(body["receivedTimeMs"], int)
    assert body["responses"] == [{"xactionId": f"{body['batchId']}:0"}]


def test_the_seed_examples_pass_the_org_check_too(
    http: httpx.Client, emulator: RunningEmulator
) -> None:
    assert post_one(http, emulator, "open", seed_single()).status_code == 200
    response = post_batch(http, emulator, "datasets", seed_batch()["messages"])
    assert "xactionId" in response.json()["responses"][0]
    assert emulator.stats()["messages_accepted"] == 2


def test_every_batch_entry_answers_its_message_in_order(
    http: httpx.Client, emulator: RunningEmulator
) -> None:
    messages = [
        event("a"),
        envelope(org="someone-else@AdobeOrg"),
        event("b"),
        event("c", nested={"gone": None}),
        "not an object",
        event("reject-me"),  # the configured reject rule
    ]
    body = post_batch(http, emulator, "open", messages).json()
    batch_id = body["batchId"]
    assert BATCH_ID.match(batch_id).group(1) == "6"  # type: ignore[union-attr]
    assert body["responses"] == [
        {"xactionId": f"{batch_id}:0"},
        {
            "statusCode": 400,
            "message": f'messages[1].header.imsOrgId: expected "{ORG}", '
            f'got "someone-else@AdobeOrg"',
        },
        {"xactionId": f"{batch_id}:2"},
        {
            "statusCode": 400,
            "message": "messages[3].body.xdmEntity.nested.gone: null is not allowed in XDM; "
            "leave the key out instead",
        },
        {"statusCode": 400, "message": "messages[4]: expected an object, got a string"},
        {
            "statusCode": 400,
            "message": "messages[5]: rejected by reject rule 0: "
            '/body/xdmEntity/_id equals "reject-me"',
        },
    ]
    stats = emulator.stats()
    assert (stats["messages_accepted"], stats["messages_rejected"]) == (2, 4)
    assert [m["xactionId"] for m in emulator.messages()] == [f"{batch_id}:0", f"{batch_id}:2"]


def test_rejection_shape_status(http: httpx.Client, status_emulator: RunningEmulator) -> None:
    body = post_batch(http, status_emulator, "c", [event("ok"), {"header": {}}]).json()
    assert body["responses"][0] == {"xactionId": f"{body['batchId']}:0"}
    rejected = body["responses"][1]
    assert set(rejected) == {"status", "message"}
    assert rejected["status"] == 400
    assert rejected["message"].startswith("messages[1].header.schemaRef: required but missing")


def test_rejection_shape_status_with_xaction(
    http: httpx.Client, xaction_emulator: RunningEmulator
) -> None:
    body = post_batch(http, xaction_emulator, "c", [{"body": {}}, event("ok")]).json()
    assert body["responses"][0] == {
        "xactionId": f"{body['batchId']}:0",
        "status": 400,
        "message": body["responses"][0]["message"],
    }
    assert body["responses"][0]["message"].startswith("messages[0].header: required but missing")
    assert body["responses"][1] == {"xactionId": f"{body['batchId']}:1"}
    assert len(xaction_emulator.messages()) == 1


# --- request checks ------------------------------------------------------------------------------


def exact_size_batch(size: int) -> bytes:
    """A one-message batch padded to exactly `size` bytes."""
    message = event("big", padding="")
    empty = len(orjson.dumps({"messages": [message]}))
    message["body"]["xdmEntity"]["padding"] = "x" * (size - empty)
    body = orjson.dumps({"messages": [message]})
    assert len(body) == size
    return body


def test_a_body_of_exactly_the_limit_is_accepted_and_one_byte_more_is_413(
    http: httpx.Client, emulator: RunningEmulator
) -> None:
    at_limit = http.post(
        emulator.batch_url("open"), content=exact_size_batch(LIMIT), headers=HEADERS
    )
    assert at_limit.status_code == 207
    assert "xactionId" in at_limit.json()["responses"][0]
    over = http.post(
        emulator.batch_url("open"), content=exact_size_batch(LIMIT + 1), headers=HEADERS
    )
    assert over.status_code == 413
    assert over.json()["message"] == "body: larger than the limit of 1048576 bytes"
    assert emulator.stats()["messages_accepted"] == 1


def test_a_chunked_body_over_the_limit_is_413_too(
    http: httpx.Client, emulator: RunningEmulator
) -> None:
    body = exact_size_batch(LIMIT + 1)

    def chunks() -> Iterator[bytes]:  # no Content-Length: the server counts while reading
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    response = http.post(emulator.batch_url("open"), content=chunks(), headers=HEADERS)
    assert response.status_code == 413
    chunked_ok = http.post(
        emulator.batch_url("open"), content=iter([exact_size_batch(LIMIT)]), headers=HEADERS
    )
    assert chunked_ok.status_code == 207


@pytest.mark.parametrize("endpoint", ["single", "batch"])
def test_malformed_json_is_400(
    http: httpx.Client, emulator: RunningEmulator, endpoint: str
) -> None:
    url = emulator.batch_url("open") if endpoint == "batch" else emulator.collection_url("open")
    response = http.post(url, content=b'{"messages": [', headers=HEADERS)
    assert response.status_code == 400
    assert response.json()["message"].startswith("body: not valid JSON")


@pytest.mark.parametrize(
    ("content_type", "fragment"),
    [
        ("text/plain", "expected application/json, got 'text/plain'"),
        ("application/x-jackson-smile", "no Smile codec"),
        (None, "expected application/json"),
    ],
)
def test_other_content_types_are_415(
    http: httpx.Client, emulator: RunningEmulator, content_type: str | None, fragment: str
) -> None:
    headers = {"x-sandbox-name": "prod"}
    if content_type:
        headers["Content-Type"] = content_type
    response = http.post(
        emulator.batch_url("open"),
        content=orjson.dumps({"messages": [event("a")]}),
        headers=headers,
    )
    assert response.status_code == 415
    assert fragment in response.json()["message"]


def test_a_charset_parameter_is_still_json(http: httpx.Client, emulator: RunningEmulator) -> None:
    headers = {**HEADERS, "Content-Type": "application/json; charset=utf-8"}
    response = http.post(
        emulator.collection_url("open"), content=orjson.dumps(event("a")), headers=headers
    )
    assert response.status_code == 200


def test_a_missing_sandbox_header_is_400_unless_configured_optional(
    http: httpx.Client, emulator: RunningEmulator, xaction_emulator: RunningEmulator
) -> None:
    body = orjson.dumps({"messages": [event("a")]})
    headers = {"Content-Type": "application/json"}
    response = http.post(emulator.batch_url("open"), content=body, headers=headers)
    assert response.status_code == 400
    assert response.json()["message"] == "header x-sandbox-name: required but missing"
    assert (
        http.post(xaction_emulator.batch_url("c"), content=body, headers=headers).status_code == 207
    )


def test_an_unknown_connection_is_404_when_connections_are_configured(
    http: httpx.Client, emulator: RunningEmulator
) -> None:
    response = post_batch(http, emulator, "nope", [event("a")])
    assert response.status_code == 404
    message = response.json()["message"]
    assert message.startswith("connection id 'nope' is not known (configured: ")
    assert "open" in message


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"records": []}, 'body.messages: required but missing ({"messages": [...]})'),
        ([event("a")], 'body.messages: required but missing ({"messages": [...]})'),
        ({"messages": {"0": event("a")}}, "body.messages: expected an array"),
        ({"messages": []}, "body.messages: empty; send at least one message"),
    ],
)
def test_a_batch_without_a_messages_list_is_400(
    http: httpx.Client, emulator: RunningEmulator, body: Any, message: str
) -> None:
    response = http.post(emulator.batch_url("open"), content=orjson.dumps(body), headers=HEADERS)
    assert response.status_code == 400
    assert response.json()["message"] == message


def test_a_bad_envelope_on_the_single_endpoint_is_400(
    http: httpx.Client, emulator: RunningEmulator
) -> None:
    message = event("a")
    del message["header"]["datasetId"]
    response = post_one(http, emulator, "open", message)
    assert response.status_code == 400
    assert response.json() == {
        "status": 400,
        "title": "Bad Request",
        "message": "header.datasetId: required but missing",
    }
    rejected = post_one(http, emulator, "open", event("reject-me"))
    assert rejected.status_code == 400
    assert "reject rule 0" in rejected.json()["message"]
    assert emulator.stats()["messages_rejected"] == 2


# --- per-connection envelope rules ---------------------------------------------------------------


def test_connection_datasets_and_flow_id(http: httpx.Client, emulator: RunningEmulator) -> None:
    body = post_batch(
        http,
        emulator,
        "datasets",
        [event("a"), envelope(dataset=OTHER_DATASET), envelope(dataset="x")],
    ).json()
    assert [("xactionId" in r) for r in body["responses"]] == [True, True, False]
    assert body["responses"][2]["message"].startswith(
        'messages[2].header.datasetId: unknown dataset "x" for this connection'
    )
    flow = post_batch(
        http, emulator, "flow", [event("no-flow"), seed_batch()["messages"][0]]
    ).json()
    assert flow["responses"][0]["message"] == "messages[0].header.flowId: required but missing"
    assert "xactionId" in flow["responses"][1]


def test_strict_mode_requires_schema_ref_id(
    http: httpx.Client, status_emulator: RunningEmulator
) -> None:
    body = post_batch(http, status_emulator, "c", [seed_single(), event("has-id")]).json()
    assert body["responses"][0]["message"] == (
        "messages[0].header.schemaRef.id: required (strict mode) but missing"
    )
    assert "xactionId" in body["responses"][1]


def test_entities_are_validated_against_the_configured_schema(
    http: httpx.Client, emulator: RunningEmulator
) -> None:
    good = envelope({"person": {"birthDate": "1969-03-14"}}, schema_id=PROFILE_SCHEMA_ID)
    bad = envelope({"person": {"birthDate": 1969}}, schema_id=PROFILE_SCHEMA_ID)
    body = post_batch(http, emulator, "open", [good, bad]).json()
    assert "xactionId" in body["responses"][0]
    assert body["responses"][1]["message"] == (
        "messages[1].body.xdmEntity.person.birthDate: 1969 is not of type 'string'"
    )


# --- synchronous validation ---------------------------------------------------------------------


def test_sync_validation_passes_or_lists_violations(
    http: httpx.Client, emulator: RunningEmulator
) -> None:
    good = envelope({"person": {"gender": "female"}}, schema_id=PROFILE_SCHEMA_ID)
    passed = post_one(http, emulator, "open", good, syncValidation="true")
    assert passed.status_code == 200
    assert passed.json()["syncValidation"] == {"status": "pass"}

    bad = envelope({"workEmail": {"primary": None}}, schema_id=PROFILE_SCHEMA_ID)
    failed = post_one(http, emulator, "open", bad, syncValidation="true")
    assert failed.status_code == 400
    violations = failed.json()["report"]["cause"]["_streamingValidation"]
    assert sorted((v["pointerToViolation"], v["keyword"]) for v in violations) == [
        ("#/body/xdmEntity", "required"),
        ("#/body/xdmEntity/workEmail", "required"),
        ("#/body/xdmEntity/workEmail/primary", "null"),
        ("#/body/xdmEntity/workEmail/primary", "type"),
    ]
    messages = {v["message"] for v in violations}
    assert "#/body/xdmEntity: 'person' is a required property" in messages


def test_sync_validation_is_not_for_batches(http: httpx.Client, emulator: RunningEmulator) -> None:
    response = http.post(
        emulator.batch_url("open"),
        content=orjson.dumps({"messages": [event("a")]}),
        headers=HEADERS,
        params={"syncValidation": "true"},
    )
    assert response.status_code == 400
    assert response.json()["message"] == "query syncValidation: not supported on the batch endpoint"


def test_sync_validation_is_501_where_unsupported(
    http: httpx.Client, status_emulator: RunningEmulator
) -> None:
    response = post_one(http, status_emulator, "c", event("a"), syncValidation="true")
    assert response.status_code == 501
    assert "not supported in this region" in response.json()["message"]
    assert post_one(http, status_emulator, "c", event("a")).status_code == 200


def test_sync_validation_has_its_own_per_minute_limit(
    http: httpx.Client, emulator: RunningEmulator
) -> None:
    statuses = [
        post_one(http, emulator, "open", event(str(i)), syncValidation="true").status_code
        for i in range(4)
    ]
    assert statuses == [200, 200, 200, 429]  # sync_validation_per_min: 3 in this config
    assert post_one(http, emulator, "open", event("plain")).status_code == 200
    emulator.advance_clock(20)  # one minute / 3
    assert post_one(http, emulator, "open", event("4"), syncValidation="true").status_code == 200
