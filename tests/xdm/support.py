"""Shared paths and helpers for the XDM tests: the realistic exported schemas of the examples."""

from __future__ import annotations

from pathlib import Path

import orjson

from connector.xdm import EntityValidator, XdmSchema, load_schema

EXAMPLES = Path(__file__).resolve().parents[2] / "mappings" / "examples"
EVENT_SCHEMA = EXAMPLES / "web-commerce.schema.json"
PROFILE_SCHEMA = EXAMPLES / "crm-profile.schema.json"


def event_schema() -> XdmSchema:
    return load_schema(EVENT_SCHEMA)


def profile_schema() -> XdmSchema:
    return load_schema(PROFILE_SCHEMA)


def expected_entities(name: str) -> list[dict[str, object]]:
    """The golden entities of an example (mappings/examples/<name>.expected.jsonl)."""
    lines = (EXAMPLES / f"{name}.expected.jsonl").read_bytes().splitlines()
    return [orjson.loads(line) for line in lines if line.strip()]


def event_validator() -> EntityValidator:
    return EntityValidator(event_schema())
