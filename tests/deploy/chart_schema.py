"""The `config` part of the Helm chart's values.schema.json, derived from the settings model.

The chart renders `config.<section>.<key>` as the environment variable
AEP_CONNECTOR_<SECTION>__<KEY>, so the keys it accepts are exactly the worker's settings, minus
those the chart owns: credentials (they come from a Secret) and mappings_dir (the mount path).
A test compares the committed schema with this derivation; after changing connector/settings.py,
refresh the chart's schema with

    .venv/bin/python -m tests.deploy.chart_schema --write
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from connector.settings import Settings

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "helm" / "aep-connector" / "values.schema.json"

#: Settings the chart sets itself or takes from a Secret, never from `config`.
CHART_OWNED = {
    ("mappings_dir",),
    ("platform", "auth", "client_id"),
}


def _is_secret(field_schema: dict[str, Any]) -> bool:
    """SecretStr fields (and dicts of them) are `format: password` in pydantic's schema."""
    text = json.dumps(field_schema)
    return '"format": "password"' in text


def _nullable(field_schema: dict[str, Any]) -> dict[str, Any]:
    """null means "leave the worker's default": allow it for every key."""
    options = field_schema.get("anyOf")
    if options is not None and {"type": "null"} in options:
        return field_schema
    return {"anyOf": [field_schema, {"type": "null"}]}


def _clean(node: Any) -> Any:
    """Drop pydantic's titles and defaults (Helm applies no schema defaults)."""
    if isinstance(node, dict):
        return {k: _clean(v) for k, v in node.items() if k not in ("title", "default")}
    if isinstance(node, list):
        return [_clean(v) for v in node]
    return node


def section_schema(model: type[BaseModel], path: tuple[str, ...]) -> dict[str, Any]:
    """The schema of one settings section, nested sections included."""
    own = model.model_json_schema()
    properties: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        field_path = (*path, name)
        if field_path in CHART_OWNED:
            continue
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            properties[name] = section_schema(annotation, field_path)
            continue
        field_schema = own["properties"][name]
        if _is_secret(field_schema):
            continue
        properties[name] = _nullable(_clean(field_schema))
    schema: dict[str, Any] = {"type": ["object", "null"]}
    if model.__doc__:
        schema["description"] = " ".join(model.__doc__.split())
    schema["properties"] = properties
    schema["additionalProperties"] = False
    return schema


def config_schema() -> dict[str, Any]:
    """The schema of the chart's `config` value: one object per settings section."""
    sections: dict[str, Any] = {}
    for name, field in Settings.model_fields.items():
        annotation = field.annotation
        if (name,) in CHART_OWNED:
            continue
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            raise TypeError(
                f"top-level setting {name!r} is not a section: add it to CHART_OWNED and to the "
                "chart's templates"
            )
        sections[name] = section_schema(annotation, (name,))
    return {
        "type": "object",
        "description": (
            "Worker settings by section, rendered as AEP_CONNECTOR_<SECTION>__<KEY> environment "
            "variables (derived from connector/settings.py by tests/deploy/chart_schema.py)."
        ),
        "properties": sections,
        "additionalProperties": False,
    }


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="update values.schema.json")
    args = parser.parse_args(argv)
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    schema["properties"]["config"] = config_schema()
    text = render(schema)
    if args.write:
        SCHEMA_FILE.write_text(text, encoding="utf-8")
        print(f"wrote {SCHEMA_FILE}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
