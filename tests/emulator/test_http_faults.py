"""Injected faults over HTTP: each kind, determinism, run-time changes."""

from __future__ import annotations

import concurrent.futures
import time
from pathlib import Path

import httpx
import orjson
import pytest

from connector.emulator.config import FaultPlan
from connector.emulator.faults import FaultInjector
from tests.emulator.conftest import CLIENT_ID, CLIENT_SECRET, HEADERS, event
from tests.support.emulator import RunningEmulator, start_emulator

pytestmark = pytest.mark.integration

# A dropped connection reaches the client as a closed connection or, depending on timing,
# as a reset: both mean "no answer".
NO_ANSWER = (httpx.RemoteProtocolError, httpx.ReadError)


def send(http: httpx.Client, emulator: RunningEmulator, event_id: str = "a") -> httpx.Response:
    body = orjson.dumps({"messages": [event(event_id)]})
    return http.post(emulator.batch_url("open"), content=body, headers=HEADERS)


def outcome(http: httpx.Client, emulator: RunningEmulator) -> str:
    """The status code as text, or "drop" when the connection closed without an answer."""
    try:
        status = send(http, emulator).status_code
    except NO_ANSWER:
        return "drop"
    return "ok" if status == 207 else str(status)


def test_a_scripted_sequence_then_normal_service(
    http: httpx.Client, emulator: RunningEmulator
) -> None:
    emulator.set_faults({"sequence": ["500", "503", "429", "ok", "503"], "retry_after_429_s": 3})
    responses = [send(http, emulator) for _ in range(6)]
    assert [r.status_code for r in responses] == [500, 503, 429, 207, 503, 207]
    assert responses[0].json()["message"] == "injected fault: 500"
    assert "Retry-After" not in responses[0].headers
    assert responses[1].headers["Retry-After"] == "1"  # the default for an injected 503
    assert responses[2].headers["Retry-After"] == "3"
    stats = emulator.stats()
    assert stats["faults_injected"] == {"500": 1, "503": 2, "429": 1}
    assert stats["messages_accepted"] == 2


def test_a_dropped_connection_gets_no_answer(http: httpx.Client, emulator: RunningEmulator) -> None:
    emulator.set_faults({"sequence": ["drop"]})
    with pytest.raises(NO_ANSWER):
        send(http, emulator, "dropped")
    assert send(http, emulator, "after").status_code == 207
    stats = emulator.stats()
    assert (stats["requests_dropped"], stats["requests_total"]) == (1, 2)
    assert [m["message"]["body"]["xdmEntity"]["_id"] for m in emulator.messages()] == ["after"]


def test_accept_then_drop_stores_the_batch_but_sends_no_answer(
    http: httpx.Client, emulator: RunningEmulator
) -> None:
    emulator.set_faults({"sequence": ["accept_drop"]})
    body = orjson.dumps({"messages": [event("first"), {"bad": 1}, event("second")]})
    with pytest.raises(NO_ANSWER):
        http.post(emulator.batch_url("open"), content=body, headers=HEADERS)
    stats = emulator.stats()
    assert (stats["messages_accepted"], stats["messages_rejected"]) == (2, 1)
    assert stats["faults_injected"] == {"accept_drop": 1}
    assert (stats["requests_dropped"], stats["requests_total"]) == (1, 1)
    stored = emulator.messages()
    assert [m["message"]["body"]["xdmEntity"]["_id"] for m in stored] == ["first", "second"]

    # The client cannot know, so it sends the batch again: the duplicates are stored too.
    again = http.post(emulator.batch_url("open"), content=body, headers=HEADERS)
    assert again.status_code == 207
    ids = [m["message"]["body"]["xdmEntity"]["_id"] for m in emulator.messages()]
    assert ids == ["first", "second", "first", "second"]
    assert len({m["xactionId"] for m in emulator.messages()}) == 4


def test_accept_then_drop_on_the_single_endpoint(
    http: httpx.Client, emulator: RunningEmulator
) -> None:
    emulator.set_faults({"sequence": ["ok", "accept_drop", "ok"]})
    url = emulator.collection_url("open")
    outcomes = []
    for event_id in ("a", "b", "c"):
        try:
            response = http.post(url, content=orjson.dumps(event(event_id)), headers=HEADERS)
            outcomes.append(str(response.status_code))
        except NO_ANSWER:
            outcomes.append("dropped")
    assert outcomes == ["200", "dropped", "200"]
    assert [m["message"]["body"]["xdmEntity"]["_id"] for m in emulator.messages()] == [
        "a",
        "b",
        "c",
    ]


def test_accept_then_drop_by_probability_follows_the_seed(
    http: httpx.Client, emulator: RunningEmulator
) -> None:
    spec = {"p_accept_drop": 0.4, "p503": 0.2, "seed": 5}
    injector = FaultInjector(0, FaultPlan.model_validate(spec))
    expected = [injector.next_action().kind for _ in range(20)]
    assert {"accept_drop", "503", "ok"} == set(expected)

    emulator.set_faults(spec)
    seen = [outcome(http, emulator) for _ in range(20)]
    assert seen == ["drop" if kind == "accept_drop" else kind for kind in expected]
    stats = emulator.stats()
    # Every request that was not a 503 stored its message, answered or not.
    assert stats["messages_accepted"] == 20 - expected.count("503")
    assert stats["requests_dropped"] == expected.count("accept_drop")


def test_accept_then_drop_of_a_token_answer(http: httpx.Client, emulator: RunningEmulator) -> None:
    form = {
        "grant_type": "client_credentials",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    }
    emulator.set_faults({"sequence": ["accept_drop"], "include_token_endpoint": True})
    with pytest.raises(NO_ANSWER):
        http.post(emulator.token_url, data=form)
    assert http.post(emulator.token_url, data=form).status_code == 200
    assert emulator.stats()["tokens_issued"] == 2


def test_latency_is_added_before_the_answer(http: httpx.Client, emulator: RunningEmulator) -> None:
    emulator.set_faults({"latency_ms": 150, "sequence": ["delay:150"]})
    started = time.monotonic()
    assert send(http, emulator).status_code == 207
    assert time.monotonic() - started >= 0.3  # latency + the step's delay
    started = time.monotonic()
    assert send(http, emulator).status_code == 207
    assert time.monotonic() - started >= 0.15


def test_a_stalled_request_completes_only_when_faults_are_cleared(
    http: httpx.Client, emulator: RunningEmulator
) -> None:
    emulator.set_faults({"stall": True})
    with concurrent.futures.ThreadPoolExecutor(1) as pool, httpx.Client(timeout=10) as other:
        pending = pool.submit(send, other, emulator, "stalled")
        emulator.wait_for(lambda s: s["requests_stalled"] == 1, what="the request to stall")
        assert not pending.done()
        assert emulator.stats()["messages_accepted"] == 0
        emulator.clear_faults()
        assert pending.result(timeout=10).status_code == 207
    stats = emulator.stats()
    assert (stats["messages_accepted"], stats["requests_stalled"]) == (1, 0)


def test_probabilistic_faults_follow_the_seed(
    http: httpx.Client, emulator: RunningEmulator
) -> None:
    spec = {"p503": 0.3, "p500": 0.1, "p429": 0.1, "p_drop": 0.1, "seed": 42}
    injector = FaultInjector(0, FaultPlan.model_validate(spec))
    expected = [injector.next_action().kind for _ in range(30)]
    assert len(set(expected)) == 5  # the sample covers every kind

    emulator.set_faults(spec)
    assert [outcome(http, emulator) for _ in range(30)] == expected
    emulator.set_faults(spec)  # a new plan restarts from its seed
    assert [outcome(http, emulator) for _ in range(30)] == expected


def test_faults_can_be_read_replaced_and_cleared(
    http: httpx.Client, emulator: RunningEmulator
) -> None:
    shown = emulator.set_faults({"sequence": ["503", "503"]})
    assert shown["remaining_sequence"] == ["503", "503"]
    assert send(http, emulator).status_code == 503
    current = http.get(f"{emulator.url}/__emulator/faults").json()
    assert current["remaining_sequence"] == ["503"]
    assert current["plan"]["sequence"] == ["503", "503"]
    emulator.clear_faults()
    assert http.get(f"{emulator.url}/__emulator/faults").json()["plan"] is None
    assert send(http, emulator).status_code == 207


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (
            b'{"p503": 0.7, "p500": 0.7}',
            "(top level): p500 + p503 + p429 + p_drop + p_accept_drop must be at most 1",
        ),
        (b'{"sequence": ["boom"]}', "sequence[0]: unknown step 'boom'"),
        (b'{"p503": ', "body: not valid JSON"),
    ],
)
def test_an_invalid_fault_plan_is_400(
    http: httpx.Client, emulator: RunningEmulator, body: bytes, fragment: str
) -> None:
    response = http.post(f"{emulator.url}/__emulator/faults", content=body)
    assert response.status_code == 400
    assert fragment in response.json()["message"]


def test_the_token_endpoint_is_faulted_only_on_request(
    http: httpx.Client, emulator: RunningEmulator
) -> None:
    form = {
        "grant_type": "client_credentials",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    }
    emulator.set_faults({"sequence": ["503"]})
    assert http.post(emulator.token_url, data=form).status_code == 200
    assert send(http, emulator).status_code == 503
    emulator.set_faults({"sequence": ["503"], "include_token_endpoint": True})
    assert http.post(emulator.token_url, data=form).status_code == 503
    assert http.post(emulator.token_url, data=form).status_code == 200
    assert emulator.stats()["token_requests_by_status"] == {"200": 2, "503": 1}


def test_faults_from_the_configuration_apply_from_the_start_and_after_reset(
    http: httpx.Client, tmp_path: Path
) -> None:
    config = {"faults": {"sequence": ["503"], "retry_after_s": 5}}
    with start_emulator(config, tmp_path) as emulator:
        first = send(http, emulator)
        assert (first.status_code, first.headers["Retry-After"]) == (503, "5")
        assert send(http, emulator).status_code == 207
        emulator.reset()
        assert send(http, emulator).status_code == 503


def test_stopping_the_emulator_answers_stalled_requests_first(tmp_path: Path) -> None:
    with (
        start_emulator({"faults": {"stall": True}}, tmp_path) as emulator,
        concurrent.futures.ThreadPoolExecutor(1) as pool,
        httpx.Client(timeout=30) as client,
    ):
        pending = pool.submit(send, client, emulator)
        emulator.wait_for(lambda s: s["requests_stalled"] == 1, what="the request to stall")
        emulator.process.terminate()
        assert emulator.process.wait(timeout=5) == 0  # not aiohttp's 60 s shutdown default
        assert pending.result(timeout=5).status_code == 207
