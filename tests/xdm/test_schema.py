"""Loading exported XDM schemas and walking destination paths through them."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from connector.xdm import SchemaLoadError, XdmSchema, load_schema
from tests.xdm.support import EVENT_SCHEMA, event_schema, profile_schema


def test_the_example_exports_load_with_their_xdm_metadata() -> None:
    event = event_schema()
    assert event.schema_id == "https://ns.adobe.com/acme/schemas/web-commerce-events"
    assert event.is_experience_event
    assert event.tenant == "_acme"
    assert event.name == "web-commerce.schema.json"
    profile = profile_schema()
    assert profile.xdm_class == "https://ns.adobe.com/xdm/context/profile"
    assert not profile.is_experience_event


def test_an_event_is_recognised_by_its_behaviour_when_the_class_is_custom() -> None:
    schema = XdmSchema(
        {
            "meta:class": "https://ns.adobe.com/acme/classes/clicks",
            "meta:extends": ["https://ns.adobe.com/xdm/data/time-series"],
        }
    )
    assert schema.is_experience_event


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "an exported XDM schema must be a JSON object"),
        (b'{"type": "strin"}', "not a valid JSON Schema: #/type:"),
        (b'{"properties": {"a": {"required": "yes"}}}', "#/properties/a/required"),
        (b'{"$schema": "https://example.com/unknown-draft"}', "unknown-draft"),
    ],
)
def test_a_bad_file_is_refused_with_the_reason(
    tmp_path: Path, content: bytes, expected: str
) -> None:
    path = tmp_path / "bad.schema.json"
    path.write_bytes(content)
    with pytest.raises(SchemaLoadError) as caught:
        load_schema(path)
    (problem,) = caught.value.problems
    assert problem.startswith(str(path))
    assert expected in problem


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SchemaLoadError, match="cannot be read"):
        load_schema(tmp_path / "absent.schema.json")


def test_meta_keywords_are_accepted_as_the_platform_exports_them() -> None:
    document = orjson.loads(EVENT_SCHEMA.read_bytes())
    assert document["meta:registryMetadata"]
    assert document["properties"]["eventType"]["meta:enum"]
    assert load_schema(EVENT_SCHEMA).document == document


def test_navigation_follows_fields_array_items_maps_and_the_tenant_object() -> None:
    schema = event_schema()
    root = schema.root
    items = schema.items(schema.child(root, "productListItems"))  # type: ignore[arg-type]
    assert items is not None
    quantity = schema.child(items, "quantity")
    assert quantity is not None
    assert quantity.pointer == "#/properties/productListItems/items/properties/quantity"
    assert quantity.types == {"integer"}
    ecid = schema.child(schema.child(root, "identityMap"), "ECID")  # type: ignore[arg-type]
    assert ecid is not None
    assert ecid.pointer == "#/properties/identityMap/additionalProperties"
    assert ecid.types == {"array"}
    tenant = schema.child(root, "_acme")
    assert tenant is not None
    assert schema.child(tenant, "kafkaPosition") is not None
    assert schema.child(tenant, "nothing") is None
    assert schema.items(tenant) is None


def test_local_refs_and_all_of_are_followed_in_hand_made_schemas() -> None:
    schema = XdmSchema(
        {
            "definitions": {"money": {"type": "object", "properties": {"amount": {}}}},
            "allOf": [{"properties": {"price": {"$ref": "#/definitions/money"}}}],
        }
    )
    price = schema.child(schema.root, "price")
    assert price is not None
    assert price.pointer == "#/definitions/money"
    assert schema.child(price, "amount") is not None
