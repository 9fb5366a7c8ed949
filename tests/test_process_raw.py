"""process() with a raw mapping (`target.mode: raw`): the decoded record is the message, the
filter still applies, and the 1 MB limit is the whole request's (no batch framing)."""

from __future__ import annotations

from pathlib import Path

import orjson

from connector.process import process
from connector.settings import API_MAX_REQUEST_BYTES
from tests.test_process import NOW_MS, TOPIC, mapping_text, record, route_for

FLOW = "0c2f4b1a-7e3d-4a55-9b7e-2d4c8f1e6a90"


def raw_text(name: str = "raw", extra: str = "") -> str:
    return (
        f"name: {name}\n"
        f"source: {{topics: [{TOPIC}], format: json}}\n"
        f"target: {{mode: raw, connectionId: dataflow, flowId: {FLOW}}}\n"
        f"{extra}"
    )


def sized(total: int) -> bytes:
    """A JSON object of exactly `total` bytes."""
    head = b'{"id":"big","pad":"'
    return head + b"x" * (total - len(head) - 2) + b'"}'


def test_the_record_itself_is_the_message(tmp_path: Path) -> None:
    route = route_for(tmp_path, raw_text())
    value = b'{ "id": "o-1",  "name": null, "tags": [] }'
    result = process(record(value), route, NOW_MS)
    assert result.dead_letters == []
    ((body, target),) = result.messages
    assert body == b'{"id":"o-1","name":null,"tags":[]}'  # re-encoded compactly, values as sent
    assert target.connection_id == "dataflow"
    assert target.mapping.raw_flow_id == FLOW


def test_a_topic_may_feed_an_xdm_and_a_raw_mapping(tmp_path: Path) -> None:
    route = route_for(tmp_path, mapping_text("orders"), raw_text())
    result = process(record(b'{"id": "o-1", "name": "Ann"}'), route, NOW_MS)
    (xdm, _), (raw, _) = result.messages
    assert orjson.loads(xdm)["body"]["xdmEntity"] == {"_id": "o-1", "_acme": {"name": "ANN"}}
    assert orjson.loads(raw) == {"id": "o-1", "name": "Ann"}


def test_the_filter_skips_and_a_non_object_fails_at_the_map_stage(tmp_path: Path) -> None:
    route = route_for(tmp_path, raw_text(extra="filter: 'kind != \"heartbeat\"'\n"))
    assert process(record(b'{"kind": "heartbeat"}'), route, NOW_MS).filtered == 1
    result = process(record(b"[1, 2]"), route, NOW_MS)
    ((letter),) = result.dead_letters
    assert (letter.stage, letter.mapping) == ("map", "raw")
    assert "not an object" in letter.message


def test_the_limit_is_the_whole_request_for_a_raw_payload(tmp_path: Path) -> None:
    route = route_for(tmp_path, raw_text())
    at_limit = process(record(sized(API_MAX_REQUEST_BYTES)), route, NOW_MS)
    assert at_limit.dead_letters == []
    # Exactly the limit: sent alone, though it would not fit in a batch with its framing.
    assert len(at_limit.messages[0][0]) == API_MAX_REQUEST_BYTES
    over = process(record(sized(API_MAX_REQUEST_BYTES + 1)), route, NOW_MS)
    ((letter),) = over.dead_letters
    assert (letter.stage, letter.error_class) == ("validate", "too_large")
    assert over.messages == []
