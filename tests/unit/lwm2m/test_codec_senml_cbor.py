"""SenML CBOR codec (content format 112)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lwm2m_strategies import (
    DEVICE_INSTANCE,
    DEVICE_MODELS,
    DEVICE_READ_SENML_JSON,
    DictModelLookup,
    cbor_values,
    decodes_or_rejects,
    mutated,
    node_cases,
    resource_model,
)
from meadowlark.lwm2m.codec import senml_cbor
from meadowlark.lwm2m.codec.errors import DecodeError, EncodeError
from meadowlark.lwm2m.codec.senml_cbor import LABEL_NUMBERS
from meadowlark.lwm2m.node import ObjectLink, ResourceInstance, ResourceType, SingleResource
from meadowlark.lwm2m.path import LwM2mPath

P = LwM2mPath.parse
NO_MODELS = DictModelLookup()

# [{"n":"/65/0/0/0","vlo":"66:0"}] in SenML CBOR, as OMA gave it for LwM2M object links
# (OMA_LwM2M_for_Developers issue 484): label n is 0, "vlo" stays a text key.
OBJECT_LINK = bytes.fromhex("81a200692f36352f302f302f3063766c6f6436363a30")


def _with_integer_labels(json_payload: bytes) -> bytes:
    records = json.loads(json_payload)
    return cbor2.dumps([{LABEL_NUMBERS.get(k, k): v for k, v in r.items()} for r in records])


def test_decodes_the_device_read_example() -> None:
    payload = _with_integer_labels(DEVICE_READ_SENML_JSON)
    assert senml_cbor.decode(payload, P("/3/0"), DEVICE_MODELS) == DEVICE_INSTANCE


def test_encodes_integer_labels() -> None:
    payload = senml_cbor.encode(DEVICE_INSTANCE, P("/3/0"), DEVICE_MODELS)
    records = cbor2.loads(payload)
    assert records[0] == {-2: "/3/0/", 0: "0", 3: "Open Mobile Alliance"}
    assert records[4] == {0: "6/0", 2: 1}
    assert records[13] == {0: "13", 2: 1367491215}


def test_object_link_example() -> None:
    models = DictModelLookup({(65, 0): resource_model(0, ResourceType.OBJLNK, multiple=True)})
    node = ResourceInstance(0, ResourceType.OBJLNK, ObjectLink(66, 0))
    assert senml_cbor.decode(OBJECT_LINK, P("/65/0/0/0"), models) == node
    assert senml_cbor.encode_composite({P("/65/0/0/0"): node}, models) == OBJECT_LINK


def test_opaque_is_a_byte_string() -> None:
    models = DictModelLookup({(5, 0): resource_model(0, ResourceType.OPAQUE)})
    node = SingleResource(0, ResourceType.OPAQUE, b"\x00\xff")
    payload = senml_cbor.encode(node, P("/5/0/0"), models)
    assert cbor2.loads(payload) == [{-2: "/5/0/", 0: "0", 8: b"\x00\xff"}]
    assert senml_cbor.decode(payload, P("/5/0/0"), models) == node


@pytest.mark.parametrize(
    "records",
    [
        [{0: "/3/0/13", 2: 1367491215}],
        [{0: "/3/0/13", 2: 1367491215.0}],
        [{0: "/3/0/13", 2: cbor2.CBORTag(1, 1367491215)}],
        [{0: "/3/0/13", 3: cbor2.CBORTag(0, "2013-05-02T10:40:15Z")}],
        [{"n": "/3/0/13", "v": 1367491215}],
    ],
)
def test_time_as_number_or_cbor_date(records: list[dict[object, object]]) -> None:
    node = senml_cbor.decode(cbor2.dumps(records), P("/3/0/13"), DEVICE_MODELS)
    assert node == DEVICE_INSTANCE.resources[13]


@pytest.mark.parametrize(
    "records",
    [
        [{0: "/3/0/9", 2: 1.5}],
        [{0: "/3/0/9", 2: 1, "v": 1}],
        [{0: "/3/0/9", 2: 1, 3: "x"}],
        [{0: "/3/0/9", 2: True}],
        [{0: "/3/0/9", 2: 2**64}],
        [{0: "/3/0/0", 3: b"bytes"}],
        [{0: "/3/0/0", 8: "text"}],
        [{0: 3, 2: 1}],
        [{0: "/3/0/9", 2: 1, "x_": 0}],
        [{-3: "now", 0: "/3/0/9", 2: 1}],
        [[{0: "/3/0/9", 2: 1}]],
        {0: "/3/0/9", 2: 1},
    ],
)
def test_rejects_malformed_records(records: object) -> None:
    with pytest.raises(DecodeError):
        senml_cbor.decode(cbor2.dumps(records), P("/3/0/9"), DEVICE_MODELS)


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\x81",
        bytes.fromhex("81a20069"),
        bytes.fromhex("81a2006000600060"),  # duplicate key
        bytes.fromhex("5b00000000ffffffff"),  # length far beyond the data
        b"\x81" * 10_000,  # deep nesting
        bytes.fromhex("81a10078"),
    ],
)
def test_rejects_broken_cbor(payload: bytes) -> None:
    with pytest.raises(DecodeError):
        senml_cbor.decode(payload, P("/3/0"), DEVICE_MODELS)


def test_timestamped_uses_base_time() -> None:
    models = DictModelLookup({(3303, 5700): resource_model(5700, ResourceType.FLOAT)})
    payload = cbor2.dumps(
        [{-2: "/3303/0/5700", -3: 1600000000, 2: 22.4}, {6: -5, 2: 22.9}, {6: -30, 2: 24.1}]
    )
    batches = senml_cbor.decode_timestamped(payload, P("/3303/0/5700"), models)
    assert [b.timestamp for b in batches] == [
        datetime.fromtimestamp(t, UTC) for t in (1600000000, 1599999995, 1599999970)
    ]


def test_paths_request() -> None:
    payload = senml_cbor.encode_paths([P("/3/0/9"), P("/1")])
    assert cbor2.loads(payload) == [{0: "/3/0/9"}, {0: "/1"}]
    assert senml_cbor.decode_paths(payload) == [P("/3/0/9"), P("/1")]


def test_encode_refuses_bad_nodes() -> None:
    with pytest.raises(EncodeError):
        senml_cbor.encode(SingleResource(9, ResourceType.STRING, 1), P("/3/0/9"), DEVICE_MODELS)


# --- properties ----------------------------------------------------------------------------


# --- fuzzing ---------------------------------------------------------------------------------


def _decode_everything(payload: bytes, path: LwM2mPath, models: DictModelLookup) -> None:
    decodes_or_rejects(senml_cbor.decode, payload, path, models)
    decodes_or_rejects(senml_cbor.decode_composite, payload, models)
    decodes_or_rejects(senml_cbor.decode_composite, payload, models, [path])
    decodes_or_rejects(senml_cbor.decode_timestamped, payload, None, models)
    decodes_or_rejects(senml_cbor.decode_timestamped, payload, path, models, datetime.now(UTC))
    decodes_or_rejects(senml_cbor.decode_paths, payload)


@given(st.binary(max_size=200))
def test_random_bytes_decode_or_raise_decode_error(payload: bytes) -> None:
    _decode_everything(payload, P("/3/0"), DEVICE_MODELS)


@given(cbor_values(), st.sampled_from(["/3", "/3/0", "/3/0/9", "/3/0/6/1"]))
def test_random_cbor_decodes_or_raises_decode_error(document: object, path: str) -> None:
    _decode_everything(cbor2.dumps(document), P(path), DEVICE_MODELS)
    _decode_everything(cbor2.dumps([document]), P(path), NO_MODELS)


@given(st.data())
def test_mutated_payloads_decode_or_raise_decode_error(data: st.DataObject) -> None:
    models, path, node = data.draw(node_cases(allow_empty_containers=False))
    payload = data.draw(mutated(senml_cbor.encode(node, path, models)))
    _decode_everything(payload, path, models)
