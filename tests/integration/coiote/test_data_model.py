# ruff: noqa: F811 - the fixtures imported from lwm2m_harness are test parameters here
"""cachedDataModels and instantiatedResources against a real server with simulated devices,
through python-coiote."""

from __future__ import annotations

import secrets

import pytest
from coiote.v3.model.data_model import DeviceDataEntry
from coiote.v3.model.device_resources import (
    Lwm2mObjectDefinition,
    Lwm2mResourceOperationType,
    Lwm2mResourceType,
    MultipleInstanceResourceValue,
    SingleInstanceResourceValue,
)

from lwm2m_harness import coiote, devices, eventually, server  # noqa: F401 - fixtures
from meadowlark.lwm2m.path import LwM2mPath

BASE = "/api/coiotedm/v3"


@pytest.fixture
def known_device(server, devices):
    """A registered LwM2M 1.1 device whose Device and Temperature objects were read."""
    endpoint = f"dm-{secrets.token_hex(4)}"
    devices(endpoint)
    lwm2m = server.runtime.lwm2m
    server.call(lwm2m.read(endpoint, LwM2mPath(3, 0)))
    server.call(lwm2m.read(endpoint, LwM2mPath(3303, 0)))
    return endpoint


def _by_name(entries: list[DeviceDataEntry]) -> dict[str, DeviceDataEntry]:
    return {entry.name: entry for entry in entries}


def test_cached_data_model_names_values_by_readable_path(coiote, known_device):
    entries = _by_name(coiote.data_model.get_device_datamodel(known_device))
    manufacturer = entries["Device.0.Manufacturer"]
    assert (manufacturer.value, manufacturer.type) == ("Meadowlark", "String")
    assert entries["Device.0.Available Power Sources.1"].value == "5"
    assert entries["Device.0.Available Power Sources.1"].type == "Integer"
    assert entries["Temperature.0.Sensor Value"].type == "Float"
    assert entries["Temperature.0.Sensor Value"].value == "21.5"
    assert entries["Device.0.Current Time"].value.endswith("Z")
    assert manufacturer.updateTime.tzinfo is not None


def test_cached_data_model_prefix_returns_the_subtree(coiote, known_device):
    device_only = coiote.data_model.get_device_datamodel(known_device, ["Device."])
    assert device_only and all(entry.name.startswith("Device.0.") for entry in device_only)
    temperature = coiote.data_model.get_device_datamodel(known_device, ["Temperature."])
    assert {entry.name for entry in temperature} >= {"Temperature.0.Sensor Value"}
    assert all(entry.name.startswith("Temperature.0.") for entry in temperature)
    single = coiote.data_model.get_device_parameter(known_device, "Device.0.Manufacturer")
    assert [entry.name for entry in single] == ["Device.0.Manufacturer"]
    both = coiote.data_model.get_device_datamodel(
        known_device, ["Device.0.Model Number", "/3303/0/5700"]
    )
    assert [entry.name for entry in both] == [
        "Device.0.Model Number",
        "Temperature.0.Sensor Value",
    ]


def test_data_model_definition_lists_registered_objects(coiote, known_device):
    definitions = coiote.device_resources.get_defined_resources(known_device, [])
    by_id = {definition.id: definition for definition in definitions}
    assert set(by_id) == {1, 3, 4, 5, 3303}
    device = by_id[3]
    assert isinstance(device, Lwm2mObjectDefinition)
    # The catalog holds Device 1.2 only: a 1.1 registration resolves to the newest version.
    assert (device.name, device.objectVersion, device.instanceType.value) == (
        "Device",
        "1.2",
        "Single",
    )
    assert by_id[3303].objectVersion == "1.1"
    resources = {resource.id: resource for resource in device.resourceDefinitions}
    assert resources[0].name == "Manufacturer"
    assert resources[0].operations == [Lwm2mResourceOperationType.Read]
    assert resources[4].operations == [Lwm2mResourceOperationType.Execute]
    assert resources[4].type == Lwm2mResourceType.NoneType
    assert resources[6].instanceType.value == "Multiple"
    only_device = coiote.device_resources.get_defined_resources(known_device, ["Device"])
    assert [definition.id for definition in only_device] == [3]


def test_resources_data_carries_cached_values(coiote, known_device):
    data = coiote.device_resources.get_resources_data(known_device, ["Device."])
    by_path = {item.path: item for item in data}
    manufacturer = by_path["Device.0.Manufacturer"]
    assert isinstance(manufacturer.value, SingleInstanceResourceValue)
    assert manufacturer.value.get_value() == "Meadowlark"
    assert (manufacturer.resourceId, manufacturer.type) == (0, Lwm2mResourceType.String)
    sources = by_path["Device.0.Available Power Sources"]
    assert isinstance(sources.value, MultipleInstanceResourceValue)
    assert sources.value.get_value() == ["1", "5"]
    reboot = by_path["Device.0.Reboot"]
    assert reboot.value.get_value() == ""
    assert reboot.operations == [Lwm2mResourceOperationType.Execute]
    assert all(path.startswith("Device.0.") for path in by_path)


def test_resources_data_of_an_uncached_device_has_empty_values(server, coiote, devices):
    endpoint = f"dm-cold-{secrets.token_hex(4)}"
    with server.admin() as http:  # no reads when it registers: nothing is cached
        assert (
            http.post(
                f"{BASE}/devices", json={"properties": {"endpointName": endpoint}}
            ).status_code
            == 201
        )
        setting = {"name": "registrationRead", "value": "off", "deviceId": endpoint}
        assert http.put(f"{BASE}/settingValues", json=setting).status_code == 204
    devices(endpoint)
    data = {item.path: item for item in coiote.device_resources.get_resources_data(endpoint, [])}
    # Nothing is cached: the mandatory resources of the registered instances are listed.
    assert data["Device.0.Supported Binding and Modes"].value.get_value() == ""
    assert data["Device.0.Error Code"].value.get_value() == []
    assert "Device.0.Manufacturer" not in data
    assert "Temperature.0.Sensor Value" in data
    assert coiote.data_model.get_device_datamodel(endpoint) == []


def test_unknown_device_and_bad_parameters_are_client_errors(
    server,
    known_device,
    error_body,
):
    with server.admin() as http:
        for route in (
            "cachedDataModels",
            "instantiatedResources/dataModelDefinition",
            "instantiatedResources/resourcesData",
        ):
            error_body(http.get(f"{BASE}/{route}/no-such-device"), 404)
            bad = http.get(f"{BASE}/{route}/{known_device}", params={"parameters": "Nope.0.X"})
            assert error_body(bad, 400)["error"]
            huge = http.get(f"{BASE}/{route}/{known_device}", params={"parameters": "/70000"})
            error_body(huge, 400)


def test_devices_of_other_domains_are_not_found(
    server,
    known_device,
    given_domain,
    given_user,
    token_for,
    error_body,
):
    domain = given_domain()
    login = given_user(
        domain=domain,
        permissions=[
            "GET cachedDataModels/{deviceId}",
            "GET instantiatedResources/resourcesData/{deviceId}",
        ],
    )
    with server.client(token_for(login)) as http:
        error_body(http.get(f"{BASE}/cachedDataModels/{known_device}"), 404)
        error_body(http.get(f"{BASE}/instantiatedResources/resourcesData/{known_device}"), 404)
        error_body(
            http.get(f"{BASE}/instantiatedResources/dataModelDefinition/{known_device}"), 404
        )


def test_values_change_in_the_cache_after_a_new_read(server, coiote, devices):
    endpoint = f"dm-read-{secrets.token_hex(4)}"
    device = devices(endpoint)
    sensor = LwM2mPath(3303, 0, 5700)
    server.call(server.runtime.lwm2m.read(endpoint, sensor))
    device.objects.set_temperature(30.25)
    server.call(server.runtime.lwm2m.read(endpoint, sensor))

    def current() -> str:
        entries = coiote.data_model.get_device_parameter(endpoint, "Temperature.0.Sensor Value")
        return entries[0].value

    assert eventually(lambda: current() == "30.25")
