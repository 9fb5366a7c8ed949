"""Raw payloads on their way: one per request, to the single-message endpoint, with the
mapping's x-adobe-flow-id; the delivery rules of XDM batches hold for them too."""

from __future__ import annotations

import httpx
import orjson
import pytest

from connector.delivery.batcher import MAX_RAW_GROUP, Batch, Batcher, OutboundMessage, request_size
from connector.delivery.outcome import Accepted, classify_single
from connector.delivery.sender import Ticket
from connector.errors import DeadLetter, HaltError, RetryableError, Unacknowledged
from connector.offsets import PartitionState
from connector.records import SourceRecord
from tests.delivery.test_dispatcher import make, run_to_completion
from tests.delivery.test_sender import AUTH, Clock, make_sender

FLOW = "f2ae0194-8bd8-4a40-a4d9-f07bdc3e6ce2"
STATE = PartitionState(("t", 0))
PAYLOAD = orjson.dumps({"customerId": "c-1", "note": "", "gone": None})


def raw(
    offset: int = 0, body: bytes = PAYLOAD, flow: str | None = FLOW, connection: str = "conn"
) -> OutboundMessage:
    record = SourceRecord("t", 0, offset, None, None, body)
    return OutboundMessage(body, record, STATE, "raw", connection, flow)


def raw_batch(*messages: OutboundMessage) -> Batch:
    chosen = list(messages) or [raw()]
    return Batch(
        (("conn",), FLOW), "conn", 0.0, chosen, request_size([m.body for m in chosen]), FLOW
    )


def single_answer(request: httpx.Request) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "inletId": "conn",
            "xactionId": "1700000000000:0001:1",
            "receivedTimeMs": "1700000000000",
            "syncValidation": {"skipped": True},
        },
    )


# --------------------------------------------------------------------------- batching


def test_raw_payloads_are_batched_apart_from_envelopes() -> None:
    batcher = Batcher(1_000, 100, 10.0, Clock())
    xdm = OutboundMessage(
        b'{"header":{}}', SourceRecord("t", 0, 0, None, None, b""), STATE, "m", "c"
    )
    assert batcher.add("xdm-lane", xdm) == []
    assert batcher.add("raw-lane", raw(1)) == []
    assert batcher.add("raw-lane", raw(2)) == []
    raw_batch_, xdm_batch = sorted(batcher.flush(), key=lambda b: b.raw_flow_id is None)
    assert raw_batch_.raw_flow_id == FLOW
    assert raw_batch_.messages == [raw(1), raw(2)]
    assert xdm_batch.raw_flow_id is None


@pytest.mark.parametrize("ordering", ["partition", "none"])
def test_a_dataflow_has_lanes_of_its_own(ordering: str) -> None:
    dispatcher, sender, _clock = make(ordering, max_in_flight_requests=8)
    sender.release.set()
    xdm = OutboundMessage(b"{}", SourceRecord("t", 0, 9, None, None, b""), STATE, "m", "c1")
    dispatcher.add(xdm)
    for offset in range(3):
        dispatcher.add(raw(offset, connection="c1"))
    dispatcher.flush()
    (raw_result,) = [r for r in run_to_completion(dispatcher) if r.batch.raw_flow_id]
    assert [m.record.offset for m in raw_result.batch.messages] == [0, 1, 2]
    xdm_lanes = {b.lane for b, _ in sender.started if b.raw_flow_id is None}
    assert raw_result.batch.lane not in xdm_lanes
    assert FLOW in raw_result.batch.lane  # type: ignore[operator]


# --------------------------------------------------------------------------- the answer


def test_a_single_answer_acknowledges_only_with_its_xaction_id() -> None:
    assert classify_single(200, b'{"xactionId": "x:1:1"}', None, 1.5) == [
        Accepted(None, "x:1:1", 1500)
    ]
    for body in (b"", b"ok", b"{}", b'{"xactionId": ""}', b'[{"xactionId": "x"}]'):
        with pytest.raises(Unacknowledged):
            classify_single(200, body, None, 0.0)


def test_a_single_answer_otherwise_reads_as_a_batch_of_one() -> None:
    (rejected,) = classify_single(400, b'{"message": "header x-adobe-flow-id: unknown"}', None, 0)
    assert isinstance(rejected, DeadLetter)
    assert (rejected.stage, rejected.status) == ("api", 400)
    assert rejected.api_message == "header x-adobe-flow-id: unknown"
    (too_large,) = classify_single(413, b"", None, 0)
    assert isinstance(too_large, DeadLetter)
    assert too_large.status == 413
    with pytest.raises(RetryableError):
        classify_single(429, b"", "3", 0)
    with pytest.raises(HaltError):
        classify_single(404, b"", None, 0)


# --------------------------------------------------------------------------- the sender


def test_a_raw_payload_goes_alone_to_the_single_endpoint_with_its_flow_id() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return single_answer(request)

    sender, metrics, _ = make_sender(handler)  # extra_headers carry x-adobe-flow-id: f
    result = sender.deliver(raw_batch())
    assert result.accepted == [raw()]
    assert (result.attempts, result.last_status, result.halt) == (1, 200, None)
    (request,) = seen
    assert request.url.path == "/collection/conn"
    assert request.content == PAYLOAD  # the record itself: no envelope, no batch framing
    assert request.headers.get_list("x-adobe-flow-id") == [FLOW]  # the mapping's, once
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-sandbox-name"] == "dev"
    assert metrics.request_records._sum.get() == 1


def test_a_400_dead_letters_the_payload_with_the_api_message() -> None:
    message = "header x-adobe-flow-id: unknown flow 'f2' for connection 'conn' (known: f1)"
    sender, _, _ = make_sender(lambda r: httpx.Response(400, json={"message": message}))
    result = sender.deliver(raw_batch())
    ((rejected, letter),) = result.rejected
    assert rejected is result.batch.messages[0]
    assert (letter.stage, letter.error_class, letter.status) == ("api", "api_rejected", 400)
    assert letter.api_message == message
    assert (letter.mapping, letter.attempts) == ("raw", 1)
    assert result.halt is None
    assert result.unfinished == []


def test_transient_failures_are_retried_then_accepted() -> None:
    script = [503, 429]

    def handler(request: httpx.Request) -> httpx.Response:
        if script:
            return httpx.Response(script.pop(0), headers={"Retry-After": "0"})
        return single_answer(request)

    sender, metrics, _ = make_sender(handler)
    result = sender.deliver(raw_batch())
    assert len(result.accepted) == 1
    assert result.attempts == 3
    assert metrics.retries.labels("503")._value.get() == 1
    assert metrics.retries.labels("429")._value.get() == 1


def test_a_success_without_an_xaction_id_is_retried_then_halts() -> None:
    sender, _, _ = make_sender(lambda r: httpx.Response(200, text="OK"), max_unacknowledged=3)
    result = sender.deliver(raw_batch())
    assert "without an xactionId, 3 times in a row" in (result.halt or "")
    assert result.accepted == []
    assert len(result.unfinished) == 1


@pytest.mark.parametrize("status", [404, 501])
def test_an_unknown_inlet_halts(status: int) -> None:
    sender, _, _ = make_sender(lambda r: httpx.Response(status))
    result = sender.deliver(raw_batch())
    assert str(status) in (result.halt or "")
    assert len(result.unfinished) == 1


def test_401_renews_the_token_once_then_succeeds() -> None:
    issued = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/ims/token/v3":
            issued["n"] += 1
            return httpx.Response(200, json={"access_token": f"t{issued['n']}", "expires_in": 99})
        if request.headers["authorization"] == "Bearer t1":
            return httpx.Response(401, json={"message": "expired"})
        assert request.headers["x-adobe-flow-id"] == FLOW
        return single_answer(request)

    sender, _, _ = make_sender(handler, AUTH)
    assert len(sender.deliver(raw_batch()).accepted) == 1
    assert issued["n"] == 2


def test_a_payload_the_api_finds_too_large_is_dead_lettered_never_split() -> None:
    sender, metrics, _ = make_sender(lambda r: httpx.Response(413, json={"message": "too big"}))
    result = sender.deliver(raw_batch())
    ((_message, letter),) = result.rejected
    assert letter.status == 413
    assert metrics.splits._value.get() == 0


def test_the_payloads_of_a_raw_batch_go_one_by_one_in_order() -> None:
    seen: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.content)
        if orjson.loads(request.content)["n"] == 1:
            return httpx.Response(400, json={"message": "refused"})
        return single_answer(request)

    payloads = [raw(n, orjson.dumps({"n": n})) for n in range(4)]
    sender, metrics, _ = make_sender(handler)
    result = sender.deliver(raw_batch(*payloads))
    assert seen == [p.body for p in payloads]  # each alone, in offset order
    assert result.accepted == [payloads[0], payloads[2], payloads[3]]
    ((rejected, letter),) = result.rejected
    assert rejected is payloads[1]
    assert letter.api_message == "refused"
    assert (result.attempts, result.last_status) == (4, 200)
    assert metrics.requests.labels("200")._value.get() == 3


def test_a_halt_in_a_raw_batch_keeps_what_was_accepted_and_leaves_the_rest() -> None:
    answers = iter([200, 404])

    def handler(request: httpx.Request) -> httpx.Response:
        status = next(answers)
        return single_answer(request) if status == 200 else httpx.Response(status)

    payloads = [raw(n, orjson.dumps({"n": n})) for n in range(3)]
    sender, _, _ = make_sender(handler)
    result = sender.deliver(raw_batch(*payloads))
    assert result.accepted == [payloads[0]]
    assert result.unfinished == payloads[1:]
    assert "404" in (result.halt or "")


def test_a_deadline_stops_a_raw_batch_between_payloads() -> None:
    clock = Clock()
    ticket = Ticket(deadline=clock.now + 10)

    def handler(request: httpx.Request) -> httpx.Response:
        clock.now += 6  # each request takes 6 s: the second one ends past the deadline
        return single_answer(request)

    payloads = [raw(n, orjson.dumps({"n": n})) for n in range(3)]
    sender, _, _ = make_sender(handler, clock=clock)
    result = sender.deliver(raw_batch(*payloads), ticket)
    assert result.accepted == payloads[:2]
    assert result.unfinished == payloads[2:]


def test_a_raw_group_closes_at_its_own_limit() -> None:
    """Small groups let several request slots share a backlog of raw payloads."""
    batcher = Batcher(1_000_000, 1000, 10.0, Clock())
    closed = [b for n in range(MAX_RAW_GROUP * 2 + 1) for b in batcher.add("raw", raw(n))]
    assert [len(b.messages) for b in closed] == [MAX_RAW_GROUP, MAX_RAW_GROUP]
    assert batcher.buffered_records == 1
