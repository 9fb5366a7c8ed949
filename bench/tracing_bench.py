"""What tracing costs when it is on: CPU per request span and per dead-letter span.

    .venv/bin/python bench/tracing_bench.py [--messages 490] [--rounds 7]

Spans go through the SDK's BatchSpanProcessor to an exporter that discards them, so the figures
are the worker's side (span creation, the records' trace context read from their headers, links,
the processor's queue), not the network. With tracing off none of this runs: the worker holds no
Tracing and OpenTelemetry is not imported (tests/worker/test_tracing.py checks that).

Figures (CPU time of this process, the best and the median of `--rounds`):
- request span, untraced records: one `send` span for a batch of `--messages` messages whose
  records carry no traceparent;
- request span, traced records: the same batch, every record with a traceparent (one link
  each, up to the SDK's 128-link limit; the context of every record is read);
- traced records: the difference, per link and per record of the batch;
- dead-letter span: one `dead-letter` span, child of its record's context.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence

from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

from connector.delivery.batcher import Batch, OutboundMessage
from connector.delivery.sender import DeliveryResult
from connector.errors import DeadLetter
from connector.offsets import PartitionState
from connector.records import SourceRecord
from connector.tracing.spans import Tracing


class Discard(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def batch(messages: int, traced: bool) -> Batch:
    state = PartitionState(("orders", 0))
    items = []
    for offset in range(messages):
        headers: tuple[tuple[str, bytes | None], ...] = ()
        if traced:
            parent = f"00-{offset + 1:032x}-{offset + 1:016x}-01".encode()
            headers = (("traceparent", parent), ("source", b"web"))
        record = SourceRecord("orders", 0, offset, None, b"k", b"{}", headers)
        items.append(OutboundMessage(b"x" * 1500, record, state, "orders", "conn"))
    return Batch(("conn",), "conn", 0.0, items, 1500 * messages)


def cpu_per_call(action: Callable[[], None], calls: int, rounds: int) -> tuple[float, float]:
    """(best, median) CPU µs per call over `rounds` rounds of `calls` calls."""
    figures = []
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(calls):
            action()
        figures.append((time.process_time() - started) / calls * 1e6)
    return min(figures), statistics.median(figures)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=490, help="Messages per request.")
    parser.add_argument("--rounds", type=int, default=7, help="Rounds; best and median shown.")
    args = parser.parse_args()

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Discard(), max_queue_size=100_000))
    tracing = Tracing(provider, "https://dcs.adobedc.net")
    plain, traced = batch(args.messages, False), batch(args.messages, True)
    result = DeliveryResult(plain, accepted=list(plain.messages), attempts=1, last_status=207)
    letter = DeadLetter("api", "api_rejected", "x", status=400, mapping="orders", attempts=1)
    record = traced.messages[0].record

    def request(which: Batch) -> Callable[[], None]:
        return lambda: tracing.request(which).end(result)

    untraced_best, untraced_median = cpu_per_call(request(plain), 200, args.rounds)
    traced_best, traced_median = cpu_per_call(request(traced), 200, args.rounds)
    dead_best, dead_median = cpu_per_call(
        lambda: tracing.dead_letter(record, letter, "dlq"), 2000, args.rounds
    )
    provider.shutdown()
    linked = min(args.messages, SpanLimits().max_links or args.messages)
    extra = traced_median - untraced_median
    print(
        f"request span, {args.messages} untraced records: {untraced_best:.1f} µs "
        f"(median {untraced_median:.1f}; {untraced_median / args.messages:.2f} µs a record)"
    )
    print(
        f"request span, {args.messages} traced records: {traced_best:.1f} µs "
        f"(median {traced_median:.1f}; {linked} linked)"
    )
    print(
        f"traced records: {extra / linked:.2f} µs per link, "
        f"{extra / args.messages:.2f} µs a record of the batch"
    )
    print(f"dead-letter span: {dead_best:.1f} µs (median {dead_median:.1f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
