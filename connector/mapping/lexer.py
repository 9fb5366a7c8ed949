"""Tokens of the Data Prep expression language, each with its line and column.

Hand-written because the language is small: numbers, quoted strings, identifiers, `${...}`
escaped names and a fixed set of operators. Words such as `and`, `true` or `eq` come out as
identifiers; the parser gives them their meaning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from connector.mapping.errors import SourceError

TokenKind = Literal["num", "str", "ident", "escaped", "op", "eof"]

#: Operators, longest first so that `==` wins over `=`-less prefixes.
_OPERATORS = ("==", "!=", "<=", ">=", "&&", "||", "+", "-", "*", "/", "!", "<", ">")
_PUNCTUATION = frozenset("()[],.")
_STRING_ESCAPES = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "b": "\b",
    "f": "\f",
    "\\": "\\",
    "'": "'",
    '"': '"',
    "/": "/",
}


@dataclass(frozen=True, slots=True)
class Token:
    kind: TokenKind
    text: str  # operator text, identifier, or the decoded string literal
    value: object  # the number for "num"; the list of names for "escaped"
    line: int
    column: int


def tokenize(source: str) -> list[Token]:
    """Split an expression into tokens, ending with an "eof" token; raises SourceError."""
    return _Lexer(source).run()


class _Lexer:
    def __init__(self, source: str) -> None:
        self.src = source
        self.i = 0
        self.line = 1
        self.line_start = 0
        self.tokens: list[Token] = []

    def run(self) -> list[Token]:
        src = self.src
        while self.i < len(src):
            ch = src[self.i]
            if ch == "\n":
                self.i += 1
                self.line += 1
                self.line_start = self.i
            elif ch.isspace():
                self.i += 1
            elif ch.isdigit():
                self._number()
            elif ch in "\"'":
                self._string(ch)
            elif src.startswith("${", self.i):
                self._escaped()
            elif ch.isalpha() or ch in "_$":
                self._identifier()
            elif ch in _PUNCTUATION:
                self._add("op", ch, ch)
                self.i += 1
            else:
                for op in _OPERATORS:
                    if src.startswith(op, self.i):
                        self._add("op", op, op)
                        self.i += len(op)
                        break
                else:
                    hint = " (use == to compare)" if ch == "=" else ""
                    raise self._error(f"unexpected character {ch!r}{hint}")
        self._add("eof", "", None)
        return self.tokens

    def _column(self, at: int | None = None) -> int:
        return (self.i if at is None else at) - self.line_start + 1

    def _error(self, message: str, at: int | None = None) -> SourceError:
        return SourceError(message, self.line, self._column(at))

    def _add(self, kind: TokenKind, text: str, value: object, at: int | None = None) -> None:
        self.tokens.append(Token(kind, text, value, self.line, self._column(at)))

    def _number(self) -> None:
        src, start = self.src, self.i
        i = start
        while i < len(src) and src[i].isdigit():
            i += 1
        is_float = False
        if i + 1 < len(src) and src[i] == "." and src[i + 1].isdigit():
            is_float = True
            i += 1
            while i < len(src) and src[i].isdigit():
                i += 1
        if i < len(src) and src[i] in "eE":
            j = i + 1
            if j < len(src) and src[j] in "+-":
                j += 1
            if j < len(src) and src[j].isdigit():
                is_float = True
                i = j
                while i < len(src) and src[i].isdigit():
                    i += 1
        text = src[start:i]
        if not text.isascii():
            raise self._error(f"not a number: {text!r}")
        value: int | float = float(text) if is_float else int(text)
        self._add("num", text, value, start)
        self.i = i

    def _string(self, quote: str) -> None:
        src, start = self.src, self.i
        start_line, start_column = self.line, self._column()
        i = start + 1
        out: list[str] = []
        while i < len(src):
            ch = src[i]
            if ch == quote:
                text = "".join(out)
                self.tokens.append(Token("str", text, text, start_line, start_column))
                self.i = i + 1
                return
            if ch == "\n":
                self.line += 1
                self.line_start = i + 1
            if ch == "\\" and i + 1 < len(src):
                nxt = src[i + 1]
                if nxt == "u" and _is_hex(src[i + 2 : i + 6]):
                    out.append(chr(int(src[i + 2 : i + 6], 16)))
                    i += 6
                    continue
                # Unknown escapes keep their backslash, so regexes such as "\d+" read naturally.
                out.append(_STRING_ESCAPES.get(nxt, "\\" + nxt))
                i += 2
                continue
            out.append(ch)
            i += 1
        raise SourceError("string literal is not closed", start_line, start_column)

    def _escaped(self) -> None:
        src, start = self.src, self.i
        names: list[str] = []
        current: list[str] = []
        i = start + 2
        while i < len(src):
            ch = src[i]
            if ch == "\\" and i + 1 < len(src):
                current.append(src[i + 1])
                i += 2
                continue
            if ch == "}":
                names.append("".join(current))
                if any(name == "" for name in names):
                    raise self._error("empty field name inside ${...}", start)
                self._add("escaped", src[start : i + 1], names, start)
                self.i = i + 1
                return
            if ch == "\n":
                raise self._error("'${' without a closing '}' on the same line", start)
            if ch == ".":
                names.append("".join(current))
                current = []
            else:
                current.append(ch)
            i += 1
        raise self._error("'${' without a closing '}'", start)

    def _identifier(self) -> None:
        src, start = self.src, self.i
        i = start + 1
        while i < len(src) and (src[i].isalnum() or src[i] in "_$"):
            i += 1
        text = src[start:i]
        self._add("ident", text, text, start)
        self.i = i


def _is_hex(text: str) -> bool:
    return len(text) == 4 and all(c in "0123456789abcdefABCDEF" for c in text)
