"""Coiote ``searchCriteria``: a small query language compiled to SQL with bound parameters.

Grammar (keywords case-insensitive)::

    expression := term ("or" term)*
    term       := factor ("and" factor)*
    factor     := "not" factor | "(" expression ")" | condition
    condition  := field operator value
    field      := name ("." name)*            e.g. id, properties.endpointName
    operator   := eq | ne | lt | le | gt | ge | startswith | contains | in
    value      := 'text' | "text" | number | true | false | null | "(" value ("," value)* ")"

Quotes inside quoted text are doubled (``'it''s'``). Values are always bound parameters.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import and_, false, not_, or_, true
from sqlalchemy.sql.elements import ColumnElement

from meadowlark.core.errors import InvalidInput

MAX_LENGTH = 4096
MAX_DEPTH = 32
MAX_IN_VALUES = 1000
OPERATORS = ("eq", "ne", "lt", "le", "gt", "ge", "startswith", "contains", "in")
KEYWORDS = frozenset({"and", "or", "not", "true", "false", "null", *OPERATORS})

Scalar = str | int | float | bool | None
FieldType = Literal["string", "integer", "boolean", "datetime"]


class SearchCriteriaError(InvalidInput):
    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"searchCriteria syntax error at position {position}: {message}")
        self.position = position


@dataclass(frozen=True, slots=True)
class Condition:
    field: str
    operator: str
    value: Scalar | tuple[Scalar, ...]
    position: int


@dataclass(frozen=True, slots=True)
class BoolOp:
    operator: Literal["and", "or"]
    operands: tuple[Expression, ...]


@dataclass(frozen=True, slots=True)
class Not:
    operand: Expression


Expression = Condition | BoolOp | Not

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<string>'(?:[^']|'')*'|"(?:[^"]|"")*")
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?![A-Za-z_]))
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_0-9][A-Za-z0-9_-]*)*)
  | (?P<punct>[(),])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str
    text: str
    position: int


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise SearchCriteriaError(f"unexpected character {text[position]!r}", position)
        kind = match.lastgroup or ""
        if kind != "space":
            tokens.append(_Token(kind, match.group(), position))
        position = match.end()
    tokens.append(_Token("end", "", len(text)))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.index = 0
        self.depth = 0

    @property
    def current(self) -> _Token:
        return self.tokens[self.index]

    def _keyword(self, word: str) -> bool:
        token = self.current
        if token.kind == "name" and token.text.lower() == word:
            self.index += 1
            return True
        return False

    def _expect_punct(self, char: str) -> None:
        if self.current.kind != "punct" or self.current.text != char:
            raise SearchCriteriaError(f"expected {char!r}", self.current.position)
        self.index += 1

    def parse(self) -> Expression:
        expression = self._expression()
        if self.current.kind != "end":
            raise SearchCriteriaError(f"unexpected {self.current.text!r}", self.current.position)
        return expression

    def _expression(self) -> Expression:
        operands = [self._term()]
        while self._keyword("or"):
            operands.append(self._term())
        return operands[0] if len(operands) == 1 else BoolOp("or", tuple(operands))

    def _term(self) -> Expression:
        operands = [self._factor()]
        while self._keyword("and"):
            operands.append(self._factor())
        return operands[0] if len(operands) == 1 else BoolOp("and", tuple(operands))

    def _factor(self) -> Expression:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise SearchCriteriaError("expression nested too deeply", self.current.position)
        try:
            if self._keyword("not"):
                return Not(self._factor())
            if self.current.kind == "punct" and self.current.text == "(":
                self.index += 1
                expression = self._expression()
                self._expect_punct(")")
                return expression
            return self._condition()
        finally:
            self.depth -= 1

    def _condition(self) -> Condition:
        field = self.current
        if field.kind != "name" or field.text.lower() in KEYWORDS:
            raise SearchCriteriaError("expected a field name", field.position)
        self.index += 1
        operator = self.current
        if operator.kind != "name" or operator.text.lower() not in OPERATORS:
            raise SearchCriteriaError(
                f"expected an operator ({', '.join(OPERATORS)})", operator.position
            )
        self.index += 1
        op = operator.text.lower()
        value: Scalar | tuple[Scalar, ...]
        if op == "in":
            value = self._list()
        else:
            value = self._scalar()
        return Condition(field.text, op, value, field.position)

    def _list(self) -> tuple[Scalar, ...]:
        self._expect_punct("(")
        values = [self._scalar()]
        while self.current.kind == "punct" and self.current.text == ",":
            self.index += 1
            values.append(self._scalar())
            if len(values) > MAX_IN_VALUES:
                raise SearchCriteriaError("too many values in list", self.current.position)
        self._expect_punct(")")
        return tuple(values)

    def _scalar(self) -> Scalar:
        token = self.current
        self.index += 1
        if token.kind == "string":
            quote = token.text[0]
            return token.text[1:-1].replace(quote * 2, quote)
        if token.kind == "number":
            number = float(token.text)
            if "." not in token.text and "e" not in token.text.lower():
                return int(token.text)
            return number
        if token.kind == "name":
            word = token.text.lower()
            if word in ("true", "false"):
                return word == "true"
            if word == "null":
                return None
        raise SearchCriteriaError("expected a value", token.position)


def parse(text: str) -> Expression:
    """Parse ``searchCriteria``; any problem is a ``SearchCriteriaError`` with its position."""
    if len(text) > MAX_LENGTH:
        raise SearchCriteriaError(f"longer than {MAX_LENGTH} characters", MAX_LENGTH)
    if not text.strip():
        raise SearchCriteriaError("empty expression", 0)
    return _Parser(text).parse()


@dataclass(frozen=True, slots=True)
class Field:
    """A searchable column and how values for it are typed."""

    column: Any
    type: FieldType = "string"


def _coerce(value: Scalar, field_type: FieldType, position: int) -> Any:
    if value is None:
        return None
    match field_type:
        case "string":
            if isinstance(value, bool):
                return "true" if value else "false"
            return str(value) if isinstance(value, int | float) else value
        case "integer":
            number = value if isinstance(value, int) and not isinstance(value, bool) else None
            if isinstance(value, str) and re.fullmatch(r"-?\d{1,20}", value):
                number = int(value)
            if number is not None and -(2**63) <= number < 2**63:  # a SQL BIGINT
                return number
        case "boolean":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
        case "datetime":
            try:
                if isinstance(value, int | float) and not isinstance(value, bool):
                    return datetime.fromtimestamp(value / 1000, UTC)  # epoch milliseconds
                if isinstance(value, str):
                    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
                    aware = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
                    return aware.astimezone(UTC)
            except (ValueError, OverflowError, OSError):  # malformed or out of range
                pass
    raise SearchCriteriaError(f"{value!r} is not a valid {field_type} value", position)


def _compare(column: Any, operator: str, value: Any) -> ColumnElement[bool]:
    match operator:
        case "eq":
            return column.is_(None) if value is None else column == value
        case "ne":
            return column.is_not(None) if value is None else column != value
        case "lt":
            return column < value
        case "le":
            return column <= value
        case "gt":
            return column > value
        case "ge":
            return column >= value
        case "startswith":
            return column.startswith(value, autoescape=True)
        case "contains":
            return column.contains(value, autoescape=True)
        case "in":
            return column.in_(value)
    raise AssertionError(operator)  # pragma: no cover


PropertyColumn = Callable[[str], Any]


def to_sql(
    expression: Expression,
    fields: Mapping[str, Field],
    *,
    property_column: PropertyColumn | None = None,
) -> ColumnElement[bool]:
    """Compile to a SQLAlchemy condition; ``properties.<key>`` uses ``property_column``."""
    if isinstance(expression, BoolOp):
        parts = [to_sql(e, fields, property_column=property_column) for e in expression.operands]
        return and_(*parts) if expression.operator == "and" else or_(*parts)
    if isinstance(expression, Not):
        return not_(to_sql(expression.operand, fields, property_column=property_column))
    condition = expression
    field = fields.get(condition.field)
    if field is None and property_column and condition.field.startswith("properties."):
        field = Field(property_column(condition.field.removeprefix("properties.")), "string")
    if field is None:
        known = ", ".join(sorted(fields)) + (", properties.<name>" if property_column else "")
        raise SearchCriteriaError(
            f"unknown field {condition.field!r} (searchable: {known})", condition.position
        )
    if condition.operator in ("startswith", "contains") and field.type != "string":
        raise SearchCriteriaError(f"{condition.operator} needs a text field", condition.position)
    if field.type == "boolean" and condition.operator not in ("eq", "ne", "in"):
        raise SearchCriteriaError("a true/false field takes eq, ne or in", condition.position)
    if isinstance(condition.value, tuple):
        values = [_coerce(v, field.type, condition.position) for v in condition.value]
        return field.column.in_(values) if values else false()
    value = _coerce(condition.value, field.type, condition.position)
    if value is None and condition.operator not in ("eq", "ne"):
        raise SearchCriteriaError("null can only be compared with eq or ne", condition.position)
    return _compare(field.column, condition.operator, value)


def compile_criteria(
    text: str | None,
    fields: Mapping[str, Field],
    *,
    property_column: PropertyColumn | None = None,
) -> ColumnElement[bool]:
    """``searchCriteria`` query text to a SQL condition (no criteria: always true).

    python-coiote sends the literal text ``None`` when no criteria are given.
    """
    if text is None or text.strip() in ("", "None"):
        return true()
    return to_sql(parse(text), fields, property_column=property_column)
