"""The worker's spans: one per API request and one per dead letter, tied to the trace context
the records carry in their Kafka headers (W3C Trace Context: `traceparent`, `tracestate`).

A request carries many records, each from its own trace, and a span has one parent: so a
request span is a root span that *links* to each record's context. That is OpenTelemetry's
answer for batches (the messaging conventions: a batch operation links to every message's
creation context; a parent would pick one record's trace and misstate the others). A group
of raw payloads, posted one by one, is linked the same way: one shape for every request span,
and a request's latency never stretches the producer's trace. A dead letter is about one
record: its span is a *child* of that record's context (the conventions allow the parent for
a single message), so it shows up inside the trace that produced the record, where one looks
for what became of it.

No payload, error message or API message goes into a span: those can quote record values.
Stages, reason codes, statuses, counts and offsets do.

The headers are read here rather than through the SDK's propagator: a request reads up to 128
records' contexts (the SDK's link limit), and the propagator's Context machinery costs about
2.5 times this direct W3C parse per record (bench/tracing_bench.py).
"""

from __future__ import annotations

import re
import threading
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)
from opentelemetry.util.types import AttributeValue

from connector import __version__
from connector.delivery.batcher import Batch
from connector.delivery.sender import DeliveryResult
from connector.errors import DeadLetter
from connector.records import SourceRecord
from connector.tracing.provider import provider_from_environment

#: How long the worker waits for the last spans to be exported when it stops.
SHUTDOWN_BOUND_S = 5.0

#: W3C Trace Context `traceparent`: version-traceid-parentid-flags (lower-case hex).
_TRACEPARENT = re.compile(
    rb"[ \t]*([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[^ \t]*)?[ \t]*"
)


def record_span_context(record: SourceRecord) -> SpanContext | None:
    """The remote span context in the record's `traceparent` (and `tracestate`) headers, header
    names compared without case; None when it carries none, or one that is not valid."""
    headers = record.headers
    if not headers:
        return None
    parent = state = None
    for name, value in headers:
        if value is not None:
            lowered = name.lower()
            if lowered == "traceparent":
                parent = value
            elif lowered == "tracestate":
                state = value
    if parent is None:
        return None
    match = _TRACEPARENT.fullmatch(parent)
    if match is None:
        return None
    version, trace_hex, span_hex, flags, rest = match.groups()
    if version == b"ff" or (version == b"00" and rest):  # as the specification says
        return None
    trace_id, span_id = int(trace_hex, 16), int(span_hex, 16)
    if not trace_id or not span_id:
        return None
    trace_state = None
    if state:
        trace_state = TraceState.from_header([state.decode("utf-8", errors="replace")])
    return SpanContext(trace_id, span_id, True, TraceFlags(int(flags, 16)), trace_state)


def record_context(record: SourceRecord) -> Context:
    """A context whose parent is the record's span (an empty one when it carries none)."""
    span_context = record_span_context(record)
    if span_context is None:
        return Context()
    return trace.set_span_in_context(NonRecordingSpan(span_context), Context())


class RequestSpan:
    """A request's span, open while its request thread delivers the batch."""

    __slots__ = ("_span",)

    def __init__(self, span: Span) -> None:
        self._span = span

    def end(self, result: DeliveryResult) -> None:
        span = self._span
        if result.last_status is not None:
            span.set_attribute("http.response.status_code", result.last_status)
        span.set_attribute("aep.request.attempts", result.attempts)
        if result.attempts > 1:
            span.set_attribute("http.request.resend_count", result.attempts - 1)
        span.set_attribute("aep.messages.accepted", len(result.accepted))
        span.set_attribute("aep.messages.rejected", len(result.rejected))
        span.set_attribute("aep.messages.unfinished", len(result.unfinished))
        if result.halt is not None:
            span.set_attribute("error.type", "halt")
            span.set_status(Status(StatusCode.ERROR, result.halt))
        span.end()


class Tracing:
    """Makes the worker's spans with `provider` (the OTEL_* configured one in production, one
    with an in-memory exporter in tests). Safe to call from any thread."""

    def __init__(self, provider: TracerProvider, base_url: str = "") -> None:
        self.provider = provider
        self._tracer = provider.get_tracer("aep-connector", __version__)
        self._server = urlsplit(base_url).hostname or ""
        # Links past the SDK's limit (OTEL_SPAN_LINK_COUNT_LIMIT, 128) would be dropped anyway.
        self._max_links = SpanLimits().max_links

    @classmethod
    def from_environment(cls, base_url: str) -> Tracing:
        return cls(provider_from_environment(), base_url)

    def request(self, batch: Batch) -> RequestSpan:
        """Start the span of one request (its attempts and split halves included)."""
        raw = batch.raw_flow_id is not None
        template = "/collection/{connectionId}" if raw else "/collection/batch/{connectionId}"
        attributes: dict[str, AttributeValue] = {
            "aep.connection.id": batch.connection_id,
            "aep.request.messages": len(batch.messages),
            # A raw group is sent as its payloads alone, without the batch framing.
            "aep.request.bytes": sum(len(m.body) for m in batch.messages) if raw else batch.size,
            "messaging.batch.message_count": len(batch.messages),
            "http.request.method": "POST",
            "url.template": template,
        }
        if self._server:
            attributes["server.address"] = self._server
        if raw:
            attributes["aep.flow.id"] = str(batch.raw_flow_id)
        links: list[Link] = []
        limit = self._max_links
        for message in batch.messages:
            if limit is not None and len(links) >= limit:
                break  # the SDK would drop them: not even read
            span_context = record_span_context(message.record)
            if span_context is not None:
                links.append(Link(span_context))  # attributes would cost the SDK 4x a link
        span = self._tracer.start_span(
            f"send {batch.connection_id}",
            context=Context(),  # a root: the records' traces are linked, not parents
            kind=SpanKind.CLIENT,
            attributes=attributes,
            links=links,
        )
        return RequestSpan(span)

    def dead_letter(self, record: SourceRecord, letter: DeadLetter, topic: str) -> None:
        """A span for a record on its way to the dead-letter topic, in the record's trace."""
        attributes: dict[str, AttributeValue] = {
            "messaging.system": "kafka",
            "messaging.operation.type": "send",
            "messaging.destination.name": topic,
            "aep.source.topic": record.topic,
            "aep.source.partition": record.partition,
            "aep.source.offset": record.offset,
            "aep.dead_letter.stage": letter.stage,
            "aep.dead_letter.reason": letter.error_class,
            "error.type": letter.error_class,
        }
        if letter.mapping is not None:
            attributes["aep.mapping"] = letter.mapping
        if letter.status is not None:
            attributes["http.response.status_code"] = letter.status
        if letter.attempts:
            attributes["aep.request.attempts"] = letter.attempts
        span = self._tracer.start_span(
            f"dead-letter {letter.stage}",
            context=record_context(record),
            kind=SpanKind.PRODUCER,
            attributes=attributes,
        )
        span.set_status(Status(StatusCode.ERROR, letter.error_class))
        span.end()

    def shutdown(self, timeout_s: float = SHUTDOWN_BOUND_S) -> None:
        """Export what is left, for at most `timeout_s`: a collector that does not answer
        must not hold the worker past its exit bound (the thread is then abandoned)."""
        done = threading.Thread(target=self.provider.shutdown, name="tracing-shutdown", daemon=True)
        done.start()
        done.join(timeout_s)
