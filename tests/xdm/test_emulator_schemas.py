"""The emulator reads its `schemas` with the connector's loader of exported XDM schemas, so a
schema file means the same to both, and both reject the same entities."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from connector.emulator.app import load_validators
from connector.emulator.config import EmulatorConfigError
from tests.xdm.support import EVENT_SCHEMA, event_validator, expected_entities

SCHEMA_ID = "https://ns.adobe.com/acme/schemas/web-commerce-events"


def test_the_emulator_loads_the_exported_example_schema() -> None:
    emulator = load_validators({SCHEMA_ID: EVENT_SCHEMA})[SCHEMA_ID]
    connector = event_validator()
    good = expected_entities("web-commerce")
    bad = copy.deepcopy(good[0])
    bad["device"]["type"] = "phone"
    bad["productListItems"][0]["quantity"] = "1"
    for entity in good:
        assert list(emulator.iter_errors(entity)) == []
        assert connector.validate(entity) is None
    emulator_found = sorted(
        ("/" + "/".join(map(str, e.absolute_path)), str(e.validator))
        for e in emulator.iter_errors(bad)
    )
    connector_found = sorted((v.pointer, v.keyword) for v in connector.violations(bad))
    assert (
        emulator_found
        == connector_found
        == [
            ("/device/type", "enum"),
            ("/productListItems/0/quantity", "type"),
        ]
    )


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"[]", "an exported XDM schema must be a JSON object"),
        (b'{"type": "strin"}', "not a valid JSON Schema: #/type:"),
        (b"{oops", "not valid JSON"),
    ],
)
def test_bad_schema_files_are_reported_as_the_connector_reports_them(
    tmp_path: Path, content: bytes, expected: str
) -> None:
    path = tmp_path / "bad.schema.json"
    path.write_bytes(content)
    with pytest.raises(EmulatorConfigError) as caught:
        load_validators({"https://x/a": path, SCHEMA_ID: EVENT_SCHEMA})
    (problem,) = caught.value.problems
    assert problem.startswith(f"schemas.https://x/a: {path}: ")
    assert expected in problem
