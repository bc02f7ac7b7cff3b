"""The filter language of the registry's list and search calls: tokenizer, parser, AST.

The grammar is documented on ``SearchModelVersionsRequest.filter`` (registry.proto):

    filter     = [ expr ]
    expr       = term { "OR" term }
    term       = factor { "AND" factor }
    factor     = "NOT" factor | "(" expr ")" | comparison
    comparison = field op value | field [ "NOT" ] "IN" "(" value { "," value } ")"
    op         = "=" | "!=" | "<" | "<=" | ">" | ">=" | "LIKE"

Parsing knows nothing of fields or SQL: ``filter_sql`` checks the fields against a
resource's table and compiles the AST. Every error is ``InvalidArgument`` with the
0-based character position of the offending token.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal, NoReturn, cast

from services.common.errors import FieldViolation, InvalidArgument

Value = str | int | float
Op = Literal["=", "!=", "<", "<=", ">", ">=", "LIKE"]

MAX_DEPTH = 64
_INT64_MAX = 2**63 - 1
_KEYWORDS = frozenset({"AND", "OR", "NOT", "IN", "LIKE"})
_DIGITS = "0123456789"
_NUMBER = re.compile(r"-?([0-9]+)?(\.[0-9]*)?([eE][+-]?[0-9]*)?")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")


def fail(what: str, position: int, message: str) -> NoReturn:
    """Raise the error of request field ``what`` (``filter``, ``order_by``) at ``position``."""
    detail = f"position {position}: {message}"
    raise InvalidArgument(f"{what}: {detail}", violations=[FieldViolation(what, detail)])


@dataclass(frozen=True)
class Token:
    kind: Literal["string", "number", "ident", "keyword", "op", "punct", "end"]
    text: str  # as written (keywords upper-cased)
    position: int
    value: Value = ""

    def describe(self) -> str:
        if self.kind == "end":
            return "end of input"
        if self.kind == "string":
            shown = self.text if len(self.text) <= 40 else self.text[:36] + '..."'
            return f"string {shown}"
        if self.kind == "number":
            return f"number {self.text}"
        return f"'{self.text}'"


# --- AST -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Constant:
    """A string or number as written in the filter, with where it starts."""

    value: Value
    position: int

    def describe(self) -> str:
        if isinstance(self.value, str):
            return f"string {_quote(self.value)}"
        return f"number {self.value!r}"


@dataclass(frozen=True)
class Compare:
    field: str
    field_position: int
    op: Op
    op_position: int
    value: Constant


@dataclass(frozen=True)
class In:
    field: str
    field_position: int
    op_position: int
    values: tuple[Constant, ...]
    negated: bool = False


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class And:
    operands: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    operands: tuple[Node, ...]


Node = Compare | In | Not | And | Or


@dataclass(frozen=True)
class OrderItem:
    field: str
    position: int
    descending: bool = False


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- tokenizer -------------------------------------------------------------------------


def tokenize(text: str, what: str = "filter") -> list[Token]:
    """The tokens of ``text``, ending with an ``end`` token; errors are ``what``'s."""
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char.isspace():
            i += 1
        elif char == '"':
            i = _string(text, i, tokens, what)
        elif char in _DIGITS or char == "-":
            i = _number(text, i, tokens, what)
        elif word := _IDENT.match(text, i):
            upper = word.group().upper()
            kind: Literal["keyword", "ident"] = "keyword" if upper in _KEYWORDS else "ident"
            tokens.append(Token(kind, upper if kind == "keyword" else word.group(), i))
            i = word.end()
        elif text.startswith(("!=", "<=", ">="), i):
            tokens.append(Token("op", text[i : i + 2], i))
            i += 2
        elif char in "=<>":
            tokens.append(Token("op", char, i))
            i += 1
        elif char in "(),":
            tokens.append(Token("punct", char, i))
            i += 1
        elif char == "!":
            fail(what, i, f"expected '=' after '!', got {_char(text, i + 1)}")
        else:
            fail(what, i, f"expected a field, a value, an operator or a parenthesis, got {char!r}")
    tokens.append(Token("end", "", n))
    return tokens


def _char(text: str, i: int) -> str:
    return repr(text[i]) if i < len(text) else "end of input"


def _string(text: str, start: int, tokens: list[Token], what: str) -> int:
    chars: list[str] = []
    i = start + 1
    while i < len(text):
        char = text[i]
        if char == '"':
            tokens.append(Token("string", text[start : i + 1], start, "".join(chars)))
            return i + 1
        if char == "\\":
            escaped = text[i + 1 : i + 2]
            if escaped not in ('"', "\\"):
                got = repr(escaped) if escaped else "end of input"
                fail(what, i, f"expected '\\\"' or '\\\\' after a backslash, got {got}")
            chars.append(escaped)
            i += 2
        else:
            chars.append(char)
            i += 1
    fail(what, start, "expected a closing '\"' for the string that starts here, got end of input")


def _number(text: str, start: int, tokens: list[Token], what: str) -> int:
    match = _NUMBER.match(text, start)
    assert match is not None
    digits, fraction, exponent = match.groups()
    if not digits:
        fail(what, start, f"expected a digit after '-', got {_char(text, match.end())}")
    if fraction == ".":
        fail(what, start, f"expected a digit after '.', got {_char(text, match.end())}")
    if exponent is not None and not exponent.lstrip("eE+-"):
        fail(what, start, f"expected a digit in the exponent, got {_char(text, match.end())}")
    written = match.group()
    # Past 19 digits it is no int64 anyway, and int() refuses more than 4300 digits.
    whole = not (fraction or exponent or len(digits) > 19)
    value: Value = int(written) if whole else float(written)
    if isinstance(value, int) and abs(value) > _INT64_MAX:
        value = float(value)
    if isinstance(value, float) and not math.isfinite(value):
        fail(what, start, f"expected a finite number, got number {written}")
    tokens.append(Token("number", written, start, value))
    return match.end()


# --- parser ----------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str, what: str) -> None:
        self.what = what
        self.tokens = tokenize(text, what)
        self.index = 0
        self.depth = 0

    @property
    def token(self) -> Token:
        return self.tokens[self.index]

    def take(self) -> Token:
        token = self.tokens[self.index]
        self.index = min(self.index + 1, len(self.tokens) - 1)
        return token

    def at(self, kind: str, *texts: str) -> bool:
        return self.token.kind == kind and (not texts or self.token.text in texts)

    def fail(self, expected: str) -> NoReturn:
        fail(self.what, self.token.position, f"{expected}, got {self.token.describe()}")

    def expr(self) -> Node:
        operands = [self.term()]
        while self.at("keyword", "OR"):
            self.take()
            operands.append(self.term())
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def term(self) -> Node:
        operands = [self.factor()]
        while self.at("keyword", "AND"):
            self.take()
            operands.append(self.factor())
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def factor(self) -> Node:
        if not (self.at("keyword", "NOT") or self.at("punct", "(")):
            return self.comparison()
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self.fail(f"expected at most {MAX_DEPTH} nested NOTs and parentheses")
        opening = self.take()
        if opening.text == "NOT":
            node: Node = Not(self.factor())
        else:
            node = self.expr()
            if not self.at("punct", ")"):
                self.fail(f"expected ')' to close the '(' at position {opening.position}")
            self.take()
        self.depth -= 1
        return node

    def comparison(self) -> Node:
        if not self.at("ident"):
            self.fail("expected a field, NOT or '('")
        field = self.take()
        negated = self.at("keyword", "NOT")
        if negated:
            self.take()
            if not self.at("keyword", "IN"):
                self.fail(f"expected IN after '{field.text} NOT'")
        if self.at("keyword", "IN"):
            in_token = self.take()
            return In(field.text, field.position, in_token.position, self.values(), negated)
        if not (self.at("op") or self.at("keyword", "LIKE")):
            self.fail(f"expected an operator (=, !=, <, <=, >, >=, LIKE, IN) after '{field.text}'")
        op = self.take()
        if self.token.kind not in ("string", "number"):
            self.fail(f"expected a value after '{op.text}'")
        value = self.take()
        return Compare(field.text, field.position, cast(Op, op.text), op.position, _literal(value))

    def values(self) -> tuple[Constant, ...]:
        if not self.at("punct", "("):
            self.fail("expected '(' after IN")
        self.take()
        if self.at("punct", ")"):
            self.fail("expected at least one value in the IN list")
        values: list[Constant] = []
        while True:
            if self.token.kind not in ("string", "number"):
                self.fail("expected a value in the IN list")
            values.append(_literal(self.take()))
            if self.at("punct", ")"):
                self.take()
                return tuple(values)
            if not self.at("punct", ","):
                self.fail("expected ',' or ')' in the IN list")
            self.take()


def _literal(token: Token) -> Constant:
    return Constant(token.value, token.position)


def parse(text: str) -> Node | None:
    """The AST of filter ``text``; None when it is empty or blank (matches everything)."""
    parser = _Parser(text, "filter")
    if parser.at("end"):
        return None
    node = parser.expr()
    if not parser.at("end"):
        parser.fail("expected AND, OR or the end of the filter")
    return node


def parse_order_by(text: str) -> tuple[OrderItem, ...]:
    """``field [asc|desc] {, field [asc|desc]}``; empty text gives an empty tuple."""
    parser = _Parser(text, "order_by")
    items: list[OrderItem] = []
    while not parser.at("end"):
        if items:
            if not parser.at("punct", ","):
                parser.fail("expected ',' or the end of the order")
            parser.take()
        if not parser.at("ident"):
            parser.fail("expected a field to order by")
        field = parser.take()
        direction = parser.token.text.upper() if parser.at("ident") else ""
        descending = direction == "DESC"
        if direction in ("ASC", "DESC"):
            parser.take()
        elif not (parser.at("end") or parser.at("punct", ",")):
            parser.fail(f"expected asc, desc, ',' or the end after '{field.text}'")
        items.append(OrderItem(field.text, field.position, descending))
    return tuple(items)
