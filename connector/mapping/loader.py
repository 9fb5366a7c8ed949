"""Loading mapping files: every file of a directory, every problem of every file at once.

A mapping directory holds mapping files at its top level only (`*.yaml`, `*.yml`, `*.json`;
hidden files skipped; subdirectories such as `examples/` are not read, which is also where
exported mapping sets referenced by `mappingSet:` can live). Files load in name order.
Files named `*.schema.json` are exported XDM schemas referenced by `validate: {schema: FILE}`,
not mappings (a flat ConfigMap can hold them beside the mappings).
Nothing is compiled into the worker unless every file is valid: MappingLoadError lists every
problem, each starting with the file and, for entries, `mappings[i] (line n)`.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from connector.envelope import EnvelopeTarget
from connector.logs import get_logger
from connector.mapping.entity import Field, FilterSpec, generate
from connector.mapping.errors import MappingLoadError
from connector.mapping.functions import Runtime
from connector.mapping.limits import MappingLimits
from connector.mapping.mapping import (
    FIELD_TYPES,
    CompiledMapping,
    EntrySpec,
    SourceType,
    TargetDefaults,
    compile_field,
    compile_filter,
)
from connector.mapping.model import (
    LEGACY_SOURCE_TYPE,
    SOURCE_TYPES,
    Document,
    DocumentError,
    EntryModel,
    ExportedEntryModel,
    MappingFileModel,
    SchemaRefModel,
    describe_validation_error,
    read_document,
)
from connector.xdm import EntityValidator

MAPPING_SUFFIXES = (".yaml", ".yml", ".json")
#: Exported XDM schemas (`validate.schema`) may sit beside the mappings under this suffix.
SCHEMA_SUFFIX = ".schema.json"

log = get_logger("mapping")


def mapping_files(directory: Path) -> list[Path]:
    """The mapping files of a directory (top level only), in name order."""
    return sorted(
        path
        for path in directory.iterdir()
        if path.suffix.lower() in MAPPING_SUFFIXES
        and path.is_file()
        and not path.name.startswith(".")
        and not path.name.lower().endswith(SCHEMA_SUFFIX)
    )


def load_mappings(
    directory: Path,
    defaults: TargetDefaults,
    *,
    runtime: Runtime | None = None,
    limits: MappingLimits | None = None,
) -> list[CompiledMapping]:
    """Compile every mapping file of `directory`; raises MappingLoadError listing every problem
    (including two files with the same name, or reading one topic in different formats).
    `limits` (settings section `mapping`) replaces the runtime's.

    A topic may be listed by several mappings: each of its records is then mapped by all of
    them (for example into an event dataset and a profile dataset)."""
    if not directory.is_dir():
        raise MappingLoadError([f"{directory}: not a directory (the mappings directory)"])
    problems: list[str] = []
    compiled: list[CompiledMapping] = []
    for path in mapping_files(directory):
        try:
            compiled.append(load_mapping_file(path, defaults, runtime=runtime, limits=limits))
        except MappingLoadError as exc:
            problems.extend(exc.problems)
    names: dict[str, CompiledMapping] = {}
    topics: dict[str, CompiledMapping] = {}
    for mapping in compiled:
        if mapping.name in names:
            problems.append(
                f"{mapping.path}: mapping name {mapping.name!r} is also used by "
                f"{names[mapping.name].path}"
            )
        names.setdefault(mapping.name, mapping)
        for topic in mapping.source_topics:
            other = topics.setdefault(topic, mapping)
            if (other.source_format, other.schema_path) != (
                mapping.source_format,
                mapping.schema_path,
            ):
                problems.append(
                    f"{mapping.path}: topic {topic!r} is read as {mapping.source_format} here but "
                    f"as {other.source_format} by {other.path} (one topic, one format)"
                )
    if problems:
        raise MappingLoadError(problems)
    return compiled


def load_mapping_file(
    path: Path,
    defaults: TargetDefaults,
    *,
    runtime: Runtime | None = None,
    limits: MappingLimits | None = None,
) -> CompiledMapping:
    """Compile one mapping file; raises MappingLoadError listing every problem in it.
    Notices (regexes that RE2 cannot run) are logged as warnings and kept on the mapping."""
    runtime = runtime or Runtime()
    if limits is not None:
        runtime = replace(runtime, limits=limits)
    mapping = _FileLoader(path, defaults, runtime).load()
    for notice in mapping.notices:
        log.warning("mapping notice", extra={"fields": {"file": str(path), "notice": notice}})
    return mapping


class _FileLoader:
    def __init__(self, path: Path, defaults: TargetDefaults, runtime: Runtime) -> None:
        self.path = path
        self.defaults = defaults
        self.runtime = runtime
        self.problems: list[str] = []

    def report(self, message: str) -> None:
        self.problems.append(f"{self.path}: {message}")

    def fail(self) -> MappingLoadError:
        return MappingLoadError(self.problems)

    def load(self) -> CompiledMapping:
        try:
            document = read_document(self.path)
        except DocumentError as exc:
            self.report(str(exc))
            raise self.fail() from None
        for problem in document.problems:
            self.report(problem)
        data = document.data
        if not isinstance(data, dict):
            self.report("the file must be a mapping with the keys name, source, target, mappings")
            raise self.fail()
        if "source" not in data and "target" not in data and "outputSchema" in data:
            self.report(
                "this looks like a mapping set exported from the Platform: reference it with "
                "`mappingSet:` from a mapping file and keep it outside the top level"
            )
            raise self.fail()
        if "source" not in data and "target" not in data and "meta:resourceType" in data:
            self.report(
                f"this looks like an exported XDM schema: name it *{SCHEMA_SUFFIX} and reference "
                "it with `validate: {schema: FILE}` from a mapping file"
            )
            raise self.fail()
        model: MappingFileModel | None = None
        try:
            model = MappingFileModel.model_validate(data)
        except ValidationError as exc:
            for line in describe_validation_error(exc, line_of=document.line_of_key):
                self.report(line)

        # Entries are checked even when the file model failed, so every problem shows up.
        entries, set_schema_ref = self.entries(data, document)
        fields: list[Field] = []
        for entry in entries:
            compiled, problems = compile_field(entry, self.runtime)
            for problem in problems:
                self.report(problem)
            if compiled is not None:
                fields.append(compiled)
        keep: FilterSpec | None = None
        if isinstance(data.get("filter"), str):
            where = f"filter{document.line_of_key('filter')}"
            keep, filter_problems = compile_filter(data["filter"], self.runtime, where)
            for problem in filter_problems:
                self.report(f"{where}: {problem}")
        name = (model.name if model is not None else None) or self.path.stem
        strict = model.strict if model is not None else False
        program = generate(name, fields, keep, self.runtime, strict)
        for problem in program.problems:
            self.report(problem)
        validator = self.validator(data, entries, document)
        if model is None or self.problems:
            raise self.fail()
        raw = model.target.mode == "raw"
        target = None if raw else self.target(model, set_schema_ref)
        schema_path = self.schema_path(model)
        if self.problems or (target is None and not raw):
            raise self.fail()
        source = model.source
        return CompiledMapping(
            name=model.name or self.path.stem,
            path=self.path,
            source_topics=tuple(source.topics or ()),
            topic_pattern=re.compile(source.topicPattern) if source.topicPattern else None,
            source_format=source.format,
            schema_path=schema_path,
            strict=model.strict,
            connection_id=model.target.connectionId or self.defaults.connection_id,
            target=target,
            build=program.function,
            timed=program.timed,
            runtime=self.runtime,
            source=program.source,
            notices=tuple(program.notices),
            validator=validator,
            raw_flow_id=model.target.flowId if raw else None,
        )

    def target(
        self, model: MappingFileModel, set_schema_ref: SchemaRefModel | None
    ) -> EnvelopeTarget | None:
        target = model.target
        assert target.datasetId is not None  # required in xdm mode (TargetModel)
        schema_ref = target.schemaRef or set_schema_ref
        if schema_ref is None:
            self.report("target.schemaRef is missing (and no mapping set gives outputSchema)")
            return None
        if target.schemaRef and set_schema_ref and target.schemaRef.id != set_schema_ref.id:
            self.report("target.schemaRef.id differs from the mapping set's outputSchema")
            return None
        return EnvelopeTarget(
            dataset_id=target.datasetId,
            schema_id=schema_ref.id,
            content_type=schema_ref.contentType,
            source_name=target.sourceName or model.name or self.path.stem,
            ims_org_id=target.imsOrgId or self.defaults.ims_org_id,
            flow_id=target.flowId,
        )

    def validator(
        self, data: dict[str, Any], entries: list[EntrySpec], document: Document
    ) -> EntityValidator | None:
        """`validate.schema`: the entries checked against the exported XDM schema, and the
        per-record validator compiled (connector.xdm); None when the key is absent."""
        settings = data.get("validate")
        if not isinstance(settings, dict) or not isinstance(settings.get("schema"), str):
            return None  # absent, or malformed (the file model reports that)
        from connector.xdm.mapping_check import build_validator  # it imports this package

        where = f"validate{document.line_of_key('validate')}"
        validator, problems = build_validator(self.path, settings["schema"], entries, where)
        for problem in problems:
            self.report(problem)
        return validator

    def schema_path(self, model: MappingFileModel) -> Path | None:
        if model.source.schema_file is None:
            return None
        schema = (self.path.parent / model.source.schema_file).resolve()
        if not schema.is_file():
            self.report(f"source.schema: {schema} does not exist")
        return schema

    # --- entries --------------------------------------------------------------------------

    def entries(
        self, data: dict[str, Any], document: Document
    ) -> tuple[list[EntrySpec], SchemaRefModel | None]:
        raw = data.get("mappings")
        mapping_set = data.get("mappingSet")
        items: list[tuple[str, object]]
        entry_model: type[EntryModel] = EntryModel
        schema_ref: SchemaRefModel | None = None
        if isinstance(raw, list):
            items = [
                (f"mappings[{i}]{document.line_of_entry(i)}", item) for i, item in enumerate(raw)
            ]
        elif isinstance(mapping_set, (str, dict)):
            entry_model = ExportedEntryModel
            items, schema_ref = self.mapping_set(mapping_set)
        else:
            return [], None
        types = data.get("types") if isinstance(data.get("types"), dict) else {}
        assert isinstance(types, dict)
        entries: list[EntrySpec] = []
        for label, item in items:
            entry = self.entry(label, item, entry_model, types)
            if entry is not None:
                entries.append(entry)
        mapped = {entry.destination for entry in entries}
        for destination, type_name in types.items():
            if destination not in mapped:
                self.report(f"types: {destination!r} is not a destination of this mapping")
            if type_name not in FIELD_TYPES:
                self.report(
                    f"types: unknown type {type_name!r} for {destination!r}; "
                    f"use one of {', '.join(FIELD_TYPES)}"
                )
        return entries, schema_ref

    def mapping_set(
        self, reference: str | dict[str, Any]
    ) -> tuple[list[tuple[str, object]], SchemaRefModel | None]:
        """Entries of an exported mapping set, from a file beside this one or inline."""
        if isinstance(reference, str):
            set_path = self.path.parent / reference
            try:
                document = read_document(set_path)
            except DocumentError as exc:
                self.report(f"mappingSet {reference}: {exc}")
                return [], None
            data, where = document.data, f"mappingSet {reference} "
        else:
            document, data, where = Document(reference), reference, "mappingSet."
        if not isinstance(data, dict) or not isinstance(data.get("mappings"), list):
            self.report(f"{where.strip()}: expected an object with a `mappings` array")
            return [], None
        items: list[tuple[str, object]] = [
            (f"{where}mappings[{i}]{document.line_of_entry(i)}", item)
            for i, item in enumerate(data["mappings"])
        ]
        schema_ref = None
        output = data.get("outputSchema")
        if isinstance(output, dict) and isinstance(output.get("schemaRef"), dict):
            try:
                schema_ref = SchemaRefModel.model_validate(
                    {k: v for k, v in output["schemaRef"].items() if k in ("id", "contentType")}
                )
            except ValidationError as exc:
                for line in describe_validation_error(
                    exc, prefix=f"{where}outputSchema.schemaRef."
                ):
                    self.report(line)
        return items, schema_ref

    def entry(
        self, label: str, item: object, model: type[EntryModel], types: dict[Any, Any]
    ) -> EntrySpec | None:
        if not isinstance(item, dict):
            self.report(f"{label}: an entry must be a mapping with sourceType, source, destination")
            return None
        try:
            parsed = model.model_validate(item)
        except ValidationError as exc:
            for line in describe_validation_error(exc):
                self.report(f"{label}: {line}")
            return None
        source_type = parsed.sourceType.upper()
        source, destination = parsed.source, parsed.destination
        if parsed.sourceType == LEGACY_SOURCE_TYPE:
            source_type = "ATTRIBUTE"
            source = parsed.sourceAttribute if source is None else source
            destination = destination or parsed.destinationXdmPath
        elif source_type not in SOURCE_TYPES:
            self.report(
                f"{label}: sourceType {parsed.sourceType!r} is not ATTRIBUTE, EXPRESSION or STATIC"
            )
            return None
        if not destination:
            self.report(f"{label}: destination is missing")
            return None
        field_type = parsed.type
        declared = types.get(destination)
        if field_type is not None and declared is not None and declared != field_type:
            self.report(f"{label}: type {field_type!r} differs from types[{destination!r}]")
        field_type = field_type or (declared if isinstance(declared, str) else None)
        kind: SourceType = source_type  # type: ignore[assignment]
        return EntrySpec(label, kind, source, destination, field_type)
