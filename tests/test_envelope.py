"""The Platform message envelope: every header field, body.xdmMeta equal to the header's
schemaRef, the entity as given, serialized once into bytes."""

from __future__ import annotations

import orjson
import pytest

from connector.envelope import DEFAULT_CONTENT_TYPE, Envelope, EnvelopeTarget, encode_envelope

SCHEMA = "https://ns.adobe.com/acme/schemas/abc"


def test_full_envelope() -> None:
    target = EnvelopeTarget(
        dataset_id="5da9452f7de80400007jc52a",
        schema_id=SCHEMA,
        source_name="ACME Streaming",
        content_type="application/vnd.adobe.xed-full+json;version=1.1",
        ims_org_id="5C1328435BF324E90A49402A@AdobeOrg",
        flow_id="69f188b6-af07-4587-8061-e94d34637b41",
    )
    entity = {"person": {"name": {"firstName": "Jane"}}, "ü": "✓"}
    data = Envelope(target).encode(entity, 1526283801869)
    assert isinstance(data, bytes)
    assert orjson.loads(data) == {
        "header": {
            "schemaRef": {
                "id": SCHEMA,
                "contentType": "application/vnd.adobe.xed-full+json;version=1.1",
            },
            "imsOrgId": "5C1328435BF324E90A49402A@AdobeOrg",
            "datasetId": "5da9452f7de80400007jc52a",
            "flowId": "69f188b6-af07-4587-8061-e94d34637b41",
            "source": {"name": "ACME Streaming"},
            "createdAt": "1526283801869",
        },
        "body": {
            "xdmMeta": {
                "schemaRef": {
                    "id": SCHEMA,
                    "contentType": "application/vnd.adobe.xed-full+json;version=1.1",
                }
            },
            "xdmEntity": entity,
        },
    }


def test_optional_header_fields_are_left_out() -> None:
    target = EnvelopeTarget(dataset_id="ds", schema_id=SCHEMA, source_name="src")
    message = orjson.loads(encode_envelope(target, {"a": 1}, 5))
    assert set(message["header"]) == {"schemaRef", "datasetId", "source", "createdAt"}
    assert message["header"]["schemaRef"]["contentType"] == DEFAULT_CONTENT_TYPE
    assert message["header"]["createdAt"] == "5"


def test_one_envelope_encodes_many_messages() -> None:
    envelope = Envelope(EnvelopeTarget(dataset_id="ds", schema_id=SCHEMA, source_name="s"))
    first = orjson.loads(envelope.encode({"n": 1}, 1))
    second = orjson.loads(envelope.encode({"n": 2}, 2))
    assert first["body"]["xdmEntity"] == {"n": 1}
    assert second["body"]["xdmEntity"] == {"n": 2}
    assert second["header"]["createdAt"] == "2"


def test_header_values_are_escaped() -> None:
    target = EnvelopeTarget(dataset_id='d"s', schema_id=SCHEMA, source_name="a\\b\nc")
    message = orjson.loads(encode_envelope(target, {}, 0))
    assert message["header"]["datasetId"] == 'd"s'
    assert message["header"]["source"]["name"] == "a\\b\nc"


def test_an_entity_that_is_not_json_is_refused() -> None:
    envelope = Envelope(EnvelopeTarget(dataset_id="ds", schema_id=SCHEMA, source_name="s"))
    with pytest.raises(TypeError):
        envelope.encode({"x": object()}, 0)


def test_the_head_kept_for_one_created_at_is_remade_for_another() -> None:
    target = EnvelopeTarget(dataset_id="ds", schema_id=SCHEMA, source_name="s")
    envelope = Envelope(target)
    for entity, created_at in [({"n": 1}, 7), ({"n": 2}, 7), ({"n": 3}, 8), ({"n": 4}, 7)]:
        assert envelope.encode(entity, created_at) == encode_envelope(target, entity, created_at)
