"""The mapping file as data: reading YAML/JSON with line numbers, and the pydantic models that
validate it at load time (never on the hot path).

Line numbers come from PyYAML's node tree, so every problem can name the line of the entry
it is about; JSON is read by the same parser (JSON is YAML), with a plain JSON fallback.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson
import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, model_validator

from connector.envelope import DEFAULT_CONTENT_TYPE
from connector.errors import ConnectorError

SOURCE_TYPES = ("ATTRIBUTE", "EXPRESSION", "STATIC")
#: Older Data Prep exports: `sourceAttribute` / `destinationXdmPath` with this sourceType.
LEGACY_SOURCE_TYPE = "text/x.schema-path"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SchemaRefModel(_Model):
    id: str = Field(min_length=1)
    contentType: str = DEFAULT_CONTENT_TYPE


class SourceModel(_Model):
    topics: list[str] | None = None
    topicPattern: str | None = None
    format: Literal["json", "avro", "avro-schema"] = "json"
    schema_file: str | None = Field(default=None, alias="schema")

    @model_validator(mode="after")
    def _consistent(self) -> SourceModel:
        if (self.topics is None) == (self.topicPattern is None):
            raise ValueError("give exactly one of source.topics and source.topicPattern")
        if self.topics is not None:
            if not self.topics or any(not topic.strip() for topic in self.topics):
                raise ValueError("source.topics must list at least one non-empty topic")
            if len(set(self.topics)) != len(self.topics):
                raise ValueError("source.topics lists a topic twice")
        if self.topicPattern is not None:
            try:
                re.compile(self.topicPattern)
            except re.error as exc:
                raise ValueError(f"source.topicPattern is not a valid regex: {exc}") from None
        if self.format == "avro-schema" and not self.schema_file:
            raise ValueError("source.format avro-schema needs source.schema (an .avsc file)")
        if self.format != "avro-schema" and self.schema_file:
            raise ValueError("source.schema is only used with source.format avro-schema")
        return self


#: `target.mode`: `xdm` wraps each entity in the Platform's envelope; `raw` sends the decoded
#: record itself to an HTTP API source dataflow, which maps it in the Platform.
TargetMode = Literal["xdm", "raw"]
#: Target keys that describe the XDM envelope, so have no use in raw mode.
ENVELOPE_TARGET_KEYS = ("datasetId", "schemaRef", "imsOrgId", "sourceName")


class TargetModel(_Model):
    mode: TargetMode = "xdm"
    connectionId: str | None = Field(default=None, min_length=1)
    datasetId: str | None = Field(default=None, min_length=1)
    schemaRef: SchemaRefModel | None = None
    imsOrgId: str | None = Field(default=None, min_length=1)
    flowId: str | None = Field(default=None, min_length=1)
    sourceName: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _keys_of_the_mode(self) -> TargetModel:
        if self.mode == "xdm":
            if self.datasetId is None:
                raise ValueError("target.datasetId is required (the dataset the envelope names)")
            return self
        problems = []
        if self.flowId is None:
            problems.append(
                "target.flowId is required with target.mode raw (sent as the x-adobe-flow-id "
                "header: the dataflow that maps the payload)"
            )
        unused = [key for key in ENVELOPE_TARGET_KEYS if getattr(self, key) is not None]
        if unused:
            problems.append(
                f"target.{', target.'.join(unused)}: not used with target.mode raw (there is no "
                "envelope; the dataflow decides the dataset and schema)"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self


class ValidateModel(_Model):
    """`validate: {schema: FILE}`: the target schema exported from the Platform (resolved JSON
    Schema), relative to the mapping file; see connector.xdm."""

    schema_file: str = Field(alias="schema", min_length=1)


class MappingFileModel(_Model):
    name: str | None = Field(default=None, min_length=1)
    description: str | None = None
    source: SourceModel
    target: TargetModel
    strict: StrictBool = False
    filter: str | None = Field(default=None, min_length=1)
    types: dict[str, str] = Field(default_factory=dict)
    # Entries are validated one by one (see EntryModel) so problems carry their index and line.
    mappings: list[Any] | None = None
    mappingSet: str | dict[str, Any] | None = None
    validate_: ValidateModel | None = Field(default=None, alias="validate")

    @model_validator(mode="after")
    def _one_entry_source(self) -> MappingFileModel:
        if self.target.mode == "raw":
            # The record is sent as it is: only the filter still applies (see docs/raw-payloads.md).
            given = [key for key in RAW_UNUSED_KEYS if key in self.model_fields_set]
            if given:
                names = ", ".join("validate" if key == "validate_" else key for key in given)
                raise ValueError(
                    f"{names}: not used with target.mode raw (the record is sent as it is and "
                    "the dataflow in the Platform maps it; only `filter` applies)"
                )
            return self
        if (self.mappings is None) == (self.mappingSet is None):
            raise ValueError("give exactly one of mappings and mappingSet")
        return self


#: File keys that shape or check an XDM entity, so have no use in raw mode.
RAW_UNUSED_KEYS = ("mappings", "mappingSet", "types", "strict", "validate_")


class EntryModel(_Model):
    """One Data Prep mapping entry. Keys Data Prep exports for its own use are accepted and
    ignored so that exported entries can be pasted as they are."""

    sourceType: str = "ATTRIBUTE"
    source: Any = None
    destination: str | None = None
    type: str | None = None
    sourceAttribute: str | None = None
    destinationXdmPath: str | None = None
    name: Any = None
    description: Any = None
    identity: Any = None
    identityGroup: Any = None
    namespaceCode: Any = None
    primaryIdentity: Any = None
    version: Any = None
    id: Any = None


class ExportedEntryModel(EntryModel):
    """An entry of a mapping set exported from the Platform: unknown keys are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)


@dataclass(slots=True)
class Document:
    """A parsed file and where things are in it (1-based lines; empty for plain JSON)."""

    data: object
    key_lines: dict[str, int] = field(default_factory=dict)
    entry_lines: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # e.g. duplicate keys

    def line_of_key(self, key: str) -> str:
        line = self.key_lines.get(key)
        return f" (line {line})" if line else ""

    def line_of_entry(self, index: int) -> str:
        return f" (line {self.entry_lines[index]})" if index < len(self.entry_lines) else ""


class DocumentError(ConnectorError):
    """The file cannot be read or parsed at all."""


def read_document(path: Path) -> Document:
    """Read a YAML or JSON file keeping line numbers; raises DocumentError."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DocumentError(f"cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise DocumentError("is not UTF-8 text") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        if path.suffix.lower() == ".json":
            try:
                return Document(orjson.loads(text))
            except orjson.JSONDecodeError as json_exc:
                raise DocumentError(f"is not valid JSON: {json_exc}") from None
        raise DocumentError(f"is not valid YAML: {_yaml_message(exc)}") from None
    finally:
        loader.dispose()
    document = Document(data)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            document.key_lines.setdefault(str(key_node.value), key_node.start_mark.line + 1)
            if key_node.value == "mappings" and isinstance(value_node, yaml.SequenceNode):
                document.entry_lines = [item.start_mark.line + 1 for item in value_node.value]
    if node is not None:
        _find_duplicate_keys(node, document.problems)
    return document


def _yaml_message(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is not None:
        return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
    return str(problem)


def _find_duplicate_keys(node: yaml.Node, problems: list[str]) -> None:
    """PyYAML keeps the last of repeated keys silently; a repeated key is almost always a typo."""
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in current.value:
                key = str(key_node.value)
                if key in seen:
                    problems.append(f"duplicate key {key!r} (line {key_node.start_mark.line + 1})")
                seen.add(key)
                stack.append(value_node)
        elif isinstance(current, yaml.SequenceNode):
            stack.extend(current.value)


def describe_validation_error(
    exc: ValidationError, prefix: str = "", line_of: Any = None
) -> list[str]:
    """One line per pydantic error: the key path, the line when known, and the reason."""
    lines: list[str] = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        key = ".".join(loc)
        where = prefix + key if key else (prefix.rstrip(".") or "(top level)")
        line = line_of(loc[0]) if (line_of is not None and loc) else ""
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        lines.append(f"{where}{line}: {message}")
    return lines
