"""An XDM schema exported from the Platform as resolved JSON Schema, loaded once and navigable.

The Schema Registry exports a schema with `Accept: application/vnd.adobe.xed-full+json;
version=1`: `$ref` and `allOf` resolved into one tree of `properties`, draft-06, plus `meta:*`
keywords (`meta:class`, `meta:xdmType`, `meta:enum`, ...) that JSON Schema ignores. Loading
checks that the file is such a document (JSON, an object, a valid JSON Schema) and reports every
problem; navigation walks destination paths (`a.b`, `items[*].c`, map keys) to the subschema
they write, keeping the JSON pointer of each step for messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import jsonschema_rs
import orjson

#: The XDM class whose entities need `_id` and `timestamp` (the time-series behaviour).
EXPERIENCE_EVENT_CLASS: Final = "https://ns.adobe.com/xdm/context/experienceevent"
TIME_SERIES_BEHAVIOUR: Final = "https://ns.adobe.com/xdm/data/time-series"
EXPERIENCE_EVENT_REQUIRED: Final = ("_id", "timestamp")

#: Exported schemas declare draft-06; without `$schema` they are read as draft-06 too.
DRAFT6_URI: Final = "http://json-schema.org/draft-06/schema#"

Schema = Mapping[str, Any]


class SchemaLoadError(Exception):
    """The schema file cannot be used; `problems` lists every reason, one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class SchemaNode:
    """A subschema and where it is in the document (a JSON pointer such as
    `#/properties/productListItems/items`)."""

    schema: Schema
    pointer: str

    @property
    def types(self) -> frozenset[str]:
        """The JSON types the node allows; empty when it does not say (anything goes)."""
        declared = self.schema.get("type")
        if isinstance(declared, str):
            return frozenset((declared,))
        if isinstance(declared, list):
            return frozenset(t for t in declared if isinstance(t, str))
        if "properties" in self.schema or isinstance(self.schema.get("additionalProperties"), dict):
            return frozenset(("object",))
        if "items" in self.schema:
            return frozenset(("array",))
        return frozenset()

    @property
    def format(self) -> str | None:
        value = self.schema.get("format")
        return value if isinstance(value, str) else None

    @property
    def is_container(self) -> bool:
        """Typed only as object or array: a scalar can never be written here."""
        return bool(self.types) and self.types <= {"object", "array"}

    def describe(self) -> str:
        """`string`, `string (date-time)`, `object`, `integer or null`: for messages."""
        kinds = " or ".join(sorted(self.types)) or "any type"
        return f"{kinds} ({self.format})" if self.format else kinds


def escape(token: str | int) -> str:
    """One JSON pointer token (RFC 6901: `~` → `~0`, `/` → `~1`)."""
    return str(token).replace("~", "~0").replace("/", "~1")


class XdmSchema:
    """An exported XDM schema: the document, what kind of entity it describes, and navigation."""

    def __init__(self, document: dict[str, Any], path: Path | None = None) -> None:
        self.document = document
        self.path = path
        schema_id = document.get("$id")
        self.schema_id: str | None = schema_id if isinstance(schema_id, str) else None
        xdm_class = document.get("meta:class")
        self.xdm_class: str | None = xdm_class if isinstance(xdm_class, str) else None
        extends = document.get("meta:extends")
        self.extends: tuple[str, ...] = (
            tuple(item for item in extends if isinstance(item, str))
            if isinstance(extends, list)
            else ()
        )
        tenant = document.get("meta:tenantNamespace")
        self.tenant: str | None = tenant if isinstance(tenant, str) else None
        self.root = SchemaNode(document, "#")

    @property
    def name(self) -> str:
        """How messages name the schema: its file name, else its `$id`."""
        return self.path.name if self.path is not None else (self.schema_id or "the schema")

    @property
    def is_experience_event(self) -> bool:
        """ExperienceEvents (and any time-series class) need `_id` and `timestamp`."""
        classes = {self.xdm_class, *self.extends}
        return EXPERIENCE_EVENT_CLASS in classes or TIME_SERIES_BEHAVIOUR in classes

    @property
    def draft6(self) -> bool:
        return "$schema" not in self.document

    def where(self, node: SchemaNode) -> str:
        """`web-commerce.schema.json#/properties/_id`: the schema location for a message."""
        return f"{self.name}{node.pointer}"

    # --- navigation ----------------------------------------------------------------------

    def resolve(self, node: SchemaNode) -> SchemaNode:
        """Follow a local `$ref` (exports have none, but hand-made schemas may)."""
        seen: set[str] = set()
        while isinstance(node.schema.get("$ref"), str):
            ref = str(node.schema["$ref"])
            if not ref.startswith("#") or ref in seen:
                return node
            seen.add(ref)
            target: object = self.document
            for token in ref[1:].split("/")[1:] if ref != "#" else []:
                token = token.replace("~1", "/").replace("~0", "~")
                if not isinstance(target, dict) or token not in target:
                    return node
                target = target[token]
            if not isinstance(target, dict):
                return node
            node = SchemaNode(target, ref)
        return node

    def child(self, node: SchemaNode, name: str) -> SchemaNode | None:
        """The subschema of field `name` of an object node: a declared property, else the value
        schema of a map (`additionalProperties`); None when the schema has no such field."""
        node = self.resolve(node)
        for branch, pointer in self._branches(node):
            properties = branch.get("properties")
            if isinstance(properties, dict) and isinstance(properties.get(name), dict):
                found = SchemaNode(properties[name], f"{pointer}/properties/{escape(name)}")
                return self.resolve(found)
        for branch, pointer in self._branches(node):
            extra = branch.get("additionalProperties")
            if isinstance(extra, dict):
                return self.resolve(SchemaNode(extra, f"{pointer}/additionalProperties"))
        return None

    def items(self, node: SchemaNode) -> SchemaNode | None:
        """The element subschema of an array node; None when the node is not an array."""
        node = self.resolve(node)
        items = node.schema.get("items")
        if isinstance(items, dict):
            return self.resolve(SchemaNode(items, f"{node.pointer}/items"))
        return None

    def field_names(self, node: SchemaNode) -> list[str]:
        """The declared field names of an object node (for suggestions)."""
        names: list[str] = []
        for branch, _pointer in self._branches(self.resolve(node)):
            properties = branch.get("properties")
            if isinstance(properties, dict):
                names.extend(str(name) for name in properties)
        return names

    def required(self, node: SchemaNode) -> list[str]:
        """The `required` field names of an object node."""
        names: list[str] = []
        for branch, _pointer in self._branches(self.resolve(node)):
            required = branch.get("required")
            if isinstance(required, list):
                names.extend(name for name in required if isinstance(name, str))
        return names

    def _branches(self, node: SchemaNode) -> list[tuple[Schema, str]]:
        """The node itself and its `allOf` parts (unresolved exports keep fields in those)."""
        branches: list[tuple[Schema, str]] = [(node.schema, node.pointer)]
        parts = node.schema.get("allOf")
        if isinstance(parts, list):
            for index, part in enumerate(parts):
                if isinstance(part, dict):
                    resolved = self.resolve(SchemaNode(part, f"{node.pointer}/allOf/{index}"))
                    branches.append((resolved.schema, resolved.pointer))
        return branches


def load_schema(path: Path) -> XdmSchema:
    """Read an exported XDM schema; raises SchemaLoadError naming every problem (the file is
    unreadable, not JSON, not an object, or not a valid JSON Schema)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SchemaLoadError([f"{path}: cannot be read: {exc.strerror or exc}"]) from None
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise SchemaLoadError([f"{path}: not valid JSON: {exc}"]) from None
    if not isinstance(document, dict):
        raise SchemaLoadError([f"{path}: an exported XDM schema must be a JSON object"])
    problems = schema_problems(document)
    if problems:
        raise SchemaLoadError([f"{path}: not a valid JSON Schema: {p}" for p in problems])
    return XdmSchema(document, path)


def schema_problems(document: dict[str, Any]) -> list[str]:
    """Where the document breaks its JSON Schema draft's meta-schema (draft-06 by default);
    the first such place, since the meta-schema check stops there."""
    checked = document if "$schema" in document else {**document, "$schema": DRAFT6_URI}
    try:
        jsonschema_rs.meta.validate(checked)
    except jsonschema_rs.ValidationError as exc:
        return [describe_schema_error(exc)]
    except jsonschema_rs.ReferencingError as exc:
        return [f"unknown $schema: {exc.message}"]
    return []


def describe_schema_error(error: jsonschema_rs.ValidationError) -> str:
    """`#/properties/a/type: "strin" is not valid under ...`: where in the schema, and why."""
    where = "#" + "".join("/" + escape(token) for token in error.instance_path)
    return f"{where}: {error.message.splitlines()[0]}"
