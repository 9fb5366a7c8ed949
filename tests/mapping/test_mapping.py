"""A compiled mapping applied to records: Data Prep's semantics for missing values, errors,
strict mode, boolean words, `[*]` element by element, object copies and the filter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connector.mapping import CompiledMapping, MappingFailure
from tests.mapping.support import META, mapping_of


def attr(source: str, destination: str, **extra: Any) -> dict[str, Any]:
    return {"sourceType": "ATTRIBUTE", "source": source, "destination": destination, **extra}


def expr(source: str, destination: str, **extra: Any) -> dict[str, Any]:
    return {"sourceType": "EXPRESSION", "source": source, "destination": destination, **extra}


def static(value: object, destination: str, **extra: Any) -> dict[str, Any]:
    return {"sourceType": "STATIC", "source": value, "destination": destination, **extra}


def entity(mapping: CompiledMapping, record: object) -> dict[str, object] | None:
    result = mapping.apply(record, META)
    assert result.warnings == []
    return result.entity


def test_attributes_expressions_and_statics(tmp_path: Path) -> None:
    mapping = mapping_of(
        tmp_path,
        [
            attr("id", "_id"),
            attr("name.first", "person.name.firstName"),
            expr("upper(name.last)", "person.name.lastName"),
            static("web", "channel._type"),
            static(3, "_acme.version"),
            {"source": "email", "destination": "workEmail.address"},  # ATTRIBUTE by default
        ],
    )
    record = {"id": "r1", "name": {"first": "Jane", "last": "Doe"}, "email": "j@x.com"}
    assert entity(mapping, record) == {
        "_id": "r1",
        "person": {"name": {"firstName": "Jane", "lastName": "DOE"}},
        "channel": {"_type": "web"},
        "_acme": {"version": 3},
        "workEmail": {"address": "j@x.com"},
    }


def test_missing_and_null_leave_the_key_out(tmp_path: Path) -> None:
    mapping = mapping_of(
        tmp_path,
        [
            attr("a", "out.a"),
            attr("b.c", "out.b"),
            expr("iif(true, null, 1)", "out.c"),
            expr("nullify()", "other.d"),
            static("x", "keep"),
        ],
    )
    assert entity(mapping, {"b": None}) == {"keep": "x"}


def test_objects_are_copied_without_nulls_or_empties(tmp_path: Path) -> None:
    mapping = mapping_of(tmp_path, [attr("address", "homeAddress"), static("x", "k")])
    record = {
        "address": {
            "city": "Basel",
            "zip": None,
            "lines": ["a", None, ""],
            "geo": {"lat": None},
            "tags": [],
            "nested": [{}, {"v": 1}],
        }
    }
    assert entity(mapping, record) == {
        "homeAddress": {"city": "Basel", "lines": ["a", ""], "nested": [{"v": 1}]},
        "k": "x",
    }


def test_field_error_leaves_the_field_out_with_a_warning(tmp_path: Path) -> None:
    mapping = mapping_of(
        tmp_path,
        [attr("id", "_id"), expr("to_integer(qty)", "quantity"), expr("1 / n", "ratio")],
    )
    result = mapping.apply({"id": "r1", "qty": "many", "n": 0}, META)
    assert result.entity == {"_id": "r1"}
    assert result.warnings == [
        "quantity: to_integer: the string is not an integer",
        "ratio: division by zero",
    ]


def test_strict_mode_rejects_the_record_naming_the_field(tmp_path: Path) -> None:
    mapping = mapping_of(
        tmp_path, [attr("id", "_id"), expr("to_integer(qty)", "quantity")], strict=True
    )
    with pytest.raises(MappingFailure, match="quantity: to_integer: the string is not"):
        mapping.apply({"id": "r1", "qty": "many"}, META)
    assert mapping.apply({"id": "r1", "qty": "2"}, META).entity == {"_id": "r1", "quantity": 2}


def test_a_record_that_is_not_an_object_or_maps_to_nothing_fails(tmp_path: Path) -> None:
    mapping = mapping_of(tmp_path, [attr("id", "_id"), expr("to_integer(q)", "n")])
    with pytest.raises(MappingFailure, match=r"not an object \(got array\)"):
        mapping.apply([1, 2], META)
    with pytest.raises(MappingFailure, match=r"not an object \(got null\)"):
        mapping.apply(None, META)
    with pytest.raises(MappingFailure, match=r"no destination field has a value \(1 field error"):
        mapping.apply({"q": "x"}, META)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("y", True),
        ("yes", True),
        ("Y", True),
        ("YES", True),
        ("on", True),
        ("ON", True),
        ("true", True),
        ("TRUE", True),
        ("n", False),
        ("N", False),
        ("no", False),
        ("NO", False),
        ("off", False),
        ("OFF", False),
        ("false", False),
        ("FALSE", False),
        (True, True),
        (False, False),
        (1, True),
        (0, False),
    ],
)
def test_boolean_destinations_follow_the_yes_no_words(
    tmp_path: Path, value: object, expected: bool
) -> None:
    mapping = mapping_of(tmp_path, [attr("v", "flag", type="boolean"), static(1, "k")])
    assert entity(mapping, {"v": value}) == {"flag": expected, "k": 1}


def test_boolean_destination_rejects_other_words(tmp_path: Path) -> None:
    mapping = mapping_of(tmp_path, [attr("v", "flag"), static(1, "k")], types={"flag": "boolean"})
    result = mapping.apply({"v": "Yes"}, META)
    assert result.entity == {"k": 1}
    assert result.warnings == ["flag: the string is not one of the boolean words"]


def test_declared_types(tmp_path: Path) -> None:
    mapping = mapping_of(
        tmp_path,
        [
            attr("n", "int", type="integer"),
            attr("f", "num", type="number"),
            attr("n", "text", type="string"),
            attr("ts", "when", type="date-time"),
            attr("ts", "day", type="date"),
            static("1", "one", type="integer"),
            static("true", "flag", type="boolean"),
        ],
    )
    record = {"n": "42", "f": "2.5", "ts": "2019-10-23T23:30:00-02:00"}
    assert entity(mapping, record) == {
        "int": 42,
        "num": 2.5,
        "text": "42",
        "when": "2019-10-24T01:30:00Z",
        "day": "2019-10-23",
        "one": 1,
        "flag": True,
    }


def test_dates_come_out_as_rfc3339_utc(tmp_path: Path) -> None:
    mapping = mapping_of(
        tmp_path,
        [
            expr('date(d, "dd.MM.yyyy HH:mm XXX")', "a"),
            expr("now()", "b"),
            expr('to_object("at", date(1571829875123))', "c"),
        ],
    )
    assert entity(mapping, {"d": "23.10.2019 13:24 +02:00"}) == {
        "a": "2019-10-23T11:24:00Z",
        "b": "2019-10-23T11:24:35Z",
        "c": {"at": "2019-10-23T11:24:35.123Z"},
    }


def test_star_maps_element_by_element(tmp_path: Path) -> None:
    mapping = mapping_of(
        tmp_path,
        [
            attr("items[*].sku", "productListItems[*].SKU"),
            expr("to_integer(items[*].qty)", "productListItems[*].quantity"),
            expr("items[*].price * to_integer(items[*].qty)", "productListItems[*].priceTotal"),
            expr("upper(currency)", "productListItems[*].currencyCode"),
            static("web", "productListItems[*].channel"),
            expr("size_of(items)", "commerce.count"),
        ],
    )
    record = {
        "currency": "eur",
        "items": [{"sku": "A", "qty": "2", "price": 1.5}, {"sku": "B", "qty": "x"}, "junk"],
    }
    result = mapping.apply(record, META)
    assert result.entity == {
        "productListItems": [
            {"SKU": "A", "quantity": 2, "priceTotal": 3.0, "currencyCode": "EUR", "channel": "web"},
            {"SKU": "B", "currencyCode": "EUR", "channel": "web"},
            {"currencyCode": "EUR", "channel": "web"},
        ],
        "commerce": {"count": 3},
    }
    assert len(result.warnings) == 2
    assert all(w.startswith("productListItems[*].") for w in result.warnings)


def test_star_without_source_array_leaves_the_array_out(tmp_path: Path) -> None:
    mapping = mapping_of(tmp_path, [attr("items[*].sku", "list[*].sku"), static("x", "k")])
    assert entity(mapping, {"items": "not an array"}) == {"k": "x"}
    assert entity(mapping, {"items": []}) == {"k": "x"}
    assert entity(mapping, {"items": [{"sku": None}]}) == {"k": "x"}


def test_nested_stars_and_star_leaves(tmp_path: Path) -> None:
    mapping = mapping_of(
        tmp_path,
        [
            attr("orders[*].id", "orders[*].orderId"),
            attr("orders[*].lines[*].sku", "orders[*].lines[*].SKU"),
            expr('orders[*].id + "/" + orders[*].lines[*].n', "orders[*].lines[*].ref"),
            attr("tags[*]", "labels[*]"),
            expr("upper(tags[*])", "upperLabels[*]"),
        ],
    )
    record = {
        "orders": [
            {"id": "o1", "lines": [{"sku": "a", "n": 1}, {"sku": "b", "n": 2}]},
            {"id": "o2", "lines": []},
        ],
        "tags": ["x", None, "y"],
    }
    assert entity(mapping, record) == {
        "orders": [
            {
                "orderId": "o1",
                "lines": [{"SKU": "a", "ref": "o1/1"}, {"SKU": "b", "ref": "o1/2"}],
            },
            {"orderId": "o2"},
        ],
        "labels": ["x", "y"],
        "upperLabels": ["X", "Y"],
    }


def test_index_destinations(tmp_path: Path) -> None:
    mapping = mapping_of(
        tmp_path,
        [
            attr("ecid", "identityMap.ECID[0].id"),
            static("ambiguous", "identityMap.ECID[0].authenticatedState"),
            attr("email", "identityMap.Email[1].id"),
            attr("missing", "identityMap.Email[0].id"),
            attr("first.list[1]", "second"),
        ],
    )
    record = {"ecid": "123", "email": "a@b.c", "first": {"list": ["x", "y"]}}
    assert entity(mapping, record) == {
        "identityMap": {
            "ECID": [{"id": "123", "authenticatedState": "ambiguous"}],
            "Email": [{"id": "a@b.c"}],
        },
        "second": "y",
    }


def test_filter_skips_records(tmp_path: Path) -> None:
    mapping = mapping_of(
        tmp_path, [attr("id", "_id")], filter='eventType != "heartbeat" and _kafka.partition < 9'
    )
    assert mapping.apply({"id": 1, "eventType": "heartbeat"}, META).entity is None
    assert mapping.apply({"id": 1, "eventType": "view"}, META).entity == {"_id": 1}
    assert mapping.apply({"id": 1}, META).entity == {"_id": 1}


def test_a_failing_filter_rejects_the_record(tmp_path: Path) -> None:
    mapping = mapping_of(tmp_path, [attr("id", "_id")], filter="to_integer(n) > 1")
    with pytest.raises(MappingFailure, match="filter: to_integer"):
        mapping.apply({"id": 1, "n": "x"}, META)


def test_values_that_cannot_be_sent_are_field_errors(tmp_path: Path) -> None:
    mapping = mapping_of(tmp_path, [attr("big", "a"), expr("f * 1e308", "b"), attr("ok", "c")])
    result = mapping.apply({"big": 2**70, "f": 10.0, "ok": 1}, META)
    assert result.entity == {"c": 1}
    assert result.warnings == [
        "a: integer is outside the 64-bit range",
        "b: number is not finite",
    ]


def test_avro_logical_values_become_json(tmp_path: Path) -> None:
    import datetime as dt
    import uuid
    from decimal import Decimal

    mapping = mapping_of(tmp_path, [attr("r", "out")])
    record = {
        "r": {
            "when": dt.datetime(2019, 10, 23, 11, 24, 35, tzinfo=dt.UTC),
            "day": dt.date(2019, 10, 23),
            "price": Decimal("12.50"),
            "count": Decimal("3"),
            "id": uuid.UUID(int=1),
            "raw": b"bytes",
        }
    }
    assert entity(mapping, record) == {
        "out": {
            "when": "2019-10-23T11:24:35Z",
            "day": "2019-10-23",
            "price": 12.5,
            "count": 3,
            "id": "00000000-0000-0000-0000-000000000001",
            "raw": "bytes",
        }
    }


def test_mapping_attributes(tmp_path: Path) -> None:
    mapping = mapping_of(tmp_path, [attr("id", "_id")])
    assert mapping.name == "test"
    assert mapping.source_topics == ("web.events",)
    assert mapping.topic_pattern is None
    assert mapping.source_format == "json"
    assert mapping.schema_path is None
    assert mapping.strict is False
    assert mapping.connection_id == "inlet-default"
    assert mapping.matches("web.events")
    assert not mapping.matches("web.events2")


def test_fields_shared_by_every_element_are_computed_once(tmp_path: Path) -> None:
    mapping = mapping_of(
        tmp_path,
        [attr("items[*].sku", "list[*].sku"), expr("to_integer(code)", "list[*].code")],
    )
    result = mapping.apply({"items": [{"sku": "a"}, {"sku": "b"}], "code": "x"}, META)
    assert result.entity == {"list": [{"sku": "a"}, {"sku": "b"}]}
    assert result.warnings == ["list[*].code: to_integer: the string is not an integer"]
    ok = mapping.apply({"items": [{"sku": "a"}, {}], "code": "7"}, META)
    assert ok.entity == {"list": [{"sku": "a", "code": 7}, {"code": 7}]}


def test_uuid_is_not_shared_between_elements(tmp_path: Path) -> None:
    from itertools import count

    from connector.mapping import Runtime, load_mapping_file
    from tests.mapping.support import DEFAULTS, base_mapping, write_mapping

    numbers = count()
    runtime = Runtime(now_ms=lambda: 0, new_uuid=lambda: f"id-{next(numbers)}")
    data = base_mapping([attr("items[*].sku", "list[*].sku"), expr("uuid()", "list[*].id")])
    mapping = load_mapping_file(write_mapping(tmp_path, data), DEFAULTS, runtime=runtime)
    result = mapping.apply({"items": [{"sku": "a"}, {"sku": "b"}]}, META)
    assert result.entity == {"list": [{"sku": "a", "id": "id-0"}, {"sku": "b", "id": "id-1"}]}
