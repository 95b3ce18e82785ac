"""SenML JSON codec (content format 110)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lwm2m_strategies import (
    DEVICE_INSTANCE,
    DEVICE_MODELS,
    DEVICE_READ_SENML_JSON,
    DictModelLookup,
    decodes_or_rejects,
    json_values,
    mutated,
    node_cases,
    resource_model,
    value_count,
)
from meadowlark.lwm2m.codec import senml_json
from meadowlark.lwm2m.codec.errors import DecodeError, EncodeError
from meadowlark.lwm2m.codec.timestamped import TimestampedNodes
from meadowlark.lwm2m.node import (
    MultiResource,
    ObjectLink,
    ResourceInstance,
    ResourceType,
    SingleResource,
)
from meadowlark.lwm2m.path import LwM2mPath

P = LwM2mPath.parse
NO_MODELS = DictModelLookup()


def test_decodes_the_device_read_example() -> None:
    assert senml_json.decode(DEVICE_READ_SENML_JSON, P("/3/0"), DEVICE_MODELS) == DEVICE_INSTANCE


def test_encodes_the_device_read_example() -> None:
    assert senml_json.encode(DEVICE_INSTANCE, P("/3/0"), DEVICE_MODELS) == DEVICE_READ_SENML_JSON


def test_object_link_uses_vlo() -> None:
    models = DictModelLookup({(65, 0): resource_model(0, ResourceType.OBJLNK, multiple=True)})
    payload = b'[{"n":"/65/0/0/0","vlo":"66:0"}]'
    node = MultiResource(0, ResourceType.OBJLNK, {0: ObjectLink(66, 0)})
    assert senml_json.decode(payload, P("/65/0/0"), models) == node
    assert senml_json.decode(payload, P("/65/0/0/0"), models) == ResourceInstance(
        0, ResourceType.OBJLNK, ObjectLink(66, 0)
    )


def test_opaque_is_unpadded_base64url() -> None:
    models = DictModelLookup({(5, 0): resource_model(0, ResourceType.OPAQUE)})
    node = SingleResource(0, ResourceType.OPAQUE, b"\xfb\xff")
    payload = senml_json.encode(node, P("/5/0/0"), models)
    assert json.loads(payload) == [{"bn": "/5/0/", "n": "0", "vd": "-_8"}]
    for accepted in (b'"-_8"', b'"+/8="', b'"-_8="'):
        padded = b'[{"n":"/5/0/0","vd":' + accepted + b"}]"
        assert senml_json.decode(padded, P("/5/0/0"), models) == node


@pytest.mark.parametrize(
    "payload",
    [
        b'[{"bn":"/3/0/9","v":100}]',
        b'[{"bn":"/3/0","n":"9","v":100}]',
        b'[{"bn":"/3/0/","n":"/9","v":100}]',
        b'[{"bn":"/3/","n":"0/9","v":100}]',
        b'[{"n":"/3/0/9","v":100.0}]',
        b'[{"n":"/3/0/9","v":1e2}]',
        b'[{"bn":"/3/0/","bv":90,"n":"9","v":10}]',
    ],
)
def test_tolerates_what_clients_send(payload: bytes) -> None:
    assert senml_json.decode(payload, P("/3/0/9"), DEVICE_MODELS) == SingleResource(
        9, ResourceType.INTEGER, 100
    )


@pytest.mark.parametrize(
    ("payload", "path"),
    [
        (b'[{"n":"/3/0/9","v":100.5}]', "/3/0/9"),  # Integer that is not integral
        (b'[{"n":"/3/0/9","vs":"100"}]', "/3/0/9"),  # wrong value field for the type
        (b'[{"n":"/3/0/9","v":1,"vs":"1"}]', "/3/0/9"),  # two values
        (b'[{"n":"/3/0/9"}]', "/3/0/9"),  # no value
        (b'[{"n":"/3/0/9","v":1},{"n":"/3/0/9","v":2}]', "/3/0/9"),  # duplicate
        (b'[{"n":"/3/0/6","v":1}]', "/3/0/6"),  # multiple resource given as single
        (b'[{"n":"/3/0/9/0","v":1}]', "/3/0/9"),  # single resource given as multiple
        (b'[{"n":"/3/1/9","v":1}]', "/3/0"),  # outside the request path
        (b'[{"n":"/3/0/9","v":1,"n_":1}]', "/3/0/9"),  # must-understand label
        (b'[{"n":"/3/0/9","v":1,"v":2}]', "/3/0/9"),  # duplicate label
        (b'[{"n":"/3/0/9","v":NaN}]', "/3/0/9"),
        (b'[{"n":"/3/0/9","v":1e999}]', "/3/0/9"),
        (b'[{"n":"/3/0/9","v":9223372036854775808}]', "/3/0/9"),
        (b'[{"n":"/3/0/x","v":1}]', "/3/0"),
        (b'[{"n":"/3","v":1}]', "/3"),
        (b'[{"v":1}]', "/3/0/9"),
        (b'[{"n":"/3/0/13","v":1e300}]', "/3/0/13"),
        (b'{"n":"/3/0/9","v":1}', "/3/0/9"),
        (b"[1]", "/3/0/9"),
        (b'[{"n":"/65/0/0/0","vlo":"66"}]', "/65/0/0/0"),
        (b'[{"n":"/65/0/0/0","vd":"a"}]', "/65/0/0/0"),
        (b"[" * 100_000, "/3"),
        (b"\xff", "/3"),
    ],
)
def test_rejects_malformed_payloads(payload: bytes, path: str) -> None:
    with pytest.raises(DecodeError):
        senml_json.decode(payload, P(path), DEVICE_MODELS)


def test_infers_types_of_unknown_resources() -> None:
    payload = (
        b'[{"bn":"/9/0/","n":"0","v":1},{"n":"1","v":1.0},{"n":"2","vs":"a"},'
        b'{"n":"3","vb":true},{"n":"4","vd":"AQ"},{"n":"5","vlo":"3:0"},'
        b'{"n":"6/0","v":1},{"n":"6/1","v":2.5},{"n":"7","v":18446744073709551615}]'
    )
    node = senml_json.decode(payload, P("/9/0"), NO_MODELS)
    assert {rid: r.type for rid, r in node.resources.items()} == {
        0: ResourceType.INTEGER,
        1: ResourceType.FLOAT,
        2: ResourceType.STRING,
        3: ResourceType.BOOLEAN,
        4: ResourceType.OPAQUE,
        5: ResourceType.OBJLNK,
        6: ResourceType.FLOAT,
        7: ResourceType.UNSIGNED_INTEGER,
    }
    assert node.resources[6] == MultiResource(6, ResourceType.FLOAT, {0: 1.0, 1: 2.5})


def test_unknown_resource_shape_follows_the_payload() -> None:
    assert senml_json.decode(b'[{"n":"/9/0/1/3","v":1}]', P("/9/0/1"), NO_MODELS) == (
        MultiResource(1, ResourceType.INTEGER, {3: 1})
    )
    assert senml_json.decode(b"[]", P("/3/0/6"), DEVICE_MODELS) == MultiResource(
        6, ResourceType.INTEGER, {}
    )


def test_history_with_base_time_and_relative_times() -> None:
    # A notification with history: base time, then times relative to it.
    payload = (
        b'[{"bn":"/3303/0/5700","bt":1600000000,"v":22.4},{"t":-5,"v":22.9},{"t":-30,"v":24.1}]'
    )
    models = DictModelLookup({(3303, 5700): resource_model(5700, ResourceType.FLOAT)})
    batches = senml_json.decode_timestamped(payload, P("/3303/0/5700"), models)
    assert [(b.timestamp, b.nodes[P("/3303/0/5700")].value) for b in batches] == [
        (datetime.fromtimestamp(1600000000, UTC), 22.4),
        (datetime.fromtimestamp(1599999995, UTC), 22.9),
        (datetime.fromtimestamp(1599999970, UTC), 24.1),
    ]


def test_times_below_2_to_the_28_are_relative_to_now() -> None:
    # The second record gives no time at all: its timestamp stays unknown.
    payload = b'[{"n":"/3303/0/5700","v":1.5,"t":-5},{"n":"/3303/0/5700","v":2.5}]'
    now = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    batches = senml_json.decode_timestamped(payload, None, NO_MODELS, now=now)
    assert [b.timestamp for b in batches] == [now - timedelta(seconds=5), None]
    with pytest.raises(DecodeError):
        senml_json.decode_timestamped(payload, None, NO_MODELS)
    no_time = senml_json.decode_timestamped(b'[{"n":"/1/0/1","v":5}]', None, NO_MODELS)
    assert no_time == [
        TimestampedNodes(None, {P("/1/0/1"): SingleResource(1, ResourceType.INTEGER, 5)})
    ]


def test_composite_paths_and_values() -> None:
    request = senml_json.encode_paths([P("/3/0/9"), P("/1/0"), P("/3303")])
    assert request == b'[{"n":"/3/0/9"},{"n":"/1/0"},{"n":"/3303"}]'
    assert senml_json.decode_paths(b'[{"bn":"/3/0/","n":"9"},{"n":"/1/0"}]') == [
        P("/3/0/9"),
        P("/3/0/1/0"),
    ]
    response = b'[{"n":"/3/0/9","v":100},{"n":"/3/0/6/1","v":5},{"n":"/3/0/0","vs":"x"}]'
    leaf_level = senml_json.decode_composite(response, DEVICE_MODELS)
    assert leaf_level == {
        P("/3/0/9"): SingleResource(9, ResourceType.INTEGER, 100),
        P("/3/0/6/1"): ResourceInstance(1, ResourceType.INTEGER, 5),
        P("/3/0/0"): SingleResource(0, ResourceType.STRING, "x"),
    }
    requested = senml_json.decode_composite(response, DEVICE_MODELS, [P("/3/0/6"), P("/3/0")])
    assert requested[P("/3/0/6")] == MultiResource(6, ResourceType.INTEGER, {1: 5})
    assert set(requested[P("/3/0")].resources) == {0, 6, 9}
    with pytest.raises(DecodeError):
        senml_json.decode_composite(response, DEVICE_MODELS, [P("/3/0/6")])


def test_encode_refuses_nodes_it_cannot_express() -> None:
    node = SingleResource(9, ResourceType.FLOAT, float("inf"))
    with pytest.raises(EncodeError):
        senml_json.encode(node, P("/3/0/9"), DEVICE_MODELS)
    with pytest.raises(EncodeError):
        senml_json.encode(SingleResource(9, ResourceType.INTEGER, "1"), P("/3/0/9"), DEVICE_MODELS)
    with pytest.raises(EncodeError):
        senml_json.encode(SingleResource(8, ResourceType.INTEGER, 1), P("/3/0/9"), DEVICE_MODELS)
    with pytest.raises(EncodeError):
        senml_json.encode(SingleResource(4, ResourceType.NONE, None), P("/3/0/4"), DEVICE_MODELS)
    early = TimestampedNodes(
        datetime(1970, 1, 2, tzinfo=UTC), {P("/3/0/9"): SingleResource(9, ResourceType.INTEGER, 1)}
    )
    with pytest.raises(EncodeError):
        senml_json.encode_timestamped([early], DEVICE_MODELS)


# --- properties ----------------------------------------------------------------------------


INFERABLE_TYPES = [
    ResourceType.STRING,
    ResourceType.INTEGER,
    ResourceType.FLOAT,
    ResourceType.BOOLEAN,
    ResourceType.OPAQUE,
    ResourceType.OBJLNK,
]


@given(
    node_cases(allow_empty_containers=False, types=INFERABLE_TYPES).filter(
        lambda case: value_count(case[2]) > 0
    )
)
def test_types_survive_without_models(case) -> None:
    models, path, node = case
    assert senml_json.decode(senml_json.encode(node, path, models), path, NO_MODELS) == node


# --- fuzzing ---------------------------------------------------------------------------------


def _decode_everything(payload: bytes, path: LwM2mPath, models: DictModelLookup) -> None:
    decodes_or_rejects(senml_json.decode, payload, path, models)
    decodes_or_rejects(senml_json.decode_composite, payload, models)
    decodes_or_rejects(senml_json.decode_composite, payload, models, [path])
    decodes_or_rejects(senml_json.decode_timestamped, payload, None, models)
    decodes_or_rejects(senml_json.decode_timestamped, payload, path, models, datetime.now(UTC))
    decodes_or_rejects(senml_json.decode_paths, payload)


@given(st.binary(max_size=200))
def test_random_bytes_decode_or_raise_decode_error(payload: bytes) -> None:
    _decode_everything(payload, P("/3/0"), DEVICE_MODELS)


@given(json_values(), st.sampled_from(["/3", "/3/0", "/3/0/9", "/3/0/6/1"]))
def test_random_json_decodes_or_raises_decode_error(document: object, path: str) -> None:
    _decode_everything(json.dumps(document).encode(), P(path), DEVICE_MODELS)
    _decode_everything(json.dumps([document]).encode(), P(path), NO_MODELS)


@given(st.data())
def test_mutated_payloads_decode_or_raise_decode_error(data: st.DataObject) -> None:
    models, path, node = data.draw(node_cases(allow_empty_containers=False))
    payload = data.draw(mutated(senml_json.encode(node, path, models)))
    _decode_everything(payload, path, models)
