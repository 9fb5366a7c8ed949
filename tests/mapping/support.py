"""Helpers for the mapping tests: evaluate one expression, compile a mapping from text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from connector.mapping import CompiledMapping, Runtime, TargetDefaults, load_mapping_file
from connector.mapping.compiler import Ctx, ExpressionCompiler
from connector.mapping.errors import SourceError
from connector.mapping.functions import FUNCTION_NAMES
from connector.mapping.parser import parse_expression
from connector.records import SourceRecord

#: 2019-10-23T11:24:35Z, the reference page's dformat example.
NOW_MS = 1571829875000
FIXED_UUID = "123e4567-e89b-42d3-a456-426614174000"
RUNTIME = Runtime(now_ms=lambda: NOW_MS, new_uuid=lambda: FIXED_UUID)
META = SourceRecord(
    topic="web.events",
    partition=3,
    offset=42,
    timestamp_ms=NOW_MS,
    key=b"user-7",
    value=None,
    headers=(("source", b"app"), ("trace", None)),
)
DEFAULTS = TargetDefaults(connection_id="inlet-default", ims_org_id="ORG@AdobeOrg")


def compile_expression(source: str, depth: int = 0) -> tuple[Any, list[SourceError]]:
    compiler = ExpressionCompiler(RUNTIME, depth)
    evaluate = compiler.compile(parse_expression(source, FUNCTION_NAMES))
    return evaluate, compiler.problems


def evaluate(source: str, record: dict[str, Any] | None = None, meta: SourceRecord = META) -> Any:
    """The value of one expression for one record; fails the test on a load-time problem."""
    compiled, problems = compile_expression(source)
    assert not problems, [str(p) for p in problems]
    return compiled(Ctx(record or {}, meta, strict=False))


def problems(source: str) -> list[str]:
    """Load-time problems of one expression (syntax errors included), as text."""
    try:
        _compiled, found = compile_expression(source)
    except SourceError as exc:
        return [str(exc)]
    return [str(p) for p in found]


def base_mapping(entries: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "name": "test",
        "source": {"topics": ["web.events"]},
        "target": {
            "datasetId": "ds-1",
            "schemaRef": {"id": "https://ns.adobe.com/acme/schemas/s1"},
        },
        "mappings": entries,
        **extra,
    }


def write_mapping(directory: Path, data: dict[str, Any] | str, name: str = "m.yaml") -> Path:
    path = directory / name
    text = data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return path


def mapping_of(directory: Path, entries: list[dict[str, Any]], **extra: Any) -> CompiledMapping:
    """Compile a mapping made of `entries` (plus top-level keys) with the fixed runtime."""
    path = write_mapping(directory, base_mapping(entries, **extra))
    return load_mapping_file(path, DEFAULTS, runtime=RUNTIME)


def error_of(source: str, record: dict[str, Any] | None = None) -> str:
    """The error an expression gives: a load-time problem (calls with only literal arguments
    are computed at load time) or the ExpressionError raised for this record."""
    from connector.mapping.errors import ExpressionError

    compiled, found = compile_expression(source)
    if found:
        return "; ".join(str(p) for p in found)
    try:
        value = compiled(Ctx(record or {}, META, strict=False))
    except ExpressionError as exc:
        return str(exc)
    raise AssertionError(f"{source} gave {value!r}, not an error")
