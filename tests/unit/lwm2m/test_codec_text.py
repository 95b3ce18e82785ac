"""Plain text codec: Appendix C text forms, single-value paths, round trips, fuzzing."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meadowlark.lwm2m.codec import text
from meadowlark.lwm2m.codec.errors import DecodeError, EncodeError
from meadowlark.lwm2m.model.types import Operations, ResourceModel
from meadowlark.lwm2m.node import (
    INT64_MAX,
    INT64_MIN,
    UINT64_MAX,
    MultiResource,
    Node,
    ObjectInstance,
    ObjectLink,
    ResourceInstance,
    ResourceType,
    SingleResource,
    Value,
    time_from_epoch,
)
from meadowlark.lwm2m.path import LwM2mPath

T = ResourceType
OBJECT = 9000
VALUE_TYPES: list[ResourceType] = [t for t in ResourceType if t is not T.NONE]
SINGLE_IDS = {index: t for index, t in enumerate(VALUE_TYPES)}
MULTIPLE_IDS = {300 + index: t for index, t in enumerate(VALUE_TYPES)}


class FakeModels:
    """A ModelLookup backed by a dict of resource id -> ResourceModel for one object."""

    def __init__(self) -> None:
        self.resources = {
            rid: ResourceModel(rid, f"r{rid}", Operations.RW, multiple, False, resource_type)
            for ids, multiple in ((SINGLE_IDS, False), (MULTIPLE_IDS, True))
            for rid, resource_type in ids.items()
        }
        self.resources[99] = ResourceModel(99, "exec", Operations.E, False, False, T.NONE)

    def get_resource(self, object_id: int, resource_id: int) -> ResourceModel | None:
        return self.resources.get(resource_id) if object_id == OBJECT else None


MODELS = FakeModels()


def single_path(resource_type: ResourceType) -> LwM2mPath:
    return LwM2mPath(OBJECT, 0, VALUE_TYPES.index(resource_type))


@pytest.mark.parametrize(
    ("resource_type", "payload", "value"),
    [
        (T.STRING, "Open Mobile Alliance", "Open Mobile Alliance"),
        (T.STRING, "", ""),
        (T.CORELNK, "</3/0>,</1/0>", "</3/0>,</1/0>"),
        (T.INTEGER, "-123", -123),
        (T.INTEGER, "9223372036854775807", INT64_MAX),
        (T.UNSIGNED_INTEGER, "18446744073709551615", UINT64_MAX),
        (T.FLOAT, "3.14", 3.14),
        (T.FLOAT, "-0.0001", -0.0001),
        (T.FLOAT, "0.00001", 1e-05),
        (T.FLOAT, "10000000000000000", 1e16),
        (T.BOOLEAN, "1", True),
        (T.BOOLEAN, "0", False),
        (T.TIME, "1367491215", datetime(2013, 5, 2, 10, 40, 15, tzinfo=UTC)),
        (T.OBJLNK, "3:0", ObjectLink(3, 0)),
        (T.OBJLNK, "65535:65535", ObjectLink(65535, 65535)),
        # Core Appendix C: bytes 01 02 03 04 05 are the Base64 string "AQIDBAU=".
        (T.OPAQUE, "AQIDBAU=", b"\x01\x02\x03\x04\x05"),
    ],
)
def test_text_forms(resource_type: ResourceType, payload: str, value: Value) -> None:
    path = single_path(resource_type)
    node = SingleResource(path.ids[2], resource_type, value)
    assert text.decode(payload.encode(), path, MODELS) == node
    assert text.encode(node, path, MODELS) == payload.encode()


@pytest.mark.parametrize(
    ("payload", "value"),
    [("+5", 5.0), ("5", 5.0), (".5", 0.5), ("5.", 5.0), ("1E3", 1000.0), ("-2.5e-3", -0.0025)],
)
def test_float_input_forms(payload: str, value: float) -> None:
    assert text.float_from_text(payload) == value


@pytest.mark.parametrize("value", [0.1, -0.0, 5e-324, 1.7976931348623157e308, 123456789.125])
def test_float_text_round_trips_without_exponent(value: float) -> None:
    written = text.float_to_text(value)
    assert "e" not in written.lower()
    assert float(written) == value and math.copysign(1, float(written)) == math.copysign(1, value)


def test_unknown_resource_decodes_as_string() -> None:
    assert text.decode(b"42", LwM2mPath(3, 0, 9), MODELS) == SingleResource(9, T.STRING, "42")


def test_resource_instance() -> None:
    path = LwM2mPath(OBJECT, 0, 300 + VALUE_TYPES.index(T.INTEGER), 7)
    node = ResourceInstance(7, T.INTEGER, -1)
    assert text.decode(b"-1", path, MODELS) == node
    assert text.encode(node, path, MODELS) == b"-1"


def test_executable_resource() -> None:
    path = LwM2mPath(OBJECT, 0, 99)
    assert text.decode(b"", path, MODELS) == SingleResource(99, T.NONE, None)
    with pytest.raises(DecodeError, match="no value"):
        text.decode(b"x", path, MODELS)


@pytest.mark.parametrize(
    ("resource_type", "payload", "message"),
    [
        (T.INTEGER, "", "not an integer"),
        (T.INTEGER, " 1", "not an integer"),
        (T.INTEGER, "1_000", "not an integer"),
        (T.INTEGER, "١٢", "not an integer"),
        (T.INTEGER, "9223372036854775808", "64-bit"),
        (T.INTEGER, "1.5", "not an integer"),
        (T.UNSIGNED_INTEGER, "-1", "not an unsigned"),
        (T.UNSIGNED_INTEGER, "18446744073709551616", "64-bit"),
        (T.FLOAT, "nan", "not a decimal"),
        (T.FLOAT, "inf", "not a decimal"),
        (T.FLOAT, "1e999", "out of float range"),
        (T.FLOAT, "1" * 2000, "not a decimal"),
        (T.FLOAT, "0x10", "not a decimal"),
        (T.BOOLEAN, "true", "0 or 1"),
        (T.TIME, "99999999999999999", "out of range"),
        (T.TIME, "2013-05-02", "time in seconds"),
        (T.OBJLNK, "3", "3:0"),
        (T.OBJLNK, "70000:0", "out of range"),
        (T.OPAQUE, "AQIDBAU", "Base64"),
        (T.OPAQUE, "AQ ID", "Base64"),
        (T.OPAQUE, "é===", "Base64"),
    ],
)
def test_malformed_text(resource_type: ResourceType, payload: str, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        text.decode(payload.encode(), single_path(resource_type), MODELS)


def test_invalid_utf8() -> None:
    with pytest.raises(DecodeError, match="UTF-8"):
        text.decode(b"\xff", single_path(T.STRING), MODELS)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (LwM2mPath(OBJECT), "single resource value"),
        (LwM2mPath(OBJECT, 0), "single resource value"),
        (LwM2mPath(), "single resource value"),
        (LwM2mPath(OBJECT, 0, 300), "multiple resource"),
        (LwM2mPath(OBJECT, 0, 1, 0), "has no instances"),
    ],
)
def test_paths_without_a_single_value(path: LwM2mPath, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        text.decode(b"1", path, MODELS)


@pytest.mark.parametrize(
    ("node", "path"),
    [
        (ObjectInstance(0), LwM2mPath(OBJECT, 0)),
        (MultiResource(300, T.STRING, {0: "a"}), LwM2mPath(OBJECT, 0, 300)),
        (SingleResource(1, T.INTEGER, 1), LwM2mPath(OBJECT, 0, 2)),
        (SingleResource(1, T.INTEGER, "1"), LwM2mPath(OBJECT, 0, 1)),
        (SingleResource(3, T.FLOAT, math.inf), LwM2mPath(OBJECT, 0, 3)),
        (SingleResource(3, T.FLOAT, math.nan), LwM2mPath(OBJECT, 0, 3)),
    ],
)
def test_unencodable(node: Node, path: LwM2mPath) -> None:
    with pytest.raises(EncodeError):
        text.encode(node, path, MODELS)


def values_of(resource_type: ResourceType) -> st.SearchStrategy[Value]:
    match resource_type:
        case T.STRING | T.CORELNK:
            return st.text()
        case T.INTEGER:
            return st.integers(INT64_MIN, INT64_MAX)
        case T.UNSIGNED_INTEGER:
            return st.integers(0, UINT64_MAX)
        case T.FLOAT:
            return st.floats(allow_nan=False, allow_infinity=False)
        case T.BOOLEAN:
            return st.booleans()
        case T.OPAQUE:
            return st.binary(max_size=64)
        case T.TIME:
            return st.integers(-62135596800, 253402300799).map(time_from_epoch)
        case T.OBJLNK:
            return st.builds(ObjectLink, st.integers(0, 65535), st.integers(0, 65535))
    raise AssertionError(resource_type)


@st.composite
def nodes_with_paths(draw: st.DrawFn) -> tuple[Node, LwM2mPath]:
    resource_type = draw(st.sampled_from(VALUE_TYPES))
    value = draw(values_of(resource_type))
    if draw(st.booleans()):
        rid = VALUE_TYPES.index(resource_type)
        return SingleResource(rid, resource_type, value), LwM2mPath(OBJECT, 0, rid)
    rid = 300 + VALUE_TYPES.index(resource_type)
    riid = draw(st.integers(0, 65535))
    return ResourceInstance(riid, resource_type, value), LwM2mPath(OBJECT, 0, rid, riid)


@given(nodes_with_paths())
def test_round_trip(node_and_path: tuple[Node, LwM2mPath]) -> None:
    node, path = node_and_path
    assert text.decode(text.encode(node, path, MODELS), path, MODELS) == node


@settings(max_examples=300)
@given(
    st.binary(max_size=40) | st.text(alphabet="0123456789+-.eE:=/AQ", max_size=30).map(str.encode),
    st.sampled_from([LwM2mPath(OBJECT, 0, rid) for rid in SINGLE_IDS] + [LwM2mPath(OBJECT, 0)]),
)
def test_arbitrary_payloads_decode_or_raise_decode_error(payload: bytes, path: LwM2mPath) -> None:
    try:
        node = text.decode(payload, path, MODELS)
    except DecodeError:
        return
    assert isinstance(node, SingleResource)
