"""LwM2M CBOR codec (content format 11544)."""

from __future__ import annotations

from datetime import UTC, datetime

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lwm2m_strategies import (
    DEVICE_INSTANCE,
    DEVICE_MODELS,
    DictModelLookup,
    cbor_values,
    composite_nodes,
    decodes_or_rejects,
    leaf_nodes,
    model_lookups,
    mutated,
    node_cases,
    resource_model,
)
from meadowlark.lwm2m.codec import lwm2m_cbor
from meadowlark.lwm2m.codec.errors import DecodeError, EncodeError
from meadowlark.lwm2m.codec.timestamped import TimestampedNodes
from meadowlark.lwm2m.node import (
    LwM2mObject,
    MultiResource,
    ObjectInstance,
    ObjectLink,
    ResourceType,
    SingleResource,
)
from meadowlark.lwm2m.path import LwM2mPath

P = LwM2mPath.parse
NO_MODELS = DictModelLookup()

DEVICE_CONTENT = {
    0: "Open Mobile Alliance",
    1: "Lightweight M2M Client",
    2: "345000123",
    3: "1.0",
    6: {0: 1, 1: 5},
    7: {0: 3800, 1: 5000},
    8: {0: 125, 1: 900},
    9: 100,
    10: 15,
    11: {0: 0},
    13: 1367491215,
    14: "+02:00",
    16: "U",
}
"""The Device object instance values of the Core Read examples, as LwM2M CBOR maps."""


@pytest.mark.parametrize(
    "document",
    [
        {3: {0: DEVICE_CONTENT}},
        {(3, 0): DEVICE_CONTENT},
        {(3, 0): {k: v for k, v in DEVICE_CONTENT.items() if k != 6}, (3, 0, 6): {0: 1, 1: 5}},
        {
            (3, 0): {k: v for k, v in DEVICE_CONTENT.items() if k != 6},
            (3, 0, 6, 0): 1,
            3: {0: {(6, 1): 5}},
        },
    ],
)
def test_decodes_nested_maps_and_array_keys(document: dict[object, object]) -> None:
    payload = cbor2.dumps(document)
    assert lwm2m_cbor.decode(payload, P("/3/0"), DEVICE_MODELS) == DEVICE_INSTANCE


def test_encodes_the_request_path_as_one_array_key() -> None:
    payload = lwm2m_cbor.encode(DEVICE_INSTANCE, P("/3/0"), DEVICE_MODELS)
    folded = {k: v for k, v in DEVICE_CONTENT.items() if k != 11}
    folded[(11, 0)] = 0  # a single-entry map folds into its key
    assert cbor2.loads(payload) == {(3, 0): folded}


def test_single_values_and_empty_containers() -> None:
    node = SingleResource(9, ResourceType.INTEGER, 100)
    payload = lwm2m_cbor.encode(node, P("/3/0/9"), DEVICE_MODELS)
    assert payload == cbor2.dumps({(3, 0, 9): 100})
    assert lwm2m_cbor.decode(payload, P("/3/0/9"), DEVICE_MODELS) == node
    empty = LwM2mObject(3, {0: ObjectInstance(0, {6: MultiResource(6, ResourceType.INTEGER)})})
    payload = lwm2m_cbor.encode(empty, P("/3"), DEVICE_MODELS)
    assert cbor2.loads(payload) == {(3, 0, 6): {}}
    assert lwm2m_cbor.decode(payload, P("/3"), DEVICE_MODELS) == empty


def test_value_types() -> None:
    models = DictModelLookup(
        {
            (9, 0): resource_model(0, ResourceType.OBJLNK),
            (9, 1): resource_model(1, ResourceType.OPAQUE),
            (9, 2): resource_model(2, ResourceType.BOOLEAN),
            (9, 3): resource_model(3, ResourceType.FLOAT),
            (9, 4): resource_model(4, ResourceType.UNSIGNED_INTEGER),
        }
    )
    node = ObjectInstance(
        0,
        {
            0: SingleResource(0, ResourceType.OBJLNK, ObjectLink(3, 0)),
            1: SingleResource(1, ResourceType.OPAQUE, b"\x01"),
            2: SingleResource(2, ResourceType.BOOLEAN, True),
            3: SingleResource(3, ResourceType.FLOAT, 1.5),
            4: SingleResource(4, ResourceType.UNSIGNED_INTEGER, 2**64 - 1),
        },
    )
    payload = lwm2m_cbor.encode(node, P("/9/0"), models)
    assert cbor2.loads(payload) == {(9, 0): {0: "3:0", 1: b"\x01", 2: True, 3: 1.5, 4: 2**64 - 1}}
    assert lwm2m_cbor.decode(payload, P("/9/0"), models) == node
    inferred = lwm2m_cbor.decode(payload, P("/9/0"), NO_MODELS)
    assert {r.id: r.type for r in inferred.resources.values()} == {
        0: ResourceType.STRING,
        1: ResourceType.OPAQUE,
        2: ResourceType.BOOLEAN,
        3: ResourceType.FLOAT,
        4: ResourceType.UNSIGNED_INTEGER,
    }


@pytest.mark.parametrize(
    "time",
    [
        1367491215,
        1367491215.0,
        cbor2.CBORTag(1, 1367491215),
        datetime.fromtimestamp(1367491215, UTC),
    ],
)
def test_time_as_integer_or_cbor_date(time: object) -> None:
    payload = cbor2.dumps({(3, 0, 13): time})
    assert lwm2m_cbor.decode(payload, P("/3/0/13"), DEVICE_MODELS) == DEVICE_INSTANCE.resources[13]


@pytest.mark.parametrize(
    ("document", "path"),
    [
        ({(3, 0, 9): 1.5}, "/3/0/9"),
        ({(3, 0, 9): "1"}, "/3/0/9"),
        ({(3, 0, 9): None}, "/3/0/9"),
        ({(3, 0, 9): [1]}, "/3/0/9"),
        ({(3, 0): 1}, "/3/0"),
        ({(3, 0, 6, 0): {1: 2}}, "/3/0/6"),
        ({(3, 0, 6, 0, 1): 2}, "/3/0/6"),
        ({(3, 0, 9): 1, 3: {0: {9: 2}}}, "/3/0/9"),
        ({(3, 0, 9, 0): 1}, "/3/0/9"),
        ({(3, 0, 6): 1}, "/3/0/6"),
        ({(3, 0, 9): {}}, "/3/0/9"),
        ({(3, 65535, 9): 1}, "/3"),
        ({(3, -1): {9: 1}}, "/3"),
        ({"3": {0: {9: 1}}}, "/3"),
        ({(): {9: 1}}, "/3"),
        ({(3, 1, 9): 1}, "/3/0"),
        ({(3, 0, 0): "ok", (3, 0, 9): True}, "/3/0"),
        ({(9, 0, 0): "66"}, "/9/0/0"),
        ([1], "/3"),
    ],
)
def test_rejects_malformed_documents(document: object, path: str) -> None:
    models = DictModelLookup(
        {
            (3, 9): resource_model(9, ResourceType.INTEGER),
            (3, 0): resource_model(0, ResourceType.STRING),
            (3, 6): resource_model(6, ResourceType.INTEGER, multiple=True),
            (9, 0): resource_model(0, ResourceType.OBJLNK),
        }
    )
    with pytest.raises(DecodeError):
        lwm2m_cbor.decode(cbor2.dumps(document), P(path), models)


def test_rejects_broken_cbor() -> None:
    for payload in (b"", b"\xa1", b"\xa1" * 5000, bytes.fromhex("a1030"[:4])):
        with pytest.raises(DecodeError):
            lwm2m_cbor.decode(payload, P("/3"), DEVICE_MODELS)


def test_composite() -> None:
    nodes = {
        P("/3/0/9"): SingleResource(9, ResourceType.INTEGER, 100),
        P("/3/0/0"): SingleResource(0, ResourceType.STRING, "x"),
        P("/1/0"): ObjectInstance(0, {}),
    }
    payload = lwm2m_cbor.encode_composite(nodes, DEVICE_MODELS)
    assert cbor2.loads(payload) == {(3, 0): {9: 100, 0: "x"}, (1, 0): {}}
    assert lwm2m_cbor.decode_composite(payload, DEVICE_MODELS, list(nodes)) == nodes
    assert lwm2m_cbor.decode_composite(payload, DEVICE_MODELS) == {
        P("/3/0/0"): nodes[P("/3/0/0")],
        P("/3/0/9"): nodes[P("/3/0/9")],
    }
    with pytest.raises(EncodeError):
        lwm2m_cbor.encode_composite(
            {P("/3/0/9"): nodes[P("/3/0/9")], P("/3/0/9/1"): nodes[P("/3/0/9")]}, DEVICE_MODELS
        )


def test_timestamped_is_one_batch_without_time() -> None:
    nodes = {P("/3/0/9"): SingleResource(9, ResourceType.INTEGER, 100)}
    payload = lwm2m_cbor.encode_timestamped([TimestampedNodes(None, nodes)], DEVICE_MODELS)
    assert lwm2m_cbor.decode_timestamped(payload, None, DEVICE_MODELS) == [
        TimestampedNodes(None, nodes)
    ]
    with pytest.raises(EncodeError):
        lwm2m_cbor.encode_timestamped(
            [TimestampedNodes(datetime(2024, 1, 1, tzinfo=UTC), nodes)], DEVICE_MODELS
        )


# --- properties ----------------------------------------------------------------------------


@given(node_cases())
def test_round_trip(case) -> None:
    models, path, node = case
    assert lwm2m_cbor.decode(lwm2m_cbor.encode(node, path, models), path, models) == node


@given(st.data())
def test_composite_round_trip(data: st.DataObject) -> None:
    models = data.draw(model_lookups())
    nodes = data.draw(composite_nodes(models))
    payload = lwm2m_cbor.encode_composite(nodes, models)
    assert lwm2m_cbor.decode_composite(payload, models, list(nodes)) == nodes


@given(st.data())
def test_leaf_level_composite_round_trip(data: st.DataObject) -> None:
    models = data.draw(model_lookups())
    nodes = data.draw(leaf_nodes(models))
    payload = lwm2m_cbor.encode_composite(nodes, models)
    assert lwm2m_cbor.decode_composite(payload, models) == nodes


@given(st.data())
def test_timestamped_round_trip(data: st.DataObject) -> None:
    models = data.draw(model_lookups())
    batches = [TimestampedNodes(None, data.draw(leaf_nodes(models)))]
    payload = lwm2m_cbor.encode_timestamped(batches, models)
    assert lwm2m_cbor.decode_timestamped(payload, None, models) == batches


# --- fuzzing ---------------------------------------------------------------------------------


def _decode_everything(payload: bytes, path: LwM2mPath, models: DictModelLookup) -> None:
    decodes_or_rejects(lwm2m_cbor.decode, payload, path, models)
    decodes_or_rejects(lwm2m_cbor.decode_composite, payload, models)
    decodes_or_rejects(lwm2m_cbor.decode_composite, payload, models, [path])
    decodes_or_rejects(lwm2m_cbor.decode_timestamped, payload, None, models)


@given(st.binary(max_size=200))
def test_random_bytes_decode_or_raise_decode_error(payload: bytes) -> None:
    _decode_everything(payload, P("/3/0"), DEVICE_MODELS)


@given(cbor_values(), st.sampled_from(["/3", "/3/0", "/3/0/9", "/3/0/6/1"]))
def test_random_cbor_decodes_or_raises_decode_error(document: object, path: str) -> None:
    _decode_everything(cbor2.dumps(document), P(path), DEVICE_MODELS)
    _decode_everything(cbor2.dumps({3: document}), P(path), NO_MODELS)


@given(st.data())
def test_mutated_payloads_decode_or_raise_decode_error(data: st.DataObject) -> None:
    models, path, node = data.draw(node_cases())
    payload = data.draw(mutated(lwm2m_cbor.encode(node, path, models)))
    _decode_everything(payload, path, models)
