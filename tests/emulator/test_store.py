"""Accepted-message storage: bounded memory, filters, the JSONL record file."""

from __future__ import annotations

from pathlib import Path

import orjson

from connector.emulator.checks import json_equal
from connector.emulator.store import AcceptedRequest, MessageStore

BIG = 1 << 40


def batch(
    connection: str, batch_id: str, datasets: list[str]
) -> tuple[AcceptedRequest, list[dict[str, object]]]:
    messages: list[dict[str, object]] = [{"n": i, "ds": ds} for i, ds in enumerate(datasets)]
    body = orjson.dumps({"messages": messages})
    accepted = [(i, ds) for i, ds in enumerate(datasets)]
    return AcceptedRequest(connection, 1000, body, batch_id, True, accepted), messages


def lines(store: MessageStore, **filters: str) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in store.lines(**filters)]


def test_messages_come_back_as_received_with_their_ids_and_filters() -> None:
    store = MessageStore(max_messages=100, max_bytes=BIG)
    store.add(*batch("c1", "1:0001:2", ["d1", "d2"]))
    store.add(*batch("c2", "1:0002:1", ["d1"]))
    everything = lines(store)
    assert [line["xactionId"] for line in everything] == ["1:0001:2:0", "1:0001:2:1", "1:0002:1:0"]
    assert everything[1] == {
        "connectionId": "c1",
        "xactionId": "1:0001:2:1",
        "receivedTimeMs": 1000,
        "datasetId": "d2",
        "message": {"n": 1, "ds": "d2"},
    }
    assert [line["connectionId"] for line in lines(store, connection_id="c2")] == ["c2"]
    assert [line["datasetId"] for line in lines(store, dataset_id="d1")] == ["d1", "d1"]
    assert lines(store, connection_id="c2", dataset_id="d2") == []


def test_only_accepted_positions_are_stored() -> None:
    store = MessageStore(max_messages=100, max_bytes=BIG)
    request, messages = batch("c", "b", ["d", "d", "d"])
    store.add(AcceptedRequest("c", 1, request.body, "b", True, [(0, "d"), (2, "d")]), messages)
    assert [line["message"] for line in lines(store)] == [{"n": 0, "ds": "d"}, {"n": 2, "ds": "d"}]


def test_the_oldest_requests_are_evicted_beyond_the_bound() -> None:
    store = MessageStore(max_messages=3, max_bytes=BIG)
    store.add(*batch("c", "b1", ["d", "d"]))
    store.add(*batch("c", "b2", ["d", "d"]))
    assert (store.stored, store.evicted) == (2, 2)
    assert [line["xactionId"] for line in lines(store)] == ["b2:0", "b2:1"]
    store.clear()
    assert (store.stored, store.evicted, lines(store)) == (0, 0, [])


def test_a_zero_bound_stores_nothing_but_still_records(tmp_path: Path) -> None:
    record = tmp_path / "accepted.jsonl"
    store = MessageStore(max_messages=0, max_bytes=BIG, record_file=record)
    store.add(*batch("c", "b1", ["d1", "d2"]))
    store.close()
    assert lines(store) == []
    recorded = [orjson.loads(line) for line in record.read_bytes().splitlines()]
    assert [(r["xactionId"], r["message"]) for r in recorded] == [
        ("b1:0", {"n": 0, "ds": "d1"}),
        ("b1:1", {"n": 1, "ds": "d2"}),
    ]


def test_the_record_file_is_appended_to(tmp_path: Path) -> None:
    record = tmp_path / "accepted.jsonl"
    record.write_bytes(b'{"earlier": true}\n')
    store = MessageStore(max_messages=10, max_bytes=BIG, record_file=record)
    store.add(*batch("c", "b1", ["d"]))
    store.close()
    assert len(record.read_bytes().splitlines()) == 2


def test_a_single_message_request_keeps_its_own_xaction_id() -> None:
    store = MessageStore(max_messages=10, max_bytes=BIG)
    body = orjson.dumps({"one": 1})
    store.add(AcceptedRequest("c", 5, body, "5:0003:1", False, [(0, "d")]), [{"one": 1}])
    assert lines(store)[0]["xactionId"] == "5:0003:1"
    assert lines(store)[0]["message"] == {"one": 1}


def test_the_oldest_requests_are_evicted_beyond_the_byte_bound() -> None:
    first, first_messages = batch("c", "b1", ["d"] * 3)
    size = len(first.body)
    store = MessageStore(max_messages=1_000, max_bytes=2 * size + 10)
    store.add(first, first_messages)
    store.add(*batch("c", "b2", ["d"] * 3))
    assert (store.stored, store.stored_bytes, store.evicted) == (6, 2 * size, 0)
    store.add(*batch("c", "b3", ["d"] * 3))
    assert (store.stored, store.stored_bytes, store.evicted) == (6, 2 * size, 3)
    assert [line["xactionId"] for line in lines(store)][::3] == ["b2:0", "b3:0"]
    store.clear()
    assert (store.stored, store.stored_bytes) == (0, 0)


def test_a_request_larger_than_the_byte_bound_is_not_kept() -> None:
    store = MessageStore(max_messages=1_000, max_bytes=10)
    store.add(*batch("c", "b1", ["d"]))
    assert (store.stored, store.stored_bytes, store.evicted, lines(store)) == (0, 0, 1, [])


def test_a_raw_payload_is_served_with_its_flow() -> None:
    store = MessageStore(max_messages=10, max_bytes=BIG)
    payload = {"name": "Jane", "header": "not an envelope"}
    body = orjson.dumps(payload)
    store.add(AcceptedRequest("c", 5, body, "5:0001:1", False, [(0, None)], "flow-1"), [payload])
    store.add(*batch("c", "b1", ["d"]))
    (line,) = lines(store, flow_id="flow-1")
    assert line == {
        "connectionId": "c",
        "xactionId": "5:0001:1",
        "receivedTimeMs": 5,
        "datasetId": None,
        "message": payload,
        "flowId": "flow-1",
        "raw": True,
    }
    assert [line["xactionId"] for line in lines(store)] == ["5:0001:1", "b1:0"]


def test_messages_nested_deeper_than_orjson_writes_are_served_and_recorded(
    tmp_path: Path,
) -> None:
    depth = 1_000  # orjson writes at most 254 levels; its parser reads 1,024
    text = b'{"deep":' + b'{"n":' * depth + b'"leaf"' + b"}" * depth + b"}"
    message = orjson.loads(text)
    body = b'{"messages":[{"x":1},' + text + b"]}"
    record = tmp_path / "accepted.jsonl"
    store = MessageStore(max_messages=10, max_bytes=BIG, record_file=record)
    store.add(AcceptedRequest("c", 1, body, "b", True, [(1, "d")]), [{"x": 1}, message])
    store.close()
    (served,) = store.lines()
    recorded = record.read_bytes()
    for line in (served, recorded):
        assert line.endswith(b"\n")
        assert json_equal(orjson.loads(line)["message"], message)
        assert text in line  # compact, as orjson writes it
