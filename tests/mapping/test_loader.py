"""Loading mapping files: the file model, exported mapping sets, and load-time validation
that reports every problem of every file, with file, entry and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from connector.mapping import MappingLoadError, load_mapping_file, load_mappings, mapping_files
from tests.mapping.support import DEFAULTS, RUNTIME, base_mapping, write_mapping

EXAMPLES = Path(__file__).resolve().parents[2] / "mappings" / "examples"


def load_problems(path: Path) -> list[str]:
    with pytest.raises(MappingLoadError) as info:
        load_mapping_file(path, DEFAULTS, runtime=RUNTIME)
    return info.value.problems


BAD_FILE = """\
name: bad
source: {topics: [a]}
target:
  datasetId: ds
  schemaRef: {id: "https://ns.adobe.com/acme/schemas/s"}
filter: 'eventType = "x"'
mappings:
  - {sourceType: EXPRESSION, source: 'concat(a, ', destination: x}
  - {sourceType: EXPRESSION, source: 'lowr(a)', destination: y}
  - {sourceType: EXPRESSION, source: 'trim(a, b)', destination: z}
  - {source: a, destination: 'bad..path'}
  - {source: a, destination: dup}
  - {source: b, destination: dup}
  - {source: 'items[*].a', destination: 'list[*].a'}
  - {source: 'orders[*].b', destination: 'list[*].b'}
  - {sourceType: EXPRESSION, source: 'size + 1', destination: w}
  - {sourceType: STATIC, source: null, destination: s}
  - {sourceType: CONSTANT, source: 1, destination: t}
  - {source: a, destination: leaf}
  - {source: b, destination: leaf.child}
  - {source: a, destination: v, type: bool}
  - {source: a, destination: u, colour: red}
  - {source: a, destination: 'arr[0]'}
  - {source: a, destination: 'arr[*]'}
  - {source: a, destination: 'nowhere[*]'}
"""


def test_every_problem_of_a_file_is_reported_with_entry_and_line(tmp_path: Path) -> None:
    path = write_mapping(tmp_path, BAD_FILE)
    found = load_problems(path)
    text = "\n".join(found)
    expected = [
        "mappings[0] (line 8): source: syntax error: expected a value, a field or a function "
        "call, found the end of the expression (line 1, column 11)",
        "mappings[1] (line 9): source: unknown function 'lowr' (did you mean 'lower'?)",
        "mappings[2] (line 10): source: trim() takes 1 argument, got 2",
        "mappings[3] (line 11): destination 'bad..path': expected a field name",
        "mappings[5] (line 13): duplicate destination dup (also mapped by mappings[4] (line 12))",
        "conflicting [*] shapes: list[*] iterates items[*] in mappings[6] (line 14) but orders[*]",
        "mappings[8] (line 16): source: syntax error: 'size' is a reserved word",
        "mappings[9] (line 17): a STATIC entry needs a value",
        "mappings[10] (line 18): sourceType 'CONSTANT' is not ATTRIBUTE, EXPRESSION or STATIC",
        "mappings[12] (line 20): destination leaf.child is inside leaf, mapped by mappings[11]",
        "mappings[13] (line 21): unknown type 'bool'",
        "mappings[14] (line 22): colour: unknown key",
        "conflicting [*] shapes: arr[*] uses arr as an array iterated with [*], but it is an "
        "array with [n] indexes",
        "destination nowhere[*] iterates no source array",
        "filter (line 6): syntax error: unexpected character '=' (use == to compare) "
        "(line 1, column 11)",
    ]
    for fragment in expected:
        assert fragment in text, f"missing {fragment!r} in:\n{text}"
    assert all(line.startswith(f"{path}: ") for line in found)


def test_all_files_of_a_directory_are_reported_together(tmp_path: Path) -> None:
    write_mapping(tmp_path, base_mapping([{"source": "a", "destination": "b..c"}]), "one.yaml")
    write_mapping(
        tmp_path,
        base_mapping([{"sourceType": "EXPRESSION", "source": "nope(", "destination": "x"}]),
        "two.yml",
    )
    (tmp_path / "three.json").write_text("{not json", encoding="utf-8")
    (tmp_path / "notes.txt").write_text("ignored", encoding="utf-8")
    (tmp_path / ".hidden.yaml").write_text("ignored: [", encoding="utf-8")
    sub = tmp_path / "examples"
    sub.mkdir()
    (sub / "ignored.yaml").write_text("ignored: [", encoding="utf-8")
    with pytest.raises(MappingLoadError) as info:
        load_mappings(tmp_path, DEFAULTS, runtime=RUNTIME)
    files = {problem.split(":")[0] for problem in info.value.problems}
    assert files == {str(tmp_path / n) for n in ("one.yaml", "two.yml", "three.json")}
    assert [p.name for p in mapping_files(tmp_path)] == ["one.yaml", "three.json", "two.yml"]


def test_names_are_unique_and_a_shared_topic_has_one_format(tmp_path: Path) -> None:
    entries = [{"source": "a", "destination": "b"}]
    write_mapping(tmp_path, base_mapping(entries), "a.yaml")
    write_mapping(
        tmp_path,
        base_mapping(entries, source={"topics": ["web.events"], "format": "avro"}),
        "b.yaml",
    )
    with pytest.raises(MappingLoadError) as info:
        load_mappings(tmp_path, DEFAULTS, runtime=RUNTIME)
    text = "\n".join(info.value.problems)
    assert "mapping name 'test' is also used by" in text
    assert "topic 'web.events' is read as avro here but as json by" in text


def test_one_topic_may_feed_several_mappings(tmp_path: Path) -> None:
    entries = [{"source": "a", "destination": "b"}]
    write_mapping(tmp_path, base_mapping(entries), "events.yaml")
    write_mapping(tmp_path, base_mapping(entries, name="profiles"), "profiles.yaml")
    mappings = load_mappings(tmp_path, DEFAULTS, runtime=RUNTIME)
    assert [m.name for m in mappings if m.matches("web.events")] == ["test", "profiles"]


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(MappingLoadError, match="not a directory"):
        load_mappings(tmp_path / "nope", DEFAULTS)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"source": {"topics": ["a"], "topicPattern": "^a"}}, "exactly one of source.topics"),
        ({"source": {"topics": []}}, "at least one non-empty topic"),
        ({"source": {"topicPattern": "("}}, "not a valid regex"),
        ({"source": {"topics": ["a"], "format": "avro-schema"}}, "needs source.schema"),
        ({"source": {"topics": ["a"], "format": "xml"}}, "source.format"),
        ({"target": {"schemaRef": {"id": "x"}}}, "target (line 5): target.datasetId is required"),
        ({"target": {"datasetId": "d"}}, "target.schemaRef is missing"),
        ({"strict": "yes"}, "strict (line"),
        ({"mappingSet": "set.json"}, "exactly one of mappings and mappingSet"),
        ({"types": {"nowhere": "boolean"}}, "types: 'nowhere' is not a destination"),
        ({"colour": "red"}, "colour (line"),
    ],
)
def test_file_model_problems(tmp_path: Path, change: dict[str, object], message: str) -> None:
    data = {**base_mapping([{"source": "a", "destination": "b"}]), **change}
    found = load_problems(write_mapping(tmp_path, data))
    assert any(message in p for p in found), found


def test_not_a_mapping_and_duplicate_keys(tmp_path: Path) -> None:
    assert "must be a mapping" in load_problems(write_mapping(tmp_path, "- a\n- b\n"))[0]
    text = "name: x\nname: y\n" + "\n".join(
        f"{k}: {json.dumps(v)}" for k, v in base_mapping([]).items() if k != "name"
    )
    found = load_problems(write_mapping(tmp_path, text))
    assert any("duplicate key 'name' (line 2)" in p for p in found), found


def test_yaml_syntax_error_has_a_line(tmp_path: Path) -> None:
    found = load_problems(write_mapping(tmp_path, "name: [unclosed\nsource: x\n"))
    assert "not valid YAML" in found[0]
    assert "line" in found[0]


def test_exported_mapping_set(tmp_path: Path) -> None:
    exported = {
        "id": "b8f9c1...",
        "version": 0,
        "outputSchema": {
            "schemaRef": {
                "id": "https://ns.adobe.com/acme/schemas/s1",
                "contentType": "application/vnd.adobe.xed-full+json;version=1",
            }
        },
        "mappings": [
            {
                "sourceType": "ATTRIBUTE",
                "source": "id",
                "destination": "_id",
                "name": "id",
                "description": "the id",
                "identity": False,
                "version": 0,
            },
            {
                "sourceType": "EXPRESSION",
                "source": "concat(upper(lastName), upper(firstName))",
                "destination": "_acme.fullName",
            },
            {"sourceType": "STATIC", "source": "CUSTOMER", "destination": "userType"},
            {
                "sourceType": "text/x.schema-path",
                "sourceAttribute": "email",
                "destinationXdmPath": "personalEmail.address",
            },
        ],
    }
    sets = tmp_path / "sets"
    sets.mkdir()
    (sets / "exported.json").write_text(json.dumps(exported, indent=2), encoding="utf-8")
    data = base_mapping([], mappingSet="sets/exported.json")
    del data["mappings"]
    del data["target"]["schemaRef"]
    mapping = load_mapping_file(write_mapping(tmp_path, data), DEFAULTS, runtime=RUNTIME)
    from tests.mapping.support import META

    result = mapping.apply(
        {"id": "7", "firstName": "Jane", "lastName": "Doe", "email": "j@d.x"}, META
    )
    assert result.entity == {
        "_id": "7",
        "_acme": {"fullName": "DOEJANE"},
        "userType": "CUSTOMER",
        "personalEmail": {"address": "j@d.x"},
    }
    assert mapping.target.schema_id == "https://ns.adobe.com/acme/schemas/s1"


def test_exported_mapping_set_problems_name_the_set_file_and_line(tmp_path: Path) -> None:
    exported = {"mappings": [{"sourceType": "EXPRESSION", "source": "f(", "destination": "x"}]}
    (tmp_path / "set.json").write_text(json.dumps(exported, indent=1), encoding="utf-8")
    data = base_mapping([], mappingSet="set.json")
    del data["mappings"]
    found = load_problems(write_mapping(tmp_path, data))
    assert any("mappingSet set.json mappings[0] (line 3): source: syntax error" in p for p in found)


def test_an_exported_set_at_the_top_level_is_explained(tmp_path: Path) -> None:
    path = tmp_path / "set.json"
    path.write_text(json.dumps({"outputSchema": {}, "mappings": []}), encoding="utf-8")
    assert "exported from the Platform" in load_problems(path)[0]


def test_target_defaults_and_overrides(tmp_path: Path) -> None:
    data = base_mapping([{"source": "a", "destination": "b"}])
    mapping = load_mapping_file(write_mapping(tmp_path, data), DEFAULTS)
    assert mapping.connection_id == "inlet-default"
    assert mapping.target.ims_org_id == "ORG@AdobeOrg"
    assert mapping.target.source_name == "test"
    data["target"].update(
        connectionId="inlet-own", imsOrgId="OWN@AdobeOrg", flowId="flow-1", sourceName="Src"
    )
    mapping = load_mapping_file(write_mapping(tmp_path, data), DEFAULTS)
    assert mapping.connection_id == "inlet-own"
    assert mapping.target.ims_org_id == "OWN@AdobeOrg"
    assert mapping.target.flow_id == "flow-1"
    assert mapping.target.source_name == "Src"


def test_topic_pattern_and_avro_schema_path(tmp_path: Path) -> None:
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "web.avsc").write_text("{}", encoding="utf-8")
    data = base_mapping(
        [{"source": "a", "destination": "b"}],
        source={"topicPattern": "^web\\..*", "format": "avro-schema", "schema": "schemas/web.avsc"},
    )
    mapping = load_mapping_file(write_mapping(tmp_path, data), DEFAULTS)
    assert mapping.matches("web.clicks")
    assert not mapping.matches("mobile.web.clicks")
    assert mapping.source_format == "avro-schema"
    assert mapping.schema_path == (tmp_path / "schemas" / "web.avsc").resolve()
    data["source"]["schema"] = "schemas/missing.avsc"
    assert "does not exist" in load_problems(write_mapping(tmp_path, data))[0]


def test_examples_directory_loads(tmp_path: Path) -> None:
    mappings = load_mappings(EXAMPLES, DEFAULTS)
    assert [m.name for m in mappings] == ["crm-profile", "web-commerce"]
    assert [m.source_topics for m in mappings] == [("crm.profiles",), ("web.commerce",)]
