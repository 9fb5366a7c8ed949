"""XDM schemas exported from the Platform: loading, per-record validation, and checking a
mapping's destinations against the schema at load time.

    schema = load_schema(Path("mappings/web.schema.json"))    # raises SchemaLoadError
    validator = EntityValidator(schema)                        # compiled once
    violation = validator.validate(entity)                     # None, or pointer + keyword

A mapping names its schema with `validate: {schema: FILE}`; the mapping loader then runs
`connector.xdm.mapping_check` and sets `CompiledMapping.validator`. That module imports the
mapping package, so it is not imported here (the mapping loader imports it lazily).
"""

from connector.xdm.schema import SchemaLoadError, SchemaNode, XdmSchema, load_schema
from connector.xdm.validator import EntityValidator, Violation

__all__ = [
    "EntityValidator",
    "SchemaLoadError",
    "SchemaNode",
    "Violation",
    "XdmSchema",
    "load_schema",
]
