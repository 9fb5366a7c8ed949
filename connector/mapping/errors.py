"""The mapping package's errors: load-time problems, per-field evaluation errors, rejected records.

Load time collects problems instead of raising at the first one, so that a user sees every
mistake of every file in one run. At run time a field error stays inside one field (a warning)
unless the mapping is strict; only `MappingFailure` ever leaves `CompiledMapping.apply`.
"""

from __future__ import annotations

from connector.errors import ConnectorError, InvalidInput


class SourceError(ConnectorError):
    """A problem in one piece of mapping text (expression, path, pattern) at a line and column."""

    def __init__(self, message: str, line: int = 1, column: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column

    def __str__(self) -> str:
        return f"{self.message} (line {self.line}, column {self.column})"


class ExpressionError(ConnectorError):
    """An expression could not produce a value for this record (bad input type, parse failure).

    Messages name the function and the problem, never the record's values.
    """


class MappingFailure(ConnectorError):
    """The record cannot be mapped: a field failed in strict mode, the filter failed, the value
    is not an object, nothing at all was produced, or the evaluation ran past its budget.
    The message names the destination; `reason` is a short fixed code (the dead-letter error
    class): "mapping_failure", or "too_slow" for the evaluation budget."""

    def __init__(self, message: str, reason: str = "mapping_failure") -> None:
        super().__init__(message)
        self.reason = reason


#: MappingFailure.reason of a record whose evaluation ran past the budget.
TOO_SLOW = "too_slow"


def too_slow(where: str) -> MappingFailure:
    return MappingFailure(f"{where}: the evaluation budget for one record is spent", TOO_SLOW)


class MappingLoadError(InvalidInput):
    """One or more mapping files are invalid; `problems` lists every one, one line each."""
