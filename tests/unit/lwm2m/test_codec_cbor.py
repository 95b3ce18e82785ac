"""Plain CBOR codec (content format 60): one resource value as a native CBOR item."""

from __future__ import annotations

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lwm2m_strategies import VALUE_TYPES, DictModelLookup, resource_model, values_for
from meadowlark.lwm2m.codec import cbor
from meadowlark.lwm2m.codec.errors import DecodeError, EncodeError
from meadowlark.lwm2m.codec.registry import decode as registry_decode
from meadowlark.lwm2m.node import (
    MultiResource,
    ObjectInstance,
    ObjectLink,
    ResourceInstance,
    ResourceType,
    SingleResource,
    time_from_epoch,
)
from meadowlark.lwm2m.path import LwM2mPath

T = ResourceType
MODELS = DictModelLookup(
    {
        (3, 0): resource_model(0, T.STRING),
        (3, 9): resource_model(9, T.INTEGER),
        (3, 13): resource_model(13, T.TIME),
        (3, 11): resource_model(11, T.INTEGER, multiple=True),
        (3303, 5700): resource_model(5700, T.FLOAT),
        (65, 0): resource_model(0, T.OBJLNK),
        (5, 0): resource_model(0, T.OPAQUE),
    }
)


def test_decodes_native_items_by_model_type() -> None:
    assert cbor.decode(cbor2.dumps("Acme"), LwM2mPath(3, 0, 0), MODELS) == SingleResource(
        0, T.STRING, "Acme"
    )
    assert cbor.decode(cbor2.dumps(87), LwM2mPath(3, 0, 9), MODELS).value == 87
    assert cbor.decode(cbor2.dumps(21), LwM2mPath(3303, 0, 5700), MODELS).value == 21.0
    assert cbor.decode(cbor2.dumps(1_700_000_000), LwM2mPath(3, 0, 13), MODELS).value == (
        time_from_epoch(1_700_000_000)
    )
    assert cbor.decode(cbor2.dumps("66:1"), LwM2mPath(65, 0, 0), MODELS).value == ObjectLink(66, 1)
    assert cbor.decode(cbor2.dumps(3), LwM2mPath(3, 0, 11, 2), MODELS) == ResourceInstance(
        2, T.INTEGER, 3
    )


def test_unknown_resources_take_the_type_of_the_item() -> None:
    assert cbor.decode(cbor2.dumps(b"\x01"), LwM2mPath(9999, 0, 1), MODELS).type is T.OPAQUE
    assert cbor.decode(cbor2.dumps(True), LwM2mPath(9999, 0, 1), MODELS).type is T.BOOLEAN
    assert cbor.decode(cbor2.dumps(1.5), LwM2mPath(9999, 0, 1), MODELS).type is T.FLOAT


def test_the_registry_knows_content_format_60() -> None:
    assert registry_decode(60, cbor2.dumps(7), LwM2mPath(3, 0, 9), MODELS).value == 7


@pytest.mark.parametrize(
    ("payload", "path"),
    [
        (cbor2.dumps("x"), LwM2mPath(3, 0, 9)),
        (cbor2.dumps(1.5), LwM2mPath(3, 0, 9)),
        (cbor2.dumps([1, 2]), LwM2mPath(3, 0, 0)),
        (cbor2.dumps("nolink"), LwM2mPath(65, 0, 0)),
        (cbor2.dumps(1), LwM2mPath(3, 0)),
        (b"\xff\x00", LwM2mPath(3, 0, 0)),
        (b"", LwM2mPath(3, 0, 0)),
    ],
)
def test_malformed_or_mistyped_payloads_raise_decode_error(payload: bytes, path: LwM2mPath) -> None:
    with pytest.raises(DecodeError):
        cbor.decode(payload, path, MODELS)


def test_only_single_values_can_be_encoded() -> None:
    with pytest.raises(EncodeError):
        cbor.encode(ObjectInstance(0, {}), LwM2mPath(3, 0), MODELS)
    with pytest.raises(EncodeError):
        cbor.encode(MultiResource(11, T.INTEGER, {0: 1}), LwM2mPath(3, 0, 11), MODELS)


@st.composite
def typed_single_values(draw: st.DrawFn) -> tuple[ResourceType, object]:
    resource_type = draw(st.sampled_from(VALUE_TYPES))
    return resource_type, draw(values_for(resource_type))


@given(typed_single_values(), st.booleans())
def test_round_trips_every_value_type(typed: tuple[ResourceType, object], instance: bool) -> None:
    resource_type, value = typed
    models = DictModelLookup({(7000, 1): resource_model(1, resource_type, multiple=instance)})
    path = LwM2mPath(7000, 0, 1, 4) if instance else LwM2mPath(7000, 0, 1)
    node = (
        ResourceInstance(4, resource_type, value)
        if instance
        else SingleResource(1, resource_type, value)
    )
    assert cbor.decode(cbor.encode(node, path, models), path, models) == node


@given(st.binary(max_size=64))
def test_random_bytes_decode_or_raise_decode_error(payload: bytes) -> None:
    try:
        cbor.decode(payload, LwM2mPath(3, 0, 9), MODELS)
    except DecodeError:
        pass
