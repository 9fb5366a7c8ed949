"""Decode speed per record, in microseconds: JSON, Avro in the Confluent wire format, Avro with a
fixed schema file, and Avro of a recursive schema (the depth-limited reader).

    .venv/bin/python bench/decode_bench.py [--records 5000] [--repeat 30]

The records are the first three of the web-commerce example input
(mappings/examples/web-commerce.input.jsonl), as JSON and as Avro of an equivalent schema. Each
figure is the best of `--repeat` rounds of `--records` decodes (the cases take turns in each
round), in process CPU time, which other work on the machine disturbs less than wall time;
compare figures of the same run, not across machines.
"""

from __future__ import annotations

import argparse
import io
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastavro
import orjson

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from connector.source.decode import (  # noqa: E402
    ConfluentAvroDecoder,
    FixedAvroDecoder,
    decode_json,
)

INPUT = REPO_ROOT / "mappings" / "examples" / "web-commerce.input.jsonl"

NULLABLE_STRING: list[Any] = ["null", "string"]
EVENT_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "Event",
    "namespace": "bench",
    "fields": [
        {"name": "eventId", "type": "string"},
        {"name": "visitorId", "type": "string"},
        {"name": "ecid", "type": "string"},
        {"name": "eventType", "type": "string"},
        {"name": "ts", "type": "string"},
        {"name": "orderId", "type": NULLABLE_STRING, "default": None},
        {
            "name": "page",
            "type": {
                "type": "record",
                "name": "Page",
                "fields": [
                    {"name": "url", "type": "string"},
                    {"name": "title", "type": "string"},
                    {"name": "referrer", "type": NULLABLE_STRING, "default": None},
                ],
            },
        },
        {
            "name": "device",
            "type": {
                "type": "record",
                "name": "Device",
                "fields": [
                    {"name": "ua", "type": "string"},
                    {"name": "lang", "type": "string"},
                    {"name": "cookies", "type": "string"},
                    {"name": "js", "type": "string"},
                    {"name": "java", "type": "string"},
                    {"name": "colorDepth", "type": "int"},
                    {
                        "name": "viewport",
                        "type": {
                            "type": "record",
                            "name": "Viewport",
                            "fields": [{"name": "h", "type": "int"}, {"name": "w", "type": "int"}],
                        },
                    },
                ],
            },
        },
        {
            "name": "user",
            "type": {
                "type": "record",
                "name": "User",
                "fields": [{"name": "email", "type": "string"}],
            },
        },
        {"name": "currency", "type": "string"},
        {
            "name": "items",
            "type": {
                "type": "array",
                "items": {
                    "type": "record",
                    "name": "Item",
                    "fields": [
                        {"name": "sku", "type": "string"},
                        {"name": "name", "type": "string"},
                        {"name": "qty", "type": "string"},
                        {"name": "unitPrice", "type": "double"},
                    ],
                },
            },
        },
    ],
}

NODE_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "Node",
    "fields": [
        {"name": "label", "type": "string"},
        {"name": "next", "type": ["null", "Node"], "default": None},
    ],
}


class Registry:
    """A schema source that answers from memory, so the figures are decoding alone."""

    def __init__(self, schemas: dict[int, dict[str, Any]]) -> None:
        self.texts = {schema_id: orjson.dumps(s).decode() for schema_id, s in schemas.items()}

    def schema_text(self, schema_id: int) -> str:
        return self.texts[schema_id]


def avro(schema: dict[str, Any], datum: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), datum)
    return out.getvalue()


def event_records() -> list[dict[str, Any]]:
    """The example records that have every field of EVENT_SCHEMA (the first three)."""
    lines = [line for line in INPUT.read_text().splitlines() if line.strip()]
    records = [orjson.loads(line) for line in lines[:3]]
    for record in records:
        record.setdefault("orderId", None)
        record["page"].setdefault("referrer", None)
    return records


def chain(depth: int) -> dict[str, Any]:
    node: dict[str, Any] | None = None
    for n in range(depth):
        node = {"label": f"n{n}", "next": node}
    assert node is not None
    return node


def best_us(
    cases: dict[str, tuple[Callable[[bytes], Any], list[bytes]]], records: int, repeat: int
) -> dict[str, float]:
    """Best µs per record of each case; the cases take turns, so that load from elsewhere on
    the machine is spread over all of them instead of falling on one."""
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(repeat):
        for name, (decode, values) in cases.items():
            batch = (values * (records // len(values) + 1))[:records]
            started = time.process_time()
            for value in batch:
                decode(value)
            best[name] = min(best[name], time.process_time() - started)
    return {name: seconds / records * 1e6 for name, seconds in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()

    events = event_records()
    json_values = [orjson.dumps(e) for e in events]
    avro_values = [avro(EVENT_SCHEMA, e) for e in events]
    confluent = ConfluentAvroDecoder(Registry({1: EVENT_SCHEMA, 2: NODE_SCHEMA}))
    framed = [struct.pack(">bI", 0, 1) + v for v in avro_values]
    node_values = [struct.pack(">bI", 0, 2) + avro(NODE_SCHEMA, chain(d)) for d in (1, 5, 20)]
    with tempfile.TemporaryDirectory() as tmp:
        schema_file = Path(tmp) / "event.avsc"
        schema_file.write_bytes(orjson.dumps(EVENT_SCHEMA))
        fixed = FixedAvroDecoder(schema_file)

    def raw_fastavro(value: bytes) -> Any:
        return fastavro.schemaless_reader(io.BytesIO(value), fixed.schema, None)

    figures = best_us(
        {
            "json (orjson.loads alone)": (orjson.loads, json_values),
            "json (decode_json)": (decode_json, json_values),
            "avro (fastavro.schemaless_reader alone)": (raw_fastavro, avro_values),
            "avro, Confluent wire format": (confluent, framed),
            "avro, fixed schema file": (fixed, avro_values),
            "avro, recursive schema (depths 1, 5, 20)": (confluent, node_values),
        },
        args.records,
        args.repeat,
    )
    sizes = (
        f"JSON {sum(map(len, json_values)) // len(json_values)} B, "
        f"Avro {sum(map(len, avro_values)) // len(avro_values)} B per record (mean)"
    )
    print(f"decode benchmark: {args.records} records x {args.repeat} rounds, best; {sizes}")
    for name, us in figures.items():
        print(f"  {name:45s} {us:8.2f} µs/record")


if __name__ == "__main__":
    main()
