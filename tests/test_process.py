"""process(): one record from bytes to envelopes or dead letters, without Kafka or HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from connector.errors import RetryableError
from connector.mapping import TargetDefaults, load_mapping_file
from connector.metrics import Metrics
from connector.process import Route, Routes, process
from connector.records import SourceRecord
from connector.settings import Settings

TOPIC = "orders"
NOW_MS = 1_700_000_000_000


def mapping_text(name: str, extra: str = "", connection: str = "") -> str:
    target = f"connectionId: {connection}, " if connection else ""
    return (
        f"name: {name}\n"
        f"source: {{topics: [{TOPIC}], format: json}}\n"
        f"{extra}"
        f"target: {{{target}datasetId: ds, schemaRef: {{id: 'https://ns.adobe.com/acme/schemas/o', "
        "contentType: 'application/vnd.adobe.xed-full+json;version=1'}}\n"
        "mappings:\n"
        "  - {source: id, destination: _id}\n"
        "  - {sourceType: EXPRESSION, source: 'upper(name)', destination: _acme.name}\n"
    )


def route_for(tmp_path: Path, *texts: str, tombstones: str = "skip") -> Route:
    mappings = []
    for number, text in enumerate(texts):
        path = tmp_path / f"m{number}.yaml"
        path.write_text(text)
        mappings.append(load_mapping_file(path, TargetDefaults("conn", "ORG@AdobeOrg")))
    settings = Settings(dead_letter={"tombstones": tombstones})
    return Routes(settings, mappings, Metrics()).get(TOPIC)


def record(value: bytes | None, offset: int = 7) -> SourceRecord:
    return SourceRecord(TOPIC, 0, offset, 1, b"key", value)


def entity(body: bytes) -> Any:
    return orjson.loads(body)["body"]["xdmEntity"]


def test_a_good_record_becomes_one_envelope_per_mapping(tmp_path: Path) -> None:
    route = route_for(
        tmp_path, mapping_text("orders"), mapping_text("audit", connection="conn-audit")
    )
    result = process(record(b'{"id": "o-1", "name": "Ann"}'), route, NOW_MS)
    assert result.dead_letters == []
    assert result.filtered == 0
    assert [(t.mapping.name, t.connection_id) for _, t in result.messages] == [
        ("orders", "conn"),
        ("audit", "conn-audit"),
    ]
    body, _ = result.messages[0]
    assert entity(body) == {"_id": "o-1", "_acme": {"name": "ANN"}}
    assert orjson.loads(body)["header"]["createdAt"] == str(NOW_MS)


def test_field_warnings_are_kept_with_their_mapping(tmp_path: Path) -> None:
    route = route_for(
        tmp_path, mapping_text("orders"), mapping_text("audit", connection="conn-audit")
    )
    result = process(record(b'{"id": "o-1", "name": {"first": "A"}}'), route, NOW_MS)
    assert [(name, len(warnings)) for name, warnings in result.warnings] == [
        ("orders", 1),
        ("audit", 1),
    ]
    assert "_acme.name" in result.warnings[0][1][0]
    assert len(result.messages) == 2  # the field is left out; the record is still sent
    assert process(record(b'{"id": "o-2", "name": "Bo"}'), route, NOW_MS).warnings == ()


def test_undecodable_bytes_are_one_dead_letter_of_the_decode_stage(tmp_path: Path) -> None:
    route = route_for(tmp_path, mapping_text("orders"), mapping_text("audit"))
    result = process(record(b"{not json"), route, NOW_MS)
    (letter,) = result.dead_letters
    assert (letter.stage, letter.error_class, letter.mapping) == ("decode", "invalid_json", None)
    assert result.messages == []


def test_a_filtered_mapping_finishes_its_part_at_once(tmp_path: Path) -> None:
    route = route_for(
        tmp_path, mapping_text("orders"), mapping_text("audit", extra="filter: 'n >= 3'\n")
    )
    result = process(record(b'{"id": "a", "name": "x", "n": 1}'), route, NOW_MS)
    assert result.filtered == 1
    assert [t.mapping.name for _, t in result.messages] == ["orders"]


def test_a_strict_mapping_failure_is_a_dead_letter_of_that_mapping_only(tmp_path: Path) -> None:
    strict = mapping_text("strict", extra="strict: true\n").replace(
        "upper(name)", "to_integer(name)"
    )
    route = route_for(tmp_path, mapping_text("orders"), strict)
    result = process(record(b'{"id": "a", "name": "not a number"}'), route, NOW_MS)
    (letter,) = result.dead_letters
    assert (letter.stage, letter.mapping) == ("map", "strict")
    assert [t.mapping.name for _, t in result.messages] == ["orders"]


def test_a_message_over_the_api_limit_is_a_dead_letter(tmp_path: Path) -> None:
    route = route_for(tmp_path, mapping_text("orders"))
    big = orjson.dumps({"id": "a", "name": "x" * 1_100_000})
    (letter,) = process(record(big), route, NOW_MS).dead_letters
    assert (letter.stage, letter.error_class) == ("validate", "too_large")


@pytest.mark.parametrize("mode", ["skip", "dead-letter"])
def test_tombstones(tmp_path: Path, mode: str) -> None:
    route = route_for(tmp_path, mapping_text("orders"), tombstones=mode)
    result = process(record(None), route, NOW_MS)
    if mode == "skip":
        assert result.tombstone
        assert result.dead_letters == []
    else:
        (letter,) = result.dead_letters
        assert (letter.stage, letter.error_class) == ("decode", "tombstone")


def test_a_registry_outage_is_raised_for_the_caller_to_retry(tmp_path: Path) -> None:
    route = route_for(tmp_path, mapping_text("orders"))

    def registry_down(_value: bytes) -> Any:
        raise RetryableError("schema registry unreachable")

    route.decoder = registry_down
    with pytest.raises(RetryableError):
        process(record(b"\x00\x00\x00\x00\x01"), route, NOW_MS)


def test_an_entity_that_breaks_its_xdm_schema_is_a_dead_letter_of_the_validate_stage(
    tmp_path: Path,
) -> None:
    schema = {
        "$id": "https://ns.adobe.com/acme/schemas/o",
        "type": "object",
        "properties": {
            "_id": {"type": "string"},
            "_acme": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 3}}},
        },
    }
    (tmp_path / "o.schema.json").write_bytes(orjson.dumps(schema))
    route = route_for(tmp_path, mapping_text("orders", extra="validate: {schema: o.schema.json}\n"))
    assert process(record(b'{"id": "a", "name": "Ann"}'), route, NOW_MS).dead_letters == []
    result = process(record(b'{"id": "a", "name": "Annabel"}'), route, NOW_MS)
    (letter,) = result.dead_letters
    assert (letter.stage, letter.error_class, letter.mapping) == (
        "validate",
        "xdm_invalid",
        "orders",
    )
    assert dict(letter.details) == {"xdm.pointer": "/_acme/name", "xdm.keyword": "maxLength"}
    assert "Annabel" not in letter.message  # the value is never quoted
    assert result.messages == []
