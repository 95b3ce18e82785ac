"""searchCriteria: parsing, error positions, and SQL semantics checked against a reference."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    select,
)

from meadowlark.core.search_criteria import (
    BoolOp,
    Condition,
    Field,
    Not,
    SearchCriteriaError,
    compile_criteria,
    parse,
)

metadata = MetaData()
things = Table(
    "things",
    metadata,
    Column("id", String, primary_key=True),
    Column("count", Integer),
    Column("enabled", Boolean),
    Column("properties", JSON),
)
FIELDS = {
    "id": Field(things.c.id),
    "count": Field(things.c.count, "integer"),
    "managementEnabled": Field(things.c.enabled, "boolean"),
}


def property_column(key: str) -> Any:
    return things.c.properties[key].as_string()


def test_parses_the_forms_coiote_documents() -> None:
    assert parse("properties.endpointName eq 'X'") == Condition(
        "properties.endpointName", "eq", "X", 0
    )
    assert parse("id startswith '123'") == Condition("id", "startswith", "123", 0)
    assert parse("managementEnabled eq true") == Condition("managementEnabled", "eq", True, 0)


def test_and_binds_tighter_than_or_and_parentheses_override() -> None:
    flat = parse("id eq 'a' or id eq 'b' and count gt 1")
    assert isinstance(flat, BoolOp) and flat.operator == "or"
    grouped = parse("(id eq 'a' or id eq 'b') and count gt 1")
    assert isinstance(grouped, BoolOp) and grouped.operator == "and"
    assert isinstance(parse("not id eq 'a'"), Not)


def test_quotes_are_escaped_by_doubling() -> None:
    assert parse("id eq 'it''s'") == Condition("id", "eq", "it's", 0)
    assert parse('id eq "say ""hi"""') == Condition("id", "eq", 'say "hi"', 0)


def test_in_takes_a_list_of_values() -> None:
    assert parse("count in (1, 2, 3)") == Condition("count", "in", (1, 2, 3), 0)


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("id eq", 5),
        ("id equals 'x'", 3),
        ("id eq 'x' and", 13),
        ("(id eq 'x'", 10),
        ("id eq 'unterminated", 6),
        ("id eq 'x' id eq 'y'", 10),
        ("", 0),
        ("id in ()", 7),
    ],
)
def test_syntax_errors_name_their_position(text: str, position: int) -> None:
    with pytest.raises(SearchCriteriaError) as error:
        parse(text)
    assert error.value.position == position
    assert f"position {position}" in error.value.message


def test_unknown_fields_and_wrong_value_types_are_errors() -> None:
    with pytest.raises(SearchCriteriaError, match="unknown field"):
        compile_criteria("colour eq 'red'", FIELDS)
    with pytest.raises(SearchCriteriaError, match="not a valid integer"):
        compile_criteria("count eq 'many'", FIELDS)
    with pytest.raises(SearchCriteriaError, match="needs a text field"):
        compile_criteria("count startswith '1'", FIELDS)


def test_no_criteria_and_the_literal_none_match_everything() -> None:
    assert str(compile_criteria(None, FIELDS)) == "true"
    assert str(compile_criteria("None", FIELDS)) == "true"


def test_values_are_bound_parameters_never_sql_text() -> None:
    hostile = "x'; DROP TABLE things; --"
    condition = compile_criteria(f"id eq '{hostile.replace(chr(39), chr(39) * 2)}'", FIELDS)
    compiled = condition.compile()
    assert hostile not in str(compiled)
    assert hostile in compiled.params.values()


@given(st.text(max_size=80))
@settings(max_examples=500)
def test_any_text_parses_or_raises_a_positioned_error(text: str) -> None:
    try:
        compile_criteria(text, FIELDS, property_column=property_column)
    except SearchCriteriaError as error:
        assert 0 <= error.position <= len(text)


# -- semantics: SQL evaluation equals a reference evaluation in Python ------------------

ids = st.sampled_from(["a", "ab", "b", "it's", "50%", "x_y"])
rows = st.lists(
    st.fixed_dictionaries(
        {
            "count": st.integers(-3, 3),
            "enabled": st.booleans(),
            "colour": st.sampled_from(["red", "green", "re"]),
        }
    ),
    min_size=0,
    max_size=6,
)


def quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


conditions = st.one_of(
    st.builds(
        lambda op, v: f"id {op} {quote(v)}",
        st.sampled_from(["eq", "ne", "startswith", "contains", "lt", "ge"]),
        ids,
    ),
    st.builds(
        lambda op, v: f"count {op} {v}",
        st.sampled_from(["eq", "ne", "lt", "le", "gt", "ge"]),
        st.integers(-3, 3),
    ),
    st.builds(lambda v: f"managementEnabled eq {str(v).lower()}", st.booleans()),
    st.builds(lambda v: f"properties.colour eq {quote(v)}", st.sampled_from(["red", "re"])),
    st.builds(
        lambda vs: f"count in ({', '.join(map(str, vs))})",
        st.lists(st.integers(-3, 3), min_size=1, max_size=3),
    ),
)
expressions = st.recursive(
    conditions,
    lambda inner: st.one_of(
        st.builds(lambda a, b: f"({a}) and ({b})", inner, inner),
        st.builds(lambda a, b: f"({a}) or ({b})", inner, inner),
        st.builds(lambda a: f"not ({a})", inner),
    ),
    max_leaves=6,
)


def evaluate(expression: Any, row: dict[str, Any]) -> bool:
    if isinstance(expression, BoolOp):
        results = [evaluate(e, row) for e in expression.operands]
        return all(results) if expression.operator == "and" else any(results)
    if isinstance(expression, Not):
        return not evaluate(expression.operand, row)
    field = {"managementEnabled": "enabled", "properties.colour": "colour"}.get(
        expression.field, expression.field
    )
    actual, wanted = row[field], expression.value
    return {
        "eq": lambda: actual == wanted,
        "ne": lambda: actual != wanted,
        "lt": lambda: actual < wanted,
        "le": lambda: actual <= wanted,
        "gt": lambda: actual > wanted,
        "ge": lambda: actual >= wanted,
        "startswith": lambda: actual.startswith(wanted),
        "contains": lambda: wanted in actual,
        "in": lambda: actual in wanted,
    }[expression.operator]()


@given(rows, st.lists(ids, min_size=6, max_size=6, unique=True), expressions)
@settings(max_examples=300, deadline=None)
def test_sql_matches_reference_semantics(
    table_rows: list[dict[str, Any]], row_ids: list[str], text: str
) -> None:
    engine = create_engine("sqlite://", creator=lambda: sqlite3.connect(":memory:"))
    metadata.create_all(engine)
    data = [{**row, "id": row_ids[i]} for i, row in enumerate(table_rows)]
    with engine.begin() as connection:
        if data:
            connection.execute(
                things.insert(),
                [
                    {
                        "id": r["id"],
                        "count": r["count"],
                        "enabled": r["enabled"],
                        "properties": {"colour": r["colour"]},
                    }
                    for r in data
                ],
            )
        condition = compile_criteria(text, FIELDS, property_column=property_column)
        found = set(connection.scalars(select(things.c.id).where(condition)))
    expected = {r["id"] for r in data if evaluate(parse(text), r)}
    assert found == expected
    engine.dispose()
