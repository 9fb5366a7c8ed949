"""Validation benchmark: the cost per record of checking entities against the mapping's exported
XDM schema (mapping `validate.schema`), the worker's `validate` stage.

    .venv/bin/python bench/validation_bench.py [--records 20000] [--rounds 5] [--compare]

Maps realistic records through each example mapping first (not measured), then prints, per
example, CPU µs per entity for `mapping.validator.validate` (jsonschema-rs), best round of
process CPU time. `--compare` also measures the alternatives considered, on the same schema and
entities: fastjsonschema (when installed) and the `jsonschema` package as the emulator uses it,
and shows which of them check the formats XDM uses (a validator that skips a format lets bad
records reach the API).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mapping_bench import make_record

from connector.mapping import CompiledMapping, TargetDefaults, load_mapping_file
from connector.records import SourceRecord

EXAMPLES = Path(__file__).resolve().parent.parent / "mappings" / "examples"

#: Values each validator should reject (one per XDM format), and values it should accept.
FORMAT_CASES: dict[str, tuple[list[str], list[str]]] = {
    "date-time": (["2024-05-01T12:34:56Z", "2024-05-01T12:34:56.5+02:00"],
                  ["2024-05-01T12:34:56", "2024-02-30T00:00:00Z", "2024-05-01"]),
    "date": (["2024-05-01"], ["2024-13-01", "2024-02-30", "20240501", "2024-05-01T00:00:00Z"]),
    "uri": (["https://shop.example.com/p?q=1#r", "urn:isbn:0451450523"],
            ["shop.example.com/x", "https://x.example/a b"]),
    "uri-reference": (["fc9fb97068e28f16", "/p?q=1"], ["a b"]),
}  # fmt: skip


def example_entities(name: str, count: int) -> tuple[CompiledMapping, list[dict[str, object]]]:
    """The example mapping and `count` entities it makes (varied generated events for
    web-commerce, the sample input repeated for crm-profile)."""
    mapping = load_mapping_file(EXAMPLES / f"{name}.yaml", TargetDefaults("inlet", "ORG@AdobeOrg"))
    topic = mapping.source_topics[0]
    if name == "web-commerce":
        rng = random.Random(42)
        records = [make_record(rng, i) for i in range(count)]
    else:
        lines = (EXAMPLES / f"{name}.input.jsonl").read_bytes().splitlines()
        samples = [orjson.loads(line) for line in lines if line.strip()]
        records = [samples[i % len(samples)] for i in range(count)]
    entities = []
    for index, record in enumerate(records):
        entity = mapping.apply(record, SourceRecord(topic, 0, index, None, None, None)).entity
        if entity is not None:
            entities.append(entity)
    return mapping, entities


def cpu_us_per_call(check: Callable[[object], object], items: list[dict[str, object]],
                    rounds: int) -> float:  # fmt: skip
    for item in items[:500]:  # warm up
        check(item)
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for item in items:
            check(item)
        best = min(best, time.process_time() - start)
    return best / len(items) * 1e6


def alternatives(document: dict[str, object]) -> dict[str, Callable[[object], bool]]:
    """Validity checks of the other candidate libraries for the same schema."""
    from connector.emulator.checks import build_validator

    found: dict[str, Callable[[object], bool]] = {}
    try:
        import fastjsonschema
    except ImportError:
        print("  (fastjsonschema is not installed: pip install fastjsonschema to compare it)")
    else:
        compiled = fastjsonschema.compile(document)

        def fast_valid(value: object) -> bool:
            try:
                compiled(value)
            except fastjsonschema.JsonSchemaValueException:
                return False
            return True

        found["fastjsonschema"] = fast_valid
    emulator = build_validator(dict(document))
    found["jsonschema (as the emulator)"] = emulator.is_valid
    return found


def format_correctness(make: Callable[[dict[str, object]], Callable[[object], bool]]) -> str:
    """How many of FORMAT_CASES a validator judges right, and which formats it gets wrong."""
    right = total = 0
    wrong: set[str] = set()
    for fmt, (good, bad) in FORMAT_CASES.items():
        is_valid = make({"$schema": "http://json-schema.org/draft-06/schema#", "format": fmt})
        for value, expected in [(v, True) for v in good] + [(v, False) for v in bad]:
            total += 1
            if is_valid(value) == expected:
                right += 1
            else:
                wrong.add(fmt)
    misses = f"; wrong on {', '.join(sorted(wrong))}" if wrong else ""
    return f"{right}/{total} format cases right{misses}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--compare", action="store_true", help="also measure the alternatives")
    args = parser.parse_args()

    from connector.xdm import EntityValidator, XdmSchema

    for name in ("web-commerce", "crm-profile"):
        mapping, entities = example_entities(name, args.records)
        validator = mapping.validator
        assert validator is not None, f"{name}: the example mapping has no validate.schema"
        invalid = sum(validator.validate(entity) is not None for entity in entities)
        size = sum(len(orjson.dumps(entity)) for entity in entities) // len(entities)
        print(
            f"{name}: {len(entities)} entities of ~{size} bytes, {invalid} invalid, schema "
            f"{validator.schema.name} (best of {args.rounds} rounds, process CPU time)"
        )
        cost = cpu_us_per_call(validator.validate, entities, args.rounds)
        print(f"  validation per record: {cost:.2f} µs (jsonschema-rs, {1e6 / cost:,.0f}/s)")
        if not args.compare:
            continue
        for label, check in alternatives(validator.schema.document).items():
            rounds = args.rounds if "fast" in label else 1
            cost = cpu_us_per_call(check, entities[:5000], rounds)
            print(f"  {label}: {cost:.2f} µs per record")

    if args.compare:
        print("formats (XDM: date-time, date, uri, uri-reference):")

        def rs_valid(schema: dict[str, object]) -> Callable[[object], bool]:
            validator = EntityValidator(XdmSchema(schema))
            return lambda value: validator.validate(value) is None

        print(f"  jsonschema-rs: {format_correctness(rs_valid)}")
        for label in alternatives({}):
            print(f"  {label}: {format_correctness(lambda s, lb=label: alternatives(s)[lb])}")


if __name__ == "__main__":
    main()
