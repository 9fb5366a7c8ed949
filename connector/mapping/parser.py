"""A Pratt parser for Data Prep expressions: tokens in, a syntax tree with positions out.

Precedence, lowest first: `or ||`, `and &&`, `== != eq ne`, `< > <= >= lt gt le ge`, `+ -`,
`* / div mod`, unary `- ! not`, then calls, `.name`, `[n]`, `[*]` and method calls.
Reserved words and function names cannot be used as field names unless written `${...}`.
"""

from __future__ import annotations

from connector.mapping.errors import SourceError
from connector.mapping.lexer import Token, tokenize
from connector.mapping.limits import MAX_EXPRESSION_DEPTH
from connector.mapping.nodes import (
    ArrayLit,
    Binary,
    Call,
    Literal,
    Member,
    Method,
    Node,
    Ref,
    Unary,
)
from connector.mapping.paths import STAR, Step

#: Data Prep's calculated fields are limited to this many characters.
MAX_EXPRESSION_LENGTH = 4096

#: Words Data Prep reserves (JEXL keywords); as field names they must be written `${word}`.
RESERVED_WORDS = frozenset(
    [
        "new",
        "mod",
        "or",
        "break",
        "var",
        "lt",
        "for",
        "false",
        "while",
        "eq",
        "gt",
        "div",
        "not",
        "null",
        "continue",
        "else",
        "and",
        "ne",
        "true",
        "le",
        "if",
        "ge",
        "return",
        "_errors",
        "do",
        "function",
        "empty",
        "size",
    ]
)

#: The Kafka metadata's name in expressions and source paths.
KAFKA = "_kafka"

_BINARY: dict[str, tuple[int, str]] = {
    "or": (1, "or"),
    "||": (1, "or"),
    "and": (2, "and"),
    "&&": (2, "and"),
    "==": (3, "=="),
    "eq": (3, "=="),
    "!=": (3, "!="),
    "ne": (3, "!="),
    "<": (4, "<"),
    "lt": (4, "<"),
    ">": (4, ">"),
    "gt": (4, ">"),
    "<=": (4, "<="),
    "le": (4, "<="),
    ">=": (4, ">="),
    "ge": (4, ">="),
    "+": (5, "+"),
    "-": (5, "-"),
    "*": (6, "*"),
    "/": (6, "/"),
    "div": (6, "/"),
    "mod": (6, "mod"),
}
_UNARY_POWER = 7
_LITERAL_WORDS: dict[str, object] = {"true": True, "false": False, "null": None}


def parse_expression(source: str, function_names: frozenset[str]) -> Node:
    """Parse one expression; raises SourceError pointing at the first problem."""
    if len(source) > MAX_EXPRESSION_LENGTH:
        raise SourceError(
            f"expression is {len(source)} characters long; the limit is {MAX_EXPRESSION_LENGTH}"
        )
    parser = _Parser(tokenize(source), function_names)
    node = parser.expression(0)
    end = parser.peek()
    if end.kind != "eof":
        raise _unexpected(end, "an operator or the end of the expression")
    depth = tree_depth(node)
    if depth > MAX_EXPRESSION_DEPTH:
        raise _too_deep(depth, node)
    return node


def _too_deep(depth: int | str, node: Node | Token) -> SourceError:
    return SourceError(
        f"expression nests {depth} levels deep; the limit is {MAX_EXPRESSION_DEPTH} "
        "(each operator, call and parenthesis is a level: use concat() or "
        "intermediate fields for long chains)",
        node.line,
        node.column,
    )


def tree_depth(root: Node) -> int:
    """The height of a syntax tree, found without recursion (trees may be deep)."""
    deepest = 0
    stack: list[tuple[Node, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children(node))
    return deepest


def children(node: Node) -> tuple[Node, ...]:
    if isinstance(node, Binary):
        return (node.left, node.right)
    if isinstance(node, Unary):
        return (node.operand,)
    if isinstance(node, Call | ArrayLit):
        return node.args if isinstance(node, Call) else node.items
    if isinstance(node, Method):
        return (node.target, *node.args)
    if isinstance(node, Member):
        return (node.target,)
    return ()


def _unexpected(token: Token, wanted: str) -> SourceError:
    found = "the end of the expression" if token.kind == "eof" else repr(token.text)
    return SourceError(f"expected {wanted}, found {found}", token.line, token.column)


class _Parser:
    def __init__(self, tokens: list[Token], function_names: frozenset[str]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.functions = function_names
        self.nesting = 0  # recursion depth: deep input is refused before Python's own limit

    def peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.pos + ahead, len(self.tokens) - 1)]

    def advance(self) -> Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def expect_op(self, text: str) -> Token:
        token = self.peek()
        if token.kind != "op" or token.text != text:
            raise _unexpected(token, repr(text))
        return self.advance()

    def expression(self, min_power: int) -> Node:
        self.nesting += 1
        if self.nesting > MAX_EXPRESSION_DEPTH:
            raise _too_deep(f"more than {MAX_EXPRESSION_DEPTH}", self.peek())
        try:
            return self._expression(min_power)
        finally:
            self.nesting -= 1

    def _expression(self, min_power: int) -> Node:
        left = self.prefix()
        while True:
            token = self.peek()
            if token.kind not in ("op", "ident") or token.text not in _BINARY:
                return left
            power, op = _BINARY[token.text]
            if power <= min_power:
                return left
            self.advance()
            right = self.expression(power)
            left = Binary(token.line, token.column, op, left, right)

    def prefix(self) -> Node:
        token = self.advance()
        if token.kind == "num" or token.kind == "str":
            node: Node = Literal(token.line, token.column, token.value)
        elif token.kind == "escaped":
            names = token.value
            assert isinstance(names, list)
            node = Ref(token.line, token.column, tuple(names))
        elif token.kind == "ident":
            node = self.word(token)
        elif token.kind == "op" and token.text == "(":
            node = self.expression(0)
            self.expect_op(")")
        elif token.kind == "op" and token.text == "[":
            node = ArrayLit(token.line, token.column, self.arguments("]"))
        elif token.kind == "op" and token.text in ("-", "!"):
            return Unary(token.line, token.column, token.text, self.expression(_UNARY_POWER))
        else:
            raise _unexpected(token, "a value, a field or a function call")
        return self.postfix(node)

    def word(self, token: Token) -> Node:
        name = token.text
        if name in _LITERAL_WORDS:
            return Literal(token.line, token.column, _LITERAL_WORDS[name])
        if name == "not":
            return Unary(token.line, token.column, "!", self.expression(_UNARY_POWER))
        nxt = self.peek()
        if nxt.kind == "op" and nxt.text == "(":
            self.advance()
            return Call(token.line, token.column, name, self.arguments(")"))
        if name in RESERVED_WORDS:
            raise SourceError(
                f"{name!r} is a reserved word; write ${{{name}}} to use it as a field name",
                token.line,
                token.column,
            )
        if name in self.functions:
            raise SourceError(
                f"{name!r} is a function name; write ${{{name}}} to use it as a field name",
                token.line,
                token.column,
            )
        if name == KAFKA:
            return Ref(token.line, token.column, (), kafka=True)
        return Ref(token.line, token.column, (name,))

    def arguments(self, closing: str) -> tuple[Node, ...]:
        args: list[Node] = []
        token = self.peek()
        if token.kind == "op" and token.text == closing:
            self.advance()
            return ()
        while True:
            args.append(self.expression(0))
            token = self.advance()
            if token.kind == "op" and token.text == closing:
                return tuple(args)
            if token.kind != "op" or token.text != ",":
                raise _unexpected(token, f"',' or {closing!r}")

    def postfix(self, node: Node) -> Node:
        while True:
            token = self.peek()
            if token.kind != "op" or token.text not in (".", "["):
                return node
            self.advance()
            node = self.member(node, token) if token.text == "." else self.index(node, token)

    def member(self, node: Node, dot: Token) -> Node:
        token = self.advance()
        if token.kind == "escaped":
            names = token.value
            assert isinstance(names, list)
            if isinstance(node, Ref):
                return Ref(node.line, node.column, node.steps + tuple(names), node.kafka)
            for name in names:
                node = Member(token.line, token.column, node, name)
            return node
        if token.kind != "ident":
            raise _unexpected(token, "a field or method name after '.'")
        nxt = self.peek()
        if nxt.kind == "op" and nxt.text == "(":
            self.advance()
            return Method(token.line, token.column, node, token.text, self.arguments(")"))
        if token.text in RESERVED_WORDS:
            raise SourceError(
                f"{token.text!r} is a reserved word; write ${{{token.text}}} "
                "to use it as a field name",
                token.line,
                token.column,
            )
        if isinstance(node, Ref):
            return Ref(node.line, node.column, (*node.steps, token.text), node.kafka)
        return Member(dot.line, dot.column, node, token.text)

    def index(self, node: Node, bracket: Token) -> Node:
        token = self.advance()
        step: Step
        if token.kind == "op" and token.text == "*":
            if not isinstance(node, Ref):
                raise SourceError("[*] can only follow a field path", bracket.line, bracket.column)
            step = STAR
        elif token.kind == "num" and isinstance(token.value, int):
            step = token.value
        else:
            raise _unexpected(token, "a non-negative integer index or *")
        self.expect_op("]")
        if isinstance(node, Ref):
            return Ref(node.line, node.column, (*node.steps, step), node.kafka)
        assert isinstance(step, int)
        return Member(bracket.line, bracket.column, node, step)
