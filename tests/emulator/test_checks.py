"""The envelope checks and reject rules as pure functions (no server)."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.emulator.checks import (
    EnvelopeRules,
    Violation,
    build_validator,
    check_message,
    compile_reject_rules,
    contains_empty,
    describe,
    empty_paths,
    json_equal,
    matching_reject_rule,
)
from connector.emulator.config import RejectRule
from tests.emulator.conftest import (
    DATA,
    ORG,
    PROFILE_SCHEMA_ID,
    SEED_DATASET,
    envelope,
    seed_batch,
    seed_single,
)

OPEN = EnvelopeRules()
WITH_ORG = EnvelopeRules(ims_org_id=ORG)


def where(violations: list[Violation]) -> list[tuple[str, str]]:
    return [(v.where(), v.keyword) for v in violations]


def test_seed_examples_pass_as_printed() -> None:
    for rules in (
        OPEN,
        WITH_ORG,
        EnvelopeRules(ims_org_id=ORG, datasets=frozenset([SEED_DATASET])),
    ):
        assert check_message(seed_single(), rules) == []
        assert check_message(seed_batch()["messages"][0], rules) == []


def _without(message: dict[str, Any], *path: str) -> dict[str, Any]:
    changed = copy.deepcopy(message)
    target = changed
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return changed


def _with(message: dict[str, Any], value: Any, *path: str) -> dict[str, Any]:
    changed = copy.deepcopy(message)
    target = changed
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return changed


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda m: _without(m, "header"), [("header", "required")]),
        (lambda m: _with(m, [], "header"), [("header", "type")]),
        (lambda m: _without(m, "body"), [("body", "required")]),
        (lambda m: _without(m, "header", "schemaRef"), [("header.schemaRef", "required")]),
        (
            lambda m: _without(m, "header", "schemaRef", "contentType"),
            [("header.schemaRef.contentType", "required"), ("body.xdmMeta.schemaRef", "const")],
        ),
        (
            lambda m: _with(m, "not a uri", "header", "schemaRef", "id"),
            [("header.schemaRef.id", "format"), ("body.xdmMeta.schemaRef", "const")],
        ),
        (lambda m: _without(m, "header", "imsOrgId"), [("header.imsOrgId", "required")]),
        (
            lambda m: _with(m, "other@AdobeOrg", "header", "imsOrgId"),
            [("header.imsOrgId", "const")],
        ),
        (lambda m: _without(m, "header", "datasetId"), [("header.datasetId", "required")]),
        (lambda m: _with(m, "", "header", "datasetId"), [("header.datasetId", "minLength")]),
        (lambda m: _with(m, 7, "header", "datasetId"), [("header.datasetId", "type")]),
        (lambda m: _without(m, "body", "xdmMeta"), [("body.xdmMeta", "required")]),
        (
            lambda m: _without(m, "body", "xdmMeta", "schemaRef"),
            [("body.xdmMeta.schemaRef", "required")],
        ),
        (
            lambda m: _with(m, {"contentType": "x"}, "body", "xdmMeta", "schemaRef"),
            [("body.xdmMeta.schemaRef", "const")],
        ),
        (lambda m: _without(m, "body", "xdmEntity"), [("body.xdmEntity", "required")]),
        (lambda m: _with(m, [1], "body", "xdmEntity"), [("body.xdmEntity", "type")]),
        (
            lambda m: _with(m, None, "body", "xdmEntity", "person", "name", "middleName"),
            [("body.xdmEntity.person.name.middleName", "null")],
        ),
    ],
)
def test_each_envelope_check_names_the_failing_place(change: Any, expected: Any) -> None:
    assert where(check_message(change(seed_single()), WITH_ORG)) == expected


def test_a_message_that_is_not_an_object() -> None:
    (violation,) = check_message([1, 2], OPEN)
    assert violation.where("messages[4]") == "messages[4]"
    assert violation.message == "expected an object, got an array"


def test_the_org_is_only_checked_when_configured() -> None:
    other_org = _with(seed_single(), "other@AdobeOrg", "header", "imsOrgId")
    assert check_message(other_org, OPEN) == []
    assert check_message(_without(other_org, "header", "imsOrgId"), OPEN) == []


def test_rejection_text_says_where_and_what() -> None:
    message = envelope(org="someone-else@AdobeOrg")
    text = describe(check_message(message, WITH_ORG), "messages[3]")
    assert text == f'messages[3].header.imsOrgId: expected "{ORG}", got "someone-else@AdobeOrg"'


def test_strict_mode_requires_the_schema_id_and_any_uri_is_accepted() -> None:
    strict = EnvelopeRules(strict=True)
    assert where(check_message(seed_single(), strict)) == [("header.schemaRef.id", "required")]
    assert check_message(envelope(schema_id="https://ns.adobe.com/t/schemas/1"), strict) == []
    assert check_message(envelope(schema_id="urn:x:y"), strict) == []


def test_a_dataflow_inlet_requires_one_of_its_flows() -> None:
    rules = EnvelopeRules(flow_ids=frozenset(["f1", "f2"]))
    assert where(check_message(envelope(), rules)) == [("header.flowId", "required")]
    message = _with(envelope(), "f3", "header", "flowId")
    (violation,) = check_message(message, rules)
    assert (violation.where(), violation.keyword) == ("header.flowId", "enum")
    assert violation.message == 'unknown flow "f3" for this connection (known: f1, f2)'
    assert check_message(_with(envelope(), "f2", "header", "flowId"), rules) == []


def test_a_schema_id_that_is_not_a_string_is_a_violation_not_a_crash() -> None:
    message = profile({"person": PERSON})
    for bad_id in ({"a": 1}, ["x"]):
        changed = _with(message, bad_id, "header", "schemaRef", "id")
        changed["body"]["xdmMeta"]["schemaRef"]["id"] = bad_id
        assert where(check_message(changed, profile_rules())) == [("header.schemaRef.id", "format")]


def test_known_datasets_and_flow_id_are_per_connection_rules() -> None:
    rules = EnvelopeRules(datasets=frozenset(["a", "b"]), require_flow_id=True)
    message = envelope(dataset="c")
    violations = check_message(message, rules)
    assert where(violations) == [("header.datasetId", "enum"), ("header.flowId", "required")]
    assert violations[0].message == 'unknown dataset "c" for this connection (known: a, b)'
    assert where(check_message(seed_single(), EnvelopeRules(require_flow_id=True))) == []


def test_every_null_is_reported_with_its_path() -> None:
    entity = {"a": None, "b": [1, None, {"c": None}], "d": {"e": "null"}}
    violations = check_message(envelope(entity), OPEN)
    assert [v.where() for v in violations] == [
        "body.xdmEntity.a",
        "body.xdmEntity.b[1]",
        "body.xdmEntity.b[2].c",
    ]
    assert violations[1].pointer() == "#/body/xdmEntity/b/1"


def test_nulls_outside_the_entity_fail_their_own_checks() -> None:
    message = _with(seed_single(), None, "header", "datasetId")
    assert where(check_message(message, OPEN)) == [("header.datasetId", "type")]


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=3), children, max_size=4)
    ),
    max_leaves=30,
)


@given(JSON_VALUES)
def test_the_fast_empty_check_agrees_with_the_path_walk(value: Any) -> None:
    found_paths = empty_paths(value)
    assert contains_empty(value) == bool(found_paths)
    for path, kind in found_paths:
        found: Any = value
        for part in path:
            found = found[part]
        assert type(found) is kind
        assert found is None or len(found) == 0


@given(JSON_VALUES)
def test_the_path_walk_finds_empties_in_document_order(value: Any) -> None:
    """Against a plain recursive walk (fine for these small values)."""
    expected: list[tuple[Any, ...]] = []

    def walk(item: Any, path: tuple[Any, ...]) -> None:
        if item is None or (isinstance(item, str | dict | list) and len(item) == 0):
            expected.append(path)
        elif isinstance(item, dict):
            for key, child in item.items():
                walk(child, (*path, key))
        elif isinstance(item, list):
            for index, child in enumerate(item):
                walk(child, (*path, index))

    walk(value, ("root",))
    assert [path for path, _ in empty_paths(value, ("root",))] == expected


def test_empty_strings_objects_and_arrays_are_reported_like_nulls() -> None:
    entity = {"a": "", "b": {"c": {}, "d": [], "e": [" ", 0, False, ""]}, "f": None, "g": "x"}
    violations = check_message(envelope(entity), OPEN)
    assert [(v.pointer(), v.keyword) for v in violations] == [
        ("#/body/xdmEntity/a", "minLength"),
        ("#/body/xdmEntity/b/c", "minProperties"),
        ("#/body/xdmEntity/b/d", "minItems"),
        ("#/body/xdmEntity/b/e/3", "minLength"),
        ("#/body/xdmEntity/f", "null"),
    ]
    assert describe(violations[:3]) == (
        "body.xdmEntity.a: an empty string is not allowed in XDM; leave the key out instead; "
        "body.xdmEntity.b.c: an empty object is not allowed in XDM; leave the key out instead; "
        "body.xdmEntity.b.d: an empty array is not allowed in XDM; leave the key out instead"
    )


def test_an_empty_entity_is_itself_an_empty_object() -> None:
    assert where(check_message(envelope({}), OPEN)) == [("body.xdmEntity", "minProperties")]


# --- any depth ---------------------------------------------------------------------------------


DEEP = 20_000  # far past Python's recursion limit of 1,000


def nested(depth: int, leaf: Any, key: str = "n") -> dict[str, Any]:
    """{"n": {"n": ... leaf}} with `depth` objects."""
    value: Any = leaf
    for _ in range(depth):
        value = {key: value}
    result: dict[str, Any] = value
    return result


@pytest.mark.parametrize("leaf", [None, "", {}, []])
def test_any_depth_gets_its_violation_not_a_recursion_error(leaf: Any) -> None:
    depth = DEEP
    (violation,) = check_message(envelope(nested(depth, leaf)), OPEN)
    assert violation.path == ("body", "xdmEntity", *(["n"] * depth))
    assert violation.pointer().endswith("/n" * depth)
    assert check_message(envelope(nested(depth, "leaf")), OPEN) == []


def test_deep_values_in_the_header_are_shown_briefly() -> None:
    deep = nested(DEEP, 1)
    message = _with(seed_single(), deep, "header", "imsOrgId")
    (violation,) = check_message(message, WITH_ORG)
    assert violation.keyword == "const"
    assert violation.message.startswith(f'expected "{ORG}", got {{"n":{{"n":')
    assert violation.message.endswith("…")
    assert len(violation.message) < 200


def test_deep_schema_refs_are_compared_without_recursion() -> None:
    message = seed_single()
    message["header"]["schemaRef"]["x"] = nested(DEEP, 1)
    message["body"]["xdmMeta"]["schemaRef"] = {
        **message["header"]["schemaRef"],
        "x": nested(DEEP, 1),  # equal, but not the same object
    }
    assert check_message(message, OPEN) == []
    message["body"]["xdmMeta"]["schemaRef"]["x"] = nested(DEEP, 2)
    assert where(check_message(message, OPEN)) == [("body.xdmMeta.schemaRef", "const")]


def test_json_equal_at_any_depth_and_true_is_not_one() -> None:
    assert json_equal(nested(DEEP, [1, "a"]), nested(DEEP, [1, "a"]))
    assert not json_equal(nested(DEEP, [1, "a"]), nested(DEEP, [1, "b"]))
    assert not json_equal(nested(DEEP, 1), nested(DEEP - 1, 1))
    assert not json_equal(True, 1)
    assert not json_equal([True], [1])
    assert json_equal({"a": 1, "b": 2.0}, {"b": 2, "a": 1})
    assert not json_equal({"a": 1}, {"a": 1, "b": 1})
    assert not json_equal([1], {"0": 1})
    assert not json_equal("1", 1)


def test_pointer_escapes_slash_and_tilde() -> None:
    violation = Violation(("body", "xdmEntity", "a/b", "c~d", 0), "null", "x")
    assert violation.pointer() == "#/body/xdmEntity/a~1b/c~0d/0"
    assert violation.where() == "body.xdmEntity.a/b.c~d[0]"


# --- JSON Schema validation --------------------------------------------------------------------


PERSON = {"birthDate": "1969-03-14"}


def profile_rules() -> EnvelopeRules:
    schema = orjson.loads((DATA / "profile_schema.json").read_bytes())
    return EnvelopeRules(validators={PROFILE_SCHEMA_ID: build_validator(schema)})


def profile(entity: dict[str, Any]) -> dict[str, Any]:
    return envelope(entity, schema_id=PROFILE_SCHEMA_ID)


def test_schema_with_meta_keywords_validates_a_good_entity() -> None:
    entity = {"person": {"name": {"firstName": "Jane"}, "birthDate": "1969-03-14"}}
    assert check_message(profile(entity), profile_rules()) == []


@pytest.mark.parametrize(
    ("entity", "expected"),
    [
        ({"person": {"name": {"firstName": 5}}}, ("body.xdmEntity.person.name.firstName", "type")),
        ({"lastSeen": "2024-05-01T12:00:00Z"}, ("body.xdmEntity", "required")),
        ({"person": {"birthDate": "14/03/1969"}}, ("body.xdmEntity.person.birthDate", "format")),
        ({"person": {"birthDate": "1969-02-30"}}, ("body.xdmEntity.person.birthDate", "format")),
        ({"person": PERSON, "lastSeen": "yesterday"}, ("body.xdmEntity.lastSeen", "format")),
        (
            {"person": PERSON, "workEmail": {"primary": True}},
            ("body.xdmEntity.workEmail", "required"),
        ),
    ],
)
def test_schema_violations_are_reported_at_their_path(entity: Any, expected: Any) -> None:
    assert where(check_message(profile(entity), profile_rules())) == [expected]


def test_date_time_format_accepts_rfc3339() -> None:
    rules = profile_rules()
    for stamp in ("2024-05-01T12:00:00Z", "2024-05-01T12:00:00.123+02:00"):
        assert check_message(profile({"person": PERSON, "lastSeen": stamp}), rules) == []


def test_schemas_apply_only_to_their_schema_id() -> None:
    assert check_message(envelope({"other": 1}), profile_rules()) == []
    assert check_message(seed_single(), profile_rules()) == []


# --- reject rules ------------------------------------------------------------------------------


def rules(*specs: dict[str, Any]) -> Any:
    return compile_reject_rules([RejectRule.model_validate(spec) for spec in specs])


def test_reject_rule_matches_the_value_at_its_pointer() -> None:
    compiled = rules({"pointer": "/body/xdmEntity/_id", "equals": "bad"})
    assert matching_reject_rule(envelope({"_id": "bad"}), compiled) == compiled[0]
    assert matching_reject_rule(envelope({"_id": "good"}), compiled) is None
    assert matching_reject_rule(envelope({}), compiled) is None
    assert compiled[0].message == 'rejected by reject rule 0: /body/xdmEntity/_id equals "bad"'


def test_reject_rules_compare_json_values_and_walk_arrays() -> None:
    compiled = rules(
        {"pointer": "/body/xdmEntity/items/1/n", "equals": 1, "message": "second item is 1"},
        {"pointer": "/body/xdmEntity/a~1b", "equals": {"x": [True]}, "status": 422},
    )
    assert matching_reject_rule(envelope({"items": [{}, {"n": True}]}), compiled) is None
    assert matching_reject_rule(envelope({"items": [{}, {"n": 1}]}), compiled) == compiled[0]
    assert compiled[0].message == "second item is 1"
    assert matching_reject_rule(envelope({"a/b": {"x": [True]}}), compiled) == compiled[1]
    assert matching_reject_rule(envelope({"items": [{"n": 1}]}), compiled) is None


def test_reject_rule_pointer_must_be_a_json_pointer() -> None:
    with pytest.raises(ValueError, match="pointer"):
        RejectRule.model_validate({"pointer": "body/xdmEntity", "equals": 1})
