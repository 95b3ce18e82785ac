"""``json_input.loads``: the one JSON parser of request bodies."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from meadowlark.api.json_input import MAX_DEPTH, check_text, loads
from meadowlark.core.errors import InvalidInput


def test_ordinary_documents():
    assert loads(b'{"a": [1, 2.5, "x", null, true], "b": {}}') == {
        "a": [1, 2.5, "x", None, True],
        "b": {},
    }
    assert loads('"caf\\u00e9 \\ud83d\\ude00"') == "café \U0001f600"
    assert loads("\U0001f600".join('""').encode()) == "\U0001f600"
    assert loads(b"[18446744073709551615, -9223372036854775808, 1e308, -1e308, -0.0]") == [
        2**64 - 1,
        -(2**63),
        1e308,
        -1e308,
        -0.0,
    ]


@pytest.mark.parametrize(
    ("body", "word"),
    [
        (b'"x\\ud800y"', "surrogate"),
        (b'"\\udfff"', "surrogate"),
        (b'"\\ude00\\ud83d"', "surrogate"),  # the pair in the wrong order
        (b'{"\\udbff": 1}', "surrogate"),
        ('"x\ud800y"'.encode("utf-8", "surrogatepass"), "UTF-8"),
        (b'"a\\u0000b"', "NUL"),
        (b'{"a\\u0000": 1}', "NUL"),
        ('"x"'.encode("utf-16"), "UTF-8"),
        (b"\xff", "UTF-8"),
        (b"NaN", "NaN"),
        (b"[Infinity]", "Infinity"),
        (b"[-Infinity]", "Infinity"),
        (b"1e400", "range"),
        (b"-1e400", "range"),
        (b"18446744073709551616", "range"),
        (b"-9223372036854775809", "range"),
        (b"1" + b"0" * 4301, "range"),
        (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), "nested"),
        (b'{"a":' * (MAX_DEPTH + 1) + b"1" + b"}" * (MAX_DEPTH + 1), "nested"),
        (b"[" * 1000 + b"]" * 1000, "nested"),
        (b"[" * 100_000, "nested"),
        (b"{", "malformed"),
        (b"", "malformed"),
    ],
)
def test_refused_documents_are_invalid_input(body, word):
    with pytest.raises(InvalidInput, match=word):
        loads(body)


def test_depth_limit_is_inclusive():
    assert loads(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH) is not None
    assert loads(b'{"a":' * MAX_DEPTH + b"1" + b"}" * MAX_DEPTH) is not None


def test_check_text():
    assert check_text("plain \U0001f600") == "plain \U0001f600"
    for bad in ("\x00", "a\ud800", "\udc00b"):
        with pytest.raises(InvalidInput):
            check_text(bad)


SPECIAL = ["\ud800", "\udbff", "\udc00", "\udfff", "\x00", "\\", '"', "\U0001f600", "a", "é"]
ANY_TEXT = st.text(st.sampled_from(SPECIAL), max_size=6) | st.text(
    st.characters(exclude_categories=()), max_size=6
)
"""Any code points, lone surrogates and NUL included."""
ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | ANY_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ANY_TEXT, inner, max_size=3),
    max_leaves=12,
)


def _acceptable(value: object, depth: int = 0) -> bool:
    if isinstance(value, str):
        return "\x00" not in value and not any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    if isinstance(value, bool) or value is None:
        return True
    if isinstance(value, int):
        return -(2**63) <= value <= 2**64 - 1
    if isinstance(value, float):
        return math.isfinite(value)
    if depth >= MAX_DEPTH:
        return False
    if isinstance(value, dict):
        return all(_acceptable(k) and _acceptable(v, depth + 1) for k, v in value.items())
    return all(_acceptable(item, depth + 1) for item in value)  # type: ignore[attr-defined]


@settings(max_examples=400, deadline=None)
@given(ANY_JSON, st.integers(0, 2 * MAX_DEPTH), st.booleans())
@example("\ud800\udc00", 0, True)  # an escaped pair: U+10000, acceptable
@example("\ud800\udc00", 0, False)  # the same code points raw: not UTF-8
def test_loads_takes_exactly_the_acceptable_documents(value, nesting, ascii_only):
    for _ in range(nesting):
        value = [value]
    text = json.dumps(value, ensure_ascii=ascii_only)
    # Escaped, a high and a low surrogate next to each other are one character to any JSON
    # reader ("\\ud800\\udc00" is U+10000); unescaped they are not UTF-8 at all.
    meaning = json.loads(text) if ascii_only else value
    try:
        loaded = loads(text.encode("utf-8", "surrogatepass"))
    except InvalidInput:
        assert not _acceptable(meaning)
        return
    assert _acceptable(meaning)
    assert json.dumps(loaded) == json.dumps(value)
