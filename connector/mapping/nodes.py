"""The expression syntax tree. Every node keeps the line and column where it starts, so that
load-time problems (unknown function, wrong arity) point at the right place."""

from __future__ import annotations

from dataclasses import dataclass

from connector.mapping.paths import Path


@dataclass(frozen=True, slots=True)
class Node:
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class Literal(Node):
    value: object  # str, int, float, bool or None


@dataclass(frozen=True, slots=True)
class Ref(Node):
    """A field path read from the record, or from the Kafka metadata when `kafka` is set
    (the steps then exclude the leading `_kafka`)."""

    steps: Path
    kafka: bool = False


@dataclass(frozen=True, slots=True)
class ArrayLit(Node):
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Call(Node):
    name: str
    args: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Method(Node):
    """`target.equals(x)`, `target.equalsIgnoreCase(x)`, `target.get(k)`."""

    target: Node
    name: str
    args: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Member(Node):
    """`.name` or `[n]` applied to a computed value such as a function's result."""

    target: Node
    key: str | int


@dataclass(frozen=True, slots=True)
class Unary(Node):
    op: str  # "-" or "!"
    operand: Node


@dataclass(frozen=True, slots=True)
class Binary(Node):
    op: str  # canonical: + - * / mod == != < > <= >= and or
    left: Node
    right: Node
