"""The hand-written twins of the example mappings (bench/twins) produce exactly the compiled
mappings' envelopes: on the example inputs and on the benchmark's generated records. The
benchmark's ratio compares equal work only because of this."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from bench import mapping_bench
from connector.mapping import TargetDefaults, load_mapping_file
from connector.records import SourceRecord

EXAMPLES = Path(__file__).resolve().parents[2] / "mappings" / "examples"


def envelopes(
    name: str, records: list[dict[str, object]], twin: Callable[..., object]
) -> tuple[list[bytes], list[bytes]]:
    mapping = load_mapping_file(EXAMPLES / f"{name}.yaml", TargetDefaults("inlet", "ORG@AdobeOrg"))
    compiled: list[bytes] = []
    hand: list[bytes] = []
    for number, record in enumerate(records):
        meta = SourceRecord(mapping.source_topics[0], 0, number, None, None, None)
        entity = mapping.apply(record, meta).entity
        compiled.append(b"skipped" if entity is None else mapping.envelope(entity, 1))
        other = twin(record, meta)
        assert other is None or isinstance(other, dict)
        hand.append(b"skipped" if other is None else mapping.envelope(other, 1))
    return compiled, hand


@pytest.mark.parametrize("name", sorted(mapping_bench.TWINS))
def test_twin_gives_the_same_envelopes_on_the_example_input(name: str) -> None:
    lines = (EXAMPLES / f"{name}.input.jsonl").read_bytes().splitlines()
    compiled, hand = envelopes(
        name, [orjson.loads(line) for line in lines], mapping_bench.TWINS[name]
    )
    assert hand == compiled


@pytest.mark.parametrize("name", sorted(mapping_bench.TWINS))
def test_twin_gives_the_same_envelopes_on_benchmark_records(name: str) -> None:
    rng = random.Random(7)
    records = [mapping_bench.GENERATORS[name](rng, i) for i in range(300)]
    compiled, hand = envelopes(name, records, mapping_bench.TWINS[name])
    assert hand == compiled
