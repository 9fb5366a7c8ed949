"""Traces through the worker's loop (in-memory Kafka twin, scripted API), exported by the SDK's
in-memory exporter: a span per request linked to each record's `traceparent`, a span per dead
letter inside its record's trace; and, with tracing off, OpenTelemetry never imported."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from connector.tracing.spans import Tracing
from connector.worker import EXIT_HALT, EXIT_OK
from tests.test_worker import TOPIC, Script, Step, Until, accept_all, make_worker
from tests.worker.test_raw_payloads import FLOW, RAW_MAPPING

REPO = Path(__file__).resolve().parents[2]


def traceparent(n: int) -> tuple[str, str, bytes]:
    """A W3C traceparent of record n: its trace id, its span id, and the header value."""
    trace_id, span_id = f"{n + 1:032x}", f"{n + 1:016x}"
    return trace_id, span_id, f"00-{trace_id}-{span_id}-01".encode()


def produce_traced(partition: int, offsets: range, untraced: frozenset[int] = frozenset()) -> Step:
    """Records like Script.produce's, each but `untraced` ones with its own traceparent."""

    def step(script: Script) -> None:
        for offset in offsets:
            value = orjson.dumps({"id": f"{partition}-{offset}", "n": offset})
            headers = None if offset in untraced else [("traceparent", traceparent(offset)[2])]
            script.broker.produce(TOPIC, [value], partition, key=b"k", headers=headers)

    return step


@pytest.fixture
def exporter(monkeypatch: pytest.MonkeyPatch) -> InMemorySpanExporter:
    """The worker's tracing, as `tracing.enabled` would start it, exporting to memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = Tracing(provider, "http://api.test")
    monkeypatch.setattr("connector.worker.start_tracing", lambda settings: tracing)
    return exporter


def spans(exporter: InMemorySpanExporter, prefix: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name.startswith(prefix)]


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def test_a_request_span_links_every_traced_record(
    tmp_path: Path, exporter: InMemorySpanExporter
) -> None:
    steps: list[Step | Until] = [
        produce_traced(0, range(0, 5), untraced=frozenset({2})),
        Until(lambda: script.committed(0) == 5),
    ]
    worker, script, _ = make_worker(tmp_path, steps, linger_ms=50)
    assert worker.run() == EXIT_OK
    (span,) = spans(exporter, "send ")
    assert span.name == "send conn"
    assert span.kind is SpanKind.CLIENT
    assert span.parent is None  # a root: the records' traces are linked
    a = attrs(span)
    assert a["aep.connection.id"] == "conn"
    assert a["aep.request.messages"] == a["messaging.batch.message_count"] == 5
    assert a["aep.request.bytes"] > 5 * 50
    assert a["http.response.status_code"] == 207
    assert a["aep.request.attempts"] == 1
    assert (a["aep.messages.accepted"], a["aep.messages.rejected"]) == (5, 0)
    assert a["url.template"] == "/collection/batch/{connectionId}"
    assert a["server.address"] == "api.test"
    linked = {(link.context.trace_id, link.context.span_id) for link in span.links}
    expected = {traceparent(n)[:2] for n in (0, 1, 3, 4)}
    assert linked == {(int(t, 16), int(s, 16)) for t, s in expected}
    assert span.status.status_code is StatusCode.UNSET


def test_retries_show_as_attempts_of_one_request_span(
    tmp_path: Path, exporter: InMemorySpanExporter
) -> None:
    answers = iter([httpx.Response(503), httpx.Response(429)])

    def flaky(request: httpx.Request) -> httpx.Response:
        return next(answers, None) or accept_all(request)

    steps: list[Step | Until] = [
        produce_traced(0, range(0, 2)),
        Until(lambda: script.committed(0) == 2),
    ]
    worker, script, _ = make_worker(tmp_path, steps, flaky, linger_ms=50)
    assert worker.run() == EXIT_OK
    (span,) = spans(exporter, "send ")
    a = attrs(span)
    assert (a["aep.request.attempts"], a["http.request.resend_count"]) == (3, 2)
    assert a["http.response.status_code"] == 207


def test_a_dead_letter_span_is_a_child_of_its_record_trace(
    tmp_path: Path, exporter: InMemorySpanExporter
) -> None:
    def reject_n1(request: httpx.Request) -> httpx.Response:
        messages = orjson.loads(request.content)["messages"]
        return httpx.Response(
            207,
            json={
                "responses": [
                    {"status": 400, "message": "quoting value 4711-secret"}
                    if m["body"]["xdmEntity"]["_id"].endswith("-1")
                    else {"xactionId": f"b:{i}"}
                    for i, m in enumerate(messages)
                ]
            },
        )

    def bad_json_at_3(script: Script) -> None:
        script.broker.produce(
            TOPIC, [b"{not json"], 0, key=b"k", headers=[("traceparent", traceparent(3)[2])]
        )

    steps: list[Step | Until] = [
        produce_traced(0, range(0, 3)),
        bad_json_at_3,
        Until(lambda: script.committed(0) == 4),
    ]
    worker, script, producer = make_worker(tmp_path, steps, reject_n1, linger_ms=50)
    assert worker.run() == EXIT_OK
    assert len(producer.produced) == 2
    by_stage = {attrs(s)["aep.dead_letter.stage"]: s for s in spans(exporter, "dead-letter ")}
    assert set(by_stage) == {"api", "decode"}

    api = by_stage["api"]
    trace_id, span_id, _ = traceparent(1)
    assert api.name == "dead-letter api"
    assert api.kind is SpanKind.PRODUCER
    assert api.parent is not None
    assert (api.context.trace_id, api.parent.span_id) == (int(trace_id, 16), int(span_id, 16))
    a = attrs(api)
    assert a["aep.dead_letter.reason"] == a["error.type"] == "api_rejected"
    assert (a["aep.source.topic"], a["aep.source.partition"], a["aep.source.offset"]) == (
        TOPIC,
        0,
        1,
    )
    assert a["http.response.status_code"] == 400
    assert a["aep.mapping"] == "orders"
    assert a["messaging.destination.name"] == "dlq"
    assert api.status.status_code is StatusCode.ERROR
    assert "4711" not in str(a)  # the API's message can quote values: never in a span

    decode = by_stage["decode"]
    assert decode.parent is not None
    assert decode.parent.span_id == int(traceparent(3)[1], 16)
    assert attrs(decode)["aep.dead_letter.reason"] == "invalid_json"
    (request,) = spans(exporter, "send ")
    assert (attrs(request)["aep.messages.accepted"], attrs(request)["aep.messages.rejected"]) == (
        2,
        1,
    )


def test_a_dead_letter_without_a_trace_context_is_a_root_span(
    tmp_path: Path, exporter: InMemorySpanExporter
) -> None:
    def bad(script: Script) -> None:
        script.broker.produce(TOPIC, [b"{not json"], 0, headers=[("traceparent", b"garbage")])

    steps: list[Step | Until] = [bad, Until(lambda: script.committed(0) == 1)]
    worker, script, _ = make_worker(tmp_path, steps)
    assert worker.run() == EXIT_OK
    (span,) = spans(exporter, "dead-letter ")
    assert span.parent is None


def test_a_halt_marks_the_request_span_as_an_error(
    tmp_path: Path, exporter: InMemorySpanExporter
) -> None:
    steps: list[Step | Until] = [produce_traced(0, range(0, 2)), Until(lambda: False)]
    worker, _script, _ = make_worker(tmp_path, steps, lambda r: httpx.Response(404), linger_ms=50)
    assert worker.run() == EXIT_HALT
    (span,) = spans(exporter, "send ")
    assert span.status.status_code is StatusCode.ERROR
    assert "404" in (span.status.description or "")
    assert attrs(span)["error.type"] == "halt"
    assert attrs(span)["aep.messages.unfinished"] == 2


def test_a_raw_request_span_names_its_flow_and_links_its_record(
    tmp_path: Path, exporter: InMemorySpanExporter
) -> None:
    def api(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/collection/batch/"):
            return accept_all(request)
        return httpx.Response(200, json={"xactionId": "t:1:1"})

    steps: list[Step | Until] = [
        produce_traced(0, range(0, 1)),
        Until(lambda: script.committed(0) == 1),
    ]
    worker, script, _ = make_worker(tmp_path, steps, api, extra_mappings=(RAW_MAPPING,))
    assert worker.run() == EXIT_OK
    (raw,) = spans(exporter, "send dataflow")
    a = attrs(raw)
    assert a["url.template"] == "/collection/{connectionId}"
    assert a["aep.flow.id"] == FLOW
    assert (a["aep.request.messages"], a["http.response.status_code"]) == (1, 200)
    assert a["aep.request.bytes"] == len(orjson.dumps({"id": "0-0", "n": 0}))  # no framing
    ((link),) = raw.links
    assert link.context.span_id == int(traceparent(0)[1], 16)
    assert len(spans(exporter, "send conn")) == 1  # the XDM message's own request


ZERO_COST = textwrap.dedent(
    """
    import sys, tempfile
    from pathlib import Path
    from tests.test_worker import Until, make_worker, produce
    steps = [produce(0, range(0, 20)), Until(lambda: script.committed(0) == 20)]
    worker, script, _ = make_worker(Path(tempfile.mkdtemp()), steps)
    assert worker.run() == 0
    loaded = sorted(name for name in sys.modules if name.startswith("opentelemetry"))
    print("tracing:", worker.tracing is not None, "otel modules:", len(loaded))
    """
)


@pytest.mark.parametrize("enabled", [False, True])
def test_with_tracing_off_opentelemetry_is_never_imported(enabled: bool) -> None:
    """A whole worker run (records consumed, sent, committed) with tracing off loads no
    OpenTelemetry module; the same run with tracing on does (so the check can fail)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AEP_CONNECTOR_", "OTEL_"))}
    if enabled:
        env |= {"AEP_CONNECTOR_TRACING__ENABLED": "true", "OTEL_TRACES_EXPORTER": "none"}
    done = subprocess.run(
        [sys.executable, "-c", ZERO_COST],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    if enabled:
        assert "tracing: True otel modules: " in done.stdout
        assert "otel modules: 0" not in done.stdout
    else:
        assert "tracing: False otel modules: 0" in done.stdout
