"""OMA LwM2M JSON codec (content format 11543, legacy 1543)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lwm2m_strategies import (
    DEVICE_INSTANCE,
    DEVICE_MODELS,
    DictModelLookup,
    decodes_or_rejects,
    json_values,
    model_lookups,
    mutated,
    node_cases,
    paths_in,
    resource_model,
    timestamped_batches,
)
from meadowlark.lwm2m.codec import oma_json
from meadowlark.lwm2m.codec.errors import DecodeError
from meadowlark.lwm2m.node import (
    LwM2mObject,
    ObjectInstance,
    ObjectLink,
    ResourceType,
    SingleResource,
)
from meadowlark.lwm2m.path import LwM2mPath

P = LwM2mPath.parse
NO_MODELS = DictModelLookup()

# LwM2M 1.0 section 6.4.4, JSON payload of a Read on /3/0 (Device object).
DEVICE_READ = (
    b'{"bn":"/3/0/","e":[{"n":"0","sv":"Open Mobile Alliance"},'
    b'{"n":"1","sv":"Lightweight M2M Client"},{"n":"2","sv":"345000123"},'
    b'{"n":"3","sv":"1.0"},{"n":"6/0","v":1},{"n":"6/1","v":5},{"n":"7/0","v":3800},'
    b'{"n":"7/1","v":5000},{"n":"8/0","v":125},{"n":"8/1","v":900},{"n":"9","v":100},'
    b'{"n":"10","v":15},{"n":"11/0","v":0},{"n":"13","v":1367491215},'
    b'{"n":"14","sv":"+02:00"},{"n":"16","sv":"U"}]}'
)

# LwM2M 1.0 section 6.4.4, the Object Link example: Read on /66 (object 66: a string,
# a string and an object link per instance; 65535:65535 is the null link).
LINK_MODELS = DictModelLookup(
    {
        (66, 0): resource_model(0, ResourceType.STRING),
        (66, 1): resource_model(1, ResourceType.STRING),
        (66, 2): resource_model(2, ResourceType.OBJLNK),
    }
)
LINK_READ = (
    b'{"bn":"/66/","e":[{"n":"0/0","sv":"myService1"},{"n":"0/1","sv":"Internet.15.234"},'
    b'{"n":"0/2","ov":"67:0"},{"n":"1/0","sv":"myService2"},{"n":"1/1","sv":"Internet.15.235"},'
    b'{"n":"1/2","ov":"65535:65535"}]}'
)


def _link_instance(iid: int, service: str, address: str, link: ObjectLink) -> ObjectInstance:
    return ObjectInstance(
        iid,
        {
            0: SingleResource(0, ResourceType.STRING, service),
            1: SingleResource(1, ResourceType.STRING, address),
            2: SingleResource(2, ResourceType.OBJLNK, link),
        },
    )


LINK_OBJECT = LwM2mObject(
    66,
    {
        0: _link_instance(0, "myService1", "Internet.15.234", ObjectLink(67, 0)),
        1: _link_instance(1, "myService2", "Internet.15.235", ObjectLink(65535, 65535)),
    },
)


def test_device_read_example() -> None:
    assert oma_json.decode(DEVICE_READ, P("/3/0"), DEVICE_MODELS) == DEVICE_INSTANCE
    assert oma_json.encode(DEVICE_INSTANCE, P("/3/0"), DEVICE_MODELS) == DEVICE_READ


def test_object_link_example() -> None:
    assert oma_json.decode(LINK_READ, P("/66"), LINK_MODELS) == LINK_OBJECT
    assert oma_json.encode(LINK_OBJECT, P("/66"), LINK_MODELS) == LINK_READ


def test_boolean_and_opaque() -> None:
    models = DictModelLookup(
        {
            (5, 0): resource_model(0, ResourceType.OPAQUE),
            (5, 1): resource_model(1, ResourceType.BOOLEAN),
        }
    )
    node = ObjectInstance(
        0,
        {
            0: SingleResource(0, ResourceType.OPAQUE, b"\xfb\xff"),
            1: SingleResource(1, ResourceType.BOOLEAN, True),
        },
    )
    payload = oma_json.encode(node, P("/5/0"), models)
    assert json.loads(payload) == {
        "bn": "/5/0/",
        "e": [{"n": "0", "sv": "+/8="}, {"n": "1", "bv": True}],
    }
    assert oma_json.decode(payload, P("/5/0"), models) == node
    unknown = oma_json.decode(payload, P("/5/0"), NO_MODELS)
    assert unknown.resources[0] == SingleResource(0, ResourceType.STRING, "+/8=")


def test_notification_with_history() -> None:
    # LwM2M 1.0 section 6.4.4: history of a temperature value, times relative to bt. The
    # example's bt is below 2**28, so (as in SenML) it counts from the time of reception.
    payload = (
        b'{"bn":"/3303/0/5700","bt":25462634,'
        b'"e":[{"v":22.4,"t":-5},{"v":22.9,"t":-30},{"v":24.1,"t":-50}]}'
    )
    models = DictModelLookup({(3303, 5700): resource_model(5700, ResourceType.FLOAT)})
    now = datetime(2024, 1, 1, tzinfo=UTC)
    batches = oma_json.decode_timestamped(payload, P("/3303/0/5700"), models, now)
    assert [(b.timestamp, b.nodes[P("/3303/0/5700")].value) for b in batches] == [
        (now + timedelta(seconds=25462634 - 5), 22.4),
        (now + timedelta(seconds=25462634 - 30), 22.9),
        (now + timedelta(seconds=25462634 - 50), 24.1),
    ]
    absolute = payload.replace(b"25462634", b"1600000000")
    batches = oma_json.decode_timestamped(absolute, P("/3303/0/5700"), models)
    assert batches[0].timestamp == datetime.fromtimestamp(1599999995, UTC)


@pytest.mark.parametrize(
    "payload",
    [
        b'{"bn":"/3/0/9","e":[{"v":100}]}',
        b'{"bn":"/3/0","e":[{"n":"9","v":100.0}]}',
        b'{"e":[{"n":"/3/0/9","v":100}]}',
    ],
)
def test_tolerated_names_and_numbers(payload: bytes) -> None:
    assert oma_json.decode(payload, P("/3/0/9"), DEVICE_MODELS) == SingleResource(
        9, ResourceType.INTEGER, 100
    )


@pytest.mark.parametrize(
    "payload",
    [
        b'[{"n":"/3/0/9","v":1}]',
        b'{"bn":"/3/0/"}',
        b'{"e":{}}',
        b'{"e":[1]}',
        b'{"e":[{"n":"/3/0/9","sv":"1"}]}',
        b'{"e":[{"n":"/3/0/9","v":1,"bv":true}]}',
        b'{"e":[{"n":"/3/0/9","v":1.5}]}',
        b'{"e":[{"n":"/3/0/9","v":true}]}',
        b'{"bn":5,"e":[{"n":"9","v":1}]}',
        b'{"e":[{"n":"/3/0/9","v":1}],"e":[]}',
    ],
)
def test_rejects_malformed_payloads(payload: bytes) -> None:
    with pytest.raises(DecodeError):
        oma_json.decode(payload, P("/3/0/9"), DEVICE_MODELS)


# --- properties ----------------------------------------------------------------------------


@given(node_cases(allow_empty_containers=False))
def test_round_trip(case) -> None:
    models, path, node = case
    assert oma_json.decode(oma_json.encode(node, path, models), path, models) == node


@given(st.data())
def test_timestamped_round_trip(data: st.DataObject) -> None:
    models = data.draw(model_lookups())
    path = data.draw(st.none() | paths_in(models))
    batches = data.draw(timestamped_batches(models, path))
    payload = oma_json.encode_timestamped(batches, models)
    assert oma_json.decode_timestamped(payload, path, models) == batches


# --- fuzzing ---------------------------------------------------------------------------------


def _decode_everything(payload: bytes, path: LwM2mPath, models: DictModelLookup) -> None:
    decodes_or_rejects(oma_json.decode, payload, path, models)
    decodes_or_rejects(oma_json.decode_timestamped, payload, None, models)
    decodes_or_rejects(oma_json.decode_timestamped, payload, path, models, datetime.now(UTC))


@given(st.binary(max_size=200))
def test_random_bytes_decode_or_raise_decode_error(payload: bytes) -> None:
    _decode_everything(payload, P("/3/0"), DEVICE_MODELS)


@given(json_values(), st.sampled_from(["/3", "/3/0", "/3/0/9", "/3/0/6/1"]))
def test_random_json_decodes_or_raises_decode_error(document: object, path: str) -> None:
    _decode_everything(json.dumps(document).encode(), P(path), DEVICE_MODELS)
    _decode_everything(json.dumps({"bn": "/3/0/", "e": [document]}).encode(), P(path), NO_MODELS)


@given(st.data())
def test_mutated_payloads_decode_or_raise_decode_error(data: st.DataObject) -> None:
    models, path, node = data.draw(node_cases(allow_empty_containers=False))
    payload = data.draw(mutated(oma_json.encode(node, path, models)))
    _decode_everything(payload, path, models)
