"""The evaluation context of one record, and single expressions compiled on their own.

A mapping is compiled as one generated function (see entity.generate); `ExpressionCompiler`
compiles one expression into a function `(ctx) -> value` the same way, for the filter check,
the tests and anyone evaluating an expression alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from connector.mapping.codegen import (
    ExpressionGenerator,
    Namespace,
    Source,
    compile_source,
    field_failure,
    field_warning,
)
from connector.mapping.codegen import describe as describe
from connector.mapping.codegen import kafka_object as kafka_object
from connector.mapping.errors import SourceError
from connector.mapping.functions import Runtime
from connector.mapping.nodes import Node
from connector.records import SourceRecord


class Ctx:
    """One record being mapped: its value, its Kafka metadata, the array elements bound by the
    destination's `[*]` (for expressions compiled alone), the deadline of its evaluation
    budget (the Runtime's clock) and the field warnings collected so far."""

    __slots__ = ("bound", "deadline", "meta", "root", "strict", "warnings")

    def __init__(
        self,
        root: dict[str, object],
        meta: SourceRecord,
        strict: bool,
        deadline: float = math.inf,
    ) -> None:
        self.root = root
        self.meta = meta
        self.bound: tuple[object, ...] = ()
        self.warnings: list[str] = []
        self.strict = strict
        self.deadline = deadline

    def field_error(self, destination: str, exc: Exception) -> None:
        """A field could not be produced: a warning, or in strict mode the record's failure.
        A MappingFailure (the evaluation budget is spent) always fails the record."""
        if self.strict:
            field_failure(self.warnings, destination, exc)
        field_warning(self.warnings, destination, exc)


Eval = Callable[[Ctx], object]


class ExpressionCompiler:
    """Compiles one expression into `(ctx) -> value`; `depth` is the destination's `[*]`
    count (the elements are read from ctx.bound). Problems are collected in `problems`."""

    def __init__(self, runtime: Runtime, depth: int = 0) -> None:
        self.runtime = runtime
        self.depth = depth
        self.problems: list[SourceError] = []
        self.notices: list[str] = []
        self.star_refs: list[list[tuple[str | int, ...]]] = []
        self.volatile = False
        self.heavy = False
        self.source = ""

    def compile(self, node: Node) -> Eval:
        namespace = Namespace(self.runtime)
        src = Source()
        generator = ExpressionGenerator(namespace, src, self.depth)
        code = generator.expression(node)
        self.problems.extend(generator.problems)
        self.notices.extend(generator.notices)
        self.star_refs.extend(generator.star_refs)
        self.volatile = self.volatile or generator.volatile
        self.heavy = self.heavy or generator.heavy
        lines = ["def evaluate(ctx):", "    root = ctx.root", "    meta = ctx.meta"]
        lines += [f"    e{n} = ctx.bound[{n - 1}]" for n in range(1, self.depth + 1)]
        lines.append(f"    return {code.text}")
        self.source = "\n".join(lines) + "\n"
        try:
            function = compile_source(self.source, namespace.values, "evaluate")
        except (SyntaxError, RecursionError, MemoryError, ValueError) as exc:
            self.problems.append(
                SourceError(f"the expression is too large to compile ({type(exc).__name__})")
            )
            return lambda ctx: None
        return function
