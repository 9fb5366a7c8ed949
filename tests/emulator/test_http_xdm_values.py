"""XDM values over HTTP: nulls and empty values are violations, at any nesting depth.

orjson, the parser, reads documents up to 1,024 levels deep; within that every depth gets its
validation answer (a 400 naming the place, or acceptance), never a 500, and accepted deep
messages are stored, listed and recorded. Beyond it the answer is a 400 saying so.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from connector.emulator.checks import json_equal
from tests.emulator.conftest import HEADERS, PROFILE_SCHEMA_ID, envelope, event
from tests.support.emulator import RunningEmulator

pytestmark = pytest.mark.integration

PLACEHOLDER = "__deep__"


def deep_text(depth: int, leaf: bytes) -> bytes:
    """{"n": {"n": ... leaf}} with `depth` objects, as JSON text (orjson writes 254 at most)."""
    return b'{"n":' * depth + leaf + b"}" * depth


def with_deep(message: dict[str, Any], text: bytes) -> bytes:
    """`message` as JSON with its PLACEHOLDER string value replaced by `text`."""
    encoded = orjson.dumps(message)
    assert encoded.count(orjson.dumps(PLACEHOLDER)) == 1
    return encoded.replace(orjson.dumps(PLACEHOLDER), text)


def deep_batch(depth: int, leaf: bytes) -> bytes:
    """A batch of [a valid event, an event whose `deep` field nests `depth` objects]."""
    message = with_deep(event("deep", deep=PLACEHOLDER), deep_text(depth, leaf))
    return b'{"messages":[' + orjson.dumps(event("plain")) + b"," + message + b"]}"


def post(http: httpx.Client, url: str, body: bytes, **params: str) -> httpx.Response:
    return http.post(url, content=body, headers=HEADERS, params=params)


LEAVES = [
    (b"null", "null", "null is not allowed in XDM"),
    (b'""', "minLength", "an empty string is not allowed in XDM"),
    (b"{}", "minProperties", "an empty object is not allowed in XDM"),
    (b"[]", "minItems", "an empty array is not allowed in XDM"),
]


@pytest.mark.parametrize(("leaf", "keyword", "text"), LEAVES)
def test_empty_values_are_rejected_like_nulls_in_a_batch(
    http: httpx.Client, emulator: RunningEmulator, leaf: bytes, keyword: str, text: str
) -> None:
    body = with_deep(event("e", tags=["a", "b"], value=PLACEHOLDER), leaf)
    response = post(http, emulator.batch_url("open"), b'{"messages":[' + body + b"]}")
    (entry,) = response.json()["responses"]
    assert entry == {
        "statusCode": 400,
        "message": f"messages[0].body.xdmEntity.value: {text}; leave the key out instead",
    }


@pytest.mark.parametrize(("leaf", "keyword", "text"), LEAVES)
def test_the_sync_report_names_the_pointer_of_an_empty_value(
    http: httpx.Client, emulator: RunningEmulator, leaf: bytes, keyword: str, text: str
) -> None:
    body = with_deep(event("e", person={"tags": ["x", PLACEHOLDER]}), leaf)
    response = post(http, emulator.collection_url("open"), body, syncValidation="true")
    assert response.status_code == 400
    answer = response.json()
    pointer = "#/body/xdmEntity/person/tags/1"
    expected = f"{pointer}: {text}; leave the key out instead"
    assert answer["report"]["cause"]["_streamingValidation"] == [
        {"pointerToViolation": pointer, "keyword": keyword, "message": expected}
    ]
    assert answer["report"]["message"] == f"inletId: [open] Message is invalid: [{expected}]"
    assert answer["message"] == f"body.xdmEntity.person.tags[1]: {text}; leave the key out instead"


def test_a_single_empty_value_is_400_without_sync_validation(
    http: httpx.Client, emulator: RunningEmulator
) -> None:
    response = post(http, emulator.collection_url("open"), orjson.dumps(envelope({})))
    assert response.status_code == 400
    assert response.json()["message"] == (
        "body.xdmEntity: an empty object is not allowed in XDM; leave the key out instead"
    )
    assert emulator.stats()["messages_rejected"] == 1


@pytest.mark.parametrize("depth", [300, 1_000, 1_017])  # 1,017 + the envelope: the parser's 1,024
@pytest.mark.parametrize(("leaf", "keyword", "text"), LEAVES)
def test_any_parsable_depth_gets_its_violation(
    http: httpx.Client,
    emulator: RunningEmulator,
    depth: int,
    leaf: bytes,
    keyword: str,
    text: str,
) -> None:
    response = post(http, emulator.batch_url("open"), deep_batch(depth, leaf))
    assert response.status_code == 207
    first, second = response.json()["responses"]
    assert "xactionId" in first
    assert second["statusCode"] == 400
    assert second["message"] == (
        "messages[1].body.xdmEntity.deep" + ".n" * depth + f": {text}; leave the key out instead"
    )
    assert emulator.stats()["requests_by_status"] == {"207": 1}


def test_a_1000_deep_entity_with_a_null_leaf_gets_a_sync_report(
    http: httpx.Client, emulator: RunningEmulator
) -> None:
    body = with_deep(event("deep", deep=PLACEHOLDER), deep_text(1_000, b"null"))
    response = post(http, emulator.collection_url("open"), body, syncValidation="true")
    assert response.status_code == 400
    (violation,) = response.json()["report"]["cause"]["_streamingValidation"]
    assert violation["pointerToViolation"] == "#/body/xdmEntity/deep" + "/n" * 1_000
    assert violation["keyword"] == "null"


def test_a_deep_valid_entity_is_accepted_stored_listed_and_recorded(
    http: httpx.Client, emulator: RunningEmulator
) -> None:
    depth = 1_000  # far beyond the 254 levels orjson writes
    text = deep_text(depth, b'"leaf"')
    response = post(http, emulator.batch_url("open"), deep_batch(depth, b'"leaf"'))
    assert [("xactionId" in entry) for entry in response.json()["responses"]] == [True, True]
    stored = emulator.messages()
    assert len(stored) == 2
    expected = orjson.loads(with_deep(event("deep", deep=PLACEHOLDER), text))
    assert json_equal(stored[1]["message"], expected)
    record = emulator.config_file.parent / "accepted.jsonl"
    assert json_equal(orjson.loads(record.read_bytes().splitlines()[-1])["message"], expected)


def test_deeper_than_the_parser_reads_is_400_saying_so(
    http: httpx.Client, emulator: RunningEmulator
) -> None:
    for url in (emulator.batch_url("open"), emulator.collection_url("open")):
        body = deep_batch(5_000, b"null")
        if url == emulator.collection_url("open"):
            body = with_deep(event("deep", deep=PLACEHOLDER), deep_text(5_000, b"null"))
        response = post(http, url, body)
        assert response.status_code == 400
        assert response.json()["message"] == (
            "body: nested more than 1024 levels deep (the JSON parser's limit)"
        )


def test_deep_values_in_the_envelope_are_quoted_briefly(
    http: httpx.Client, emulator: RunningEmulator
) -> None:
    message = event("e")
    message["header"]["imsOrgId"] = PLACEHOLDER
    message["header"]["schemaRef"]["x"] = "y"  # and xdmMeta.schemaRef differs, deeply
    message["body"]["xdmMeta"]["schemaRef"]["x"] = {"deep": "__other__"}
    body = with_deep(message, deep_text(1_000, b"1")).replace(
        b'"__other__"', deep_text(1_000, b"2")
    )
    response = post(http, emulator.collection_url("open"), body)
    assert response.status_code == 400
    text = response.json()["message"]
    assert text.startswith('header.imsOrgId: expected "5C1328435BF324E90A49402A@AdobeOrg", got {')
    assert "body.xdmMeta.schemaRef: must equal header.schemaRef" in text
    assert len(text) < 600


def test_a_schema_validated_entity_nested_deep_is_answered(
    http: httpx.Client, emulator: RunningEmulator
) -> None:
    """jsonschema recurses, and quotes the failing value; the answer is still a 400."""
    message = envelope(
        {"person": {"name": {"firstName": PLACEHOLDER}}}, schema_id=PROFILE_SCHEMA_ID
    )
    for depth in (300, 1_010):
        response = post(
            http, emulator.collection_url("open"), with_deep(message, deep_text(depth, b"1"))
        )
        assert response.status_code == 400
        assert response.json()["message"].startswith("body.xdmEntity")
    assert emulator.stats()["requests_by_status"] == {"400": 2}


def test_a_schema_id_that_is_not_a_string_is_400_not_500(
    http: httpx.Client, emulator: RunningEmulator
) -> None:
    message = envelope({"person": {"gender": "f"}}, schema_id=PROFILE_SCHEMA_ID)
    for part in (message["header"], message["body"]["xdmMeta"]):
        part["schemaRef"]["id"] = {"not": "a string"}
    response = post(http, emulator.collection_url("open"), orjson.dumps(message))
    assert response.status_code == 400
    assert response.json()["message"] == (
        'header.schemaRef.id: expected a URI, got {"not":"a string"}'
    )
