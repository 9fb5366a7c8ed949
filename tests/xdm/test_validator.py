"""Per-record validation: None for a fitting entity, else the pointer, keyword and a message
that never quotes the value."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from connector.xdm import EntityValidator, SchemaLoadError, Violation, XdmSchema
from tests.xdm.support import event_validator, expected_entities, profile_schema

#: A value that must never appear in a message (record payloads are not logged).
SECRET = "s3cr3t-customer-value"


def event() -> dict[str, Any]:
    """A valid commerce event: the first golden entity of the web-commerce example."""
    return copy.deepcopy(expected_entities("web-commerce")[0])


@pytest.mark.parametrize(
    ("name", "schema"),
    [("web-commerce", None), ("crm-profile", profile_schema)],
)
def test_the_golden_entities_of_the_examples_fit_their_schemas(name: str, schema: Any) -> None:
    validator = event_validator() if schema is None else EntityValidator(schema())
    for entity in expected_entities(name):
        assert validator.validate(entity) is None
        assert validator.violations(entity) == []


@pytest.mark.parametrize(
    ("change", "pointer", "keyword"),
    [
        (lambda e: e.update(timestamp=f"{SECRET} 2024-05-01"), "/timestamp", "format"),
        (lambda e: e.update(timestamp="2024-05-01T12:34:56"), "/timestamp", "format"),
        (lambda e: e.update(timestamp="2024-02-30T00:00:00Z"), "/timestamp", "format"),
        (lambda e: e.update(_id=f"{SECRET} with blanks"), "/_id", "format"),
        (
            lambda e: e["web"]["webPageDetails"].update(URL=f"shop.example.com/{SECRET}"),
            "/web/webPageDetails/URL",
            "format",
        ),
        (
            lambda e: e["productListItems"][0].update(quantity=SECRET),
            "/productListItems/0/quantity",
            "type",
        ),
        (
            lambda e: e["productListItems"][0].update(currencyCode=SECRET),
            "/productListItems/0/currencyCode",
            "pattern",
        ),
        (lambda e: e["device"].update(type=SECRET), "/device/type", "enum"),
        (
            lambda e: e["environment"].update(viewportHeight=2**40),
            "/environment/viewportHeight",
            "maximum",
        ),
        (
            lambda e: e["identityMap"]["ECID"][0].update(authenticatedState=SECRET),
            "/identityMap/ECID/0/authenticatedState",
            "enum",
        ),
        (lambda e: e.pop("timestamp"), "/timestamp", "required"),
    ],
)
def test_a_violation_names_the_pointer_and_keyword_without_the_value(
    change: Any, pointer: str, keyword: str
) -> None:
    entity = event()
    change(entity)
    violation = event_validator().validate(entity)
    assert violation is not None
    assert (violation.pointer, violation.keyword) == (pointer, keyword)
    assert SECRET not in violation.message
    assert SECRET not in str(violation)
    assert str(violation) == f"{pointer}: {violation.message} ({keyword})"


def test_a_type_violation_says_what_was_expected_and_found() -> None:
    entity = event()
    entity["environment"]["browserDetails"] = "Safari"
    violation = event_validator().validate(entity)
    assert violation == Violation(
        "/environment/browserDetails", "type", "expected object, got string"
    )


def test_a_date_field_checks_the_rfc3339_full_date() -> None:
    validator = EntityValidator(profile_schema())
    entity = copy.deepcopy(expected_entities("crm-profile")[0])
    for bad in ("14/03/1969", "1969-3-14", "1969-02-30", "1969-03-14T00:00:00Z"):
        entity["person"]["birthDate"] = bad
        violation = validator.validate(entity)
        assert violation is not None, bad
        assert (violation.pointer, violation.keyword) == ("/person/birthDate", "format")


def test_violations_lists_every_problem_for_the_map_command() -> None:
    entity = event()
    entity["timestamp"] = "yesterday"
    entity["device"]["type"] = "phone"
    entity["productListItems"][0]["quantity"] = "3"
    found = event_validator().violations(entity)
    assert [(v.pointer, v.keyword) for v in found] == [
        ("/timestamp", "format"),
        ("/device/type", "enum"),
        ("/productListItems/0/quantity", "type"),
    ]
    assert len(event_validator().violations(entity, limit=2)) == 2


def test_pointer_tokens_are_escaped() -> None:
    validator = EntityValidator(
        XdmSchema({"properties": {"a/b~c": {"type": "object", "required": ["x"]}}})
    )
    violation = validator.validate({"a/b~c": {}})
    assert violation is not None
    assert violation.pointer == "/a~1b~0c/x"


def test_a_schema_that_cannot_compile_is_a_load_error() -> None:
    with pytest.raises(SchemaLoadError, match="pattern"):
        EntityValidator(XdmSchema({"properties": {"a": {"type": "string", "pattern": "("}}}))


def test_without_schema_keyword_the_export_is_read_as_draft_06() -> None:
    # Draft-06 `exclusiveMaximum` is a number; 2020-12 would read it the same, but draft-06's
    # `items` array form (tuple validation) differs from 2020-12's prefixItems.
    schema = XdmSchema(
        {"properties": {"pair": {"items": [{"type": "string"}, {"type": "integer"}]}}}
    )
    assert EntityValidator(schema).validate({"pair": ["a", "b"]}) == Violation(
        "/pair/1", "type", "expected integer, got string"
    )
