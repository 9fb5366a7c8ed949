"""Reading the W3C trace context of Kafka records, and the request span's link limit."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from connector.delivery.batcher import Batch, OutboundMessage
from connector.delivery.sender import DeliveryResult
from connector.offsets import PartitionState
from connector.records import SourceRecord
from connector.tracing.spans import Tracing, record_span_context

PARENT = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def record(*headers: tuple[str, bytes | None], offset: int = 0) -> SourceRecord:
    return SourceRecord("orders", 0, offset, None, None, b"{}", headers)


def test_a_traceparent_and_its_tracestate_are_read() -> None:
    context = record_span_context(
        record(("other", b"x"), ("TraceParent", PARENT), ("tracestate", b"vendor=abc,other=1"))
    )
    assert context is not None
    assert context.trace_id == 0x0AF7651916CD43DD8448EB211C80319C
    assert context.span_id == 0xB7AD6B7169203331
    assert context.is_remote
    assert context.trace_flags.sampled
    assert context.trace_state.get("vendor") == "abc"


@pytest.mark.parametrize(
    "value",
    [
        None,
        b"",
        b"garbage",
        b"00-00000000000000000000000000000000-b7ad6b7169203331-01",  # all-zero trace id
        b"00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",  # all-zero span id
        b"ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # version ff
        PARENT + b"-extra",  # version 00 has exactly four fields
        PARENT.upper(),  # lower-case hex only
        b"00-0af7651916cd43dd8448eb211c80319-b7ad6b7169203331-01",  # a digit short
    ],
)
def test_an_invalid_traceparent_is_ignored(value: bytes | None) -> None:
    assert record_span_context(record(("traceparent", value))) is None


def test_a_later_version_may_carry_more_fields() -> None:
    context = record_span_context(record(("traceparent", b"01" + PARENT[2:] + b"-what-next")))
    assert context is not None
    assert context.span_id == 0xB7AD6B7169203331


def test_no_headers_no_context() -> None:
    assert record_span_context(record()) is None


@given(
    st.integers(1, 2**128 - 1),
    st.integers(1, 2**64 - 1),
    st.integers(0, 255),
    st.sampled_from(["traceparent", "TRACEPARENT", "Traceparent"]),
)
def test_every_valid_traceparent_round_trips(
    trace_id: int, span_id: int, flags: int, name: str
) -> None:
    value = f"00-{trace_id:032x}-{span_id:016x}-{flags:02x}".encode()
    context = record_span_context(record((name, value)))
    assert context is not None
    assert (context.trace_id, context.span_id, int(context.trace_flags)) == (
        trace_id,
        span_id,
        flags,
    )


def test_a_request_links_at_most_the_sdk_limit_and_reads_no_further(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_SPAN_LINK_COUNT_LIMIT", "3")
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = Tracing(provider)
    state = PartitionState(("orders", 0))
    messages = [
        OutboundMessage(
            b"{}",
            record(("traceparent", f"00-{n + 1:032x}-{n + 1:016x}-01".encode()), offset=n),
            state,
            "m",
            "c",
        )
        for n in range(10)
    ]
    batch = Batch(("c",), "c", 0.0, messages, 100)
    tracing.request(batch).end(DeliveryResult(batch, accepted=messages, attempts=1))
    (span,) = exporter.get_finished_spans()
    assert [link.context.span_id for link in span.links] == [1, 2, 3]
    assert dict(span.attributes or {})["aep.request.messages"] == 10
