"""Raw mappings (`target.mode: raw`): the record itself is the message, for an HTTP API source
dataflow that maps it in the Platform. Only the filter applies; the flow id is required."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from connector.mapping import CompiledMapping, MappingFailure, MappingLoadError, load_mapping_file
from tests.mapping.support import DEFAULTS, META, RUNTIME, write_mapping

FLOW = "f2ae0194-8bd8-4a40-a4d9-f07bdc3e6ce2"


def raw_mapping(**extra: Any) -> dict[str, Any]:
    target = {"mode": "raw", "flowId": FLOW, **extra.pop("target", {})}
    return {"name": "raw", "source": {"topics": ["web.events"]}, "target": target, **extra}


def load(tmp_path: Path, data: dict[str, Any]) -> CompiledMapping:
    return load_mapping_file(write_mapping(tmp_path, data), DEFAULTS, runtime=RUNTIME)


def problems(tmp_path: Path, data: dict[str, Any]) -> str:
    with pytest.raises(MappingLoadError) as info:
        load(tmp_path, data)
    return "\n".join(info.value.problems)


def test_a_raw_mapping_sends_the_record_itself(tmp_path: Path) -> None:
    mapping = load(tmp_path, raw_mapping())
    assert mapping.raw_flow_id == FLOW
    assert mapping.target is None
    assert mapping.connection_id == DEFAULTS.connection_id
    assert mapping.validator is None
    record = {"customerId": "c-1", "note": "", "gone": None, "tags": [], "nested": {"a": {}}}
    result = mapping.apply(record, META)
    assert result.entity is record
    assert result.warnings == []
    # No envelope, and nulls and empty values stay: the dataflow's mapping decides about them.
    assert orjson.loads(mapping.envelope(record, 1_700_000_000_000)) == record


def test_a_raw_mapping_may_name_its_connection(tmp_path: Path) -> None:
    mapping = load(tmp_path, raw_mapping(target={"connectionId": "http-api-inlet"}))
    assert mapping.connection_id == "http-api-inlet"


def test_the_filter_still_applies(tmp_path: Path) -> None:
    mapping = load(tmp_path, raw_mapping(filter='kind != "heartbeat" && _kafka.partition == 3'))
    assert mapping.apply({"kind": "heartbeat"}, META).entity is None
    kept = {"kind": "order"}
    assert mapping.apply(kept, META).entity is kept
    assert "kind" in mapping.source  # the filter is compiled like any mapping's


def test_a_failing_filter_or_a_value_that_is_not_an_object_fails_the_record(
    tmp_path: Path,
) -> None:
    mapping = load(tmp_path, raw_mapping(filter="to_integer(n) > 1"))
    with pytest.raises(MappingFailure, match="filter"):
        mapping.apply({"n": "not a number"}, META)
    with pytest.raises(MappingFailure, match="not an object"):
        mapping.apply(["an", "array"], META)


def test_values_json_lacks_are_written_as_a_mapping_writes_them(tmp_path: Path) -> None:
    mapping = load(tmp_path, raw_mapping())
    record: dict[str, object] = {
        "amount": Decimal("12.50"),
        "count": Decimal("3"),
        "blob": b"caf\xc3\xa9",
        "id": uuid.UUID(int=7),
        "at": datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
    }
    assert orjson.loads(mapping.envelope(record, 0)) == {
        "amount": 12.5,
        "count": 3,
        "blob": "café",
        "id": "00000000-0000-0000-0000-000000000007",
        "at": "2024-05-01T12:00:00Z",
    }
    with pytest.raises(TypeError):
        mapping.envelope({"too_big": 2**70}, 0)
    with pytest.raises(TypeError):
        mapping.envelope({"nan": Decimal("NaN")}, 0)


def test_the_flow_id_is_required(tmp_path: Path) -> None:
    data = raw_mapping()
    del data["target"]["flowId"]
    assert "target.flowId is required with target.mode raw" in problems(tmp_path, data)


@pytest.mark.parametrize(
    ("extra", "complaint"),
    [
        ({"target": {"datasetId": "ds"}}, "target.datasetId: not used with target.mode raw"),
        (
            {"target": {"schemaRef": {"id": "https://ns.adobe.com/a/schemas/b"}, "imsOrgId": "O"}},
            "target.schemaRef, target.imsOrgId: not used with target.mode raw",
        ),
        ({"mappings": [{"source": "a", "destination": "b"}]}, "mappings: not used with"),
        ({"mappingSet": "set.json"}, "mappingSet: not used with"),
        ({"validate": {"schema": "x.schema.json"}}, "validate: not used with"),
        ({"strict": False, "types": {"a": "string"}}, "types, strict: not used with"),
    ],
)
def test_keys_that_shape_an_xdm_message_are_refused(
    tmp_path: Path, extra: dict[str, Any], complaint: str
) -> None:
    assert complaint in problems(tmp_path, raw_mapping(**extra))


def test_an_unknown_mode_is_refused(tmp_path: Path) -> None:
    text = problems(tmp_path, raw_mapping(target={"mode": "json"}))
    assert "target.mode" in text
    assert "'xdm' or 'raw'" in text


def test_xdm_mode_is_the_default_and_still_needs_its_envelope_keys(tmp_path: Path) -> None:
    data = {
        "source": {"topics": ["a"]},
        "target": {"mode": "xdm", "flowId": FLOW, "schemaRef": {"id": "https://x/s"}},
        "mappings": [{"source": "a", "destination": "b"}],
    }
    assert "target.datasetId is required" in problems(tmp_path, data)
    data["target"]["datasetId"] = "ds"  # type: ignore[index]
    mapping = load(tmp_path, data)
    assert mapping.raw_flow_id is None  # the flow id goes in the envelope's header
    assert orjson.loads(mapping.envelope({"b": 1}, 5))["header"]["flowId"] == FLOW
