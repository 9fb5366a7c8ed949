"""Declarative mappings: Data Prep mapping sets, each compiled to one generated Python function.

    mappings = load_mappings(Path("mappings"), TargetDefaults(connection_id, ims_org_id))
    mapping = next(m for m in mappings if m.matches(topic))
    result = mapping.apply(decoded_value, record)   # raises only MappingFailure
    if result.entity is not None:
        message = mapping.envelope(result.entity, created_at_ms)

The language reference is mappings/README.md.
"""

from connector.mapping.errors import MappingFailure, MappingLoadError
from connector.mapping.functions import Runtime
from connector.mapping.loader import load_mapping_file, load_mappings, mapping_files
from connector.mapping.mapping import CompiledMapping, MapResult, TargetDefaults

__all__ = [
    "CompiledMapping",
    "MapResult",
    "MappingFailure",
    "MappingLoadError",
    "Runtime",
    "TargetDefaults",
    "load_mapping_file",
    "load_mappings",
    "mapping_files",
]
