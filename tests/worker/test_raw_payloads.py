"""Raw payloads through the worker's loop (in-memory Kafka twin, scripted API): one request per
record on the single-message endpoint with the mapping's flow id, rejected ones dead-lettered,
and the delivery rules of XDM messages unchanged (retry, halt, commit after acknowledgement)."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import orjson

from connector.worker import EXIT_HALT, EXIT_OK
from tests.test_worker import TOPIC, Step, Until, accept_all, make_worker, produce

FLOW = "f2ae0194-8bd8-4a40-a4d9-f07bdc3e6ce2"
RAW_MAPPING = (
    "name: raw\n"
    f"source: {{topics: [{TOPIC}], format: json}}\n"
    f"target: {{mode: raw, connectionId: dataflow, flowId: {FLOW}}}\n"
)


class Api:
    """XDM batches accepted; raw payloads answered one at a time by `raw`."""

    def __init__(self, refuse: frozenset[int] = frozenset()) -> None:
        self.refuse = refuse
        self.raw: list[httpx.Request] = []
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/collection/batch/"):
            return accept_all(request)
        with self.lock:
            self.raw.append(request)
        payload = orjson.loads(request.content)
        if payload["n"] in self.refuse:
            return httpx.Response(400, json={"message": f"payload {payload['n']} refused"})
        return httpx.Response(200, json={"inletId": "dataflow", "xactionId": "t:1:1"})


def test_raw_records_go_one_per_request_and_rejected_ones_are_dead_lettered(
    tmp_path: Path,
) -> None:
    api = Api(refuse=frozenset({4}))
    steps: list[Step | Until] = [
        produce(0, range(0, 6)),
        produce(1, range(0, 4)),
        Until(lambda: script.committed(0) == 6 and script.committed(1) == 4),
    ]
    worker, script, producer = make_worker(
        tmp_path, steps, api, extra_mappings=(RAW_MAPPING,), max_in_flight_requests=4
    )
    assert worker.run() == EXIT_OK
    assert len(api.raw) == 10  # one request per record
    assert {r.url.path for r in api.raw} == {"/collection/dataflow"}
    assert {r.headers["x-adobe-flow-id"] for r in api.raw} == {FLOW}
    sent = sorted(orjson.loads(r.content)["id"] for r in api.raw)
    assert sent == sorted([f"0-{n}" for n in range(6)] + [f"1-{n}" for n in range(4)])
    (letter,) = producer.produced  # record 0-4: its XDM message accepted, its raw one refused
    headers = dict(letter["headers"])
    assert headers["aep.dlq.stage"] == b"api"
    assert headers["aep.dlq.http.status"] == b"400"
    assert headers["aep.dlq.mapping"] == b"raw"
    assert headers["aep.dlq.api.message"] == b"payload 4 refused"
    assert letter["value"] == orjson.dumps({"id": "0-4", "n": 4})
    accepted = worker.metrics.records_accepted
    assert accepted.labels("raw")._value.get() == 9
    assert accepted.labels("orders")._value.get() == 10


def test_in_strict_order_a_partition_has_one_raw_request_in_flight(tmp_path: Path) -> None:
    """Raw payloads of a partition reach the API in offset order, one request at a time."""
    in_flight = {"now": 0, "most": 0}
    lock = threading.Lock()
    order: list[int] = []
    api = Api()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/collection/batch/"):
            return accept_all(request)
        with lock:
            in_flight["now"] += 1
            in_flight["most"] = max(in_flight["most"], in_flight["now"])
            order.append(orjson.loads(request.content)["n"])
        threading.Event().wait(0.002)
        with lock:
            in_flight["now"] -= 1
        return api(request)

    steps: list[Step | Until] = [
        produce(0, range(0, 8)),
        Until(lambda: script.committed(0) == 8),
    ]
    worker, script, _ = make_worker(
        tmp_path, steps, handler, extra_mappings=(RAW_MAPPING,), max_in_flight_requests=4
    )
    assert worker.run() == EXIT_OK
    assert order == list(range(8))
    assert in_flight["most"] == 1


def test_a_raw_request_that_keeps_failing_transiently_is_retried_never_dead_lettered(
    tmp_path: Path,
) -> None:
    failures = {"left": 3}
    api = Api()

    def flaky(request: httpx.Request) -> httpx.Response:
        if not request.url.path.startswith("/collection/batch/") and failures["left"]:
            failures["left"] -= 1
            return httpx.Response(503)
        return api(request)

    steps: list[Step | Until] = [produce(0, range(0, 2)), Until(lambda: script.committed(0) == 2)]
    worker, script, producer = make_worker(tmp_path, steps, flaky, extra_mappings=(RAW_MAPPING,))
    assert worker.run() == EXIT_OK
    assert producer.produced == []
    assert worker.metrics.retries.labels("503")._value.get() == 3


def test_an_unknown_inlet_halts_and_commits_only_what_was_acknowledged(tmp_path: Path) -> None:
    def no_dataflow(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/collection/batch/"):
            return accept_all(request)
        return httpx.Response(404, json={"message": "inlet not found"})

    steps: list[Step | Until] = [produce(0, range(0, 3)), Until(lambda: False)]
    worker, script, producer = make_worker(
        tmp_path, steps, no_dataflow, extra_mappings=(RAW_MAPPING,)
    )
    assert worker.run() == EXIT_HALT
    assert "404" in (worker.halt_reason or "")
    assert producer.produced == []
    assert not script.committed(0)  # the XDM halves were accepted, the raw ones never
