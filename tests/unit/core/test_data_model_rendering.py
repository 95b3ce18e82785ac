"""Rendering a device's data model: values, names, selections, definitions, resources."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from meadowlark.core.data_model import (
    DeviceDataModel,
    cached_entries,
    object_definitions,
    operation_names,
    render_value,
    resources_data,
    select_paths,
)
from meadowlark.core.errors import InvalidInput
from meadowlark.lwm2m.codec.link_format import ObjectEntry
from meadowlark.lwm2m.model import Operations, builtin_registry
from meadowlark.lwm2m.node import ObjectLink, ResourceType
from meadowlark.lwm2m.path import ROOT, LwM2mPath
from meadowlark.server.values import CachedValue
from meadowlark.store.device_models import Device

AT = datetime(2026, 11, 22, 3, 4, 5, tzinfo=UTC)


@pytest.fixture
def data_model() -> DeviceDataModel:
    models = builtin_registry().with_versions({3303: "1.1"})
    objects = {3: ObjectEntry(None, (0,)), 3303: ObjectEntry("1.1", (0,)), 65000: ObjectEntry()}
    return DeviceDataModel(Device(id="d1", endpoint_name="d1", domain_id="/root/"), models, objects)


def cached(resource_type: ResourceType, value: object) -> CachedValue:
    return CachedValue(resource_type, value, AT)  # type: ignore[arg-type]


VALUES = {
    LwM2mPath(3, 0, 0): cached(ResourceType.STRING, "Acme"),
    LwM2mPath(3, 0, 6, 0): cached(ResourceType.INTEGER, 1),
    LwM2mPath(3, 0, 6, 1): cached(ResourceType.INTEGER, 5),
    LwM2mPath(3, 0, 13): cached(ResourceType.TIME, AT),
    LwM2mPath(3303, 0, 5700): cached(ResourceType.FLOAT, 21.5),
    LwM2mPath(3303, 1, 5700): cached(ResourceType.FLOAT, 1e-7),
}


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, ""),
        ("text", "text"),
        (True, "true"),
        (False, "false"),
        (-42, "-42"),
        (2**64 - 1, "18446744073709551615"),
        (21.5, "21.5"),
        (1e-7, "0.0000001"),
        (b"\x00\xff", "AP8="),
        (AT, "2026-11-22T03:04:05Z"),
        (ObjectLink(3, 0), "3:0"),
    ],
)
def test_values_render_as_coiote_text(value, text):
    assert render_value(value) == text


def test_cached_entries_are_named_by_readable_path_in_path_order(data_model):
    entries = cached_entries(data_model, VALUES, [ROOT])
    assert [(entry.name, entry.value, entry.type) for entry in entries] == [
        ("Device.0.Manufacturer", "Acme", "String"),
        ("Device.0.Available Power Sources.0", "1", "Integer"),
        ("Device.0.Available Power Sources.1", "5", "Integer"),
        ("Device.0.Current Time", "2026-11-22T03:04:05Z", "Time"),
        ("Temperature.0.Sensor Value", "21.5", "Float"),
        ("Temperature.1.Sensor Value", "0.0000001", "Float"),
    ]
    assert {entry.update_time for entry in entries} == {AT}


@pytest.mark.parametrize(
    ("parameters", "names"),
    [
        (["Temperature."], ["Temperature.0.Sensor Value", "Temperature.1.Sensor Value"]),
        (["Temperature.1."], ["Temperature.1.Sensor Value"]),
        (["Device.0.Manufacturer"], ["Device.0.Manufacturer"]),
        (
            ["Device.0.Available Power Sources"],
            ["Device.0.Available Power Sources.0", "Device.0.Available Power Sources.1"],
        ),
        (["/3/0/13", "3303.0.5700"], ["Device.0.Current Time", "Temperature.0.Sensor Value"]),
        (["device.0.manufacturer"], ["Device.0.Manufacturer"]),
        (["Location."], []),
    ],
)
def test_parameters_select_paths_and_subtrees(data_model, parameters, names):
    selection = select_paths(parameters, data_model.models)
    assert [entry.name for entry in cached_entries(data_model, VALUES, selection)] == names


@pytest.mark.parametrize("parameter", ["Nothing.0.Here", "Device.x", "/70000", "a" * 2000])
def test_bad_parameters_are_invalid_input(data_model, parameter):
    with pytest.raises(InvalidInput):
        select_paths([parameter], data_model.models)


def test_no_parameters_select_everything(data_model):
    assert select_paths([], data_model.models) == [ROOT]


def test_operations_are_named_like_coiote():
    assert operation_names(Operations.RW) == ["Read", "Write"]
    assert operation_names(Operations.E) == ["Execute"]
    assert operation_names(Operations.NONE) == []


def test_definitions_cover_known_registered_objects(data_model):
    definitions = object_definitions(data_model, [ROOT])
    assert [(d.id, d.name, d.object_version) for d in definitions] == [
        (3, "Device", "1.2"),
        (3303, "Temperature", "1.1"),
    ]
    reboot = next(r for r in definitions[0].resource_definitions if r.id == 4)
    assert (reboot.operations, reboot.type, reboot.instance_type) == (["Execute"], "None", "Single")
    only = object_definitions(data_model, select_paths(["Temperature"], data_model.models))
    assert [d.id for d in only] == [3303]


def test_resources_data_lists_mandatory_and_cached_resources(data_model):
    data = {item.path: item for item in resources_data(data_model, VALUES, [ROOT])}
    assert data["Device.0.Manufacturer"].value == "Acme"
    assert data["Device.0.Available Power Sources"].values == ["1", "5"]
    assert data["Device.0.Reboot"].value == ""
    assert data["Device.0.Error Code"].values == []
    assert "Device.0.Model Number" not in data
    # Instance 1 of Temperature is known from the cache only.
    assert data["Temperature.1.Sensor Value"].value == "0.0000001"
    assert data["Temperature.1.Sensor Value"].definition.type == "Float"


def test_resources_data_honours_the_selection(data_model):
    selection = select_paths(["Device.0.Available Power Sources.1"], data_model.models)
    data = resources_data(data_model, VALUES, selection)
    assert [item.path for item in data] == ["Device.0.Available Power Sources"]
