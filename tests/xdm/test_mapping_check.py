"""Mappings checked against their exported XDM schema at load: one test per kind of problem,
on the realistic exports of mappings/examples. Every problem names the mapping file, the
entry's line and the schema pointer."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from connector.mapping import (
    CompiledMapping,
    MappingLoadError,
    TargetDefaults,
    load_mapping_file,
    load_mappings,
    mapping_files,
)
from tests.xdm.support import EVENT_SCHEMA, EXAMPLES, PROFILE_SCHEMA

DEFAULTS = TargetDefaults("inlet", "ORG@AdobeOrg")
EVENT_BASICS = """\
  - {sourceType: EXPRESSION, source: 'sha256(id)', destination: _id}
  - {sourceType: EXPRESSION, source: date(ts), destination: timestamp}
"""


def write_mapping(
    directory: Path, entries: str, schema: Path = EVENT_SCHEMA, name: str = "web"
) -> Path:
    """A mapping file whose `validate.schema` is the given example export; entries start on
    line 9 of the file."""
    path = directory / f"{name}.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            name: {name}
            source: {{topics: [{name}.events]}}
            target:
              datasetId: d-1
              schemaRef: {{id: https://ns.adobe.com/acme/schemas/{name}}}
            validate:
              schema: {schema}
            mappings:
            """
        )
        + entries
    )
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(MappingLoadError) as caught:
        load_mapping_file(path, DEFAULTS)
    return caught.value.problems


def load(path: Path) -> CompiledMapping:
    return load_mapping_file(path, DEFAULTS)


def only_problem(path: Path) -> str:
    problems = problems_of(path)
    assert len(problems) == 1, problems
    return problems[0]


def test_the_examples_load_with_a_validator_and_no_warnings() -> None:
    for path in sorted(EXAMPLES.glob("*.yaml")):
        mapping = load(path)
        assert mapping.validator is not None, path
        assert mapping.validator.schema.path == EXAMPLES / f"{path.stem}.schema.json"
        assert mapping.validator.warnings == ()


def test_a_mapping_without_validate_has_no_validator(tmp_path: Path) -> None:
    path = tmp_path / "plain.yaml"
    path.write_text(
        "source: {topics: [t]}\ntarget: {datasetId: d, schemaRef: {id: s}}\n"
        "mappings:\n  - {source: a, destination: b}\n"
    )
    assert load(path).validator is None


def test_an_unknown_destination_field_is_named_with_a_suggestion(tmp_path: Path) -> None:
    path = write_mapping(
        tmp_path, EVENT_BASICS + "  - {source: ua, destination: enviroment.browserDetails.name}\n"
    )
    assert only_problem(path) == (
        f"{path}: mappings[2] (line 11): destination enviroment.browserDetails.name: the entity "
        "has no field 'enviroment' in the schema (did you mean 'environment'?) "
        "(schema: web-commerce.schema.json#/properties)"
    )


def test_an_unknown_field_inside_array_items_is_found(tmp_path: Path) -> None:
    path = write_mapping(
        tmp_path,
        EVENT_BASICS + '  - {source: "items[*].sku", destination: "productListItems[*].sku"}\n',
    )
    problem = only_problem(path)
    assert "mappings[2] (line 11): destination productListItems[*].sku:" in problem
    assert "productListItems[*] has no field 'sku' in the schema (did you mean 'SKU'?)" in problem
    assert problem.endswith("#/properties/productListItems/items/properties)")


def test_fields_of_the_tenant_object_are_checked_and_a_wrong_tenant_is_named(
    tmp_path: Path,
) -> None:
    path = write_mapping(
        tmp_path,
        EVENT_BASICS
        + "  - {source: pos, destination: _acme.kafkaPos}\n"
        + "  - {source: pos, destination: _tenant.kafkaPosition}\n"
        + "  - {source: pos, destination: _acme.kafkaPosition}\n",
    )
    first, second = problems_of(path)
    assert "mappings[2] (line 11): destination _acme.kafkaPos: _acme has no field 'kafkaPos'" in (
        first
    )
    assert "(did you mean 'kafkaPosition'?)" in first
    assert first.endswith("#/properties/_acme/properties)")
    assert "mappings[3] (line 12): destination _tenant.kafkaPosition:" in second
    assert "(the schema's tenant object is '_acme')" in second


def test_a_path_through_a_scalar_or_an_index_on_an_object_is_refused(tmp_path: Path) -> None:
    path = write_mapping(
        tmp_path,
        EVENT_BASICS
        + "  - {source: host, destination: web.webPageDetails.URL.host}\n"
        + "  - {source: kind, destination: 'device[0].type'}\n",
    )
    through_scalar, index = problems_of(path)
    assert (
        "web.webPageDetails.URL is a string (uri) in the schema; it has no field 'host' "
        "(schema: web-commerce.schema.json#/properties/web/properties/webPageDetails"
        "/properties/URL)"
    ) in through_scalar
    assert "device is an object, not an array in the schema" in index


def test_map_values_are_any_key_of_the_map(tmp_path: Path) -> None:
    path = write_mapping(
        tmp_path,
        EVENT_BASICS + "  - {source: crm, destination: 'identityMap.CRMID[0].id'}\n",
    )
    assert load(path).validator is not None


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (
            "{sourceType: STATIC, source: 5, destination: _acme.channel}",
            "static value 5 does not fit: expected string, got integer (type) "
            "(schema: web-commerce.schema.json#/properties/_acme/properties/channel)",
        ),
        (
            "{sourceType: STATIC, source: 'not a uri', destination: web.webReferrer.URL}",
            "static value 'not a uri' does not fit: is not a \"uri\" (format)",
        ),
        (
            "{sourceType: STATIC, source: phone, destination: device.type}",
            'static value \'phone\' does not fit: is not one of "mobile", "tablet"',
        ),
        (
            "{sourceType: STATIC, source: {SKU: CC, quantity: many}, "
            "destination: 'productListItems[0]'}",
            "static value {'SKU': 'CC', 'quantity': 'many'} does not fit at /quantity: "
            "expected integer, got string (type)",
        ),
        (
            "{sourceType: STATIC, source: web, destination: environment}",
            "static value 'web' does not fit: expected object, got string (type)",
        ),
    ],
)
def test_a_static_value_must_fit_the_type_format_and_enum(
    tmp_path: Path, entry: str, expected: str
) -> None:
    path = write_mapping(tmp_path, EVENT_BASICS + f"  - {entry}\n")
    problem = only_problem(path)
    assert problem.startswith(f"{path}: mappings[2] (line 11): destination ")
    assert expected in problem


def test_literals_an_expression_can_produce_must_fit(tmp_path: Path) -> None:
    path = write_mapping(
        tmp_path,
        EVENT_BASICS
        + """  - sourceType: EXPRESSION
    source: 'iif(pts > 100, "gold", "platinum")'
    destination: _acme.loyalty.tier
  - sourceType: EXPRESSION
    source: decode(cur, "us", "usd", "eu", "EUR", "GBP")
    destination: commerce.order.currencyCode
  - {sourceType: EXPRESSION, source: '"desktop"', destination: device.type}
  - {sourceType: EXPRESSION, source: 'coalesce(ch, "web")', destination: _acme.channel}
""",
    )
    tier, currency = problems_of(path)
    assert "mappings[2] (line 11): destination _acme.loyalty.tier: literal 'platinum'" in tier
    assert 'is not one of "bronze", "silver" or "gold" (enum)' in tier
    assert "mappings[3] (line 14): destination commerce.order.currencyCode: literal 'usd'" in (
        currency
    )
    assert 'does not match "^[A-Z]{3}$" (pattern)' in currency


def test_a_declared_type_must_suit_the_destination(tmp_path: Path) -> None:
    path = write_mapping(
        tmp_path,
        EVENT_BASICS
        + "  - {source: h, destination: environment.viewportHeight, type: date}\n"
        + "  - {source: c, destination: environment.browserDetails.cookiesEnabled, type: string}\n"
        + "  - {source: t, destination: timestamp2, type: date-time}\n"
        + "  - {source: w, destination: environment.viewportWidth, type: integer}\n",
    )
    height, cookies, unknown = problems_of(path)
    assert "environment.viewportHeight: type date cannot be written into an integer" in height
    assert "cookiesEnabled: type string cannot be written into a boolean" in cookies
    assert "has no field 'timestamp2'" in unknown


def test_a_date_time_type_cannot_go_into_a_date_field(tmp_path: Path) -> None:
    path = write_mapping(
        tmp_path,
        "  - {source: born, destination: person.birthDate, type: date-time}\n",
        schema=PROFILE_SCHEMA,
        name="crm",
    )
    assert "person.birthDate: type date-time cannot be written into a string (date)" in (
        only_problem(path)
    )


def test_an_experience_event_needs_id_and_timestamp(tmp_path: Path) -> None:
    path = write_mapping(
        tmp_path, "  - {source: ua, destination: environment.browserDetails.userAgent}\n"
    )
    assert problems_of(path) == [
        f"{path}: validate (line 6): required field _id has no mapping (an ExperienceEvent "
        "needs it; schema: web-commerce.schema.json#/required)",
        f"{path}: validate (line 6): required field timestamp has no mapping (an ExperienceEvent "
        "needs it; schema: web-commerce.schema.json#/required)",
    ]


def test_a_profile_needs_no_timestamp() -> None:
    assert load(EXAMPLES / "crm-profile.yaml").validator is not None  # no _id, no timestamp


def test_required_fields_of_an_object_the_mapping_writes_into(tmp_path: Path) -> None:
    path = write_mapping(
        tmp_path,
        "  - {source: points, destination: _acme.loyalty.points}\n"
        "  - {source: since, destination: _acme.loyalty.memberSince, type: date}\n",
        schema=PROFILE_SCHEMA,
        name="crm",
    )
    assert only_problem(path) == (
        f"{path}: mappings[0] (line 9): destination _acme.loyalty.points: writes into "
        "_acme.loyalty, whose field tier is required but has no mapping "
        "(schema: crm-profile.schema.json#/properties/_acme/properties/loyalty/required)"
    )
    fixed = write_mapping(
        tmp_path,
        "  - {source: points, destination: _acme.loyalty.points}\n"
        "  - {sourceType: STATIC, source: bronze, destination: _acme.loyalty.tier}\n",
        schema=PROFILE_SCHEMA,
        name="crm",
    )
    assert load(fixed).validator is not None
    whole = write_mapping(
        tmp_path, "  - {source: loyalty, destination: _acme.loyalty}\n", PROFILE_SCHEMA, "crm"
    )
    assert load(whole).validator is not None  # a whole object copied may carry the tier


def test_scalars_into_objects_are_warnings_not_refusals(tmp_path: Path) -> None:
    path = write_mapping(
        tmp_path,
        EVENT_BASICS
        + "  - {sourceType: EXPRESSION, source: 'concat(a, b)', destination: commerce.order}\n"
        + "  - {source: ecid, destination: identityMap.ECID, type: string}\n"
        + "  - {sourceType: EXPRESSION, source: 'json_to_object(raw)', destination: device}\n",
    )
    validator = load(path).validator
    assert validator is not None
    assert validator.warnings == (
        "mappings[2] (line 11): destination commerce.order: the expression gives a single "
        "value, but the schema wants an object "
        "(schema: web-commerce.schema.json#/properties/commerce/properties/order)",
        "mappings[3] (line 12): destination identityMap.ECID: type string writes a single value "
        "into an array (schema: web-commerce.schema.json#/properties/identityMap/"
        "additionalProperties)",
    )


def test_a_date_time_expression_into_a_date_field_is_a_warning(tmp_path: Path) -> None:
    path = write_mapping(
        tmp_path,
        "  - {sourceType: EXPRESSION, source: 'date(born)', destination: person.birthDate}\n",
        schema=PROFILE_SCHEMA,
        name="crm",
    )
    validator = load(path).validator
    assert validator is not None
    (warning,) = validator.warnings
    assert "gives a date-time, but the schema wants a date: add `type: date`" in warning


def test_every_problem_is_reported_at_once_with_the_other_mapping_problems(
    tmp_path: Path,
) -> None:
    path = write_mapping(
        tmp_path,
        "  - {source: ua, destination: environment.browserDetails.usrAgent}\n"
        "  - {sourceType: EXPRESSION, source: 'lowr(x)', destination: _acme.kafkaPosition}\n"
        "  - {sourceType: STATIC, source: phone, destination: device.type}\n",
    )
    problems = problems_of(path)
    assert all(problem.startswith(f"{path}: ") for problem in problems)
    joined = "\n".join(problems)
    assert "mappings[1] (line 10): source: unknown function 'lowr'" in joined
    assert "mappings[0] (line 9): destination environment.browserDetails.usrAgent" in joined
    assert "mappings[2] (line 11): destination device.type: static value 'phone'" in joined
    assert "validate (line 6): required field _id has no mapping" in joined
    assert "validate (line 6): required field timestamp has no mapping" in joined


def test_schema_file_problems_name_the_validate_key(tmp_path: Path) -> None:
    missing = write_mapping(tmp_path, EVENT_BASICS, schema=tmp_path / "absent.schema.json")
    problem = only_problem(missing)
    assert problem.startswith(f"{missing}: validate (line 6): schema {tmp_path}/absent.schema.json")
    assert "cannot be read" in problem
    broken = tmp_path / "broken.schema.json"
    broken.write_text('{"properties": {"_id": {"type": "strng"}}}')
    problem = only_problem(write_mapping(tmp_path, EVENT_BASICS, schema=broken))
    assert "validate (line 6): schema" in problem
    assert "not a valid JSON Schema: #/properties/_id/type" in problem


def test_validate_needs_a_schema(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        "source: {topics: [t]}\ntarget: {datasetId: d, schemaRef: {id: s}}\n"
        "validate: {schemas: x.json}\nmappings:\n  - {source: a, destination: b}\n"
    )
    problems = "\n".join(problems_of(path))
    assert "validate.schema (line 3): Field required" in problems
    assert "validate.schemas (line 3): unknown key" in problems


def test_the_schema_path_is_relative_to_the_mapping_file(tmp_path: Path) -> None:
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "events.json").write_bytes(EVENT_SCHEMA.read_bytes())
    path = write_mapping(tmp_path, EVENT_BASICS, schema=Path("schemas/events.json"))
    validator = load(path).validator
    assert validator is not None
    assert validator.schema.path == tmp_path / "schemas" / "events.json"


def test_mapping_sets_are_checked_with_their_own_labels(tmp_path: Path) -> None:
    (tmp_path / "set.json").write_text(
        '{"mappings": [{"sourceType": "ATTRIBUTE", "source": "id", "destination": "_id"},'
        ' {"sourceType": "ATTRIBUTE", "source": "ts", "destination": "timestamp"},'
        ' {"sourceType": "ATTRIBUTE", "source": "x", "destination": "_acme.nope"}]}'
    )
    path = tmp_path / "m.yaml"
    path.write_text(
        "source: {topics: [t]}\ntarget: {datasetId: d, schemaRef: {id: s}}\n"
        f"validate: {{schema: {EVENT_SCHEMA}}}\nmappingSet: set.json\n"
    )
    assert "mappingSet set.json mappings[2] (line 1): destination _acme.nope: _acme has no" in (
        only_problem(path)
    )


def test_schema_files_beside_the_mappings_are_not_read_as_mappings(tmp_path: Path) -> None:
    write_mapping(tmp_path, EVENT_BASICS, schema=Path("web.schema.json"))
    (tmp_path / "web.schema.json").write_bytes(EVENT_SCHEMA.read_bytes())
    assert [p.name for p in mapping_files(tmp_path)] == ["web.yaml"]
    (mapping,) = load_mappings(tmp_path, DEFAULTS)
    assert mapping.validator is not None


def test_an_export_under_another_name_is_recognised(tmp_path: Path) -> None:
    (tmp_path / "events.json").write_bytes(EVENT_SCHEMA.read_bytes())
    with pytest.raises(MappingLoadError) as caught:
        load_mappings(tmp_path, DEFAULTS)
    assert caught.value.problems == [
        f"{tmp_path / 'events.json'}: this looks like an exported XDM schema: name it "
        "*.schema.json and reference it with `validate: {schema: FILE}` from a mapping file"
    ]
