"""The floor of the worker's work per record, measured the way the worker does it.

    .venv/bin/python bench/floor_bench.py [--records 200000] [--partitions 8] [--single-cpu]

Consume from the real broker (batched consume with the worker's own consumer configuration),
parse (orjson), map with the hand-written twin of the web-commerce example
(bench/twins/web_commerce.py, asserted identical to the compiled mapping by
tests/mapping/test_twins.py), build the envelope with the worker's encoder, and frame request
bodies up to the byte limit: everything a worker must do for a record, and nothing it does to
be safe (no tracker, no dead-letter path, no threads, no HTTP). It prints CPU-µs per record
(user + system of the whole process, librdkafka's threads included) and records/s.

bench/worker_bench.py runs the same measurement on the same topic (`--floor`) and prints the
worker's CPU per record as a ratio to it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench.twins.web_commerce import map_record  # noqa: E402
from connector.cpu import pin_to_one_cpu  # noqa: E402
from connector.mapping import TargetDefaults, load_mapping_file  # noqa: E402
from connector.records import SourceRecord  # noqa: E402
from connector.settings import Settings  # noqa: E402
from connector.source.kafka import consumer_config  # noqa: E402
from tests.support.kafka import unique_name  # noqa: E402

MAPPING = REPO_ROOT / "mappings" / "examples" / "web-commerce.yaml"
FRAMING = len(b'{"messages":[]}')


def measure_floor(
    bootstrap: str,
    topic: str,
    records: int,
    max_request_bytes: int,
    timeout_s: float = 600,
    single_cpu: bool = False,
) -> dict[str, Any]:
    """Consume `records` records of `topic` from the start and do the floor's work on each;
    with `single_cpu`, on one CPU with librdkafka's threads, as the worker with ops.single_cpu."""
    mapping = load_mapping_file(MAPPING, TargetDefaults("floor", "FLOOR@AdobeOrg"))
    envelope = mapping.envelope
    settings = Settings(kafka={"bootstrap_servers": bootstrap, "group_id": unique_name("floor")})
    allowed = os.sched_getaffinity(0) if single_cpu else None
    if single_cpu:
        pin_to_one_cpu()  # this thread, and librdkafka's threads the consumer starts
    consumer = Consumer(consumer_config(settings))
    consumer.subscribe([topic])
    cpu_start = time.process_time()
    wall_start = time.monotonic()
    first_record_at: float | None = None
    taken = requests = request_bytes = 0
    bodies: list[bytes] = []
    size = FRAMING
    try:
        while taken < records:
            if time.monotonic() - wall_start > timeout_s:
                raise SystemExit(f"floor: only {taken} of {records} records in {timeout_s} s")
            messages = consumer.consume(1000, 0.1)
            if not messages:
                continue
            now_ms = time.time_ns() // 1_000_000
            first_record_at = first_record_at or time.monotonic()
            for message in messages:
                if message.error() is not None:
                    continue
                value = orjson.loads(message.value())
                meta = SourceRecord(topic, message.partition(), message.offset(), None, None, None)
                entity = map_record(value, meta)
                if entity is None:
                    continue
                body = envelope(entity, now_ms)
                if size + len(body) + 1 > max_request_bytes and bodies:
                    request = b'{"messages":[' + b",".join(bodies) + b"]}"
                    requests += 1
                    request_bytes += len(request)
                    bodies, size = [], FRAMING
                bodies.append(body)
                size += len(body) + 1
                taken += 1
        if bodies:
            request = b'{"messages":[' + b",".join(bodies) + b"]}"
            requests += 1
            request_bytes += len(request)
        cpu = time.process_time() - cpu_start
        elapsed = time.monotonic() - (first_record_at or wall_start)
    finally:
        consumer.close()
        if allowed is not None:
            os.sched_setaffinity(0, allowed)
    return {
        "records": taken,
        "cpu_s": round(cpu, 2),
        "cpu_us_per_record": round(cpu / taken * 1e6, 1),
        "records_per_s": round(taken / elapsed),
        "requests": requests,
        "mean_request_bytes": round(request_bytes / requests) if requests else 0,
    }


def main() -> None:
    from bench.worker_bench import broker, produce_records
    from tests.support.kafka import create_topic

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--record-size", type=int, default=1000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--max-request-bytes", type=int, default=1_000_000)
    parser.add_argument("--single-cpu", action="store_true", help="Run on one CPU.")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="floor-bench-") as work,
        broker(Path(work)) as (
            bootstrap,
            _pid,
        ),
    ):
        topic = create_topic(bootstrap, unique_name("floor-web-commerce"), args.partitions)
        produce_records(bootstrap, topic, args.records, args.record_size, args.partitions)
        figures = measure_floor(
            bootstrap, topic, args.records, args.max_request_bytes, single_cpu=args.single_cpu
        )
    print(
        f"floor: {figures['cpu_us_per_record']} CPU-µs/record, "
        f"{figures['records_per_s']:,} records/s, {figures['requests']} requests of "
        f"{figures['mean_request_bytes']:,} B mean (load {os.getloadavg()[0]:.1f})"
    )
    print(orjson.dumps(figures).decode())


if __name__ == "__main__":
    main()
