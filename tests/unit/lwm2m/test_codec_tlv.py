"""OMA TLV codec: spec vectors, value encodings, malformed input, round trips, fuzzing."""

from __future__ import annotations

import math
import struct
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meadowlark.lwm2m.codec import tlv
from meadowlark.lwm2m.codec.errors import DecodeError, EncodeError
from meadowlark.lwm2m.model.types import Operations, ResourceModel
from meadowlark.lwm2m.node import (
    INT64_MAX,
    INT64_MIN,
    UINT64_MAX,
    LwM2mObject,
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


class FakeModels:
    """A ModelLookup backed by a dict of (object id, resource id) -> ResourceModel."""

    def __init__(self, resources: dict[tuple[int, int], tuple[ResourceType, bool]]) -> None:
        self.resources = {
            key: ResourceModel(
                id=key[1],
                name=f"r{key[1]}",
                operations=Operations.RW,
                multiple=multiple,
                mandatory=False,
                type=resource_type,
            )
            for key, (resource_type, multiple) in resources.items()
        }

    def get_resource(self, object_id: int, resource_id: int) -> ResourceModel | None:
        return self.resources.get((object_id, resource_id))


DEVICE = {
    (3, 0): (T.STRING, False),
    (3, 1): (T.STRING, False),
    (3, 2): (T.STRING, False),
    (3, 3): (T.STRING, False),
    (3, 4): (T.NONE, False),
    (3, 6): (T.INTEGER, True),
    (3, 7): (T.INTEGER, True),
    (3, 8): (T.INTEGER, True),
    (3, 9): (T.INTEGER, False),
    (3, 10): (T.INTEGER, False),
    (3, 11): (T.INTEGER, True),
    (3, 13): (T.TIME, False),
    (3, 14): (T.STRING, False),
    (3, 15): (T.STRING, False),
    (3, 16): (T.STRING, False),
}
ACCESS_CONTROL = {
    (2, 0): (T.INTEGER, False),
    (2, 1): (T.INTEGER, False),
    (2, 2): (T.INTEGER, True),
    (2, 3): (T.INTEGER, False),
}
TEMPERATURE = {(3303, 5700): (T.FLOAT, False), (3303, 5701): (T.STRING, False)}

TEST_OBJECT = 9000
VALUE_TYPES: list[ResourceType] = [t for t in ResourceType if t is not T.NONE]
SINGLE_IDS = {index: t for index, t in enumerate(VALUE_TYPES)}
MULTIPLE_IDS = {300 + index: t for index, t in enumerate(VALUE_TYPES)}
GENERATED = {(TEST_OBJECT, rid): (t, False) for rid, t in SINGLE_IDS.items()} | {
    (TEST_OBJECT, rid): (t, True) for rid, t in MULTIPLE_IDS.items()
}
MODELS = FakeModels(DEVICE | ACCESS_CONTROL | TEMPERATURE | GENERATED)


class NoModels:
    def get_resource(self, object_id: int, resource_id: int) -> ResourceModel | None:
        return None


# --- spec vectors -------------------------------------------------------------------

# OMA-TS-LightweightM2M-Core, TLV examples: "Read /3/0" of the example Device object
# instance, answered as resource TLVs without an object instance wrapper.
DEVICE_INSTANCE_TLV = bytes.fromhex(
    "C8 00 14 4F 70 65 6E 20 4D 6F 62 69 6C 65 20 41 6C 6C 69 61 6E 63 65"
    "C8 01 16 4C 69 67 68 74 77 65 69 67 68 74 20 4D 32 4D 20 43 6C 69 65 6E 74"
    "C8 02 09 33 34 35 30 30 30 31 32 33"
    "C3 03 31 2E 30"
    "86 06 41 00 01 41 01 05"
    "88 07 08 42 00 0E D8 42 01 13 88"
    "87 08 41 00 7D 42 01 03 84"
    "C1 09 64"
    "C1 0A 0F"
    "83 0B 41 00 00"
    "C4 0D 51 82 42 8F"
    "C6 0E 2B 30 32 3A 30 30"
    "C1 10 55"
)
DEVICE_INSTANCE = ObjectInstance(
    0,
    {
        0: SingleResource(0, T.STRING, "Open Mobile Alliance"),
        1: SingleResource(1, T.STRING, "Lightweight M2M Client"),
        2: SingleResource(2, T.STRING, "345000123"),
        3: SingleResource(3, T.STRING, "1.0"),
        6: MultiResource(6, T.INTEGER, {0: 1, 1: 5}),
        7: MultiResource(7, T.INTEGER, {0: 3800, 1: 5000}),
        8: MultiResource(8, T.INTEGER, {0: 125, 1: 900}),
        9: SingleResource(9, T.INTEGER, 100),
        10: SingleResource(10, T.INTEGER, 15),
        11: MultiResource(11, T.INTEGER, {0: 0}),
        13: SingleResource(13, T.TIME, datetime(2013, 5, 2, 10, 40, 15, tzinfo=UTC)),
        14: SingleResource(14, T.STRING, "+02:00"),
        16: SingleResource(16, T.STRING, "U"),
    },
)

# Core 1.1 §7.4.3 TLV examples: "Read /2", two Access Control instances (38 octets).
ACCESS_CONTROL_TLV = bytes.fromhex(
    "08 00 0E C1 00 01 C1 01 00 83 02 41 7F 07 C1 03 7F"
    "08 02 12 C1 00 03 C1 01 00 87 02 41 7F 07 61 01 36 01 C1 03 7F"
)
ACCESS_CONTROL_OBJECT = LwM2mObject(
    2,
    {
        0: ObjectInstance(
            0,
            {
                0: SingleResource(0, T.INTEGER, 1),
                1: SingleResource(1, T.INTEGER, 0),
                2: MultiResource(2, T.INTEGER, {127: 7}),
                3: SingleResource(3, T.INTEGER, 127),
            },
        ),
        2: ObjectInstance(
            2,
            {
                0: SingleResource(0, T.INTEGER, 3),
                1: SingleResource(1, T.INTEGER, 0),
                2: MultiResource(2, T.INTEGER, {127: 7, 310: 1}),
                3: SingleResource(3, T.INTEGER, 127),
            },
        ),
    },
)


def test_device_instance_example_decodes() -> None:
    assert tlv.decode(DEVICE_INSTANCE_TLV, LwM2mPath(3, 0), MODELS) == DEVICE_INSTANCE


def test_device_instance_example_encodes_byte_for_byte() -> None:
    assert tlv.encode(DEVICE_INSTANCE, LwM2mPath(3, 0), MODELS) == DEVICE_INSTANCE_TLV


def test_access_control_example_round_trips() -> None:
    assert len(ACCESS_CONTROL_TLV) == 38
    assert tlv.decode(ACCESS_CONTROL_TLV, LwM2mPath(2), MODELS) == ACCESS_CONTROL_OBJECT
    assert tlv.encode(ACCESS_CONTROL_OBJECT, LwM2mPath(2), MODELS) == ACCESS_CONTROL_TLV


def test_sixteen_bit_identifiers_and_four_byte_float() -> None:
    payload = bytes.fromhex("E4 16 44 41 F8 00 00 E1 16 45 63")
    instance = ObjectInstance(
        0,
        {
            5700: SingleResource(5700, T.FLOAT, 31.0),
            5701: SingleResource(5701, T.STRING, "c"),
        },
    )
    assert tlv.decode(payload, LwM2mPath(3303, 0), MODELS) == instance
    assert tlv.encode(instance, LwM2mPath(3303, 0), MODELS) == payload


def test_instance_wrapper_is_accepted_for_an_instance_path() -> None:
    wrapped = tlv.serialize_tlv(tlv.TlvKind.OBJECT_INSTANCE, 0, DEVICE_INSTANCE_TLV)
    assert tlv.decode(wrapped, LwM2mPath(3, 0), MODELS) == DEVICE_INSTANCE


def test_instance_wrapper_for_another_instance_is_refused() -> None:
    wrapped = tlv.serialize_tlv(tlv.TlvKind.OBJECT_INSTANCE, 1, DEVICE_INSTANCE_TLV)
    with pytest.raises(DecodeError, match="instance 1"):
        tlv.decode(wrapped, LwM2mPath(3, 0), MODELS)


def test_bare_resources_at_an_object_path_are_instance_zero() -> None:
    assert tlv.decode(DEVICE_INSTANCE_TLV, LwM2mPath(3), MODELS) == LwM2mObject(
        3, {0: DEVICE_INSTANCE}
    )


def test_object_instance_at_object_path_is_wrapped_for_create() -> None:
    instance = ObjectInstance(4, {3: SingleResource(3, T.STRING, "1.0")})
    encoded = tlv.encode(instance, LwM2mPath(3), MODELS)
    assert encoded == bytes.fromhex("05 04 C3 03 31 2E 30")
    assert tlv.decode(encoded, LwM2mPath(3), MODELS) == LwM2mObject(3, {4: instance})


def test_single_resource_read() -> None:
    payload = bytes.fromhex("C1 09 64")
    assert tlv.decode(payload, LwM2mPath(3, 0, 9), MODELS) == SingleResource(9, T.INTEGER, 100)


def test_multiple_resource_with_and_without_wrapper() -> None:
    expected = MultiResource(6, T.INTEGER, {0: 1, 1: 5})
    path = LwM2mPath(3, 0, 6)
    assert tlv.decode(bytes.fromhex("86 06 41 00 01 41 01 05"), path, MODELS) == expected
    assert tlv.decode(bytes.fromhex("41 00 01 41 01 05"), path, MODELS) == expected
    assert tlv.encode(expected, path, MODELS) == bytes.fromhex("86 06 41 00 01 41 01 05")


def test_empty_multiple_resource() -> None:
    path = LwM2mPath(3, 0, 11)
    assert tlv.decode(b"", path, MODELS) == MultiResource(11, T.INTEGER, {})
    assert tlv.decode(bytes.fromhex("80 0B"), path, MODELS) == MultiResource(11, T.INTEGER, {})


def test_resource_instance_with_and_without_wrapper() -> None:
    path = LwM2mPath(3, 0, 6, 1)
    expected = ResourceInstance(1, T.INTEGER, 5)
    assert tlv.decode(bytes.fromhex("41 01 05"), path, MODELS) == expected
    assert tlv.decode(bytes.fromhex("83 06 41 01 05"), path, MODELS) == expected
    assert tlv.encode(expected, path, MODELS) == bytes.fromhex("41 01 05")


def test_unknown_resources_decode_as_opaque_bytes() -> None:
    node = tlv.decode(DEVICE_INSTANCE_TLV, LwM2mPath(3, 0), NoModels())
    assert isinstance(node, ObjectInstance)
    assert node.resources[9] == SingleResource(9, T.OPAQUE, b"\x64")
    assert node.resources[6] == MultiResource(6, T.OPAQUE, {0: b"\x01", 1: b"\x05"})


def test_unknown_resource_instances_at_a_resource_path() -> None:
    node = tlv.decode(bytes.fromhex("41 00 01"), LwM2mPath(3, 0, 6), NoModels())
    assert node == MultiResource(6, T.OPAQUE, {0: b"\x01"})


def test_executable_resource_carries_no_value() -> None:
    assert tlv.decode(bytes.fromhex("C0 04"), LwM2mPath(3, 0, 4), MODELS) == SingleResource(
        4, T.NONE, None
    )
    with pytest.raises(DecodeError, match="no value"):
        tlv.decode(bytes.fromhex("C1 04 01"), LwM2mPath(3, 0, 4), MODELS)


# --- lengths and value encodings ----------------------------------------------------


@pytest.mark.parametrize(
    ("length", "header"),
    [
        (0, "C0 05"),
        (7, "C7 05"),
        (8, "C8 05 08"),
        (255, "C8 05 FF"),
        (256, "D0 05 01 00"),
        (65535, "D0 05 FF FF"),
        (65536, "D8 05 01 00 00"),
    ],
)
def test_length_field_is_shortest(length: int, header: str) -> None:
    value = b"x" * length
    encoded = tlv.serialize_tlv(tlv.TlvKind.RESOURCE_VALUE, 5, value)
    assert encoded == bytes.fromhex(header) + value
    assert tlv.parse_tlvs(encoded) == [tlv.Tlv(tlv.TlvKind.RESOURCE_VALUE, 5, value)]


def test_long_length_form_is_accepted_even_when_not_shortest() -> None:
    assert tlv.parse_tlvs(bytes.fromhex("D8 05 00 00 01 41")) == [
        tlv.Tlv(tlv.TlvKind.RESOURCE_VALUE, 5, b"A")
    ]


def test_value_too_long_for_24_bit_length() -> None:
    with pytest.raises(EncodeError, match="24-bit"):
        tlv.serialize_tlv(tlv.TlvKind.RESOURCE_VALUE, 1, bytes(2**24))


@pytest.mark.parametrize(
    ("resource_type", "value", "encoded"),
    [
        (T.INTEGER, 0, "00"),
        (T.INTEGER, 127, "7F"),
        (T.INTEGER, 128, "00 80"),
        (T.INTEGER, -128, "80"),
        (T.INTEGER, -129, "FF 7F"),
        (T.INTEGER, 32768, "00 00 80 00"),
        (T.INTEGER, 2**31, "00 00 00 00 80 00 00 00"),
        (T.INTEGER, INT64_MIN, "80 00 00 00 00 00 00 00"),
        (T.UNSIGNED_INTEGER, 255, "FF"),
        (T.UNSIGNED_INTEGER, 256, "01 00"),
        (T.UNSIGNED_INTEGER, UINT64_MAX, "FF FF FF FF FF FF FF FF"),
        (T.FLOAT, 1.5, "3F C0 00 00"),
        (T.FLOAT, 0.1, "3F B9 99 99 99 99 99 9A"),
        (T.FLOAT, 1e300, "7E 37 E4 3C 88 00 75 9C"),
        (T.FLOAT, math.inf, "7F 80 00 00"),
        (T.BOOLEAN, True, "01"),
        (T.BOOLEAN, False, "00"),
        (T.OBJLNK, ObjectLink(3, 65535), "00 03 FF FF"),
        (T.TIME, datetime(2013, 5, 2, 10, 40, 15, tzinfo=UTC), "51 82 42 8F"),
        (T.STRING, "é", "C3 A9"),
        (T.CORELNK, "</3/0>", "3C 2F 33 2F 30 3E"),
        (T.OPAQUE, b"\x00\xff", "00 FF"),
    ],
)
def test_value_encodings(resource_type: ResourceType, value: object, encoded: str) -> None:
    raw = bytes.fromhex(encoded)
    assert tlv.encode_value(resource_type, value) == raw
    assert tlv.decode_value(resource_type, raw) == value


def test_nan_is_sent_as_double() -> None:
    raw = tlv.encode_value(T.FLOAT, math.nan)
    assert len(raw) == 8
    decoded = tlv.decode_value(T.FLOAT, raw)
    assert isinstance(decoded, float) and math.isnan(decoded)


def test_unsigned_is_read_unsigned_and_integer_signed() -> None:
    assert tlv.decode_value(T.UNSIGNED_INTEGER, b"\xff") == 255
    assert tlv.decode_value(T.INTEGER, b"\xff") == -1


@pytest.mark.parametrize(
    ("resource_type", "raw", "message"),
    [
        (T.INTEGER, b"", "1, 2, 4 or 8"),
        (T.INTEGER, b"\x00\x00\x01", "1, 2, 4 or 8"),
        (T.UNSIGNED_INTEGER, bytes(9), "1, 2, 4 or 8"),
        (T.FLOAT, b"\x00\x00", "4 or 8"),
        (T.BOOLEAN, b"\x02", "0 or 1"),
        (T.BOOLEAN, b"", "0 or 1"),
        (T.OBJLNK, b"\x00\x03\x00", "4 bytes"),
        (T.STRING, b"\xff", "UTF-8"),
        (T.TIME, b"\x7f" + bytes(7), "out of range"),
    ],
)
def test_malformed_values(resource_type: ResourceType, raw: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        tlv.decode_value(resource_type, raw)


@pytest.mark.parametrize(
    ("resource_type", "value"),
    [
        (T.INTEGER, 2**63),
        (T.INTEGER, True),
        (T.UNSIGNED_INTEGER, -1),
        (T.STRING, b"bytes"),
        (T.NONE, 1),
    ],
)
def test_unencodable_values(resource_type: ResourceType, value: object) -> None:
    with pytest.raises(EncodeError):
        tlv.encode_value(resource_type, value)


# --- malformed payloads -------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "path", "message"),
    [
        ("C8 00", (3, 0), "header truncated"),
        ("C8 00 14 4F", (3, 0), "past the end"),
        ("F8 00", (3, 0), "header truncated"),
        ("C1 09 64", (), "root path"),
        ("08 00 03 08 00 00", (3,), "not allowed here"),
        ("83 06 C1 00 01", (3, 0, 6), "not allowed here"),
        ("41 00 01", (3, 0), "expected resource TLVs"),
        ("C1 09 64 08 00 00", (3,), "expected object instance"),
        ("C1 09 64 C1 09 64", (3, 0), "appears twice"),
        ("86 06 41 00 01 41 00 01", (3, 0), "appears twice"),
        ("08 00 00 08 00 00", (3,), "appears twice"),
        ("28 FF FF 00", (3,), "reserved"),
        ("C1 0A 64", (3, 0, 9), "resource 10"),
        ("C1 06 01", (3, 0), "multiple but sent as single"),
        ("80 09", (3, 0), "single but sent as multiple"),
        ("41 00 01", (3, 0, 9), "single resource"),
        ("", (3, 0, 9), "empty payload"),
        ("", (3, 0, 99), "empty payload for an unknown"),
        ("41 00 01", (3, 0, 6, 1), "resource instance 0"),
        ("41 00 01 41 01 01", (3, 0, 6, 1), "one resource instance"),
        ("41 00 01", (3, 0, 9, 0), "not a multiple resource"),
        ("C1 09 FF FF", (3, 0), "header truncated"),
        ("C3 0D 51 82 42", (3, 0), "1, 2, 4 or 8"),
    ],
)
def test_malformed_payloads(payload: str, path: tuple[int, ...], message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        tlv.decode(bytes.fromhex(payload), LwM2mPath.of(*path), MODELS)


@pytest.mark.parametrize(
    ("node", "path"),
    [
        (SingleResource(9, T.INTEGER, 1), (3, 0, 10)),
        (SingleResource(9, T.INTEGER, 1), (3, 0)),
        (ObjectInstance(1), (3, 0)),
        (LwM2mObject(3), (4,)),
        (ResourceInstance(1, T.INTEGER, 1), (3, 0, 6)),
        (SingleResource(9, T.INTEGER, "one"), (3, 0, 9)),
        (MultiResource(6, T.INTEGER, {0: 2**64}), (3, 0, 6)),
        (LwM2mObject(3, {65535: ObjectInstance(65535)}), (3,)),
    ],
)
def test_encode_refuses_nodes_not_matching_path_or_type(node: Node, path: tuple[int, ...]) -> None:
    with pytest.raises(EncodeError):
        tlv.encode(node, LwM2mPath.of(*path), MODELS)


# --- properties ---------------------------------------------------------------------


def values_of(resource_type: ResourceType) -> st.SearchStrategy[Value]:
    match resource_type:
        case T.STRING | T.CORELNK:
            return st.text(max_size=20)
        case T.INTEGER:
            return st.integers(INT64_MIN, INT64_MAX)
        case T.UNSIGNED_INTEGER:
            return st.integers(0, UINT64_MAX)
        case T.FLOAT:
            return st.floats(allow_nan=False)
        case T.BOOLEAN:
            return st.booleans()
        case T.OPAQUE:
            return st.binary(max_size=40)
        case T.TIME:
            return st.integers(-62135596800, 253402300799).map(time_from_epoch)
        case T.OBJLNK:
            return st.builds(ObjectLink, st.integers(0, 65535), st.integers(0, 65535))
    raise AssertionError(resource_type)


def single_resources(resource_id: int) -> st.SearchStrategy[SingleResource]:
    resource_type = SINGLE_IDS[resource_id]
    return values_of(resource_type).map(lambda v: SingleResource(resource_id, resource_type, v))


def multi_resources(resource_id: int) -> st.SearchStrategy[MultiResource]:
    resource_type = MULTIPLE_IDS[resource_id]
    return st.dictionaries(st.integers(0, 65535), values_of(resource_type), max_size=3).map(
        lambda values: MultiResource(resource_id, resource_type, values)
    )


def resources(resource_id: int) -> st.SearchStrategy[SingleResource | MultiResource]:
    if resource_id in SINGLE_IDS:
        return single_resources(resource_id)
    return multi_resources(resource_id)


@st.composite
def instances(draw: st.DrawFn, instance_id: int | None = None) -> ObjectInstance:
    if instance_id is None:
        instance_id = draw(st.integers(0, 65534))
    ids = draw(st.sets(st.sampled_from(sorted(SINGLE_IDS) + sorted(MULTIPLE_IDS)), max_size=4))
    return ObjectInstance(instance_id, {rid: draw(resources(rid)) for rid in ids})


@st.composite
def objects(draw: st.DrawFn) -> LwM2mObject:
    ids = draw(st.sets(st.integers(0, 65534), max_size=2))
    return LwM2mObject(TEST_OBJECT, {i: draw(instances(i)) for i in ids})


@st.composite
def nodes_with_paths(draw: st.DrawFn) -> tuple[Node, LwM2mPath]:
    level = draw(st.integers(1, 4))
    if level == 1:
        return draw(objects()), LwM2mPath(TEST_OBJECT)
    if level == 2:
        instance = draw(instances())
        return instance, LwM2mPath(TEST_OBJECT, instance.id)
    if level == 3:
        rid = draw(st.sampled_from(sorted(SINGLE_IDS) + sorted(MULTIPLE_IDS)))
        resource = draw(resources(rid))
        return resource, LwM2mPath(TEST_OBJECT, 0, rid)
    rid = draw(st.sampled_from(sorted(MULTIPLE_IDS)))
    riid = draw(st.integers(0, 65535))
    value = draw(values_of(MULTIPLE_IDS[rid]))
    return ResourceInstance(riid, MULTIPLE_IDS[rid], value), LwM2mPath(TEST_OBJECT, 0, rid, riid)


@given(nodes_with_paths())
def test_round_trip(node_and_path: tuple[Node, LwM2mPath]) -> None:
    node, path = node_and_path
    assert tlv.decode(tlv.encode(node, path, MODELS), path, MODELS) == node


def fits_single_precision(value: float) -> bool:
    try:
        return bool(struct.unpack(">f", struct.pack(">f", value))[0] == value)
    except OverflowError:
        return False


@given(st.floats(allow_nan=False))
def test_float_is_four_bytes_exactly_when_lossless(value: float) -> None:
    raw = tlv.encode_value(T.FLOAT, value)
    assert (len(raw) == 4) == fits_single_precision(value)
    assert tlv.decode_value(T.FLOAT, raw) == value


PATHS = st.sampled_from(
    [
        LwM2mPath(),
        LwM2mPath(3),
        LwM2mPath(3, 0),
        LwM2mPath(3, 0, 6),
        LwM2mPath(3, 0, 9),
        LwM2mPath(3, 0, 99),
        LwM2mPath(3, 0, 6, 0),
        LwM2mPath(TEST_OBJECT),
        LwM2mPath(TEST_OBJECT, 0),
        LwM2mPath(TEST_OBJECT, 0, 305),
    ]
)


def decodes_or_refuses(payload: bytes, path: LwM2mPath) -> None:
    try:
        node = tlv.decode(payload, path, MODELS)
    except DecodeError:
        return
    assert isinstance(
        node, LwM2mObject | ObjectInstance | SingleResource | MultiResource | ResourceInstance
    )


@settings(max_examples=300)
@given(st.binary(max_size=64), PATHS)
def test_random_bytes_decode_or_raise_decode_error(payload: bytes, path: LwM2mPath) -> None:
    decodes_or_refuses(payload, path)


@settings(max_examples=300)
@given(nodes_with_paths(), st.data())
def test_mutated_payloads_decode_or_raise_decode_error(
    node_and_path: tuple[Node, LwM2mPath], data: st.DataObject
) -> None:
    node, path = node_and_path
    payload = bytearray(tlv.encode(node, path, MODELS))
    for _ in range(data.draw(st.integers(1, 4))):
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        position = data.draw(st.integers(0, len(payload)))
        if action == "flip" and payload:
            payload[min(position, len(payload) - 1)] = data.draw(st.integers(0, 255))
        elif action == "cut":
            del payload[position:]
        else:
            payload[position:position] = data.draw(st.binary(min_size=1, max_size=3))
    decodes_or_refuses(bytes(payload), path)
