"""Write-Attributes <NOTIFICATION> attributes: parsing, validation, query options."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meadowlark.lwm2m.codec.attributes import (
    ATTRIBUTE_NAMES,
    FLAG_ATTRIBUTES,
    FLOAT_ATTRIBUTES,
    InvalidAttributeError,
    NotificationAttributes,
    from_query,
    parse_attributes,
    to_query,
)
from meadowlark.lwm2m.codec.errors import DecodeError
from meadowlark.lwm2m.path import LwM2mPath


def test_parse_values() -> None:
    query = {"pmin": "10", "pmax": "60", "gt": "50.5", "lt": "-3", "st": "2", "epmin": "1"}
    assert parse_attributes(query) == NotificationAttributes(
        pmin=10, pmax=60, gt=50.5, lt=-3.0, st=2.0, epmin=1
    )


def test_lwm2m_1_2_attributes() -> None:
    assert parse_attributes({"edge": "1", "con": "0", "hqmax": "5"}) == NotificationAttributes(
        edge=1, con=0, hqmax=5
    )


def test_empty_value_clears() -> None:
    attrs = parse_attributes({"pmin": None, "gt": "", "pmax": "30"})
    assert attrs == NotificationAttributes(pmax=30, cleared=frozenset({"pmin", "gt"}))
    assert to_query(attrs) == ["pmin", "pmax=30", "gt"]


def test_query_options_round_trip() -> None:
    options = ["pmin=10", "pmax", "gt=0.00001", "st=0.5"]
    attrs = from_query(options)
    assert attrs == NotificationAttributes(pmin=10, gt=1e-05, st=0.5, cleared=frozenset({"pmax"}))
    assert to_query(attrs) == ["pmin=10", "pmax", "gt=0.00001", "st=0.5"]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"pmin": "20", "pmax": "10"}, "pmin .* greater than pmax"),
        ({"epmin": "20", "epmax": "10"}, "epmin .* greater than epmax"),
        ({"lt": "10", "gt": "10"}, "lt .* less than gt"),
        ({"lt": "0", "gt": "10", "st": "5"}, r"lt \+ 2\*st"),
        ({"st": "-1"}, "st must not be negative"),
        ({"pmin": "-1"}, "non-negative integer"),
        ({"pmin": "1.5"}, "non-negative integer"),
        ({"pmin": "abc"}, "non-negative integer"),
        ({"gt": "nan"}, "not a decimal"),
        ({"gt": "1e999"}, "out of float range"),
        ({"edge": "2"}, "0 or 1"),
        ({"con": "yes"}, "non-negative integer"),
        ({"dim": "2"}, "unknown attribute"),
        ({"ver": "1.1"}, "unknown attribute"),
    ],
)
def test_invalid(query: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidAttributeError, match=message):
        parse_attributes(query)


def test_invalid_attributes_are_decode_errors() -> None:
    with pytest.raises(DecodeError):
        parse_attributes({"pmin": "x"})


def test_lt_plus_two_steps_below_gt_is_accepted() -> None:
    assert parse_attributes({"lt": "0", "gt": "10", "st": "4.9"}).st == 4.9


@pytest.mark.parametrize("name", ["gt", "lt", "st", "edge"])
def test_resource_only_attributes_need_a_resource_path(name: str) -> None:
    with pytest.raises(InvalidAttributeError, match="resources only"):
        parse_attributes({name: "1"}, LwM2mPath(3, 0))
    assert parse_attributes({name: "1"}, LwM2mPath(3, 0, 9)) is not None


def test_duplicate_query_option() -> None:
    with pytest.raises(InvalidAttributeError, match="twice"):
        from_query(["pmin=1", "pmin=2"])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"pmin": True},
        {"pmin": 1.5},
        {"gt": math.inf},
        {"edge": True},
        {"con": 1.0},
        {"pmin": 1, "cleared": frozenset({"pmin"})},
        {"cleared": frozenset({"dim"})},
    ],
)
def test_construction_validates(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidAttributeError):
        NotificationAttributes(**kwargs)  # type: ignore[arg-type]


def test_merge_applies_sets_and_clears_then_validates() -> None:
    stored = NotificationAttributes(pmin=10, pmax=60, gt=5.0)
    merged = stored.merged_with(NotificationAttributes(pmax=120, cleared=frozenset({"gt"})))
    assert merged == NotificationAttributes(pmin=10, pmax=120)
    with pytest.raises(InvalidAttributeError, match="greater than pmax"):
        stored.merged_with(NotificationAttributes(pmin=100))


def test_is_empty() -> None:
    assert NotificationAttributes().is_empty()
    assert not NotificationAttributes(cleared=frozenset({"pmin"})).is_empty()
    assert not NotificationAttributes(con=0).is_empty()


@st.composite
def attributes(draw: st.DrawFn) -> NotificationAttributes:
    chosen = draw(st.sets(st.sampled_from(ATTRIBUTE_NAMES)))
    cleared = draw(st.sets(st.sampled_from(ATTRIBUTE_NAMES))) - chosen
    values: dict[str, object] = {}
    for name in sorted(chosen):
        if name in FLOAT_ATTRIBUTES:
            values[name] = draw(st.floats(allow_nan=False, allow_infinity=False))
        elif name in FLAG_ATTRIBUTES:
            values[name] = draw(st.integers(0, 1))
        else:
            values[name] = draw(st.integers(0, 10**9))
    try:
        return NotificationAttributes(cleared=frozenset(cleared), **values)  # type: ignore[arg-type]
    except InvalidAttributeError:
        return NotificationAttributes(cleared=frozenset(cleared))


@given(attributes())
def test_to_query_then_from_query_round_trips(attrs: NotificationAttributes) -> None:
    assert from_query(to_query(attrs)) == attrs


@settings(max_examples=300)
@given(
    st.dictionaries(
        st.sampled_from([*ATTRIBUTE_NAMES, "dim", "x"]),
        st.none() | st.text(alphabet="0123456789.-e", max_size=8),
    )
)
def test_arbitrary_queries_parse_or_raise_invalid_attribute(query: dict[str, str | None]) -> None:
    try:
        parse_attributes(query)
    except InvalidAttributeError:
        pass
