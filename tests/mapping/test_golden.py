"""The examples in mappings/examples are golden tests: each mapping applied to its sample
input must give exactly its expected output (one entity per line, filtered lines omitted)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from connector.mapping import MappingFailure, TargetDefaults, load_mapping_file
from connector.records import SourceRecord

EXAMPLES = Path(__file__).resolve().parents[2] / "mappings" / "examples"
NAMES = sorted(path.stem for path in EXAMPLES.glob("*.yaml"))


def test_both_examples_exist() -> None:
    assert NAMES == ["crm-profile", "web-commerce"]


def map_example(name: str) -> tuple[list[dict[str, object]], list[str]]:
    """Entities and warnings for the example's input, with the Kafka metadata `map` uses."""
    mapping = load_mapping_file(EXAMPLES / f"{name}.yaml", TargetDefaults("inlet", "ORG@AdobeOrg"))
    lines = (EXAMPLES / f"{name}.input.jsonl").read_bytes().splitlines()
    entities: list[dict[str, object]] = []
    warnings: list[str] = []
    for number, line in enumerate(lines, start=1):
        meta = SourceRecord(mapping.source_topics[0], 0, number - 1, None, None, None)
        result = mapping.apply(orjson.loads(line), meta)
        warnings.extend(f"line {number}: {w}" for w in result.warnings)
        if result.entity is not None:
            entities.append(result.entity)
    return entities, warnings


@pytest.mark.parametrize("name", NAMES)
def test_example_output_matches_the_expected_file(name: str) -> None:
    expected = [
        orjson.loads(line)
        for line in (EXAMPLES / f"{name}.expected.jsonl").read_bytes().splitlines()
    ]
    entities, _warnings = map_example(name)
    assert entities == expected


def test_web_commerce_shape() -> None:
    entities, warnings = map_example("web-commerce")
    assert len(entities) == 4  # the heartbeat is filtered out
    first = entities[0]
    assert set(first) >= {"_id", "timestamp", "environment", "productListItems", "commerce"}
    assert first["identityMap"] == {
        "ECID": [
            {
                "id": "45071524312846582813715271237741389562",
                "authenticatedState": "ambiguous",
                "primary": True,
            }
        ]
    }
    assert first["commerce"] == {"productViews": {"value": 1}}
    assert warnings == [
        "line 5: environment.browserDetails.cookiesEnabled: "
        "the string is not one of the boolean words",
        "line 5: productListItems[*].quantity: to_integer: the string is not an integer",
        "line 5: productListItems[*].priceTotal: to_integer: the string is not an integer",
    ]
    destinations = (EXAMPLES / "web-commerce.yaml").read_text().count("destination:")
    assert 24 <= destinations <= 30


def test_web_commerce_id_is_a_stable_hash_of_key_fields() -> None:
    first_run, _ = map_example("web-commerce")
    second_run, _ = map_example("web-commerce")
    assert [e["_id"] for e in first_run] == [e["_id"] for e in second_run]
    assert len({e["_id"] for e in first_run}) == len(first_run)


def test_crm_profile_is_strict() -> None:
    mapping = load_mapping_file(EXAMPLES / "crm-profile.yaml", TargetDefaults("inlet", None))
    meta = SourceRecord("crm.profiles", 0, 0, None, None, None)
    with pytest.raises(MappingFailure, match=r"person\.birthDate"):
        mapping.apply({"customerId": "C-9", "birthDate": "1969-03-14"}, meta)
