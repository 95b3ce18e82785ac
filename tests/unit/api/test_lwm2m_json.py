"""JSON nodes of the LwM2M REST API: round trips and model validation."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lwm2m_strategies import composite_nodes, model_lookups, node_cases
from meadowlark.api.lwm2m_json import (
    NodeJsonError,
    instances_from_json,
    node_from_json,
    node_to_json,
    nodes_from_json,
    nodes_to_json,
)
from meadowlark.lwm2m.model import builtin_registry
from meadowlark.lwm2m.node import (
    MultiResource,
    ObjectInstance,
    ObjectLink,
    ResourceInstance,
    ResourceType,
    SingleResource,
)
from meadowlark.lwm2m.path import LwM2mPath

MODELS = builtin_registry()


def _through_json(document: object) -> object:
    """What a client gets and sends back: the document serialized as strict JSON."""
    return json.loads(json.dumps(document, allow_nan=False))


@given(node_cases(), st.sampled_from(["hex", "base64"]))
def test_every_node_survives_a_json_round_trip(case, opaque):
    models, path, node = case
    document = _through_json(node_to_json(node, opaque))
    assert node_from_json(document, path, models, opaque) == node


@given(st.data())
def test_composite_content_survives_a_json_round_trip(data):
    models = data.draw(model_lookups())
    nodes = data.draw(composite_nodes(models))
    assert nodes_from_json(_through_json(nodes_to_json(nodes)), models) == nodes


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_non_finite_floats_travel_as_strings(value):
    node = SingleResource(5700, ResourceType.FLOAT, value)
    document = _through_json(node_to_json(node))
    parsed = node_from_json(document, LwM2mPath(3303, 0, 5700), MODELS)
    assert isinstance(parsed, SingleResource)
    assert math.isnan(parsed.value) if math.isnan(value) else parsed.value == value


def test_integers_are_json_numbers_and_opaque_is_hex_by_default():
    document = node_to_json(
        ObjectInstance(
            0,
            {
                9: SingleResource(9, ResourceType.INTEGER, 95),
                0: SingleResource(0, ResourceType.OPAQUE, b"\x01\xab"),
            },
        )
    )
    assert document == {
        "id": 0,
        "kind": "instance",
        "resources": [
            {"id": 9, "kind": "singleResource", "type": "integer", "value": 95},
            {"id": 0, "kind": "singleResource", "type": "opaque", "value": "01ab"},
        ],
    }
    assert (
        node_to_json(SingleResource(0, ResourceType.OPAQUE, b"\x01\xab"), "base64")["value"]
        == "Aas="
    )


def test_time_is_iso_8601_with_epoch_seconds_beside_it():
    moment = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    assert node_to_json(SingleResource(13, ResourceType.TIME, moment)) == {
        "id": 13,
        "kind": "singleResource",
        "type": "time",
        "value": "2024-05-01T12:30:00Z",
        "epoch": 1714566600,
    }
    multi = node_to_json(MultiResource(1, ResourceType.TIME, {0: moment}))
    assert multi["values"] == {"0": "2024-05-01T12:30:00Z"}
    assert multi["epochs"] == {"0": 1714566600}


@pytest.mark.parametrize(
    "written",
    ["2024-05-01T12:30:00Z", "2024-05-01T14:30:00+02:00", "2024-05-01T12:30:00", 1714566600],
)
def test_time_is_accepted_as_iso_8601_or_epoch_seconds(written):
    node = node_from_json({"value": written}, LwM2mPath(3, 0, 13), MODELS)
    assert node == SingleResource(13, ResourceType.TIME, datetime(2024, 5, 1, 12, 30, tzinfo=UTC))


def test_objlnk_reads_as_object_colon_instance():
    node = node_from_json({"kind": "singleResource", "value": "11:0"}, LwM2mPath(1, 0, 10), MODELS)
    assert node == SingleResource(10, ResourceType.OBJLNK, ObjectLink(11, 0))


def test_id_and_type_default_from_the_path_and_the_model():
    node = node_from_json({"values": {"0": 1, "3": 7}}, LwM2mPath(3, 0, 6), MODELS)
    assert node == MultiResource(6, ResourceType.INTEGER, {0: 1, 3: 7})
    instance = node_from_json({"value": 2}, LwM2mPath(3, 0, 6, 4), MODELS)
    assert instance == ResourceInstance(4, ResourceType.INTEGER, 2)


@pytest.mark.parametrize(
    ("document", "path", "fragment"),
    [
        ({"value": "soon"}, "/3/0/13", "ISO 8601"),
        ({"value": "12"}, "/3/0/9", "Integer value expected"),
        ({"value": 1.5}, "/3/0/9", "Integer value expected"),
        ({"value": True}, "/3/0/9", "Integer value expected"),
        ({"value": -1}, "/1/0/11", "unsigned"),
        ({"value": 5}, "/3/0/14", "String value expected"),
        ({"value": "zz"}, "/5/0/0", "hex"),
        ({"value": "3-0"}, "/1/0/10", "object link"),
        ({"type": "string", "value": "x"}, "/3/0/9", "model says integer"),
        ({"kind": "multiResource", "values": {}}, "/3/0/9", "singleResource"),
        ({"value": 1}, "/3/0/6", "multiResource"),
        ({"value": 1}, "/3/0/9/0", "no resource instances"),
        ({"kind": "obj"}, "/3/0", "kind must be instance"),
        ({"id": 2, "value": 1}, "/3/0/9", "does not match"),
        ({"value": 1}, "/3/0/60000", "'type' is required"),
        ({"type": "decimal", "value": 1}, "/3/0/60000", "unknown type"),
        ({"value": 1, "colour": "red"}, "/3/0/9", "unexpected key"),
        ({"resources": [{"value": 1}]}, "/3/0", "needs an 'id'"),
        ({"resources": [{"id": 9, "value": 1}, {"id": 9, "value": 2}]}, "/3/0", "twice"),
        ({"resources": {"9": 1}}, "/3/0", "must be a list"),
        ({"values": {"x": 1}}, "/3/0/6", "id must be an integer"),
        ([1], "/3/0/9", "must be a JSON object"),
    ],
)
def test_nodes_that_do_not_fit_path_or_model_are_refused(document, path, fragment):
    with pytest.raises(NodeJsonError, match=fragment):
        node_from_json(document, LwM2mPath.parse(path), MODELS)


def test_composite_content_must_map_valid_paths_to_nodes():
    with pytest.raises(NodeJsonError, match="non-empty"):
        nodes_from_json({}, MODELS)
    with pytest.raises(NodeJsonError, match="numeric path segment"):
        nodes_from_json({"/3/zero/1": {"value": 1}}, MODELS)


def test_create_content_is_one_instance_a_list_or_an_object():
    path = LwM2mPath(3303)
    one = instances_from_json(
        {"resources": [{"id": 5750, "value": "a"}]}, path, MODELS, free_instance_id=4
    )
    assert one == [ObjectInstance(4, {5750: SingleResource(5750, ResourceType.STRING, "a")})]
    listed = instances_from_json(
        [{"id": 1, "resources": []}, {"id": 2, "resources": []}], path, MODELS, free_instance_id=0
    )
    assert [instance.id for instance in listed] == [1, 2]
    wrapped = instances_from_json(
        {"kind": "obj", "instances": [{"id": 7, "resources": []}]}, path, MODELS, free_instance_id=0
    )
    assert [instance.id for instance in wrapped] == [7]
    at_path = instances_from_json({"resources": []}, LwM2mPath(3303, 9), MODELS, free_instance_id=0)
    assert [instance.id for instance in at_path] == [9]
    with pytest.raises(NodeJsonError, match="needs an 'id'"):
        instances_from_json(
            [{"resources": []}, {"resources": []}], path, MODELS, free_instance_id=0
        )
    with pytest.raises(NodeJsonError, match="given twice"):
        instances_from_json([{"id": 1}, {"id": 1}], path, MODELS, free_instance_id=0)
